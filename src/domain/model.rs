//! The inputs of a snapshot: Cobot's data as synced and the site's policy as configured.
//!
//! Both are plain data. `cobot::wire` turns Cobot's JSON into [`CobotData`] (rejecting bad
//! records there), `config` turns the TOML file into a [`Policy`] whose references all resolve.
//! The store keeps [`CobotData`] as it is, so that a new configuration can be applied to the
//! last good sync without asking Cobot again.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::schedule::Schedule;

/// Everything one successful sync fetched from Cobot, already in domain types.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CobotData {
    /// `/api/plans`, hidden plans included.
    pub plans: Vec<CobotPlan>,
    /// `/api/memberships?all=true`, connected or not (compile counts and drops the others).
    pub memberships: Vec<CobotMembership>,
    /// `/api/check_in_tokens`: card ids as Cobot returned them (not yet normalised).
    pub check_in_tokens: Vec<CheckInToken>,
    /// `/api/bookings` of members, only fetched when an assignment requires booking.
    pub bookings: Vec<Booking>,
    /// Records skipped as malformed, each naming the record and what was wrong with it.
    pub malformed: Vec<String>,
}

/// A space plan of `/api/plans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CobotPlan {
    /// Cobot's plan id, the target of a membership's `plan.parent_plan.id`.
    pub id: String,
    /// The plan's name as shown in Cobot; assignments may match it exactly.
    pub name: String,
    /// Hidden plans are synced like visible ones.
    pub hidden: bool,
}

/// One membership of `/api/memberships`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CobotMembership {
    /// Cobot's membership id: the member's identity in Portier.
    pub id: String,
    /// The member's name.
    pub name: String,
    /// The member's email, if Cobot has one.
    pub email: Option<String>,
    /// The connected Cobot user (`user.id`); `None` when not connected to the member portal.
    pub user_id: Option<String>,
    /// The membership's own copy of its plan.
    pub plan: Option<MembershipPlan>,
    /// A plan change scheduled for a later day.
    pub upcoming_plan: Option<UpcomingPlan>,
    /// When the membership was confirmed; no access before this exists.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// First day of the membership (site-local day).
    pub starts_at: Option<NaiveDate>,
    /// Last day of the membership (site-local day), if cancelled.
    pub canceled_to: Option<NaiveDate>,
    /// The membership's custom fields (from `/api/custom_fields`, when fetched).
    pub custom_fields: Vec<CustomField>,
}

/// A membership's copy of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipPlan {
    /// The copy's name (usually the space plan's name).
    pub name: Option<String>,
    /// `plan.parent_plan.id`: the space plan this copy was made from.
    pub parent_plan_id: Option<String>,
    /// The plan copy's own `canceled_to`.
    pub canceled_to: Option<NaiveDate>,
}

/// `upcoming_plan`: the plan a member switches to on `starts_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpcomingPlan {
    /// The plan copy that takes effect.
    pub plan: MembershipPlan,
    /// The site-local day of the switch.
    pub starts_at: NaiveDate,
}

/// One custom field value of a membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomField {
    /// The field's label, e.g. `smart_spaces_access_additional_units`.
    pub label: String,
    /// The value as Cobot stores it (a string).
    pub value: String,
}

/// A check-in token: a card or tag id registered to a membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInToken {
    /// The card id as Cobot returned it.
    pub token: String,
    /// The membership it belongs to.
    pub membership_id: String,
}

/// A booking of a resource by a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    /// The booking member.
    pub membership_id: String,
    /// The booked resource, if Cobot named one.
    pub resource_id: Option<String>,
    /// Start of the booking.
    pub from: DateTime<Utc>,
    /// End of the booking.
    pub to: DateTime<Utc>,
}

/// The site's access policy, as configured. Every reference in it resolves (config checks).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The site's IANA time zone: days and schedules are local to it.
    pub timezone: Tz,
    /// User groups, by external identifier.
    pub groups: Vec<GroupDef>,
    /// Cobot plan → groups.
    pub assignments: Vec<AssignmentDef>,
    /// The plan (id or exact name) whose groups apply when a membership's plan is unknown.
    pub fallback_plan: Option<String>,
    /// The custom field label holding extra group ids; `None` turns the feature off.
    pub additional_groups_field: Option<String>,
    /// Sync only memberships connected to a Cobot user (default true).
    pub require_connected_user: bool,
    /// Doors and areas, a tree by `parent`.
    pub units: Vec<UnitDef>,
    /// Group → unit grants.
    pub permissions: Vec<PermissionDef>,
    /// Days with no schedule-limited access (site-local).
    pub holidays: Vec<NaiveDate>,
    /// Manual per-member edits.
    pub overrides: Vec<OverrideDef>,
    /// What still opens once the last sync is too old.
    pub offline: OfflinePolicy,
    /// Booking-only plans are granted this long before and after a booking.
    pub booking_grace: Duration,
    /// `[lockdown] allow_groups`: the groups that still open while a lockdown is on.
    pub lockdown_groups: Vec<String>,
}

/// A user group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDef {
    /// External identifier: lower case, `_` for spaces.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// An assignment: a Cobot plan (by id or exact name) → groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignmentDef {
    /// Plan id or exact plan name.
    pub plan: String,
    /// Group ids given to members on that plan.
    pub groups: Vec<String>,
    /// Time-pass plan: members are granted only during one of their bookings.
    pub requires_booking: bool,
    /// Cobot resource ids whose bookings count; empty means any resource.
    pub booking_resources: Vec<String>,
}

/// A door or an area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitDef {
    /// The unit's id.
    pub id: String,
    /// The unit that holds this one.
    pub parent: Option<String>,
    /// The lock that opens this unit, if it can be opened.
    pub lock: Option<String>,
    /// How long the lock stays open.
    pub open_for: Duration,
    /// Windows in which the lock is held open for everyone (reception hours).
    pub unlocked: Option<Schedule>,
}

/// A group's permission on a unit (and every unit below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionDef {
    /// The group given access.
    pub group: String,
    /// The unit opened.
    pub unit: String,
    /// Weekly windows; `None` is 24/7.
    pub schedule: Option<Schedule>,
}

/// A manual per-member edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideDef {
    /// Membership id or email (case-insensitive).
    pub member: String,
    /// Groups given in addition to the plan's.
    pub add_groups: Vec<String>,
    /// Deny the member everything.
    pub blocked: bool,
    /// Last day (inclusive, site-local) the override applies.
    pub until: Option<NaiveDate>,
}

/// The offline ladder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfflinePolicy {
    /// Once the last successful sync is older than this, only `keep_groups` are granted.
    pub max_age: Option<Duration>,
    /// Groups still granted past `max_age`.
    pub keep_groups: Vec<String>,
}
