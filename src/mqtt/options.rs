//! The broker connection's settings: MQTT 3.1.1 options from `[mqtt]`, the socket options, and
//! the client they make. No I/O beyond reading the TLS trust roots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, EventLoop, MqttOptions, NetworkOptions, Transport};

use crate::config::MqttConfig;

/// Keep-alive of the broker connection: a dead broker is noticed within about 1.5× this.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The largest payload the broker is expected to deliver: the shipped mosquitto drop-in sets
/// `message_size_limit` to this.
pub const MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// The largest packet the client takes (MQTT "remaining length"): a [`MAX_MESSAGE_SIZE`]
/// payload with the longest topic (2 + 65,535 bytes) and a packet id. rumqttc's default is
/// 10 KiB, and a larger packet drops the whole connection — every reader and MQTT lock with it
/// — before the payload is even read. Larger packets still do (the client never buffers an
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

/// A client and event loop for `[mqtt]`, with [`mqtt_options`] and
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

/// What is appended to `mqtt.client_id` for the connection that receives subscribed messages
/// (reader messages): `<client_id>-readers`.
pub const READER_CLIENT_SUFFIX: &str = "-readers";

/// The options of the receiving connection: [`mqtt_options`] with the client id
/// `<mqtt.client_id>-readers`, acknowledging messages itself (the connection task sends each
/// PUBACK once the message is on its way to the decision, not before).
pub(crate) fn inbound_options(
    cfg: &MqttConfig,
    password: Option<String>,
) -> Result<MqttOptions, MqttSetupError> {
    let mut options = mqtt_options(cfg, password)?;
    options.set_client_id(format!("{}{READER_CLIENT_SUFFIX}", cfg.client_id));
    options.set_manual_acks(true);
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_use_a_clean_session_credentials_and_the_default_ports() {
        let cfg = MqttConfig {
            url: "mqtt://broker.local".parse().unwrap(),
            client_id: "portier-co-up".into(),
            username: Some("portier".into()),
            password_file: None,
            ca_file: None,
        };
        let options = mqtt_options(&cfg, Some("secret".into())).unwrap();
        assert!(options.clean_session());
        assert_eq!(options.broker_address(), ("broker.local".into(), 1883));
        assert_eq!(options.keep_alive(), KEEP_ALIVE);
        // A reader payload of up to 1 MiB must never drop the shared connection.
        assert!(options.max_packet_size() > 1024 * 1024 + 65_535);
        let login = options.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("portier", "secret")
        );
        let bad = MqttConfig {
            url: "http://broker.local".parse().unwrap(),
            ..cfg.clone()
        };
        assert!(mqtt_options(&bad, None).is_err());
        let tls = MqttConfig {
            url: "mqtts://broker.local".parse().unwrap(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..cfg
        };
        let err = mqtt_options(&tls, None).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
