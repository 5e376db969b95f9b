//! The clock-trust source: the time of the newest persisted event.
//!
//! A clock behind the newest event has jumped back, and schedule-limited grants must not be
//! decided on it (see `crate::clock::trust`). The engine notes every event it appends; health
//! and status read the same value. It holds no other state and does no I/O.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::domain::ClockTrust;

/// The newest persisted event's time, shared by the engine and health.
#[derive(Debug, Default)]
pub(crate) struct EventClock {
    last: Mutex<Option<DateTime<Utc>>>,
}

impl EventClock {
    /// Starts from the newest event in the store (`None` when there is none).
    pub(crate) fn new(last: Option<DateTime<Utc>>) -> Self {
        Self {
            last: Mutex::new(last),
        }
    }

    /// Notes the time of a persisted event.
    pub(crate) fn saw(&self, time: DateTime<Utc>) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| time > t) {
            *last = Some(time);
        }
    }

    /// Whether the clock can be trusted at `now`: not before the build, and not behind the
    /// newest persisted event.
    pub(crate) fn trust(&self, now: DateTime<Utc>) -> ClockTrust {
        let last = *self.last.lock().unwrap_or_else(PoisonError::into_inner);
        crate::clock::trust(now, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClockProblem;

    #[test]
    fn a_clock_behind_the_newest_event_seen_is_not_trusted() {
        let clock = EventClock::new(None);
        let later = crate::clock::build_time() + chrono::Duration::days(10);
        let earlier = later - chrono::Duration::days(1);
        assert_eq!(clock.trust(earlier), ClockTrust::Trusted);
        clock.saw(later);
        clock.saw(earlier);
        assert_eq!(
            clock.trust(earlier),
            ClockTrust::Untrusted(ClockProblem::JumpedBack)
        );
        assert_eq!(clock.trust(later), ClockTrust::Trusted);
    }
}
