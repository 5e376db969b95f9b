//! The tasks that poll the broker connections.
//!
//! rumqttc's event loops must be polled all the time, or nothing is sent or received; one task
//! per connection does only that. The publishing connection's task tells the [`MqttLink`] of
//! every poll first (so an unlock is never queued for a broker that is gone). The receiving
//! connection, when there is one, sends nothing but the PUBACKs of what it receives (its own
//! link observes it only for health): after every CONNACK it subscribes the registered topics (the session is clean) and
//! hands each message to its [`Inbox`], then acknowledges it. Connection errors are retried
//! with jittered exponential backoff capped at 30 s.
//!
//! A card is handed on before its PUBACK is written: writing the PUBACK is a system call that
//! also carries the packet into the broker, and the unlock should not wait for it. The PUBACK
//! follows a moment later, for every message, so the broker's socket to this connection never
//! keeps data unacknowledged (see BENCHMARKS.md on Nagle's algorithm and delayed ACKs); with
//! clean sessions the broker keeps nothing to redeliver either way.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};
use tokio::sync::watch;

use super::MqttLink;

/// Reconnects: 500 ms doubling to 30 s, ±25 %.
const RECONNECT: crate::backoff::Backoff = crate::backoff::Backoff {
    first: Duration::from_millis(500),
    cap: Duration::from_secs(30),
    jitter: 0.25,
};
/// How long the publishing connection waits for the receiving one to stop at shutdown.
const STOP_BOUND: Duration = Duration::from_secs(5);
/// How long a connection may take at shutdown to send what is still queued and its DISCONNECT
/// (inside the daemon's one-second bound for the broker connection).
const FLUSH_BOUND: Duration = Duration::from_millis(800);

/// A message on a subscribed topic.
#[derive(Debug)]
pub(crate) struct Message {
    /// The topic it was published on (a filter with wildcards matches many).
    pub topic: String,
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

/// The subscribed topics and where their messages go, shared by the receiving connection's
/// task and every [`Topics`] handle.
type Inboxes = Arc<Mutex<Registry>>;

#[derive(Default)]
struct Registry {
    inboxes: HashMap<String, Arc<dyn Inbox>>,
    /// The receiving connection is up and has subscribed every topic in `inboxes`. Set and read
    /// under the same lock as `inboxes`, so a topic added at any moment is subscribed exactly
    /// once (a second SUBSCRIBE would make the broker replay a retained message again).
    subscribed: bool,
}

/// The broker connections, until [`Connection::run`] polls them.
pub struct Connection {
    eventloop: EventLoop,
    link: MqttLink,
    inbound: Option<(MqttLink, EventLoop)>,
    inboxes: Inboxes,
    /// The gateway's retained status topic, when this is the daemon's connection.
    status: Option<String>,
}

/// Subscribes and unsubscribes topics on the receiving connection, before or while it runs
/// (a reload adds and removes readers). Cheap to clone.
#[derive(Clone)]
pub(crate) struct Topics {
    inboxes: Inboxes,
    client: Option<rumqttc::AsyncClient>,
}

impl Topics {
    /// Delivers the messages of `topic` (a topic, or a filter with wildcards) (QoS 1) to `inbox` from now on, replacing the inbox it had;
    /// a topic new to the connection is subscribed once: now if connected, else by the next
    /// CONNACK, which subscribes every topic. Without a receiving connection nothing arrives:
    /// that is logged when the connection runs.
    pub(crate) fn add(&self, topic: &str, inbox: Arc<dyn Inbox>) {
        let mut registry = lock(&self.inboxes);
        let new = registry.inboxes.insert(topic.to_owned(), inbox).is_none();
        if let (true, true, Some(client)) = (new, registry.subscribed, &self.client)
            && let Err(e) = client.try_subscribe(topic, QoS::AtLeastOnce)
        {
            // The next CONNACK subscribes it anyway.
            tracing::warn!(%topic, error = %e, "cannot subscribe now");
        }
    }

    /// Stops delivering `topic`'s messages (a message already on its way is dropped) and
    /// unsubscribes it.
    pub(crate) fn remove(&self, topic: &str) {
        let mut registry = lock(&self.inboxes);
        if registry.inboxes.remove(topic).is_some()
            && registry.subscribed
            && let Some(client) = &self.client
            && let Err(e) = client.try_unsubscribe(topic)
        {
            tracing::warn!(%topic, error = %e, "cannot unsubscribe; its messages are ignored");
        }
    }
}

impl Registry {
    /// The inbox of the topic, or else of the first filter with wildcards (`+`, `#`) that
    /// matches it.
    fn inbox_for(&self, topic: &str) -> Option<Arc<dyn Inbox>> {
        if let Some(inbox) = self.inboxes.get(topic) {
            return Some(Arc::clone(inbox));
        }
        self.inboxes
            .iter()
            .find(|(filter, _)| filter.contains(['+', '#']) && rumqttc::matches(topic, filter))
            .map(|(_, inbox)| Arc::clone(inbox))
    }
}

fn lock(inboxes: &Inboxes) -> std::sync::MutexGuard<'_, Registry> {
    inboxes.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    pub(super) fn new(
        eventloop: EventLoop,
        link: MqttLink,
        inbound: Option<(MqttLink, EventLoop)>,
        status: Option<String>,
    ) -> Self {
        Self {
            eventloop,
            link,
            inbound,
            inboxes: Inboxes::default(),
            status,
        }
    }

    /// The link everything is published through (lock commands, reader results).
    pub fn link(&self) -> MqttLink {
        self.link.clone()
    }

    /// The receiving connection's link (for its health), when there is one.
    pub(crate) fn receiving_link(&self) -> Option<MqttLink> {
        self.inbound.as_ref().map(|(link, _)| link.clone())
    }

    /// The handle that subscribes topics on the receiving connection.
    pub(crate) fn topics(&self) -> Topics {
        Topics {
            inboxes: Arc::clone(&self.inboxes),
            client: self.inbound.as_ref().map(|(link, _)| link.client().clone()),
        }
    }

    /// Polls until `shutdown` turns true, then disconnects.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let Connection {
            mut eventloop,
            link,
            inbound,
            inboxes,
            status,
        } = self;
        let receiving = match inbound {
            Some((link, eventloop)) => Some(tokio::spawn(receive(
                eventloop,
                link,
                inboxes,
                shutdown.clone(),
            ))),
            None => {
                if !lock(&inboxes).inboxes.is_empty() {
                    tracing::error!(
                        "topics are subscribed but no receiving MQTT connection was opened"
                    );
                }
                None
            }
        };
        let client = link.client().clone();
        let announce = |state: &'static str| {
            if let Some(topic) = &status
                && let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, true, state)
            {
                tracing::warn!(%topic, error = %e, "cannot publish the gateway's status");
            }
        };
        poll(&mut eventloop, &link, "", &mut shutdown, |polled| {
            if matches!(polled, Polled::Connected) {
                announce(super::ONLINE);
            }
            async { true }
        })
        .await;
        // The relocks of shutdown were handed over just before: they go out first, then the
        // gateway's goodbye (a clean DISCONNECT makes the broker drop the last will).
        announce(super::OFFLINE);
        disconnect(&mut eventloop, &client).await;
        if let Some(receiving) = receiving {
            let _ = tokio::time::timeout(STOP_BOUND, receiving).await;
        }
    }
}

/// Sends what the client still has queued, then a DISCONNECT, polling until the DISCONNECT is
/// written, the connection fails or [`FLUSH_BOUND`] passes. The broker reads a connection's
/// packets in order, so a relock queued before the DISCONNECT reaches it. (Merely dropping the
/// event loop would lose them: nothing is sent unless it is polled.)
async fn disconnect(eventloop: &mut EventLoop, client: &AsyncClient) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(FLUSH_BOUND, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Polls the receiving connection until shutdown: subscribes every topic after each CONNACK,
/// hands messages to their inboxes and acknowledges every message, whatever it turns out to be.
async fn receive(
    mut eventloop: EventLoop,
    link: MqttLink,
    inboxes: Inboxes,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = link.client().clone();
    let (inboxes, subscriber) = (&inboxes, &client);
    let handle = |polled: Polled| async move {
        match polled {
            Polled::Connected => {
                let mut registry = lock(inboxes);
                registry.subscribed = true;
                for topic in registry.inboxes.keys() {
                    if let Err(e) = subscriber.try_subscribe(topic, QoS::AtLeastOnce) {
                        tracing::error!(%topic, error = %e, "cannot subscribe");
                    }
                }
                true
            }
            Polled::Publish(publish) => {
                let received = crate::clock::instant();
                let inbox = lock(inboxes).inbox_for(&publish.topic);
                let go_on = match inbox {
                    Some(inbox) => {
                        let message = Message {
                            topic: publish.topic.clone(),
                            payload: publish.payload.to_vec(),
                            retained: publish.retain,
                            received,
                        };
                        let delivered = inbox.deliver(message).await;
                        // Let the receiver (woken on this worker) take the message before this
                        // task writes the PUBACK.
                        tokio::task::yield_now().await;
                        delivered
                    }
                    None => true,
                };
                // The queue cannot be full: the broker keeps at most its inflight window (20
                // messages by default in mosquitto) unacknowledged, and every poll of this
                // task takes requests from the queue.
                if let Err(e) = subscriber.try_ack(&publish) {
                    tracing::warn!(topic = %publish.topic, error = %e, "cannot acknowledge a message");
                }
                go_on
            }
            Polled::Lost => {
                // The next CONNACK subscribes every topic again (the session is clean).
                lock(inboxes).subscribed = false;
                true
            }
        }
    };
    // Only for its health does the link observe this connection: no lock command is ever sent
    // on it.
    poll(&mut eventloop, &link, " (readers)", &mut shutdown, handle).await;
    disconnect(&mut eventloop, &client).await;
}

/// What a connection's poll loop hands its owner.
enum Polled {
    /// The broker accepted the connection (CONNACK).
    Connected,
    /// A message arrived.
    Publish(rumqttc::Publish),
    /// The connection failed; it is retried after a backoff.
    Lost,
}

/// Polls `eventloop` until shutdown, or until `handle` answers false: the link observes every
/// (dis)connection first, a failed connection is retried after [`back_off`], and the rest goes
/// to `handle`. `which` tells the connections apart in the log.
async fn poll<F>(
    eventloop: &mut EventLoop,
    link: &MqttLink,
    which: &str,
    shutdown: &mut watch::Receiver<bool>,
    mut handle: impl FnMut(Polled) -> F,
) where
    F: Future<Output = bool>,
{
    let mut failures: u32 = 0;
    loop {
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            _ = shutdown.changed() => return,
        };
        // The MQTT locks learn of every (dis)connection before anything else can happen.
        link.observe(eventloop, &polled);
        let go_on = match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!("connected to the MQTT broker{which}");
                handle(Polled::Connected).await
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => handle(Polled::Publish(publish)).await,
            Ok(_) => true,
            Err(e) => {
                handle(Polled::Lost).await && back_off(&mut failures, &e, which, shutdown).await
            }
        };
        if !go_on {
            return;
        }
    }
}

/// Waits before the next connection attempt ([`RECONNECT`]); false
/// when shutdown came first.
async fn back_off(
    failures: &mut u32,
    error: &rumqttc::ConnectionError,
    which: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    *failures = failures.saturating_add(1);
    let wait = RECONNECT.after(*failures);
    tracing::warn!(%error, retry_in = ?wait, "MQTT connection failed{which}");
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        _ = shutdown.changed() => false,
    }
}
