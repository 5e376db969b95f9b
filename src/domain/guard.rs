//! The mass-revocation guard: how many currently granted members a new snapshot would lock out.
//!
//! A member counts as granted when valid on the day, not blocked, and holding a group that has
//! any permission. The guard only counts; whether to hold a sync is the sync task's decision.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::snapshot::{Snapshot, Validity};

/// What a new snapshot would revoke compared with the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// Members granted in the old snapshot and not in the new one.
    pub revoked: usize,
    /// Members granted in the old snapshot.
    pub granted_before: usize,
}

impl Revocation {
    /// Share of the granted members that would lose access (0 when none were granted).
    pub fn ratio(&self) -> f64 {
        if self.granted_before == 0 {
            0.0
        } else {
            self.revoked as f64 / self.granted_before as f64
        }
    }
}

/// Ids of the members counted as granted at `at`.
pub fn granted_members(s: &Snapshot, at: DateTime<Utc>) -> HashSet<&str> {
    let date = s.local_date(at);
    s.members
        .iter()
        .filter(|m| m.validity_on(date) == Validity::Valid)
        .filter(|m| !s.active_overrides(m, date).any(|o| o.blocked))
        .filter(|m| {
            s.effective_groups(m, date)
                .any(|g| s.groups.get(g as usize).is_some_and(|g| g.has_permission))
        })
        .map(|m| m.id.as_str())
        .collect()
}

/// Members granted by `old` but not by `new` at `at`.
pub fn revocation(old: &Snapshot, new: &Snapshot, at: DateTime<Utc>) -> Revocation {
    let before = granted_members(old, at);
    let after = granted_members(new, at);
    Revocation {
        revoked: before.iter().filter(|id| !after.contains(*id)).count(),
        granted_before: before.len(),
    }
}
