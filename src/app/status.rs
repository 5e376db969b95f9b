//! `/v1/status` and the gauges of `/metrics`: what the daemon's state and health show, read
//! at the moment they are asked for.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::health::{Health, HealthStatus, health, outbox};
use super::metrics::Readings;
use super::state::Daemon;
use crate::domain::ClockTrust;
use crate::store::GuardState;

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
    /// Per reader: its kind, unit, device state and last message (never card data).
    pub readers: std::collections::BTreeMap<String, crate::readers::ReaderStatus>,
    /// Whether the MQTT broker connection is up; `None` without `[mqtt]`.
    pub mqtt_connected: Option<bool>,
    /// Whether a lockdown is on, why and since when.
    pub lockdown: crate::store::Lockdown,
    pub outbox_depth: usize,
    /// How long the oldest waiting check-in has waited; `None` when none waits.
    pub outbox_oldest_seconds: Option<i64>,
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
    let outbox = outbox(daemon, now);
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
        readers: daemon.reader_statuses(),
        mqtt_connected: daemon.mqtt_up(),
        lockdown: daemon.lockdown.borrow().clone(),
        outbox_depth: outbox.depth,
        outbox_oldest_seconds: outbox.oldest_age.map(|age| age.num_seconds().max(0)),
    }
}

/// Sets the gauges of `/metrics` from the daemon's state at `now` (on every scrape).
pub(crate) fn refresh_metrics(daemon: &Daemon, now: DateTime<Utc>) {
    let outbox = outbox(daemon, now);
    let readings = Readings {
        health_status: match health(daemon, now).status {
            HealthStatus::Ok => 0,
            HealthStatus::Degraded => 1,
            HealthStatus::Failing => 2,
        },
        last_sync_success: daemon.cloud().sync.last_success,
        sync_interval: daemon.config().cobot.sync_interval,
        members: daemon.current().map_or(0, |s| s.report().members),
        locks_ok: daemon
            .locks
            .health()
            .into_iter()
            .map(|(lock, health)| (lock, health.ok))
            .collect(),
        mqtt_connected: daemon.mqtt_up().unwrap_or(false),
        readers: daemon
            .reader_statuses()
            .into_iter()
            .map(|(reader, status)| (reader, (status.online, status.secure_channel)))
            .collect(),
        clock_trusted: matches!(daemon.clock_trust(now), ClockTrust::Trusted),
        lockdown: daemon.lockdown.borrow().on,
        doors_open: daemon
            .doors
            .borrow()
            .iter()
            .map(|(unit, door)| (unit.clone(), door.status.open))
            .collect(),
        outbox_depth: outbox.depth,
        outbox_oldest: outbox
            .oldest_age
            .map(|age| age.to_std().unwrap_or_default()),
    };
    daemon.metrics.show(readings);
}
