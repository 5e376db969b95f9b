//! A Wiegand reader's two lines on the GPIO chip: kernel edge events, never polling.
//!
//! [`Gpio`] opens the lines: [`Gpiocdev`] asks the kernel's GPIO character device for
//! falling-edge events on D0 and D1, found by line name (so a Raspberry Pi 5, whose header is
//! on another chip than a Pi 4's, needs no other configuration). Each event carries the
//! kernel's monotonic timestamp of the edge, so frames are cut by when the bits happened, not
//! by when this task got to them. The tests play recorded edge timings behind the same trait
//! (no `/dev/gpiochip*` or gpio-sim here).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::format::{self, Read};
use super::frame::{Assembler, Line, MAX_BITS, RawFrame};
use super::keypad::{Entry, Typed};
use crate::config::WiegandWiring;
use crate::readers::CardBits;
use crate::readers::device::{Attached, BoxFuture, Device, End, sleep_until};

/// Opens Wiegand readers' lines.
pub(crate) trait Gpio: Send + Sync + 'static {
    /// Requests `wiring`'s D0 and D1 for falling-edge events (blocking: called on a blocking
    /// thread).
    fn open(&self, wiring: &WiegandWiring) -> io::Result<Box<dyn EdgeSource>>;
}

/// The falling edges of an open pair of lines.
pub(crate) trait EdgeSource: Send {
    /// The next falling edge: its line and when it happened (a monotonic timestamp). An error
    /// when the lines fail. Cancel-safe.
    fn next_edge(&mut self) -> BoxFuture<'_, io::Result<(Line, Duration)>>;
}

/// The kernel's GPIO character device (`/dev/gpiochipN`), through gpiocdev.
pub(crate) struct Gpiocdev;

impl Gpio for Gpiocdev {
    fn open(&self, wiring: &WiegandWiring) -> io::Result<Box<dyn EdgeSource>> {
        let names = [wiring.d0.as_str(), wiring.d1.as_str()];
        let (chip, d0, d1) = match &wiring.chip {
            None => {
                let found = gpiocdev::find_named_lines(&names, true).map_err(gpio_error)?;
                let line = |name: &str| {
                    found.get(name).cloned().ok_or_else(|| {
                        io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("no GPIO line is named \"{name}\" (gpioinfo lists them)"),
                        )
                    })
                };
                let (d0, d1) = (line(&wiring.d0)?, line(&wiring.d1)?);
                if d0.chip != d1.chip {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "d0 and d1 are on different GPIO chips; wire both to one chip",
                    ));
                }
                (d0.chip, d0.info.offset, d1.info.offset)
            }
            Some(chip) => {
                let chip = if chip.starts_with('/') {
                    gpiocdev::Chip::from_path(chip)
                } else {
                    gpiocdev::Chip::from_name(chip)
                }
                .map_err(gpio_error)?;
                let offset = |name: &str| {
                    chip.find_line_info(name)
                        .map(|info| info.offset)
                        .ok_or_else(|| {
                            io::Error::new(
                                io::ErrorKind::NotFound,
                                format!("{} has no line named \"{name}\"", chip.name()),
                            )
                        })
                };
                (
                    chip.path().to_owned(),
                    offset(&wiring.d0)?,
                    offset(&wiring.d1)?,
                )
            }
        };
        let request = gpiocdev::Request::builder()
            .on_chip(chip)
            .with_consumer("portier-wiegand")
            .with_lines(&[d0, d1])
            .as_input()
            // Reader outputs are open collector on many models: the pull-up keeps an idle line
            // high where the board allows it (a level shifter's own pull-ups do otherwise).
            .with_bias(gpiocdev::line::Bias::PullUp)
            .with_edge_detection(gpiocdev::line::EdgeDetection::FallingEdge)
            .with_event_clock(gpiocdev::line::EventClock::Monotonic)
            // Room for several frames, should this task fall behind.
            .with_kernel_event_buffer_size(256)
            .request()
            .map_err(gpio_error)?;
        Ok(Box::new(GpioEdges {
            request: gpiocdev::tokio::AsyncRequest::new(request),
            d0,
        }))
    }
}

/// A gpiocdev error as an I/O error, keeping its text.
fn gpio_error(e: gpiocdev::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Falling edges from a gpiocdev line request.
struct GpioEdges {
    request: gpiocdev::tokio::AsyncRequest,
    d0: gpiocdev::line::Offset,
}

impl EdgeSource for GpioEdges {
    fn next_edge(&mut self) -> BoxFuture<'_, io::Result<(Line, Duration)>> {
        Box::pin(async move {
            let event = self.request.read_edge_event().await.map_err(gpio_error)?;
            let line = if event.offset == self.d0 {
                Line::D0
            } else {
                Line::D1
            };
            Ok((line, Duration::from_nanos(event.timestamp_ns)))
        })
    }
}

/// A Wiegand reader's lines, as the device task serves them.
pub(crate) struct WiegandLines {
    /// The wiring and how frames are read.
    pub wiring: WiegandWiring,
    /// How the lines are opened.
    pub gpio: Arc<dyn Gpio>,
}

impl Device for WiegandLines {
    type Open = Box<dyn EdgeSource>;
    const WHAT: &'static str = "Wiegand reader";

    fn open(&self) -> io::Result<Self::Open> {
        self.gpio.open(&self.wiring)
    }

    fn read<'a>(&'a self, open: Self::Open, attached: &'a Attached) -> BoxFuture<'a, End> {
        Box::pin(read(&self.wiring, open, attached))
    }

    fn describe(&self) -> String {
        let chip = self.wiring.chip.as_deref().unwrap_or("any chip");
        format!("D0 {}, D1 {} ({chip})", self.wiring.d0, self.wiring.d1)
    }
}

/// Cuts `edges` into frames and reads them until the lines fail or the loop is gone.
async fn read(wiring: &WiegandWiring, mut edges: Box<dyn EdgeSource>, attached: &Attached) -> End {
    let mut assembler = Assembler::new(wiring.frame_gap);
    let mut entry = Entry::new(wiring.pin_timeout);
    // The kernel's time of the last edge and when it arrived here: a deadline in the
    // kernel's time is this much later than that arrival.
    let mut anchor: Option<(Duration, Instant)> = None;
    loop {
        let deadline = [assembler.deadline(), entry.deadline()]
            .into_iter()
            .flatten()
            .min();
        let wake = deadline
            .zip(anchor)
            .map(|(deadline, (at, arrived))| arrived + deadline.saturating_sub(at));
        let finished = tokio::select! {
            edge = edges.next_edge() => match edge {
                Ok((line, at)) => {
                    anchor = Some((at, Instant::now()));
                    assembler.edge(line, at).map(|frame| (frame, at))
                }
                Err(e) => return End::Device(e),
            },
            () = sleep_until(wake) => {
                let Some((at, arrived)) = anchor else { continue };
                let now = at + arrived.elapsed();
                if entry.expire(now) {
                    tracing::debug!(reader = %attached.id, "keypad entry timed out");
                }
                assembler.idle(now).map(|frame| (frame, now))
            }
        };
        let Some((frame, at)) = finished else {
            continue;
        };
        if !take(wiring, &frame, at, &mut entry, attached).await {
            return End::LoopGone;
        }
    }
}

/// Reads one finished frame: notes what the wiring check shows, hands a card or a malformed
/// frame to the loop, and keeps a key for the entry under way. False when the loop is gone.
async fn take(
    wiring: &WiegandWiring,
    frame: &RawFrame,
    at: Duration,
    entry: &mut Entry,
    attached: &Attached,
) -> bool {
    let (read, seen) = format::read(frame, wiring.format, wiring.credential);
    {
        let mut status = attached.status();
        status.bits = Some(seen.bits);
        status.format = seen.format;
        status.parity_ok = seen.parity_ok;
        status.last_frame_at = Some(crate::clock::now());
    }
    let bits = (!frame.noisy && frame.count <= MAX_BITS)
        .then(|| CardBits((0..frame.count).map(|i| frame.bit(i)).collect()));
    match read {
        Read::Card(card) => {
            entry.card(at);
            attached.deliver(Ok(card), bits).await
        }
        Read::Malformed(why) => attached.deliver(Err(why), bits).await,
        Read::Key(key) => {
            match entry.key(key, at) {
                Typed::Done(pin) => tracing::info!(reader = %attached.id, digits = pin.len(),
                    "keypad entry after a card; recorded, not checked (Cobot has no PINs)"),
                Typed::NoCard => tracing::debug!(reader = %attached.id,
                    "keypad key with no card before it; dropped"),
                Typed::TooLong => tracing::warn!(reader = %attached.id,
                    "keypad entry longer than any PIN; dropped"),
                Typed::Pending | Typed::Cleared => {}
            }
            true
        }
    }
}
