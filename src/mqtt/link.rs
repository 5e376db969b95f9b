//! What lock commands need to know about the one broker connection, and the rules that keep
//! an unlock from being sent late.
//!
//! Lock commands are published with QoS 1 and **never retained**. The connection task hands
//! every poll result to [`MqttLink::observe`] before polling again. That is how "an unlock not
//! yet acknowledged when the connection drops is not resent after `open_for`" holds:
//!
//! - rumqttc, on a connection error, moves unacknowledged in-flight publishes (and requests
//!   still queued in its channel at that moment) into `EventLoop::pending`, and on reconnect
//!   sends them again unless the broker answers `session_present = false`. We always connect
//!   with a clean session, so the broker does answer that and rumqttc clears them; `observe`
//!   also removes lock commands from `pending` itself, so this holds even if someone turns
//!   persistent sessions on.
//! - What rumqttc does *not* clear is a request that enters its channel while it is
//!   disconnected: that would be sent, late, after the reconnect, however long the outage. So a
//!   lock command is only handed to the client while the link is up, and the "is it up" check
//!   and the hand-over happen under the same mutex `observe` takes to mark the link down and
//!   drain the channel (`EventLoop::clean`). A command therefore either reaches rumqttc before
//!   the drop (and is dropped with it) or is refused.
//! - Relock payloads are the exception: sending a lock command late is safe, so those found in
//!   `pending` at a drop are published again after the next ConnAck.
//!
//! A command is handed over once it is in the connected client; nothing here waits for the
//! broker's PUBACK (rumqttc 0.25 does not tell which publish a PUBACK belongs to).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Outgoing, Packet, Publish,
    QoS, Request,
};

/// The shared MQTT client plus what lock commands need to know about its connection.
/// Cheap to clone; the connection task keeps one clone to feed [`MqttLink::observe`].
#[derive(Clone)]
pub struct MqttLink {
    client: AsyncClient,
    inner: Arc<Mutex<LinkState>>,
    /// How many CONNACKs were seen: those who keep retained state on the broker publish it
    /// again after each (the broker may have restarted without its store).
    connects: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Default)]
struct LinkState {
    /// A CONNACK was seen and no error since. Starts down: nothing is sent before the daemon
    /// has reported a connection.
    up: bool,
    /// Lock command topics → the lock's relock payload, if it has one.
    commands: HashMap<String, Option<Vec<u8>>>,
    /// Relock publishes caught in a drop, to publish again after the next CONNACK.
    relocks: Vec<Publish>,
    /// How many times the connection was lost: a pulse begun in an earlier epoch may never
    /// have reached its lock.
    epoch: u64,
}

impl MqttLink {
    /// Wraps the connection's client.
    pub fn new(client: AsyncClient) -> Self {
        MqttLink {
            client,
            inner: Arc::default(),
            connects: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }

    /// The client (readers publish their results through it).
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// The number of connections made so far, changing at each CONNACK.
    pub(crate) fn connects(&self) -> tokio::sync::watch::Receiver<u64> {
        self.connects.subscribe()
    }

    /// Whether the broker connection is up, as last observed.
    pub fn is_up(&self) -> bool {
        self.state().up
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Feeds one result of `eventloop.poll()`. Call it with every result, before polling
    /// again: a CONNACK marks the link up (and re-sends relocks caught in a drop); an error or
    /// a DISCONNECT marks it down and removes lock commands from the event loop's queue, so
    /// an unacknowledged unlock is never sent after the reconnect.
    ///
    /// The connection task's loop (`mqtt::Connection::run` also routes incoming publishes and
    /// subscribes again after every CONNACK, the session being clean):
    ///
    /// ```no_run
    /// # async fn run(cfg: portier::config::MqttConfig) -> Result<(), Box<dyn std::error::Error>> {
    /// let (client, mut eventloop) = portier::mqtt::mqtt_client(&cfg, None, 64)?;
    /// let link = portier::mqtt::MqttLink::new(client);
    /// loop {
    ///     let polled = eventloop.poll().await;
    ///     link.observe(&mut eventloop, &polled);
    ///     if polled.is_err() {
    ///         tokio::time::sleep(std::time::Duration::from_secs(1)).await; // back off
    ///     }
    /// }
    /// # }
    /// ```
    pub fn observe(&self, eventloop: &mut EventLoop, polled: &Result<Event, ConnectionError>) {
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                let relocks = {
                    let mut state = self.state();
                    state.up = true;
                    std::mem::take(&mut state.relocks)
                };
                tracing::info!(resent_relocks = relocks.len(), "MQTT broker connected");
                self.connects.send_modify(|n| *n = n.wrapping_add(1));
                for publish in relocks {
                    let sent = self.publish(&publish.topic, publish.payload.to_vec());
                    if let Err(detail) = sent {
                        tracing::warn!(topic = %publish.topic, %detail, "relock not re-sent");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Disconnect) | Event::Outgoing(Outgoing::Disconnect)) => {
                let mut state = self.state();
                if state.up {
                    state.epoch += 1;
                }
                state.up = false;
            }
            Err(error) => {
                let mut state = self.state();
                if state.up {
                    tracing::warn!(%error, "MQTT broker connection lost");
                    state.epoch += 1;
                }
                state.up = false;
                // The poll failed, so rumqttc holds no connection: `clean` only moves requests
                // still in its channel into `pending`, where we can filter them.
                eventloop.clean();
                let pending = std::mem::take(&mut eventloop.pending);
                eventloop.pending = strip_lock_commands(&mut state, pending);
            }
            Ok(_) => {}
        }
    }

    /// Registers a lock's command topic and relock payload.
    pub(crate) fn register(&self, topic: &str, lock_payload: Option<&str>) {
        self.state().commands.insert(
            topic.to_owned(),
            lock_payload.map(|p| p.as_bytes().to_vec()),
        );
    }

    /// The current connection epoch: how many times the connection was lost. A pulse begun
    /// in an earlier epoch may never have reached its lock.
    pub(crate) fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Hands a lock command (QoS 1, not retained) to the client, only while the link is up;
    /// returns the epoch it was handed over in.
    pub(crate) fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<u64, String> {
        let state = self.state();
        if !state.up {
            return Err("the MQTT broker is not connected".into());
        }
        // Under the link mutex on purpose: `observe` cannot mark the link down and drain the
        // channel between the check above and this hand-over (try_publish does not block).
        self.client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .map_err(|e| format!("the MQTT client did not take the command: {e}"))?;
        Ok(state.epoch)
    }
}

/// Removes lock commands from a disconnected event loop's queue: unlocks are dropped (their
/// outcome is unknown and a late one could open the door twice), relocks kept for re-sending.
fn strip_lock_commands(state: &mut LinkState, pending: VecDeque<Request>) -> VecDeque<Request> {
    let mut kept = VecDeque::with_capacity(pending.len());
    for request in pending {
        let Request::Publish(publish) = &request else {
            kept.push_back(request);
            continue;
        };
        let Some(relock) = state.commands.get(&publish.topic) else {
            kept.push_back(request);
            continue;
        };
        if relock.as_deref() == Some(publish.payload.as_ref()) {
            state.relocks.retain(|p| p.topic != publish.topic);
            state.relocks.push(publish.clone());
        } else {
            tracing::warn!(topic = %publish.topic,
                "unlock not acknowledged before the MQTT connection dropped; it is not re-sent");
        }
    }
    kept
}
