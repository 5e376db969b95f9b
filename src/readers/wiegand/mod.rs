//! Wiegand readers: decoding, independent of where the edges come from.
//!
//! [`frame`] turns falling edges on D0/D1 into frames, [`format`] reads a frame as a card, a
//! keypad key or a malformed frame (with what the wiring check shows), and [`keypad`] collects
//! a PIN typed after a card. All three are pure and driven by timestamps, so they are tested
//! with recorded edge timings; the GPIO transport (kernel edge events through `gpiocdev`) feeds
//! them and plugs into the reader loop like any other reader kind.

// The GPIO transport that drives these is the next step of the readers work; until then only
// the tests use them.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod format;
pub(crate) mod frame;
pub(crate) mod keypad;
