//! The reader seam: every card reader, whatever its transport, plugs into one loop.
//!
//! A reader kind (MQTT today; Wiegand, OSDP or USB next) does two things and nothing else:
//! its transport delivers each message as a [`Frame`] into the loop's channel, and it
//! implements [`ReaderKind`] — how its payloads are read and how an answer goes back to the
//! reader. The loop ([`run`]) owns what every kind shares: the repeat window (the same payload
//! on the same reader within 2 s gets the first answer again and opens nothing new), the
//! hand-off to parsing, the decision through the access engine, carrying it out, and the
//! watchdog's self-check between messages. So a new reader kind is one new file here plus its
//! configuration entry.
//!
//! Nothing here decides, touches a lock or writes an event: the engine does. A reader kind
//! never keeps state about decisions; the loop does.

mod hid;
mod mqtt;
mod payload;
mod repeat;
mod run;
mod selfcheck;
mod wiegand;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub(crate) use payload::{MAX_PAYLOAD, ReaderPayload, parse_payload};
pub(crate) use run::run;
pub(crate) use selfcheck::{SelfChecks, watchdog};

use tokio::sync::mpsc;

use crate::access::Outcome;
use crate::config::ReaderConfig;
use crate::mqtt::Connection;

/// One message from a reader, as its transport delivered it.
#[derive(Debug)]
pub(crate) struct Frame {
    /// The reader: its index in the loop's reader table.
    pub reader: usize,
    /// The message as received (parsed by the reader's kind).
    pub payload: Vec<u8>,
    /// A stored message replayed by the transport (an MQTT retained message): never acted on.
    pub replayed: bool,
    /// When the transport took it (the `receive` stage starts).
    pub received: std::time::Instant,
}

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
}

/// The transports reader kinds receive through (the broker connection, while it is not yet
/// polled; a serial port or a USB device would join it here).
pub(crate) struct Transports<'a> {
    /// The broker connection, when `[mqtt]` is configured.
    pub mqtt: Option<&'a mut Connection>,
}

/// The reader loop's table: every `[[reader]]`, in file order, attached to its transport so
/// that its messages arrive on `frames` under its index in the table. A reader whose transport is missing
/// is left out with an error (configuration validation prevents that).
pub(crate) fn table(
    configs: &[ReaderConfig],
    transports: Transports<'_>,
    frames: &mpsc::Sender<Frame>,
) -> Vec<Reader> {
    let Transports { mut mqtt } = transports;
    let mqtt_kind: Option<Arc<dyn ReaderKind>> = mqtt.as_ref().map(|connection| {
        Arc::new(mqtt::MqttReaders::new(&connection.link())) as Arc<dyn ReaderKind>
    });
    let mut table = Vec::with_capacity(configs.len());
    for config in configs {
        // Every reader is an MQTT reader today; a reader kind adds its arm here.
        let (Some(connection), Some(kind)) = (mqtt.as_mut(), &mqtt_kind) else {
            tracing::error!(reader = %config.id, "reader has no MQTT broker; it is not served");
            continue;
        };
        mqtt::MqttReaders::attach(table.len(), config, connection, frames);
        table.push(Reader {
            config: config.clone(),
            kind: Arc::clone(kind),
        });
    }
    table
}
