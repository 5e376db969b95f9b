//! The check-in outbox: Cobot check-ins that still have to be sent, one per member and
//! site-local day.
//!
//! Entries are created by [`Store::append_event`] in the event's own transaction, keyed
//! `YYYY-MM-DD/<membership id>`. When a check-in is finished (sent, or refused for good), its
//! entry moves to tree `check_in_days` and the event's status changes, in one transaction, so a
//! later entry the same day does not enqueue another and the event log always says where its
//! check-in stands. Every state change is flushed before it returns: a check-in that Cobot has
//! is never sent again after a crash. Talking to Cobot is `crate::outbox`'s job, not this one.

use chrono::{DateTime, Duration, Utc};
use sled::Transactional;

use super::check_in::{CheckInResult, CheckInStatus, CheckInTask, outbox_key};
use super::events::EventRecord;
use super::{Store, StoreError, abort, decode, encode};

/// Finished-check-in markers are kept this many days beyond event retention; they only matter
/// on their own day, the extra days cover time zones.
const DAY_MARKER_SLACK_DAYS: i64 = 2;

impl Store {
    /// Every pending check-in, oldest day first.
    pub fn pending_check_ins(&self) -> Result<Vec<CheckInTask>, StoreError> {
        self.outbox
            .iter()
            .map(|item| {
                let (_, bytes) = item.map_err(|e| self.db_error(e))?;
                decode("check-in task", &bytes)
            })
            .collect()
    }

    /// How many check-ins are waiting to be sent (for status and metrics).
    pub fn outbox_depth(&self) -> Result<usize, StoreError> {
        Ok(self.outbox.len())
    }

    /// Marks `task` as being sent, durably, before its POST goes out: if the process dies
    /// during the request, the next try asks Cobot first instead of posting twice. Returns the
    /// updated task, or `None` when it is no longer pending (nothing to send).
    pub async fn check_in_sending(
        &self,
        task: &CheckInTask,
    ) -> Result<Option<CheckInTask>, StoreError> {
        let key = outbox_key(task.day, &task.member);
        let gate = self.writing();
        let updated = self
            .outbox
            .transaction(|outbox| {
                let Some(bytes) = outbox.get(&key)? else {
                    return Ok(None);
                };
                let mut stored: CheckInTask = decode("check-in task", &bytes).map_err(abort)?;
                stored.uncertain = true;
                outbox.insert(
                    key.as_bytes(),
                    encode("check-in task", &stored).map_err(abort)?,
                )?;
                Ok(Some(stored))
            })
            .map_err(|e| self.tx_error(e))?;
        drop(gate);
        self.flush().await?;
        Ok(updated)
    }

    /// Records how a try ended, durably. `Sent`/`Refused` remove the task, leave a marker for
    /// its day and set its event's `check_in`, in one transaction; `Retry` counts the attempt
    /// and stores when and how to try next. A task that is no longer pending is left alone.
    pub(crate) async fn finish_check_in(
        &self,
        task: &CheckInTask,
        result: CheckInResult,
    ) -> Result<(), StoreError> {
        let key = outbox_key(task.day, &task.member);
        let gate = self.writing();
        let trees = (&self.outbox, &self.check_in_days, &self.events);
        trees
            .transaction(|(outbox, days, events)| {
                let Some(bytes) = outbox.get(&key)? else {
                    return Ok(());
                };
                let mut stored: CheckInTask = decode("check-in task", &bytes).map_err(abort)?;
                let status = match &result {
                    CheckInResult::Retry { at, uncertain } => {
                        stored.attempts = stored.attempts.saturating_add(1);
                        stored.uncertain = *uncertain;
                        stored.next_attempt = Some(*at);
                        let bytes = encode("check-in task", &stored).map_err(abort)?;
                        outbox.insert(key.as_bytes(), bytes)?;
                        return Ok(());
                    }
                    CheckInResult::Sent => CheckInStatus::Sent,
                    CheckInResult::Refused { reason } => CheckInStatus::Refused {
                        reason: reason.clone(),
                    },
                };
                outbox.remove(key.as_bytes())?;
                days.insert(
                    key.as_bytes(),
                    encode("check-in marker", &status).map_err(abort)?,
                )?;
                let seq_key = stored.event_seq.to_be_bytes();
                // Pending events are never pruned, so the event is there; if it is not (a
                // damaged store), the check-in is still finished rather than retried forever.
                if let Some(bytes) = events.get(seq_key)? {
                    let mut event: EventRecord = decode("event", &bytes).map_err(abort)?;
                    event.check_in = Some(status);
                    events.insert(&seq_key, encode("event", &event).map_err(abort)?)?;
                }
                Ok(())
            })
            .map_err(|e| self.tx_error(e))?;
        drop(gate);
        self.flush().await
    }

    /// Forgets finished-check-in markers of days long before `older_than`.
    pub(super) fn prune_check_in_days(&self, older_than: DateTime<Utc>) -> Result<(), StoreError> {
        let cutoff = (older_than - Duration::days(DAY_MARKER_SLACK_DAYS)).date_naive();
        // Keys start with the day, so everything below "<cutoff>/" is older.
        let end = format!("{}/", cutoff.format("%Y-%m-%d"));
        let mut batch = sled::Batch::default();
        for item in self.check_in_days.range(..end.as_bytes()) {
            let (key, _) = item.map_err(|e| self.db_error(e))?;
            batch.remove(key);
        }
        self.writing_batch(&self.check_in_days, batch)
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
