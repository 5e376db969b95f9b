//! Groups: the policy's groups compiled, and group ids resolved against them. A leaf that
//! both halves of compiling (the policy side in `compile`, the member side in
//! `compile_members`) use.

use std::collections::HashMap;

use super::model::Policy;
use super::snapshot::Group;

/// Group index by lower-case id.
pub(crate) type GroupIndex = HashMap<String, u32>;

/// A position as a table index (tables stay far below `u32::MAX`).
pub(super) fn idx(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The policy's groups, and their index by lower-case id (warnings for duplicates and unknown
/// `offline.keep_groups`).
pub(super) fn compile_groups(
    policy: &Policy,
    warnings: &mut Vec<String>,
) -> (Vec<Group>, GroupIndex) {
    let mut groups = Vec::with_capacity(policy.groups.len());
    let mut index = GroupIndex::new();
    for g in &policy.groups {
        let key = g.id.to_lowercase();
        if index.contains_key(&key) {
            warnings.push(format!(
                "group \"{}\" is defined twice; the first one counts",
                g.id
            ));
            continue;
        }
        index.insert(key, idx(groups.len()));
        groups.push(Group {
            id: g.id.clone(),
            has_permission: false,
            keep_offline: false,
            lockdown_allowed: false,
        });
    }
    for keep in &policy.offline.keep_groups {
        match index.get(&keep.to_lowercase()) {
            Some(&g) => {
                if let Some(group) = groups.get_mut(g as usize) {
                    group.keep_offline = true;
                }
            }
            None => warnings.push(format!(
                "offline.keep_groups names unknown group \"{keep}\""
            )),
        }
    }
    for allowed in &policy.lockdown_groups {
        match index.get(&allowed.to_lowercase()) {
            Some(&g) => {
                if let Some(group) = groups.get_mut(g as usize) {
                    group.lockdown_allowed = true;
                }
            }
            None => warnings.push(format!(
                "lockdown.allow_groups names unknown group \"{allowed}\""
            )),
        }
    }
    (groups, index)
}

/// Resolves group ids, reporting unknown ones with `context`.
pub(crate) fn resolve_groups(
    ids: &[String],
    index: &GroupIndex,
    context: &str,
    warnings: &mut Vec<String>,
) -> Vec<u32> {
    let mut out: Vec<u32> = ids
        .iter()
        .filter_map(|id| {
            let found = index.get(&id.trim().to_lowercase()).copied();
            if found.is_none() {
                warnings.push(format!("{context} names unknown group \"{id}\""));
            }
            found
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}
