//! The daemon's shared state and what health and status are derived from it.
//!
//! Only the sync task publishes snapshots (it holds the `watch` channel's sender); everything
//! else reads the latest one. Locks in here are std locks held for a few instructions and never across an
//! `.await`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::domain::{ClockTrust, Snapshot};
use crate::store::{Store, SyncStatus};
use crate::sync::SyncSummary;

/// The snapshot in force, as everyone but the sync task reads it.
pub(crate) type SnapshotReceiver = watch::Receiver<Option<Arc<Snapshot>>>;

/// A request to the sync task.
pub(crate) enum Job {
    /// Sync with Cobot.
    Sync(SyncJob),
    /// Apply a reloaded configuration: recompile the stored snapshot with its policy and
    /// publish both. The reply says why not, if the cache cannot be read (then nothing
    /// changed).
    Reload {
        /// The new configuration, already validated.
        config: Arc<Config>,
        /// Where the outcome goes.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// A sync asked of the sync task.
pub(crate) struct SyncJob {
    /// Run without the mass-revocation guard.
    pub accept_revocations: bool,
    /// Where to send the outcome, when the caller waits for it.
    pub reply: Option<oneshot::Sender<Result<SyncSummary, String>>>,
}

/// What the daemon knows about its link to Cobot beyond the stored sync status.
#[derive(Debug, Default, Clone)]
pub(crate) struct CloudState {
    /// Why no sync can be attempted (no token), if so.
    pub token_problem: Option<String>,
    /// The stored sync status, mirrored in memory.
    pub sync: SyncStatus,
    /// Seconds the last complete sync took.
    pub last_duration: Option<f64>,
    /// What was wrong with the stored snapshot when it could not be read at start (health
    /// says so until a sync replaces it).
    pub unreadable_snapshot: Option<String>,
}

/// State shared by the daemon's tasks.
pub(crate) struct Daemon {
    /// The configuration in force (replaced on SIGHUP after validation).
    pub config: watch::Sender<Arc<Config>>,
    /// The snapshot decisions are made from; `None` until the first sync. Only the sync task
    /// writes it.
    pub snapshot: SnapshotReceiver,
    /// The cache; this process owns it.
    pub store: Arc<Store>,
    /// Requests to the sync task.
    pub sync_jobs: mpsc::Sender<Job>,
    /// The admin bearer token; `None` makes admin endpoints answer 401.
    pub admin_token: RwLock<Option<String>>,
    /// The installer page's password (`http.page_password_file`), read at start and reload.
    pub page_password: RwLock<Option<String>>,
    /// Cobot link state.
    pub cloud: Mutex<CloudState>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<super::metrics::Metrics>,
    /// The time of the newest persisted event: a clock behind it has jumped back.
    pub clock: Arc<crate::access::EventClock>,
    /// The site's locks (for their health).
    pub locks: Arc<crate::locks::Locks>,
    /// The broker connection, when `[mqtt]` is configured (for its health).
    pub mqtt: Option<crate::mqtt::MqttLink>,
    /// The readers' broker connection, when `[mqtt]` and readers are configured (for its
    /// health).
    pub mqtt_readers: Option<crate::mqtt::MqttLink>,
    /// Configuration trouble found at start or on SIGHUP.
    pub problems: Mutex<ConfigProblems>,
    /// The readers in service (for their status).
    pub readers: watch::Receiver<Arc<crate::readers::Table>>,
    /// Whether a lockdown is on (kept in the store; switched through the admin API).
    pub lockdown: Arc<crate::access::LockdownSwitch>,
    /// The doors with a contact, by unit.
    pub doors: watch::Receiver<crate::doors::Doors>,
    /// Enrolment readers' reads, for `portier enrol`.
    pub enrolment: crate::readers::enrol::Enrolment,
}

/// Configuration trouble that makes health degraded, each a sentence saying what to do.
#[derive(Debug, Default, Clone)]
pub(crate) struct ConfigProblems {
    /// The file reloaded on SIGHUP was rejected (the old configuration runs).
    pub reload_rejected: Option<String>,
    /// A reload changed settings that only a restart applies.
    pub restart_needed: Option<String>,
}

impl Daemon {
    /// The readers in service as `/v1/status` and `/metrics` show them, by id. An MQTT
    /// reader is online while the readers' broker connection is up (its messages arrive on
    /// that connection, nowhere else).
    pub(crate) fn reader_statuses(&self) -> BTreeMap<String, crate::readers::ReaderStatus> {
        let table = self.readers.borrow();
        let mut statuses = crate::readers::statuses(&table);
        let connected = self
            .mqtt_readers
            .as_ref()
            .is_some_and(crate::mqtt::MqttLink::is_up);
        // A reader with a topic is an MQTT reader (as `mqtt_up` and health tell them apart).
        for reader in table.values().filter(|r| r.config.topic().is_some()) {
            if let Some(status) = statuses.get_mut(&reader.config.id) {
                status.online = Some(connected);
                status.problem =
                    (!connected).then(|| "not connected to the MQTT broker".to_owned());
            }
        }
        statuses
    }

    /// Whether both broker connections (the readers' one, if any) are up; `None` without
    /// `[mqtt]`.
    pub(crate) fn mqtt_up(&self) -> Option<bool> {
        self.mqtt.as_ref().map(|link| {
            // The readers' connection counts only where there are MQTT readers (it is opened
            // anyway, for a reload that adds some).
            link.is_up()
                && (!self.config().readers.iter().any(|r| r.topic().is_some())
                    || self
                        .mqtt_readers
                        .as_ref()
                        .is_none_or(crate::mqtt::MqttLink::is_up))
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.borrow())
    }

    /// The snapshot in force.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.borrow().clone()
    }

    /// A copy of the Cobot link state.
    pub(crate) fn cloud(&self) -> CloudState {
        self.cloud
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the Cobot link state.
    pub(crate) fn update_cloud(&self, f: impl FnOnce(&mut CloudState)) {
        f(&mut self.cloud.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Whether the clock can be trusted at `now`: not before the build, and not behind the
    /// newest persisted event (a clock that jumped back).
    pub(crate) fn clock_trust(&self, now: DateTime<Utc>) -> ClockTrust {
        self.clock.trust(now)
    }

    /// A copy of the configuration problems.
    pub(crate) fn problems(&self) -> ConfigProblems {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the configuration problems.
    pub(crate) fn update_problems(&self, f: impl FnOnce(&mut ConfigProblems)) {
        f(&mut self.problems.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Logs and counts a request refused for its token (`portier_auth_failures_total`):
    /// `endpoint` is the route (`/v1/members`, `/v1/units/{unit}/open`), `why` says what was
    /// wrong. The token itself is never logged.
    pub(crate) fn auth_failed(&self, endpoint: &str, client: Option<std::net::IpAddr>, why: &str) {
        let endpoint = self.metrics.auth_failed(endpoint);
        match client {
            Some(client) => {
                tracing::warn!(endpoint, %client, why, "request refused: authentication failed");
            }
            None => tracing::warn!(endpoint, why, "request refused: authentication failed"),
        }
    }

    /// The installer page's password, if configured.
    pub(crate) fn page_password(&self) -> Option<String> {
        self.page_password
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The admin token, if configured.
    pub fn admin_token(&self) -> Option<String> {
        self.admin_token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
