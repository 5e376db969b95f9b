//! The watchdog's self-check of the reader loop.
//!
//! The systemd watchdog is not a free-running timer: every half `WATCHDOG_USEC` the watchdog
//! sends the reader loop a self-check between reader messages, and only an answer — which
//! needs a snapshot read and a trial decision by the engine — earns a ping. A stuck reader
//! loop therefore stops the pings and systemd restarts the service, even when no door is used.
//! The loop runs (and answers) on a site without readers too.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

/// A self-check request: answered once the loop has made a trial decision.
pub(crate) type Probe = oneshot::Sender<()>;

/// The reader loop's side: where self-checks arrive.
pub(crate) struct SelfChecks(mpsc::Receiver<Probe>);

/// The watchdog's side: where self-checks are sent.
pub(crate) struct Probes(mpsc::Sender<Probe>);

impl SelfChecks {
    /// Both sides of a new self-check channel.
    pub(crate) fn new() -> (SelfChecks, Probes) {
        let (tx, rx) = mpsc::channel(1);
        (SelfChecks(rx), Probes(tx))
    }

    /// The next self-check (`None` once the watchdog is gone).
    pub(crate) async fn next(&mut self) -> Option<Probe> {
        self.0.recv().await
    }
}

/// Calls `ping` every `interval / 2`, each time only after the reader loop answered a
/// self-check within a quarter of the interval.
pub(crate) async fn watchdog(
    probes: Probes,
    interval: Duration,
    ping: fn(),
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
            tracing::error!("the reader loop is gone; withholding the watchdog ping");
            continue;
        }
        match tokio::time::timeout(interval / 4, rx).await {
            Ok(Ok(())) => ping(),
            _ => tracing::error!(
                "the reader loop did not answer its self-check; withholding the watchdog ping"
            ),
        }
    }
}
