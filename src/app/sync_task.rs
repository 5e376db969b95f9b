//! The daemon's sync task: the only writer of snapshots.
//!
//! It holds the snapshot channel's sender ([`SnapshotWriter`]): it compiles the stored snapshot
//! at start, publishes every applied sync, and applies a reloaded configuration by compiling
//! the stored snapshot with the new policy and publishing both together (a reload asks, it
//! does not publish itself). Reloads are served at once, even while a sync is waiting for its
//! spacing or talking to Cobot; a sync that was compiled with the policy a reload replaced is
//! compiled again with the new one before it is published.
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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::state::{Daemon, Job, SnapshotReceiver, SyncJob};
use crate::backoff::{Backoff, jitter};
use crate::clock;
use crate::cobot::CobotError;
use crate::cobot::client::MAX_RETRY_AFTER;
use crate::config::Config;
use crate::domain::Snapshot;
use crate::domain::model::Policy;
use crate::store::{Store, StoreError};
use crate::sync::{self, Baseline, MEMBERSHIP_SPACING, SyncError, SyncSummary};

/// The only sender of the snapshot channel.
pub(crate) struct SnapshotWriter {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
}

/// The stored snapshot compiled with `policy`, for the start: the writer (for the sync task),
/// the receiver everyone reads, and why the stored snapshot cannot be read, if so (the daemon
/// starts anyway: health says failing, and the first sync replaces it).
pub(crate) fn open_snapshot(
    store: &Store,
    policy: &Policy,
) -> Result<(SnapshotWriter, SnapshotReceiver, Option<String>), StoreError> {
    let (snapshot, unreadable) = match store.load_snapshot() {
        Ok(stored) => (
            stored.map(|stored| Arc::new(sync::compile_stored(&stored, policy))),
            None,
        ),
        Err(StoreError::Corrupt { detail, .. }) => {
            tracing::error!(%detail, "the stored snapshot cannot be read; every request is denied until a sync replaces it");
            (None, Some(detail))
        }
        Err(e) => return Err(e),
    };
    let (tx, rx) = watch::channel(snapshot);
    Ok((SnapshotWriter { tx }, rx, unreadable))
}

impl SnapshotWriter {
    fn publish(&self, snapshot: Option<Arc<Snapshot>>) {
        self.tx.send_replace(snapshot);
    }

    /// The stored snapshot compiled with `policy` (`None` when there is none, or it is
    /// unreadable: health says so until a sync replaces it).
    fn compile_stored(store: &Store, policy: &Policy) -> Result<Option<Arc<Snapshot>>, StoreError> {
        match store.load_snapshot() {
            Ok(stored) => Ok(stored.map(|s| Arc::new(sync::compile_stored(&s, policy)))),
            Err(StoreError::Corrupt { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies a reloaded configuration and its snapshot together, or keeps both when the
    /// cache cannot be read.
    fn reload(
        &self,
        daemon: &Daemon,
        config: Arc<Config>,
        reply: oneshot::Sender<Result<(), String>>,
    ) {
        let outcome = match Self::compile_stored(&daemon.store, &config.policy) {
            Ok(recompiled) => {
                daemon.config.send_replace(config);
                self.publish(recompiled);
                Ok(())
            }
            Err(e) => Err(format!("cannot read the cache: {e}")),
        };
        // The reload may have given up (shutdown); nothing to do then.
        let _ = reply.send(outcome);
    }

    /// Serves a job that arrives while a sync is under way: a reload now, a sync after.
    fn meanwhile(&self, daemon: &Daemon, job: Job, waiting: &mut VecDeque<SyncJob>) {
        match job {
            Job::Sync(job) => waiting.push_back(job),
            Job::Reload { config, reply } => self.reload(daemon, config, reply),
        }
    }
}

/// Retries never wait longer than this (unless Cobot's `Retry-After` says so).
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// How failed syncs are retried: 2 s doubling to 60 s, ±25 %.
const BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(2),
    cap: BACKOFF_CAP,
    jitter: 0.25,
};

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
    writer: SnapshotWriter,
    mut jobs: mpsc::Receiver<Job>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = Instant::now();
    let mut last_attempt: Option<Instant> = None;
    let mut failures: u32 = 0;
    let mut waiting = VecDeque::new();
    loop {
        let job = match waiting.pop_front() {
            Some(job) => job,
            None => tokio::select! {
                () = tokio::time::sleep_until(next) => SyncJob { accept_revocations: false, reply: None },
                Some(job) = jobs.recv() => match job {
                    Job::Sync(job) => job,
                    Job::Reload { config, reply } => {
                        writer.reload(&daemon, config, reply);
                        crate::memory::release_freed();
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            },
        };
        if let Some(previous) = last_attempt {
            let spaced = tokio::time::sleep_until(later(previous, MEMBERSHIP_SPACING));
            tokio::pin!(spaced);
            loop {
                tokio::select! {
                    () = &mut spaced => break,
                    Some(job) = jobs.recv() => writer.meanwhile(&daemon, job, &mut waiting),
                    _ = shutdown.changed() => return,
                }
            }
        }
        last_attempt = Some(Instant::now());
        let interval = daemon.config().cobot.sync_interval;
        let outcome = {
            let attempt = attempt(&daemon, &writer, job.accept_revocations);
            tokio::pin!(attempt);
            loop {
                tokio::select! {
                    outcome = &mut attempt => break outcome,
                    Some(job) = jobs.recv() => writer.meanwhile(&daemon, job, &mut waiting),
                    // Shutdown does not wait for a slow Cobot: the attempt is dropped while it
                    // waits for Cobot (its only await), before it has written anything, so the
                    // snapshot in force stays, and the doors are locked in time.
                    _ = shutdown.changed() => return,
                }
            }
        };
        let wait = match &outcome {
            Ok(_) => {
                failures = 0;
                jitter(interval, 0.1)
            }
            Err(failed) => {
                failures = failures.saturating_add(1);
                match failed.retry {
                    Retry::After(d) if d <= MAX_RETRY_AFTER => d,
                    Retry::After(_) | Retry::Backoff => BACKOFF.after(failures),
                    Retry::NextInterval => interval,
                }
            }
        };
        next = later(Instant::now(), wait);
        // The attempt's parse buffers and the replaced snapshot are freed below the new one.
        crate::memory::release_freed();
        if let Some(reply) = job.reply {
            // The asker may have given up (client disconnected); nothing to do then.
            let _ = reply.send(outcome.map_err(|f| f.message));
        }
        if failures > 0 {
            tracing::info!(failures, retry_in = ?wait, "next sync attempt scheduled");
        }
    }
}

async fn attempt(
    daemon: &Daemon,
    writer: &SnapshotWriter,
    accept_revocations: bool,
) -> Result<SyncSummary, Failed> {
    let config = daemon.config();
    let token = match crate::cobot::token_for(&config) {
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
    let client = crate::cobot::client_for(&config, token).map_err(|e| {
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
        Baseline::InForce(current.as_deref()),
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
                let in_force = daemon.config();
                if Arc::ptr_eq(&config, &in_force) {
                    writer.publish(Some(Arc::new(snapshot)));
                } else {
                    // A reload replaced the policy while Cobot was asked: the data just stored
                    // is compiled again with the policy now in force.
                    match SnapshotWriter::compile_stored(&daemon.store, &in_force.policy) {
                        Ok(recompiled) => writer.publish(recompiled),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read the snapshot just stored")
                        }
                    }
                }
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
        assert!(BACKOFF.after(u32::MAX) <= BACKOFF_CAP);
    }
}
