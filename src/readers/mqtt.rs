//! The MQTT reader kind: a reader publishes a credential on its topic (the text payload format
//! of `payload`) and hears its answer on `<topic>/result`.
//!
//! Its frames come from the shared broker connection (`crate::mqtt`), which hands over every
//! message on a reader topic; this file subscribes the topics, reads payloads and publishes
//! answers. Results are QoS 1 and never retained: a result is for the swipe that caused it, not
//! for a later subscriber.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rumqttc::{AsyncClient, QoS};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Frame, ReaderKind, ReaderPayload, parse_payload};
use crate::access::Outcome;
use crate::config::ReaderConfig;
use crate::mqtt::{Inbox, Message, MqttLink, Topics};

/// The answer published on `<reader topic>/result`: a view of the outcome's record.
#[derive(Debug, Serialize)]
struct ReaderResult<'a> {
    /// Whether access was granted.
    granted: bool,
    /// The reader's unit.
    unit: &'a str,
    /// Why.
    reason: &'a str,
    /// The decision's id (also in the event and the lock command).
    decision_id: &'a str,
    /// Whether the door opened: false when denied, when the unit has no lock, or when the lock
    /// failed, timed out or its outcome is unknown.
    opened: bool,
    /// Why a granted door did not open, in a word (`no_lock`, `unreachable`, `timeout`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    lock_error: Option<&'a str>,
}

/// Every MQTT reader: they share the broker connection's client.
pub(crate) struct MqttReaders {
    client: AsyncClient,
}

impl MqttReaders {
    /// The MQTT reader kind, answering through `link`'s client.
    pub(crate) fn new(link: &MqttLink) -> Self {
        Self {
            client: link.client().clone(),
        }
    }

    /// Delivers reader number `reader`'s topic to `frames` (subscribing it on the receiving
    /// connection if it is new there).
    pub(crate) fn attach(
        reader: usize,
        topic: &str,
        topics: &Topics,
        frames: &mpsc::Sender<Frame>,
    ) {
        let inbox = ReaderInbox {
            reader,
            frames: frames.clone(),
        };
        topics.add(topic, Arc::new(inbox));
    }
}

/// One reader topic's messages, as frames for the reader loop.
struct ReaderInbox {
    reader: usize,
    frames: mpsc::Sender<Frame>,
}

impl Inbox for ReaderInbox {
    fn deliver(&self, message: Message) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        let frame = Frame {
            reader: self.reader,
            payload: message.payload,
            replayed: message.retained,
            received: message.received,
            bits: None,
        };
        Box::pin(async move { self.frames.send(frame).await.is_ok() })
    }
}

/// The topic a reader's answers go to (`None` for a reader of another kind).
fn result_topic(reader: &ReaderConfig) -> Option<String> {
    reader.topic().map(|topic| format!("{topic}/result"))
}

impl ReaderKind for MqttReaders {
    fn parse(&self, payload: &[u8], now: DateTime<Utc>) -> ReaderPayload {
        parse_payload(payload, now)
    }

    fn answer(&self, reader: &ReaderConfig, outcome: &Outcome) {
        let event = &outcome.event;
        let result = ReaderResult {
            granted: event.granted,
            unit: &event.unit,
            reason: &event.reason,
            decision_id: &event.decision_id,
            opened: event.opened,
            lock_error: event.lock_error.as_deref(),
        };
        let payload = match serde_json::to_vec(&result) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a reader result");
                return;
            }
        };
        let Some(topic) = result_topic(reader) else {
            return;
        };
        if let Err(e) = self
            .client
            .try_publish(&topic, QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!(%topic, error = %e, "cannot publish the reader result");
        }
    }
}
