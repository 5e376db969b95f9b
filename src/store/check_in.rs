//! The check-in records that the event log and the outbox share: a pending check-in
//! ([`CheckInTask`]), its key, and where an event's check-in stands ([`CheckInStatus`]).
//! A leaf: the event log creates tasks in its own transaction, the outbox finishes them and
//! updates the event, and neither needs the other's code for that.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// The event's view of the Cobot check-in it caused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CheckInStatus {
    /// Waiting in the outbox; such an event is never pruned.
    Pending,
    /// Cobot has the check-in (created by us, or found there after an uncertain try).
    Sent,
    /// Cobot refused it with a final answer (e.g. 422 "No time passes left."); not retried.
    Refused {
        /// Cobot's reason, with its status.
        reason: String,
    },
}

/// A Cobot check-in waiting to be sent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct CheckInTask {
    /// The membership id to check in.
    pub member: String,
    /// The site-local day of the entry.
    pub day: NaiveDate,
    /// The event that caused it (its status is updated when the task finishes).
    pub event_seq: u64,
    /// Failed tries so far.
    pub attempts: u32,
    /// A POST may have reached Cobot without us seeing the answer (timeout, lost connection,
    /// or a crash while sending): ask Cobot for the day's check-ins before posting again.
    pub uncertain: bool,
    /// Not before this time (`None`: at once).
    pub next_attempt: Option<DateTime<Utc>>,
}

/// How a try to send a check-in ended, for [`Store::finish_check_in`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckInResult {
    /// Cobot has the check-in: the task is done.
    Sent,
    /// Cobot refused it with a final answer: the task is done and the reason goes into the
    /// event.
    Refused {
        /// Cobot's reason, with its status.
        reason: String,
    },
    /// Try again at `at`; `uncertain` says whether the POST may have reached Cobot.
    Retry {
        /// The earliest next try.
        at: DateTime<Utc>,
        /// Ask Cobot for the day's check-ins before posting again.
        uncertain: bool,
    },
}

/// The outbox key of a member's check-in on a day: dates sort first, so keys are in day order.
pub(super) fn outbox_key(day: NaiveDate, member: &str) -> String {
    format!("{}/{member}", day.format("%Y-%m-%d"))
}
