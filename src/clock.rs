//! The only place that reads the system clock.
//!
//! Everything else takes time as a parameter (clippy.toml bans the clock elsewhere), so tests
//! can run "offline for 30 days" without sleeping. This module also judges whether the clock
//! can be trusted: a box without a real-time clock that boots without network may believe it
//! is 1970, and schedule-limited grants must not be decided on such a clock.

use chrono::{DateTime, Utc};

use crate::domain::{ClockProblem, ClockTrust};

/// Unix seconds of the build, set by `build.rs`: no correct clock is ever earlier.
const BUILD_UNIX: i64 = match i64::from_str_radix(env!("PORTIER_BUILD_UNIX"), 10) {
    Ok(seconds) => seconds,
    Err(_) => 0,
};

/// The current time.
#[allow(clippy::disallowed_methods)] // reason: this is the one sanctioned clock read
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// The time the binary was built; a clock before it is wrong.
pub(crate) fn build_time() -> DateTime<Utc> {
    DateTime::from_timestamp(BUILD_UNIX, 0).unwrap_or_default()
}

/// A monotonic instant, for measuring durations (latencies, timeouts).
#[allow(clippy::disallowed_methods)] // reason: this is the one sanctioned clock read
pub fn instant() -> std::time::Instant {
    std::time::Instant::now()
}

/// Blocks this thread until `at` (returns at once if it has passed): for short waits that must
/// be precise, on a thread of tokio's blocking pool, never on a worker. tokio's own timer
/// rounds every wait up to its next millisecond tick.
#[allow(clippy::disallowed_methods)] // reason: the one sanctioned thread sleep
pub(crate) fn block_until(at: std::time::Instant) {
    let left = at.saturating_duration_since(instant());
    if !left.is_zero() {
        std::thread::sleep(left);
    }
}

/// Whether a clock reading can be trusted: no correct clock is before the build, or behind
/// the newest persisted event (a clock that jumped back).
pub(crate) fn trust(now: DateTime<Utc>, last_event: Option<DateTime<Utc>>) -> ClockTrust {
    if now < build_time() {
        ClockTrust::Untrusted(ClockProblem::BeforeBuild)
    } else if last_event.is_some_and(|t| now < t) {
        ClockTrust::Untrusted(ClockProblem::JumpedBack)
    } else {
        ClockTrust::Trusted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_before_the_build_or_behind_the_last_event_is_not_trusted() {
        let built = build_time();
        let day = chrono::Duration::days(1);
        assert_eq!(trust(built + day, None), ClockTrust::Trusted);
        assert_eq!(
            trust(built - day, None),
            ClockTrust::Untrusted(ClockProblem::BeforeBuild)
        );
        assert_eq!(
            trust(built + day, Some(built + day * 2)),
            ClockTrust::Untrusted(ClockProblem::JumpedBack)
        );
        assert_eq!(
            trust(built + day * 3, Some(built + day * 2)),
            ClockTrust::Trusted
        );
    }
}
