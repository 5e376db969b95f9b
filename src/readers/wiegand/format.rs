//! Reading a Wiegand frame: card formats with their parity, keypad keys, raw bits.
//!
//! The card formats Portier knows (bit positions in the order sent, 0 first):
//!
//! | bits | format | parity | facility | card |
//! |---|---|---|---|---|
//! | 26 | H10301 | 0 even over 1–12, 25 odd over 13–24 | 1–8 | 9–24 |
//! | 34 | H10306 | 0 even over 1–16, 33 odd over 17–32 | 1–16 | 17–32 |
//! | 35 | HID Corporate 1000 | 1 even and 34 odd over two interleaved masks, 0 odd over all | 2–13 | 14–33 |
//! | 37 | H10304 | 0 even over 1–18, 36 odd over 18–35 | 1–16 | 17–35 |
//!
//! Keypads send a key as a 4-bit frame (0–9, 10 = `*`/ESC, 11 = `#`/ENT) or as an 8-bit frame
//! whose high nibble is the complement of the low one. The credential string of a card is, as
//! DESIGN.md pins it, either the data bits without parity as upper-case hex (left-padded with
//! zero bits to whole bytes) or facility and card number in decimal, zero-padded to the
//! format's widths and joined without a separator. A frame that fits nothing, fails its parity
//! or was noisy is malformed, with a reason; it is never read as some other card.

use super::frame::{MAX_BITS, RawFrame};
use crate::config::{WiegandCredential, WiegandFormat};

/// A key on a Wiegand keypad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// 0–9.
    Digit(u8),
    /// `*`: clears the entry.
    Escape,
    /// `#`: ends the entry.
    Enter,
}

/// What a frame was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read {
    /// A card: its credential string.
    Card(String),
    /// A key press.
    Key(Key),
    /// Denied as malformed, with the reason.
    Malformed(String),
}

/// What the wiring check shows of a frame (never the card data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Bits received.
    pub bits: u32,
    /// The format it was read as, if any.
    pub format: Option<&'static str>,
    /// Whether its parity held (None where there is none to check).
    pub parity_ok: Option<bool>,
}

/// A card format's layout.
struct Layout {
    bits: u32,
    name: &'static str,
    /// Data bits (without parity), as `from..to`.
    data: (u32, u32),
    facility: (u32, u32),
    card: (u32, u32),
    /// Decimal widths of facility and card number.
    widths: (usize, usize),
    parity: fn(&RawFrame) -> bool,
}

const LAYOUTS: [Layout; 4] = [
    Layout {
        bits: 26,
        name: "H10301",
        data: (1, 25),
        facility: (1, 9),
        card: (9, 25),
        widths: (3, 5),
        parity: |f| even(f, 0, 1..13) && odd(f, 25, 13..25),
    },
    Layout {
        bits: 34,
        name: "H10306",
        data: (1, 33),
        facility: (1, 17),
        card: (17, 33),
        widths: (5, 5),
        parity: |f| even(f, 0, 1..17) && odd(f, 33, 17..33),
    },
    Layout {
        bits: 35,
        name: "Corporate 1000",
        data: (2, 34),
        facility: (2, 14),
        card: (14, 34),
        widths: (4, 7),
        parity: corporate_1000_parity,
    },
    Layout {
        bits: 37,
        name: "H10304",
        data: (1, 36),
        facility: (1, 17),
        card: (17, 36),
        widths: (5, 6),
        parity: |f| even(f, 0, 1..19) && odd(f, 36, 18..36),
    },
];

/// Bit `at` makes the ones among itself and `over` even.
fn even(frame: &RawFrame, at: u32, over: std::ops::Range<u32>) -> bool {
    ones(frame, over).wrapping_add(u32::from(frame.bit(at))) % 2 == 0
}

/// Bit `at` makes the ones among itself and `over` odd.
fn odd(frame: &RawFrame, at: u32, over: std::ops::Range<u32>) -> bool {
    !even(frame, at, over)
}

fn ones(frame: &RawFrame, over: impl Iterator<Item = u32>) -> u32 {
    over.map(|i| u32::from(frame.bit(i))).sum()
}

/// HID Corporate 1000 (35 bits): bit 1 even over bits 2, 3, 5, 6, … 32, 33 (two of every
/// three from 2); bit 34 odd over bits 1, 2, 4, 5, … 31, 32 (two of every three from 1); bit
/// 0 odd over the whole frame.
fn corporate_1000_parity(frame: &RawFrame) -> bool {
    let first = (2..34).filter(|i| (i - 2) % 3 != 2);
    let second = (1..33).filter(|i| (i - 1) % 3 != 2);
    (ones(frame, first) + u32::from(frame.bit(1))) % 2 == 0
        && (ones(frame, second) + u32::from(frame.bit(34))) % 2 == 1
        && ones(frame, 0..35) % 2 == 1
}

/// Reads `frame` as a reader expecting `expect` and writing cards as `style`.
pub(crate) fn read(
    frame: &RawFrame,
    expect: WiegandFormat,
    style: WiegandCredential,
) -> (Read, Seen) {
    let mut seen = Seen {
        bits: frame.count,
        format: None,
        parity_ok: None,
    };
    if frame.count == 0 {
        return (
            Read::Malformed("malformed Wiegand frame: no bits".into()),
            seen,
        );
    }
    if frame.noisy {
        let why = format!(
            "malformed Wiegand frame: noise on the data lines ({} bits)",
            frame.count
        );
        return (Read::Malformed(why), seen);
    }
    if let Some(key) = keypad(frame, &mut seen) {
        return (key, seen);
    }
    if frame.count > MAX_BITS {
        let why = format!(
            "malformed Wiegand frame: {} bits, more than the {MAX_BITS} any reader sends",
            frame.count
        );
        return (Read::Malformed(why), seen);
    }
    if expect == WiegandFormat::Raw {
        seen.format = Some("raw");
        return (
            Read::Card(hex(frame.field(0, frame.count), frame.count)),
            seen,
        );
    }
    let layout = LAYOUTS.iter().find(|l| l.bits == frame.count);
    let layout = match (expect, layout) {
        (WiegandFormat::Bits(n), _) if n != frame.count => {
            let why = format!(
                "malformed Wiegand frame: {} bits, the reader is set to {n}-bit cards",
                frame.count
            );
            return (Read::Malformed(why), seen);
        }
        (_, Some(layout)) => layout,
        (_, None) => {
            let why = format!(
                "malformed Wiegand frame: {} bits is no known card format (26, 34, 35 or 37; \
                 format = \"raw\" takes any)",
                frame.count
            );
            return (Read::Malformed(why), seen);
        }
    };
    let parity_ok = (layout.parity)(frame);
    seen.format = Some(layout.name);
    seen.parity_ok = Some(parity_ok);
    if !parity_ok {
        let why = format!(
            "malformed Wiegand frame: {} parity check failed",
            layout.name
        );
        return (Read::Malformed(why), seen);
    }
    let card = match style {
        WiegandCredential::Hex => hex(
            frame.field(layout.data.0, layout.data.1),
            layout.data.1 - layout.data.0,
        ),
        WiegandCredential::FacilityCard => format!(
            "{:0fw$}{:0cw$}",
            frame.field(layout.facility.0, layout.facility.1),
            frame.field(layout.card.0, layout.card.1),
            fw = layout.widths.0,
            cw = layout.widths.1,
        ),
    };
    (Read::Card(card), seen)
}

/// A 4- or 8-bit frame as a key (or a malformed one); None for any other length.
fn keypad(frame: &RawFrame, seen: &mut Seen) -> Option<Read> {
    let value = match frame.count {
        4 => {
            seen.format = Some("keypad 4-bit");
            frame.bits
        }
        8 => {
            seen.format = Some("keypad 8-bit");
            let (high, low) = (frame.bits >> 4, frame.bits & 0xF);
            let ok = high == !low & 0xF;
            seen.parity_ok = Some(ok);
            if !ok {
                return Some(Read::Malformed(
                    "malformed Wiegand frame: 8-bit key whose check nibble does not match".into(),
                ));
            }
            low
        }
        _ => return None,
    };
    Some(match value {
        0..=9 => Read::Key(Key::Digit(value as u8)),
        10 => Read::Key(Key::Escape),
        11 => Read::Key(Key::Enter),
        _ => Read::Malformed(format!(
            "malformed Wiegand frame: keypad code {value} is no key"
        )),
    })
}

/// `bits` significant bits of `value` as upper-case hex, left-padded with zero bits to whole
/// bytes.
pub(crate) fn hex(value: u64, bits: u32) -> String {
    let digits = bits.div_ceil(8) as usize * 2;
    format!("{value:0digits$X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of the bits spelled in `bits` ('0'/'1', other characters ignored).
    fn frame(bits: &str) -> RawFrame {
        let bits: Vec<bool> = bits
            .chars()
            .filter(|c| "01".contains(*c))
            .map(|c| c == '1')
            .collect();
        RawFrame {
            bits: bits.iter().fold(0, |acc, b| (acc << 1) | u64::from(*b)),
            count: bits.len() as u32,
            noisy: false,
        }
    }

    /// Sets the parity bits of a frame of a known layout, the way a reader does.
    fn with_parity(mut bits: Vec<bool>) -> RawFrame {
        let f = |bits: &[bool]| {
            frame(
                &bits
                    .iter()
                    .map(|b| if *b { '1' } else { '0' })
                    .collect::<String>(),
            )
        };
        let count = |bits: &[bool], over: &mut dyn Iterator<Item = u32>| {
            over.filter(|i| bits[*i as usize]).count() % 2 == 1
        };
        match bits.len() {
            26 => {
                bits[0] = count(&bits, &mut (1..13));
                bits[25] = !count(&bits, &mut (13..25));
            }
            34 => {
                bits[0] = count(&bits, &mut (1..17));
                bits[33] = !count(&bits, &mut (17..33));
            }
            35 => {
                bits[1] = count(&bits, &mut (2..34).filter(|i| (i - 2) % 3 != 2));
                bits[34] = !count(&bits, &mut (1..33).filter(|i| (i - 1) % 3 != 2));
                bits[0] = false;
                bits[0] = !count(&bits, &mut (0..35));
            }
            37 => {
                bits[0] = count(&bits, &mut (1..19));
                bits[36] = !count(&bits, &mut (18..36));
            }
            n => panic!("no layout of {n} bits"),
        }
        f(&bits)
    }

    /// A frame of `bits` bits holding `facility` and `card` in the layout's fields.
    fn card(bits: u32, facility: u64, card: u64) -> RawFrame {
        let layout = LAYOUTS.iter().find(|l| l.bits == bits).expect("layout");
        let mut v = vec![false; bits as usize];
        for (field, value) in [(layout.facility, facility), (layout.card, card)] {
            let width = field.1 - field.0;
            for i in 0..width {
                v[(field.0 + i) as usize] = (value >> (width - 1 - i)) & 1 == 1;
            }
        }
        with_parity(v)
    }

    #[test]
    fn a_26_bit_card_reads_as_hex_of_its_24_data_bits_or_as_facility_and_card() {
        // Facility 1, card 2345: data bits 0x01 0x0929.
        let f = card(26, 1, 2345);
        let (read, seen) = read(&f, WiegandFormat::Auto, WiegandCredential::Hex);
        assert_eq!(read, Read::Card("010929".into()));
        assert_eq!(
            seen,
            Seen {
                bits: 26,
                format: Some("H10301"),
                parity_ok: Some(true)
            }
        );
        assert_eq!(
            super::read(&f, WiegandFormat::Auto, WiegandCredential::FacilityCard).0,
            Read::Card("00102345".into())
        );
    }

    #[test]
    fn facility_and_card_stay_distinct_when_their_digits_would_run_together() {
        let a = read(
            &card(26, 1, 2345),
            WiegandFormat::Auto,
            WiegandCredential::FacilityCard,
        )
        .0;
        let b = read(
            &card(26, 12, 345),
            WiegandFormat::Auto,
            WiegandCredential::FacilityCard,
        )
        .0;
        assert_eq!(a, Read::Card("00102345".into()));
        assert_eq!(b, Read::Card("01200345".into()));
    }

    #[test]
    fn every_known_format_reads_with_its_widths() {
        let cases = [
            (34, 65_535, 65_535, "FFFFFFFF", "6553565535"),
            (35, 4095, 1_048_575, "FFFFFFFF", "40951048575"),
            (35, 3522, 1, "DC200001", "35220000001"),
            (37, 65_535, 524_287, "07FFFFFFFF", "65535524287"),
            (37, 7, 9, "0000380009", "00007000009"),
        ];
        for (bits, facility, number, hex, decimal) in cases {
            let f = card(bits, facility, number);
            assert_eq!(
                read(&f, WiegandFormat::Auto, WiegandCredential::Hex).0,
                Read::Card(hex.into()),
                "{bits} hex"
            );
            assert_eq!(
                read(
                    &f,
                    WiegandFormat::Bits(bits),
                    WiegandCredential::FacilityCard
                )
                .0,
                Read::Card(decimal.into()),
                "{bits} decimal"
            );
        }
    }

    #[test]
    fn one_flipped_bit_anywhere_fails_the_parity_and_names_the_format() {
        for bits in [26, 34, 35, 37] {
            let good = card(bits, 123, 4567);
            for i in 0..bits {
                let mut bad = good;
                bad.bits ^= 1 << (bits - 1 - i);
                let (read, seen) = read(&bad, WiegandFormat::Auto, WiegandCredential::Hex);
                assert!(
                    matches!(&read, Read::Malformed(why) if why.contains("parity")),
                    "{bits} bits, bit {i} flipped: {read:?}"
                );
                assert_eq!(seen.parity_ok, Some(false));
            }
        }
    }

    #[test]
    fn keypads_send_digits_escape_and_enter_in_4_or_8_bits() {
        assert_eq!(
            read(&frame("0111"), WiegandFormat::Auto, WiegandCredential::Hex).0,
            Read::Key(Key::Digit(7))
        );
        assert_eq!(
            read(
                &frame("1010"),
                WiegandFormat::Bits(26),
                WiegandCredential::Hex
            )
            .0,
            Read::Key(Key::Escape)
        );
        assert_eq!(
            read(
                &frame("0100 1011"),
                WiegandFormat::Raw,
                WiegandCredential::Hex
            )
            .0,
            Read::Key(Key::Enter)
        );
        assert!(matches!(
            read(&frame("1111"), WiegandFormat::Auto, WiegandCredential::Hex).0,
            Read::Malformed(_)
        ));
        let (bad, seen) = read(
            &frame("0000 0011"),
            WiegandFormat::Auto,
            WiegandCredential::Hex,
        );
        assert!(matches!(bad, Read::Malformed(why) if why.contains("check nibble")));
        assert_eq!(seen.parity_ok, Some(false));
    }

    #[test]
    fn short_unknown_long_and_noisy_frames_are_malformed_with_their_reason() {
        let reason = |f: &RawFrame, expect| match read(f, expect, WiegandCredential::Hex).0 {
            Read::Malformed(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(
            reason(&frame("101"), WiegandFormat::Auto).contains("3 bits is no known card format")
        );
        assert!(reason(&card(26, 1, 1), WiegandFormat::Bits(34)).contains("set to 34-bit"));
        let long = RawFrame {
            bits: 0,
            count: 80,
            noisy: false,
        };
        assert!(reason(&long, WiegandFormat::Raw).contains("80 bits, more than the 64"));
        let noisy = RawFrame {
            noisy: true,
            ..card(26, 1, 1)
        };
        assert!(reason(&noisy, WiegandFormat::Auto).contains("noise"));
    }

    #[test]
    fn raw_takes_any_length_as_all_its_bits_without_a_parity_check() {
        let (read, seen) = read(
            &frame("1 0000 0000 0001"),
            WiegandFormat::Raw,
            WiegandCredential::FacilityCard,
        );
        assert_eq!(read, Read::Card("1001".into()));
        assert_eq!((seen.format, seen.parity_ok), (Some("raw"), None));
    }

    proptest::proptest! {
        /// Whatever bits arrive, reading never panics, and a card read in auto mode always
        /// passed its format's parity.
        #[test]
        fn any_frame_reads_without_panic(bits in proptest::num::u64::ANY, count in 0u32..80, noisy: bool) {
            let f = RawFrame { bits: if count >= 64 { bits } else { bits & ((1u64 << count) - 1) }, count, noisy };
            for expect in [WiegandFormat::Auto, WiegandFormat::Raw, WiegandFormat::Bits(26), WiegandFormat::Bits(37)] {
                for style in [WiegandCredential::Hex, WiegandCredential::FacilityCard] {
                    let (read, seen) = read(&f, expect, style);
                    if let (Read::Card(_), WiegandFormat::Auto) = (&read, expect) {
                        proptest::prop_assert_eq!(seen.parity_ok, Some(true));
                    }
                }
            }
        }
    }
}
