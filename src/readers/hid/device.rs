//! A USB reader's input device: opened by path or USB id, grabbed, read on tokio, reopened when
//! it fails or is unplugged.
//!
//! [`Keyboards`] opens devices: [`Evdev`] is the kernel's evdev interface; the tests open
//! recorded key events behind the same trait (no `/dev/uinput` here).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::decode::Decoder;
use crate::config::HidDevice;
use crate::readers::{Frame, ReaderStatus};

/// How long a read may pause between keys before it is dropped as partial. Readers type a
/// whole card within a few tens of milliseconds.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a device that cannot be opened (unplugged, no permission) is tried again.
pub(crate) const REOPEN: Duration = Duration::from_secs(2);

/// A boxed future that may be sent across threads.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

/// The reader a device task serves.
pub(crate) struct Attached {
    /// Its number in the reader table.
    pub reader: usize,
    /// Its id, for the log.
    pub id: String,
    /// Its status: online while the device is open.
    pub status: Arc<Mutex<ReaderStatus>>,
}

impl Attached {
    fn online(&self, online: bool) {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .online = Some(online);
    }
}

/// Serves a USB reader until the reader loop is gone or the task is aborted (a reload took the
/// reader out): opens `device`, hands each read to `frames`, and when the device fails or
/// cannot be opened, tries again every [`REOPEN`].
pub(crate) async fn serve(
    attached: Attached,
    device: HidDevice,
    keyboards: Arc<dyn Keyboards>,
    frames: mpsc::Sender<Frame>,
) {
    let Attached { reader, ref id, .. } = attached;
    attached.online(false);
    let mut failing = false;
    loop {
        let opening = {
            let keyboards = Arc::clone(&keyboards);
            let device = device.clone();
            tokio::task::spawn_blocking(move || keyboards.open(&device)).await
        };
        match opening {
            Ok(Ok(source)) => {
                tracing::info!(reader = %id, %device, "USB reader opened");
                failing = false;
                attached.online(true);
                let end = read(reader, id, source, &frames).await;
                attached.online(false);
                match end {
                    End::LoopGone => return,
                    End::Device(e) => tracing::warn!(reader = %id, %device, error = %e,
                        "USB reader lost (unplugged?); opening it again"),
                }
            }
            Ok(Err(e)) => {
                // Once per outage, not every two seconds.
                if !failing {
                    tracing::warn!(reader = %id, %device, error = %e,
                        "cannot open the USB reader; trying again every 2 s");
                    failing = true;
                }
            }
            Err(e) => tracing::error!(reader = %id, error = %e, "opening the USB reader failed"),
        }
        if frames.is_closed() {
            return;
        }
        tokio::time::sleep(REOPEN).await;
    }
}

/// Why reading a device stopped.
enum End {
    /// The reader loop stopped taking frames (shutdown).
    LoopGone,
    /// The device failed or was unplugged.
    Device(io::Error),
}

/// Decodes `source`'s keys into frames until it fails or the loop is gone.
async fn read(
    reader: usize,
    id: &str,
    mut source: Box<dyn KeySource>,
    frames: &mpsc::Sender<Frame>,
) -> End {
    let start = Instant::now();
    let mut decoder = Decoder::new(READ_TIMEOUT);
    loop {
        let deadline = decoder.deadline().map(|after| start + after);
        let key = tokio::select! {
            key = source.next_key() => key,
            () = sleep_until(deadline) => {
                if let Some(chars) = decoder.expire(start.elapsed()) {
                    tracing::warn!(reader = %id, chars,
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
        let frame = Frame {
            reader,
            payload: super::payload(read),
            replayed: false,
            received: crate::clock::instant(),
        };
        if frames.send(frame).await.is_err() {
            return End::LoopGone;
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
