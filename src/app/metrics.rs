//! `/metrics`: Prometheus text for the operator's monitoring (pull only).
//!
//! Decisions by result, decision and actuation latency, sync duration and results, outbox
//! depth, lock errors. Built on `prometheus-client`.

use std::sync::Mutex;
use std::sync::PoisonError;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// The daemon's metrics.
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    /// Decisions by result.
    pub decisions: Family<ResultLabel, Counter>,
    /// Seconds from request to decision.
    pub decision_seconds: Histogram,
    /// Seconds from decision to lock command sent.
    pub actuation_seconds: Histogram,
    /// Syncs by result.
    pub syncs: Family<ResultLabel, Counter>,
    /// Seconds a sync took.
    pub sync_seconds: Histogram,
    /// Check-ins waiting for Cobot.
    pub outbox_depth: Gauge,
    /// Lock command failures by lock.
    pub lock_errors: Family<LockLabel, Counter>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("portier");
        let decisions = Family::<ResultLabel, Counter>::default();
        registry.register("decisions", "Door decisions by result", decisions.clone());
        let decision_seconds = Histogram::new(exponential_buckets(1e-6, 4.0, 12));
        registry.register(
            "decision_seconds",
            "Time from request to decision",
            decision_seconds.clone(),
        );
        let actuation_seconds = Histogram::new(exponential_buckets(1e-4, 3.0, 12));
        registry.register(
            "actuation_seconds",
            "Time from decision to lock command sent",
            actuation_seconds.clone(),
        );
        let syncs = Family::<ResultLabel, Counter>::default();
        registry.register("syncs", "Cobot syncs by result", syncs.clone());
        let sync_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "sync_seconds",
            "Duration of Cobot syncs",
            sync_seconds.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Check-ins waiting to be sent to Cobot",
            outbox_depth.clone(),
        );
        let lock_errors = Family::<LockLabel, Counter>::default();
        registry.register("lock_errors", "Failed lock commands", lock_errors.clone());
        Self {
            registry: Mutex::new(registry),
            decisions,
            decision_seconds,
            actuation_seconds,
            syncs,
            sync_seconds,
            outbox_depth,
            lock_errors,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = encode(&mut text, &registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        text
    }
}
