//! The one broker connection: readers, MQTT locks and (later) Home Assistant share it, and
//! only this module owns it.
//!
//! [`connect`] builds the client and its event loop from `[mqtt]` (clean session, TCP_NODELAY,
//! packets of over 1 MiB so an oversized reader payload is answered as malformed instead of
//! dropping the connection). [`Connection::run`] is the only poller: it reports every
//! (dis)connection of the publishing connection to the [`MqttLink`] that lock commands and
//! reader results go through, and, when asked for one, polls a second, receive-only connection
//! (`<client_id>-readers`, with its own link for health) that subscribes the registered topics
//! after every (re)connect and hands each message to its [`Inbox`]. Both retry with jittered
//! backoff. Users hold an [`MqttLink`] to publish.
//!
//! Why two connections: every QoS 1 publish of ours draws a PUBACK from the broker, and the
//! last one of a swipe (the relock's, `open_for` later) is answered by nothing, so our kernel
//! delays its ACK by ~40 ms. A broker with Nagle's algorithm on (mosquitto's default) holds any
//! further small packet on that connection until then: a card arriving on it would wait up to
//! ~40 ms. On the receiving connection the broker only ever sends deliveries, each answered at
//! once by a PUBACK, so nothing of the broker's is left unacknowledged when the next card comes
//! (see BENCHMARKS.md, "Card → lock command over a loopback mosquitto").
//!
//! This module knows topics and payload bytes, not what they mean: it never decides, parses a
//! reader message or renders a lock command.

mod connection;
mod link;
mod options;

pub use connection::Connection;
pub(crate) use connection::{Inbox, Message, Topics};
pub use link::MqttLink;
pub use options::{
    KEEP_ALIVE, MAX_MESSAGE_SIZE, MAX_PACKET_SIZE, MqttSetupError, READER_CLIENT_SUFFIX,
    mqtt_client, mqtt_network_options, mqtt_options,
};

use crate::config::MqttConfig;

/// The gateway's status while it is connected.
pub(crate) const ONLINE: &str = "online";
/// The gateway's status once it stopped or dropped.
pub(crate) const OFFLINE: &str = "offline";

/// How many requests the client queues before `try_publish` refuses.
const REQUEST_CAPACITY: usize = 256;

/// The broker connection for `[mqtt]` (not connected until [`Connection::run`] polls it),
/// with a receive-only connection when `receiving` (the site has readers). With a `status`
/// topic (the daemon's, `portier/<gateway_id>/status`), the publishing connection announces
/// the gateway there, retained: `online` at each connect, `offline` when it stops, and
/// `offline` as its last will when it drops without a word.
pub fn connect(
    cfg: &MqttConfig,
    password: Option<String>,
    receiving: bool,
    status: Option<String>,
) -> Result<Connection, MqttSetupError> {
    let inbound = if receiving {
        let options = options::inbound_options(cfg, password.clone())?;
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, REQUEST_CAPACITY);
        eventloop.set_network_options(mqtt_network_options());
        Some((MqttLink::new(client), eventloop))
    } else {
        None
    };
    let mut options = mqtt_options(cfg, password)?;
    if let Some(topic) = &status {
        options.set_last_will(rumqttc::LastWill::new(
            topic,
            OFFLINE,
            rumqttc::QoS::AtLeastOnce,
            true,
        ));
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, REQUEST_CAPACITY);
    eventloop.set_network_options(mqtt_network_options());
    Ok(Connection::new(
        eventloop,
        MqttLink::new(client),
        inbound,
        status,
    ))
}
