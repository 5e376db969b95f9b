//! A USB reader's input device: opened by path or USB id, grabbed, read on tokio, reopened when
//! it fails or is unplugged.
//!
//! [`Keyboards`] opens devices: [`Evdev`] is the kernel's evdev interface; the tests open
//! recorded key events behind the same trait (no `/dev/uinput` here).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::decode::{Decoder, HidRead};
use crate::config::HidDevice;
use crate::readers::device::{Attached, BoxFuture, Device, End, sleep_until};

/// How long a read may pause between keys before it is dropped as partial. Readers type a
/// whole card within a few tens of milliseconds.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// Opens input devices.
pub(crate) trait Keyboards: Send + Sync + 'static {
    /// Opens and grabs `device` (blocking: called on a blocking thread).
    fn open(&self, device: &HidDevice) -> io::Result<Box<dyn KeySource>>;
}

/// An open input device's key events.
pub(crate) trait KeySource: Send {
    /// The next key event, as `(code, value)` (Linux input key code; 1 press, 0 release,
    /// 2 auto-repeat); an error when the device fails or is gone. Cancel-safe.
    fn next_key(&mut self) -> BoxFuture<'_, io::Result<(u16, i32)>>;
}

/// Input devices through the kernel's evdev interface.
pub(crate) struct Evdev;

impl Keyboards for Evdev {
    fn open(&self, device: &HidDevice) -> io::Result<Box<dyn KeySource>> {
        let mut opened = match device {
            HidDevice::Path(path) => evdev::Device::open(path)?,
            HidDevice::Usb { vendor, product } => evdev::enumerate()
                .map(|(_, candidate)| candidate)
                .find(|candidate| {
                    let id = candidate.input_id();
                    id.vendor() == *vendor
                        && id.product() == *product
                        // A reader may show more than one input device (a keyboard and a
                        // consumer-control one): take the one that types ENTER.
                        && candidate
                            .supported_keys()
                            .is_some_and(|keys| keys.contains(evdev::KeyCode::KEY_ENTER))
                })
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        "no keyboard input device with this USB id is plugged in",
                    )
                })?,
        };
        // Exclusive: the card's keystrokes reach no console, login prompt or other program.
        opened.grab()?;
        Ok(Box::new(EvdevKeys(opened.into_event_stream()?)))
    }
}

/// An evdev device's events, keys only.
struct EvdevKeys(evdev::EventStream);

impl KeySource for EvdevKeys {
    fn next_key(&mut self) -> BoxFuture<'_, io::Result<(u16, i32)>> {
        Box::pin(async move {
            loop {
                let event = self.0.next_event().await?;
                if event.event_type() == evdev::EventType::KEY {
                    return Ok((event.code(), event.value()));
                }
            }
        })
    }
}

/// A USB reader's device, as the device task serves it.
pub(crate) struct UsbReader {
    /// Which device.
    pub device: HidDevice,
    /// How it is opened.
    pub keyboards: Arc<dyn Keyboards>,
}

impl Device for UsbReader {
    type Open = Box<dyn KeySource>;
    const WHAT: &'static str = "USB reader";

    fn open(&self) -> io::Result<Self::Open> {
        self.keyboards.open(&self.device)
    }

    fn read<'a>(&'a self, open: Self::Open, attached: &'a Attached) -> BoxFuture<'a, End> {
        Box::pin(read(open, attached))
    }

    fn describe(&self) -> String {
        self.device.to_string()
    }
}

/// Decodes `source`'s keys into frames until it fails or the loop is gone.
async fn read(mut source: Box<dyn KeySource>, attached: &Attached) -> End {
    let start = Instant::now();
    let mut decoder = Decoder::new(READ_TIMEOUT);
    loop {
        let deadline = decoder.deadline().map(|after| start + after);
        let key = tokio::select! {
            key = source.next_key() => key,
            () = sleep_until(deadline) => {
                if let Some(chars) = decoder.expire(start.elapsed()) {
                    tracing::warn!(reader = %attached.id, chars,
                        "USB reader input without ENTER dropped as partial");
                }
                continue;
            }
        };
        let (code, value) = match key {
            Ok(key) => key,
            Err(e) => return End::Device(e),
        };
        let Some(read) = decoder.key(code, value, start.elapsed()) else {
            continue;
        };
        let read = match read {
            HidRead::Card(card) => Ok(card),
            HidRead::Malformed(why) => Err(why),
        };
        if !attached.deliver(read, None).await {
            return End::LoopGone;
        }
    }
}
