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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::OverrideDef;
    use crate::domain::testkit::*;

    #[test]
    fn granted_members_are_valid_unblocked_and_hold_a_group_with_a_permission() {
        let mut p = policy();
        p.assignments.push(assignment("Bare", &[]));
        p.overrides.push(OverrideDef {
            member: "m3".into(),
            add_groups: Vec::new(),
            blocked: true,
            until: None,
        });
        let mut ended = member("m2", Some("p_full"));
        ended.canceled_to = Some(day(2026, 2, 1));
        let s = snap(
            &data(vec![
                member("m1", Some("p_drop")),
                ended,
                member("m3", Some("p_full")),
                member("m4", Some("nope")),
            ]),
            &p,
        );
        let granted = granted_members(&s, synced_at());
        assert_eq!(granted, HashSet::from(["m1"]));
    }

    #[test]
    fn revocation_counts_members_granted_before_and_not_after() {
        let old = snap(
            &data(vec![
                member("m1", Some("p_full")),
                member("m2", Some("p_full")),
            ]),
            &policy(),
        );
        let new = snap(&data(vec![member("m1", Some("p_full"))]), &policy());
        let r = revocation(&old, &new, synced_at());
        assert_eq!(
            r,
            Revocation {
                revoked: 1,
                granted_before: 2
            }
        );
        assert!((r.ratio() - 0.5).abs() < f64::EPSILON);
        let empty = snap(&data(vec![]), &policy());
        assert_eq!(revocation(&empty, &new, synced_at()).ratio(), 0.0);
    }
}
