//! One door's contact judged against its lock: pure, so every rule is tested with made-up
//! instants.
//!
//! - An opening is **authorised** while the lock is open (a grant's pulse, an unlock schedule's
//!   hold), for [`GRACE`] after it relocked (a slow door, a late contact), and for
//!   [`REX_WINDOW`] after a request to exit; otherwise it is **forced open**.
//! - A door open for `held_open_after` while its lock is not held open is **held open**
//!   (never inside an unlock window: the lock is open there).
//! - The first reading (a retained message, the first poll) sets the state without an alarm:
//!   Portier does not know how the door came to be open.
//! - A repeated reading of the same state changes nothing.
//! - A contact that changes [`FLAPPING_CHANGES`] times within [`FLAPPING_WINDOW`] is
//!   **flapping** (a loose magnet, a bad wire): one event, then its openings raise no further
//!   alarms until it has been quiet for [`FLAPPING_QUIET`]; health shows it meanwhile.

use std::time::{Duration, Instant};

use serde::Serialize;

/// How long after a relock an opening still counts as the grant's.
pub(crate) const GRACE: Duration = Duration::from_secs(3);
/// How long a request to exit authorises the next opening.
pub(crate) const REX_WINDOW: Duration = Duration::from_secs(10);
/// This many contact changes …
pub(crate) const FLAPPING_CHANGES: usize = 10;
/// … within this long make a contact flapping …
pub(crate) const FLAPPING_WINDOW: Duration = Duration::from_secs(10);
/// … until it has not changed for this long.
pub(crate) const FLAPPING_QUIET: Duration = Duration::from_secs(30);

/// What a door did that others are told of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DoorEvent {
    /// Opened with no grant, hold or exit request.
    ForcedOpen,
    /// Open longer than allowed while the lock is not held open.
    HeldOpen,
    /// Closed again (ends an alarm).
    Closed,
    /// Opened by a grant, a hold or an exit request (not an alarm).
    Opened,
    /// The contact changes too often to be believed.
    Flapping,
}

impl DoorEvent {
    /// The event's word, as published.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DoorEvent::ForcedOpen => "forced_open",
            DoorEvent::HeldOpen => "held_open",
            DoorEvent::Closed => "closed",
            DoorEvent::Opened => "opened",
            DoorEvent::Flapping => "flapping",
        }
    }
}

/// A door as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub(crate) struct DoorStatus {
    /// The contact's last reading (`None` before the first).
    pub open: Option<bool>,
    /// Opened with no grant, and not closed since.
    pub forced: bool,
    /// Open too long, and not closed since.
    pub held: bool,
    /// The contact changes too often to be believed (no alarms from it meanwhile).
    pub flapping: bool,
}

impl DoorStatus {
    /// The alarm in force, if any.
    pub(crate) fn alarm(&self) -> Option<DoorEvent> {
        if self.forced {
            Some(DoorEvent::ForcedOpen)
        } else if self.held {
            Some(DoorEvent::HeldOpen)
        } else {
            None
        }
    }
}

/// One door's state (see the module header).
#[derive(Debug)]
pub(crate) struct Door {
    held_open_after: Duration,
    status: DoorStatus,
    open_since: Option<Instant>,
    lock_open: bool,
    authorised_until: Option<Instant>,
    exit_until: Option<Instant>,
    /// When the contact last changed, newest last (at most [`FLAPPING_CHANGES`]).
    changes: std::collections::VecDeque<Instant>,
}

impl Door {
    /// A door whose alarm for staying open comes after `held_open_after`.
    pub(crate) fn new(held_open_after: Duration) -> Self {
        Door {
            held_open_after,
            status: DoorStatus::default(),
            open_since: None,
            lock_open: false,
            authorised_until: None,
            exit_until: None,
            changes: std::collections::VecDeque::new(),
        }
    }

    /// The door as it is.
    pub(crate) fn status(&self) -> DoorStatus {
        self.status
    }

    /// The lock opened (`true`) or relocked (`false`) at `at`.
    pub(crate) fn lock(&mut self, open: bool, at: Instant) {
        if self.lock_open && !open {
            self.authorised_until = Some(at + GRACE);
        }
        self.lock_open = open;
    }

    /// Someone asked to leave (the exit button) at `at`.
    pub(crate) fn exit_requested(&mut self, at: Instant) {
        self.exit_until = Some(at + REX_WINDOW);
    }

    /// The contact read open (`true`) or closed at `at`.
    pub(crate) fn contact(&mut self, open: bool, at: Instant) -> Option<DoorEvent> {
        let before = self.status.open.replace(open);
        if before == Some(open) {
            return None;
        }
        if before.is_some() && self.flapped(at) {
            if !open {
                self.open_since = None;
            } else {
                self.open_since = Some(at);
            }
            if !self.status.flapping {
                self.status.flapping = true;
                self.status.forced = false;
                return Some(DoorEvent::Flapping);
            }
            return None;
        }
        if !open {
            self.open_since = None;
            self.status.forced = false;
            self.status.held = false;
            return before.map(|_| DoorEvent::Closed);
        }
        self.open_since = Some(at);
        // The first reading: how the door came to be open is not known.
        before?;
        let authorised = self.lock_open
            || self.authorised_until.is_some_and(|until| at <= until)
            || self.exit_until.is_some_and(|until| at <= until);
        // One exit request lets one person out.
        self.exit_until = None;
        if authorised {
            Some(DoorEvent::Opened)
        } else {
            self.status.forced = true;
            Some(DoorEvent::ForcedOpen)
        }
    }

    /// Notes a change at `at`; true while the contact is flapping.
    fn flapped(&mut self, at: Instant) -> bool {
        if self.changes.len() == FLAPPING_CHANGES {
            self.changes.pop_front();
        }
        self.changes.push_back(at);
        if self.status.flapping {
            return true;
        }
        self.changes.len() == FLAPPING_CHANGES
            && self
                .changes
                .front()
                .is_some_and(|first| at.duration_since(*first) <= FLAPPING_WINDOW)
    }

    /// Time passed: `HeldOpen` once when the door has been open too long; the end of a
    /// flapping spell once the contact has been quiet.
    pub(crate) fn tick(&mut self, at: Instant) -> Option<DoorEvent> {
        if self.status.flapping
            && self
                .changes
                .back()
                .is_none_or(|last| at.duration_since(*last) >= FLAPPING_QUIET)
        {
            self.status.flapping = false;
            self.changes.clear();
        }
        if self.status.flapping {
            return None;
        }
        let since = self.open_since?;
        if self.status.held || self.lock_open || at.duration_since(since) < self.held_open_after {
            return None;
        }
        self.status.held = true;
        Some(DoorEvent::HeldOpen)
    }

    /// When [`Door::tick`] should next run: to report a held-open door on time, or to end a
    /// flapping spell.
    pub(crate) fn due(&self) -> Option<Instant> {
        if self.status.flapping {
            return self.changes.back().map(|last| *last + FLAPPING_QUIET);
        }
        let since = self.open_since?;
        (!self.status.held && !self.lock_open).then_some(since + self.held_open_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELD: Duration = Duration::from_secs(60);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn an_opening_with_no_grant_is_forced_and_closing_ends_it() {
        let t = crate::clock::instant();
        let mut door = Door::new(HELD);
        assert_eq!(
            door.contact(false, t),
            None,
            "the first reading sets the state"
        );
        assert_eq!(door.contact(true, at(t, 10)), Some(DoorEvent::ForcedOpen));
        assert!(door.status().forced);
        assert_eq!(door.status().alarm(), Some(DoorEvent::ForcedOpen));
        assert_eq!(
            door.contact(true, at(t, 20)),
            None,
            "a repeat changes nothing"
        );
        assert_eq!(door.contact(false, at(t, 30)), Some(DoorEvent::Closed));
        assert_eq!(door.status().alarm(), None);
    }

    #[test]
    fn a_grant_its_grace_and_an_exit_request_authorise_one_opening() {
        let t = crate::clock::instant();
        let mut door = Door::new(HELD);
        door.contact(false, t);
        door.lock(true, at(t, 100));
        assert_eq!(door.contact(true, at(t, 200)), Some(DoorEvent::Opened));
        door.contact(false, at(t, 300));
        // Relocked at 5 s: an opening within the grace is still the grant's …
        door.lock(false, at(t, 5_000));
        assert_eq!(door.contact(true, at(t, 7_000)), Some(DoorEvent::Opened));
        door.contact(false, at(t, 7_500));
        // … after it, forced.
        assert_eq!(
            door.contact(true, at(t, 9_000)),
            Some(DoorEvent::ForcedOpen)
        );
        door.contact(false, at(t, 9_500));
        // The exit button lets one opening through.
        door.exit_requested(at(t, 10_000));
        assert_eq!(door.contact(true, at(t, 12_000)), Some(DoorEvent::Opened));
        door.contact(false, at(t, 13_000));
        assert_eq!(
            door.contact(true, at(t, 14_000)),
            Some(DoorEvent::ForcedOpen)
        );
    }

    #[test]
    fn a_door_open_too_long_is_held_open_once_unless_its_lock_is_held_open() {
        let t = crate::clock::instant();
        let mut door = Door::new(HELD);
        door.contact(false, t);
        door.lock(true, t);
        door.contact(true, at(t, 1_000));
        door.lock(false, at(t, 5_000));
        assert_eq!(door.due(), Some(at(t, 61_000)));
        assert_eq!(door.tick(at(t, 60_000)), None);
        assert_eq!(door.tick(at(t, 61_000)), Some(DoorEvent::HeldOpen));
        assert_eq!(door.tick(at(t, 120_000)), None, "once");
        assert_eq!(door.due(), None);
        assert_eq!(door.contact(false, at(t, 130_000)), Some(DoorEvent::Closed));
        assert!(!door.status().held);
        // An unlock schedule holds the lock open: no alarm however long.
        door.lock(true, at(t, 200_000));
        door.contact(true, at(t, 201_000));
        assert_eq!(door.tick(at(t, 10_000_000)), None);
        assert_eq!(door.due(), None);
    }

    #[test]
    fn a_flapping_contact_is_one_event_no_alarm_storm_and_ends_when_quiet() {
        let t = crate::clock::instant();
        let mut door = Door::new(HELD);
        door.contact(false, t);
        let mut events = Vec::new();
        for i in 1..=40u64 {
            events.extend(door.contact(i % 2 == 1, at(t, i * 100)));
        }
        // Believed until the tenth change in 10 s; then one event, and nothing more.
        let flapping = events
            .iter()
            .position(|e| *e == DoorEvent::Flapping)
            .expect("flapping");
        assert_eq!(flapping, 9, "{events:?}");
        assert_eq!(events.len(), 10, "no alarm storm after it: {events:?}");
        assert!(door.status().flapping);
        // Still changing: still flapping. Then quiet for 30 s: believed again.
        assert_eq!(door.tick(at(t, 20_000)), None);
        assert!(door.status().flapping);
        let last = at(t, 4_000);
        assert_eq!(door.due(), Some(last + FLAPPING_QUIET));
        door.tick(last + FLAPPING_QUIET);
        assert!(!door.status().flapping);
        door.contact(false, last + FLAPPING_QUIET);
        assert_eq!(
            door.contact(true, last + FLAPPING_QUIET + Duration::from_secs(1)),
            Some(DoorEvent::ForcedOpen)
        );
    }

    #[test]
    fn a_door_found_open_at_start_is_no_alarm_until_it_stays_open_too_long() {
        let t = crate::clock::instant();
        let mut door = Door::new(HELD);
        assert_eq!(door.contact(true, t), None);
        assert_eq!(door.status().open, Some(true));
        assert_eq!(door.tick(at(t, 60_000)), Some(DoorEvent::HeldOpen));
    }
}
