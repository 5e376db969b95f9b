//! The check-in worker: sends the store's pending Cobot check-ins until Cobot has them.
//!
//! Tasks come from the store's outbox (written with their events), so nothing is lost while
//! Cobot is unreachable or Portier restarts. One task at a time: before a POST the task is
//! durably marked as possibly sent, so a timeout, a lost connection or a crash mid-request makes
//! the next try ask `GET /api/memberships/<id>/check_ins` for that site-local day first, and a
//! check-in found there counts as sent: Cobot never gets the same check-in twice. A final 4xx
//! (other than 408/429) is recorded in the event and not retried. 5xx, 408, timeouts and
//! connection errors back off exponentially with jitter (capped at 60 s); a 429 waits for its
//! `Retry-After` (at most an hour; the client ignores a longer one). While one task is backing off the worker sends nothing else (Cobot is down or
//! throttling us; hammering it with the rest of the queue would not help).
//!
//! It does not decide access, does not read the clock (it is given one) and does not touch
//! sled itself.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use tokio::sync::{Notify, watch};

use crate::cobot::client::MAX_RETRY_AFTER;
use crate::cobot::{CheckInOutcome, CobotClient, CobotError};
use crate::store::{CheckInResult, CheckInTask, Store, StoreError};

/// Retries never wait longer than this (unless Cobot's `Retry-After` says so).
pub(crate) const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// The first retry waits about this long; each further failure doubles it.
pub(crate) const BACKOFF_BASE: Duration = Duration::from_secs(2);

/// How the worker paces itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The site's time zone: a task's day is a local day.
    pub tz: Tz,
    /// The first retry's wait.
    pub backoff_base: Duration,
    /// The longest wait between tries (also how often an idle worker looks again).
    pub backoff_cap: Duration,
}

impl Settings {
    /// The production pacing for a site in `tz`.
    pub fn new(tz: Tz) -> Self {
        Self {
            tz,
            backoff_base: BACKOFF_BASE,
            backoff_cap: BACKOFF_CAP,
        }
    }
}

/// Runs the worker until `shutdown` turns true (or its sender is dropped).
///
/// `client` builds a Cobot client when there is work (an `Err` says why it cannot, e.g. no
/// token yet; the worker then waits and asks again). Wake it with `wake.notify_one()` after an
/// append that returned `check_in: Some(Pending)`; it also wakes when the next task is due.
pub async fn run(
    store: Arc<Store>,
    client: impl Fn() -> Result<CobotClient, String> + Send + Sync,
    tz: Tz,
    wake: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    clock: impl Fn() -> DateTime<Utc> + Send + Sync,
) {
    run_with(Settings::new(tz), store, client, wake, shutdown, clock).await;
}

/// [`run`] with explicit pacing (tests use short backoffs).
pub async fn run_with(
    settings: Settings,
    store: Arc<Store>,
    client: impl Fn() -> Result<CobotClient, String> + Send + Sync,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
    clock: impl Fn() -> DateTime<Utc> + Send + Sync,
) {
    let mut worker = Worker {
        settings,
        store: &store,
        client: &client,
        clock: &clock,
        gate: None,
        failures: 0,
    };
    loop {
        // Cancelling a round mid-request is safe: the task was marked uncertain before sending.
        let next = tokio::select! {
            next = worker.round() => next,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let Next::Wait(wait) = next else { continue };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// What the loop does after a round.
enum Next {
    /// Look again at once (work was done; more may be due).
    Now,
    /// Nothing to do for this long, unless woken.
    Wait(Duration),
}

/// How one try of a task ended.
enum Tried {
    /// Recorded as finished or as a retry; go on with the next due task.
    Recorded,
    /// Cobot did not answer usefully: nothing more is sent until this time.
    Paused(DateTime<Utc>),
}

struct Worker<'a, C, K> {
    settings: Settings,
    store: &'a Store,
    client: &'a C,
    clock: &'a K,
    /// While Cobot is failing or throttling: no request before this time.
    gate: Option<DateTime<Utc>>,
    /// Consecutive failed tries, across tasks, for the backoff.
    failures: u32,
}

impl<C, K> Worker<'_, C, K>
where
    C: Fn() -> Result<CobotClient, String>,
    K: Fn() -> DateTime<Utc>,
{
    /// Sends every due task once, or says how long to wait.
    async fn round(&mut self) -> Next {
        let now = (self.clock)();
        let cap = self.settings.backoff_cap;
        if let Some(gate) = self.gate.filter(|g| *g > now) {
            return Next::Wait(until(now, gate).min(cap));
        }
        let tasks = match self.store.pending_check_ins() {
            Ok(tasks) => tasks,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the check-in outbox; trying again later");
                return Next::Wait(cap);
            }
        };
        let due: Vec<CheckInTask> = tasks
            .iter()
            .filter(|t| t.next_attempt.is_none_or(|at| at <= now))
            .cloned()
            .collect();
        if due.is_empty() {
            let next = tasks.iter().filter_map(|t| t.next_attempt).min();
            return Next::Wait(next.map_or(cap, |at| until(now, at).min(cap)));
        }
        let client = match (self.client)() {
            Ok(client) => client,
            Err(problem) => {
                tracing::warn!(%problem, pending = tasks.len(), "cannot send check-ins to Cobot yet");
                self.gate = Some(after(now, cap));
                return Next::Wait(cap);
            }
        };
        for task in &due {
            match self.try_task(&client, task).await {
                Ok(Tried::Recorded) => {}
                Ok(Tried::Paused(at)) => {
                    self.gate = Some(at);
                    return Next::Now;
                }
                Err(e) => {
                    tracing::error!(error = %e, member = %task.member, "cannot record a check-in's progress; trying again later");
                    return Next::Wait(cap);
                }
            }
        }
        Next::Now
    }

    /// One try of one task, with its outcome recorded in the store.
    async fn try_task(
        &mut self,
        client: &CobotClient,
        task: &CheckInTask,
    ) -> Result<Tried, StoreError> {
        let mut task = task.clone();
        if task.uncertain {
            // An earlier POST may have reached Cobot: look before posting again.
            let (from, to) = day_bounds(self.settings.tz, task.day);
            match client.check_ins_between(&task.member, from, to).await {
                Ok(found) => {
                    let made_that_day = found
                        .iter()
                        .any(|c| c.valid_from.is_none_or(|t| from <= t && t < to));
                    if made_that_day {
                        tracing::info!(member = %task.member, day = %task.day, "check-in found on Cobot after an uncertain try");
                        return self.finish(&task, CheckInResult::Sent).await;
                    }
                }
                Err(e) => return self.failed(&task, &e, true).await,
            }
        } else {
            match self.store.check_in_sending(&task).await? {
                Some(marked) => task = marked,
                None => return Ok(Tried::Recorded),
            }
        }
        match client.check_in(&task.member).await {
            Ok(CheckInOutcome::Created(_)) => {
                tracing::info!(member = %task.member, day = %task.day, "check-in sent to Cobot");
                self.finish(&task, CheckInResult::Sent).await
            }
            Ok(CheckInOutcome::Refused { status, reason }) => {
                let reason = format!("Cobot refused the check-in ({status}): {reason}");
                tracing::warn!(member = %task.member, day = %task.day, %reason, "check-in refused; not retried");
                self.finish(&task, CheckInResult::Refused { reason }).await
            }
            Err(e) => {
                // No answer (timeout, connection lost): the POST may have been applied.
                let uncertain = matches!(
                    e,
                    CobotError::Timeout { .. } | CobotError::Unreachable { .. }
                );
                self.failed(&task, &e, uncertain).await
            }
        }
    }

    async fn finish(
        &mut self,
        task: &CheckInTask,
        result: CheckInResult,
    ) -> Result<Tried, StoreError> {
        self.failures = 0;
        self.store.finish_check_in(task, result).await?;
        Ok(Tried::Recorded)
    }

    /// Records a failed try and pauses sending until its retry time.
    async fn failed(
        &mut self,
        task: &CheckInTask,
        e: &CobotError,
        uncertain: bool,
    ) -> Result<Tried, StoreError> {
        self.failures = self.failures.saturating_add(1);
        let cap = self.settings.backoff_cap;
        let wait = if let Some(asked) = e.retry_after().filter(|d| *d <= MAX_RETRY_AFTER) {
            // At least the base wait, so a `Retry-After: 0` cannot make a tight loop.
            asked.max(self.settings.backoff_base)
        } else if e.is_retryable() {
            let n = self.failures.max(task.attempts.saturating_add(1));
            backoff(self.settings.backoff_base, cap, n)
        } else {
            // 401 and the like: retrying soon cannot help, but the check-in must not be lost.
            cap
        };
        let at = after((self.clock)(), wait);
        tracing::warn!(member = %task.member, day = %task.day, error = %e, retry_in = ?wait, uncertain, "check-in not sent yet");
        self.store
            .finish_check_in(task, CheckInResult::Retry { at, uncertain })
            .await?;
        Ok(Tried::Paused(at))
    }
}

/// `now + wait`, checked: `now + cap` when the sum does not fit (`DateTime + TimeDelta` panics
/// on overflow), and `now` itself at the very end of time.
fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    let sum = |d: Duration| {
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
    };
    sum(wait).or_else(|| sum(BACKOFF_CAP)).unwrap_or(now)
}

/// How long from `now` until `at` (zero if it has passed).
fn until(now: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Jittered exponential backoff (±25 %) for the `n`th consecutive failure (n ≥ 1), capped.
fn backoff(base: Duration, cap: Duration, n: u32) -> Duration {
    crate::backoff::Backoff {
        first: base,
        cap,
        jitter: 0.25,
    }
    .after(n)
}

/// The start of a site-local day in UTC. A DST change at midnight can skip 00:00; the day then
/// starts at the first local hour that exists.
fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    (0..=3)
        .find_map(|hour| {
            let time = day.and_hms_opt(hour, 0, 0)?;
            tz.from_local_datetime(&time).earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| day.and_time(NaiveTime::MIN).and_utc())
}

/// The site-local day as a UTC interval `[from, to)`.
fn day_bounds(tz: Tz, day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let from = local_midnight(tz, day);
    let to = day.succ_opt().map_or_else(
        || {
            from.checked_add_signed(chrono::Duration::days(1))
                .unwrap_or(DateTime::<Utc>::MAX_UTC)
        },
        |next| local_midnight(tz, next),
    );
    (from, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_under_the_cap() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(60);
        let first = backoff(base, cap, 1);
        assert!(first >= Duration::from_millis(1500) && first <= Duration::from_millis(2500));
        let fourth = backoff(base, cap, 4);
        assert!(fourth >= Duration::from_secs(12) && fourth <= Duration::from_secs(20));
        for n in [7, 20, u32::MAX] {
            assert!(backoff(base, cap, n) <= cap);
        }
    }

    #[test]
    fn retry_times_that_do_not_fit_a_date_fall_back_to_the_cap() {
        let now = DateTime::<Utc>::MAX_UTC - chrono::Duration::days(1);
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + chrono::Duration::seconds(5)
        );
        assert_eq!(
            after(now, Duration::MAX),
            now + chrono::Duration::seconds(60)
        );
        assert_eq!(
            after(DateTime::<Utc>::MAX_UTC, Duration::MAX),
            DateTime::<Utc>::MAX_UTC
        );
        let (_, to) = day_bounds(chrono_tz::UTC, NaiveDate::MAX);
        assert_eq!(to, DateTime::<Utc>::MAX_UTC);
    }

    #[test]
    fn a_local_day_is_bounded_by_its_midnights_in_the_site_time_zone() {
        let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(); // spring DST in Berlin
        let (from, to) = day_bounds(chrono_tz::Europe::Berlin, day);
        assert_eq!(from.to_rfc3339(), "2026-03-28T23:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-03-29T22:00:00+00:00");
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_at_its_first_hour() {
        // Santiago skips from 00:00 to 01:00 on its spring DST day.
        let day = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let (from, _) = day_bounds(chrono_tz::America::Santiago, day);
        assert_eq!(from.to_rfc3339(), "2026-09-06T04:00:00+00:00");
    }
}
