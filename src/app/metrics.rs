//! `/metrics`: Prometheus metrics for the operator's monitoring (pull only).
//!
//! Every family exists from the start, with its label values created at zero, so a daemon that
//! never synced or never decided anything shows zeros rather than nothing. Counters are
//! counted where things happen; gauges (health, members, locks, broker, clock, outbox) are
//! read from the daemon's state when someone scrapes ([`Metrics::refresh`]). Built on
//! `prometheus-client`, which writes OpenMetrics; [`Format::Classic`] turns that into the
//! classic text format 0.0.4 that `promtool check metrics` and older scrapers read.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The door pipeline's stages, in order (`portier_stage_seconds{stage}`).
pub(crate) const STAGES: [&str; 5] = ["receive", "decide", "actuate", "persist", "publish"];

/// A `result` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabel {
    /// `granted`/`denied`, or `applied`/`held`/`failed` for syncs.
    pub result: &'static str,
}

/// A `lock` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LockLabel {
    /// The lock id.
    pub lock: String,
}

/// A door alarm's labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DoorAlarmLabel {
    /// The unit whose door it is.
    pub unit: String,
    /// `forced_open` or `held_open`.
    pub kind: &'static str,
}

/// A `unit` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct UnitLabel {
    /// The unit id.
    pub unit: String,
}

/// What the gauges show, read from the daemon's state at a scrape.
#[derive(Debug, Default)]
pub(crate) struct Readings {
    /// 0 ok, 1 degraded, 2 failing.
    pub health_status: i64,
    pub last_sync_success: Option<DateTime<Utc>>,
    pub sync_interval: std::time::Duration,
    pub members: usize,
    /// Per lock: whether it is ok.
    pub locks_ok: std::collections::BTreeMap<String, bool>,
    pub mqtt_connected: bool,
    /// Per reader: whether its device answers, and its secure channel (where they apply).
    pub readers: std::collections::BTreeMap<String, (Option<bool>, Option<bool>)>,
    pub clock_trusted: bool,
    pub outbox_depth: usize,
    /// Whether a lockdown is on.
    pub lockdown: bool,
    /// How long the oldest waiting check-in has waited.
    pub outbox_oldest: Option<std::time::Duration>,
    /// Per unit with a door contact: whether its door is open (`None` before a reading).
    pub doors_open: std::collections::BTreeMap<String, Option<bool>>,
}

/// A `reader` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReaderLabel {
    /// The reader id.
    pub reader: String,
}

/// A `stage` label (one of [`STAGES`]).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StageLabel {
    stage: &'static str,
}

/// The routes that check a token, as `endpoint` labels of `portier_auth_failures_total`: the
/// admin token on every admin route, a Cobot user's token on the app open.
pub(crate) const AUTH_ENDPOINTS: [&str; 6] = [
    "/v1/sync",
    "/v1/explain",
    "/v1/members",
    "/v1/events",
    "/v1/admin/units/{unit}/open",
    "/v1/units/{unit}/open",
];

/// An `endpoint` label (one of [`AUTH_ENDPOINTS`], or `other`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type StageHistograms = Family<StageLabel, Histogram, fn() -> Histogram>;

fn stage_histogram() -> Histogram {
    // 50 µs … ~3.3 s.
    Histogram::new(exponential_buckets(5e-5, 3.0, 11))
}

/// The exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Prometheus text 0.0.4 (the default, and for `Accept: text/plain`).
    Classic,
    /// OpenMetrics 1.0 (`Accept: application/openmetrics-text`).
    OpenMetrics,
}

impl Format {
    /// The format for an `Accept` header: OpenMetrics only when the scraper names it and
    /// does not prefer the classic text (by `q`); anything else gets the classic text.
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Classic;
        };
        let (mut openmetrics, mut classic) = (0.0_f64, 0.0_f64);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f64>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(0.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" => classic = classic.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= classic {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The daemon's metrics.
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    /// Decisions by result.
    pub decisions: Family<ResultLabel, Counter>,
    /// Seconds from request to decision.
    pub decision_seconds: Histogram,
    /// Seconds from decision to lock command sent.
    pub actuation_seconds: Histogram,
    /// Seconds each stage of the door pipeline took.
    stage_seconds: StageHistograms,
    /// Syncs by result.
    pub syncs: Family<ResultLabel, Counter>,
    /// Seconds a sync took.
    pub sync_seconds: Histogram,
    /// Check-ins waiting for Cobot.
    pub outbox_depth: Gauge,
    /// Lock command failures by lock.
    pub lock_errors: Family<LockLabel, Counter>,
    auth_failures: Family<EndpointLabel, Counter>,
    health_status: Gauge,
    last_sync_success: Gauge<f64, AtomicU64>,
    sync_interval: Gauge<f64, AtomicU64>,
    members: Gauge,
    lock_up: Family<LockLabel, Gauge>,
    /// The locks `lock_up` shows, to drop one a reload took out.
    shown_locks: std::sync::Mutex<Vec<String>>,
    mqtt_connected: Gauge,
    /// Readers with a device of their own: 1 while it answers.
    reader_up: Family<ReaderLabel, Gauge>,
    /// OSDP readers: 1 while the secure channel is up.
    reader_secure_channel: Family<ReaderLabel, Gauge>,
    door_open: Family<UnitLabel, Gauge>,
    door_alarms: Family<DoorAlarmLabel, Counter>,
    /// The readers the two families show, to drop one a reload took out.
    shown_readers: std::sync::Mutex<Vec<String>>,
    clock_trusted: Gauge,
    outbox_oldest: Gauge<f64, AtomicU64>,
    lockdown: Gauge,
}

impl Metrics {
    /// Creates and registers every family, with its known label values at zero (`locks`: the
    /// configured lock ids).
    pub fn new<'a>(locks: impl IntoIterator<Item = &'a str>) -> Self {
        let mut r = Registry::with_prefix("portier");
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "The running version (always 1)", build_info);
        let health_status = Gauge::default();
        r.register(
            "health_status",
            "Health as /healthz says: 0 ok, 1 degraded, 2 failing",
            health_status.clone(),
        );
        let last_sync_success = Gauge::<f64, AtomicU64>::default();
        r.register(
            "last_sync_success_timestamp_seconds",
            "Unix time of the last successful sync; 0 when none ever succeeded",
            last_sync_success.clone(),
        );
        let syncs = Family::<ResultLabel, Counter>::default();
        for result in ["applied", "held", "failed"] {
            drop(syncs.get_or_create(&ResultLabel { result }));
        }
        r.register("syncs", "Cobot syncs by result", syncs.clone());
        let sync_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        r.register(
            "sync_seconds",
            "Duration of successful Cobot syncs",
            sync_seconds.clone(),
        );
        let sync_interval = Gauge::<f64, AtomicU64>::default();
        r.register(
            "sync_interval_seconds",
            "The configured cobot.sync_interval (no successful sync for 3 of them degrades health)",
            sync_interval.clone(),
        );
        let members = Gauge::default();
        r.register(
            "members",
            "Synced members in the snapshot in force",
            members.clone(),
        );
        let decisions = Family::<ResultLabel, Counter>::default();
        for result in ["granted", "denied"] {
            drop(decisions.get_or_create(&ResultLabel { result }));
        }
        r.register("decisions", "Door decisions by result", decisions.clone());
        let stage_seconds: StageHistograms = Family::new_with_constructor(stage_histogram);
        for stage in STAGES {
            drop(stage_seconds.get_or_create(&StageLabel { stage }));
        }
        r.register(
            "stage_seconds",
            "Time each stage of a door request took (receive, decide, actuate, persist, publish)",
            stage_seconds.clone(),
        );
        let decision_seconds = Histogram::new(exponential_buckets(1e-6, 4.0, 12));
        r.register(
            "decision_seconds",
            "Time from request to decision",
            decision_seconds.clone(),
        );
        let actuation_seconds = Histogram::new(exponential_buckets(1e-4, 3.0, 12));
        r.register(
            "actuation_seconds",
            "Time from decision to lock command sent",
            actuation_seconds.clone(),
        );
        let lock_up = Family::<LockLabel, Gauge>::default();
        let lock_errors = Family::<LockLabel, Counter>::default();
        for lock in locks {
            let label = LockLabel {
                lock: lock.to_owned(),
            };
            drop(lock_up.get_or_create(&label));
            drop(lock_errors.get_or_create(&label));
        }
        r.register(
            "lock_up",
            "1 when the lock is healthy (ok in /v1/status: nothing failing, and reached at least once), else 0",
            lock_up.clone(),
        );
        r.register("lock_errors", "Failed lock commands", lock_errors.clone());
        let mqtt_connected = Gauge::default();
        r.register(
            "mqtt_connected",
            "1 while the MQTT broker connection is up (0 also when no broker is configured)",
            mqtt_connected.clone(),
        );
        let reader_up = Family::<ReaderLabel, Gauge>::default();
        r.register(
            "reader_up",
            "1 while a USB, Wiegand or OSDP reader's device is open and (OSDP) answering, else 0",
            reader_up.clone(),
        );
        let reader_secure_channel = Family::<ReaderLabel, Gauge>::default();
        r.register(
            "reader_secure_channel",
            "1 while an OSDP reader's secure channel is up, else 0",
            reader_secure_channel.clone(),
        );
        let door_open = Family::<UnitLabel, Gauge>::default();
        r.register(
            "door_open",
            "1 while the unit's door contact reads open, 0 while closed (absent before a reading)",
            door_open.clone(),
        );
        let door_alarms = Family::<DoorAlarmLabel, Counter>::default();
        r.register(
            "door_alarms",
            "Door alarms: forced_open (opened with no grant or exit request) and held_open (open \
             too long while not held open)",
            door_alarms.clone(),
        );
        let clock_trusted = Gauge::default();
        r.register(
            "clock_trusted",
            "1 when the system clock is trusted (not before the build, not jumped back)",
            clock_trusted.clone(),
        );
        let auth_failures = Family::<EndpointLabel, Counter>::default();
        for endpoint in AUTH_ENDPOINTS {
            drop(auth_failures.get_or_create(&EndpointLabel { endpoint }));
        }
        r.register(
            "auth_failures",
            "Requests refused for a missing or wrong token (admin or Cobot user), by route",
            auth_failures.clone(),
        );
        let outbox_depth = Gauge::default();
        r.register(
            "outbox_depth",
            "Check-ins waiting to be sent to Cobot",
            outbox_depth.clone(),
        );
        let outbox_oldest = Gauge::<f64, AtomicU64>::default();
        r.register(
            "outbox_oldest_seconds",
            "Age of the oldest check-in waiting to be sent to Cobot; 0 when none waits",
            outbox_oldest.clone(),
        );
        let lockdown = Gauge::default();
        r.register("lockdown", "1 while lockdown is on", lockdown.clone());
        Self {
            registry: Mutex::new(r),
            decisions,
            decision_seconds,
            actuation_seconds,
            stage_seconds,
            syncs,
            sync_seconds,
            outbox_depth,
            lock_errors,
            auth_failures,
            health_status,
            last_sync_success,
            sync_interval,
            members,
            lock_up,
            shown_locks: std::sync::Mutex::default(),
            mqtt_connected,
            reader_up,
            reader_secure_channel,
            door_open,
            door_alarms,
            shown_readers: std::sync::Mutex::default(),
            clock_trusted,
            outbox_oldest,
            lockdown,
        }
    }

    /// Counts a door alarm.
    pub(crate) fn door_alarm(&self, unit: &str, kind: &'static str) {
        self.door_alarms
            .get_or_create(&DoorAlarmLabel {
                unit: unit.to_owned(),
                kind,
            })
            .inc();
    }

    /// Records how long a stage of the door pipeline took.
    pub fn stage(&self, stage: &'static str, seconds: f64) {
        self.stage_seconds
            .get_or_create(&StageLabel { stage })
            .observe(seconds);
    }

    /// Counts a request refused for a missing or wrong token at the route `endpoint`, and
    /// returns the label it was counted under (a route not in [`AUTH_ENDPOINTS`] is `other`,
    /// so the label set stays bounded).
    pub(crate) fn auth_failed(&self, endpoint: &str) -> &'static str {
        let endpoint = AUTH_ENDPOINTS
            .into_iter()
            .find(|known| *known == endpoint)
            .unwrap_or("other");
        self.auth_failures
            .get_or_create(&EndpointLabel { endpoint })
            .inc();
        endpoint
    }

    /// Sets the gauges to `readings` (taken from the daemon's state on every scrape).
    pub fn show(&self, readings: Readings) {
        self.health_status.set(readings.health_status);
        self.last_sync_success.set(
            readings
                .last_sync_success
                .map_or(0.0, |t| t.timestamp_millis() as f64 / 1000.0),
        );
        self.sync_interval.set(readings.sync_interval.as_secs_f64());
        self.members
            .set(i64::try_from(readings.members).unwrap_or(i64::MAX));
        let mut shown = self
            .shown_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A lock a reload took out leaves no stale series.
        for gone in shown
            .iter()
            .filter(|lock| !readings.locks_ok.contains_key(*lock))
        {
            self.lock_up.remove(&LockLabel { lock: gone.clone() });
        }
        shown.clone_from(&readings.locks_ok.keys().cloned().collect());
        drop(shown);
        for (lock, ok) in readings.locks_ok {
            self.lock_up
                .get_or_create(&LockLabel { lock })
                .set(i64::from(ok));
        }
        self.mqtt_connected.set(i64::from(readings.mqtt_connected));
        let mut shown = self
            .shown_readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A reader a reload took out leaves no stale series.
        for gone in shown
            .iter()
            .filter(|reader| !readings.readers.contains_key(*reader))
        {
            let label = ReaderLabel {
                reader: gone.clone(),
            };
            self.reader_up.remove(&label);
            self.reader_secure_channel.remove(&label);
        }
        shown.clone_from(&readings.readers.keys().cloned().collect());
        drop(shown);
        for (reader, (online, secure)) in readings.readers {
            let label = ReaderLabel { reader };
            if let Some(online) = online {
                self.reader_up.get_or_create(&label).set(i64::from(online));
            }
            if let Some(secure) = secure {
                self.reader_secure_channel
                    .get_or_create(&label)
                    .set(i64::from(secure));
            }
        }
        self.clock_trusted.set(i64::from(readings.clock_trusted));
        self.outbox_depth
            .set(i64::try_from(readings.outbox_depth).unwrap_or(i64::MAX));
        self.outbox_oldest
            .set(readings.outbox_oldest.map_or(0.0, |age| age.as_secs_f64()));
        self.lockdown.set(i64::from(readings.lockdown));
        self.door_open.clear();
        for (unit, open) in readings.doors_open {
            if let Some(open) = open {
                self.door_open
                    .get_or_create(&UnitLabel { unit })
                    .set(i64::from(open));
            }
        }
    }

    /// The exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let encoded = encode_registry(&mut text, &registry).and_then(|()| match format {
            Format::OpenMetrics => encode_eof(&mut text),
            Format::Classic => Ok(()),
        });
        if let Err(e) = encoded {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        match format {
            Format::OpenMetrics => text,
            Format::Classic => classic(&text),
        }
    }
}

/// OpenMetrics text (without `# EOF`) → Prometheus text 0.0.4: a counter family is named with
/// its `_total` suffix in `# HELP` and `# TYPE`, and `# UNIT` lines go.
fn classic(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(line) => out.push_str(&line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl crate::access::AccessMetrics for Metrics {
    fn decided(&self, granted: bool, seconds: Option<f64>) {
        if let Some(seconds) = seconds {
            self.decision_seconds.observe(seconds);
        }
        let result = if granted { "granted" } else { "denied" };
        self.decisions.get_or_create(&ResultLabel { result }).inc();
    }

    fn stage(&self, stage: &'static str, seconds: f64) {
        Metrics::stage(self, stage, seconds);
    }

    fn actuated(&self, seconds: f64) {
        self.actuation_seconds.observe(seconds);
    }

    fn lock_failed(&self, lock: &str) {
        self.lock_errors
            .get_or_create(&LockLabel {
                lock: lock.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_classic_format_names_counters_with_total_and_has_no_eof() {
        let metrics = Metrics::new(["front"]);
        let text = metrics.render(Format::Classic);
        assert!(
            text.contains("# TYPE portier_syncs_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP portier_syncs_total Cobot syncs"),
            "{text}"
        );
        assert!(
            text.contains("portier_syncs_total{result=\"applied\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("portier_lock_up{lock=\"front\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        let open = metrics.render(Format::OpenMetrics);
        assert!(open.contains("# TYPE portier_syncs counter\n"), "{open}");
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn only_a_scraper_that_names_openmetrics_gets_it() {
        assert_eq!(Format::from_accept(None), Format::Classic);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Classic);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Classic);
        // What Prometheus sends by default.
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                 version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text")),
            Format::OpenMetrics
        );
        // A scraper that prefers the classic text, or refuses OpenMetrics, gets it.
        assert_eq!(
            Format::from_accept(Some(
                "text/plain;version=0.0.4,application/openmetrics-text;version=1.0.0;q=0.5"
            )),
            Format::Classic
        );
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;q=0")),
            Format::Classic
        );
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;q=bogus")),
            Format::Classic
        );
    }

    #[test]
    fn auth_failures_are_counted_by_route_and_unknown_routes_share_one_label() {
        let metrics = Metrics::new(["front"]);
        assert_eq!(metrics.auth_failed("/v1/members"), "/v1/members");
        assert_eq!(metrics.auth_failed("/v1/whatever/123"), "other");
        let text = metrics.render(Format::Classic);
        assert!(
            text.contains("portier_auth_failures_total{endpoint=\"/v1/members\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("portier_auth_failures_total{endpoint=\"/v1/events\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("portier_auth_failures_total{endpoint=\"other\"} 1\n"),
            "{text}"
        );
    }
}
