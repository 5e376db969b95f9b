//! Unlock schedules: a unit whose lock is held open for everyone in some windows (reception
//! hours), decided here like every other opening, so the lock still gets a [`Permit`].

use std::time::Duration;

use super::decide::{ClockTrust, Moment, Permit};
use super::snapshot::{Snapshot, UnitIdx};

/// Why a unit with an unlock schedule is not held open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotHeld {
    /// It has no unlock schedule, or no lock.
    NoSchedule,
    /// The moment is outside every window.
    OutsideWindows,
    /// Today is a holiday.
    Holiday,
    /// A lockdown is on.
    Lockdown,
    /// The clock cannot be trusted, so the windows cannot be either.
    ClockUntrusted,
}

/// Whether `unit`'s unlock schedule holds it open at the moment: a permit to keep it open for
/// the rest of the window, but at most `lease` (the caller renews it well before the lease
/// runs out, so a hold that stops being right — a reload, a new holiday — ends within one
/// lease, while the window's end relocks on the minute).
pub fn hold_open(
    snapshot: &Snapshot,
    unit: UnitIdx,
    now: &Moment,
    lease: Duration,
) -> Result<Permit, NotHeld> {
    let Some(u) = snapshot.units.get(unit.0 as usize) else {
        return Err(NotHeld::NoSchedule);
    };
    let (Some(schedule), Some(lock)) = (&u.unlocked, &u.lock) else {
        return Err(NotHeld::NoSchedule);
    };
    if now.clock != ClockTrust::Trusted {
        return Err(NotHeld::ClockUntrusted);
    }
    if now.lockdown {
        return Err(NotHeld::Lockdown);
    }
    let local = now.at.with_timezone(&snapshot.timezone()).naive_local();
    if snapshot.is_holiday(local.date()) {
        return Err(NotHeld::Holiday);
    }
    let left = schedule.remaining(local).ok_or(NotHeld::OutsideWindows)?;
    Ok(Permit::held(
        unit,
        lock.clone(),
        left.min(lease),
        snapshot.version(),
    ))
}

/// The unlock schedule of a unit, for explanations (`None` without one).
pub fn unlock_schedule(snapshot: &Snapshot, unit: UnitIdx) -> Option<String> {
    snapshot
        .units
        .get(unit.0 as usize)
        .and_then(|u| u.unlocked.as_ref())
        .map(ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::CobotData;
    use crate::domain::schedule::Schedule;
    use crate::domain::testkit::{berlin, day, policy, synced_at};
    use crate::domain::{ClockProblem, compile};

    /// Reception hours on the front door, Mon-Fri 09:00-17:00, and a night window 22:00-02:00;
    /// 2026-12-25 is a holiday.
    fn snapshot() -> Snapshot {
        let mut p = policy();
        p.units[1].unlocked =
            Some(Schedule::parse(&["Mon-Fri 09:00-17:00", "Fri 22:00-02:00"]).expect("schedule"));
        p.holidays.push(day(2026, 12, 25));
        compile(&CobotData::default(), &p, 1, synced_at())
    }

    const LEASE: Duration = Duration::from_secs(60);

    #[test]
    fn a_door_is_held_open_in_its_windows_for_at_most_the_lease_and_to_the_minute_at_the_end() {
        let s = snapshot();
        let front = s.unit("front_door").expect("unit");
        // Tuesday 2026-12-01, 10:00 Berlin: in the window, a full lease.
        let permit = hold_open(
            &s,
            front,
            &Moment::trusted(berlin(2026, 12, 1, 10, 0)),
            LEASE,
        )
        .expect("held");
        assert_eq!(permit.open_for(), LEASE);
        assert_eq!(permit.lock(), Some("front_relay"));
        assert!(permit.member().is_none());
        // 16:59: one minute left, so the lease ends with the window.
        let permit = hold_open(
            &s,
            front,
            &Moment::trusted(berlin(2026, 12, 1, 16, 59)),
            LEASE,
        )
        .expect("held");
        assert_eq!(permit.open_for(), Duration::from_secs(60));
        let permit = hold_open(
            &s,
            front,
            &Moment::trusted(berlin(2026, 12, 1, 16, 59) + chrono::Duration::seconds(30)),
            LEASE,
        )
        .expect("held");
        assert_eq!(permit.open_for(), Duration::from_secs(30));
        // 17:00 and 08:59: outside.
        for at in [berlin(2026, 12, 1, 17, 0), berlin(2026, 12, 1, 8, 59)] {
            assert_eq!(
                hold_open(&s, front, &Moment::trusted(at), LEASE).err(),
                Some(NotHeld::OutsideWindows)
            );
        }
        // Saturday 01:30 is still Friday night's window, 30 minutes to go.
        let permit = hold_open(
            &s,
            front,
            &Moment::trusted(berlin(2026, 12, 5, 1, 30)),
            LEASE,
        )
        .expect("held");
        assert_eq!(permit.open_for(), LEASE);
        let long = Duration::from_secs(24 * 3600);
        let permit = hold_open(
            &s,
            front,
            &Moment::trusted(berlin(2026, 12, 5, 1, 30)),
            long,
        )
        .expect("held");
        assert_eq!(permit.open_for(), Duration::from_secs(30 * 60));
        let permit = hold_open(
            &s,
            front,
            &Moment::trusted(berlin(2026, 12, 4, 23, 0)),
            long,
        )
        .expect("held");
        assert_eq!(permit.open_for(), Duration::from_secs(3 * 3600));
    }

    #[test]
    fn no_hold_on_holidays_in_a_lockdown_with_an_untrusted_clock_or_without_a_schedule() {
        let s = snapshot();
        let front = s.unit("front_door").expect("unit");
        // Friday 2026-12-25 10:00 is a holiday.
        assert_eq!(
            hold_open(
                &s,
                front,
                &Moment::trusted(berlin(2026, 12, 25, 10, 0)),
                LEASE
            )
            .err(),
            Some(NotHeld::Holiday)
        );
        let at = berlin(2026, 12, 1, 10, 0);
        let mut lockdown = Moment::trusted(at);
        lockdown.lockdown = true;
        assert_eq!(
            hold_open(&s, front, &lockdown, LEASE).err(),
            Some(NotHeld::Lockdown)
        );
        let untrusted = Moment {
            at,
            clock: ClockTrust::Untrusted(ClockProblem::JumpedBack),
            lockdown: false,
        };
        assert_eq!(
            hold_open(&s, front, &untrusted, LEASE).err(),
            Some(NotHeld::ClockUntrusted)
        );
        let office = s.unit("office").expect("unit");
        assert_eq!(
            hold_open(&s, office, &Moment::trusted(at), LEASE).err(),
            Some(NotHeld::NoSchedule)
        );
        assert_eq!(
            unlock_schedule(&s, front).as_deref(),
            Some("Mon-Fri 09:00-17:00, Fri 22:00-02:00")
        );
    }
}
