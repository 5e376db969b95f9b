//! Lock drivers: what turns a [`Permit`] into an open door, over Modbus, MQTT, BLE or only a
//! log line.
//!
//! Every driver takes a `&Permit`, which only `domain::decide` can create, so no path opens a
//! door without a decision. Every driver shares one pulse discipline (`pulse`): the unlock is
//! sent once, the relock runs in a spawned task after `open_for`, and a new grant during an
//! open pulse only pushes the relock time back, it never sends a second unlock. Errors keep
//! transport trouble (retry may help) apart from a device that answered and refused (audit,
//! never retry), the way tokio-modbus keeps `Error` apart from `ExceptionCode`.
//!
//! This module owns the lock connections (Modbus sockets, the BLE session) but not the broker
//! connection: MQTT locks publish through `crate::mqtt`'s [`MqttLink`]. It does not decide,
//! store events or read the wall clock except through `crate::clock`.

mod ble;
#[cfg(test)]
mod fake_ble;
mod log;
mod modbus;
mod mqtt;
mod pulse;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{LockConfig, LockDriver as DriverConfig};
use crate::domain::Permit;
use crate::mqtt::MqttLink;

pub use ble::{BleBackend, BleError, BleLock, BluerBackend};
#[cfg(test)]
pub(crate) use fake_ble::FakeBle;
pub use log::{LogEntry, LogLock};
pub use modbus::ModbusLock;
pub(crate) use modbus::shared_connection as modbus_connection;
pub use mqtt::MqttLock;

/// A boxed, sendable future: what [`LockDriver::unlock`] returns, so the trait stays
/// object-safe and the registry can hold drivers of every kind side by side.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The longest any single device call (connect, write, publish) may take.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a lock did not open. Each variant says what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// The device could not be reached (connection refused or dropped, broker offline).
    /// Nothing was actuated; the caller may retry.
    #[error("lock \"{lock}\" is unreachable: {detail}; check its cabling, power and address")]
    Transport {
        /// The lock's id.
        lock: String,
        /// What went wrong.
        detail: String,
    },
    /// The device did not answer in time. Retrying is safe for this lock: its command is a
    /// level (coil on, register value), not a toggle.
    #[error(
        "lock \"{lock}\" did not answer within {after:?}; check that it is powered and reachable"
    )]
    Timeout {
        /// The lock's id.
        lock: String,
        /// How long we waited.
        after: Duration,
    },
    /// The command may or may not have reached the device (a BLE write interrupted midway).
    /// Audit it as "possibly opened"; never retry it, a retry could open the door twice.
    #[error("lock \"{lock}\": outcome unknown: {detail}; the door may have opened, do not retry")]
    Uncertain {
        /// The lock's id.
        lock: String,
        /// What went wrong.
        detail: String,
    },
    /// The device answered and refused (Modbus exception, BLE GATT error). Audit it and fix the
    /// device or the configuration; never retry.
    #[error("lock \"{lock}\" refused the command: {detail}; check the lock's configuration")]
    Refused {
        /// The lock's id.
        lock: String,
        /// The device's answer.
        detail: String,
    },
    /// The permit names a lock that is not configured here (or another lock than this driver).
    #[error("lock \"{0}\" is not configured; add a [[lock]] with this id or fix the unit's lock")]
    NotConfigured(String),
    /// The lock's settings cannot be used (found when building the registry).
    #[error("lock \"{lock}\" cannot be set up: {detail}")]
    Invalid {
        /// The lock's id.
        lock: String,
        /// What is wrong.
        detail: String,
    },
}

impl LockError {
    /// Whether retrying the same command may help and cannot open the door twice.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LockError::Transport { .. } | LockError::Timeout { .. }
        )
    }

    /// A short, stable word for the error (`unreachable`, `timeout`, `uncertain`, `refused`,
    /// `not_configured`, `invalid`): what the reader result, open answers and events carry as
    /// `lock_error`. The full sentence is the `Display` text.
    pub fn kind(&self) -> &'static str {
        match self {
            LockError::Transport { .. } => "unreachable",
            LockError::Timeout { .. } => "timeout",
            LockError::Uncertain { .. } => "uncertain",
            LockError::Refused { .. } => "refused",
            LockError::NotConfigured(_) => "not_configured",
            LockError::Invalid { .. } => "invalid",
        }
    }

    /// The lock the error is about.
    pub fn lock(&self) -> &str {
        match self {
            LockError::Transport { lock, .. }
            | LockError::Timeout { lock, .. }
            | LockError::Uncertain { lock, .. }
            | LockError::Refused { lock, .. }
            | LockError::Invalid { lock, .. } => lock,
            LockError::NotConfigured(lock) => lock,
        }
    }
}

/// What a lock command carries besides the permit: the values payload templates may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The decision that granted it (`{decision_id}` in payloads).
    pub decision_id: String,
    /// The unit's id (`{unit}` in payloads).
    pub unit: String,
}

/// What an accepted unlock did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Actuation {
    /// The unlock command was sent; the relock follows after `open_for`.
    Opened,
    /// The lock was already open: its relock was pushed back, nothing was sent.
    Extended,
}

/// What a lock last did, as far as this process knows: the state Home Assistant and the
/// installer page show. It follows the actuator's results, not the request: a command the
/// device did not take leaves it as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Latch {
    /// Not opened by this process, or relocked since.
    Locked,
    /// Opened; the relock is still to come (or is being retried).
    Open,
    /// The relock failed in a way that is not retried (refused, or an outcome unknown): the
    /// door may be open.
    Jammed,
}

/// One lock's health, as shown in `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockHealth {
    /// Nothing is wrong: the last command did not fail, the last probe did not fail, and (for
    /// a driver with a probe) a command or a probe has succeeded at least once.
    pub ok: bool,
    /// Why it is not ok, one sentence (`None` when ok).
    pub problem: Option<String>,
    /// The most recent error, kept after a later success so operators can see flapping.
    pub last_error: Option<String>,
    /// When a command last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// When a probe last succeeded (Modbus read, broker connected, Bluetooth adapter present).
    pub last_probe: Option<DateTime<Utc>>,
}

/// A lock driver. Trait objects rather than an enum: the registry is built once, a virtual
/// call plus one boxed future is nothing next to the device I/O, and tests and the demo can
/// plug in their own drivers.
pub trait LockDriver: Send + Sync {
    /// The lock's id.
    fn id(&self) -> &str;

    /// Opens for `permit.open_for()`, or extends an open pulse. Returns once the command was
    /// sent (MQTT: handed to the connected client) or acknowledged (Modbus, BLE); the relock
    /// runs in a spawned task. Needs a tokio runtime.
    fn unlock<'a>(
        &'a self,
        permit: &'a Permit,
        cmd: &'a Command,
    ) -> BoxFuture<'a, Result<Actuation, LockError>>;

    /// Relocks now if the lock is open (on shutdown, so no door is left open). Awaited with
    /// the caller's own deadline.
    fn relock_now(&self) -> BoxFuture<'_, Result<(), LockError>>;

    /// The lock's health.
    fn health(&self) -> LockHealth;

    /// Checks the device without actuating it and records the outcome in the health; the
    /// daemon calls it periodically. Drivers without a device to check do nothing.
    fn probe(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    /// What the lock last did, and its changes. A driver that cannot tell answers a constant
    /// `Locked` (its sender is gone, so waiting for a change ends at once with an error).
    fn latch(&self) -> tokio::sync::watch::Receiver<Latch> {
        tokio::sync::watch::channel(Latch::Locked).1
    }
}

/// Every configured lock, by id. A reload swaps drivers in and out ([`Locks::prepare`],
/// [`Locks::install`]) while requests are served: each call takes the driver it needs and
/// lets go of the registry before any device I/O.
pub(crate) struct Locks {
    mqtt: Option<MqttLink>,
    ble: Arc<dyn BleBackend>,
    installed: RwLock<BTreeMap<String, Installed>>,
    /// Changes whenever locks go into or out of service (for those who watch their latches).
    generation: tokio::sync::watch::Sender<u64>,
}

/// One lock in service.
#[derive(Clone)]
struct Installed {
    /// The `[[lock]]` it was built from.
    config: LockConfig,
    driver: Arc<dyn LockDriver>,
    /// The same driver when it is a log lock, for tests to read what it recorded.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "read by tests through Locks::log_lock")
    )]
    log: Option<Arc<LogLock>>,
}

/// Drivers built for a new set of `[[lock]]` sections, not yet in service (see
/// [`Locks::install`]). Building connects to nothing.
pub(crate) struct Prepared {
    /// Locks that are new or whose settings changed, with their new drivers.
    fresh: Vec<Installed>,
    /// Every lock id of the new configuration.
    wanted: Vec<String>,
}

#[cfg(test)]
impl Prepared {
    /// Whether installing changes nothing (same locks, same settings).
    pub(crate) fn is_empty(&self) -> bool {
        self.fresh.is_empty()
    }
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locks")
            .field(
                "locks",
                &self.installed().keys().cloned().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Locks {
    /// Builds a driver for each `[[lock]]`. MQTT locks publish through `mqtt` (the broker
    /// connection's link); BLE locks use `ble`. Nothing is
    /// connected yet: Modbus and BLE connect on the first command.
    pub fn new(
        configs: &[LockConfig],
        mqtt: Option<MqttLink>,
        ble: Arc<dyn BleBackend>,
    ) -> Result<Locks, LockError> {
        let locks = Locks {
            mqtt,
            ble,
            installed: RwLock::default(),
            generation: tokio::sync::watch::Sender::new(0),
        };
        let prepared = locks.prepare(configs)?;
        let retired = locks.install(prepared);
        debug_assert!(retired.is_empty());
        Ok(locks)
    }

    fn installed(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Installed>> {
        self.installed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds drivers for the locks of `configs` that are new or changed; the locks in service
    /// are untouched. Fails, changing nothing, when a lock cannot be set up.
    pub fn prepare(&self, configs: &[LockConfig]) -> Result<Prepared, LockError> {
        let installed = self.installed();
        let mut fresh = Vec::new();
        for config in configs {
            let unchanged = installed
                .get(&config.id)
                .is_some_and(|lock| lock.config == *config);
            if !unchanged {
                fresh.push(self.build(config)?);
            }
        }
        Ok(Prepared {
            fresh,
            wanted: configs.iter().map(|c| c.id.clone()).collect(),
        })
    }

    /// Puts prepared drivers in service and takes out the locks the new configuration no
    /// longer has. Returns the drivers taken out (replaced or removed), for the caller to
    /// relock ([`retire`]): a door one of them opened must not stay open.
    pub fn install(&self, prepared: Prepared) -> Vec<Arc<dyn LockDriver>> {
        let mut installed = self
            .installed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
        let mut retired = Vec::new();
        let ids: std::collections::BTreeSet<&str> =
            prepared.wanted.iter().map(String::as_str).collect();
        installed.retain(|id, lock| {
            let keep = ids.contains(id.as_str());
            if !keep {
                retired.push(Arc::clone(&lock.driver));
            }
            keep
        });
        for lock in prepared.fresh {
            let id = lock.driver.id().to_owned();
            if let Some(old) = installed.insert(id, lock) {
                retired.push(old.driver);
            }
        }
        retired
    }

    fn build(&self, config: &LockConfig) -> Result<Installed, LockError> {
        let id = config.id.clone();
        let mut log = None;
        let driver: Arc<dyn LockDriver> = match &config.driver {
            DriverConfig::Log => {
                let lock = Arc::new(LogLock::new(&id));
                log = Some(Arc::clone(&lock));
                lock
            }
            DriverConfig::Modbus {
                address,
                slave,
                target,
            } => Arc::new(ModbusLock::new(&id, address.clone(), *slave, *target)),
            DriverConfig::Mqtt {
                topic,
                unlock_payload,
                lock_payload,
            } => {
                let Some(link) = &self.mqtt else {
                    return Err(LockError::Invalid {
                        lock: id,
                        detail: "it uses MQTT but the daemon has no broker connection (the [mqtt] \
                                 section is read at start: add it and restart)"
                            .into(),
                    });
                };
                Arc::new(MqttLock::new(
                    &id,
                    link.clone(),
                    topic,
                    unlock_payload,
                    lock_payload.as_deref(),
                ))
            }
            DriverConfig::Ble {
                device,
                characteristic,
                unlock_payload,
                lock_payload,
            } => Arc::new(BleLock::new(
                &id,
                Arc::clone(&self.ble),
                device,
                characteristic,
                unlock_payload.clone(),
                lock_payload.clone(),
            )?),
        };
        Ok(Installed {
            config: config.clone(),
            driver,
            log,
        })
    }

    /// The driver of a lock.
    pub fn get(&self, id: &str) -> Option<Arc<dyn LockDriver>> {
        self.installed()
            .get(id)
            .map(|lock| Arc::clone(&lock.driver))
    }

    /// A log-only lock, to read what it recorded.
    #[cfg(test)]
    pub(crate) fn log_lock(&self, id: &str) -> Option<Arc<LogLock>> {
        self.installed().get(id).and_then(|lock| lock.log.clone())
    }

    fn drivers(&self) -> Vec<Arc<dyn LockDriver>> {
        self.installed()
            .values()
            .map(|lock| Arc::clone(&lock.driver))
            .collect()
    }

    /// Opens the permit's lock. A permit for a unit without a lock is `NotConfigured("")`; the
    /// caller answers those (409) before getting here.
    pub async fn unlock(&self, permit: &Permit, cmd: &Command) -> Result<Actuation, LockError> {
        let id = permit.lock().unwrap_or_default();
        let Some(driver) = self.get(id) else {
            return Err(LockError::NotConfigured(id.to_owned()));
        };
        driver.unlock(permit, cmd).await
    }

    /// Relocks every open lock now (shutdown drain, lockdown), all at once; returns the
    /// failures.
    pub(crate) async fn relock_all(&self) -> Vec<LockError> {
        retire(self.drivers()).await
    }

    /// Probes every lock, all at once (each applies its own timeout, so one dead device does
    /// not hold up the others' checks).
    pub(crate) async fn probe_all(&self) {
        let drivers = self.drivers();
        futures_util::future::join_all(drivers.iter().map(|driver| driver.probe())).await;
    }

    /// Changes whenever a lock goes into or out of service.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Every lock's latch, by id.
    pub(crate) fn latches(&self) -> BTreeMap<String, tokio::sync::watch::Receiver<Latch>> {
        self.installed()
            .iter()
            .map(|(id, lock)| (id.clone(), lock.driver.latch()))
            .collect()
    }

    /// Every lock's health, by id.
    pub fn health(&self) -> BTreeMap<String, LockHealth> {
        self.installed()
            .iter()
            .map(|(id, lock)| (id.clone(), lock.driver.health()))
            .collect()
    }
}

/// Waits for a change of any of `latches` (keyed by lock or unit): `Some(key)`, or `None` when
/// one's driver is gone (fetch them again). Never ends when there are none.
pub(crate) async fn next_latch_change(
    latches: &mut BTreeMap<String, tokio::sync::watch::Receiver<Latch>>,
) -> Option<String> {
    if latches.is_empty() {
        return std::future::pending().await;
    }
    let waits = latches.iter_mut().map(|(key, latch)| {
        Box::pin(async move { latch.changed().await.ok().map(|()| key.clone()) })
    });
    futures_util::future::select_all(waits).await.0
}

/// Relocks drivers taken out of service (or every driver, at shutdown) now, all at once, each
/// within its own device timeout; returns the failures. A lock that is not open sends nothing.
pub(crate) async fn retire(drivers: Vec<Arc<dyn LockDriver>>) -> Vec<LockError> {
    futures_util::future::join_all(drivers.iter().map(|driver| driver.relock_now()))
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
}

/// Checks that a permit is for the lock `id`.
pub(crate) fn check_permit(id: &str, permit: &Permit) -> Result<(), LockError> {
    match permit.lock() {
        Some(lock) if lock == id => Ok(()),
        other => Err(LockError::NotConfigured(
            other.unwrap_or_default().to_owned(),
        )),
    }
}
