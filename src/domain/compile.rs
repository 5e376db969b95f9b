//! `compile`: Cobot's data and the site's policy become a [`Snapshot`].
//!
//! This module owns the policy side (groups, the unit tree, permissions, plans and their
//! assignments, the fallback plan); `compile_members` owns the member side. Compile is pure and
//! total: it never panics, and a reference that does not resolve is skipped and reported (as a
//! warning, or as an error of the member concerned), never guessed. The fallback plan names a
//! Cobot plan, so only here can it be resolved: one that matches no plan, or a plan without an
//! assignment, is the report's `fallback_problem` and an error of the members it would apply to.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::compile_members::compile_members;
use super::groups::{GroupIndex, compile_groups, idx, resolve_groups};
use super::model::{CobotData, Policy};
use super::pos_index::PosIndex;
use super::snapshot::{BookingRule, CompileReport, Grant, Perm, Plan, Snapshot, Unit};

/// Compiles a snapshot. Pure: the same inputs give the same snapshot, and no input panics.
pub fn compile(
    data: &CobotData,
    policy: &Policy,
    version: u64,
    synced_at: DateTime<Utc>,
) -> Snapshot {
    let mut warnings = Vec::new();
    let (groups, group_index) = compile_groups(policy, &mut warnings);
    let (units, unit_index, perms) = compile_units(policy, &group_index, &mut warnings);
    let mut groups = groups;
    for p in &perms {
        if let Some(g) = groups.get_mut(p.group as usize) {
            g.has_permission = true;
        }
    }
    let (plans, plan_by_id, fallback) = compile_plans(data, policy, &group_index, &mut warnings);
    let (fallback, fallback_problem) = match fallback {
        Fallback::None => (None, None),
        Fallback::Plan(p) => (Some(p), None),
        Fallback::Unresolved(problem) => {
            warnings.push(problem.clone());
            (None, Some(problem))
        }
    };
    let mut holidays = policy.holidays.clone();
    holidays.sort_unstable();
    holidays.dedup();

    let mut snapshot = Snapshot {
        version,
        synced_at,
        tz: policy.timezone,
        report: CompileReport {
            plans: data.plans.len(),
            malformed: data.malformed.len(),
            fallback_problem,
            ..CompileReport::default()
        },
        units,
        unit_index,
        groups,
        perms,
        plans,
        // Sized once for every membership: growing them by doubling would leave the freed
        // smaller tables behind as heap fragments the daemon keeps (see BENCHMARKS.md).
        members: Vec::with_capacity(data.memberships.len()),
        member_index: PosIndex::with_capacity(data.memberships.len()),
        email_index: PosIndex::with_capacity(data.memberships.len()),
        user_index: PosIndex::with_capacity(data.memberships.len()),
        cards: Vec::with_capacity(data.check_in_tokens.len()),
        card_index: PosIndex::with_capacity(data.check_in_tokens.len()),
        overrides: Vec::new(),
        holidays,
        offline_max_age: policy.offline.max_age.map(delta),
        offline_max_age_std: policy.offline.max_age,
        booking_grace: delta(policy.booking_grace),
        booking_grace_std: policy.booking_grace,
        additional_groups_field: policy.additional_groups_field.clone(),
    };
    compile_members(
        &mut snapshot,
        data,
        policy,
        &group_index,
        &plan_by_id,
        fallback,
        &mut warnings,
    );
    snapshot.report.warnings = warnings;
    snapshot
}

/// A std duration as a chrono one, saturating (config durations are far below the limit).
fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn compile_units(
    policy: &Policy,
    groups: &GroupIndex,
    warnings: &mut Vec<String>,
) -> (Vec<Unit>, HashMap<String, u32>, Vec<Perm>) {
    let mut units = Vec::with_capacity(policy.units.len());
    let mut index = HashMap::new();
    let mut parent_ids = Vec::with_capacity(policy.units.len());
    for u in &policy.units {
        if index.contains_key(&u.id) {
            warnings.push(format!(
                "unit \"{}\" is defined twice; the first one counts",
                u.id
            ));
            continue;
        }
        index.insert(u.id.clone(), idx(units.len()));
        parent_ids.push(u.parent.as_deref());
        units.push(Unit {
            id: u.id.clone(),
            lock: u.lock.as_deref().map(Arc::from),
            open_for: u.open_for,
            unlocked: u.unlocked.clone(),
            grants: Vec::new(),
        });
    }
    let parents: Vec<Option<u32>> = parent_ids
        .iter()
        .zip(&units)
        .map(|(parent, unit)| {
            let parent = (*parent)?;
            let found = index.get(parent).copied();
            if found.is_none() {
                warnings.push(format!(
                    "unit \"{}\" has unknown parent \"{parent}\"",
                    unit.id
                ));
            }
            found
        })
        .collect();

    let mut perms = Vec::with_capacity(policy.permissions.len());
    let mut perms_on_unit: Vec<Vec<u32>> = vec![Vec::new(); units.len()];
    for p in &policy.permissions {
        let group = groups.get(&p.group.to_lowercase()).copied();
        let unit = index.get(&p.unit).copied();
        let (Some(group), Some(unit)) = (group, unit) else {
            warnings.push(format!(
                "permission of group \"{}\" on unit \"{}\" names an unknown group or unit",
                p.group, p.unit
            ));
            continue;
        };
        if let Some(list) = perms_on_unit.get_mut(unit as usize) {
            list.push(idx(perms.len()));
        }
        perms.push(Perm {
            group,
            unit,
            schedule: p.schedule.clone(),
        });
    }

    // Each unit collects the permissions on itself and its ancestors. The walk is bounded by the
    // number of units, so a parent cycle (which config checks reject) cannot loop forever.
    for u in 0..units.len() {
        let mut grants = Vec::new();
        let mut at = Some(idx(u));
        let mut steps = 0;
        while let Some(current) = at {
            if steps > units.len() {
                warnings.push(format!("unit \"{}\" is in a parent cycle", units[u].id));
                break;
            }
            steps += 1;
            for &p in perms_on_unit.get(current as usize).into_iter().flatten() {
                if let Some(perm) = perms.get(p as usize) {
                    grants.push(Grant {
                        group: perm.group,
                        perm: p,
                    });
                }
            }
            at = parents.get(current as usize).copied().flatten();
        }
        grants.sort_unstable();
        grants.dedup();
        units[u].grants = grants;
    }
    (units, index, perms)
}

/// How the configured fallback plan resolved against Cobot's plans.
enum Fallback {
    /// None is configured.
    None,
    /// This plan; its assignments apply.
    Plan(u32),
    /// It does not apply, for this reason (a sentence for sync, health and member errors).
    Unresolved(String),
}

/// Plans, the plan index by id, and the fallback plan.
fn compile_plans(
    data: &CobotData,
    policy: &Policy,
    groups: &GroupIndex,
    warnings: &mut Vec<String>,
) -> (Vec<Plan>, HashMap<String, u32>, Fallback) {
    let mut plans: Vec<Plan> = data
        .plans
        .iter()
        .map(|p| Plan {
            name: p.name.clone(),
            groups: Vec::new(),
            booking: Vec::new(),
        })
        .collect();
    let mut by_id: HashMap<String, u32> = HashMap::new();
    let mut by_name: HashMap<&str, Vec<u32>> = HashMap::new();
    for (i, p) in data.plans.iter().enumerate() {
        by_id.entry(p.id.clone()).or_insert(idx(i));
        by_name.entry(p.name.as_str()).or_default().push(idx(i));
    }

    // The fallback resolves like an assignment (id, then exact name), against Cobot's plans
    // only: the configuration cannot know them, so a miss is reported here, never refused there.
    let fallback = policy.fallback_plan.as_deref().map(|f| {
        if let Some(&p) = by_id.get(f) {
            return Ok(p);
        }
        match by_name.get(f).map(Vec::as_slice) {
            Some([p]) => Ok(*p),
            Some([p, ..]) => {
                warnings.push(format!(
                    "fallback plan \"{f}\" matches several Cobot plans; the first one applies"
                ));
                Ok(*p)
            }
            _ => Err(format!(
                "the fallback plan \"{f}\" is unresolved: it matches no Cobot plan by id or \
                 exact name"
            )),
        }
    });
    let mut assigned_plans = vec![false; plans.len()];

    for a in &policy.assignments {
        let targets: Vec<u32> = match by_id.get(&a.plan) {
            Some(&p) => vec![p],
            None => by_name.get(a.plan.as_str()).cloned().unwrap_or_default(),
        };
        match targets.len() {
            0 => warnings.push(format!(
                "assignment plan \"{}\" matches no Cobot plan",
                a.plan
            )),
            1 => {}
            n => warnings.push(format!(
                "assignment plan \"{}\" matches {n} Cobot plans by name; it applies to all of them",
                a.plan
            )),
        }
        let context = format!("assignment of plan \"{}\"", a.plan);
        let assigned = resolve_groups(&a.groups, groups, &context, warnings);
        for t in targets {
            if let Some(flag) = assigned_plans.get_mut(t as usize) {
                *flag = true;
            }
            let Some(plan) = plans.get_mut(t as usize) else {
                continue;
            };
            if a.requires_booking {
                plan.booking.push(BookingRule {
                    groups: assigned.clone(),
                    resources: a.booking_resources.clone(),
                });
            } else {
                plan.groups.extend(&assigned);
            }
        }
    }
    for plan in &mut plans {
        plan.groups.sort_unstable();
        plan.groups.dedup();
    }
    let fallback = match (policy.fallback_plan.as_deref(), fallback) {
        (_, None) => Fallback::None,
        (_, Some(Err(problem))) => Fallback::Unresolved(problem),
        (Some(f), Some(Ok(p))) if !assigned_plans.get(p as usize).copied().unwrap_or(false) => {
            let name = plans.get(p as usize).map_or("", |p| p.name.as_str());
            Fallback::Unresolved(format!(
                "the fallback plan \"{f}\" is unresolved: Cobot plan \"{name}\" has no \
                 [[assignment]], so it would give no groups"
            ))
        }
        (_, Some(Ok(p))) => Fallback::Plan(p),
    };
    (plans, by_id, fallback)
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
