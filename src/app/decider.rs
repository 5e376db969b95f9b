//! The deciding task and the watchdog that follows it.
//!
//! Card readers are decided in one task (the reader loop of `app::mqtt`), which reads the
//! latest snapshot from the `watch` channel (never sled). The systemd watchdog is not a
//! free-running timer: every half `WATCHDOG_USEC` it sends that task a self-check between
//! reader messages, and only an answer — which needs a snapshot read and a trial decision —
//! produces `WATCHDOG=1`. A stuck reader loop therefore stops the pings and systemd restarts
//! the service, even when no door is used. A site without readers runs [`Decider::run`] on its
//! own instead.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::notify;
use crate::access::Engine;

/// A self-check request: answered once the task has made a trial decision.
pub(crate) type Probe = oneshot::Sender<()>;

/// The deciding task.
pub(crate) struct Decider {
    engine: Arc<Engine>,
    probes: mpsc::Receiver<Probe>,
}

/// The watchdog's handle on the deciding task.
pub(crate) struct Probes(mpsc::Sender<Probe>);

impl Decider {
    /// Creates the task and the handle for its watchdog.
    pub(crate) fn new(engine: Arc<Engine>) -> (Self, Probes) {
        let (tx, rx) = mpsc::channel(1);
        (Self { engine, probes: rx }, Probes(tx))
    }

    /// Runs on its own until `shutdown` turns true (a site without readers: there is no
    /// reader loop to answer the self-checks).
    pub(crate) async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                Some(probe) = self.next_probe() => self.answer(probe),
                _ = shutdown.changed() => return,
                else => return,
            }
        }
    }

    /// The next self-check request (`None` once the watchdog is gone).
    pub(crate) async fn next_probe(&mut self) -> Option<Probe> {
        self.probes.recv().await
    }

    /// Answers a self-check after a trial decision.
    pub(crate) fn answer(&self, probe: Probe) {
        self.engine.self_check();
        // The watchdog may have timed out and gone; that is its business.
        let _ = probe.send(());
    }
}

/// Pings systemd's watchdog every `interval / 2`, each time only after the deciding task
/// answered a self-check within a quarter of the interval.
pub(crate) async fn watchdog(
    probes: Probes,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let period = interval / 2;
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
        let (tx, rx) = oneshot::channel();
        if probes.0.send(tx).await.is_err() {
            tracing::error!("the deciding task is gone; withholding the watchdog ping");
            continue;
        }
        match tokio::time::timeout(interval / 4, rx).await {
            Ok(Ok(())) => notify::watchdog(),
            _ => tracing::error!(
                "the deciding task did not answer its self-check; withholding the watchdog ping"
            ),
        }
    }
}
