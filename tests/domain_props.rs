//! Property tests of `decide`: validity, blocking, monotonicity of permissions, and windows
//! crossing midnight, over generated sites, members and moments.

use std::time::Duration;

use chrono::{DateTime, Duration as TimeDelta, NaiveDate, TimeZone, Utc};
use portier::domain::model::{
    AssignmentDef, CobotData, CobotMembership, CobotPlan, GroupDef, MembershipPlan, OfflinePolicy,
    OverrideDef, PermissionDef, Policy, UnitDef,
};
use portier::domain::schedule::Schedule;
use portier::domain::{Credential, Moment, Request, Snapshot, compile, decide};
use proptest::prelude::*;

const GROUPS: [&str; 4] = ["a", "b", "c", "d"];
const UNITS: [&str; 4] = ["site", "hall", "door", "room"];
const PARENTS: [Option<&str>; 4] = [None, Some("site"), Some("hall"), Some("site")];
const WINDOWS: [&str; 5] = [
    "Mon-Fri 08:00-18:00",
    "22:00-06:00",
    "Sat,Sun 10:00-14:00",
    "Fri-Mon 20:00-02:00",
    "00:00-24:00",
];

fn day(offset: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default() + TimeDelta::days(offset)
}

fn moment(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::minutes(minutes)
}

fn policy(permissions: Vec<PermissionDef>, overrides: Vec<OverrideDef>) -> Policy {
    Policy {
        timezone: chrono_tz::Europe::Berlin,
        groups: GROUPS
            .iter()
            .map(|g| GroupDef {
                id: (*g).into(),
                name: (*g).into(),
            })
            .collect(),
        assignments: vec![
            AssignmentDef {
                plan: "p1".into(),
                groups: vec!["a".into(), "b".into()],
                requires_booking: false,
                booking_resources: vec![],
            },
            AssignmentDef {
                plan: "Plan Two".into(),
                groups: vec!["c".into()],
                requires_booking: false,
                booking_resources: vec![],
            },
        ],
        fallback_plan: Some("p1".into()),
        additional_groups_field: None,
        require_connected_user: true,
        units: UNITS
            .iter()
            .zip(PARENTS)
            .map(|(u, p)| UnitDef {
                id: (*u).into(),
                parent: p.map(Into::into),
                lock: Some(format!("{u}_lock")),
                open_for: Duration::from_secs(5),
                unlocked: None,
            })
            .collect(),
        permissions,
        holidays: vec![day(40)],
        overrides,
        offline: OfflinePolicy {
            max_age: Some(Duration::from_secs(300 * 86_400)),
            keep_groups: vec!["d".into()],
        },
        booking_grace: Duration::from_secs(900),
        lockdown_groups: Vec::new(),
    }
}

fn permission_strategy() -> impl Strategy<Value = PermissionDef> {
    (
        0..GROUPS.len(),
        0..UNITS.len(),
        proptest::option::of(0..WINDOWS.len()),
    )
        .prop_map(|(g, u, w)| PermissionDef {
            group: GROUPS[g].into(),
            unit: UNITS[u].into(),
            schedule: w.and_then(|w| Schedule::parse(&[WINDOWS[w]]).ok()),
        })
}

prop_compose! {
    fn membership_strategy()(
        plan in prop_oneof![Just(Some("p1")), Just(Some("p2")), Just(Some("gone")), Just(None)],
        confirmed in any::<bool>(),
        starts in proptest::option::of(0i64..200),
        length in proptest::option::of(0i64..200),
    ) -> CobotMembership {
        CobotMembership {
            id: "m1".into(),
            name: "Ada".into(),
            email: Some("ada@example.com".into()),
            user_id: Some("u1".into()),
            plan: Some(MembershipPlan { name: None, parent_plan_id: plan.map(Into::into), canceled_to: None }),
            upcoming_plan: None,
            confirmed_at: confirmed.then(|| moment(-60 * 24 * 30)),
            starts_at: starts.map(day),
            canceled_to: length.map(|l| day(starts.unwrap_or(0) + l)),
            custom_fields: vec![],
        }
    }
}

fn cobot(m: CobotMembership) -> CobotData {
    CobotData {
        plans: vec![
            CobotPlan {
                id: "p1".into(),
                name: "Plan One".into(),
                hidden: false,
            },
            CobotPlan {
                id: "p2".into(),
                name: "Plan Two".into(),
                hidden: true,
            },
        ],
        memberships: vec![m],
        ..CobotData::default()
    }
}

fn ask(s: &Snapshot, unit: &str, at: DateTime<Utc>) -> bool {
    let Some(unit) = s.unit(unit) else {
        return false;
    };
    decide(
        s,
        &Request {
            unit,
            credential: Credential::Member("m1"),
        },
        &Moment::trusted(at),
    )
    .granted()
}

fn local_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&chrono_tz::Europe::Berlin).date_naive()
}

proptest! {
    #[test]
    fn a_member_outside_its_validity_is_never_granted(
        m in membership_strategy(),
        perms in proptest::collection::vec(permission_strategy(), 0..12),
        unit in 0..UNITS.len(),
        minute in 0i64..(60 * 24 * 400),
    ) {
        let (from, until, confirmed) = (m.starts_at, m.canceled_to, m.confirmed_at.is_some());
        let s = compile(&cobot(m), &policy(perms, vec![]), 1, moment(0));
        let at = moment(minute);
        let date = local_day(at);
        let outside = !confirmed || from.is_some_and(|f| date < f) || until.is_some_and(|u| date > u);
        if outside {
            prop_assert!(!ask(&s, UNITS[unit], at));
        }
    }

    #[test]
    fn a_blocked_member_is_never_granted(
        m in membership_strategy(),
        perms in proptest::collection::vec(permission_strategy(), 0..12),
        unit in 0..UNITS.len(),
        minute in 0i64..(60 * 24 * 400),
        until in proptest::option::of(0i64..400),
        add in proptest::collection::vec(0..GROUPS.len(), 0..3),
    ) {
        let block = OverrideDef {
            member: "ADA@example.com".into(),
            add_groups: add.iter().map(|g| GROUPS[*g].to_owned()).collect(),
            blocked: true,
            until: until.map(day),
        };
        let s = compile(&cobot(m), &policy(perms, vec![block]), 1, moment(0));
        let at = moment(minute);
        if until.is_none_or(|u| local_day(at) <= day(u)) {
            prop_assert!(!ask(&s, UNITS[unit], at));
        }
    }

    #[test]
    fn adding_a_permission_never_removes_a_grant(
        m in membership_strategy(),
        perms in proptest::collection::vec(permission_strategy(), 0..12),
        extra in permission_strategy(),
        unit in 0..UNITS.len(),
        minute in 0i64..(60 * 24 * 400),
    ) {
        let data = cobot(m);
        let before = compile(&data, &policy(perms.clone(), vec![]), 1, moment(0));
        let mut more = perms;
        more.push(extra);
        let after = compile(&data, &policy(more, vec![]), 2, moment(0));
        let at = moment(minute);
        if ask(&before, UNITS[unit], at) {
            prop_assert!(ask(&after, UNITS[unit], at));
        }
    }

    #[test]
    fn compile_and_decide_never_panic_on_arbitrary_references(
        names in proptest::collection::vec("[a-z:\\- ]{0,6}", 8),
        minute in any::<i32>(),
    ) {
        let mut p = policy(vec![], vec![]);
        p.units.push(UnitDef { id: names[0].clone(), parent: Some(names[1].clone()), lock: None, open_for: Duration::ZERO, unlocked: None });
        p.units.push(UnitDef { id: names[1].clone(), parent: Some(names[0].clone()), lock: None, open_for: Duration::ZERO, unlocked: None });
        p.permissions.push(PermissionDef { group: names[2].clone(), unit: names[3].clone(), schedule: None });
        p.fallback_plan = Some(names[4].clone());
        p.overrides.push(OverrideDef { member: names[5].clone(), add_groups: vec![names[6].clone()], blocked: false, until: None });
        let mut m = membership_strategy_fixed();
        m.plan = Some(MembershipPlan { name: None, parent_plan_id: Some(names[7].clone()), canceled_to: Some(NaiveDate::MAX) });
        let s = compile(&cobot(m), &p, 1, moment(0));
        let at = moment(i64::from(minute));
        for u in s.unit_ids().collect::<Vec<_>>() {
            for cred in [Credential::Member(&names[5]), Credential::Card(&names[6]), Credential::User(&names[7])] {
                let unit = s.unit(u).unwrap();
                let d = decide(&s, &Request { unit, credential: cred }, &Moment::trusted(at));
                prop_assert!(!d.reason(&s).is_empty());
                prop_assert!(!d.chain(&s).is_empty());
            }
        }
        let _ = s.members_at(at);
    }
}

fn membership_strategy_fixed() -> CobotMembership {
    CobotMembership {
        id: "m1".into(),
        name: "Ada".into(),
        email: None,
        user_id: Some("u1".into()),
        plan: None,
        upcoming_plan: None,
        confirmed_at: Some(moment(0)),
        starts_at: Some(NaiveDate::MIN),
        canceled_to: None,
        custom_fields: vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_window_crossing_midnight_grants_exactly_its_minutes(
        start in 1u32..(24 * 60),
        end_offset in 0u32..(24 * 60),
        weekday in proptest::option::of(0usize..7),
    ) {
        // end ≤ start: the window runs into the next day.
        let end = end_offset % (start + 1);
        let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
        let text = format!(
            "{}{:02}:{:02}-{:02}:{:02}",
            weekday.map(|d| format!("{} ", days[d])).unwrap_or_default(),
            start / 60, start % 60, end / 60, end % 60
        );
        let schedule = Schedule::parse(&[text.as_str()]).ok();
        prop_assert!(schedule.is_some(), "{text}");
        let perms = vec![PermissionDef { group: "a".into(), unit: "site".into(), schedule }];
        let mut m = membership_strategy_fixed();
        m.plan = Some(MembershipPlan { name: None, parent_plan_id: Some("p1".into()), canceled_to: None });
        let s = compile(&cobot(m), &policy(perms, vec![]), 1, moment(0));
        // A winter week in Berlin (no DST change), Monday 2026-01-05 00:00 local to the next.
        let week_start = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap().with_timezone(&Utc);
        let granted = (0..7 * 24 * 60)
            .filter(|i| ask(&s, "door", week_start + TimeDelta::minutes(*i)))
            .count();
        let per_start = (24 * 60 - start + end) as usize;
        let starts = if weekday.is_some() { 1 } else { 7 };
        prop_assert_eq!(granted, per_start * starts);
    }
}
