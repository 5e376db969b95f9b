//! [`LockdownSwitch`]: the one way the lockdown is switched while the daemon runs, whoever asks
//! (`POST /v1/lockdown`, `portier lockdown` through it, Home Assistant's switch).
//!
//! Switching writes the state durably first (it survives restarts and reloads), then publishes
//! it to the engine, and, switched on, sends every lock its lock command at once.

use std::sync::Arc;

use tokio::sync::watch;

use crate::locks::Locks;
use crate::store::{Lockdown, Store, StoreError};

/// The longest lockdown reason taken.
pub(crate) const MAX_REASON: usize = 500;

/// Why the lockdown was not switched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SwitchError {
    /// The reason is too long to keep.
    #[error("the reason is longer than {MAX_REASON} characters")]
    ReasonTooLong,
    /// The state could not be written; nothing changed.
    #[error("the lockdown was not switched: {0}")]
    Store(#[from] StoreError),
    /// The write did not finish (the runtime is stopping).
    #[error("the lockdown was not switched: {0}")]
    Interrupted(String),
}

/// Holds the lockdown state in force and switches it.
pub(crate) struct LockdownSwitch {
    store: Arc<Store>,
    state: watch::Sender<Lockdown>,
    locks: Arc<Locks>,
}

impl LockdownSwitch {
    /// The switch, starting from the stored state.
    pub(crate) fn new(store: Arc<Store>, initial: Lockdown, locks: Arc<Locks>) -> Self {
        Self {
            store,
            state: watch::Sender::new(initial),
            locks,
        }
    }

    /// The state in force, and its changes (what the engine decides with).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Lockdown> {
        self.state.subscribe()
    }

    /// The state in force.
    pub(crate) fn borrow(&self) -> watch::Ref<'_, Lockdown> {
        self.state.borrow()
    }

    /// Switches the lockdown on or off, durably, `by` whom (for the log); an empty reason is
    /// none. Switched on, every open door is locked at once (a lock that does not take its
    /// command is logged; the lockdown holds anyway).
    pub(crate) async fn switch(
        &self,
        on: bool,
        reason: Option<String>,
        by: &str,
    ) -> Result<Lockdown, SwitchError> {
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty());
        if reason
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REASON)
        {
            return Err(SwitchError::ReasonTooLong);
        }
        let state = Lockdown {
            on,
            reason,
            since: Some(crate::clock::now()),
        };
        // The write waits for the disk: on the blocking pool, not a worker.
        let store = Arc::clone(&self.store);
        let saving = state.clone();
        tokio::task::spawn_blocking(move || store.save_lockdown(&saving))
            .await
            .map_err(|e| SwitchError::Interrupted(e.to_string()))??;
        self.state.send_replace(state.clone());
        tracing::warn!(
            on = state.on,
            reason = state.reason.as_deref().unwrap_or(""),
            by,
            "lockdown switched {}",
            if state.on { "on" } else { "off" }
        );
        if state.on {
            for e in self.locks.relock_all().await {
                tracing::error!(error = %e, "a lock did not take its lock command at the lockdown");
            }
        }
        Ok(state)
    }
}
