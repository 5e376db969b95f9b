//! `/healthz`: what is wrong with the daemon right now, each reason a sentence saying what to
//! do. Failing only without a snapshot (nothing but admin opens works then); any other trouble
//! is degraded (DESIGN.md "Health and metrics" lists every reason). Health is computed when
//! someone asks, from the daemon's state and the locks' last commands and probes; nothing here
//! does I/O beyond reading the store.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::state::Daemon;
use crate::config::Config;
use crate::domain::{ClockTrust, Snapshot};
use crate::store::GuardState;

/// A check-in waiting longer than this makes health degraded.
const OUTBOX_STALE: chrono::Duration = chrono::Duration::hours(1);
/// No successful sync for this many sync intervals makes health degraded.
const OFFLINE_INTERVALS: i32 = 3;

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
        reasons.push(format!(
            "the last successful sync was {} ago, more than offline.max_age: only the groups \
             in offline.keep_groups are granted until a sync succeeds",
            human(age)
        ));
    }
    match daemon.clock_trust(now) {
        ClockTrust::Trusted => {}
        ClockTrust::Untrusted(crate::domain::ClockProblem::BeforeBuild) => reasons.push(format!(
            "the system clock is untrusted: it says {}, before this build ({}); \
             schedule-limited grants are refused until the clock is set (check NTP)",
            now.to_rfc3339(),
            crate::clock::build_time().date_naive()
        )),
        ClockTrust::Untrusted(crate::domain::ClockProblem::JumpedBack) => reasons.push(format!(
            "the system clock is untrusted: it says {}, behind the last recorded event (it \
             jumped back); schedule-limited grants are refused until the clock is right \
             (check NTP)",
            now.to_rfc3339()
        )),
    }
    lock_and_broker_reasons(daemon, &config, &mut reasons);
    let problems = daemon.problems();
    reasons.extend(
        [problems.reload_rejected, problems.restart_needed]
            .into_iter()
            .flatten(),
    );
    reasons.extend(reader_reasons(daemon));
    reasons.extend(door_reasons(daemon));
    {
        let lockdown = daemon.lockdown.borrow();
        if lockdown.on {
            let since = lockdown
                .since
                .map(|t| format!(" since {}", t.format("%Y-%m-%d %H:%M UTC")))
                .unwrap_or_default();
            let why = lockdown
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            reasons.push(format!(
                "lockdown is on{since}{why}: only lockdown.allow_groups and staff open; \
                 `portier lockdown off` ends it"
            ));
        }
    }
    reasons.extend(admin_token_reason(daemon, &config));
    if let Some(reason) = offline_reason(&config, &cloud.sync, snapshot.as_deref(), now) {
        reasons.push(reason);
    }
    if let Some(age) = outbox(daemon, now)
        .oldest_age
        .filter(|age| *age > OUTBOX_STALE)
    {
        reasons.push(format!(
            "the oldest pending Cobot check-in is older than 1 h (it has waited {}): check the \
             network and the Cobot token; check-ins are kept and sent once Cobot answers",
            human(age)
        ));
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

/// Doors in alarm, and door contacts that cannot be read.
fn door_reasons(daemon: &Daemon) -> Vec<String> {
    let doors = daemon.doors.borrow();
    let mut reasons = Vec::new();
    for (unit, door) in doors.iter() {
        match door.status.alarm() {
            Some(crate::doors::DoorEvent::ForcedOpen) => reasons.push(format!(
                "the door of unit \"{unit}\" was forced open (opened with no grant or exit \
                 request) and is not closed yet"
            )),
            Some(_) => reasons.push(format!(
                "the door of unit \"{unit}\" is held open longer than its held_open_after"
            )),
            None => {}
        }
        if door.status.flapping {
            reasons.push(format!(
                "the door contact of unit \"{unit}\" is flapping (it changed {} times within \
                 {} s): its alarms are held until it is quiet for {} s; check the magnet and \
                 the wiring",
                crate::doors::watch::FLAPPING_CHANGES,
                crate::doors::watch::FLAPPING_WINDOW.as_secs(),
                crate::doors::watch::FLAPPING_QUIET.as_secs()
            ));
        }
        if let Some(problem) = &door.problem {
            reasons.push(problem.clone());
        }
    }
    reasons
}

/// Readers whose own device cannot be opened or failed (unplugged, no GPIO line by that
/// name, no permission). MQTT readers have no device: their broker connection has its own
/// reason.
fn reader_reasons(daemon: &Daemon) -> Vec<String> {
    crate::readers::statuses(&daemon.readers.borrow())
        .into_iter()
        .filter(|(_, status)| status.online == Some(false))
        .map(|(id, status)| {
            format!(
                "reader \"{id}\" is offline: {}; it reads no cards until then (tried again \
                 every 2 s)",
                status
                    .problem
                    .as_deref()
                    .unwrap_or("its device is not open")
            )
        })
        .collect()
}

/// Failing locks and an unreachable broker.
fn lock_and_broker_reasons(daemon: &Daemon, config: &Config, reasons: &mut Vec<String>) {
    if let (Some(mqtt), Some(link)) = (&config.mqtt, &daemon.mqtt)
        && !link.is_up()
    {
        reasons.push(format!(
            "the MQTT broker ({}) is unreachable (not connected): readers and MQTT locks do \
             not work until it is back; check that it runs and that mqtt.url is right \
             (reconnecting)",
            mqtt.url
        ));
    } else if let (Some(mqtt), Some(link)) = (&config.mqtt, &daemon.mqtt_readers)
        && config.readers.iter().any(|r| r.topic().is_some())
        && !link.is_up()
    {
        reasons.push(format!(
            "the MQTT broker ({}) does not accept the readers' connection (client id \"{}{}\"): \
             readers do not work until it does; check the broker's log and its ACL \
             (reconnecting)",
            mqtt.url,
            mqtt.client_id,
            crate::mqtt::READER_CLIENT_SUFFIX
        ));
    }
    for (id, lock) in daemon.locks.health() {
        if let Some(problem) = lock.problem.filter(|_| !lock.ok) {
            reasons.push(if problem.starts_with("lock \"") {
                problem
            } else {
                format!("lock \"{id}\": {problem}")
            });
        }
    }
}

/// `http.admin_token_file` set but unusable now (missing, unreadable, readable by others,
/// empty), or holding another token than the one the daemon uses (changed without a reload).
/// No such key is not a reason: the admin endpoints then simply answer 401.
fn admin_token_reason(daemon: &Daemon, config: &Config) -> Option<String> {
    let file = config.http.admin_token_file.as_ref()?;
    match crate::config::read_secret(file) {
        Err(e) => Some(format!(
            "the admin token file is unusable: {e}; admin endpoints and the commands that go \
             through the daemon are refused until it is fixed and the configuration reloaded \
             (systemctl reload portier)"
        )),
        Ok(token) if daemon.admin_token().as_deref() != Some(token.as_str()) => Some(format!(
            "the admin token file {} changed since the daemon read it: the daemon still expects \
             the old token (or none); reload the configuration (systemctl reload portier)",
            file.display()
        )),
        Ok(_) => None,
    }
}

/// No successful sync for more than [`OFFLINE_INTERVALS`] sync intervals.
fn offline_reason(
    config: &Config,
    sync: &crate::store::SyncStatus,
    snapshot: Option<&Snapshot>,
    now: DateTime<Utc>,
) -> Option<String> {
    let last = sync.last_success.or(snapshot.map(Snapshot::synced_at))?;
    let interval = chrono::Duration::from_std(config.cobot.sync_interval).ok()?;
    let age = now - last;
    (age > interval * OFFLINE_INTERVALS).then(|| {
        format!(
            "offline: no successful sync for {} (more than {OFFLINE_INTERVALS} sync intervals \
             of {}); decisions use the cached snapshot; check the network and Cobot",
            human(age),
            human(interval)
        )
    })
}

/// The check-in outbox at a glance.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OutboxState {
    /// Check-ins waiting.
    pub depth: usize,
    /// How long the oldest one has waited (since its entry), if any waits.
    pub oldest_age: Option<chrono::Duration>,
}

/// Reads the outbox: its depth and the age of its oldest check-in (the time of the event that
/// caused it). A store error reads as an empty outbox and is logged.
pub(crate) fn outbox(daemon: &Daemon, now: DateTime<Utc>) -> OutboxState {
    let read = || -> Result<OutboxState, crate::store::StoreError> {
        let pending = daemon.store.pending_check_ins()?;
        let Some(oldest_seq) = pending.iter().map(|t| t.event_seq).min() else {
            return Ok(OutboxState::default());
        };
        let event = daemon.store.events_after(oldest_seq.saturating_sub(1), 1)?;
        Ok(OutboxState {
            depth: pending.len(),
            oldest_age: event
                .first()
                .filter(|e| e.seq == oldest_seq)
                .map(|e| now - e.time),
        })
    };
    read().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the check-in outbox");
        OutboxState::default()
    })
}
