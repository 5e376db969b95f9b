//! The compiled snapshot: an immutable, versioned view of Cobot's data under the site's policy,
//! with every index a decision needs built once, at compile time.
//!
//! It owns the index types ([`UnitIdx`], [`MemberIdx`]) and the member views of `members`.
//! It must not change after `compile` built it: a new sync or configuration makes a new one.
//! Index-based accessors never panic; an index from another snapshot simply finds nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::card::{with_lowercase, with_normalized_card};
use super::pos_index::{Cow, PosIndex};
use super::schedule::Schedule;

/// The error text of a membership whose plan cannot be resolved (fixed by the contract).
pub const PLAN_ERROR: &str = "plan.parent_plan.id not given or incorrect";

/// A unit of one snapshot (index into its unit table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitIdx(pub(crate) u32);

/// A synced member of one snapshot (index into its member table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberIdx(pub(crate) u32);

/// What `compile` found, for `sync`'s summary and health.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompileReport {
    /// Items of `/api/plans`, hidden ones included.
    pub plans: usize,
    /// Synced members.
    pub members: usize,
    /// Memberships not synced because no Cobot user is connected.
    pub skipped_not_connected: usize,
    /// Synced members with at least one error (on the sync's day).
    pub members_with_errors: usize,
    /// Records skipped as malformed by the wire layer.
    pub malformed: usize,
    /// Problems of the configuration against Cobot's data (ambiguous plan names, ...).
    pub warnings: Vec<String>,
    /// Why the configured fallback plan does not apply (it matches no Cobot plan, or a plan
    /// without an assignment); also an error of each member it would apply to, and in health.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_problem: Option<String>,
}

impl CompileReport {
    /// The `errors` count of `sync --json`: members with errors plus malformed records.
    pub fn errors(&self) -> usize {
        self.members_with_errors + self.malformed
    }
}

/// One member as `portier members` shows it at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Cobot membership id.
    pub id: String,
    /// The member's name.
    pub name: String,
    /// The member's email.
    pub email: Option<String>,
    /// Name of the Cobot plan in force (the fallback's when it applies), `None` when none.
    pub plan: Option<String>,
    /// Effective groups: plan or fallback (booking-only ones included), custom field, overrides.
    pub groups: Vec<String>,
    /// First valid day (site-local), `None` when open.
    pub valid_from: Option<NaiveDate>,
    /// Last valid day (site-local, inclusive), `None` when open.
    pub valid_until: Option<NaiveDate>,
    /// Per-member errors.
    pub errors: Vec<String>,
}

/// A unit with everything a decision on it needs.
#[derive(Debug)]
pub(crate) struct Unit {
    pub(crate) id: String,
    pub(crate) lock: Option<Arc<str>>,
    pub(crate) open_for: Duration,
    /// Windows in which the lock is held open for everyone.
    pub(crate) unlocked: Option<super::schedule::Schedule>,
    /// Permissions on this unit or an ancestor, sorted by group.
    pub(crate) grants: Vec<Grant>,
}

impl Unit {
    /// The grants of one group on this unit.
    pub(crate) fn grants_for(&self, group: u32) -> &[Grant] {
        let start = self.grants.partition_point(|g| g.group < group);
        let len = self.grants[start..].partition_point(|g| g.group == group);
        &self.grants[start..start + len]
    }
}

/// A (group, permission) pair applying to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Grant {
    pub(crate) group: u32,
    pub(crate) perm: u32,
}

/// A user group.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    /// Some permission names this group.
    pub(crate) has_permission: bool,
    /// Listed in `offline.keep_groups`.
    pub(crate) keep_offline: bool,
    /// Still opens while a lockdown is on (`[lockdown] allow_groups`).
    pub(crate) lockdown_allowed: bool,
}

/// A permission: group → unit (and below), with an optional weekly schedule.
#[derive(Debug)]
pub(crate) struct Perm {
    pub(crate) group: u32,
    pub(crate) unit: u32,
    pub(crate) schedule: Option<Schedule>,
}

/// A Cobot plan (or the configured fallback when it is not one) with its assigned groups.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) name: String,
    pub(crate) groups: Vec<u32>,
    pub(crate) booking: Vec<BookingRule>,
}

/// Groups of a booking-only assignment.
#[derive(Debug)]
pub(crate) struct BookingRule {
    pub(crate) groups: Vec<u32>,
    /// Resource ids whose bookings count; empty means any.
    pub(crate) resources: Vec<String>,
}

/// The plan of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanRef {
    /// The parent plan resolved to this plan.
    Known(u32),
    /// The parent plan is unknown; the fallback plan applies.
    Fallback(u32),
    /// The parent plan is unknown and there is no fallback.
    Missing,
}

impl PlanRef {
    pub(crate) fn plan(self) -> Option<u32> {
        match self {
            Self::Known(p) | Self::Fallback(p) => Some(p),
            Self::Missing => None,
        }
    }
}

/// A scheduled plan switch.
#[derive(Debug)]
pub(crate) struct Upcoming {
    pub(crate) starts: NaiveDate,
    pub(crate) plan: PlanRef,
}

/// Where a member stands on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Validity {
    Valid,
    NotConfirmed,
    NotYet,
    Ended,
}

/// A booking of a member, as a span.
#[derive(Debug)]
pub(crate) struct Span {
    pub(crate) from: DateTime<Utc>,
    pub(crate) to: DateTime<Utc>,
    pub(crate) resource: Option<String>,
}

/// A synced member.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) email: Option<String>,
    pub(crate) user_id: Option<String>,
    pub(crate) confirmed: bool,
    pub(crate) valid_from: Option<NaiveDate>,
    pub(crate) valid_until: Option<NaiveDate>,
    pub(crate) plan: PlanRef,
    pub(crate) upcoming: Option<Upcoming>,
    /// Groups from the custom field.
    pub(crate) extra: Vec<u32>,
    /// Overrides that apply to this member.
    pub(crate) overrides: Vec<u32>,
    /// Bookings, sorted by start.
    pub(crate) bookings: Vec<Span>,
    /// Errors that do not depend on the day (the plan error is added per day).
    pub(crate) errors: Vec<String>,
}

impl Member {
    /// The plan in force on a local day, and whether it is the upcoming one.
    pub(crate) fn plan_on(&self, date: NaiveDate) -> (PlanRef, bool) {
        match &self.upcoming {
            Some(up) if date >= up.starts => (up.plan, true),
            _ => (self.plan, false),
        }
    }

    /// Validity on a local day.
    pub(crate) fn validity_on(&self, date: NaiveDate) -> Validity {
        if !self.confirmed {
            Validity::NotConfirmed
        } else if self.valid_from.is_some_and(|from| date < from) {
            Validity::NotYet
        } else if self.valid_until.is_some_and(|until| date > until) {
            Validity::Ended
        } else {
            Validity::Valid
        }
    }

    /// A booking on one of `resources` (any when empty) covers `at`, with `grace` either side.
    pub(crate) fn booked_at(
        &self,
        resources: &[String],
        at: DateTime<Utc>,
        grace: TimeDelta,
    ) -> bool {
        self.bookings.iter().any(|b| {
            let resource_ok =
                resources.is_empty() || b.resource.as_ref().is_some_and(|r| resources.contains(r));
            let from = b
                .from
                .checked_sub_signed(grace)
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            let to =
                b.to.checked_add_signed(grace)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC);
            resource_ok && from <= at && at <= to
        })
    }
}

/// A manual per-member edit, resolved.
#[derive(Debug)]
pub(crate) struct Override {
    /// The configured `member` key (id or email).
    pub(crate) key: String,
    pub(crate) add_groups: Vec<u32>,
    pub(crate) blocked: bool,
    pub(crate) until: Option<NaiveDate>,
}

impl Override {
    pub(crate) fn active_on(&self, date: NaiveDate) -> bool {
        self.until.is_none_or(|until| date <= until)
    }
}

/// A card id (normalised) and the synced members it is registered to.
#[derive(Debug)]
pub(crate) struct Card {
    pub(crate) token: String,
    pub(crate) owners: Vec<u32>,
}

/// How a member id or email resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    One(u32),
    /// An email shared by several members (the first two).
    Shared(u32, u32),
    Unknown,
}

/// The compiled, immutable view decisions are made from.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) version: u64,
    pub(crate) synced_at: DateTime<Utc>,
    pub(crate) tz: Tz,
    pub(crate) report: CompileReport,
    pub(crate) units: Vec<Unit>,
    pub(crate) unit_index: HashMap<String, u32>,
    pub(crate) groups: Vec<Group>,
    pub(crate) perms: Vec<Perm>,
    pub(crate) plans: Vec<Plan>,
    pub(crate) members: Vec<Member>,
    /// Membership id → member (keys: [`member_id_key`]).
    pub(crate) member_index: PosIndex,
    /// Trimmed lower-case email → members with it (keys: [`member_email_key`]).
    pub(crate) email_index: PosIndex,
    /// Cobot user id → members (keys: [`member_user_key`]); [`Snapshot::members_of_user`]
    /// orders them.
    pub(crate) user_index: PosIndex,
    pub(crate) cards: Vec<Card>,
    /// Normalised card id → card (keys: [`card_key`]).
    pub(crate) card_index: PosIndex,
    pub(crate) overrides: Vec<Override>,
    /// Sorted.
    pub(crate) holidays: Vec<NaiveDate>,
    pub(crate) offline_max_age: Option<TimeDelta>,
    pub(crate) offline_max_age_std: Option<Duration>,
    pub(crate) booking_grace: TimeDelta,
    pub(crate) booking_grace_std: Duration,
    pub(crate) additional_groups_field: Option<String>,
}

/// The key of [`Snapshot::member_index`]: the membership id.
pub(crate) fn member_id_key<'m>(members: &'m [Member]) -> impl Fn(u32) -> Cow<'m> + Copy + 'm {
    move |p| Cow::Borrowed(members.get(p as usize).map_or("", |m| m.id.as_str()))
}

/// The key of [`Snapshot::email_index`]: the trimmed, lower-cased email (made on each compare;
/// emails are looked up by `explain`, overrides and admin opens, never by a card swipe).
pub(crate) fn member_email_key<'m>(members: &'m [Member]) -> impl Fn(u32) -> Cow<'m> + Copy + 'm {
    move |p| {
        let email = members.get(p as usize).and_then(|m| m.email.as_deref());
        Cow::Owned(email.map(|e| e.trim().to_lowercase()).unwrap_or_default())
    }
}

/// The key of [`Snapshot::user_index`]: the Cobot user id.
pub(crate) fn member_user_key<'m>(members: &'m [Member]) -> impl Fn(u32) -> Cow<'m> + Copy + 'm {
    move |p| {
        Cow::Borrowed(
            members
                .get(p as usize)
                .and_then(|m| m.user_id.as_deref())
                .unwrap_or(""),
        )
    }
}

/// The key of [`Snapshot::card_index`]: the normalised card id.
pub(crate) fn card_key<'c>(cards: &'c [Card]) -> impl Fn(u32) -> Cow<'c> + Copy + 'c {
    move |p| Cow::Borrowed(cards.get(p as usize).map_or("", |c| c.token.as_str()))
}

impl Snapshot {
    /// The snapshot's version (one per sync, start or reload).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// When the Cobot data it was compiled from was fetched.
    pub fn synced_at(&self) -> DateTime<Utc> {
        self.synced_at
    }

    /// The site's time zone.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// What compile found.
    pub fn report(&self) -> &CompileReport {
        &self.report
    }

    /// A unit by id.
    pub fn unit(&self, id: &str) -> Option<UnitIdx> {
        self.unit_index.get(id).map(|&u| UnitIdx(u))
    }

    /// A unit's id (empty for an index of another snapshot).
    pub(crate) fn unit_id(&self, u: UnitIdx) -> &str {
        self.units.get(u.0 as usize).map_or("", |u| u.id.as_str())
    }

    /// The lock that opens a unit, if any.
    pub fn unit_lock(&self, u: UnitIdx) -> Option<&str> {
        self.units.get(u.0 as usize).and_then(|u| u.lock.as_deref())
    }

    /// All unit ids, in configuration order.
    pub fn unit_ids(&self) -> impl Iterator<Item = &str> {
        self.units.iter().map(|u| u.id.as_str())
    }

    /// A synced member by membership id, else by email (case-insensitive, and only when one
    /// member has it).
    pub(crate) fn find_member(&self, id_or_email: &str) -> Option<MemberIdx> {
        match self.lookup_member(id_or_email) {
            Lookup::One(m) => Some(MemberIdx(m)),
            Lookup::Shared(..) | Lookup::Unknown => None,
        }
    }

    /// A member's membership id (empty for an index of another snapshot).
    pub fn member_id(&self, m: MemberIdx) -> &str {
        self.members.get(m.0 as usize).map_or("", |m| m.id.as_str())
    }

    /// A member's name (empty for an index of another snapshot).
    pub fn member_name(&self, m: MemberIdx) -> &str {
        self.members
            .get(m.0 as usize)
            .map_or("", |m| m.name.as_str())
    }

    /// The synced member connected to a Cobot user (the most recent membership when several).
    pub(crate) fn member_by_user(&self, user_id: &str) -> Option<MemberIdx> {
        self.members_of_user(user_id).first().map(|&m| MemberIdx(m))
    }

    /// The members connected to a Cobot user, the open-ended or latest-ending membership first
    /// (then the latest-starting; then Cobot's order).
    pub(crate) fn members_of_user(&self, user_id: &str) -> Vec<u32> {
        let mut list = self.user_index.all(user_id, member_user_key(&self.members));
        list.sort_by_key(|&m| {
            let member = self.members.get(m as usize);
            let until = member.and_then(|m| m.valid_until);
            let from = member.and_then(|m| m.valid_from);
            (std::cmp::Reverse((until.is_none(), until, from)), m)
        });
        list
    }

    /// Synced members as `portier members` lists them at a moment.
    pub fn members_at(&self, at: DateTime<Utc>) -> Vec<MemberView> {
        let date = self.local_date(at);
        (0..self.members.len())
            .filter_map(|i| self.member_view(MemberIdx(u32::try_from(i).ok()?), date))
            .collect()
    }

    /// One member as `portier members` shows it at a moment.
    pub(crate) fn member_at(&self, m: MemberIdx, at: DateTime<Utc>) -> Option<MemberView> {
        self.member_view(m, self.local_date(at))
    }

    /// Number of synced members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub(crate) fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }

    fn member_view(&self, m: MemberIdx, date: NaiveDate) -> Option<MemberView> {
        let member = self.members.get(m.0 as usize)?;
        let (plan, _) = member.plan_on(date);
        let mut groups: Vec<&str> = self
            .effective_groups(member, date)
            .filter_map(|g| self.group_id(g))
            .collect();
        groups.sort_unstable();
        groups.dedup();
        let mut errors = Vec::with_capacity(member.errors.len() + 2);
        if !matches!(plan, PlanRef::Known(_)) {
            errors.push(PLAN_ERROR.to_owned());
            errors.extend(self.report.fallback_problem.iter().cloned());
        }
        errors.extend(member.errors.iter().cloned());
        Some(MemberView {
            id: member.id.clone(),
            name: member.name.clone(),
            email: member.email.clone(),
            plan: plan.plan().map(|p| self.plan_name(p).to_owned()),
            groups: groups.into_iter().map(str::to_owned).collect(),
            valid_from: member.valid_from,
            valid_until: member.valid_until,
            errors,
        })
    }

    /// The groups a member holds on a day (unsorted, may repeat): plan or fallback including
    /// booking-only groups, custom field, and overrides in force.
    pub(crate) fn effective_groups<'s>(
        &'s self,
        member: &'s Member,
        date: NaiveDate,
    ) -> impl Iterator<Item = u32> + 's {
        let plan = member
            .plan_on(date)
            .0
            .plan()
            .and_then(|p| self.plans.get(p as usize));
        let plan_groups = plan.into_iter().flat_map(|p| {
            p.groups
                .iter()
                .chain(p.booking.iter().flat_map(|r| r.groups.iter()))
        });
        let override_groups = self
            .active_overrides(member, date)
            .flat_map(|o| o.add_groups.iter());
        plan_groups
            .chain(member.extra.iter())
            .chain(override_groups)
            .copied()
    }

    /// The overrides of a member in force on a day.
    pub(crate) fn active_overrides<'s>(
        &'s self,
        member: &'s Member,
        date: NaiveDate,
    ) -> impl Iterator<Item = &'s Override> + 's {
        member
            .overrides
            .iter()
            .filter_map(|&o| self.overrides.get(o as usize))
            .filter(move |o| o.active_on(date))
    }

    /// Member by id, else by case-insensitive email.
    pub(crate) fn lookup_member(&self, id_or_email: &str) -> Lookup {
        if let Some(m) = self
            .member_index
            .get(id_or_email, member_id_key(&self.members))
        {
            return Lookup::One(m);
        }
        with_lowercase(id_or_email.trim(), |email| {
            match self
                .email_index
                .all(email, member_email_key(&self.members))
                .as_slice()
            {
                [one] => Lookup::One(*one),
                [a, b, ..] => Lookup::Shared(*a, *b),
                [] => Lookup::Unknown,
            }
        })
    }

    /// A card by its raw id (normalised here; a malformed id matches none).
    pub(crate) fn lookup_card(&self, raw: &str) -> Option<u32> {
        with_normalized_card(raw, |card| self.card_index.get(card, card_key(&self.cards)))
            .ok()
            .flatten()
    }

    pub(crate) fn is_holiday(&self, date: NaiveDate) -> bool {
        self.holidays.binary_search(&date).is_ok()
    }

    pub(crate) fn group_id(&self, g: u32) -> Option<&str> {
        self.groups.get(g as usize).map(|g| g.id.as_str())
    }

    pub(crate) fn plan_name(&self, p: u32) -> &str {
        self.plans.get(p as usize).map_or("", |p| p.name.as_str())
    }

    pub(crate) fn member(&self, m: u32) -> Option<&Member> {
        self.members.get(m as usize)
    }
}
