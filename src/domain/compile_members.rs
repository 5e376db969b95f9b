//! The member side of `compile`: which memberships are synced, their plans, validity, extra
//! groups, overrides, cards and bookings, and the indexes to find them.
//!
//! Errors that concern one member go into that member's `errors`; problems of the
//! configuration go into the report's warnings. Nothing here panics on any input.

use std::collections::HashMap;

use super::card::normalize_card;
use super::groups::{GroupIndex, idx, resolve_groups};
use super::model::{CobotData, CobotMembership, MembershipPlan, Policy};
use super::snapshot::{
    Card, Member, Override, PlanRef, Snapshot, Span, Upcoming, card_key, member_email_key,
    member_id_key, member_user_key,
};

/// Adds the synced members of `data` to `s`, with their indexes, overrides, cards and bookings.
pub(crate) fn compile_members(
    s: &mut Snapshot,
    data: &CobotData,
    policy: &Policy,
    groups: &GroupIndex,
    plan_by_id: &HashMap<String, u32>,
    fallback: Option<u32>,
    warnings: &mut Vec<String>,
) {
    let resolve_plan = |plan: Option<&MembershipPlan>| -> PlanRef {
        let known = plan
            .and_then(|p| p.parent_plan_id.as_deref())
            .and_then(|id| plan_by_id.get(id));
        match (known, fallback) {
            (Some(&p), _) => PlanRef::Known(p),
            (None, Some(f)) => PlanRef::Fallback(f),
            (None, None) => PlanRef::Missing,
        }
    };
    for m in &data.memberships {
        let connected = m.user_id.as_deref().is_some_and(|u| !u.is_empty());
        if policy.require_connected_user && !connected {
            s.report.skipped_not_connected += 1;
            continue;
        }
        if s.member_index.contains(&m.id, member_id_key(&s.members)) {
            warnings.push(format!(
                "membership {} is listed twice; the first one counts",
                m.id
            ));
            continue;
        }
        let mut errors = Vec::new();
        let extra = extra_groups(m, policy, groups, &mut errors);
        let member = Member {
            id: m.id.clone(),
            name: m.name.clone(),
            email: m.email.clone(),
            user_id: m.user_id.clone().filter(|u| !u.is_empty()),
            confirmed: m.confirmed_at.is_some(),
            valid_from: m.starts_at,
            valid_until: valid_until(m),
            plan: resolve_plan(m.plan.as_ref()),
            upcoming: m.upcoming_plan.as_ref().map(|up| Upcoming {
                starts: up.starts_at,
                plan: resolve_plan(Some(&up.plan)),
            }),
            extra,
            overrides: Vec::new(),
            bookings: Vec::new(),
            errors,
        };
        let i = idx(s.members.len());
        s.members.push(member);
        let member = &s.members[s.members.len() - 1];
        s.member_index
            .insert(&member.id, i, member_id_key(&s.members));
        if let Some(email) = member
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            s.email_index
                .insert(&email.to_lowercase(), i, member_email_key(&s.members));
        }
        if let Some(user) = &member.user_id {
            s.user_index.insert(user, i, member_user_key(&s.members));
        }
    }
    compile_overrides(s, policy, groups, warnings);
    compile_cards(s, data);
    for b in &data.bookings {
        let member = s
            .member_index
            .get(&b.membership_id, member_id_key(&s.members))
            .and_then(|m| s.members.get_mut(m as usize));
        if let Some(member) = member {
            member.bookings.push(Span {
                from: b.from,
                to: b.to,
                resource: b.resource_id.clone(),
            });
        }
    }
    let today = s.local_date(s.synced_at);
    for member in &mut s.members {
        member.bookings.sort_by_key(|b| b.from);
    }
    // The snapshot lives until the next sync: give back what was reserved for skipped members.
    s.members.shrink_to_fit();
    s.cards.shrink_to_fit();
    s.report.members = s.members.len();
    s.report.members_with_errors = s
        .members
        .iter()
        .filter(|m| !m.errors.is_empty() || !matches!(m.plan_on(today).0, PlanRef::Known(_)))
        .count();
}

/// The last valid day: the earliest of the membership's `canceled_to` and its plan copies'.
/// The current copy's `canceled_to` does not count when the upcoming plan takes over by the
/// next day (Cobot cancels the old copy on a plan change; the member stays).
fn valid_until(m: &CobotMembership) -> Option<chrono::NaiveDate> {
    let current = m.plan.as_ref().and_then(|p| p.canceled_to);
    let current = match (current, &m.upcoming_plan) {
        (Some(end), Some(up)) if end.succ_opt().is_some_and(|next| up.starts_at <= next) => None,
        (end, _) => end,
    };
    let upcoming = m.upcoming_plan.as_ref().and_then(|u| u.plan.canceled_to);
    [m.canceled_to, current, upcoming]
        .into_iter()
        .flatten()
        .min()
}

/// Groups named by the configured custom field; unknown names become member errors.
fn extra_groups(
    m: &CobotMembership,
    policy: &Policy,
    groups: &GroupIndex,
    errors: &mut Vec<String>,
) -> Vec<u32> {
    let Some(label) = policy.additional_groups_field.as_deref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let fields = m
        .custom_fields
        .iter()
        .filter(|f| f.label.eq_ignore_ascii_case(label));
    for entry in fields.flat_map(|f| f.value.split(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        match groups.get(&entry.to_lowercase()) {
            Some(&g) => out.push(g),
            None => errors.push(format!("unknown group \"{entry}\" in {label}")),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn compile_overrides(
    s: &mut Snapshot,
    policy: &Policy,
    groups: &GroupIndex,
    warnings: &mut Vec<String>,
) {
    for o in &policy.overrides {
        let key = o.member.trim();
        let targets: Vec<u32> = match s.member_index.get(key, member_id_key(&s.members)) {
            Some(m) => vec![m],
            None => s
                .email_index
                .all(&key.to_lowercase(), member_email_key(&s.members)),
        };
        match targets.as_slice() {
            [] => {
                warnings.push(format!("override \"{key}\" matches no synced member"));
                continue;
            }
            [_] => {}
            several => {
                let ids: Vec<&str> = several
                    .iter()
                    .filter_map(|&m| s.member(m).map(|m| m.id.as_str()))
                    .collect();
                let error = match ids.as_slice() {
                    [a, b] => format!(
                        "override \"{key}\" matches members {a} and {b} by email; it applies to neither"
                    ),
                    _ => format!(
                        "override \"{key}\" matches members {} by email; it applies to none of them",
                        ids.join(", ")
                    ),
                };
                warnings.push(error.clone());
                for &m in several {
                    if let Some(member) = s.members.get_mut(m as usize) {
                        member.errors.push(error.clone());
                    }
                }
                continue;
            }
        }
        let context = format!("override \"{key}\"");
        let add_groups = resolve_groups(&o.add_groups, groups, &context, warnings);
        let oi = idx(s.overrides.len());
        s.overrides.push(Override {
            key: key.to_owned(),
            add_groups,
            blocked: o.blocked,
            until: o.until,
        });
        for m in targets {
            if let Some(member) = s.members.get_mut(m as usize) {
                member.overrides.push(oi);
            }
        }
    }
}

/// Cards of synced members; a card of several members opens nothing and is an error of each.
fn compile_cards(s: &mut Snapshot, data: &CobotData) {
    for t in &data.check_in_tokens {
        let Some(m) = s
            .member_index
            .get(&t.membership_id, member_id_key(&s.members))
        else {
            continue;
        };
        let token = match normalize_card(&t.token) {
            Ok(token) => token,
            Err(e) => {
                let shown: String = t.token.escape_default().take(64).collect();
                if let Some(member) = s.members.get_mut(m as usize) {
                    member.errors.push(format!(
                        "check-in token \"{shown}\" is not a card id: {e}; it opens nothing"
                    ));
                }
                continue;
            }
        };
        match s.card_index.get(&token, card_key(&s.cards)) {
            Some(c) => {
                if let Some(card) = s.cards.get_mut(c as usize)
                    && !card.owners.contains(&m)
                {
                    card.owners.push(m);
                }
            }
            None => {
                let c = idx(s.cards.len());
                s.cards.push(Card {
                    token,
                    owners: vec![m],
                });
                let token = &s.cards[s.cards.len() - 1].token;
                s.card_index.insert(token, c, card_key(&s.cards));
            }
        }
    }
    for card in s.cards.iter().filter(|c| c.owners.len() > 1) {
        let ids: Vec<&str> = card
            .owners
            .iter()
            .filter_map(|&m| s.members.get(m as usize).map(|m| m.id.as_str()))
            .collect();
        let error = format!(
            "card {} is registered to several members ({}); it opens nothing",
            card.token,
            ids.join(", ")
        );
        for &m in &card.owners {
            if let Some(member) = s.members.get_mut(m as usize) {
                member.errors.push(error.clone());
            }
        }
    }
}
