//! The one record of a door request: made when it is decided, completed at the lock, appended
//! as the event, and rendered by the way in that asked.
//!
//! The record is the store's [`NewEvent`]: the decision fills it in, the lock's outcome sets
//! `opened` and `lock_error`, the store appends it as it is, and the answers (reader result,
//! HTTP body) read their fields from it. Nothing copies those fields into another struct.

use crate::domain::Permit;
use crate::locks::{Actuation, LockError};
use crate::store::{NewEvent, StoreError};

/// A decision, ready to be carried out once.
#[derive(Debug)]
pub(crate) struct Decided {
    /// The record so far (`opened` false, `lock_error` none; `check_in_day` set when a
    /// granted entry would count for a check-in).
    pub(crate) event: NewEvent,
    /// The key to the lock, when granted; used up by carrying out.
    pub(super) permit: Option<Permit>,
}

/// What happened at the lock.
#[derive(Debug)]
pub(crate) enum AtTheLock {
    /// Denied: nothing was sent.
    NotGranted,
    /// Granted, but the unit has no lock.
    NoLock,
    /// The lock command was sent (or an open pulse was extended).
    Done(Actuation),
    /// The lock command failed.
    Failed(LockError),
}

impl AtTheLock {
    /// Whether the door opened: the lock took the command or extended an open pulse.
    pub(crate) fn opened(&self) -> bool {
        matches!(self, AtTheLock::Done(_))
    }

    /// Why a granted door did not open, in a word (`no_lock`, or [`LockError::kind`]).
    pub(crate) fn lock_error(&self) -> Option<&'static str> {
        match self {
            AtTheLock::NotGranted | AtTheLock::Done(_) => None,
            AtTheLock::NoLock => Some("no_lock"),
            AtTheLock::Failed(e) => Some(e.kind()),
        }
    }

    /// Whether this entry counts for a Cobot check-in: the door opened, or the unit has no
    /// lock to open (a granted area). A lock that failed means the member did not get in.
    pub(super) fn counts_as_entry(&self) -> bool {
        matches!(self, AtTheLock::Done(_) | AtTheLock::NoLock)
    }
}

/// A door request carried out: the record, the lock's side, and whether the record is stored.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The record, complete: as appended, or as it would have been when the store failed.
    pub event: NewEvent,
    /// The lock's side.
    pub lock: AtTheLock,
    /// The event's seq once durable, or why it could not be stored.
    pub stored: Result<u64, StoreError>,
    /// How long the door stays open, when it opened (a reader's light shows it that long).
    pub open_for: Option<std::time::Duration>,
}
