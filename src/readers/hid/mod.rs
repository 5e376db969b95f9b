//! The USB reader kind (`kind = "hid"`): keyboard-wedge readers that type the card and ENTER.
//!
//! [`decode`] turns key events into card reads; it is pure and driven by timestamps, so it is
//! tested with recorded events. [`device`] opens the input device through evdev, grabs it so
//! keystrokes never reach a console or a login prompt, feeds the decoder and hands each read to
//! the reader loop as a [`Frame`](super::Frame); when the device fails or is unplugged it opens
//! it again by itself. Such a reader has no light or beeper Portier can drive: the answer is
//! the door.

pub(crate) mod decode;
pub(crate) mod device;

use chrono::{DateTime, Utc};

use super::{ReaderKind, ReaderPayload};
use crate::access::Outcome;
use crate::config::ReaderConfig;

pub(crate) use device::{Evdev, Keyboards};

/// The first byte of a frame's payload: a card read follows.
const CARD: u8 = b'C';
/// The first byte of a frame's payload: why the read was malformed follows.
const MALFORMED: u8 = b'M';

/// A finished read as a frame's payload.
fn payload(read: decode::HidRead) -> Vec<u8> {
    let (tag, text) = match read {
        decode::HidRead::Card(card) => (CARD, card),
        decode::HidRead::Malformed(why) => (MALFORMED, why),
    };
    let mut payload = Vec::with_capacity(1 + text.len());
    payload.push(tag);
    payload.extend_from_slice(text.as_bytes());
    payload
}

/// Every USB reader.
pub(crate) struct HidReaders;

impl ReaderKind for HidReaders {
    fn parse(&self, payload: &[u8], _now: DateTime<Utc>) -> ReaderPayload {
        match payload.split_first() {
            Some((&CARD, card)) => match std::str::from_utf8(card) {
                Ok(card) => ReaderPayload::Card(card.to_owned()),
                Err(_) => ReaderPayload::Malformed("malformed USB reader input: not text".into()),
            },
            Some((&MALFORMED, why)) => {
                ReaderPayload::Malformed(String::from_utf8_lossy(why).into_owned())
            }
            _ => ReaderPayload::Malformed("malformed USB reader input".into()),
        }
    }

    fn answer(&self, reader: &ReaderConfig, outcome: &Outcome) {
        // Nothing to send back: a keyboard-wedge reader only types.
        tracing::debug!(reader = %reader.id, granted = outcome.event.granted,
            opened = outcome.event.opened, "USB reader read decided");
    }
}

#[cfg(test)]
mod tests;
