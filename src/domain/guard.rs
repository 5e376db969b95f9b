//! The mass-change guard: how many currently granted members a new snapshot would lock out,
//! and how many members whose plan is known would lose it.
//!
//! A member counts as granted when valid on the day, not blocked, and holding a group that has
//! any permission. A member's plan is known when their parent plan is one of Cobot's plans on
//! the day (a member on the fallback plan has no known plan). Losing it is the sign of a Cobot
//! glitch (a plan list answered short): the members would silently fall to the fallback plan or
//! to none, gaining or losing doors, which counting revocations alone does not see. The guard
//! only counts; whether to hold a sync is the sync's decision.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::snapshot::{PlanRef, Snapshot, Validity};

/// What a new snapshot would revoke compared with the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Revocation {
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

/// How many members whose plan was known would lose it in a new snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PlanLoss {
    /// Members with a known plan in the old snapshot whose plan is unknown in the new one.
    pub lost: usize,
    /// Members with a known plan in the old snapshot.
    pub known_before: usize,
}

impl PlanLoss {
    /// Share of the members with a known plan that would lose it (0 when none had one).
    pub fn ratio(&self) -> f64 {
        if self.known_before == 0 {
            0.0
        } else {
            self.lost as f64 / self.known_before as f64
        }
    }
}

/// Members whose plan on the day of `at` is known in `old` and not in `new` (fallback or none).
/// A member that is gone from `new` does not count here; [`revocation`] sees them.
pub(crate) fn plan_loss(old: &Snapshot, new: &Snapshot, at: DateTime<Utc>) -> PlanLoss {
    let date = old.local_date(at);
    let mut loss = PlanLoss {
        lost: 0,
        known_before: 0,
    };
    for m in &old.members {
        if !matches!(m.plan_on(date).0, PlanRef::Known(_)) {
            continue;
        }
        loss.known_before += 1;
        let now = new
            .member_index
            .get(&m.id, super::snapshot::member_id_key(&new.members))
            .and_then(|i| new.members.get(i as usize));
        if now.is_some_and(|n| !matches!(n.plan_on(date).0, PlanRef::Known(_))) {
            loss.lost += 1;
        }
    }
    loss
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
pub(crate) fn revocation(old: &Snapshot, new: &Snapshot, at: DateTime<Utc>) -> Revocation {
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

    #[test]
    fn plan_loss_counts_members_whose_known_plan_vanished_from_the_plan_list() {
        let mut p = policy();
        p.fallback_plan = Some("Drop In".into());
        let members = vec![
            member("m1", Some("p_full")),
            member("m2", Some("p_full")),
            member("m3", Some("p_drop")),
            // On the fallback already: no known plan before, so not counted.
            member("m4", Some("nope")),
        ];
        let old = snap(&data(members.clone()), &p);
        let mut short = data(members);
        short.plans.retain(|plan| plan.id != "p_full");
        // m5 is new, m3 keeps its plan.
        short.memberships.push(member("m5", Some("p_full")));
        let new = snap(&short, &p);
        let loss = plan_loss(&old, &new, synced_at());
        assert_eq!(
            loss,
            PlanLoss {
                lost: 2,
                known_before: 3
            }
        );
        assert!((loss.ratio() - 2.0 / 3.0).abs() < f64::EPSILON);
        // The fallback keeps them granted: revocation alone sees nothing.
        assert_eq!(revocation(&old, &new, synced_at()).revoked, 0);
    }

    #[test]
    fn plan_loss_ignores_members_that_left_and_plans_that_stay() {
        let old = snap(
            &data(vec![
                member("m1", Some("p_full")),
                member("m2", Some("p_drop")),
            ]),
            &policy(),
        );
        let new = snap(&data(vec![member("m1", Some("p_full"))]), &policy());
        let loss = plan_loss(&old, &new, synced_at());
        assert_eq!(loss.lost, 0);
        assert_eq!(loss.known_before, 2);
        let empty = snap(&data(vec![]), &policy());
        assert_eq!(plan_loss(&empty, &new, synced_at()).ratio(), 0.0);
    }

    #[test]
    fn a_member_switching_to_an_unknown_upcoming_plan_loses_it_on_that_day() {
        let mut m = member("m1", Some("p_full"));
        m.upcoming_plan = Some(crate::domain::model::UpcomingPlan {
            plan: plan_copy(Some("p_drop")),
            starts_at: day(2026, 3, 1),
        });
        let old = snap(&data(vec![m.clone()]), &policy());
        let mut short = data(vec![m]);
        short.plans.retain(|plan| plan.id != "p_drop");
        let new = snap(&short, &policy());
        assert_eq!(plan_loss(&old, &new, synced_at()).lost, 1);
    }
}
