//! The configuration file (`/etc/portier/portier.toml`): loading, validation and secret files.
//!
//! Loading has two stages. `raw` mirrors the TOML with serde; `validate` (with `policy` and
//! `locks`) turns it into a [`Config`] of already-valid types, whose [`Policy`] has every
//! reference resolved. All errors of a file are collected at once, each naming file, line,
//! column and key (`PATH:LINE:COL: KEY: message`), so an installer fixes them in one pass.
//!
//! This module reads the configuration file and, in [`Config::check_secrets`] and
//! [`read_secret`], the secret files it names; it never logs a secret's contents. It does not
//! read the clock, open sockets or know the store.

mod bounds;
mod checker;
mod error;
mod locks;
mod policy;
mod raw;
mod readers;
mod secrets;
mod sensors;
mod validate;
mod variants;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_edges;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors};
pub use secrets::{SecretError, read_key, read_secret};

use crate::domain::model::Policy;

/// The environment variable systemd sets to the folder of a unit's `LoadCredential=` files.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// A loaded, valid configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was loaded from, as given.
    pub path: PathBuf,
    /// `[site]`.
    pub site: SiteConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[cobot]`, except the parts that shape access (they live in `policy`).
    pub cobot: CobotConfig,
    /// `[events]`.
    pub events: EventsConfig,
    /// `[mqtt]`; present whenever an MQTT lock or a reader exists.
    pub mqtt: Option<MqttConfig>,
    /// `[[lock]]`, in file order.
    pub locks: Vec<LockConfig>,
    /// `[[reader]]`, in file order.
    pub readers: Vec<ReaderConfig>,
    /// `[[sensor]]`: door contacts, in file order.
    pub sensors: Vec<SensorConfig>,
    /// `[homeassistant]`: MQTT discovery, when the section is present.
    pub homeassistant: Option<HomeAssistantConfig>,
    /// `[member_page]`, when `enabled = true`.
    pub member_page: Option<MemberPageConfig>,
    /// Groups, assignments, units, permissions, holidays, overrides, `[offline]` and the
    /// access-shaping `[cobot]` keys, with every reference resolved.
    pub policy: Policy,
    /// Where each `*_file` key was written (`http.admin_token_file` → line, column), so
    /// [`Config::check_secrets`] can point at it.
    pub key_positions: BTreeMap<String, (usize, usize)>,
}

/// `[[sensor]]`: a unit's door contact, and its request-to-exit input.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorConfig {
    /// The unit whose door it watches.
    pub unit: String,
    /// How long the door may stay open before it is an alarm (`unit.held_open_after`,
    /// default 60 s).
    pub held_open_after: Duration,
    /// Where the contact is read.
    pub contact: ContactSource,
}

/// Where a door contact is read.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactSource {
    /// Messages on a topic (a retained one gives the state at start).
    Mqtt {
        /// The contact's topic.
        topic: String,
        /// How its payloads read.
        payload: ContactPayload,
        /// Any message here is a request to exit (`rex_topic`).
        rex_topic: Option<String>,
    },
    /// A discrete input polled over Modbus.
    Modbus {
        /// Where the device is.
        address: ModbusAddress,
        /// Modbus unit (slave) id (default 1).
        slave: u8,
        /// The contact's discrete input.
        input: u16,
        /// The input's value when the door is open (`open_when`, default 1).
        open_when: bool,
        /// Time between reads (default 250 ms).
        poll: Duration,
        /// A discrete input that reads 1 while the exit button is pressed (`rex_input`).
        rex_input: Option<u16>,
    },
}

/// How an MQTT contact's payloads read.
#[derive(Debug, Clone, PartialEq)]
pub enum ContactPayload {
    /// Whole payloads (`open_payload`, default `open`; `closed_payload`, default `closed`;
    /// compared without case or surrounding space).
    Plain {
        /// The open payload.
        open: String,
        /// The closed payload.
        closed: String,
    },
    /// A JSON object's key (`json_key`), open when it equals `open_value` (zigbee2mqtt:
    /// `json_key = "contact"`, `open_value = false`).
    Json {
        /// The key.
        key: String,
        /// The value that means open; any other value of the key means closed.
        open_value: serde_json::Value,
    },
}

impl SensorConfig {
    /// The driver's name, as `driver` in the file.
    pub fn driver(&self) -> &'static str {
        match self.contact {
            ContactSource::Mqtt { .. } => "mqtt",
            ContactSource::Modbus { .. } => "modbus",
        }
    }
}

/// `[member_page]`: members open doors from their phone, logged in with their Cobot account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPageConfig {
    /// The client id of the space's "mobile app login" Cobot application.
    pub client_id: String,
    /// Its client secret, a secret file.
    pub client_secret_file: PathBuf,
    /// What members' phones reach (`<public_url>/auth/callback` is the redirect URI
    /// registered at Cobot; the page is `<public_url>/m/`).
    pub public_url: url::Url,
    /// How long a login lasts (default 30 days).
    pub session_ttl: Duration,
}

impl MemberPageConfig {
    /// `<public_url>/<path>` (path without a leading `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.public_url.as_str().trim_end_matches('/'))
    }
}

/// `[homeassistant]`: Home Assistant MQTT discovery of the gateway and its doors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeAssistantConfig {
    /// The discovery prefix Home Assistant listens on (default `homeassistant`).
    pub prefix: String,
    /// Home Assistant may open doors (audited admin opens) and switch the lockdown on
    /// (default false: the entities only show state).
    pub commands: bool,
}

/// `[site]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteConfig {
    /// The site's name (default: the Cobot subdomain, else `portier`).
    pub name: String,
    /// `site.gateway_id` (`[a-z0-9_-]{1,32}`; default: the name lower-cased, other characters
    /// as `_`): every MQTT topic Portier names itself starts with `portier/<gateway_id>/`.
    pub gateway_id: String,
    /// The site's IANA time zone; days and schedules are local to it.
    pub timezone: chrono_tz::Tz,
    /// Where the store, outbox and tokens live (default `/var/lib/portier`).
    pub state_dir: PathBuf,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Listen address (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); set together with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM), a secret file.
    pub tls_key_file: Option<PathBuf>,
    /// The admin bearer token, a secret file; absent: admin endpoints answer 401.
    pub admin_token_file: Option<PathBuf>,
    /// The installer page's password, a secret file; absent: the page answers only on
    /// loopback.
    pub page_password_file: Option<PathBuf>,
}

/// `[cobot]`: how to reach Cobot and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct CobotConfig {
    /// The space's subdomain (`co-up` for `co-up.cobot.me`).
    pub subdomain: Option<String>,
    /// OAuth client id of the sync app (only `cobot connect` needs it).
    pub client_id: Option<String>,
    /// OAuth client secret, a secret file (only `cobot connect` needs it).
    pub client_secret_file: Option<PathBuf>,
    /// A token made on Cobot's developer page; absent: the one `cobot connect` stored.
    pub access_token_file: Option<PathBuf>,
    /// Space API base (default `https://<subdomain>.cobot.me`).
    pub api_url: url::Url,
    /// User API base (default `https://www.cobot.me`).
    pub www_url: url::Url,
    /// Time between background syncs (default 5 min).
    pub sync_interval: Duration,
    /// Timeout of one Cobot request (default 30 s).
    pub request_timeout: Duration,
    /// Write check-ins back to Cobot (default true).
    pub check_ins: bool,
    /// A sync revoking more than this share of granted members is held (default 0.5).
    pub max_revoke_ratio: f64,
    /// A sync taking the known plan from more than this share of members is held (default 0.2).
    pub max_plan_loss_ratio: f64,
    /// Bookings are fetched from yesterday to this far ahead (default 30 days).
    pub booking_horizon: Duration,
    /// App tokens seen online keep working offline this long (default 30 days).
    pub token_cache_ttl: Duration,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    /// How long events are kept (default 90 days).
    pub retention: Duration,
}

/// `[mqtt]`: the broker that carries readers and MQTT locks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` or `mqtts://host[:port]`.
    pub url: url::Url,
    /// MQTT client id (default `portier-<site name>`).
    pub client_id: String,
    /// Broker user name.
    pub username: Option<String>,
    /// Broker password, a secret file.
    pub password_file: Option<PathBuf>,
    /// TLS trust root (PEM) when not the system's.
    pub ca_file: Option<PathBuf>,
}

/// `[[lock]]`: something that opens a door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockConfig {
    /// The lock's id, named by units.
    pub id: String,
    /// How to drive it.
    pub driver: LockDriver,
}

/// A lock driver with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDriver {
    /// A relay or controller on Modbus: pulse a coil, or write a register then 0.
    Modbus {
        /// Where the device is.
        address: ModbusAddress,
        /// Modbus unit (slave) id (default 1).
        slave: u8,
        /// What to write.
        target: ModbusTarget,
    },
    /// A lock behind the MQTT broker (e.g. zigbee2mqtt).
    Mqtt {
        /// Command topic (QoS 1, never retained).
        topic: String,
        /// Sent to unlock; may contain `{decision_id}` and `{unit}`.
        unlock_payload: String,
        /// Sent after `open_for`, if set.
        lock_payload: Option<String>,
    },
    /// A Bluetooth LE lock: write a characteristic.
    Ble {
        /// Device address `AA:BB:CC:DD:EE:FF` (upper case).
        device: String,
        /// GATT characteristic UUID (lower case, hyphenated).
        characteristic: String,
        /// Bytes written to unlock.
        unlock_payload: Vec<u8>,
        /// Bytes written after `open_for`, if set.
        lock_payload: Option<Vec<u8>>,
    },
    /// No hardware: opening is only logged (demo, testing).
    Log,
}

impl LockDriver {
    /// The driver's name as written in `driver = "..."`.
    pub fn name(&self) -> &'static str {
        match self {
            LockDriver::Modbus { .. } => "modbus",
            LockDriver::Mqtt { .. } => "mqtt",
            LockDriver::Ble { .. } => "ble",
            LockDriver::Log => "log",
        }
    }
}

/// Where a Modbus device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModbusAddress {
    /// Modbus TCP at `host:port` (port default 502; an IPv6 host is in brackets). Resolve it
    /// when connecting, so a name that changes address keeps working.
    Tcp(String),
    /// Modbus RTU on a serial port.
    Rtu {
        /// The serial device, e.g. `/dev/ttyUSB0`.
        path: PathBuf,
        /// Baud rate (default 9600).
        baud: u32,
    },
}

/// What a Modbus lock writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusTarget {
    /// Coil address: on, wait `open_for`, off.
    Coil(u16),
    /// Holding register: write `value`, wait `open_for`, write 0.
    Register {
        /// Register address.
        register: u16,
        /// Value written to open (`register_value`, default 1).
        value: u16,
    },
}

/// `[[reader]]`: a card reader at a unit's door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderConfig {
    /// The reader's id.
    pub id: String,
    /// The unit it opens; `None` for an enrolment reader (`enrol = true`), which opens
    /// nothing and is read only by `portier enrol`.
    pub unit: Option<String>,
    /// How its reads arrive (`kind` and that kind's keys).
    pub source: ReaderSource,
}

impl ReaderConfig {
    /// The topic of an MQTT reader.
    pub fn topic(&self) -> Option<&str> {
        match &self.source {
            ReaderSource::Mqtt { topic } => Some(topic),
            ReaderSource::Hid(_) | ReaderSource::Wiegand(_) | ReaderSource::Osdp(_) => None,
        }
    }

    /// The kind's name, as `kind` in the file.
    pub fn kind(&self) -> &'static str {
        match self.source {
            ReaderSource::Mqtt { .. } => "mqtt",
            ReaderSource::Hid(_) => "hid",
            ReaderSource::Wiegand(_) => "wiegand",
            ReaderSource::Osdp(_) => "osdp",
        }
    }
}

/// A reader's kind and where its reads come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReaderSource {
    /// `kind = "mqtt"` (the default): credentials arrive on `topic`; results go to
    /// `<topic>/result`.
    Mqtt {
        /// The topic.
        topic: String,
    },
    /// `kind = "hid"`: a USB keyboard-wedge reader, typing the card and ENTER.
    Hid(HidDevice),
    /// `kind = "wiegand"`: a reader on two GPIO lines.
    Wiegand(WiegandWiring),
    /// `kind = "osdp"`: a reader on an RS-485 bus, Portier the control panel.
    Osdp(OsdpLink),
}

/// Where an OSDP reader is and how Portier talks to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsdpLink {
    /// `port`: the serial device of the RS-485 adapter (best a `/dev/serial/by-id/...` name).
    pub port: PathBuf,
    /// `baud`: 9600, 19200, 38400, 57600, 115200 (default) or 230400.
    pub baud: u32,
    /// `address`: the reader's OSDP address, 0–126.
    pub address: u8,
    /// `scbk_file`: the secure channel base key (32 hex digits), written by `portier osdp
    /// keyset`; `None`: no secure channel.
    pub scbk_file: Option<PathBuf>,
}

/// A Wiegand reader's lines and how its frames are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiegandWiring {
    /// `d0`: the GPIO line name of DATA0 (a falling edge is a 0 bit).
    pub d0: String,
    /// `d1`: the GPIO line name of DATA1.
    pub d1: String,
    /// `chip`: the GPIO chip to look for the lines on (a `/dev/gpiochipN` path or its name);
    /// `None`: every chip (names are unique on a Raspberry Pi, whichever chip carries them).
    pub chip: Option<String>,
    /// `format`: which frames are cards.
    pub format: WiegandFormat,
    /// `credential`: how a card becomes its credential string.
    pub credential: WiegandCredential,
    /// `frame_gap`: quiet on both lines that ends a frame (default 25 ms).
    pub frame_gap: Duration,
    /// `pin_timeout`: how long a keypad entry waits for each key after a card (default 10 s).
    pub pin_timeout: Duration,
}

/// Which Wiegand frames a reader takes as cards (`format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WiegandFormat {
    /// `auto`: any known card format, by its length (26, 34, 35, 37 bits).
    Auto,
    /// `26`, `34`, `35` or `37`: only this many bits.
    Bits(u32),
    /// `raw`: every frame's bits as they are, no parity checked.
    Raw,
}

/// How a Wiegand card becomes its credential string (`credential`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WiegandCredential {
    /// `hex`: the data bits without parity as upper-case hex.
    Hex,
    /// `facility_card`: facility and card number in decimal, zero-padded, joined.
    FacilityCard,
}

/// Which input device a USB reader is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HidDevice {
    /// `device`: its path, best the stable `/dev/input/by-id/...` name.
    Path(PathBuf),
    /// `usb = "VVVV:PPPP"`: the first input device with this USB vendor and product id.
    Usb {
        /// The vendor id.
        vendor: u16,
        /// The product id.
        product: u16,
    },
}

impl std::fmt::Display for HidDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HidDevice::Path(path) => write!(f, "{}", path.display()),
            HidDevice::Usb { vendor, product } => write!(f, "USB {vendor:04x}:{product:04x}"),
        }
    }
}

impl SiteConfig {
    /// The retained `online`/`offline` topic of this gateway (birth and last will).
    pub(crate) fn status_topic(&self) -> String {
        format!("portier/{}/status", self.gateway_id)
    }

    /// The topic every door event of this gateway is published on (not retained).
    pub(crate) fn events_topic(&self) -> String {
        format!("portier/{}/events", self.gateway_id)
    }

    /// The topic prefix of one unit's states and commands: `portier/<gateway_id>/unit/<unit>`.
    pub(crate) fn unit_topic(&self, unit: &str) -> String {
        format!("portier/{}/unit/{unit}", self.gateway_id)
    }
}

impl Config {
    /// Loads and validates the file, looking up bare secret file names in
    /// `$CREDENTIALS_DIRECTORY` when that is set. Secret files are not opened (see
    /// [`Config::check_secrets`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let credentials = std::env::var_os(CREDENTIALS_DIRECTORY)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from);
        Self::load_with(path, credentials.as_deref())
    }

    /// Like [`Config::load`], with the credentials directory given instead of read from the
    /// environment.
    pub(crate) fn load_with(
        path: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let message = match e.kind() {
                std::io::ErrorKind::NotFound => "configuration file not found".to_owned(),
                _ => format!("cannot read the configuration file: {e}"),
            };
            ConfigErrors(vec![error::file_error(path, message)])
        })?;
        Self::parse(&text, path, credentials_dir)
    }

    /// Validates configuration text as if it were the file at `path` (relative paths resolve
    /// from its folder).
    pub fn parse(
        text: &str,
        path: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Config, ConfigErrors> {
        validate::validate(text, path, credentials_dir).map_err(ConfigErrors)
    }

    /// Checks every secret file the configuration names: present, readable, not empty and not
    /// readable by others; and that the certificate files it names can be opened. Each error
    /// names the key and the file, never a secret's contents.
    pub(crate) fn check_secrets(&self) -> Vec<ConfigError> {
        let secrets = self
            .secret_files()
            .into_iter()
            .map(|(key, file)| (key.to_owned(), read_secret(file).err()));
        let certificates = self
            .certificate_files()
            .into_iter()
            .map(|(key, file)| (key.to_owned(), secrets::check_readable(file).err()));
        let reader_keys =
            self.readers
                .iter()
                .enumerate()
                .filter_map(|(i, reader)| match &reader.source {
                    ReaderSource::Osdp(OsdpLink {
                        scbk_file: Some(file),
                        ..
                    }) => Some((format!("reader[{i}].scbk_file"), read_key(file).err())),
                    _ => None,
                });
        secrets
            .chain(certificates)
            .chain(reader_keys)
            .filter_map(|(key, problem)| {
                let (line, col) = self.key_positions.get(&key).copied().unwrap_or((0, 0));
                Some(ConfigError {
                    file: self.path.clone(),
                    line,
                    col,
                    key,
                    message: problem?.to_string(),
                })
            })
            .collect()
    }

    /// Checks `http.admin_token_file` alone, as [`Config::check_secrets`] would: the daemon
    /// refuses to start with an admin token that others can read (an absent key is fine: the
    /// admin endpoints then answer 401).
    pub(crate) fn check_admin_token(&self) -> Option<ConfigError> {
        let file = self.http.admin_token_file.as_deref()?;
        let problem = read_secret(file).err()?;
        let key = "http.admin_token_file";
        let (line, col) = self.key_positions.get(key).copied().unwrap_or((0, 0));
        Some(ConfigError {
            file: self.path.clone(),
            line,
            col,
            key: key.to_owned(),
            message: problem.to_string(),
        })
    }

    /// The secret files named by the configuration, with their keys.
    pub(crate) fn secret_files(&self) -> Vec<(&'static str, &Path)> {
        let mqtt = self.mqtt.as_ref();
        [
            (
                "http.admin_token_file",
                self.http.admin_token_file.as_deref(),
            ),
            ("http.tls_key_file", self.http.tls_key_file.as_deref()),
            (
                "http.page_password_file",
                self.http.page_password_file.as_deref(),
            ),
            (
                "member_page.client_secret_file",
                self.member_page
                    .as_ref()
                    .map(|m| m.client_secret_file.as_path()),
            ),
            (
                "cobot.client_secret_file",
                self.cobot.client_secret_file.as_deref(),
            ),
            (
                "cobot.access_token_file",
                self.cobot.access_token_file.as_deref(),
            ),
            (
                "mqtt.password_file",
                mqtt.and_then(|m| m.password_file.as_deref()),
            ),
        ]
        .into_iter()
        .filter_map(|(key, file)| Some((key, file?)))
        .collect()
    }

    /// The non-secret files named by the configuration (certificates), with their keys.
    pub(crate) fn certificate_files(&self) -> Vec<(&'static str, &Path)> {
        let mqtt = self.mqtt.as_ref();
        [
            ("http.tls_cert_file", self.http.tls_cert_file.as_deref()),
            ("mqtt.ca_file", mqtt.and_then(|m| m.ca_file.as_deref())),
        ]
        .into_iter()
        .filter_map(|(key, file)| Some((key, file?)))
        .collect()
    }

    /// The lock with this id.
    pub fn lock(&self, id: &str) -> Option<&LockConfig> {
        self.locks.iter().find(|lock| lock.id == id)
    }
}
