//! The OSDP reader kind (`kind = "osdp"`): a reader on an RS-485 bus, Portier the control
//! panel (CP), through libosdp.
//!
//! [`panel`] runs each reader's CP on a thread of its own (libosdp wants its refresh at least
//! every 50 ms, whatever tokio is doing), over [`serial`]'s channel on the RS-485 adapter.
//! Card reads come back as frames for the reader loop; the answer goes back as the reader's
//! light and beeper: green for as long as the door is open, red and two beeps for a denial.
//! With a `scbk_file` the secure channel is required (a reader that refuses it stays offline,
//! with a health reason) and never set up with the default install key; `portier osdp
//! keyset` ([`keyset`]) is the one thing that sends a reader a new key.

pub(crate) mod keyset;
pub(crate) mod panel;
pub(crate) mod serial;

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{CardBits, ReaderKind, ReaderPayload};
use crate::access::Outcome;
use crate::config::ReaderConfig;

/// What a reader shows for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feedback {
    /// Green, for as long as the door is open.
    Granted(Duration),
    /// Red, with two beeps.
    Denied,
}

/// One OSDP reader: its answers go to its panel thread.
pub(crate) struct OsdpReader {
    feedback: Mutex<mpsc::Sender<Feedback>>,
}

impl OsdpReader {
    /// A reader whose panel takes feedback on `feedback`.
    pub(crate) fn new(feedback: mpsc::Sender<Feedback>) -> Self {
        Self {
            feedback: Mutex::new(feedback),
        }
    }
}

impl ReaderKind for OsdpReader {
    fn parse(&self, payload: &[u8], _now: DateTime<Utc>) -> ReaderPayload {
        super::device::parse(payload, "OSDP card read")
    }

    fn answer(&self, reader: &ReaderConfig, outcome: &Outcome) {
        let feedback = match outcome.open_for {
            Some(open_for) => Feedback::Granted(open_for),
            None => Feedback::Denied,
        };
        let sent = self
            .feedback
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(feedback);
        if sent.is_err() {
            tracing::debug!(reader = %reader.id, "OSDP reader's panel is gone; no feedback");
        }
    }
}

/// The credential of a raw card read: the first `bits` bits of `data` as a number, padded
/// with zero bits in front to whole bytes, as upper-case hex; and the bits themselves.
pub(crate) fn card(data: &[u8], bits: usize) -> Result<(String, CardBits), String> {
    if bits == 0 {
        return Err("malformed OSDP card read: no bits".to_owned());
    }
    if bits > data.len() * 8 {
        return Err(format!(
            "malformed OSDP card read: {bits} bits announced, {} sent",
            data.len() * 8
        ));
    }
    let read: Vec<bool> = (0..bits)
        .map(|i| (data[i / 8] >> (7 - i % 8)) & 1 == 1)
        .collect();
    Ok((hex(&read), CardBits(read)))
}

/// Bits (first most significant) as upper-case hex, padded with zero bits in front to whole
/// bytes.
pub(crate) fn hex(bits: &[bool]) -> String {
    let pad = (8 - bits.len() % 8) % 8;
    let padded: Vec<bool> = std::iter::repeat_n(false, pad)
        .chain(bits.iter().copied())
        .collect();
    padded
        .chunks(8)
        .map(|byte| {
            let value = byte.iter().fold(0u8, |acc, &b| (acc << 1) | u8::from(b));
            format!("{value:02X}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_card_data_reads_as_its_first_bits_padded_to_bytes() {
        assert_eq!(card(&[0x04, 0xA1, 0xB2, 0xC3], 32).unwrap().0, "04A1B2C3");
        // 26 bits, left-aligned in four bytes: the last six bits are not the card's.
        let (id, bits) = card(&[0xFF, 0xFF, 0xFF, 0xFF], 26).unwrap();
        assert_eq!(id, "03FFFFFF");
        assert_eq!(bits.0.len(), 26);
        assert_eq!(card(&[0b1010_0000], 3).unwrap().0, "05");
        assert!(
            card(&[0x01], 9)
                .unwrap_err()
                .contains("9 bits announced, 8 sent")
        );
        assert!(card(&[], 0).unwrap_err().contains("no bits"));
    }
}
