//! USB keyboard-wedge readers: decoding, independent of the input device.
//!
//! [`decode`] turns key events into card reads. It is pure and driven by timestamps, so it is
//! tested with recorded events; the evdev transport (the device grabbed, so keystrokes never
//! reach a console) feeds it and plugs into the reader loop like any other reader kind.

// The evdev transport that drives this is the next step of the readers work; until then only
// the tests use it.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod decode;
