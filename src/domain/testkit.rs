//! Test fixtures for the domain: a small site (Europe/Berlin) with a building, a front door and
//! an office, and helpers to make memberships and moments. Tests only.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

use super::model::PermissionDef;
use super::model::{
    AssignmentDef, CobotData, CobotMembership, CobotPlan, GroupDef, MembershipPlan, OfflinePolicy,
    Policy, UnitDef,
};
use super::schedule::Schedule;
use super::{Credential, Decision, Moment, Request, Snapshot, compile, decide};

pub(crate) const TZ: Tz = chrono_tz::Europe::Berlin;

pub(crate) fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// A Berlin wall-clock time as UTC (the earlier one when the hour repeats).
pub(crate) fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    TZ.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

pub(crate) fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// When the fixtures were "synced": Monday 2026-03-02 09:00 Berlin.
pub(crate) fn synced_at() -> DateTime<Utc> {
    berlin(2026, 3, 2, 9, 0)
}

pub(crate) fn group(id: &str) -> GroupDef {
    GroupDef {
        id: id.into(),
        name: id.replace('_', " "),
    }
}

pub(crate) fn unit(id: &str, parent: Option<&str>, lock: Option<&str>) -> UnitDef {
    UnitDef {
        id: id.into(),
        parent: parent.map(Into::into),
        lock: lock.map(Into::into),
        open_for: Duration::from_secs(5),
        unlocked: None,
    }
}

pub(crate) fn assignment(plan: &str, groups: &[&str]) -> AssignmentDef {
    AssignmentDef {
        plan: plan.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        requires_booking: false,
        booking_resources: Vec::new(),
    }
}

pub(crate) fn permission(group: &str, unit: &str, schedule: Option<&[&str]>) -> PermissionDef {
    PermissionDef {
        group: group.into(),
        unit: unit.into(),
        schedule: schedule.map(|w| Schedule::parse(w).unwrap()),
    }
}

/// Groups full_time, drop_in, staff, night; plans Full Time (p_full) → full_time, Drop In
/// (p_drop) → drop_in; full_time 24/7 on the building, drop_in Mon-Fri 08:00-18:00 on the front
/// door, staff 24/7 on the office.
pub(crate) fn policy() -> Policy {
    Policy {
        timezone: TZ,
        groups: ["full_time", "drop_in", "staff", "night"]
            .map(group)
            .to_vec(),
        assignments: vec![
            assignment("Full Time", &["full_time"]),
            assignment("Drop In", &["drop_in"]),
        ],
        fallback_plan: None,
        additional_groups_field: None,
        require_connected_user: true,
        units: vec![
            unit("building", None, None),
            unit("front_door", Some("building"), Some("front_relay")),
            unit("office", Some("building"), Some("office_ble")),
        ],
        permissions: vec![
            permission("full_time", "building", None),
            permission("drop_in", "front_door", Some(&["Mon-Fri 08:00-18:00"])),
            permission("staff", "office", None),
        ],
        holidays: Vec::new(),
        overrides: Vec::new(),
        offline: OfflinePolicy::default(),
        booking_grace: Duration::from_secs(15 * 60),
        lockdown_groups: Vec::new(),
    }
}

pub(crate) fn plans() -> Vec<CobotPlan> {
    vec![
        CobotPlan {
            id: "p_full".into(),
            name: "Full Time".into(),
            hidden: false,
        },
        CobotPlan {
            id: "p_drop".into(),
            name: "Drop In".into(),
            hidden: true,
        },
    ]
}

pub(crate) fn plan_copy(parent: Option<&str>) -> MembershipPlan {
    MembershipPlan {
        name: None,
        parent_plan_id: parent.map(Into::into),
        canceled_to: None,
    }
}

/// A connected, confirmed member on `plan`, valid from 2026-01-01.
pub(crate) fn member(id: &str, plan: Option<&str>) -> CobotMembership {
    CobotMembership {
        id: id.into(),
        name: format!("Member {id}"),
        email: Some(format!("{id}@example.com")),
        user_id: Some(format!("user_{id}")),
        plan: Some(plan_copy(plan)),
        upcoming_plan: None,
        confirmed_at: Some(utc(2025, 12, 1, 10, 0)),
        starts_at: Some(day(2026, 1, 1)),
        canceled_to: None,
        custom_fields: Vec::new(),
    }
}

pub(crate) fn data(memberships: Vec<CobotMembership>) -> CobotData {
    CobotData {
        plans: plans(),
        memberships,
        ..CobotData::default()
    }
}

pub(crate) fn snap(data: &CobotData, policy: &Policy) -> Snapshot {
    compile(data, policy, 1, synced_at())
}

pub(crate) fn ask(s: &Snapshot, unit: &str, credential: Credential, at: DateTime<Utc>) -> Decision {
    let unit = s.unit(unit).unwrap();
    decide(s, &Request { unit, credential }, &Moment::trusted(at))
}
