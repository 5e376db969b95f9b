//! The log-only lock (`driver = "log"`): no hardware, every command becomes a log line and an
//! entry in memory. For the demo, for trying a configuration, and for tests.

use std::sync::{Arc, Mutex, PoisonError};

use super::pulse::{Actuator, Pulse};
use super::{BoxFuture, Command, LockError};

/// One command a log-only lock received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// It would have unlocked.
    Unlock(Command),
    /// A grant during an open pulse: it would have stayed open longer, sending nothing.
    Extended(Command),
    /// It would have relocked.
    Relock,
}

/// A lock that only logs and records what it is told.
pub struct LogLock {
    pulse: Pulse<LogActuator>,
}

struct LogActuator {
    id: String,
    entries: Arc<Mutex<Vec<LogEntry>>>,
}

impl LogActuator {
    fn push(&self, entry: LogEntry) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }
}

impl Actuator for LogActuator {
    fn open<'a>(&'a self, cmd: &'a Command) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            tracing::info!(lock = %self.id, unit = %cmd.unit, decision_id = %cmd.decision_id,
                "unlock (log-only lock)");
            self.push(LogEntry::Unlock(cmd.clone()));
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(async move {
            tracing::info!(lock = %self.id, "relock (log-only lock)");
            self.push(LogEntry::Relock);
            Ok(())
        })
    }

    fn extended(&self, cmd: &Command) {
        self.push(LogEntry::Extended(cmd.clone()));
    }

    /// Nothing to reach: the log is always there, so it counts as checked at every look.
    fn live_check(&self) -> Option<Result<(), String>> {
        Some(Ok(()))
    }
}

impl LogLock {
    /// A log-only lock with the id `id`.
    pub fn new(id: &str) -> Self {
        LogLock {
            pulse: Pulse::new(
                id,
                LogActuator {
                    id: id.to_owned(),
                    entries: Arc::default(),
                },
            ),
        }
    }

    /// Everything it was told so far, in order.
    pub fn commands(&self) -> Vec<LogEntry> {
        self.pulse
            .actuator()
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many times it unlocked (extensions and relocks not counted).
    pub fn unlocks(&self) -> usize {
        self.commands()
            .iter()
            .filter(|e| matches!(e, LogEntry::Unlock(_)))
            .count()
    }
}

// Everything a lock does goes through its open pulse.
super::pulse::lock_driver_via_pulse!(LogLock);
