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

pub(crate) use device::{Evdev, Keyboards, UsbReader};

/// Every USB reader.
pub(crate) struct HidReaders;

impl ReaderKind for HidReaders {
    fn parse(&self, payload: &[u8], _now: DateTime<Utc>) -> ReaderPayload {
        super::device::parse(payload, "USB reader input")
    }

    fn answer(&self, reader: &ReaderConfig, outcome: &Outcome) {
        // Nothing to send back: a keyboard-wedge reader only types.
        tracing::debug!(reader = %reader.id, granted = outcome.event.granted,
            opened = outcome.event.opened, "USB reader read decided");
    }
}

#[cfg(test)]
mod tests;
