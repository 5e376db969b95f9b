//! The open pulse every driver shares: unlock once, relock after `open_for` in a spawned task,
//! and extend rather than pulse again when a grant arrives while the lock is open.
//!
//! A driver only says how to open and how to close ([`Actuator`]); this module owns the
//! per-lock "open until" state, serialises a lock's device I/O (one command at a time per
//! lock), keeps its health, and retries a relock that failed in transport with backoff (a door left open is the failure
//! that matters; a relock refused or of unknown outcome is not repeated). It never retries an
//! unlock.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Actuation, BoxFuture, Command, Latch, LockError, LockHealth, check_permit};
use crate::domain::Permit;

/// Retrying a failed relock: 250 ms doubling to 30 s (a lock stuck open is retried at least
/// that often), ±10 % so that locks behind one dead gateway do not retry in step.
const RELOCK_RETRY: crate::backoff::Backoff = crate::backoff::Backoff {
    first: Duration::from_millis(250),
    cap: Duration::from_secs(30),
    jitter: 0.1,
};

/// How a driver opens and closes its device. Implementations apply their own timeouts.
pub(crate) trait Actuator: Send + Sync + 'static {
    /// Sends the unlock command.
    fn open<'a>(&'a self, cmd: &'a Command) -> BoxFuture<'a, Result<(), LockError>>;
    /// Sends the relock command (a no-op for locks without one).
    fn close(&self) -> BoxFuture<'_, Result<(), LockError>>;
    /// Whether the last unlock can still be taken to have reached the device. MQTT says no
    /// once the broker connection dropped after it: then a new grant sends a fresh unlock
    /// instead of extending a pulse that may never have started.
    fn pulse_intact(&self) -> bool {
        true
    }
    /// Told when a grant only extended an open pulse (nothing is sent).
    fn extended(&self, _cmd: &Command) {}
    /// Whether [`Actuator::probe`] checks anything. A driver with a probe is not healthy until
    /// a command or a probe has succeeded; one without (the log lock) is healthy from the start.
    fn has_probe(&self) -> bool {
        false
    }
    /// Checks, without actuating, that the device can be reached (a Modbus read, the Bluetooth
    /// adapter). Called periodically by the daemon; applies its own timeouts.
    fn probe(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(std::future::ready(Ok(())))
    }
    /// What is known right now without I/O, when the driver can tell at any moment (MQTT: the
    /// broker connection): `Some(Err(why))` makes the lock unhealthy at once, `Some(Ok(()))`
    /// healthy as far as reaching it goes. `None`: the periodic probe decides.
    fn live_check(&self) -> Option<Result<(), String>> {
        None
    }
}

/// One lock's pulse state around its actuator.
pub(crate) struct Pulse<A> {
    inner: Arc<Inner<A>>,
}

struct Inner<A> {
    id: String,
    actuator: A,
    /// What the door's lock last did, for those who show it (Home Assistant, the page).
    latch: tokio::sync::watch::Sender<Latch>,
    /// Held across device I/O so a lock runs one command at a time (tokio's mutex: it is held
    /// across `.await`).
    state: tokio::sync::Mutex<State>,
    health: Mutex<Checks>,
}

/// What the lock's health is derived from.
#[derive(Default)]
struct Checks {
    /// The driver has a probe: until something succeeded its state is unknown.
    probed: bool,
    /// The most recent error, of a command or a probe.
    last_error: Option<String>,
    last_success: Option<chrono::DateTime<chrono::Utc>>,
    last_probe: Option<chrono::DateTime<chrono::Utc>>,
    /// The last command failed: `Some(retryable)`. A later successful probe clears a
    /// retryable (transport) failure, since the device is reachable again; a refusal or an
    /// unknown outcome stays until a command succeeds.
    command_failed: Option<(bool, String)>,
    /// The last probe failed, with why.
    probe_failed: Option<String>,
}

impl Checks {
    /// The health, given what the driver can tell right now (see [`Actuator::live_check`]).
    fn health(&self, id: &str, live: Option<Result<(), String>>) -> LockHealth {
        let reachable_now = matches!(live, Some(Ok(())));
        let problem = if let Some(Err(why)) = live {
            Some(why)
        } else if let Some(why) = self.probe_failed.as_ref().filter(|_| !reachable_now) {
            Some(why.clone())
        } else if let Some((retryable, why)) = &self.command_failed {
            // A transport failure is over once the device is known to be reachable again.
            (!(reachable_now && *retryable)).then(|| why.clone())
        } else if self.probed
            && !reachable_now
            && self.last_success.is_none()
            && self.last_probe.is_none()
        {
            Some(format!(
                "lock \"{id}\" is not checked yet: no command or probe has succeeded so far"
            ))
        } else {
            None
        };
        LockHealth {
            ok: problem.is_none(),
            problem,
            last_error: self.last_error.clone(),
            last_success: self.last_success,
            last_probe: if reachable_now {
                Some(crate::clock::now())
            } else {
                self.last_probe
            },
        }
    }
}

#[derive(Default)]
struct State {
    /// The lock is open (or its relock has not yet succeeded) until then.
    until: Option<Instant>,
    /// A relock task is running for this lock.
    relocker: bool,
}

impl<A: Actuator> Pulse<A> {
    /// Wraps an actuator for the lock `id`.
    pub(crate) fn new(id: &str, actuator: A) -> Self {
        let probed = actuator.has_probe() || actuator.live_check().is_some();
        Pulse {
            inner: Arc::new(Inner {
                id: id.to_owned(),
                actuator,
                latch: tokio::sync::watch::Sender::new(Latch::Locked),
                state: tokio::sync::Mutex::new(State::default()),
                health: Mutex::new(Checks {
                    probed,
                    ..Checks::default()
                }),
            }),
        }
    }

    /// The lock's id.
    pub(crate) fn id(&self) -> &str {
        &self.inner.id
    }

    /// The actuator (drivers expose parts of it, e.g. the log's entries).
    pub(crate) fn actuator(&self) -> &A {
        &self.inner.actuator
    }

    /// Opens for `permit.open_for()`, or pushes back the relock of an open pulse.
    pub(crate) async fn unlock(
        &self,
        permit: &Permit,
        cmd: &Command,
    ) -> Result<Actuation, LockError> {
        check_permit(&self.inner.id, permit)?;
        let open_for = permit.open_for();
        let mut state = self.inner.state.lock().await;
        let now = Instant::now();
        let open = state.until.filter(|until| *until > now);
        if let Some(until) = open.filter(|_| self.inner.actuator.pulse_intact()) {
            state.until = Some(until.max(now + open_for));
            self.inner.actuator.extended(cmd);
            tracing::debug!(lock = %self.inner.id, unit = %cmd.unit, decision_id = %cmd.decision_id,
                open_for_ms = open_for.as_millis() as u64, "open pulse extended");
            return Ok(Actuation::Extended);
        }
        // Closed, or a relock is overdue (failing): the door's state is not known to be open,
        // so send a real unlock. Coils and registers are levels, so this cannot double-pulse.
        let result = self.inner.actuator.open(cmd).await;
        self.inner.record(&result);
        result?;
        state.until = Some(Instant::now() + open_for);
        self.inner.latch.send_replace(Latch::Open);
        tracing::debug!(lock = %self.inner.id, unit = %cmd.unit, decision_id = %cmd.decision_id,
            open_for_ms = open_for.as_millis() as u64, "lock opened");
        if !state.relocker {
            state.relocker = true;
            tokio::spawn(relocker(Arc::clone(&self.inner)));
        }
        Ok(Actuation::Opened)
    }

    /// Relocks now if the lock is open (shutdown). The relock task then finds nothing to do.
    pub(crate) async fn relock_now(&self) -> Result<(), LockError> {
        let mut state = self.inner.state.lock().await;
        if state.until.is_none() {
            return Ok(());
        }
        let result = self.inner.actuator.close().await;
        self.inner.record(&result);
        result?;
        state.until = None;
        self.inner.latch.send_replace(Latch::Locked);
        tracing::info!(lock = %self.inner.id, "relocked at once (shutdown or lockdown)");
        Ok(())
    }

    /// What the lock last did, and every change from now on.
    pub(crate) fn latch(&self) -> tokio::sync::watch::Receiver<Latch> {
        self.inner.latch.subscribe()
    }

    /// The lock's health.
    pub(crate) fn health(&self) -> LockHealth {
        let live = self.inner.actuator.live_check();
        self.inner
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .health(&self.inner.id, live)
    }

    /// Runs the driver's probe (if it has one) and records its outcome in the health. Skipped
    /// while a command is being sent: that command's outcome is recorded anyway, and a door
    /// opening never waits behind a probe that started after it.
    pub(crate) async fn probe(&self) {
        if !self.inner.actuator.has_probe() {
            return;
        }
        let Ok(busy) = self.inner.state.try_lock() else {
            return;
        };
        drop(busy);
        let result = self.inner.actuator.probe().await;
        let mut checks = self
            .inner
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                if checks.probe_failed.take().is_some() {
                    tracing::info!(lock = %self.inner.id, "lock probe succeeds again");
                }
                checks.last_probe = Some(crate::clock::now());
                if checks
                    .command_failed
                    .as_ref()
                    .is_some_and(|(retry, _)| *retry)
                {
                    checks.command_failed = None;
                }
            }
            Err(e) => {
                if checks.probe_failed.is_none() {
                    tracing::warn!(lock = %self.inner.id, error = %e, "lock probe failed");
                }
                checks.last_error = Some(e.to_string());
                checks.probe_failed = Some(e.to_string());
            }
        }
    }
}

impl<A> Inner<A> {
    fn record(&self, result: &Result<(), LockError>) {
        let mut checks = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                checks.command_failed = None;
                checks.last_success = Some(crate::clock::now());
            }
            Err(e) => {
                checks.command_failed = Some((e.is_retryable(), e.to_string()));
                checks.last_error = Some(e.to_string());
            }
        }
    }
}

/// Waits for the pulse to end (following extensions), then relocks, retrying with backoff
/// until it succeeds or the lock is relocked elsewhere.
async fn relocker<A: Actuator>(inner: Arc<Inner<A>>) {
    let mut failures: u32 = 0;
    loop {
        let deadline = {
            let mut state = inner.state.lock().await;
            match state.until {
                Some(until) => until,
                None => {
                    state.relocker = false;
                    return;
                }
            }
        };
        tokio::time::sleep_until(deadline).await;
        let mut state = inner.state.lock().await;
        match state.until {
            None => {
                state.relocker = false;
                return;
            }
            Some(until) if until > Instant::now() => continue, // extended meanwhile
            Some(_) => {}
        }
        let result = inner.actuator.close().await;
        inner.record(&result);
        match result {
            Ok(()) => {
                state.until = None;
                state.relocker = false;
                inner.latch.send_replace(Latch::Locked);
                tracing::info!(lock = %inner.id, "lock relocked");
                return;
            }
            Err(e) if !e.is_retryable() => {
                // Refused, or an outcome we cannot know (a BLE write cut midway): repeating it
                // blindly could do harm, so stop here and leave it to health and the audit.
                state.until = None;
                state.relocker = false;
                inner.latch.send_replace(Latch::Jammed);
                tracing::error!(lock = %inner.id, error = %e, "relock failed; not retried");
                return;
            }
            Err(e) => {
                drop(state);
                failures = failures.saturating_add(1);
                let retry = RELOCK_RETRY.after(failures);
                tracing::warn!(lock = %inner.id, error = %e, retry_in_ms = retry.as_millis() as u64,
                    "relock failed; retrying");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

/// Implements `LockDriver` for a lock type whose `pulse` field (a [`Pulse`]) does the work:
/// every driver differs only in its [`Actuator`].
macro_rules! lock_driver_via_pulse {
    ($lock:ty) => {
        impl $crate::locks::LockDriver for $lock {
            fn id(&self) -> &str {
                self.pulse.id()
            }

            fn unlock<'a>(
                &'a self,
                permit: &'a $crate::domain::Permit,
                cmd: &'a $crate::locks::Command,
            ) -> $crate::locks::BoxFuture<
                'a,
                Result<$crate::locks::Actuation, $crate::locks::LockError>,
            > {
                Box::pin(self.pulse.unlock(permit, cmd))
            }

            fn relock_now(
                &self,
            ) -> $crate::locks::BoxFuture<'_, Result<(), $crate::locks::LockError>> {
                Box::pin(self.pulse.relock_now())
            }

            fn health(&self) -> $crate::locks::LockHealth {
                self.pulse.health()
            }

            fn probe(&self) -> $crate::locks::BoxFuture<'_, ()> {
                Box::pin(self.pulse.probe())
            }

            fn latch(&self) -> tokio::sync::watch::Receiver<$crate::locks::Latch> {
                self.pulse.latch()
            }
        }
    };
}
pub(crate) use lock_driver_via_pulse;
