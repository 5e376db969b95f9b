//! What the reader kinds with a device of their own (USB, Wiegand) share: a task per reader
//! that opens the device, reads it until it fails, and opens it again; and how a read decoded
//! at the device travels to the reader loop.
//!
//! The decoding is the kind's; the retry, the online state and the frame format are here, so
//! every such kind recovers from an unplugged or busy device the same way.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{CardBits, Frame, ReaderPayload, ReaderStatus};

/// How often a device that cannot be opened (unplugged, busy, no permission) is tried again.
pub(crate) const REOPEN: Duration = Duration::from_secs(2);

/// A boxed future that may be sent across threads.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The reader a device task serves.
#[derive(Clone)]
pub(crate) struct Attached {
    /// Its number in the reader table.
    pub reader: usize,
    /// Its id, for the log.
    pub id: String,
    /// Its status: online while the device is open.
    pub status: Arc<Mutex<ReaderStatus>>,
    /// Where its reads go: the reader loop.
    pub frames: mpsc::Sender<Frame>,
}

impl Attached {
    /// Notes whether the device is open, and if not, why.
    fn online(&self, problem: Result<(), String>) {
        let mut status = self.status();
        status.online = Some(problem.is_ok());
        status.problem = problem.err();
    }

    /// The reader's status, to note what the wiring check shows.
    pub(crate) fn status(&self) -> std::sync::MutexGuard<'_, ReaderStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a finished read to the reader loop; false when the loop is gone (shutdown).
    pub(crate) async fn deliver(
        &self,
        read: Result<String, String>,
        bits: Option<CardBits>,
    ) -> bool {
        self.frames.send(self.frame(read, bits)).await.is_ok()
    }

    /// Hands a finished read to the reader loop without waiting (from a thread that must keep
    /// its timing); false when the loop is gone or not taking frames.
    pub(crate) fn try_deliver(&self, read: Result<String, String>, bits: Option<CardBits>) -> bool {
        self.frames.try_send(self.frame(read, bits)).is_ok()
    }

    fn frame(&self, read: Result<String, String>, bits: Option<CardBits>) -> Frame {
        Frame {
            reader: self.reader,
            payload: payload(read),
            replayed: false,
            received: crate::clock::instant(),
            bits,
        }
    }
}

/// Why reading a device stopped.
pub(crate) enum End {
    /// The reader loop stopped taking frames (shutdown).
    LoopGone,
    /// The device failed or was unplugged.
    Device(io::Error),
}

/// A kind's device, as a device task sees it.
pub(crate) trait Device: Send + Sync + 'static {
    /// The open device.
    type Open: Send + 'static;
    /// What the log calls it ("USB reader").
    const WHAT: &'static str;
    /// Opens (and claims) the device: blocking, called on a blocking thread.
    fn open(&self) -> io::Result<Self::Open>;
    /// Reads the open device, delivering its reads, until it fails or the loop is gone.
    fn read<'a>(&'a self, open: Self::Open, attached: &'a Attached) -> BoxFuture<'a, End>;
    /// The device as the log names it.
    fn describe(&self) -> String;
}

/// Serves a reader until the reader loop is gone or the task is aborted (a reload took the
/// reader out): opens the device, reads it, and when it fails or cannot be opened, tries again
/// every [`REOPEN`].
pub(crate) async fn serve<D: Device>(attached: Attached, device: Arc<D>) {
    let id = attached.id.clone();
    let what = D::WHAT;
    let name = device.describe();
    let mut failing = false;
    loop {
        let opening = {
            let device = Arc::clone(&device);
            tokio::task::spawn_blocking(move || device.open()).await
        };
        match opening {
            Ok(Ok(open)) => {
                tracing::info!(reader = %id, device = %name, "{what} opened");
                failing = false;
                attached.online(Ok(()));
                let end = device.read(open, &attached).await;
                match end {
                    End::LoopGone => return,
                    End::Device(e) => {
                        tracing::warn!(reader = %id, device = %name, error = %e,
                            "{what} lost; opening it again");
                        attached.online(Err(format!("{name} failed: {e}")));
                    }
                }
            }
            Ok(Err(e)) => {
                attached.online(Err(format!("cannot open {name}: {e}")));
                // Once per outage, not every two seconds.
                if !failing {
                    tracing::warn!(reader = %id, device = %name, error = %e,
                        "cannot open the {what}; trying again every 2 s");
                    failing = true;
                }
            }
            Err(e) => tracing::error!(reader = %id, error = %e, "opening the {what} failed"),
        }
        if attached.frames.is_closed() {
            return;
        }
        tokio::time::sleep(REOPEN).await;
    }
}

/// The first byte of a frame's payload: a card read follows.
const CARD: u8 = b'C';
/// The first byte of a frame's payload: why the read was malformed follows.
const MALFORMED: u8 = b'M';

/// A read decoded at the device (the card, or why it is malformed) as a frame's payload.
fn payload(read: Result<String, String>) -> Vec<u8> {
    let (tag, text) = match read {
        Ok(card) => (CARD, card),
        Err(why) => (MALFORMED, why),
    };
    let mut payload = Vec::with_capacity(1 + text.len());
    payload.push(tag);
    payload.extend_from_slice(text.as_bytes());
    payload
}

/// A payload made by [`Attached::deliver`], read back; `what` names the kind's input in the
/// reason when the bytes are not such a payload.
pub(crate) fn parse(payload: &[u8], what: &str) -> ReaderPayload {
    match payload.split_first() {
        Some((&CARD, card)) => match std::str::from_utf8(card) {
            Ok(card) => ReaderPayload::Card(card.to_owned()),
            Err(_) => ReaderPayload::Malformed(format!("malformed {what}: not text")),
        },
        Some((&MALFORMED, why)) => {
            ReaderPayload::Malformed(String::from_utf8_lossy(why).into_owned())
        }
        _ => ReaderPayload::Malformed(format!("malformed {what}")),
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
