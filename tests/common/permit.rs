//! Permits for lock tests, made the only way permits are made: by `decide` (a staff open on a
//! one-unit site whose unit names the lock).

#![allow(dead_code)] // reason: each test binary uses a different part of the harness
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: test harness: failing loudly is the point

use std::time::Duration;

use chrono::{TimeZone, Utc};
use portier::domain::model::{OfflinePolicy, Policy, UnitDef};
use portier::domain::{Credential, Moment, Permit, Request, compile, decide};
use portier::locks::Command;

/// A permit to open `lock` for `open_for`.
pub fn permit(lock: &str, open_for: Duration) -> Permit {
    let policy = Policy {
        timezone: chrono_tz::Europe::Berlin,
        groups: Vec::new(),
        assignments: Vec::new(),
        fallback_plan: None,
        additional_groups_field: None,
        require_connected_user: true,
        units: vec![UnitDef {
            id: "door".into(),
            parent: None,
            lock: Some(lock.into()),
            open_for,
            unlocked: None,
        }],
        permissions: Vec::new(),
        holidays: Vec::new(),
        overrides: Vec::new(),
        offline: OfflinePolicy::default(),
        booking_grace: Duration::ZERO,
        lockdown_groups: Vec::new(),
    };
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let snapshot = compile(&Default::default(), &policy, 1, at);
    let request = Request {
        unit: snapshot.unit("door").unwrap(),
        credential: Credential::Admin,
    };
    decide(&snapshot, &request, &Moment::trusted(at))
        .into_permit()
        .expect("a staff open is granted")
}

/// A lock command for the unit `door`.
pub fn cmd(decision_id: &str) -> Command {
    Command {
        decision_id: decision_id.into(),
        unit: "door".into(),
    }
}
