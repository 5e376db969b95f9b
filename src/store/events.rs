//! The event log: every decided door request, numbered 1, 2, 3, … with no gaps.
//!
//! An event is written in one sled transaction together with the next-seq counter and, for the
//! first granted entry of a member on a local day, the outbox entry of its Cobot check-in; then
//! [`Store::append_event`] waits for the flush, so an acknowledged event survives a power cut.
//! Seq assignment is serialised by a mutex held only around that transaction; the flush after it
//! is shared by concurrent callers (group commit). The counter lives in its own key, so pruning
//! never makes a seq come back. This module does not decide access and does not talk to Cobot.

use std::ops::Bound;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::check_in::{CheckInStatus, CheckInTask, outbox_key};
use super::{Store, StoreError, abort, decode, encode};

/// Key in tree `meta`: the seq the next event gets (big-endian u64). Absent = 1.
const NEXT_SEQ_KEY: &[u8] = b"next_event_seq";

/// How a credential was presented.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// A card or tag at a reader.
    Card,
    /// A Cobot app token over HTTP.
    App,
    /// A remote open by staff with the admin token.
    Admin,
}

/// One stored event, as `GET /v1/events` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EventRecord {
    /// 1, 2, 3, … in the order of appending; no gaps, never reused.
    pub seq: u64,
    /// When the request was decided.
    pub time: DateTime<Utc>,
    /// The unit asked for.
    pub unit: String,
    /// The membership id, when the credential belonged to a member.
    pub member: Option<String>,
    /// How the credential was presented.
    pub credential_kind: CredentialKind,
    /// Whether access was granted.
    pub granted: bool,
    /// The decision's reason sentence.
    pub reason: String,
    /// The decision id (also carried by the lock command and the reader result).
    pub decision_id: String,
    /// The reader that sent the credential, for card events.
    pub reader: Option<String>,
    /// Whether the door opened: the lock took the command (or extended an open pulse). False
    /// for denials, units without a lock, and a lock that failed, timed out or whose outcome is
    /// unknown. Events stored before this field existed read as false.
    #[serde(default)]
    pub opened: bool,
    /// Why a granted door did not open (`no_lock`, `unreachable`, `timeout`, `uncertain`,
    /// `refused`, …); `None` when it opened or was denied.
    #[serde(default)]
    pub lock_error: Option<String>,
    /// `Some` only on the event that created a Cobot check-in.
    pub check_in: Option<CheckInStatus>,
    /// Where a request that came through no reader was made, when not the HTTP API
    /// (`homeassistant`; later the installer and member pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// An event to append; the store assigns `seq` and the check-in status.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// When the request was decided.
    pub time: DateTime<Utc>,
    /// The unit asked for.
    pub unit: String,
    /// The membership id, when the credential belonged to a member.
    pub member: Option<String>,
    /// How the credential was presented.
    pub credential_kind: CredentialKind,
    /// Whether access was granted.
    pub granted: bool,
    /// The decision's reason sentence.
    pub reason: String,
    /// The decision id.
    pub decision_id: String,
    /// The reader that sent the credential, for card events.
    pub reader: Option<String>,
    /// Whether the door opened (see [`EventRecord::opened`]).
    pub opened: bool,
    /// Why a granted door did not open (see [`EventRecord::lock_error`]).
    pub lock_error: Option<String>,
    /// Where the request was made (see [`EventRecord::via`]).
    pub via: Option<String>,
    /// The site-local day when this granted entry should create a Cobot check-in (the caller
    /// decides whether check-ins are on, and that the door opened or has no lock). Ignored for
    /// denied events and events without a member.
    pub check_in_day: Option<NaiveDate>,
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn read_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Record {
            what: "event counter",
            detail: format!("{} bytes instead of 8", bytes.len()),
        })
}

impl Store {
    /// Appends an event and returns it with its seq, once it is on disk.
    ///
    /// Seqs start at 1 and are consecutive across restarts and concurrent callers. When
    /// `check_in_day` is set, the event is granted and names a member, and no check-in exists
    /// yet for that member and day, the same transaction enqueues one; the returned record's
    /// `check_in` is then `Some(Pending)` (the caller should wake the check-in worker).
    /// On error nothing was appended and the seq is not used.
    pub async fn append_event(&self, event: NewEvent) -> Result<EventRecord, StoreError> {
        let record = self.append_event_unflushed(&event)?;
        self.flush().await?;
        Ok(record)
    }

    /// [`Store::append_event`] up to the flush: the event's transaction, which gives it its seq
    /// (the order of these calls). It is durable only once a [`Store::flush`] begun after this
    /// call returns.
    pub(crate) fn append_event_unflushed(
        &self,
        event: &NewEvent,
    ) -> Result<EventRecord, StoreError> {
        // Poisoning cannot leave bad state behind: the guarded data lives in sled.
        let _seq_guard = self
            .append_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.append_locked(event)
    }

    /// [`Store::append_event_unflushed`] not before `not_before`, on tokio's blocking pool (the
    /// wait is a thread's sleep, so a sub-millisecond wait stays that short).
    pub(crate) async fn append_event_unflushed_at(
        self: &Arc<Self>,
        event: &NewEvent,
        not_before: Instant,
    ) -> Result<EventRecord, StoreError> {
        let (store, event) = (Arc::clone(self), event.clone());
        tokio::task::spawn_blocking(move || {
            crate::clock::block_until(not_before);
            store.append_event_unflushed(&event)
        })
        .await
        .unwrap_or_else(|e| {
            Err(self.db_error(sled::Error::Io(std::io::Error::other(format!(
                "the event's write task failed: {e}"
            )))))
        })
    }

    /// The transaction of [`Store::append_event`]; the caller holds `append_lock`.
    fn append_locked(&self, e: &NewEvent) -> Result<EventRecord, StoreError> {
        let _gate = self.writing();
        let trees = (&self.events, &self.outbox, &self.check_in_days, &self.meta);
        trees
            .transaction(|(events, outbox, days, meta)| {
                let seq = match meta.get(NEXT_SEQ_KEY)? {
                    Some(bytes) => read_u64(&bytes).map_err(abort)?,
                    None => 1,
                };
                let mut check_in = None;
                if let (true, Some(day), Some(member)) =
                    (e.granted, e.check_in_day, e.member.as_deref())
                {
                    let key = outbox_key(day, member);
                    if outbox.get(&key)?.is_none() && days.get(&key)?.is_none() {
                        let task = CheckInTask {
                            member: member.to_owned(),
                            day,
                            event_seq: seq,
                            attempts: 0,
                            uncertain: false,
                            next_attempt: None,
                        };
                        outbox.insert(
                            key.as_bytes(),
                            encode("check-in task", &task).map_err(abort)?,
                        )?;
                        check_in = Some(CheckInStatus::Pending);
                    }
                }
                let record = EventRecord {
                    seq,
                    time: e.time,
                    unit: e.unit.clone(),
                    member: e.member.clone(),
                    credential_kind: e.credential_kind,
                    granted: e.granted,
                    reason: e.reason.clone(),
                    decision_id: e.decision_id.clone(),
                    reader: e.reader.clone(),
                    opened: e.opened,
                    lock_error: e.lock_error.clone(),
                    check_in,
                    via: e.via.clone(),
                };
                events.insert(&seq_key(seq), encode("event", &record).map_err(abort)?)?;
                let next = seq.checked_add(1).ok_or_else(|| {
                    abort(StoreError::Record {
                        what: "event counter",
                        detail: "no seq left".into(),
                    })
                })?;
                meta.insert(NEXT_SEQ_KEY, &seq_key(next))?;
                Ok(record)
            })
            .map_err(|e| self.tx_error(e))
    }

    /// Up to `limit` events with a seq greater than `after`, in order. The caller clamps
    /// `limit` (the HTTP API allows at most 1000).
    pub fn events_after(&self, after: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let range = (Bound::Excluded(seq_key(after)), Bound::Unbounded);
        self.events
            .range(range)
            .take(limit)
            .map(|item| {
                let (_, bytes) = item.map_err(|e| self.db_error(e))?;
                decode("event", &bytes)
            })
            .collect()
    }

    /// The last `limit` events, oldest first (the installer page's backlog).
    pub(crate) fn recent_events(&self, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let mut events = self
            .events
            .iter()
            .rev()
            .take(limit)
            .map(|item| {
                let (_, bytes) = item.map_err(|e| self.db_error(e))?;
                decode("event", &bytes)
            })
            .collect::<Result<Vec<EventRecord>, _>>()?;
        events.reverse();
        Ok(events)
    }

    /// The time of the last persisted event (highest seq), for clock trust: a clock earlier than
    /// this has jumped backwards. `None` when there are no events.
    pub fn last_event_time(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        match self.events.last().map_err(|e| self.db_error(e))? {
            Some((_, bytes)) => Ok(Some(decode::<EventRecord>("event", &bytes)?.time)),
            None => Ok(None),
        }
    }

    /// Drops events older than `older_than` and returns how many went; also forgets finished
    /// check-in markers of days well before it. An event whose check-in is still pending is
    /// kept whatever its age. The scan walks in seq order and stops at the first event that is
    /// not old (events are in time order unless the clock jumped; a straggler goes at a later
    /// prune). Not flushed: a prune lost in a crash is simply redone.
    pub(crate) fn prune_events(&self, older_than: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut dropped = 0;
        for item in self.events.iter() {
            let (key, bytes) = item.map_err(|e| self.db_error(e))?;
            let event: EventRecord = decode("event", &bytes)?;
            if event.time >= older_than {
                break;
            }
            // A pending check-in only ever turns into Sent/Refused, never back, so a record
            // read as not pending here cannot become pending before the batch applies.
            if event.check_in == Some(CheckInStatus::Pending) {
                continue;
            }
            batch.remove(key);
            dropped += 1;
        }
        self.writing_batch(&self.events, batch)?;
        self.prune_check_in_days(older_than)?;
        Ok(dropped)
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
pub(super) mod tests;
