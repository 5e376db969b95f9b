//! The task that polls the broker connection.
//!
//! rumqttc's event loop must be polled all the time, or nothing is sent or received; this task
//! does only that. After every poll it tells the [`MqttLink`] first (so an unlock is never
//! queued for a broker that is gone), then subscribes the registered topics after a CONNACK
//! (the session is clean) and hands a message on a registered topic to its [`Inbox`].
//! Connection errors are retried with jittered exponential backoff capped at 30 s.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{Event, EventLoop, Packet, QoS};
use tokio::sync::watch;

use super::MqttLink;

const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// A message on a subscribed topic.
#[derive(Debug)]
pub(crate) struct Message {
    /// The payload as the broker delivered it.
    pub payload: Vec<u8>,
    /// A retained message the broker replayed on subscribing.
    pub retained: bool,
    /// When the connection task took it from the broker.
    pub received: std::time::Instant,
}

/// Where the messages of one subscribed topic go. Delivery may wait (a full queue slows the
/// connection down rather than losing a message); it returns false once the receiver is gone.
pub(crate) trait Inbox: Send + Sync {
    /// Takes one message.
    fn deliver(&self, message: Message) -> Pin<Box<dyn Future<Output = bool> + Send + '_>>;
}

/// The broker connection, until [`Connection::run`] polls it.
pub struct Connection {
    eventloop: EventLoop,
    link: MqttLink,
    inboxes: HashMap<String, Arc<dyn Inbox>>,
}

impl Connection {
    pub(super) fn new(eventloop: EventLoop, link: MqttLink) -> Self {
        Self {
            eventloop,
            link,
            inboxes: HashMap::new(),
        }
    }

    /// Subscribes `topic` (QoS 1) from the next connection on, delivering its messages to
    /// `inbox`. A topic taken already keeps its first inbox.
    pub(crate) fn subscribe(&mut self, topic: &str, inbox: Arc<dyn Inbox>) {
        self.inboxes.entry(topic.to_owned()).or_insert(inbox);
    }

    /// Polls until `shutdown` turns true, then disconnects.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Connection {
            mut eventloop,
            link,
            inboxes,
        } = self;
        let client = link.client().clone();
        let mut failures: u32 = 0;
        loop {
            let polled = tokio::select! {
                polled = eventloop.poll() => polled,
                _ = shutdown.changed() => break,
            };
            // The MQTT locks learn of every (dis)connection before anything else can happen.
            link.observe(&mut eventloop, &polled);
            match polled {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    tracing::info!("connected to the MQTT broker");
                    for topic in inboxes.keys() {
                        if let Err(e) = client.try_subscribe(topic, QoS::AtLeastOnce) {
                            tracing::error!(%topic, error = %e, "cannot subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let Some(inbox) = inboxes.get(publish.topic.as_str()) else {
                        continue;
                    };
                    let message = Message {
                        payload: publish.payload.to_vec(),
                        retained: publish.retain,
                        received: crate::clock::instant(),
                    };
                    if !inbox.deliver(message).await {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = backoff(failures);
                    tracing::warn!(error = %e, retry_in = ?wait, "MQTT connection failed");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
        }
        let _ = client.try_disconnect();
    }
}

/// Jittered exponential backoff after `failures` consecutive failures: 250 ms doubling, capped
/// at 30 s, ±25 %.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250)
        .saturating_mul(1u32 << failures.min(7))
        .min(BACKOFF_CAP)
        .mul_f64(0.75 + rand::random::<f64>() * 0.5)
}
