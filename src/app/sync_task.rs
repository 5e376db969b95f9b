//! The daemon's sync task: the only publisher of snapshots.
//!
//! It syncs once at start (while decisions are already served from the cache), then every
//! `cobot.sync_interval` with a little jitter, and whenever asked (`POST /v1/sync`). Failures
//! are retried with jittered exponential backoff capped at 60 s; a 429 waits for its
//! `Retry-After`; a 401 or a missing token waits a whole interval, since retrying cannot help
//! until someone reconnects. Cobot allows 6 membership requests a minute, and every sync makes
//! one, so attempts are spaced at least 10 s apart (a request waits, it is never refused).
//! A manual sync (`POST /v1/sync`) is taken at once, whatever backoff or `Retry-After` the
//! periodic schedule is waiting for: only the spacing applies to it.
//!
//! Every wait is bounded (a `Retry-After` by the client at 1 h, here again) and every
//! `Instant` sum is checked, so no number from Cobot or the configuration can panic the task.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::state::{Daemon, SyncJob};
use crate::clock;
use crate::cobot::CobotError;
use crate::cobot::client::MAX_RETRY_AFTER;
use crate::sync::{self, SyncError, SyncSummary};

/// Cobot's `/api/memberships` allows 6 requests a minute.
const MEMBERSHIP_SPACING: Duration = Duration::from_secs(10);
/// Retries never wait longer than this (unless Cobot's `Retry-After` says so).
const BACKOFF_CAP: Duration = Duration::from_secs(60);
const BACKOFF_BASE: Duration = Duration::from_secs(2);

/// Why an attempt failed, and how to wait before the next.
struct Failed {
    message: String,
    retry: Retry,
}

/// How to wait after a failed attempt.
enum Retry {
    /// Cobot said when (429 `Retry-After`).
    After(Duration),
    /// Transient: back off exponentially.
    Backoff,
    /// Retrying cannot help until someone acts (401, no token): wait a whole interval.
    NextInterval,
}

/// Runs until `shutdown` turns true.
pub(crate) async fn run(
    daemon: Arc<Daemon>,
    mut jobs: mpsc::Receiver<SyncJob>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = Instant::now();
    let mut last_attempt: Option<Instant> = None;
    let mut failures: u32 = 0;
    loop {
        let job = tokio::select! {
            () = tokio::time::sleep_until(next) => SyncJob { accept_revocations: false, reply: None },
            Some(job) = jobs.recv() => job,
            _ = shutdown.changed() => return,
        };
        if let Some(previous) = last_attempt {
            let earliest = later(previous, MEMBERSHIP_SPACING);
            tokio::select! {
                () = tokio::time::sleep_until(earliest) => {}
                _ = shutdown.changed() => return,
            }
        }
        last_attempt = Some(Instant::now());
        let interval = daemon.config().cobot.sync_interval;
        let outcome = attempt(&daemon, job.accept_revocations).await;
        let wait = match &outcome {
            Ok(_) => {
                failures = 0;
                jitter(interval, 0.1)
            }
            Err(failed) => {
                failures = failures.saturating_add(1);
                match failed.retry {
                    Retry::After(d) if d <= MAX_RETRY_AFTER => d,
                    Retry::After(_) | Retry::Backoff => backoff(failures),
                    Retry::NextInterval => interval,
                }
            }
        };
        next = later(Instant::now(), wait);
        if let Some(reply) = job.reply {
            // The asker may have given up (client disconnected); nothing to do then.
            let _ = reply.send(outcome.map_err(|f| f.message));
        }
        if failures > 0 {
            tracing::info!(failures, retry_in = ?wait, "next sync attempt scheduled");
        }
    }
}

async fn attempt(daemon: &Daemon, accept_revocations: bool) -> Result<SyncSummary, Failed> {
    let config = daemon.config();
    let token = match sync::cobot_token(&config) {
        Ok(token) => {
            daemon.update_cloud(|c| c.token_problem = None);
            token
        }
        Err(problem) => {
            tracing::warn!(%problem, "cannot sync");
            count(daemon, "failed");
            daemon.update_cloud(|c| c.token_problem = Some(problem.clone()));
            return Err(Failed {
                message: problem,
                retry: Retry::NextInterval,
            });
        }
    };
    let client = sync::cobot_client(&config, token).map_err(|e| {
        count(daemon, "failed");
        Failed {
            message: e.to_string(),
            retry: Retry::NextInterval,
        }
    })?;
    let started = clock::instant();
    let current = daemon.current();
    let result = sync::sync_once(
        &config,
        &daemon.store,
        &client,
        accept_revocations,
        current.as_deref(),
        clock::now,
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    // Counted before the outcome shows in health and status, so a scrape that sees it there
    // also sees it counted.
    match &result {
        Ok(outcome) => {
            daemon.metrics.sync_seconds.observe(seconds);
            count(
                daemon,
                if outcome.summary.applied {
                    "applied"
                } else {
                    "held"
                },
            );
        }
        Err(_) => count(daemon, "failed"),
    }
    if let Ok(status) = daemon.store.sync_status() {
        daemon.update_cloud(|c| c.sync = status);
    }
    match result {
        Ok(outcome) => {
            daemon.update_cloud(|c| c.last_duration = Some(seconds));
            if let Some(snapshot) = outcome.snapshot {
                daemon.snapshot.send_replace(Some(Arc::new(snapshot)));
                daemon.update_cloud(|c| c.unreadable_snapshot = None);
            }
            super::notify::status(&super::status_line(daemon));
            Ok(outcome.summary)
        }
        Err(e) => {
            tracing::warn!(error = %e, "sync failed; the cached snapshot stays in force");
            super::notify::status(&super::status_line(daemon));
            let retry = match &e {
                SyncError::Cobot(CobotError::Unauthorized) => Retry::NextInterval,
                SyncError::Cobot(c) => c.retry_after().map_or(Retry::Backoff, Retry::After),
                SyncError::Store(_) => Retry::Backoff,
            };
            Err(Failed {
                message: e.to_string(),
                retry,
            })
        }
    }
}

/// Counts a sync attempt by `result` (`applied`, `held`, `failed`) in `portier_syncs_total`.
fn count(daemon: &Daemon, result: &'static str) {
    daemon
        .metrics
        .syncs
        .get_or_create(&super::metrics::ResultLabel { result })
        .inc();
}

/// Jittered exponential backoff after `failures` consecutive failures, capped at 60 s.
fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(6));
    jitter(exp.min(BACKOFF_CAP), 0.25).min(BACKOFF_CAP)
}

/// `d` ± `fraction` at random, so many boxes do not hit Cobot in step. Saturating: `d` itself
/// when the product would not fit a `Duration` (`mul_f64` would panic).
fn jitter(d: Duration, fraction: f64) -> Duration {
    let factor = 1.0 + rand::rng().random_range(-fraction..=fraction);
    Duration::try_from_secs_f64(d.as_secs_f64() * factor.max(0.0)).unwrap_or(d)
}

/// `from + wait`, or the backoff cap from `from` when the sum does not fit an `Instant` (a
/// checked sum: `Instant + Duration` panics on overflow).
fn later(from: Instant, wait: Duration) -> Instant {
    from.checked_add(wait)
        .or_else(|| from.checked_add(BACKOFF_CAP))
        .unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_that_do_not_fit_an_instant_fall_back_to_the_cap() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + BACKOFF_CAP);
        assert_eq!(
            later(now, Duration::from_secs(3)),
            now + Duration::from_secs(3)
        );
        // `Duration::mul_f64` would panic here.
        assert!(jitter(Duration::MAX, 0.1) > Duration::from_secs(u64::MAX / 2));
        assert!(backoff(u32::MAX) <= BACKOFF_CAP);
    }
}
