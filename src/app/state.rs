//! The daemon's shared state and what health and status are derived from it.
//!
//! Only the sync task publishes snapshots (through the `watch` channel); everything else reads
//! the latest one. Locks in here are std locks held for a few instructions and never across an
//! `.await`.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::Config;
use crate::domain::{ClockTrust, Snapshot};
use crate::store::{GuardState, Store, SyncStatus};
use crate::sync::SyncSummary;

/// A request to the sync task.
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
    pub config: RwLock<Arc<Config>>,
    /// The snapshot decisions are made from; `None` until the first sync.
    pub snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    /// The cache; this process owns it.
    pub store: Arc<Store>,
    /// Requests to the sync task.
    pub sync_jobs: mpsc::Sender<SyncJob>,
    /// The admin bearer token; `None` makes admin endpoints answer 401.
    pub admin_token: RwLock<Option<String>>,
    /// Cobot link state.
    pub cloud: Mutex<CloudState>,
    /// Counters and histograms for `/metrics`.
    pub metrics: super::metrics::Metrics,
    /// The time of the newest persisted event: a clock behind it has jumped back.
    pub last_event: Mutex<Option<DateTime<Utc>>>,
    /// The site's locks (for their health).
    pub locks: Arc<crate::locks::Locks>,
}

impl Daemon {
    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The snapshot in force.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.borrow().clone()
    }

    /// A copy of the Cobot link state.
    pub fn cloud(&self) -> CloudState {
        self.cloud
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the Cobot link state.
    pub fn update_cloud(&self, f: impl FnOnce(&mut CloudState)) {
        f(&mut self.cloud.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Notes the time of a persisted event.
    pub fn saw_event(&self, time: DateTime<Utc>) {
        let mut last = self
            .last_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| time > t) {
            *last = Some(time);
        }
    }

    /// Whether the clock can be trusted at `now`: not before the build, and not behind the
    /// newest persisted event (a clock that jumped back).
    pub fn clock_trust(&self, now: DateTime<Utc>) -> ClockTrust {
        let last = *self
            .last_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        crate::clock::trust(now, last)
    }

    /// The admin token, if configured.
    pub fn admin_token(&self) -> Option<String> {
        self.admin_token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// `ok`, `degraded` or `failing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum HealthStatus {
    /// Everything works.
    Ok,
    /// Decisions are served, but something needs attention.
    Degraded,
    /// No snapshot: everything is denied.
    Failing,
}

/// `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// What is wrong and what to do, one sentence each.
    pub reasons: Vec<String>,
}

/// When the offline ladder is in force at `now`: how old the snapshot is.
pub(crate) fn offline_ladder_active(
    config: &Config,
    snapshot: &Snapshot,
    now: DateTime<Utc>,
) -> Option<chrono::Duration> {
    let max_age = chrono::Duration::from_std(config.policy.offline.max_age?).ok()?;
    let age = now - snapshot.synced_at();
    (age > max_age).then_some(age)
}

fn human(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0) as u64;
    humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
}

/// Health at `now`: failing only without a snapshot; any other trouble is degraded.
pub(crate) fn health(daemon: &Daemon, now: DateTime<Utc>) -> Health {
    let config = daemon.config();
    let cloud = daemon.cloud();
    let mut reasons = Vec::new();
    let snapshot = daemon.current();
    let failing = snapshot.is_none();
    if let (true, Some(detail)) = (failing, &cloud.unreadable_snapshot) {
        reasons.push(format!(
            "the stored snapshot cannot be read ({detail}): every request is denied until a \
             sync replaces it (the daemon keeps trying; POST /v1/sync or portier sync to try now)"
        ));
    } else if failing {
        reasons.push(
            "no snapshot yet: every request is denied until the first sync succeeds \
             (check the Cobot token and the network, then POST /v1/sync or run portier sync)"
                .to_owned(),
        );
    }
    if let Some(problem) = &cloud.token_problem {
        reasons.push(problem.clone());
    }
    if let Some(error) = &cloud.sync.last_error {
        let since = cloud
            .sync
            .last_success
            .map_or("never".to_owned(), |t| t.to_rfc3339());
        reasons.push(format!(
            "last sync failed: {error}; the cached snapshot stays in force (last success: {since}); \
             retrying"
        ));
    }
    if let GuardState::Held {
        revoked,
        granted_before,
        plan_lost,
        plan_known_before,
    } = cloud.sync.guard
    {
        reasons.push(format!(
            "the last sync was held: it would remove access from {revoked} of {granted_before} \
             granted members and take the plan from {plan_lost} of {plan_known_before} members \
             whose plan was known; check Cobot's memberships and plans, then run portier sync \
             --accept-revocations (or POST /v1/sync?accept_revocations=true)"
        ));
    }
    if let Some(problem) = snapshot
        .as_ref()
        .and_then(|s| s.report().fallback_problem.as_ref())
    {
        reasons.push(format!(
            "{problem}; members whose plan is unknown get no groups; set cobot.fallback_plan to \
             a Cobot plan id or exact name that has an [[assignment]], then reload (SIGHUP)"
        ));
    }
    if let Some(age) = snapshot
        .as_ref()
        .and_then(|s| offline_ladder_active(&config, s, now))
    {
        {
            reasons.push(format!(
                "the last successful sync was {} ago, more than offline.max_age: only the groups \
                 in offline.keep_groups are granted until a sync succeeds",
                human(age)
            ));
        }
    }
    match daemon.clock_trust(now) {
        ClockTrust::Trusted => {}
        ClockTrust::Untrusted(crate::domain::ClockProblem::BeforeBuild) => reasons.push(format!(
            "the system clock ({}) is before this build ({}): schedule-limited grants are \
             refused until the clock is set (check NTP)",
            now.to_rfc3339(),
            crate::clock::build_time().date_naive()
        )),
        ClockTrust::Untrusted(crate::domain::ClockProblem::JumpedBack) => reasons.push(format!(
            "the system clock ({}) is behind the last recorded event: it jumped back; \
             schedule-limited grants are refused until the clock is right (check NTP)",
            now.to_rfc3339()
        )),
    }
    let status = if failing {
        HealthStatus::Failing
    } else if reasons.is_empty() {
        HealthStatus::Ok
    } else {
        HealthStatus::Degraded
    };
    Health { status, reasons }
}

/// `/v1/status`: counts only, no names, emails or card ids (it is public).
#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    pub version: &'static str,
    pub site: String,
    pub health: Health,
    pub snapshot: Option<SnapshotStatus>,
    pub last_sync_attempt: Option<DateTime<Utc>>,
    pub last_sync_success: Option<DateTime<Utc>>,
    pub last_sync_error: Option<String>,
    pub last_sync_seconds: Option<f64>,
    pub guard: GuardState,
    pub offline_since: Option<DateTime<Utc>>,
    pub clock: &'static str,
    pub locks: std::collections::BTreeMap<String, LockStatus>,
    pub outbox_depth: usize,
}

/// The snapshot part of `/v1/status`.
#[derive(Debug, Serialize)]
pub(crate) struct SnapshotStatus {
    pub version: u64,
    pub synced_at: DateTime<Utc>,
    pub age_seconds: i64,
    pub members: usize,
    pub skipped_not_connected: usize,
    pub member_errors: usize,
}

/// One lock's health in `/v1/status`.
#[derive(Debug, Serialize)]
pub(crate) struct LockStatus {
    pub driver: &'static str,
    #[serde(flatten)]
    pub health: crate::locks::LockHealth,
}

/// Builds `/v1/status` at `now`.
pub(crate) fn status(daemon: &Daemon, now: DateTime<Utc>) -> StatusView {
    let config = daemon.config();
    let cloud = daemon.cloud();
    let snapshot = daemon.current().map(|s| {
        let report = s.report();
        SnapshotStatus {
            version: s.version(),
            synced_at: s.synced_at(),
            age_seconds: (now - s.synced_at()).num_seconds(),
            members: report.members,
            skipped_not_connected: report.skipped_not_connected,
            member_errors: report.members_with_errors,
        }
    });
    let offline_since = cloud
        .sync
        .last_error
        .as_ref()
        .and(cloud.sync.last_success.or(cloud.sync.last_attempt));
    StatusView {
        version: env!("CARGO_PKG_VERSION"),
        site: config.site.name.clone(),
        health: health(daemon, now),
        snapshot,
        last_sync_attempt: cloud.sync.last_attempt,
        last_sync_success: cloud.sync.last_success,
        last_sync_error: cloud.sync.last_error.clone(),
        last_sync_seconds: cloud.last_duration,
        guard: cloud.sync.guard,
        offline_since,
        clock: match daemon.clock_trust(now) {
            ClockTrust::Trusted => "trusted",
            ClockTrust::Untrusted(_) => "untrusted",
        },
        locks: {
            let mut health = daemon.locks.health();
            config
                .locks
                .iter()
                .map(|l| {
                    let status = LockStatus {
                        driver: l.driver.name(),
                        health: health.remove(&l.id).unwrap_or_default(),
                    };
                    (l.id.clone(), status)
                })
                .collect()
        },
        outbox_depth: daemon.store.outbox_depth().unwrap_or(0),
    }
}
