//! MQTT locks (`driver = "mqtt"`, e.g. zigbee2mqtt) and the shared broker connection's
//! settings.
//!
//! Lock commands are published with QoS 1 and **never retained**, through the daemon's one
//! `rumqttc::AsyncClient`. The daemon owns and polls the event loop; it must hand every poll
//! result to [`MqttLink::observe`] before polling again. That is how "an unlock not yet
//! acknowledged when the connection drops is not resent after `open_for`" holds:
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
//!   the drop (and is dropped with it) or is refused with `Transport`.
//! - Relock payloads are the exception: sending a lock command late is safe, so those found in
//!   `pending` at a drop are published again after the next ConnAck.
//!
//! An unlock returns once the command was handed to the connected client; it does not wait for
//! the broker's PUBACK (rumqttc 0.25 does not tell which publish a PUBACK belongs to).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions,
    Outgoing, Packet, Publish, QoS, Request, Transport,
};

use super::pulse::{Actuator, Pulse};
use super::{BoxFuture, Command, LockError};
use crate::config::MqttConfig;

/// Keep-alive of the broker connection: a dead broker is noticed within about 1.5× this.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The largest payload the broker is expected to deliver: the shipped mosquitto drop-in sets
/// `message_size_limit` to this.
pub const MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// The largest packet the client takes (MQTT "remaining length"): a [`MAX_MESSAGE_SIZE`]
/// payload with the longest topic (2 + 65,535 bytes) and a packet id. rumqttc's default is
/// 10 KiB, and a larger packet drops the whole connection — on the readers' connection, every
/// reader with it — before the payload is even read. Larger packets still do (the client never buffers an
/// unbounded packet); then the event loop reconnects with backoff and resubscribes, and with a
/// clean session the broker does not deliver the oversized message again.
pub const MAX_PACKET_SIZE: usize = MAX_MESSAGE_SIZE + 2 + u16::MAX as usize + 2;
/// Seconds rumqttc waits for TCP/TLS connect and CONNACK, and for a flush.
const CONNECTION_TIMEOUT_SECS: u64 = 5;
/// The trust roots used for `mqtts://` when `ca_file` is not set (Debian's ca-certificates).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The `[mqtt]` settings cannot be turned into a connection.
#[derive(Debug, thiserror::Error)]
pub enum MqttSetupError {
    /// The URL is not `mqtt://host[:port]` or `mqtts://host[:port]`.
    #[error("mqtt.url \"{url}\": {problem}; write mqtt://host[:port] or mqtts://host[:port]")]
    Url {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The TLS trust roots cannot be read.
    #[error("cannot read the MQTT TLS trust roots {}: {source}; set mqtt.ca_file or install ca-certificates", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Builds MQTT 3.1.1 options from `[mqtt]`: clean session, keep-alive, packets up to
/// [`MAX_PACKET_SIZE`] both ways, credentials, and TLS
/// for `mqtts://` (rustls; `ca_file` as the trust root when set, else the system's bundle).
/// TCP_NODELAY is not an `MqttOptions` setting in rumqttc 0.25: it lives on the event loop,
/// see [`mqtt_network_options`] and [`mqtt_client`].
pub fn mqtt_options(
    cfg: &MqttConfig,
    password: Option<String>,
) -> Result<MqttOptions, MqttSetupError> {
    let url_error = |problem: &str| MqttSetupError::Url {
        url: cfg.url.to_string(),
        problem: problem.to_owned(),
    };
    let tls = match cfg.url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        _ => return Err(url_error("unknown scheme")),
    };
    let host = cfg
        .url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| url_error("no host"))?;
    let port = cfg.url.port().unwrap_or(if tls { 8883 } else { 1883 });
    let mut options = MqttOptions::new(cfg.client_id.clone(), host, port);
    options.set_keep_alive(KEEP_ALIVE);
    options.set_clean_session(true);
    options.set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
    if let Some(user) = &cfg.username {
        options.set_credentials(user.clone(), password.unwrap_or_default());
    }
    if tls {
        let path = cfg
            .ca_file
            .as_deref()
            .unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
        let ca = std::fs::read(path).map_err(|source| MqttSetupError::CaFile {
            path: path.to_owned(),
            source,
        })?;
        crate::tls::install_provider();
        options.set_transport(Transport::tls(ca, None, None));
    }
    Ok(options)
}

/// The socket settings of the broker connection: TCP_NODELAY on (commands and card ids are
/// tiny; without it a round trip can wait ~40 ms for a delayed ACK) and a connect timeout.
pub fn mqtt_network_options() -> NetworkOptions {
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(CONNECTION_TIMEOUT_SECS);
    network
}

/// The daemon's client and event loop for `[mqtt]`, with [`mqtt_options`] and
/// [`mqtt_network_options`] applied. `capacity` bounds the request channel.
pub fn mqtt_client(
    cfg: &MqttConfig,
    password: Option<String>,
    capacity: usize,
) -> Result<(AsyncClient, EventLoop), MqttSetupError> {
    let (client, mut eventloop) = AsyncClient::new(mqtt_options(cfg, password)?, capacity);
    eventloop.set_network_options(mqtt_network_options());
    Ok((client, eventloop))
}

/// What is appended to `mqtt.client_id` for the connection that receives reader messages.
pub const READER_CLIENT_SUFFIX: &str = "-readers";

/// The client and event loop that receive reader messages, as [`mqtt_client`] but with the
/// client id `<mqtt.client_id>-readers`. Nothing but the PUBACKs of reader messages is sent on
/// it (results and lock commands go through [`mqtt_client`]'s connection). So the broker never
/// has a packet of its own on it waiting for a delayed ACK, and with Nagle's algorithm on in the
/// broker (mosquitto's default) the next card is not held behind one for ~40 ms; see
/// BENCHMARKS.md, "Card → lock command over a loopback mosquitto".
pub fn mqtt_reader_client(
    cfg: &MqttConfig,
    password: Option<String>,
    capacity: usize,
) -> Result<(AsyncClient, EventLoop), MqttSetupError> {
    let mut options = mqtt_options(cfg, password)?;
    options.set_client_id(format!("{}{READER_CLIENT_SUFFIX}", cfg.client_id));
    let (client, mut eventloop) = AsyncClient::new(options, capacity);
    eventloop.set_network_options(mqtt_network_options());
    Ok((client, eventloop))
}

/// The shared MQTT client plus what lock commands need to know about its connection.
/// Cheap to clone; the daemon keeps one clone to feed [`MqttLink::observe`].
#[derive(Clone)]
pub struct MqttLink {
    client: AsyncClient,
    inner: Arc<Mutex<LinkState>>,
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
    /// Wraps the daemon's client.
    pub fn new(client: AsyncClient) -> Self {
        MqttLink {
            client,
            inner: Arc::default(),
        }
    }

    /// The client (readers publish their results through it too).
    pub fn client(&self) -> &AsyncClient {
        &self.client
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
    /// The daemon's loop (readers handle the incoming publishes the same way; with a clean
    /// session they must subscribe again after every CONNACK):
    ///
    /// ```no_run
    /// # async fn run(cfg: portier::config::MqttConfig) -> Result<(), Box<dyn std::error::Error>> {
    /// let (client, mut eventloop) = portier::locks::mqtt_client(&cfg, None, 64)?;
    /// let link = portier::locks::MqttLink::new(client);
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
    fn register(&self, topic: &str, lock_payload: Option<&str>) {
        self.state().commands.insert(
            topic.to_owned(),
            lock_payload.map(|p| p.as_bytes().to_vec()),
        );
    }

    /// The current connection epoch.
    fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Hands a lock command (QoS 1, not retained) to the client, only while the link is up;
    /// returns the epoch it was handed over in.
    fn publish(&self, topic: &str, payload: Vec<u8>) -> Result<u64, String> {
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

/// A lock behind the MQTT broker.
pub struct MqttLock {
    pulse: Pulse<MqttActuator>,
}

struct MqttActuator {
    id: String,
    link: MqttLink,
    topic: String,
    unlock_payload: String,
    lock_payload: Option<String>,
    /// The link epoch of the last unlock handed over.
    opened_in: AtomicU64,
}

impl MqttLock {
    /// An MQTT lock publishing to `topic` through `link`.
    pub fn new(
        id: &str,
        link: MqttLink,
        topic: &str,
        unlock_payload: &str,
        lock_payload: Option<&str>,
    ) -> Self {
        link.register(topic, lock_payload);
        MqttLock {
            pulse: Pulse::new(
                id,
                MqttActuator {
                    id: id.to_owned(),
                    link,
                    topic: topic.to_owned(),
                    unlock_payload: unlock_payload.to_owned(),
                    lock_payload: lock_payload.map(str::to_owned),
                    opened_in: AtomicU64::new(0),
                },
            ),
        }
    }
}

impl MqttActuator {
    fn send(&self, payload: String) -> Result<u64, LockError> {
        self.link
            .publish(&self.topic, payload.into_bytes())
            .map_err(|detail| LockError::Transport {
                lock: self.id.clone(),
                detail,
            })
    }
}

impl Actuator for MqttActuator {
    fn open<'a>(&'a self, cmd: &'a Command) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(async move {
            let epoch = self.send(render(&self.unlock_payload, cmd))?;
            self.opened_in.store(epoch, Ordering::SeqCst);
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(async move {
            match &self.lock_payload {
                Some(payload) => self.send(payload.clone()).map(drop),
                None => Ok(()),
            }
        })
    }

    fn pulse_intact(&self) -> bool {
        self.opened_in.load(Ordering::SeqCst) == self.link.epoch()
    }

    fn live_check(&self) -> Option<Result<(), String>> {
        Some(if self.link.is_up() {
            Ok(())
        } else {
            Err(format!(
                "lock \"{}\": the MQTT broker is not connected, so its commands cannot be sent",
                self.id
            ))
        })
    }
}

/// Fills `{decision_id}` and `{unit}` into a payload template, in one pass (a value that
/// itself contains a placeholder is not expanded again).
pub(crate) fn render(template: &str, cmd: &Command) -> String {
    let mut out = String::with_capacity(template.len() + cmd.decision_id.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("{decision_id}") {
            out.push_str(&cmd.decision_id);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{unit}") {
            out.push_str(&cmd.unit);
            rest = after;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

// Everything a lock does goes through its open pulse.
super::pulse::lock_driver_via_pulse!(MqttLock);

#[cfg(test)]
#[path = "mqtt_tests.rs"]
mod tests;
