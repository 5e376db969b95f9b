//! JSON shapes shared by the command line and the HTTP API, so both print the same thing.

use serde::{Deserialize, Serialize};

use crate::domain::{Decision, Snapshot};

/// A decision as `portier explain --json` and `GET /v1/explain` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExplainView {
    /// Whether the unit opens.
    pub granted: bool,
    /// The unit asked for.
    pub unit: String,
    /// The membership id the credential resolved to, or `null`.
    pub member: Option<String>,
    /// One sentence: why.
    pub reason: String,
    /// The reasoning, step by step.
    pub chain: Vec<String>,
}

impl ExplainView {
    /// The view of a decision made from `snapshot`.
    pub fn new(snapshot: &Snapshot, decision: &Decision) -> Self {
        Self {
            granted: decision.granted(),
            unit: snapshot.unit_id(decision.unit()).to_owned(),
            member: decision.member().map(|m| snapshot.member_id(m).to_owned()),
            reason: decision.reason(snapshot),
            chain: decision.chain(snapshot),
        }
    }
}

/// The body of an HTTP error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ErrorView {
    /// What went wrong, for a person.
    pub error: String,
}

/// What `explain` is asked, from the command line or `GET /v1/explain`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ExplainQuery {
    /// Membership id or email.
    pub member: Option<String>,
    /// Card id.
    pub credential: Option<String>,
    /// The unit to open.
    pub unit: Option<String>,
    /// RFC 3339 moment; now when absent.
    pub at: Option<String>,
}

/// Why an explain question cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    /// Missing, conflicting or malformed parameters (exit 64, HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The unit is not configured (exit 64, HTTP 404).
    #[error("unknown unit \"{0}\"")]
    UnknownUnit(String),
}

/// Parses an optional RFC 3339 moment; `now` when absent.
pub(crate) fn parse_at(
    at: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, QueryError> {
    match at {
        None => Ok(now),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| {
                QueryError::Invalid(format!(
                    "at: `{text}` is not an RFC 3339 time like 2026-11-24T09:00:00+01:00 ({e})"
                ))
            }),
    }
}

/// Answers an explain question from `snapshot`. `now` is the real time and `clock` the
/// judgement of it: `at` moves the moment of the decision but never the clock's trust.
pub fn explain(
    snapshot: &Snapshot,
    query: &ExplainQuery,
    now: chrono::DateTime<chrono::Utc>,
    clock: crate::domain::ClockTrust,
    lockdown: bool,
) -> Result<ExplainView, QueryError> {
    use crate::domain::{Credential, Moment, Request, decide};
    let credential = match (query.member.as_deref(), query.credential.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(QueryError::Invalid(
                "give either member or credential, not both".into(),
            ));
        }
        (Some(member), None) => Credential::Member(member),
        (None, Some(card)) => Credential::Card(card),
        (None, None) => return Err(QueryError::Invalid("give member or credential".into())),
    };
    let unit_id = query
        .unit
        .as_deref()
        .ok_or_else(|| QueryError::Invalid("give unit".into()))?;
    let at = parse_at(query.at.as_deref(), now)?;
    let unit = snapshot
        .unit(unit_id)
        .ok_or_else(|| QueryError::UnknownUnit(unit_id.to_owned()))?;
    let moment = Moment {
        at,
        clock,
        lockdown,
    };
    let decision = decide(snapshot, &Request { unit, credential }, &moment);
    Ok(ExplainView::new(snapshot, &decision))
}
