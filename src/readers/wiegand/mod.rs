//! The Wiegand reader kind (`kind = "wiegand"`): a reader on two GPIO lines, D0 and D1.
//!
//! [`frame`] turns falling edges into frames, [`format`] reads a frame as a card, a keypad
//! key or a malformed frame (with what the wiring check shows), and [`keypad`] collects a PIN
//! typed after a card. All three are pure and driven by timestamps, so they are tested with
//! recorded edge timings. [`gpio`] is the transport: kernel edge events through gpiocdev,
//! decoded where they arrive and handed to the reader loop like any other reader's reads.
//! Portier drives no LED or beeper line of a Wiegand reader: the answer is the door.

pub(crate) mod format;
pub(crate) mod frame;
pub(crate) mod gpio;
pub(crate) mod keypad;

use chrono::{DateTime, Utc};

use super::{ReaderKind, ReaderPayload};
use crate::access::Outcome;
use crate::config::ReaderConfig;

pub(crate) use gpio::{Gpio, Gpiocdev, WiegandLines};

/// Every Wiegand reader.
pub(crate) struct WiegandReaders;

impl ReaderKind for WiegandReaders {
    fn parse(&self, payload: &[u8], _now: DateTime<Utc>) -> ReaderPayload {
        super::device::parse(payload, "Wiegand frame")
    }

    fn answer(&self, reader: &ReaderConfig, outcome: &Outcome) {
        tracing::debug!(reader = %reader.id, granted = outcome.event.granted,
            opened = outcome.event.opened, "Wiegand read decided");
    }
}

#[cfg(test)]
mod tests;
