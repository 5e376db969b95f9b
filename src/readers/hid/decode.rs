//! Key events of a USB keyboard-wedge reader to card reads: no I/O.
//!
//! A desk reader "types" the card id and presses ENTER. The decoder takes the kernel's key
//! events (Linux input key codes, value 1 = press, 0 = release, 2 = auto-repeat) and collects
//! the characters of key presses, with SHIFT giving upper case; ENTER (main or keypad) ends a
//! read. A read that stops before its ENTER times out and is dropped as partial; a key that is
//! no character, or a read longer than any card id, makes the read malformed so that a
//! mistyped id is never taken for another card.

use std::time::Duration;

/// The longest read taken (card ids are shorter; see `domain::card`).
pub(crate) const MAX_CHARS: usize = 64;

/// Linux input key codes the decoder knows (`linux/input-event-codes.h`).
mod code {
    pub(super) const ENTER: u16 = 28;
    pub(super) const KP_ENTER: u16 = 96;
    pub(super) const LEFT_SHIFT: u16 = 42;
    pub(super) const RIGHT_SHIFT: u16 = 54;
    /// Modifiers and lock keys some readers send around their data: ignored.
    pub(super) const IGNORED: [u16; 6] = [29, 56, 58, 69, 97, 100];
}

/// The character of a key code without SHIFT, if it is one.
fn character(code: u16) -> Option<char> {
    const TOP_ROW: &[u8] = b"1234567890-";
    const QWERTY: &[u8] = b"qwertyuiop";
    const ASDF: &[u8] = b"asdfghjkl";
    const ZXCV: &[u8] = b"zxcvbnm";
    let at = |row: &[u8], first: u16| {
        code.checked_sub(first)
            .and_then(|i| row.get(usize::from(i)))
            .map(|b| char::from(*b))
    };
    match code {
        2..=12 => at(TOP_ROW, 2),
        16..=25 => at(QWERTY, 16),
        30..=38 => at(ASDF, 30),
        44..=50 => at(ZXCV, 44),
        // The numeric keypad: 7 8 9 / 4 5 6 / 1 2 3 / 0.
        71..=73 => at(b"789", 71),
        75..=77 => at(b"456", 75),
        79..=81 => at(b"123", 79),
        82 => Some('0'),
        74 => Some('-'),
        _ => None,
    }
}

/// A finished read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HidRead {
    /// The characters typed before ENTER.
    Card(String),
    /// Denied as malformed, with the reason.
    Malformed(String),
}

/// The read under way on one device.
#[derive(Debug)]
pub(crate) struct Decoder {
    timeout: Duration,
    typed: String,
    shift: bool,
    /// Why the read under way is already malformed (kept until its ENTER or timeout).
    bad: Option<String>,
    /// The last key press of the read under way.
    last: Option<Duration>,
}

impl Decoder {
    /// A decoder that drops a read with no key for `timeout`.
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            typed: String::new(),
            shift: false,
            bad: None,
            last: None,
        }
    }

    /// One key event at `at`; a read when this was its ENTER.
    pub(crate) fn key(&mut self, code: u16, value: i32, at: Duration) -> Option<HidRead> {
        if code == code::LEFT_SHIFT || code == code::RIGHT_SHIFT {
            self.shift = value != 0;
            return None;
        }
        if value != 1 || code::IGNORED.contains(&code) {
            // Releases and auto-repeats type nothing.
            return None;
        }
        self.expire(at);
        if code == code::ENTER || code == code::KP_ENTER {
            let read = match (self.bad.take(), self.typed.is_empty()) {
                (Some(why), _) => Some(HidRead::Malformed(why)),
                // A lone ENTER (someone at the keyboard): nothing was read.
                (None, true) => None,
                (None, false) => Some(HidRead::Card(std::mem::take(&mut self.typed))),
            };
            self.reset();
            return read;
        }
        self.last = Some(at);
        if self.bad.is_some() {
            return None;
        }
        match character(code) {
            Some(_) if self.typed.len() >= MAX_CHARS => {
                self.bad = Some(format!(
                    "malformed USB reader input: more than {MAX_CHARS} characters before ENTER"
                ));
            }
            Some(c) if self.shift => self.typed.push(c.to_ascii_uppercase()),
            Some(c) => self.typed.push(c),
            None => {
                self.bad = Some(format!(
                    "malformed USB reader input: key code {code} is not a card id character"
                ));
            }
        }
        None
    }

    /// When the read under way times out.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.last.map(|last| last + self.timeout)
    }

    /// Drops the read under way if it timed out at `now`; the partial read's length, if one was
    /// dropped (for the log: never its characters).
    pub(crate) fn expire(&mut self, now: Duration) -> Option<usize> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        let dropped = self.typed.len();
        self.reset();
        Some(dropped)
    }

    fn reset(&mut self) {
        self.typed.clear();
        self.bad = None;
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(500);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Presses and releases each code, 1 ms apart from `start`; the reads that came out.
    fn type_codes(d: &mut Decoder, codes: &[u16], start: u64) -> Vec<HidRead> {
        let mut reads = Vec::new();
        for (i, code) in codes.iter().enumerate() {
            let at = ms(start + i as u64);
            reads.extend(d.key(*code, 1, at));
            reads.extend(d.key(*code, 0, at));
        }
        reads
    }

    #[test]
    fn digits_and_letters_up_to_enter_are_one_card() {
        let mut d = Decoder::new(TIMEOUT);
        // 0 4 a 1 ENTER
        let reads = type_codes(&mut d, &[11, 5, 30, 2, 28], 0);
        assert_eq!(reads, vec![HidRead::Card("04a1".into())]);
        // keypad 7 0 KP_ENTER
        assert_eq!(
            type_codes(&mut d, &[71, 82, 96], 10),
            vec![HidRead::Card("70".into())]
        );
    }

    #[test]
    fn shift_gives_upper_case_and_repeats_type_nothing() {
        let mut d = Decoder::new(TIMEOUT);
        d.key(42, 1, ms(0));
        d.key(48, 1, ms(1)); // B
        d.key(48, 2, ms(2)); // auto-repeat
        d.key(48, 0, ms(3));
        d.key(42, 0, ms(4));
        d.key(48, 1, ms(5)); // b
        assert_eq!(d.key(28, 1, ms(6)), Some(HidRead::Card("Bb".into())));
    }

    #[test]
    fn a_partial_read_times_out_and_the_next_one_is_whole() {
        let mut d = Decoder::new(TIMEOUT);
        type_codes(&mut d, &[2, 3], 0);
        assert_eq!(d.deadline(), Some(ms(1) + TIMEOUT));
        assert_eq!(d.expire(ms(400)), None);
        assert_eq!(d.expire(ms(501)), Some(2));
        assert_eq!(
            type_codes(&mut d, &[4, 28], 600),
            vec![HidRead::Card("3".into())]
        );
        // Timed out between two keys without a call to expire: the stale part is dropped too.
        type_codes(&mut d, &[2], 1000);
        assert_eq!(
            type_codes(&mut d, &[5, 28], 2000),
            vec![HidRead::Card("4".into())]
        );
    }

    #[test]
    fn a_key_that_is_no_character_or_too_many_makes_the_read_malformed() {
        let mut d = Decoder::new(TIMEOUT);
        let reads = type_codes(&mut d, &[2, 57, 3, 28], 0); // 1 SPACE 2
        assert!(matches!(&reads[..], [HidRead::Malformed(why)] if why.contains("key code 57")));
        let long: Vec<u16> = std::iter::repeat_n(2, MAX_CHARS + 1).chain([28]).collect();
        let reads = type_codes(&mut d, &long, 10);
        assert!(matches!(&reads[..], [HidRead::Malformed(why)] if why.contains("more than 64")));
        assert_eq!(
            type_codes(&mut d, &[28], 200),
            vec![],
            "a lone ENTER reads nothing"
        );
    }

    proptest::proptest! {
        /// Any sequence of events decodes without a panic, and every card read is made only of
        /// characters a key gives.
        #[test]
        fn any_events_decode_without_panic(events in proptest::collection::vec((0u16..300, 0i32..3, 0u64..2000), 0..200)) {
            let mut d = Decoder::new(TIMEOUT);
            let mut at = 0;
            for (code, value, step) in events {
                at += step;
                if let Some(HidRead::Card(card)) = d.key(code, value, ms(at)) {
                    proptest::prop_assert!(!card.is_empty() && card.len() <= MAX_CHARS);
                    proptest::prop_assert!(card.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
                }
            }
        }
    }
}
