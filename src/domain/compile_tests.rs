//! Compile: plan matching, reports, member views, and robustness against odd input.

use crate::domain::model::{CobotPlan, GroupDef};
use crate::domain::testkit::*;
use crate::domain::{Credential, compile};

#[test]
fn assignments_match_plans_by_id_before_name() {
    let mut p = policy();
    // "p_drop" is the Drop In plan's id; a plan named "p_drop" must not be matched instead.
    p.assignments = vec![assignment("p_drop", &["staff"])];
    let mut cobot = data(vec![
        member("m1", Some("p_drop")),
        member("m2", Some("p_x")),
    ]);
    cobot.plans.push(CobotPlan {
        id: "p_x".into(),
        name: "p_drop".into(),
        hidden: false,
    });
    let s = snap(&cobot, &p);
    let views = s.members_at(synced_at());
    assert_eq!(views[0].groups, vec!["staff"]);
    assert!(views[1].groups.is_empty());
    assert!(s.report().warnings.is_empty(), "{:?}", s.report().warnings);
}

#[test]
fn an_assignment_name_matching_several_plans_matches_all_and_is_reported() {
    let mut cobot = data(vec![
        member("m1", Some("p_full")),
        member("m2", Some("p_full2")),
    ]);
    cobot.plans.push(CobotPlan {
        id: "p_full2".into(),
        name: "Full Time".into(),
        hidden: true,
    });
    let s = snap(&cobot, &policy());
    for view in s.members_at(synced_at()) {
        assert_eq!(view.groups, vec!["full_time"]);
        assert_eq!(view.plan.as_deref(), Some("Full Time"));
    }
    assert_eq!(s.report().plans, 3);
    assert_eq!(
        s.report().warnings,
        vec![
            "assignment plan \"Full Time\" matches 2 Cobot plans by name; it applies to all of them"
        ]
    );
}

#[test]
fn two_assignments_for_one_plan_give_the_union_and_a_plan_without_one_gives_nothing() {
    let mut p = policy();
    p.assignments
        .push(assignment("p_full", &["staff", "full_time"]));
    let mut cobot = data(vec![
        member("m1", Some("p_full")),
        member("m2", Some("p_bare")),
    ]);
    cobot.plans.push(CobotPlan {
        id: "p_bare".into(),
        name: "Bare".into(),
        hidden: false,
    });
    let s = snap(&cobot, &p);
    let views = s.members_at(synced_at());
    assert_eq!(views[0].groups, vec!["full_time", "staff"]);
    assert_eq!(views[1].groups, Vec::<String>::new());
    assert_eq!(views[1].plan.as_deref(), Some("Bare"));
    assert!(views[1].errors.is_empty());
    assert_eq!(s.report().members_with_errors, 0);
}

#[test]
fn a_fallback_named_by_plan_name_applies_the_assignment_written_by_id_and_back() {
    for (fallback, assigned) in [("Drop In", "p_drop"), ("p_drop", "Drop In")] {
        let mut p = policy();
        p.fallback_plan = Some(fallback.into());
        p.assignments = vec![
            assignment("Full Time", &["full_time"]),
            assignment(assigned, &["drop_in"]),
        ];
        let s = snap(&data(vec![member("m1", Some("gone"))]), &p);
        let view = &s.members_at(synced_at())[0];
        assert_eq!(view.plan.as_deref(), Some("Drop In"), "{fallback}");
        assert_eq!(view.groups, vec!["drop_in"], "{fallback}");
        assert_eq!(view.errors, vec![crate::domain::PLAN_ERROR], "{fallback}");
        assert_eq!(s.report().fallback_problem, None);
    }
}

#[test]
fn a_fallback_that_matches_no_cobot_plan_is_an_error_on_the_members_it_would_apply_to() {
    let mut p = policy();
    p.fallback_plan = Some("Guest".into());
    p.assignments.push(assignment("Guest", &["staff"]));
    let s = snap(
        &data(vec![member("m1", None), member("m2", Some("p_full"))]),
        &p,
    );
    let problem = s.report().fallback_problem.clone().expect("unresolved");
    assert!(
        problem.contains("\"Guest\"") && problem.contains("no Cobot plan"),
        "{problem}"
    );
    assert!(s.report().warnings.contains(&problem));
    let views = s.members_at(synced_at());
    assert_eq!(views[0].plan, None);
    assert!(views[0].groups.is_empty());
    assert_eq!(
        views[0].errors,
        vec![crate::domain::PLAN_ERROR.to_owned(), problem]
    );
    assert!(views[1].errors.is_empty(), "{:?}", views[1].errors);
    assert_eq!(s.report().plans, 2);
}

#[test]
fn a_fallback_plan_without_an_assignment_is_unresolved_too() {
    let mut p = policy();
    p.fallback_plan = Some("Bare".into());
    let mut cobot = data(vec![member("m1", Some("gone"))]);
    cobot.plans.push(CobotPlan {
        id: "p_bare".into(),
        name: "Bare".into(),
        hidden: false,
    });
    let s = snap(&cobot, &p);
    let problem = s.report().fallback_problem.clone().expect("unresolved");
    assert!(problem.contains("[[assignment]]"), "{problem}");
    let view = &s.members_at(synced_at())[0];
    assert!(view.groups.is_empty());
    assert!(view.errors.contains(&problem), "{:?}", view.errors);
    let chain = ask(&s, "front_door", Credential::Member("m1"), synced_at()).chain(&s);
    assert!(chain[0].contains(&problem), "{chain:?}");
}

#[test]
fn the_report_counts_members_skipped_errors_and_malformed_records() {
    let mut lone = member("m3", Some("p_full"));
    lone.user_id = Some(String::new());
    let mut cobot = data(vec![
        member("m1", Some("p_full")),
        member("m2", Some("nope")),
        lone,
    ]);
    cobot.malformed.push("membership 7: bad date".into());
    let s = snap(&cobot, &policy());
    let r = s.report();
    assert_eq!((r.plans, r.members, r.skipped_not_connected), (2, 2, 1));
    assert_eq!((r.members_with_errors, r.malformed, r.errors()), (1, 1, 2));
    assert_eq!(s.version(), 1);
    assert_eq!(s.synced_at(), synced_at());
    assert_eq!(s.timezone(), TZ);
}

#[test]
fn unconnected_members_are_synced_when_the_setting_is_off() {
    let mut p = policy();
    p.require_connected_user = false;
    let mut lone = member("m1", Some("p_full"));
    lone.user_id = None;
    let s = snap(&data(vec![lone]), &p);
    assert_eq!((s.member_count(), s.report().skipped_not_connected), (1, 0));
    assert!(
        ask(
            &s,
            "front_door",
            Credential::Member("m1"),
            berlin(2026, 3, 2, 10, 0)
        )
        .granted()
    );
}

#[test]
fn member_views_serialise_dates_as_local_days_or_null() {
    let mut m = member("m1", Some("p_full"));
    m.canceled_to = Some(day(2026, 12, 31));
    let mut open = member("m2", Some("p_full"));
    open.starts_at = None;
    let s = snap(&data(vec![m, open]), &policy());
    let json = serde_json::to_value(s.members_at(synced_at())).unwrap();
    assert_eq!(json[0]["valid_from"], "2026-01-01");
    assert_eq!(json[0]["valid_until"], "2026-12-31");
    assert_eq!(json[0]["email"], "m1@example.com");
    assert_eq!(json[0]["plan"], "Full Time");
    assert_eq!(json[0]["groups"], serde_json::json!(["full_time"]));
    assert_eq!(json[1]["valid_from"], serde_json::Value::Null);
    assert_eq!(json[1]["valid_until"], serde_json::Value::Null);
}

#[test]
fn indexes_find_units_members_and_locks() {
    let s = snap(&data(vec![member("m1", Some("p_full"))]), &policy());
    let door = s.unit("front_door").unwrap();
    assert_eq!(s.unit_id(door), "front_door");
    assert_eq!(s.unit_lock(door), Some("front_relay"));
    assert_eq!(s.unit_lock(s.unit("building").unwrap()), None);
    assert!(s.unit("cellar").is_none());
    let m = s.find_member("M1@EXAMPLE.COM").unwrap();
    assert_eq!((s.member_id(m), s.member_name(m)), ("m1", "Member m1"));
    assert_eq!(s.find_member("m1"), Some(m));
    assert!(s.find_member("m9").is_none());
}

#[test]
fn broken_references_and_parent_cycles_are_reported_not_panicked_on() {
    let mut p = policy();
    p.units.push(unit("loop_a", Some("loop_b"), None));
    p.units.push(unit("loop_b", Some("loop_a"), None));
    p.units.push(unit("orphan", Some("missing"), None));
    p.units.push(unit("front_door", None, None));
    p.groups.push(GroupDef {
        id: "STAFF".into(),
        name: "dup".into(),
    });
    p.permissions.push(permission("ghost", "front_door", None));
    p.permissions.push(permission("staff", "loop_a", None));
    p.assignments.push(assignment("Nowhere", &["ghost"]));
    p.offline.keep_groups.push("ghost".into());
    p.fallback_plan = Some("Full Time".into());
    let mut cobot = data(vec![
        member("m1", Some("p_full")),
        member("m1", Some("p_drop")),
    ]);
    cobot.bookings.push(crate::domain::model::Booking {
        membership_id: "nobody".into(),
        resource_id: None,
        from: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        to: chrono::DateTime::<chrono::Utc>::MAX_UTC,
    });
    let s = compile(&cobot, &p, 7, synced_at());
    let w = &s.report().warnings;
    for needle in [
        "parent cycle",
        "unknown parent",
        "defined twice",
        "unknown group",
        "matches no Cobot plan",
        "listed twice",
    ] {
        assert!(
            w.iter().any(|x| x.contains(needle)),
            "{needle} missing in {w:?}"
        );
    }
    assert_eq!(s.member_count(), 1);
    assert!(
        ask(&s, "loop_b", Credential::Member("m1"), synced_at())
            .reason(&s)
            .contains("no group")
    );
}

#[test]
fn snapshots_and_decisions_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<crate::domain::Snapshot>();
    send_sync::<crate::domain::Decision>();
    send_sync::<crate::domain::Permit>();
}
