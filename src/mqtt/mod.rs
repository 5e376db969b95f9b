//! The one broker connection: readers, MQTT locks and (later) Home Assistant share it, and
//! only this module owns it.
//!
//! [`connect`] builds the client and its event loop from `[mqtt]` (clean session, TCP_NODELAY,
//! packets of over 1 MiB so an oversized reader payload is answered as malformed instead of
//! dropping the connection). [`Connection::run`] is the only task that polls the event loop:
//! it reports every (dis)connection to the [`MqttLink`] that lock commands go through,
//! subscribes the registered topics after every (re)connect, hands each message on them to its
//! [`Inbox`], and retries with jittered backoff. Users hold an [`MqttLink`] to publish.
//!
//! This module knows topics and payload bytes, not what they mean: it never decides, parses a
//! reader message or renders a lock command.

mod connection;
mod link;
mod options;

pub use connection::Connection;
pub(crate) use connection::{Inbox, Message};
pub use link::MqttLink;
pub use options::{
    KEEP_ALIVE, MAX_MESSAGE_SIZE, MAX_PACKET_SIZE, MqttSetupError, mqtt_client,
    mqtt_network_options, mqtt_options,
};

use crate::config::MqttConfig;

/// How many requests the client queues before `try_publish` refuses.
const REQUEST_CAPACITY: usize = 256;

/// The broker connection for `[mqtt]` (not connected until [`Connection::run`] polls it), and
/// the link its users publish through.
pub fn connect(
    cfg: &MqttConfig,
    password: Option<String>,
) -> Result<(MqttLink, Connection), MqttSetupError> {
    let (client, eventloop) = mqtt_client(cfg, password, REQUEST_CAPACITY)?;
    let link = MqttLink::new(client);
    Ok((link.clone(), Connection::new(eventloop, link)))
}
