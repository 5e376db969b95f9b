//! A PIN typed on a Wiegand keypad after a card: collected key by key, no I/O.
//!
//! Cobot has no PINs, so Portier records what was typed with the card's reader and never
//! checks it (DESIGN.md, "Reader kinds"): the card is decided at once, and digits typed within
//! `pin_timeout` of it (each key restarting the wait) up to `#` are the entry. `*` clears what
//! was typed; a key with no card before it, or an entry left unfinished, is dropped.

use std::time::Duration;

use super::format::Key;

/// The most digits an entry holds; more end it as too long.
pub(crate) const MAX_DIGITS: usize = 12;

/// What a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Typed {
    /// Taken; the entry goes on.
    Pending,
    /// `*`: the digits so far were cleared.
    Cleared,
    /// `#`: the entry is complete.
    Done(String),
    /// No card was read within the timeout before this key: it is dropped.
    NoCard,
    /// More than [`MAX_DIGITS`]: the entry is dropped.
    TooLong,
}

/// The entry under way on one reader.
#[derive(Debug)]
pub(crate) struct Entry {
    timeout: Duration,
    digits: String,
    /// The last card or key, while an entry is open.
    last: Option<Duration>,
}

impl Entry {
    /// An entry that waits `timeout` for each key.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            digits: String::new(),
            last: None,
        }
    }

    /// A card was read at `at`: a new entry may follow (an unfinished one is dropped).
    pub(crate) fn card(&mut self, at: Duration) {
        self.digits.clear();
        self.last = Some(at);
    }

    /// A key pressed at `at`.
    pub(crate) fn key(&mut self, key: Key, at: Duration) -> Typed {
        if self.expire(at) || self.last.is_none() {
            return Typed::NoCard;
        }
        self.last = Some(at);
        match key {
            Key::Digit(d) if self.digits.len() < MAX_DIGITS => {
                self.digits.push(char::from(b'0' + d.min(9)));
                Typed::Pending
            }
            Key::Digit(_) => {
                self.close();
                Typed::TooLong
            }
            Key::Escape => {
                self.digits.clear();
                Typed::Cleared
            }
            Key::Enter => {
                let digits = std::mem::take(&mut self.digits);
                self.close();
                Typed::Done(digits)
            }
        }
    }

    /// When the open entry times out.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.last.map(|last| last + self.timeout)
    }

    /// Closes the entry if it timed out at `now`; true if it did.
    pub(crate) fn expire(&mut self, now: Duration) -> bool {
        match self.deadline() {
            Some(deadline) if now >= deadline => {
                self.close();
                true
            }
            _ => false,
        }
    }

    fn close(&mut self) {
        self.digits.clear();
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn digits_after_a_card_up_to_enter_are_the_entry() {
        let mut e = Entry::new(TIMEOUT);
        e.card(s(0));
        assert_eq!(e.key(Key::Digit(1), s(1)), Typed::Pending);
        assert_eq!(
            e.key(Key::Digit(2), s(5)),
            Typed::Pending,
            "each key restarts the wait"
        );
        assert_eq!(e.key(Key::Enter, s(9)), Typed::Done("12".into()));
        assert_eq!(
            e.key(Key::Digit(3), s(9)),
            Typed::NoCard,
            "the entry is over"
        );
    }

    #[test]
    fn escape_clears_and_a_new_card_starts_over() {
        let mut e = Entry::new(TIMEOUT);
        e.card(s(0));
        e.key(Key::Digit(9), s(1));
        assert_eq!(e.key(Key::Escape, s(2)), Typed::Cleared);
        e.key(Key::Digit(4), s(3));
        e.card(s(4));
        e.key(Key::Digit(5), s(5));
        assert_eq!(e.key(Key::Enter, s(6)), Typed::Done("5".into()));
    }

    #[test]
    fn keys_without_a_card_or_after_the_timeout_are_dropped() {
        let mut e = Entry::new(TIMEOUT);
        assert_eq!(e.key(Key::Digit(1), s(0)), Typed::NoCard);
        e.card(s(10));
        e.key(Key::Digit(1), s(11));
        assert_eq!(e.deadline(), Some(s(16)));
        assert!(e.expire(s(16)));
        assert_eq!(e.key(Key::Enter, s(16)), Typed::NoCard);
    }

    #[test]
    fn an_entry_longer_than_the_limit_is_dropped() {
        let mut e = Entry::new(TIMEOUT);
        e.card(s(0));
        for _ in 0..MAX_DIGITS {
            assert_eq!(e.key(Key::Digit(0), s(1)), Typed::Pending);
        }
        assert_eq!(e.key(Key::Digit(0), s(1)), Typed::TooLong);
        assert_eq!(e.key(Key::Enter, s(1)), Typed::NoCard);
    }
}
