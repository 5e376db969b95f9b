//! Wiegand frames from line edges: no I/O, fed with kernel edge timestamps (or recorded ones).
//!
//! A Wiegand reader pulls D0 low for a 0 bit and D1 low for a 1 bit, one short pulse per bit
//! (typically 20–100 µs, bits 0.2–2 ms apart), and sends nothing between cards. So the
//! assembler appends a bit per falling edge and ends a frame once the lines have been quiet
//! for the frame gap. Two falling edges closer than [`GLITCH`] — on both lines at once, or a
//! bouncing line — are not bits a reader sends: the frame is marked noisy and later denied as
//! malformed instead of being read as a different card.

use std::time::Duration;

/// The longest frame taken; longer ones are kept only as "too long".
pub(crate) const MAX_BITS: u32 = 64;
/// Edges closer than this are noise, never two bits.
pub(crate) const GLITCH: Duration = Duration::from_micros(10);

/// A data line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line {
    /// D0: a falling edge is a 0 bit.
    D0,
    /// D1: a falling edge is a 1 bit.
    D1,
}

/// The bits of one frame as they arrived, first bit most significant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawFrame {
    /// The first [`MAX_BITS`] bits, right-aligned: the first bit received is bit `count - 1`.
    pub bits: u64,
    /// How many bits arrived (may exceed [`MAX_BITS`]; only the first ones are in `bits`).
    pub count: u32,
    /// Two edges came closer than [`GLITCH`].
    pub noisy: bool,
}

impl RawFrame {
    /// Bit `i` in the order received (0 is the first); false past the end.
    pub(crate) fn bit(&self, i: u32) -> bool {
        let kept = self.count.min(MAX_BITS);
        i < kept && (self.bits >> (kept - 1 - i)) & 1 == 1
    }

    /// Bits `from..to` (in the order received) as a number, the first one most significant.
    pub(crate) fn field(&self, from: u32, to: u32) -> u64 {
        (from..to).fold(0, |acc, i| (acc << 1) | u64::from(self.bit(i)))
    }
}

/// Collects edges into frames, ending one after `gap` of quiet.
#[derive(Debug)]
pub(crate) struct Assembler {
    gap: Duration,
    frame: Option<RawFrame>,
    last_edge: Option<Duration>,
}

impl Assembler {
    /// An assembler ending frames after `gap` without an edge.
    pub(crate) fn new(gap: Duration) -> Self {
        Self {
            gap,
            frame: None,
            last_edge: None,
        }
    }

    /// A falling edge on `line` at `at` (a monotonic timestamp, as the kernel's edge events
    /// carry). Returns the previous frame when this edge starts a new one after a gap (the
    /// caller missed the deadline), so no frame is ever merged into the next.
    pub(crate) fn edge(&mut self, line: Line, at: Duration) -> Option<RawFrame> {
        let finished = match self.last_edge {
            Some(last) if at.saturating_sub(last) >= self.gap => self.frame.take(),
            _ => None,
        };
        let glitch = self
            .last_edge
            .is_some_and(|last| at.saturating_sub(last) < GLITCH);
        self.last_edge = Some(at);
        let frame = self.frame.get_or_insert(RawFrame {
            bits: 0,
            count: 0,
            noisy: false,
        });
        if glitch && frame.count > 0 {
            // Both lines low at once, or a bounce: whatever it was, it is not a bit.
            frame.noisy = true;
            return finished;
        }
        if frame.count < MAX_BITS {
            frame.bits = (frame.bits << 1) | u64::from(line == Line::D1);
        }
        frame.count = frame.count.saturating_add(1);
        finished
    }

    /// When the frame under way ends if no edge comes before.
    pub(crate) fn deadline(&self) -> Option<Duration> {
        self.frame.and(self.last_edge).map(|last| last + self.gap)
    }

    /// The frame under way, if the lines have been quiet for the gap at `now`.
    pub(crate) fn idle(&mut self, now: Duration) -> Option<RawFrame> {
        let last = self.last_edge?;
        if now.saturating_sub(last) >= self.gap {
            self.frame.take()
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: Duration = Duration::from_millis(25);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// Feeds `bits` as a reader sends them (one edge every 2 ms from `start`).
    fn send(assembler: &mut Assembler, bits: &str, start: Duration) -> Option<RawFrame> {
        let mut at = start;
        let mut finished = None;
        for c in bits.chars() {
            let line = if c == '1' { Line::D1 } else { Line::D0 };
            finished = finished.or(assembler.edge(line, at));
            at += us(2000);
        }
        finished
    }

    #[test]
    fn bits_arrive_in_order_and_a_frame_ends_after_the_gap() {
        let mut a = Assembler::new(GAP);
        assert_eq!(send(&mut a, "1011", Duration::ZERO), None);
        let last = us(6000);
        assert_eq!(a.deadline(), Some(last + GAP));
        assert_eq!(a.idle(last + GAP - us(1)), None);
        let frame = a.idle(last + GAP).expect("a frame");
        assert_eq!((frame.bits, frame.count, frame.noisy), (0b1011, 4, false));
        assert!(frame.bit(0) && !frame.bit(1) && frame.bit(3) && !frame.bit(4));
        assert_eq!(frame.field(1, 4), 0b011);
        assert_eq!(a.idle(last + GAP * 2), None, "a frame is handed out once");
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn an_edge_after_a_missed_deadline_hands_out_the_old_frame_and_starts_a_new_one() {
        let mut a = Assembler::new(GAP);
        send(&mut a, "11", Duration::ZERO);
        let old = send(&mut a, "0", Duration::from_millis(100)).expect("old frame");
        assert_eq!((old.bits, old.count), (0b11, 2));
        let new = a.idle(Duration::from_millis(200)).expect("new frame");
        assert_eq!((new.bits, new.count), (0, 1));
    }

    #[test]
    fn edges_on_both_lines_at_once_mark_the_frame_noisy_without_adding_a_bit() {
        let mut a = Assembler::new(GAP);
        a.edge(Line::D0, us(0));
        a.edge(Line::D1, us(2000));
        a.edge(Line::D0, us(2003));
        let frame = a.idle(Duration::from_millis(50)).expect("frame");
        assert_eq!((frame.bits, frame.count, frame.noisy), (0b01, 2, true));
    }

    #[test]
    fn a_frame_longer_than_the_limit_keeps_its_first_bits_and_its_true_length() {
        let mut a = Assembler::new(GAP);
        let bits = "1".repeat(70);
        send(&mut a, &bits, Duration::ZERO);
        let frame = a.idle(Duration::from_secs(1)).expect("frame");
        assert_eq!((frame.bits, frame.count), (u64::MAX, 70));
        assert!(frame.bit(63) && !frame.bit(64));
    }

    #[test]
    fn timestamps_going_backwards_neither_panic_nor_split_a_frame() {
        let mut a = Assembler::new(GAP);
        a.edge(Line::D1, us(5000));
        a.edge(Line::D1, us(1000));
        let frame = a.idle(Duration::from_secs(1)).expect("frame");
        assert!(
            frame.noisy,
            "an edge dated before the last one is not a bit"
        );
        assert_eq!(frame.count, 1);
    }
}
