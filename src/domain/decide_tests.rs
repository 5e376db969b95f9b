//! Decisions, rule by rule, with their reasons and chains.

use chrono::{DateTime, Duration as TimeDelta, Utc};

use crate::domain::model::{Booking, CheckInToken, CustomField, OverrideDef, UpcomingPlan};
use crate::domain::testkit::*;
use crate::domain::{ClockProblem, ClockTrust, Credential, Moment, Request, decide};

fn member_cred(id: &str) -> Credential<'_> {
    Credential::Member(id)
}

#[test]
fn full_time_member_opens_the_front_door_through_the_building_permission() {
    let s = snap(&data(vec![member("m1", Some("p_full"))]), &policy());
    let d = ask(
        &s,
        "front_door",
        member_cred("m1"),
        berlin(2026, 3, 8, 3, 0),
    );
    assert!(d.granted());
    assert_eq!(d.member().map(|m| s.member_id(m)), Some("m1"));
    let permit = d.permit().unwrap();
    assert_eq!(permit.lock(), Some("front_relay"));
    assert_eq!(permit.open_for(), std::time::Duration::from_secs(5));
    assert_eq!(s.unit_id(permit.unit()), "front_door");
    let chain = d.chain(&s);
    assert_eq!(
        chain[0],
        "Member m1 (m1) is on plan Full Time → groups full_time"
    );
    assert_eq!(
        chain[1],
        "permission full_time on building (covering front_door), 24/7"
    );
    assert!(chain[2].contains("valid from 2026-01-01, with no end date (Europe/Berlin)"));
    assert_eq!(
        d.reason(&s),
        "Member m1 (m1) may open front_door through group full_time (permission on building, 24/7)"
    );
}

#[test]
fn drop_in_member_opens_only_within_office_hours() {
    let s = snap(&data(vec![member("m1", Some("p_drop"))]), &policy());
    assert!(
        ask(
            &s,
            "front_door",
            member_cred("m1"),
            berlin(2026, 3, 2, 8, 0)
        )
        .granted()
    );
    let late = ask(
        &s,
        "front_door",
        member_cred("m1"),
        berlin(2026, 3, 2, 18, 0),
    );
    assert!(!late.granted());
    assert_eq!(
        late.reason(&s),
        "permission drop_in on front_door is limited to Mon-Fri 08:00-18:00, and Mon 2026-03-02 18:00 (Europe/Berlin) is outside it"
    );
    assert!(late.chain(&s).iter().any(|l| l.ends_with("is outside")));
    let office = ask(&s, "office", member_cred("m1"), berlin(2026, 3, 2, 10, 0));
    assert!(!office.granted());
    assert!(
        office
            .reason(&s)
            .contains("has a permission covering office"),
        "{}",
        office.reason(&s)
    );
}

#[test]
fn unknown_member_email_card_and_user_are_denials_saying_what_was_unknown() {
    let s = snap(&data(vec![member("m1", Some("p_full"))]), &policy());
    let at = berlin(2026, 3, 2, 10, 0);
    let d = ask(&s, "front_door", member_cred("nobody@example.com"), at);
    assert!(!d.granted() && d.member().is_none());
    assert!(
        d.reason(&s)
            .contains("unknown member or email \"nobody@example.com\"")
    );
    assert_eq!(d.chain(&s), vec![d.reason(&s)]);
    let d = ask(&s, "front_door", Credential::Card("de:ad:be:ef"), at);
    assert!(
        d.reason(&s).contains("unknown card \"DEADBEEF\""),
        "{}",
        d.reason(&s)
    );
    let d = ask(&s, "front_door", Credential::User("u9"), at);
    assert!(d.reason(&s).contains("unknown Cobot user \"u9\""));
}

#[test]
fn members_are_found_by_email_in_any_case_and_by_cobot_user() {
    let s = snap(&data(vec![member("m1", Some("p_full"))]), &policy());
    let at = berlin(2026, 3, 2, 10, 0);
    assert!(ask(&s, "front_door", member_cred("M1@Example.COM"), at).granted());
    let d = ask(&s, "front_door", Credential::User("user_m1"), at);
    assert!(d.granted());
    assert_eq!(
        d.chain(&s)[0],
        "Cobot user user_m1 is member Member m1 (m1)"
    );
    assert_eq!(s.member_by_user("user_m1"), s.find_member("m1"));
}

#[test]
fn unconnected_memberships_are_counted_but_unknown() {
    let mut lone = member("m2", Some("p_full"));
    lone.user_id = None;
    let s = snap(&data(vec![member("m1", Some("p_full")), lone]), &policy());
    assert_eq!(s.report().skipped_not_connected, 1);
    assert_eq!(s.member_count(), 1);
    let d = ask(
        &s,
        "front_door",
        member_cred("m2"),
        berlin(2026, 3, 2, 10, 0),
    );
    assert!(!d.granted() && d.member().is_none());
}

#[test]
fn cards_match_case_insensitively_without_separators() {
    let mut cobot = data(vec![member("m1", Some("p_full"))]);
    cobot.check_in_tokens.push(CheckInToken {
        token: "04:a1:b2:c3".into(),
        membership_id: "m1".into(),
    });
    let s = snap(&cobot, &policy());
    let d = ask(
        &s,
        "front_door",
        Credential::Card("04-A1 B2c3"),
        berlin(2026, 3, 2, 10, 0),
    );
    assert!(d.granted());
    assert_eq!(
        d.chain(&s)[0],
        "card 04A1B2C3 is registered to Member m1 (m1)"
    );
}

#[test]
fn a_card_of_two_members_opens_nothing_and_both_get_an_error() {
    let mut cobot = data(vec![
        member("m1", Some("p_full")),
        member("m2", Some("p_full")),
    ]);
    for m in ["m1", "m2"] {
        cobot.check_in_tokens.push(CheckInToken {
            token: "04A1".into(),
            membership_id: m.into(),
        });
    }
    let s = snap(&cobot, &policy());
    let at = berlin(2026, 3, 2, 10, 0);
    let d = ask(&s, "front_door", Credential::Card("04a1"), at);
    assert!(!d.granted());
    assert!(d.member().is_none());
    assert_eq!(
        d.reason(&s),
        "card 04A1 is registered to two members (m1, m2) and opens nothing"
    );
    for view in s.members_at(at) {
        assert!(
            view.errors
                .iter()
                .any(|e| e.contains("card 04A1") && e.contains("m1, m2"))
        );
    }
    assert_eq!(s.report().members_with_errors, 2);
}

#[test]
fn a_blocked_member_is_denied_until_the_override_ends() {
    let mut p = policy();
    p.overrides.push(OverrideDef {
        member: "M1@example.com".into(),
        add_groups: Vec::new(),
        blocked: true,
        until: Some(day(2026, 3, 3)),
    });
    let s = snap(&data(vec![member("m1", Some("p_full"))]), &p);
    let d = ask(
        &s,
        "front_door",
        member_cred("m1"),
        berlin(2026, 3, 3, 23, 59),
    );
    assert!(!d.granted());
    assert_eq!(
        d.reason(&s),
        "Member m1 (m1) is blocked by override \"M1@example.com\" until 2026-03-03"
    );
    assert!(
        ask(
            &s,
            "front_door",
            member_cred("m1"),
            berlin(2026, 3, 4, 0, 0)
        )
        .granted()
    );
}

#[test]
fn validity_runs_from_the_start_day_through_the_cancel_day_in_site_time() {
    let mut m = member("m1", Some("p_full"));
    m.starts_at = Some(day(2026, 3, 10));
    m.canceled_to = Some(day(2026, 3, 20));
    let s = snap(&data(vec![m]), &policy());
    let open = |at| ask(&s, "front_door", member_cred("m1"), at);
    let early = open(berlin(2026, 3, 9, 23, 59));
    assert!(!early.granted());
    assert_eq!(
        early.reason(&s),
        "Member m1 (m1) is valid from 2026-03-10, not on 2026-03-09"
    );
    assert!(open(berlin(2026, 3, 10, 0, 0)).granted());
    assert!(open(berlin(2026, 3, 20, 23, 59)).granted());
    let late = open(berlin(2026, 3, 21, 0, 0));
    assert!(!late.granted());
    assert!(
        late.chain(&s)
            .last()
            .unwrap()
            .ends_with("2026-03-21 is after it")
    );
}

#[test]
fn an_unconfirmed_membership_is_denied() {
    let mut m = member("m1", Some("p_full"));
    m.confirmed_at = None;
    let s = snap(&data(vec![m]), &policy());
    let d = ask(
        &s,
        "front_door",
        member_cred("m1"),
        berlin(2026, 3, 2, 10, 0),
    );
    assert!(!d.granted());
    assert!(d.reason(&s).contains("not confirmed"));
}

#[test]
fn the_plan_copy_cancel_day_ends_validity_when_earlier() {
    let mut m = member("m1", Some("p_full"));
    m.canceled_to = Some(day(2026, 3, 20));
    m.plan.as_mut().unwrap().canceled_to = Some(day(2026, 3, 15));
    let s = snap(&data(vec![m]), &policy());
    assert_eq!(
        s.members_at(synced_at())[0].valid_until,
        Some(day(2026, 3, 15))
    );
}

#[test]
fn an_upcoming_plan_switches_groups_on_its_start_day_offline() {
    let mut m = member("m1", Some("p_drop"));
    m.plan.as_mut().unwrap().canceled_to = Some(day(2026, 3, 9));
    m.upcoming_plan = Some(UpcomingPlan {
        plan: plan_copy(Some("p_full")),
        starts_at: day(2026, 3, 10),
    });
    let s = snap(&data(vec![m]), &policy());
    let before = ask(
        &s,
        "front_door",
        member_cred("m1"),
        berlin(2026, 3, 9, 23, 0),
    );
    assert!(!before.granted());
    assert!(before.chain(&s)[0].ends_with("(switches to plan Full Time on 2026-03-10)"));
    let after = ask(
        &s,
        "front_door",
        member_cred("m1"),
        berlin(2026, 3, 10, 0, 5),
    );
    assert!(after.granted());
    assert!(after.chain(&s)[0].contains("is on plan Full Time since 2026-03-10 (upcoming plan)"));
    let views = s.members_at(berlin(2026, 3, 10, 0, 5));
    assert_eq!(views[0].plan.as_deref(), Some("Full Time"));
    assert_eq!(views[0].valid_until, None);
}

#[test]
fn an_unknown_plan_gets_the_error_and_the_fallback_plan_applies() {
    let mut p = policy();
    p.fallback_plan = Some("Drop In".into());
    let s = snap(
        &data(vec![member("m1", Some("gone")), member("m2", None)]),
        &p,
    );
    let at = berlin(2026, 3, 2, 10, 0);
    for view in s.members_at(at) {
        assert_eq!(
            view.errors,
            vec!["plan.parent_plan.id not given or incorrect"]
        );
        assert_eq!(view.plan.as_deref(), Some("Drop In"));
        assert_eq!(view.groups, vec!["drop_in"]);
    }
    let d = ask(&s, "front_door", member_cred("m1"), at);
    assert!(d.granted());
    assert_eq!(
        d.chain(&s)[0],
        "Member m1 (m1): plan.parent_plan.id not given or incorrect, so the fallback plan Drop In applies → groups drop_in"
    );
    assert_eq!(s.report().members_with_errors, 2);
}

#[test]
fn an_unknown_plan_without_fallback_gives_no_groups() {
    let s = snap(&data(vec![member("m1", Some("gone"))]), &policy());
    let at = berlin(2026, 3, 2, 10, 0);
    let d = ask(&s, "front_door", member_cred("m1"), at);
    assert_eq!(d.reason(&s), "Member m1 (m1) holds no groups");
    let view = &s.members_at(at)[0];
    assert_eq!(view.plan, None);
    assert_eq!(
        view.errors,
        vec!["plan.parent_plan.id not given or incorrect"]
    );
}

#[test]
fn the_custom_field_adds_groups_and_reports_unknown_ones() {
    let mut p = policy();
    p.additional_groups_field = Some("smart_spaces_access_additional_units".into());
    let mut m = member("m1", Some("p_drop"));
    m.custom_fields.push(CustomField {
        label: "smart_spaces_access_additional_units".into(),
        value: " Staff, ,x ,".into(),
    });
    let s = snap(&data(vec![m]), &p);
    let at = berlin(2026, 3, 2, 20, 0);
    let d = ask(&s, "office", member_cred("m1"), at);
    assert!(d.granted());
    assert!(d.chain(&s).contains(
        &"custom field smart_spaces_access_additional_units adds groups staff".to_owned()
    ));
    let view = &s.members_at(at)[0];
    assert_eq!(view.groups, vec!["drop_in", "staff"]);
    assert_eq!(
        view.errors,
        vec!["unknown group \"x\" in smart_spaces_access_additional_units"]
    );
}

#[test]
fn an_override_adds_groups_through_its_until_day() {
    let mut p = policy();
    p.overrides.push(OverrideDef {
        member: "m1".into(),
        add_groups: vec!["staff".into()],
        blocked: false,
        until: Some(day(2026, 3, 5)),
    });
    let s = snap(&data(vec![member("m1", Some("p_drop"))]), &p);
    let d = ask(&s, "office", member_cred("m1"), berlin(2026, 3, 5, 23, 0));
    assert!(d.granted());
    assert!(
        d.chain(&s)
            .iter()
            .any(|l| l.contains("(from override \"m1\" until 2026-03-05)"))
    );
    assert!(!ask(&s, "office", member_cred("m1"), berlin(2026, 3, 6, 0, 0)).granted());
    assert_eq!(
        s.members_at(berlin(2026, 3, 6, 0, 0))[0].groups,
        vec!["drop_in"]
    );
}

#[test]
fn an_override_on_a_shared_email_applies_to_neither_member() {
    let mut p = policy();
    p.overrides.push(OverrideDef {
        member: "shared@example.com".into(),
        add_groups: vec!["staff".into()],
        blocked: false,
        until: None,
    });
    let (mut a, mut b) = (member("m1", Some("p_full")), member("m2", Some("p_full")));
    a.email = Some("Shared@example.com".into());
    b.email = Some("shared@EXAMPLE.com".into());
    let s = snap(&data(vec![a, b]), &p);
    let at = berlin(2026, 3, 2, 10, 0);
    for view in s.members_at(at) {
        assert_eq!(view.groups, vec!["full_time"]);
        assert!(view.errors[0].contains("m1 and m2"), "{:?}", view.errors);
    }
    let d = ask(&s, "office", member_cred("shared@example.com"), at);
    assert!(!d.granted() && d.member().is_none());
    assert!(d.reason(&s).contains("shared by members m1 and m2"));
}

#[test]
fn booking_only_groups_grant_during_a_booking_with_grace() {
    let mut p = policy();
    p.assignments[1].requires_booking = true;
    p.assignments[1].booking_resources = vec!["desk".into()];
    p.permissions[1].schedule = None;
    let mut cobot = data(vec![member("m1", Some("p_drop"))]);
    for (resource, from) in [("desk", 10), ("room", 14)] {
        cobot.bookings.push(Booking {
            membership_id: "m1".into(),
            resource_id: Some(resource.into()),
            from: utc(2026, 3, 2, from, 0),
            to: utc(2026, 3, 2, from + 2, 0),
        });
    }
    let s = snap(&cobot, &p);
    let open = |at| ask(&s, "front_door", member_cred("m1"), at);
    assert!(open(utc(2026, 3, 2, 9, 45)).granted());
    assert!(open(utc(2026, 3, 2, 12, 15)).granted());
    let early = open(utc(2026, 3, 2, 9, 44));
    assert!(!early.granted());
    assert!(
        early.reason(&s).contains("only during a booking (±15m)"),
        "{}",
        early.reason(&s)
    );
    assert!(!open(utc(2026, 3, 2, 12, 16)).granted());
    assert!(
        !open(utc(2026, 3, 2, 15, 0)).granted(),
        "a booking of another resource"
    );
    assert_eq!(
        s.members_at(utc(2026, 3, 2, 15, 0))[0].groups,
        vec!["drop_in"]
    );
}

#[test]
fn on_a_holiday_only_permissions_without_schedule_grant() {
    let mut p = policy();
    p.holidays.push(day(2026, 3, 2));
    let s = snap(
        &data(vec![
            member("m1", Some("p_drop")),
            member("m2", Some("p_full")),
        ]),
        &p,
    );
    let at = berlin(2026, 3, 2, 10, 0);
    let d = ask(&s, "front_door", member_cred("m1"), at);
    assert!(!d.granted());
    assert_eq!(
        d.reason(&s),
        "2026-03-02 is a holiday, so schedule-limited permission drop_in on front_door grants nothing"
    );
    assert!(ask(&s, "front_door", member_cred("m2"), at).granted());
}

#[test]
fn an_untrusted_clock_refuses_scheduled_grants_but_not_24_7_ones() {
    let s = snap(
        &data(vec![
            member("m1", Some("p_drop")),
            member("m2", Some("p_full")),
        ]),
        &policy(),
    );
    let unit = s.unit("front_door").unwrap();
    let now = Moment {
        at: berlin(2026, 3, 2, 10, 0),
        clock: ClockTrust::Untrusted(ClockProblem::JumpedBack),
        lockdown: false,
    };
    let ask = |id| {
        decide(
            &s,
            &Request {
                unit,
                credential: Credential::Member(id),
            },
            &now,
        )
    };
    let d = ask("m1");
    assert!(!d.granted());
    assert!(
        d.reason(&s)
            .starts_with("the clock is untrusted (it jumped back")
    );
    assert!(ask("m2").granted());
}

#[test]
fn past_offline_max_age_only_kept_groups_are_granted() {
    let mut p = policy();
    p.offline.max_age = Some(std::time::Duration::from_secs(7 * 86_400));
    p.offline.keep_groups = vec!["staff".into()];
    p.overrides.push(OverrideDef {
        member: "m2".into(),
        add_groups: vec!["staff".into()],
        blocked: false,
        until: None,
    });
    let s = snap(
        &data(vec![
            member("m1", Some("p_full")),
            member("m2", Some("p_full")),
        ]),
        &p,
    );
    let fresh = synced_at() + TimeDelta::days(7);
    assert!(ask(&s, "front_door", member_cred("m1"), fresh).granted());
    let stale = fresh + TimeDelta::minutes(1);
    let d = ask(&s, "front_door", member_cred("m1"), stale);
    assert!(!d.granted());
    assert_eq!(
        d.reason(&s),
        "the last sync is older than offline.max_age (7days), and group full_time is not in offline.keep_groups"
    );
    assert!(
        d.chain(&s)
            .iter()
            .any(|l| l.ends_with("only groups staff are granted"))
    );
    assert!(ask(&s, "office", member_cred("m2"), stale).granted());
}

/// Minutes of a local Berlin day (as UTC minutes from its midnight to the next) that open.
fn granted_minutes(
    s: &crate::domain::Snapshot,
    id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> i64 {
    let mut at = from;
    let mut count = 0;
    while at < to {
        if ask(s, "front_door", Credential::Member(id), at).granted() {
            count += 1;
        }
        at += TimeDelta::minutes(1);
    }
    count
}

#[test]
fn a_window_in_the_skipped_spring_hour_never_matches_and_the_repeated_autumn_hour_counts_twice() {
    let mut p = policy();
    p.assignments.push(assignment("Drop In", &["night"]));
    p.permissions = vec![permission(
        "night",
        "front_door",
        Some(&["Sun 02:00-03:00"]),
    )];
    let s = snap(&data(vec![member("m1", Some("p_drop"))]), &p);
    let spring = granted_minutes(
        &s,
        "m1",
        berlin(2026, 3, 29, 0, 0),
        berlin(2026, 3, 30, 0, 0),
    );
    assert_eq!(spring, 0);
    let autumn = granted_minutes(
        &s,
        "m1",
        berlin(2026, 10, 25, 0, 0),
        berlin(2026, 10, 26, 0, 0),
    );
    assert_eq!(autumn, 120);
    let plain = granted_minutes(
        &s,
        "m1",
        berlin(2026, 3, 22, 0, 0),
        berlin(2026, 3, 23, 0, 0),
    );
    assert_eq!(plain, 60);
}

#[test]
fn a_window_crossing_midnight_belongs_to_its_start_day() {
    let mut p = policy();
    p.permissions[1].schedule =
        Some(crate::domain::schedule::Schedule::parse(&["Fri 22:00-06:00"]).unwrap());
    let s = snap(&data(vec![member("m1", Some("p_drop"))]), &p);
    let open = |at| ask(&s, "front_door", member_cred("m1"), at).granted();
    assert!(open(berlin(2026, 3, 6, 22, 0)));
    assert!(open(berlin(2026, 3, 7, 5, 59)));
    assert!(!open(berlin(2026, 3, 7, 6, 0)));
    assert!(!open(berlin(2026, 3, 6, 5, 0)));
    let minutes = granted_minutes(&s, "m1", berlin(2026, 3, 2, 0, 0), berlin(2026, 3, 9, 0, 0));
    assert_eq!(minutes, 8 * 60);
}

#[test]
fn a_permission_covers_units_below_but_not_above_or_beside() {
    let mut p = policy();
    p.overrides.push(OverrideDef {
        member: "m1".into(),
        add_groups: vec!["staff".into()],
        blocked: false,
        until: None,
    });
    let s = snap(&data(vec![member("m1", Some("p_drop"))]), &p);
    let at = berlin(2026, 3, 2, 20, 0);
    assert!(ask(&s, "office", member_cred("m1"), at).granted());
    assert!(!ask(&s, "building", member_cred("m1"), at).granted());
    let d = ask(&s, "front_door", member_cred("m1"), at);
    assert!(!d.granted());
    assert!(
        d.reason(&s).contains("Mon-Fri 08:00-18:00"),
        "{}",
        d.reason(&s)
    );
}

#[test]
fn staff_opens_any_unit_remotely_without_a_member() {
    let s = snap(&data(vec![]), &policy());
    let d = ask(&s, "office", Credential::Admin, berlin(2026, 3, 2, 10, 0));
    assert!(d.granted() && d.member().is_none());
    assert_eq!(d.permit().unwrap().lock(), Some("office_ble"));
    assert_eq!(
        d.reason(&s),
        "remote open of office by staff through the admin API"
    );
}

#[test]
fn a_unit_index_of_another_snapshot_is_denied_without_panicking() {
    let s = snap(&data(vec![member("m1", Some("p_full"))]), &policy());
    let bogus = crate::domain::UnitIdx(99);
    let d = decide(
        &s,
        &Request {
            unit: bogus,
            credential: Credential::Member("m1"),
        },
        &Moment::trusted(synced_at()),
    );
    assert!(!d.granted());
    assert_eq!(d.reason(&s), "unknown unit");
    assert_eq!(s.unit_id(bogus), "");
    assert!(!d.chain(&s).is_empty());
}

#[test]
fn a_user_with_two_memberships_is_granted_by_the_one_in_force() {
    let mut old = member("m_old", Some("p_full"));
    old.canceled_to = Some(day(2026, 2, 1));
    let mut new = member("m_new", Some("p_full"));
    new.user_id = old.user_id.clone();
    let s = snap(&data(vec![old, new]), &policy());
    let d = ask(
        &s,
        "front_door",
        Credential::User("user_m_old"),
        berlin(2026, 3, 2, 10, 0),
    );
    assert!(d.granted());
    assert_eq!(d.member().map(|m| s.member_id(m)), Some("m_new"));
    assert_eq!(
        s.member_by_user("user_m_old").map(|m| s.member_id(m)),
        Some("m_new")
    );
}

#[test]
fn in_a_lockdown_only_the_allowed_groups_open_and_the_refusal_says_so() {
    let mut p = policy();
    p.lockdown_groups = vec!["full_time".into()];
    let s = snap(
        &data(vec![
            member("m1", Some("p_full")),
            member("m2", Some("p_drop")),
        ]),
        &p,
    );
    let unit = s.unit("front_door").unwrap();
    let at = berlin(2026, 3, 2, 10, 0);
    let ask = |id, lockdown| {
        let now = Moment {
            at,
            clock: ClockTrust::Trusted,
            lockdown,
        };
        decide(
            &s,
            &Request {
                unit,
                credential: Credential::Member(id),
            },
            &now,
        )
    };
    // No lockdown: both open (m2 inside her window).
    assert!(ask("m1", false).granted() && ask("m2", false).granted());
    // Lockdown: full_time is allowed, drop_in is not.
    assert!(ask("m1", true).granted());
    let refused = ask("m2", true);
    assert!(!refused.granted());
    let reason = refused.reason(&s);
    assert!(
        reason.contains("lockdown is on") && reason.contains("drop_in"),
        "{reason}"
    );
    assert!(
        refused
            .chain(&s)
            .iter()
            .any(|step| step.contains("lockdown.allow_groups"))
    );
    // Staff through the admin API open whatever the lockdown.
    let now = Moment {
        at,
        clock: ClockTrust::Trusted,
        lockdown: true,
    };
    let staff = decide(
        &s,
        &Request {
            unit,
            credential: Credential::Admin,
        },
        &now,
    );
    assert!(staff.granted());
}
