//! systemd notification: `READY=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`.
//!
//! Uses the `systemd` crate (libsystemd's `sd_notify`). Outside systemd (no `NOTIFY_SOCKET`)
//! every call is a no-op, so the daemon runs the same from a terminal.

use std::time::Duration;

use systemd::daemon;

/// Tells systemd that the cache is loaded and the listener bound.
pub(crate) fn ready(status: &str) {
    send(&[(daemon::STATE_READY, "1"), (daemon::STATE_STATUS, status)]);
}

/// Updates the one-line status shown by `systemctl status`.
pub(crate) fn status(status: &str) {
    send(&[(daemon::STATE_STATUS, status)]);
}

/// One watchdog ping; only sent after the deciding task answered a self-check.
pub(crate) fn watchdog() {
    send(&[(daemon::STATE_WATCHDOG, "1")]);
}

/// Tells systemd that a clean shutdown has begun.
pub(crate) fn stopping() {
    send(&[
        (daemon::STATE_STOPPING, "1"),
        (daemon::STATE_STATUS, "stopping"),
    ]);
}

/// Tells systemd that the configuration is being reloaded.
pub(crate) fn reloading() {
    send(&[(daemon::STATE_RELOADING, "1")]);
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), if any.
pub(crate) fn watchdog_interval() -> Option<Duration> {
    match daemon::watchdog_enabled() {
        Ok(0) | Err(_) => None,
        Ok(usec) => Some(Duration::from_micros(usec)),
    }
}

fn send(state: &[(&str, &str)]) {
    if let Err(e) = daemon::notify(state.iter()) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}
