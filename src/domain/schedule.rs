//! Weekly schedules: `[DAYS ]HH:MM-HH:MM` windows in wall-clock time of the site.
//!
//! DAYS names the day a window *starts* (`Mon`, `Sat,Sun`, `Mon-Fri`, wrapping `Fri-Mon`, mixed
//! `Mon-Wed, Fri`; case-insensitive); none means every day. A window whose end is not after its
//! start runs into the next day, so `Fri 22:00-06:00` covers Saturday 01:00. `24:00` is allowed
//! as an end only. Evaluation takes a local wall-clock time, so on DST nights a skipped hour
//! simply never occurs and a repeated hour is inside the window both times.

use std::fmt;

use chrono::{Datelike, NaiveDateTime, Timelike};
use thiserror::Error;

/// Minutes in a day: `24:00` as an end.
const DAY_MINUTES: u16 = 24 * 60;
/// Every weekday bit set (bit 0 is Monday).
const EVERY_DAY: u8 = 0b111_1111;
const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A schedule: access is allowed when any of its windows contains the moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    windows: Vec<Window>,
}

/// One weekly window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Days the window starts on, bit 0 = Monday.
    days: u8,
    /// Start, minutes after local midnight (0..1440).
    start: u16,
    /// End, minutes after local midnight (1..=1440); not after `start` means the next day.
    end: u16,
    /// The text it was parsed from, for explanations.
    text: String,
}

/// Why a schedule window did not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ScheduleError {
    /// The window is not `[DAYS ]HH:MM-HH:MM`.
    #[error("`{0}` is not a window like `Mon-Fri 08:00-18:00`")]
    Shape(String),
    /// A day name is not one of Mon…Sun.
    #[error("`{0}` is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)")]
    Day(String),
    /// A time is not HH:MM between 00:00 and 23:59 (24:00 as an end).
    #[error("`{0}` is not a time HH:MM from 00:00 to 23:59 (24:00 only as an end)")]
    Time(String),
    /// A schedule with no windows would never open; leave `schedule` out for 24/7.
    #[error("a schedule needs at least one window (leave `schedule` out for 24/7 access)")]
    Empty,
}

impl Schedule {
    /// Parses a list of window strings; every one must parse.
    pub fn parse<S: AsRef<str>>(windows: &[S]) -> Result<Self, ScheduleError> {
        if windows.is_empty() {
            return Err(ScheduleError::Empty);
        }
        let windows = windows
            .iter()
            .map(|w| w.as_ref().parse())
            .collect::<Result<Vec<Window>, _>>()?;
        Ok(Self { windows })
    }

    /// True when a window contains this local wall-clock moment.
    pub fn contains(&self, local: NaiveDateTime) -> bool {
        self.windows.iter().any(|w| w.contains(local))
    }

    /// How long the windows that contain this local moment still run (the longest, when
    /// several do); `None` outside every window. Minute-exact: windows end on a minute.
    pub fn remaining(&self, local: NaiveDateTime) -> Option<std::time::Duration> {
        self.windows.iter().filter_map(|w| w.remaining(local)).max()
    }

    /// The windows, for display.
    pub fn windows(&self) -> &[Window] {
        &self.windows
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, w) in self.windows.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&w.text)?;
        }
        Ok(())
    }
}

impl Window {
    /// True when this window contains the local wall-clock moment.
    pub fn contains(&self, local: NaiveDateTime) -> bool {
        // Minutes since midnight: at most 1439, so the cast is exact.
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let today = day_bit(local.weekday().num_days_from_monday());
        if self.end > self.start {
            return self.days & today != 0 && (self.start..self.end).contains(&minute);
        }
        let yesterday = day_bit((local.weekday().num_days_from_monday() + 6) % 7);
        (self.days & today != 0 && minute >= self.start)
            || (self.days & yesterday != 0 && minute < self.end)
    }

    /// How long the window still runs from this local moment, if it contains it.
    fn remaining(&self, local: NaiveDateTime) -> Option<std::time::Duration> {
        if !self.contains(local) {
            return None;
        }
        let now = i64::from(local.num_seconds_from_midnight());
        let end = i64::from(self.end) * 60;
        // Inside a window that crosses midnight, before its end, the end is later today;
        // otherwise (a same-day window, or the part after the start) the end is ahead by a day
        // when it is not after the moment.
        let left = if end > now {
            end - now
        } else {
            end + 86_400 - now
        };
        u64::try_from(left).ok().map(std::time::Duration::from_secs)
    }

    /// True when the window runs past midnight into the next day.
    pub fn crosses_midnight(&self) -> bool {
        self.end <= self.start
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Window {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let (days_part, times) = match trimmed.rsplit_once(char::is_whitespace) {
            Some((days, times)) => (Some(days.trim()), times),
            None => (None, trimmed),
        };
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| ScheduleError::Shape(text.to_owned()))?;
        let start = parse_time(start, false)?;
        let end = parse_time(end, true)?;
        let days = match days_part {
            None => EVERY_DAY,
            Some(days) => parse_days(days)?,
        };
        Ok(Self {
            days,
            start,
            end,
            text: trimmed.to_owned(),
        })
    }
}

fn day_bit(index_from_monday: u32) -> u8 {
    1 << index_from_monday
}

fn parse_day(name: &str) -> Result<u32, ScheduleError> {
    let lower = name.trim().to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|d| *d == lower)
        .map(|i| i as u32)
        .ok_or_else(|| ScheduleError::Day(name.trim().to_owned()))
}

/// `Mon`, `Sat,Sun`, `Mon-Fri`, `Fri-Mon` (wrapping), `Mon-Wed, Fri`.
fn parse_days(text: &str) -> Result<u8, ScheduleError> {
    let mut days = 0u8;
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(ScheduleError::Day(text.to_owned()));
        }
        match item.split_once('-') {
            None => days |= day_bit(parse_day(item)?),
            Some((first, last)) => {
                let (mut day, last) = (parse_day(first)?, parse_day(last)?);
                loop {
                    days |= day_bit(day);
                    if day == last {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
        }
    }
    Ok(days)
}

/// `HH:MM` → minutes after midnight; `24:00` only when `is_end`.
fn parse_time(text: &str, is_end: bool) -> Result<u16, ScheduleError> {
    let bad = || ScheduleError::Time(text.to_owned());
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    let minutes = h * 60 + m;
    match (h, m) {
        (24, 0) if is_end => Ok(DAY_MINUTES),
        (0..=23, 0..=59) => Ok(minutes),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .and_then(|d| d.and_hms_opt(h, mi, 0))
            .unwrap_or_default()
    }

    fn sched(w: &[&str]) -> Schedule {
        Schedule::parse(w).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn weekday_range_covers_office_hours_only() {
        let s = sched(&["Mon-Fri 08:00-18:00"]);
        // 2026-11-23 is a Monday.
        assert!(s.contains(at(2026, 11, 23, 8, 0)));
        assert!(s.contains(at(2026, 11, 23, 17, 59)));
        assert!(!s.contains(at(2026, 11, 23, 18, 0)));
        assert!(!s.contains(at(2026, 11, 23, 7, 59)));
        assert!(!s.contains(at(2026, 11, 28, 12, 0)));
    }

    #[test]
    fn window_crossing_midnight_belongs_to_its_start_day() {
        let s = sched(&["Fri 22:00-06:00"]);
        // 2026-11-27 is a Friday.
        assert!(s.contains(at(2026, 11, 27, 22, 0)));
        assert!(s.contains(at(2026, 11, 28, 1, 0)));
        assert!(!s.contains(at(2026, 11, 28, 6, 0)));
        assert!(!s.contains(at(2026, 11, 27, 1, 0)));
        assert!(!s.contains(at(2026, 11, 28, 22, 0)));
    }

    #[test]
    fn wrapping_day_ranges_and_mixed_lists_parse() {
        let s = sched(&["fri-MON 10:00-11:00", "Mon-Wed, Fri 12:00-13:00"]);
        assert!(s.contains(at(2026, 11, 29, 10, 30))); // Sunday
        assert!(!s.contains(at(2026, 11, 25, 10, 30))); // Wednesday
        assert!(s.contains(at(2026, 11, 25, 12, 30)));
        assert!(!s.contains(at(2026, 11, 26, 12, 30))); // Thursday
    }

    #[test]
    fn whole_day_and_24_00_end() {
        let s = sched(&["00:00-24:00"]);
        assert!(s.contains(at(2026, 11, 23, 0, 0)));
        assert!(s.contains(at(2026, 11, 23, 23, 59)));
        assert!(sched(&["Sat 20:00-24:00"]).contains(at(2026, 11, 28, 23, 59)));
    }

    #[test]
    fn bad_windows_are_rejected_with_what_is_wrong() {
        assert!(matches!(
            "Mon 8-18".parse::<Window>(),
            Err(ScheduleError::Time(_))
        ));
        assert!(matches!(
            "Mo 08:00-18:00".parse::<Window>(),
            Err(ScheduleError::Day(_))
        ));
        assert!(matches!(
            "24:00-06:00".parse::<Window>(),
            Err(ScheduleError::Time(_))
        ));
        assert!(matches!(
            "08:00-24:01".parse::<Window>(),
            Err(ScheduleError::Time(_))
        ));
        assert!(matches!(
            "08:00".parse::<Window>(),
            Err(ScheduleError::Shape(_))
        ));
        assert!(matches!(
            "Mon, 08:00-09:00".parse::<Window>(),
            Err(ScheduleError::Day(_))
        ));
        assert_eq!(Schedule::parse::<&str>(&[]), Err(ScheduleError::Empty));
    }
}
