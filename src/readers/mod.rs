//! The reader seam: every card reader, whatever its transport, plugs into one loop.
//!
//! A reader kind (MQTT, USB and Wiegand today; OSDP next) does two things and nothing else:
//! its transport delivers each message as a [`Frame`] into the loop's channel, and it
//! implements [`ReaderKind`] — how its payloads are read and how an answer goes back to the
//! reader. The loop ([`run`]) owns what every kind shares: the repeat window (the same payload
//! on the same reader within 2 s gets the first answer again and opens nothing new), the
//! hand-off to parsing, the decision through the access engine, carrying it out, and the
//! watchdog's self-check between messages. So a new reader kind is one new file here plus its
//! configuration entry.
//!
//! Nothing here decides, touches a lock or writes an event: the engine does. A reader kind
//! never keeps state about decisions; the loop does. An enrolment reader's reads (a reader
//! with no unit) go to [`enrol`] instead of the engine: they open nothing.

pub(crate) mod device;
pub(crate) mod enrol;
pub(crate) mod hid;
mod mqtt;
pub(crate) mod osdp;
mod payload;
mod repeat;
mod run;
mod selfcheck;
#[cfg(test)]
mod testing;
pub(crate) mod wiegand;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

pub(crate) use payload::{MAX_PAYLOAD, ReaderPayload, parse_payload};
pub(crate) use run::run;
pub(crate) use selfcheck::{SelfChecks, watchdog};

use tokio::sync::{mpsc, watch};

use crate::access::Outcome;
use crate::config::{ReaderConfig, ReaderSource};
use crate::mqtt::{Connection, Topics};

/// One message from a reader, as its transport delivered it.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The reader: its number in the reader table.
    pub reader: usize,
    /// The message as received (parsed by the reader's kind).
    pub payload: Vec<u8>,
    /// A stored message replayed by the transport (an MQTT retained message): never acted on.
    pub replayed: bool,
    /// When the transport took it (the `receive` stage starts).
    pub received: std::time::Instant,
    /// The card's bits as read, where the transport has them (Wiegand): for enrolment.
    pub bits: Option<CardBits>,
}

/// A card's bits in the order the reader sent them, parity bits included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CardBits(pub Vec<bool>);

/// A kind of reader: how its messages read and how its answers go back.
pub(crate) trait ReaderKind: Send + Sync {
    /// Interprets a message received at `now`. Never panics, whatever the bytes.
    fn parse(&self, payload: &[u8], now: DateTime<Utc>) -> ReaderPayload;

    /// Sends the answer to a request back to the reader (a result message, a beep, a LED).
    /// Must not wait for the transport: the loop calls it from the request's own task.
    fn answer(&self, reader: &ReaderConfig, outcome: &Outcome);
}

/// A configured reader and the kind that serves it.
#[derive(Clone)]
pub(crate) struct Reader {
    /// Its `[[reader]]` entry.
    pub config: ReaderConfig,
    /// Its kind.
    pub kind: Arc<dyn ReaderKind>,
    /// What `/v1/status` shows of it.
    pub status: Arc<Mutex<ReaderStatus>>,
}

/// A reader as `/v1/status` shows it, for wiring checks: never card data.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct ReaderStatus {
    /// `mqtt`, `hid`, `wiegand` or `osdp`.
    pub kind: &'static str,
    /// The unit it opens; none for an enrolment reader.
    pub unit: Option<String>,
    /// An enrolment reader: read only by `portier enrol`.
    pub enrol: bool,
    /// Whether its device is open (USB, Wiegand and OSDP readers); MQTT readers are given
    /// their broker connection's state where the daemon shows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<bool>,
    /// Whether the secure channel is up (OSDP readers with a key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_channel: Option<bool>,
    /// Why it is offline (the device's error), while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// When its last message arrived, whatever it was.
    pub last_frame_at: Option<DateTime<Utc>>,
    /// How many bits the last frame had (Wiegand).
    pub bits: Option<u32>,
    /// The format the last frame was read as (Wiegand: `H10301`, `keypad 4-bit`, `raw`, …).
    pub format: Option<&'static str>,
    /// Whether the last frame's parity held (None where there was none to check).
    pub parity_ok: Option<bool>,
}

impl Reader {
    /// Notes a message from the reader at `now`.
    pub(crate) fn seen(&self, now: DateTime<Utc>) {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last_frame_at = Some(now);
    }
}

/// The readers in service as `/v1/status` shows them, by id.
pub(crate) fn statuses(table: &Table) -> BTreeMap<String, ReaderStatus> {
    table
        .values()
        .map(|r| {
            let status = r
                .status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            (r.config.id.clone(), status)
        })
        .collect()
}

/// The readers in service, by number. A number is never used again: a frame still on its way
/// from a reader that a reload removed or changed finds no reader and is dropped, instead of
/// being taken for another.
pub(crate) type Table = BTreeMap<usize, Reader>;

/// The transports reader kinds receive through (the broker connection, while it is not yet
/// polled; the input devices; serial ports would join them here).
pub(crate) struct Transports<'a> {
    /// The broker connection, when `[mqtt]` is configured.
    pub mqtt: Option<&'a Connection>,
    /// Opens USB readers' input devices ([`hid::Evdev`] in the daemon).
    pub keyboards: Arc<dyn hid::Keyboards>,
    /// Opens Wiegand readers' lines ([`wiegand::Gpiocdev`] in the daemon).
    pub gpio: Arc<dyn wiegand::Gpio>,
}

/// The readers in service, attached to their transports: built at start, changed by a reload.
/// The reader loop reads the table from the channel given to [`Readers::new`].
pub(crate) struct Readers {
    table: watch::Sender<Arc<Table>>,
    next: AtomicUsize,
    frames: mpsc::Sender<Frame>,
    mqtt: Option<(Topics, Arc<dyn ReaderKind>)>,
    keyboards: Arc<dyn hid::Keyboards>,
    hid: Arc<dyn ReaderKind>,
    gpio: Arc<dyn wiegand::Gpio>,
    wiegand: Arc<dyn ReaderKind>,
    /// The device tasks of USB and Wiegand readers in service, by number.
    devices: Mutex<HashMap<usize, tokio::task::AbortHandle>>,
}

impl Readers {
    /// Puts every reader of `configs` in service, its messages arriving on `frames` under its
    /// number; the readers in service are published on `table` (for the reader loop and
    /// `/v1/status`).
    pub(crate) fn new(
        configs: &[ReaderConfig],
        transports: Transports<'_>,
        frames: mpsc::Sender<Frame>,
        table: watch::Sender<Arc<Table>>,
    ) -> Readers {
        let Transports {
            mqtt,
            keyboards,
            gpio,
        } = transports;
        let mqtt = mqtt.map(|connection| {
            let kind: Arc<dyn ReaderKind> = Arc::new(mqtt::MqttReaders::new(&connection.link()));
            (connection.topics(), kind)
        });
        let readers = Readers {
            table,
            next: AtomicUsize::new(0),
            frames,
            mqtt,
            keyboards,
            hid: Arc::new(hid::HidReaders),
            gpio,
            wiegand: Arc::new(wiegand::WiegandReaders),
            devices: Mutex::new(HashMap::new()),
        };
        readers.apply(configs);
        readers
    }

    /// Makes `configs` the readers in service: a reader whose entry is unchanged keeps its
    /// number and its transport (subscription, open device); a new or changed one is attached
    /// under a new number; a removed one stops being served at once (its topic unsubscribed
    /// unless another reader uses it, its device closed).
    pub(crate) fn apply(&self, configs: &[ReaderConfig]) {
        let old = Arc::clone(&self.table.borrow());
        // Devices of readers going away are let go first, so that a changed USB reader's new
        // task finds its device free to grab.
        let mut devices = self.devices.lock().unwrap_or_else(PoisonError::into_inner);
        for (gone, _) in old.iter().filter(|(_, r)| !configs.contains(&r.config)) {
            if let Some(task) = devices.remove(gone) {
                task.abort();
            }
        }
        drop(devices);
        let mut table = Table::new();
        for config in configs {
            if let Some((&number, reader)) = old.iter().find(|(_, r)| r.config == *config) {
                table.insert(number, reader.clone());
                continue;
            }
            let number = self.next.fetch_add(1, Ordering::Relaxed);
            let status = Arc::new(Mutex::new(ReaderStatus {
                kind: config.kind(),
                unit: config.unit.clone(),
                enrol: config.unit.is_none(),
                ..ReaderStatus::default()
            }));
            let Some(kind) = self.attach(number, config, &status) else {
                continue;
            };
            table.insert(
                number,
                Reader {
                    config: config.clone(),
                    kind,
                    status,
                },
            );
        }
        if let Some((topics, _)) = &self.mqtt {
            for topic in old.values().filter_map(|r| r.config.topic()) {
                if !table.values().any(|n| n.config.topic() == Some(topic)) {
                    topics.remove(topic);
                }
            }
        }
        for gone in old.keys().filter(|n| !table.contains_key(n)) {
            tracing::info!(reader = %old[gone].config.id, "reader taken out of service");
        }
        self.table.send_replace(Arc::new(table));
    }

    /// Starts delivering reader `number`'s reads to the loop; its kind, or `None` (logged) when
    /// its transport is missing.
    fn attach(
        &self,
        number: usize,
        config: &ReaderConfig,
        status: &Arc<Mutex<ReaderStatus>>,
    ) -> Option<Arc<dyn ReaderKind>> {
        match &config.source {
            ReaderSource::Mqtt { topic } => {
                let Some((topics, kind)) = &self.mqtt else {
                    tracing::error!(reader = %config.id, "reader has no MQTT broker; it is not served");
                    return None;
                };
                mqtt::MqttReaders::attach(number, topic, topics, &self.frames);
                Some(Arc::clone(kind))
            }
            ReaderSource::Hid(device) => {
                let device = hid::UsbReader {
                    device: device.clone(),
                    keyboards: Arc::clone(&self.keyboards),
                };
                self.serve(number, config, status, device);
                Some(Arc::clone(&self.hid))
            }
            ReaderSource::Wiegand(wiring) => {
                let lines = wiegand::WiegandLines {
                    wiring: wiring.clone(),
                    gpio: Arc::clone(&self.gpio),
                };
                self.serve(number, config, status, lines);
                Some(Arc::clone(&self.wiegand))
            }
            ReaderSource::Osdp(link) => {
                let (feedback, answers) = std::sync::mpsc::channel();
                let task = tokio::spawn(osdp::panel::serve(
                    self.attached(number, config, status),
                    link.clone(),
                    answers,
                ));
                self.keep(number, &task);
                Some(Arc::new(osdp::OsdpReader::new(feedback)))
            }
        }
    }

    /// Starts the task that serves reader `number`'s own device.
    fn serve<D: device::Device>(
        &self,
        number: usize,
        config: &ReaderConfig,
        status: &Arc<Mutex<ReaderStatus>>,
        device: D,
    ) {
        let attached = self.attached(number, config, status);
        let task = tokio::spawn(device::serve(attached, Arc::new(device)));
        self.keep(number, &task);
    }

    /// Reader `number` as its device task serves it.
    fn attached(
        &self,
        number: usize,
        config: &ReaderConfig,
        status: &Arc<Mutex<ReaderStatus>>,
    ) -> device::Attached {
        device::Attached {
            reader: number,
            id: config.id.clone(),
            status: Arc::clone(status),
            frames: self.frames.clone(),
        }
    }

    /// Keeps reader `number`'s device task, to end it when the reader goes.
    fn keep(&self, number: usize, task: &tokio::task::JoinHandle<()>) {
        self.devices
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(number, task.abort_handle());
    }
}
