//! The access part of the file → [`Policy`]: groups, assignments, units, permissions, holidays,
//! overrides, `[offline]` and the access-shaping keys of `[cobot]`.
//!
//! Every reference must resolve (a group named by an assignment, permission, override or
//! `keep_groups`; a unit's parent and lock), ids are unique, and the unit tree has no cycle. A
//! broken reference is reported at the key that refers. The fallback plan is the exception: it
//! names a Cobot plan, which compile resolves against Cobot's plan list.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::domain::model::{
    AssignmentDef, GroupDef, OfflinePolicy, OverrideDef, PermissionDef, Policy, UnitDef,
};
use crate::domain::schedule::Schedule;

use super::bounds::Bounds;
use super::checker::{Checker, check_name};
use super::error::KeyPath;
use super::raw::{
    RawAssignment, RawCobot, RawGroup, RawHoliday, RawLockdown, RawOffline, RawOverride,
    RawPermission, RawUnit,
};

/// Default `open_for` of a unit.
const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(5);
/// Default `cobot.booking_grace`.
const DEFAULT_BOOKING_GRACE: Duration = Duration::from_secs(15 * 60);

/// The raw sections a policy is made from.
pub(crate) struct PolicyInput<'r> {
    pub timezone: chrono_tz::Tz,
    pub cobot: &'r RawCobot,
    pub offline: RawOffline,
    pub groups: Vec<RawGroup>,
    pub assignments: Vec<RawAssignment>,
    pub units: Vec<RawUnit>,
    pub permissions: Vec<RawPermission>,
    pub holidays: Vec<RawHoliday>,
    pub overrides: Vec<RawOverride>,
    pub lockdown: RawLockdown,
}

/// Checks the access sections and builds the policy (meaningful only when no error was found).
/// `lock_ids` are all ids written in `[[lock]]`, valid or not, so a broken lock is reported once.
pub(crate) fn policy(
    ck: &mut Checker<'_, '_>,
    input: PolicyInput<'_>,
    lock_ids: &HashSet<&str>,
) -> Policy {
    let groups = groups(ck, input.groups);
    let group_ids: HashSet<String> = groups.iter().map(|g| g.id.clone()).collect();
    let assignments = assignments(ck, input.assignments, &group_ids);
    let units = units(ck, input.units, lock_ids);
    let unit_ids: HashSet<&str> = units.iter().map(|u| u.id.as_str()).collect();
    let permissions = permissions(ck, input.permissions, &group_ids, &unit_ids);

    let cobot = KeyPath::root("cobot");
    // The fallback names a Cobot plan (id or exact name) that only Cobot's plan list resolves,
    // so it is resolved at compile time; an unresolved one is reported there, never refused here.
    let fallback_plan = input
        .cobot
        .fallback_plan
        .clone()
        .map(|plan| ck.non_empty(plan, &cobot.key("fallback_plan")));
    let additional_groups_field = input
        .cobot
        .additional_groups_field
        .clone()
        .map(|field| ck.non_empty(field, &cobot.key("additional_groups_field")));
    let booking_grace = ck.duration(
        input.cobot.booking_grace.as_deref(),
        &cobot.key("booking_grace"),
        DEFAULT_BOOKING_GRACE,
        Bounds::BOOKING_GRACE,
    );

    let holidays = input
        .holidays
        .iter()
        .enumerate()
        .filter_map(|(i, holiday)| {
            let key = KeyPath::root("holiday").index(i).key("date");
            let text = ck.required(holiday.date.as_deref(), &key)?;
            ck.date(text, &key)
        })
        .collect();

    let overrides = overrides(ck, input.overrides, &group_ids);

    let offline_key = KeyPath::root("offline");
    let offline = OfflinePolicy {
        max_age: input.offline.max_age.as_deref().map(|text| {
            ck.duration(
                Some(text),
                &offline_key.key("max_age"),
                Duration::ZERO,
                Bounds::OFFLINE_MAX_AGE,
            )
        }),
        keep_groups: resolve_groups(
            ck,
            input.offline.keep_groups.unwrap_or_default(),
            &offline_key.key("keep_groups"),
            &group_ids,
        ),
    };

    let lockdown_groups = resolve_groups(
        ck,
        input.lockdown.allow_groups.unwrap_or_default(),
        &KeyPath::root("lockdown").key("allow_groups"),
        &group_ids,
    );

    Policy {
        lockdown_groups,
        timezone: input.timezone,
        groups,
        assignments,
        fallback_plan,
        additional_groups_field,
        require_connected_user: input.cobot.require_connected_user.unwrap_or(true),
        units,
        permissions,
        holidays,
        overrides,
        offline,
        booking_grace,
    }
}

fn groups(ck: &mut Checker<'_, '_>, raw: Vec<RawGroup>) -> Vec<GroupDef> {
    let mut first_index: HashMap<String, usize> = HashMap::new();
    let mut groups = Vec::new();
    for (i, group) in raw.into_iter().enumerate() {
        let key = KeyPath::root("group").index(i).key("id");
        let Some(id) = ck.required(group.id.as_deref(), &key).map(str::to_owned) else {
            continue;
        };
        let external = !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !external {
            ck.report.error(
                &key,
                format!("\"{id}\" is not an external identifier (lower case letters, digits and `_`, like \"full_time\")"),
            );
        }
        if let Some(first) = first_index.get(&id) {
            ck.report.error(
                &key,
                format!("duplicate group id \"{id}\" (also group[{first}])"),
            );
            continue;
        }
        first_index.insert(id.clone(), i);
        let name = group.name.unwrap_or_else(|| id.clone());
        groups.push(GroupDef { id, name });
    }
    groups
}

fn assignments(
    ck: &mut Checker<'_, '_>,
    raw: Vec<RawAssignment>,
    group_ids: &HashSet<String>,
) -> Vec<AssignmentDef> {
    let mut assignments = Vec::new();
    for (i, assignment) in raw.into_iter().enumerate() {
        let key = KeyPath::root("assignment").index(i);
        let plan = ck
            .required(assignment.plan.as_deref(), &key.key("plan"))
            .map(str::to_owned)
            .map(|plan| ck.non_empty(plan, &key.key("plan")))
            .unwrap_or_default();
        let groups = match assignment.groups {
            Some(groups) if groups.is_empty() => {
                ck.report
                    .error(&key.key("groups"), "needs at least one group");
                groups
            }
            Some(groups) => resolve_groups(ck, groups, &key.key("groups"), group_ids),
            None => {
                ck.report.error(&key.key("groups"), "required");
                Vec::new()
            }
        };
        let requires_booking = assignment.requires_booking.unwrap_or(false);
        let booking_resources = assignment.booking_resources.unwrap_or_default();
        if !requires_booking && !booking_resources.is_empty() {
            ck.report.error(
                &key.key("booking_resources"),
                "has no effect without requires_booking = true",
            );
        }
        assignments.push(AssignmentDef {
            plan,
            groups,
            requires_booking,
            booking_resources,
        });
    }
    assignments
}

fn units(ck: &mut Checker<'_, '_>, raw: Vec<RawUnit>, lock_ids: &HashSet<&str>) -> Vec<UnitDef> {
    let mut first_index: HashMap<String, usize> = HashMap::new();
    let mut units: Vec<(usize, UnitDef)> = Vec::new();
    for (i, unit) in raw.iter().enumerate() {
        let key = KeyPath::root("unit").index(i);
        let Some(id) = ck
            .required(unit.id.as_deref(), &key.key("id"))
            .map(str::to_owned)
        else {
            continue;
        };
        check_name(ck, &id, &key.key("id"));
        if let Some(first) = first_index.get(&id) {
            ck.report.error(
                &key.key("id"),
                format!("duplicate unit id \"{id}\" (also unit[{first}])"),
            );
            continue;
        }
        first_index.insert(id.clone(), i);
        if let Some(lock) = &unit.lock
            && !lock_ids.contains(lock.as_str())
        {
            ck.report
                .error(&key.key("lock"), format!("unknown lock \"{lock}\""));
        }
        let open_for = ck.duration(
            unit.open_for.as_deref(),
            &key.key("open_for"),
            DEFAULT_OPEN_FOR,
            Bounds::OPEN_FOR,
        );
        let unlocked = schedule(ck, unit.unlocked.as_deref(), &key.key("unlocked"));
        if unlocked.is_some() && unit.lock.is_none() {
            ck.report.error(
                &key.key("unlocked"),
                "an unlock schedule holds a lock open: this unit has no `lock`",
            );
        }
        units.push((
            i,
            UnitDef {
                id,
                parent: unit.parent.clone(),
                lock: unit.lock.clone(),
                open_for,
                unlocked,
            },
        ));
    }
    for (i, unit) in &units {
        if let Some(parent) = &unit.parent
            && !first_index.contains_key(parent)
        {
            let key = KeyPath::root("unit").index(*i).key("parent");
            ck.report.error(&key, format!("unknown unit \"{parent}\""));
        }
    }
    report_cycles(ck, &units, &first_index);
    units.into_iter().map(|(_, unit)| unit).collect()
}

/// Reports each cycle of the unit tree once, at the `parent` key of its first unit in the file.
fn report_cycles(
    ck: &mut Checker<'_, '_>,
    units: &[(usize, UnitDef)],
    index_of: &HashMap<String, usize>,
) {
    let parent_of: HashMap<&str, &str> = units
        .iter()
        .filter_map(|(_, u)| Some((u.id.as_str(), u.parent.as_deref()?)))
        .collect();
    let mut reported: HashSet<&str> = HashSet::new();
    for (_, unit) in units {
        let mut path: Vec<&str> = vec![unit.id.as_str()];
        let mut current = unit.id.as_str();
        while let Some(parent) = parent_of.get(current).copied() {
            if let Some(start) = path.iter().position(|id| *id == parent) {
                let cycle = &path[start..];
                if cycle.iter().all(|id| !reported.contains(id)) {
                    reported.extend(cycle.iter().copied());
                    let first = cycle
                        .iter()
                        .filter_map(|id| index_of.get(*id).copied())
                        .min()
                        .unwrap_or_default();
                    let mut shown: Vec<&str> = cycle.to_vec();
                    shown.push(parent);
                    ck.report.error(
                        &KeyPath::root("unit").index(first).key("parent"),
                        format!("the unit tree has a cycle: {}", shown.join(" → ")),
                    );
                }
                break;
            }
            if path.len() > units.len() {
                break;
            }
            path.push(parent);
            current = parent;
        }
    }
}

/// A list of schedule windows, or an error naming the window that failed (so a long list is
/// quick to fix).
fn schedule(
    ck: &mut Checker<'_, '_>,
    windows: Option<&[String]>,
    key: &KeyPath,
) -> Option<Schedule> {
    match Schedule::parse(windows?) {
        Ok(schedule) => Some(schedule),
        Err(e) => {
            let message = match windows
                .unwrap_or_default()
                .iter()
                .find(|w| Schedule::parse(&[w]).is_err())
            {
                Some(window) => format!("window \"{window}\": {e}"),
                None => e.to_string(),
            };
            ck.report.error(key, message);
            None
        }
    }
}

fn permissions(
    ck: &mut Checker<'_, '_>,
    raw: Vec<RawPermission>,
    group_ids: &HashSet<String>,
    unit_ids: &HashSet<&str>,
) -> Vec<PermissionDef> {
    let mut permissions = Vec::new();
    for (i, permission) in raw.into_iter().enumerate() {
        let key = KeyPath::root("permission").index(i);
        let group = ck.required(permission.group.as_deref(), &key.key("group"));
        if let Some(group) = group.filter(|g| !group_ids.contains(*g)) {
            ck.report
                .error(&key.key("group"), format!("unknown group \"{group}\""));
        }
        let unit = ck.required(permission.unit.as_deref(), &key.key("unit"));
        if let Some(unit) = unit.filter(|u| !unit_ids.contains(u)) {
            ck.report
                .error(&key.key("unit"), format!("unknown unit \"{unit}\""));
        }
        let schedule = schedule(ck, permission.schedule.as_deref(), &key.key("schedule"));
        permissions.push(PermissionDef {
            group: group.unwrap_or_default().to_owned(),
            unit: unit.unwrap_or_default().to_owned(),
            schedule,
        });
    }
    permissions
}

fn overrides(
    ck: &mut Checker<'_, '_>,
    raw: Vec<RawOverride>,
    group_ids: &HashSet<String>,
) -> Vec<OverrideDef> {
    let mut overrides = Vec::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let key = KeyPath::root("override").index(i);
        let member = ck
            .required(entry.member.as_deref(), &key.key("member"))
            .map(str::to_owned)
            .map(|member| ck.non_empty(member, &key.key("member")))
            .unwrap_or_default();
        let add_groups = resolve_groups(
            ck,
            entry.add_groups.unwrap_or_default(),
            &key.key("add_groups"),
            group_ids,
        );
        let until = entry
            .until
            .as_deref()
            .and_then(|text| ck.date(text, &key.key("until")));
        overrides.push(OverrideDef {
            member,
            add_groups,
            blocked: entry.blocked.unwrap_or(false),
            until,
        });
    }
    overrides
}

/// Checks that every group in a list exists; errors point at the list's key.
fn resolve_groups(
    ck: &mut Checker<'_, '_>,
    groups: Vec<String>,
    key: &KeyPath,
    group_ids: &HashSet<String>,
) -> Vec<String> {
    for group in groups.iter().filter(|g| !group_ids.contains(*g)) {
        ck.report.error(key, format!("unknown group \"{group}\""));
    }
    groups
}
