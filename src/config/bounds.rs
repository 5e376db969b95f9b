//! The bounds on every duration a user writes (DESIGN.md "Bounds on numbers from outside").
//!
//! Every duration key is parsed by one helper, [`parse_duration`], with its [`Bounds`] from this
//! table, so nothing a user writes can overflow a timer or a date computation at run time: a
//! value outside its range is an error naming the key and the range, never clamped in silence.
//! A new duration key gets a row here (or [`Bounds::OTHER`]), not a check of its own.

use std::time::Duration;

const SECOND: u64 = 1;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
/// A year as `humantime` reads `y`: 365.25 days.
const YEAR: u64 = 31_557_600;

/// The inclusive range a duration key accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// The shortest value accepted.
    pub min: Duration,
    /// The longest value accepted.
    pub max: Duration,
}

impl Bounds {
    const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// `cobot.sync_interval`: 30 s to 24 h (Cobot's rate limits below, "at least daily" above).
    pub(crate) const SYNC_INTERVAL: Bounds =
        Bounds::new(Duration::from_secs(30), Duration::from_secs(DAY));
    /// `unit.open_for`: 1 ms to 1 h.
    pub const OPEN_FOR: Bounds = Bounds::new(Duration::from_millis(1), Duration::from_secs(HOUR));
    /// `cobot.booking_grace`: 0 to 24 h.
    pub(crate) const BOOKING_GRACE: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(DAY));
    /// `cobot.booking_horizon`: 1 day to 400 days.
    pub(crate) const BOOKING_HORIZON: Bounds =
        Bounds::new(Duration::from_secs(DAY), Duration::from_secs(400 * DAY));
    /// `cobot.token_cache_ttl`: 1 h to 400 days.
    pub(crate) const TOKEN_CACHE_TTL: Bounds =
        Bounds::new(Duration::from_secs(HOUR), Duration::from_secs(400 * DAY));
    /// `cobot.request_timeout`: 1 s to 10 min.
    pub(crate) const REQUEST_TIMEOUT: Bounds =
        Bounds::new(Duration::from_secs(1), Duration::from_secs(10 * MINUTE));
    /// `offline.max_age`: 1 h to 400 days.
    pub(crate) const OFFLINE_MAX_AGE: Bounds =
        Bounds::new(Duration::from_secs(HOUR), Duration::from_secs(400 * DAY));
    /// `events.retention`: 1 day to 10 years.
    pub(crate) const EVENTS_RETENTION: Bounds =
        Bounds::new(Duration::from_secs(DAY), Duration::from_secs(10 * YEAR));
    /// `reader.frame_gap` (Wiegand): 5 ms to 500 ms of quiet ends a frame.
    pub(crate) const FRAME_GAP: Bounds =
        Bounds::new(Duration::from_millis(5), Duration::from_millis(500));
    /// `reader.pin_timeout` (Wiegand keypads): 1 s to 5 min between keys.
    pub(crate) const PIN_TIMEOUT: Bounds =
        Bounds::new(Duration::from_secs(1), Duration::from_secs(5 * MINUTE));
    /// `unit.held_open_after`: 1 s to 24 h open before a door-contact alarm.
    pub(crate) const HELD_OPEN_AFTER: Bounds =
        Bounds::new(Duration::from_secs(1), Duration::from_secs(DAY));
    /// `sensor.poll` (Modbus contacts): 20 ms to 1 min between reads.
    pub(crate) const SENSOR_POLL: Bounds =
        Bounds::new(Duration::from_millis(20), Duration::from_secs(MINUTE));
    /// `member_page.session_ttl`: 1 s to 400 days.
    pub(crate) const SESSION_TTL: Bounds =
        Bounds::new(Duration::from_secs(1), Duration::from_secs(400 * DAY));
    /// Any other duration: 0 to 400 days.
    #[allow(dead_code, reason = "the bound for the next duration key; tested")]
    pub(crate) const OTHER: Bounds = Bounds::new(Duration::ZERO, Duration::from_secs(400 * DAY));

    /// True when `value` is inside the range.
    pub fn contains(&self, value: Duration) -> bool {
        self.min <= value && value <= self.max
    }

    /// The range as the error message shows it: `30s to 1day`.
    fn describe(&self) -> String {
        format!("{} to {}", show(self.min), show(self.max))
    }
}

/// A duration as written in the file: `0s`, `30s`, `10m`, `400d`, `10y` where it is exact.
fn show(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return humantime::format_duration(d).to_string();
    }
    let units = [(YEAR, "y"), (DAY, "d"), (HOUR, "h"), (MINUTE, "m")];
    for (size, suffix) in units {
        if secs.is_multiple_of(size) {
            return format!("{}{suffix}", secs / size);
        }
    }
    format!("{secs}s")
}

/// Parses a duration like `30s`, `5m`, `2h`, `7d` and checks it against `bounds`; the error is
/// the message to show after the key.
pub(crate) fn parse_duration(text: &str, bounds: Bounds) -> Result<Duration, String> {
    let range = bounds.describe();
    let parsed = humantime::parse_duration(text).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => {
            format!("\"{text}\" is out of range ({range})")
        }
        other => format!(
            "\"{text}\" is not a duration like \"30s\", \"5m\", \"2h\" or \"7d\" ({other}); \
             the range is {range}"
        ),
    })?;
    if bounds.contains(parsed) {
        Ok(parsed)
    } else {
        Err(format!("\"{text}\" is out of range ({range})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bound_accepts_its_ends_and_refuses_just_outside() {
        let all = [
            Bounds::SYNC_INTERVAL,
            Bounds::OPEN_FOR,
            Bounds::BOOKING_GRACE,
            Bounds::BOOKING_HORIZON,
            Bounds::TOKEN_CACHE_TTL,
            Bounds::REQUEST_TIMEOUT,
            Bounds::OFFLINE_MAX_AGE,
            Bounds::EVENTS_RETENTION,
            Bounds::OTHER,
        ];
        for bounds in all {
            assert!(bounds.contains(bounds.min) && bounds.contains(bounds.max));
            assert!(!bounds.contains(bounds.max + Duration::from_nanos(1)));
            if let Some(below) = bounds.min.checked_sub(Duration::from_nanos(1)) {
                assert!(!bounds.contains(below), "{bounds:?}");
            }
            // Both ends are shown so they can be written back into the file.
            let text = bounds.describe();
            let (min, max) = text.split_once(" to ").expect("a range");
            assert_eq!(parse_duration(min, bounds), Ok(bounds.min), "{text}");
            assert_eq!(parse_duration(max, bounds), Ok(bounds.max), "{text}");
        }
    }

    #[test]
    fn a_value_outside_its_range_names_the_range() {
        let message = parse_duration("10s", Bounds::SYNC_INTERVAL).expect_err("too short");
        assert_eq!(message, "\"10s\" is out of range (30s to 1d)");
        let message = parse_duration("11y", Bounds::EVENTS_RETENTION).expect_err("too long");
        assert_eq!(message, "\"11y\" is out of range (1d to 10y)");
        assert_eq!(
            parse_duration("0s", Bounds::OPEN_FOR),
            Err("\"0s\" is out of range (1ms to 1h)".to_owned())
        );
    }

    #[test]
    fn numbers_too_large_for_any_duration_are_out_of_range_not_a_crash() {
        for text in [
            "18446744073709551615s",
            "100000000000000000000000d",
            "584942417356y",
            "99999999999999999999ms",
        ] {
            let message = parse_duration(text, Bounds::OTHER).expect_err(text);
            assert!(message.contains("out of range"), "{text}: {message}");
        }
    }

    #[test]
    fn something_that_is_no_duration_says_what_a_duration_looks_like() {
        let message = parse_duration("soon", Bounds::OTHER).expect_err("not a duration");
        assert!(message.contains("not a duration like"), "{message}");
        assert!(message.contains("0s to 400d"), "{message}");
    }
}
