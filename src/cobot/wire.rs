//! Cobot API v1 JSON → domain types, at the boundary.
//!
//! Each list response is first split into raw records (so one bad record cannot spoil the rest),
//! then each record is read into a lenient DTO and converted with `TryFrom` into a domain type.
//! A record that fails is skipped and named in a "malformed" message; a body that is not JSON,
//! is truncated, or is not an array fails the whole response. Unknown fields are ignored because
//! Cobot adds fields over time. Dates are `"YYYY/MM/DD"` and times `"YYYY/MM/DD HH:MM:SS +0000"`;
//! ISO 8601 / RFC 3339 forms are accepted too. Dates and times are bounded where they enter:
//! a year outside 1–9999 (Cobot's `YYYY`) makes the record malformed, so the domain's date
//! arithmetic never meets the ends of chrono's range. Two records with one membership id fail
//! the whole answer: which of them is right cannot be told, so nothing is guessed.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::domain::model::{
    Booking, CheckInToken, CobotMembership, CobotPlan, CustomField, MembershipPlan, UpcomingPlan,
};

/// Why one record was skipped (the caller adds which record it was).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub(crate) struct RecordError(pub String);

/// The records of one list response that could be read, and the ones that could not.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed<T> {
    /// Records converted into domain types, in Cobot's order.
    pub items: Vec<T>,
    /// One sentence per skipped record, naming it and the problem.
    pub malformed: Vec<String>,
}

/// An id that Cobot may send as a string or (in old or third-party data) as a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum WireId {
    /// The usual form: `"0c4f75fa14924423810d6f12aeb56fbb"`.
    Str(String),
    /// A bare JSON number.
    Num(serde_json::Number),
}

impl WireId {
    fn into_string(self) -> Option<String> {
        let s = match self {
            Self::Str(s) => s.trim().to_owned(),
            Self::Num(n) => n.to_string(),
        };
        (!s.is_empty()).then_some(s)
    }
}

/// `{"id": ...}`, as in `parent_plan`, `user`, `resource` and `membership` references.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RefDto {
    /// The referenced object's id; absent or null counts as no reference.
    pub id: Option<WireId>,
}

/// An item of `GET /api/plans`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlanDto {
    /// The space plan's id.
    pub id: Option<WireId>,
    /// Its name.
    pub name: Option<String>,
    /// Hidden plans are still synced.
    pub hidden: Option<bool>,
}

/// A membership's copy of a plan (`plan`, and the plan part of `upcoming_plan`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PlanCopyDto {
    /// The copy's name.
    pub name: Option<String>,
    /// The space plan it was made from.
    pub parent_plan: Option<RefDto>,
    /// The plan copy's own last day.
    pub canceled_to: Option<String>,
}

/// `upcoming_plan`: a plan copy plus the day it starts.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct UpcomingPlanDto {
    /// The plan copy's fields.
    #[serde(flatten)]
    pub plan: PlanCopyDto,
    /// The day of the switch.
    pub starts_at: Option<String>,
}

/// An item of `GET /api/memberships?all=true`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MembershipDto {
    /// The membership id (required).
    pub id: Option<WireId>,
    /// The member's name.
    pub name: Option<String>,
    /// The member's email.
    pub email: Option<String>,
    /// The connected user: `null`, absent, or without `id` all mean "not connected".
    pub user: Option<RefDto>,
    /// The membership's plan copy.
    pub plan: Option<PlanCopyDto>,
    /// A scheduled plan change.
    pub upcoming_plan: Option<UpcomingPlanDto>,
    /// Confirmation time.
    pub confirmed_at: Option<String>,
    /// First day.
    pub starts_at: Option<String>,
    /// Last day, when cancelled.
    pub canceled_to: Option<String>,
}

/// One field of a `GET /api/custom_fields` item.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct FieldDto {
    /// The field's label.
    pub label: Option<String>,
    /// Its value (Cobot stores strings; null is read as empty).
    pub value: Option<serde_json::Value>,
}

/// An item of `GET /api/custom_fields`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CustomFieldsDto {
    /// The membership the fields belong to.
    pub membership_id: Option<WireId>,
    /// Its fields.
    #[serde(default)]
    pub fields: Vec<FieldDto>,
}

/// One membership's custom fields, ready to merge into its [`CobotMembership`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipFields {
    /// The membership id.
    pub membership_id: String,
    /// Its fields.
    pub fields: Vec<CustomField>,
}

/// An item of `GET /api/check_in_tokens`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CheckInTokenDto {
    /// The card or tag id.
    pub token: Option<WireId>,
    /// The owning membership.
    pub membership: Option<RefDto>,
}

/// An item of `GET /api/bookings`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BookingDto {
    /// Start time.
    pub from: Option<String>,
    /// End time.
    pub to: Option<String>,
    /// The booked resource.
    pub resource: Option<RefDto>,
    /// The booking member; bookings without one (events, external bookings) are ignored.
    pub membership: Option<RefDto>,
}

/// An item of `GET /api/memberships/<id>/check_ins` (and the answer to a check-in POST).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CheckInDto {
    /// Cobot's check-in id.
    pub id: Option<WireId>,
    /// Start of the check-in.
    pub valid_from: Option<String>,
    /// End of the check-in.
    pub valid_until: Option<String>,
}

/// A Cobot check-in ("work session") of one membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckIn {
    /// Cobot's check-in id, if given.
    pub id: Option<String>,
    /// Start of the check-in.
    pub valid_from: Option<DateTime<Utc>>,
    /// End of the check-in.
    pub valid_until: Option<DateTime<Utc>>,
}

/// The years Cobot's `YYYY` can write; anything else is not a date Portier accepts.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Reads a day: `YYYY/MM/DD`, `YYYY-MM-DD`, or the date of an RFC 3339 time; years 1–9999.
pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y/%m/%d")
        .or_else(|_| NaiveDate::parse_from_str(s, "%Y-%m-%d"))
        .ok()
        .or_else(|| DateTime::parse_from_rfc3339(s).ok().map(|t| t.date_naive()))
        .filter(|d| YEARS.contains(&d.year()))
}

/// Reads a time: `YYYY/MM/DD HH:MM:SS +0000` (also with `-`, without seconds) or RFC 3339;
/// years 1–9999 in UTC.
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    const FORMATS: [&str; 4] = [
        "%Y/%m/%d %H:%M:%S %z",
        "%Y-%m-%d %H:%M:%S %z",
        "%Y/%m/%d %H:%M %z",
        "%Y-%m-%d %H:%M %z",
    ];
    let s = s.trim();
    FORMATS
        .iter()
        .find_map(|f| DateTime::parse_from_str(s, f).ok())
        .or_else(|| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| YEARS.contains(&t.year()))
}

/// Formats a time as Cobot's query parameters want it: `YYYY-MM-DD HH:MM +0000`.
pub(crate) fn format_query_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M +0000").to_string()
}

fn present(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn opt_date(field: &str, s: Option<String>) -> Result<Option<NaiveDate>, RecordError> {
    match present(s) {
        None => Ok(None),
        Some(s) => parse_date(&s)
            .map(Some)
            .ok_or_else(|| RecordError(format!("{field} {s:?} is not a date"))),
    }
}

fn opt_time(field: &str, s: Option<String>) -> Result<Option<DateTime<Utc>>, RecordError> {
    match present(s) {
        None => Ok(None),
        Some(s) => parse_time(&s)
            .map(Some)
            .ok_or_else(|| RecordError(format!("{field} {s:?} is not a time"))),
    }
}

fn ref_id(r: Option<RefDto>) -> Option<String> {
    r.and_then(|r| r.id).and_then(WireId::into_string)
}

impl TryFrom<PlanDto> for CobotPlan {
    type Error = RecordError;
    fn try_from(dto: PlanDto) -> Result<Self, RecordError> {
        let id = dto.id.and_then(WireId::into_string);
        Ok(CobotPlan {
            id: id.ok_or_else(|| RecordError("no id".into()))?,
            name: dto.name.unwrap_or_default(),
            hidden: dto.hidden.unwrap_or(false),
        })
    }
}

fn plan_copy(prefix: &str, dto: PlanCopyDto) -> Result<MembershipPlan, RecordError> {
    Ok(MembershipPlan {
        name: dto.name,
        parent_plan_id: ref_id(dto.parent_plan),
        canceled_to: opt_date(&format!("{prefix}.canceled_to"), dto.canceled_to)?,
    })
}

impl TryFrom<MembershipDto> for CobotMembership {
    type Error = RecordError;
    fn try_from(dto: MembershipDto) -> Result<Self, RecordError> {
        let id = dto.id.and_then(WireId::into_string);
        let upcoming_plan = match dto.upcoming_plan {
            None => None,
            Some(up) => {
                let starts_at = opt_date("upcoming_plan.starts_at", up.starts_at)?
                    .ok_or_else(|| RecordError("upcoming_plan has no starts_at".into()))?;
                let plan = plan_copy("upcoming_plan", up.plan)?;
                Some(UpcomingPlan { plan, starts_at })
            }
        };
        Ok(CobotMembership {
            id: id.ok_or_else(|| RecordError("no id".into()))?,
            name: dto.name.unwrap_or_default(),
            email: present(dto.email),
            user_id: ref_id(dto.user),
            plan: dto.plan.map(|p| plan_copy("plan", p)).transpose()?,
            upcoming_plan,
            confirmed_at: opt_time("confirmed_at", dto.confirmed_at)?,
            starts_at: opt_date("starts_at", dto.starts_at)?,
            canceled_to: opt_date("canceled_to", dto.canceled_to)?,
            custom_fields: Vec::new(),
        })
    }
}

impl TryFrom<CustomFieldsDto> for MembershipFields {
    type Error = RecordError;
    fn try_from(dto: CustomFieldsDto) -> Result<Self, RecordError> {
        let membership_id = dto
            .membership_id
            .and_then(WireId::into_string)
            .ok_or_else(|| RecordError("no membership_id".into()))?;
        let fields = dto
            .fields
            .into_iter()
            .map(|f| {
                let label = f
                    .label
                    .ok_or_else(|| RecordError("a field has no label".into()))?;
                let value = match f.value {
                    None | Some(serde_json::Value::Null) => String::new(),
                    Some(serde_json::Value::String(s)) => s,
                    Some(other) => other.to_string(),
                };
                Ok(CustomField { label, value })
            })
            .collect::<Result<_, RecordError>>()?;
        Ok(MembershipFields {
            membership_id,
            fields,
        })
    }
}

impl TryFrom<CheckInTokenDto> for CheckInToken {
    type Error = RecordError;
    fn try_from(dto: CheckInTokenDto) -> Result<Self, RecordError> {
        Ok(CheckInToken {
            token: dto
                .token
                .and_then(WireId::into_string)
                .ok_or_else(|| RecordError("no token".into()))?,
            membership_id: ref_id(dto.membership)
                .ok_or_else(|| RecordError("no membership.id".into()))?,
        })
    }
}

impl TryFrom<BookingDto> for Booking {
    type Error = RecordError;
    fn try_from(dto: BookingDto) -> Result<Self, RecordError> {
        let membership_id =
            ref_id(dto.membership).ok_or_else(|| RecordError("no membership.id".into()))?;
        let from = opt_time("from", dto.from)?.ok_or_else(|| RecordError("no from".into()))?;
        let to = opt_time("to", dto.to)?.ok_or_else(|| RecordError("no to".into()))?;
        Ok(Booking {
            membership_id,
            resource_id: ref_id(dto.resource),
            from,
            to,
        })
    }
}

impl TryFrom<CheckInDto> for CheckIn {
    type Error = RecordError;
    fn try_from(dto: CheckInDto) -> Result<Self, RecordError> {
        Ok(CheckIn {
            id: dto.id.and_then(WireId::into_string),
            valid_from: opt_time("valid_from", dto.valid_from)?,
            valid_until: opt_time("valid_until", dto.valid_until)?,
        })
    }
}

/// Just enough of any record to name it in a "malformed" message.
#[derive(Deserialize)]
struct RecordLabel {
    id: Option<WireId>,
    membership_id: Option<WireId>,
    membership: Option<RefDto>,
    name: Option<String>,
}

fn label(index: usize, raw: &RawValue) -> String {
    let Ok(l) = serde_json::from_str::<RecordLabel>(raw.get()) else {
        return format!("#{}", index + 1);
    };
    let id = l.id.and_then(WireId::into_string).or_else(|| {
        let m = l.membership_id.and_then(WireId::into_string);
        m.or_else(|| ref_id(l.membership))
            .map(|m| format!("of membership {m}"))
    });
    let id = id.unwrap_or_else(|| format!("#{}", index + 1));
    match present(l.name) {
        Some(name) => format!("{id} ({name})"),
        None => id,
    }
}

/// Says why a whole response could not be read (not JSON, truncated, not an array).
pub(crate) fn describe_body_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => format!("truncated JSON ({e})"),
        Category::Syntax => format!("not JSON ({e})"),
        Category::Data => format!("not the expected shape ({e})"),
        Category::Io => format!("unreadable ({e})"),
    }
}

/// Splits a JSON array into records and converts each; `convert` returns `Ok(None)` for a record
/// that is fine but not wanted. Fails only when the body itself is unusable.
pub(crate) fn parse_list<'a, D, T>(
    body: &'a str,
    kind: &str,
    convert: impl Fn(D) -> Result<Option<T>, RecordError>,
) -> Result<Parsed<T>, String>
where
    D: Deserialize<'a>,
{
    let raws: Vec<&'a RawValue> = serde_json::from_str(body).map_err(|e| {
        let mut d = describe_body_error(&e);
        if matches!(e.classify(), serde_json::error::Category::Data) {
            d = format!("expected a JSON array of {kind}s: {d}");
        }
        d
    })?;
    let mut parsed = Parsed {
        items: Vec::with_capacity(raws.len()),
        malformed: Vec::new(),
    };
    for (i, raw) in raws.iter().enumerate() {
        let result = serde_json::from_str::<D>(raw.get())
            .map_err(|e| RecordError(format!("unexpected shape: {e}")))
            .and_then(&convert);
        match result {
            Ok(Some(item)) => parsed.items.push(item),
            Ok(None) => {}
            Err(e) => parsed
                .malformed
                .push(format!("{kind} {} skipped: {e}", label(i, raw))),
        }
    }
    Ok(parsed)
}

/// `GET /api/plans`.
pub fn parse_plans(body: &str) -> Result<Parsed<CobotPlan>, String> {
    parse_list(body, "plan", |d: PlanDto| CobotPlan::try_from(d).map(Some))
}

/// `GET /api/memberships?all=true`. Two records with one id fail the whole answer.
pub fn parse_memberships(body: &str) -> Result<Parsed<CobotMembership>, String> {
    let parsed = parse_list(body, "membership", |d: MembershipDto| {
        CobotMembership::try_from(d).map(Some)
    })?;
    let mut seen = std::collections::HashSet::with_capacity(parsed.items.len());
    if let Some(twice) = parsed.items.iter().find(|m| !seen.insert(m.id.as_str())) {
        return Err(format!(
            "membership {} is listed twice; which record is right cannot be told",
            twice.id
        ));
    }
    Ok(parsed)
}

/// `GET /api/custom_fields`.
pub fn parse_custom_fields(body: &str) -> Result<Parsed<MembershipFields>, String> {
    parse_list(body, "custom fields", |d: CustomFieldsDto| {
        MembershipFields::try_from(d).map(Some)
    })
}

/// `GET /api/check_in_tokens`.
pub fn parse_check_in_tokens(body: &str) -> Result<Parsed<CheckInToken>, String> {
    parse_list(body, "check-in token", |d: CheckInTokenDto| {
        CheckInToken::try_from(d).map(Some)
    })
}

/// `GET /api/bookings`; bookings without a membership (`null` or absent) are left out silently.
pub fn parse_bookings(body: &str) -> Result<Parsed<Booking>, String> {
    parse_list(body, "booking", |d: BookingDto| match &d.membership {
        None => Ok(None),
        Some(_) => Booking::try_from(d).map(Some),
    })
}

/// `GET /api/memberships/<id>/check_ins`.
pub fn parse_check_ins(body: &str) -> Result<Parsed<CheckIn>, String> {
    parse_list(body, "check-in", |d: CheckInDto| {
        CheckIn::try_from(d).map(Some)
    })
}

/// Adds each membership's custom fields to it; fields of unknown memberships are dropped.
pub fn merge_custom_fields(memberships: &mut [CobotMembership], fields: Vec<MembershipFields>) {
    let index: HashMap<String, usize> = memberships
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();
    for entry in fields {
        if let Some(m) = index
            .get(&entry.membership_id)
            .and_then(|&i| memberships.get_mut(i))
        {
            m.custom_fields.extend(entry.fields);
        }
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
