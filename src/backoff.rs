//! The one retry schedule every reconnecting or retrying task uses: exponential from a first
//! wait, capped, and jittered so that many boxes (or many locks) do not retry in step.
//!
//! Saturating everywhere: no failure count, base or cap can make it panic or overflow.

use std::time::Duration;

use rand::Rng;

/// An exponential backoff: `first` after one failure, doubling per failure up to `cap`, each
/// wait moved at random by up to ±`jitter` (a fraction) and never above `cap`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    /// The wait after the first failure.
    pub first: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// How far each wait may move at random, as a fraction of it (0.25: ±25 %).
    pub jitter: f64,
}

impl Backoff {
    /// The wait after `failures` consecutive failures (1 for the first; 0 counts as 1).
    pub(crate) fn after(&self, failures: u32) -> Duration {
        // 2^30 times any first wait is past every cap worth having; the shift stays in range.
        let doubled = self
            .first
            .saturating_mul(1u32 << failures.saturating_sub(1).min(30));
        jitter(doubled.min(self.cap), self.jitter).min(self.cap)
    }
}

/// `d` ± `fraction` at random. Saturating: `d` itself when the product would not fit a
/// `Duration` (`Duration::mul_f64` would panic).
pub(crate) fn jitter(d: Duration, fraction: f64) -> Duration {
    let fraction = fraction.clamp(0.0, 1.0);
    let factor = 1.0 + rand::rng().random_range(-fraction..=fraction);
    Duration::try_from_secs_f64(d.as_secs_f64() * factor.max(0.0)).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEDULE: Backoff = Backoff {
        first: Duration::from_secs(2),
        cap: Duration::from_secs(60),
        jitter: 0.25,
    };

    #[test]
    fn waits_double_from_the_first_within_the_jitter_and_never_pass_the_cap() {
        for (failures, nominal) in [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0)] {
            let wait = SCHEDULE.after(failures).as_secs_f64();
            assert!(
                (nominal * 0.75..=nominal * 1.25).contains(&wait),
                "{failures}: {wait}"
            );
        }
        for failures in [6, 7, 31, 32, 1000, u32::MAX] {
            let wait = SCHEDULE.after(failures);
            assert!(wait <= SCHEDULE.cap, "{failures}: {wait:?}");
            assert!(wait >= SCHEDULE.cap.mul_f64(0.75), "{failures}: {wait:?}");
        }
    }

    #[test]
    fn absurd_inputs_do_not_panic() {
        let huge = Backoff {
            first: Duration::MAX,
            cap: Duration::MAX,
            jitter: 7.0,
        };
        assert!(huge.after(u32::MAX) <= Duration::MAX);
        assert_eq!(jitter(Duration::ZERO, 0.5), Duration::ZERO);
        assert!(jitter(Duration::MAX, 0.1) > Duration::from_secs(u64::MAX / 2));
    }
}
