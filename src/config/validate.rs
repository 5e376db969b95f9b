//! Stage two of loading: raw TOML → a valid [`Config`], with every error collected.
//!
//! [`validate`] parses the text twice, once into the spanned document (for positions) and once
//! through serde into [`RawConfig`] (collecting unknown keys with `serde_ignored`), then checks
//! each section. A syntax or type error stops there (serde cannot go on); everything else is
//! collected. The shared checks (required keys, durations, dates, ids, paths) are
//! `checker::Checker`'s; the sections of locks and readers are in `locks`, the policy's in
//! `policy`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::DeTable;

use super::bounds::Bounds;
use super::checker::Checker;
use super::error::{ConfigError, KeyPath, Locator, file_error, span_error};
use super::raw::{
    RawCobot, RawConfig, RawHomeAssistant, RawHttp, RawLock, RawMemberPage, RawMqtt, RawReader,
    RawSensor, RawSite,
};
use super::{
    CobotConfig, Config, EventsConfig, HomeAssistantConfig, HttpConfig, MemberPageConfig,
    MqttConfig, SiteConfig, locks, policy, readers, sensors,
};

/// Default `site.state_dir`.
const DEFAULT_STATE_DIR: &str = "/var/lib/portier";
/// Default `http.listen`.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `cobot.www_url`.
const DEFAULT_WWW_URL: &str = "https://www.cobot.me";
const MINUTE: u64 = 60;
const DAY: u64 = 24 * 60 * MINUTE;

/// Validates configuration text that was read from `file`.
pub(crate) fn validate(
    text: &str,
    file: &Path,
    credentials_dir: Option<&Path>,
) -> Result<Config, Vec<ConfigError>> {
    let root = DeTable::parse(text)
        .map_err(|e| vec![span_error(file, text, e.span(), String::new(), e.message())])?;
    if root.get_ref().is_empty() {
        return Err(vec![not_edited_yet(file)]);
    }
    let locator = Locator::new(text, root.into_inner());
    let mut unknown = Vec::new();
    let parsed = toml::Deserializer::parse(text).and_then(|de| {
        serde_ignored::deserialize(de, |path| unknown.push(KeyPath::from_ignored(&path)))
    });
    let mut checker = Checker::new(file, credentials_dir, &locator);
    for key in &unknown {
        checker.report.error(key, "unknown key");
    }
    let raw: RawConfig = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            let key = e
                .span()
                .map(|s| locator.key_at(s.start))
                .unwrap_or_default();
            let mut errors = checker.report.into_errors();
            errors.push(span_error(
                file,
                text,
                e.span(),
                key.to_string(),
                e.message(),
            ));
            return Err(errors);
        }
    };
    checker.config(raw, file)
}

/// The one error for a file with no settings at all (the package installs such a template, so
/// that a fresh install drives no hardware until the installer describes the site).
fn not_edited_yet(file: &Path) -> ConfigError {
    file_error(
        file,
        format!(
            "no settings yet: edit {} (every key is documented in \
             /usr/share/doc/portier/examples/portier.toml), then run `portier check-config`",
            file.display()
        ),
    )
}

impl Checker<'_, '_> {
    fn config(mut self, raw: RawConfig, file: &Path) -> Result<Config, Vec<ConfigError>> {
        let raw_cobot = raw.cobot.unwrap_or_default();
        let site = self.site(raw.site.unwrap_or_default(), &raw_cobot);
        let http = self.http(raw.http.unwrap_or_default());
        let cobot = self.cobot(&raw_cobot);
        let events = EventsConfig {
            retention: self.duration(
                raw.events.and_then(|e| e.retention).as_deref(),
                &KeyPath::root("events").key("retention"),
                Duration::from_secs(90 * DAY),
                Bounds::EVENTS_RETENTION,
            ),
        };
        let locks = locks::locks(&mut self, &raw.locks);
        let sensors = sensors::sensors(&mut self, &raw.sensors, &raw.units);
        let policy_input = policy::PolicyInput {
            timezone: site.timezone,
            cobot: &raw_cobot,
            offline: raw.offline.unwrap_or_default(),
            groups: raw.groups,
            assignments: raw.assignments,
            units: raw.units,
            permissions: raw.permissions,
            holidays: raw.holidays,
            overrides: raw.overrides,
            lockdown: raw.lockdown.unwrap_or_default(),
        };
        let lock_ids = raw.locks.iter().filter_map(|l| l.id.as_deref()).collect();
        let policy = policy::policy(&mut self, policy_input, &lock_ids);
        let readers = readers::readers(&mut self, &raw.readers, &policy.units);
        let mqtt = self.mqtt(raw.mqtt, &site.name, &raw.locks, &raw.readers, &raw.sensors);
        let homeassistant = self.homeassistant(raw.homeassistant, mqtt.is_some());
        let member_page = self.member_page(raw.member_page);

        let report_clean = self.report.is_clean();
        match (cobot, report_clean) {
            (Some(cobot), true) => Ok(Config {
                path: file.to_owned(),
                site,
                http,
                cobot,
                events,
                mqtt,
                locks,
                readers,
                sensors,
                homeassistant,
                member_page,
                policy,
                key_positions: self.key_positions,
            }),
            _ => {
                let mut errors = self.report.into_errors();
                if errors.is_empty() {
                    // Every path to a missing part records an error; this keeps it that way.
                    errors.push(file_error(file, "invalid configuration"));
                }
                Err(errors)
            }
        }
    }

    fn site(&mut self, raw: RawSite, cobot: &RawCobot) -> SiteConfig {
        let key = KeyPath::root("site");
        let timezone = match self.required(raw.timezone.as_deref(), &key.key("timezone")) {
            Some(name) => name.parse::<chrono_tz::Tz>().unwrap_or_else(|_| {
                self.report.error(
                    &key.key("timezone"),
                    format!(
                        "unknown time zone \"{name}\" (use an IANA name like \"Europe/Berlin\")"
                    ),
                );
                chrono_tz::UTC
            }),
            None => chrono_tz::UTC,
        };
        let name = match raw.name {
            Some(name) => self.non_empty(name, &key.key("name")),
            None => cobot
                .subdomain
                .clone()
                .unwrap_or_else(|| "portier".to_owned()),
        };
        let state_dir = match raw.state_dir {
            Some(dir) => self.dir_path(&dir, &key.key("state_dir")),
            None => PathBuf::from(DEFAULT_STATE_DIR),
        };
        let gateway_id = match raw.gateway_id {
            Some(id) => {
                let ok = (1..=32).contains(&id.len())
                    && id.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if !ok {
                    self.report.error(
                        &key.key("gateway_id"),
                        format!(
                            "\"{id}\" is not a gateway id: 1 to 32 of a-z, 0-9, _ and -, like \"co_up_berlin\""
                        ),
                    );
                }
                id
            }
            None => default_gateway_id(&name),
        };
        SiteConfig {
            name,
            gateway_id,
            timezone,
            state_dir,
        }
    }

    fn http(&mut self, raw: RawHttp) -> HttpConfig {
        let key = KeyPath::root("http");
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            self.report.error(
                &key.key("listen"),
                format!("\"{listen_text}\" is not an address like \"127.0.0.1:8080\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 8080))
        });
        match (&raw.tls_cert_file, &raw.tls_key_file) {
            (Some(_), None) => self.report.error(
                &key.key("tls_cert_file"),
                "needs tls_key_file too (TLS takes both or neither)",
            ),
            (None, Some(_)) => self.report.error(
                &key.key("tls_key_file"),
                "needs tls_cert_file too (TLS takes both or neither)",
            ),
            _ => {}
        }
        HttpConfig {
            listen,
            tls_cert_file: self.file_path(raw.tls_cert_file.as_deref(), &key.key("tls_cert_file")),
            tls_key_file: self.file_path(raw.tls_key_file.as_deref(), &key.key("tls_key_file")),
            admin_token_file: self.file_path(
                raw.admin_token_file.as_deref(),
                &key.key("admin_token_file"),
            ),
            page_password_file: self.file_path(
                raw.page_password_file.as_deref(),
                &key.key("page_password_file"),
            ),
        }
    }

    fn cobot(&mut self, raw: &RawCobot) -> Option<CobotConfig> {
        let key = KeyPath::root("cobot");
        let subdomain = raw.subdomain.as_deref().and_then(|sub| {
            let ok = !sub.is_empty()
                && sub.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !sub.starts_with('-')
                && !sub.ends_with('-');
            if !ok {
                self.report.error(
                    &key.key("subdomain"),
                    format!(
                        "\"{sub}\" is not a Cobot subdomain (like \"co-up\" for co-up.cobot.me)"
                    ),
                );
            }
            ok.then(|| sub.to_ascii_lowercase())
        });
        let api_url = match (&raw.api_url, &subdomain) {
            (Some(url), _) => self.http_url(url, &key.key("api_url")),
            (None, Some(sub)) => {
                self.http_url(&format!("https://{sub}.cobot.me"), &key.key("subdomain"))
            }
            (None, None) => {
                if raw.subdomain.is_none() {
                    self.report.error(
                        &key.key("subdomain"),
                        "required (or set cobot.api_url): the space's Cobot subdomain",
                    );
                }
                None
            }
        };
        let www_url = self.http_url(
            raw.www_url.as_deref().unwrap_or(DEFAULT_WWW_URL),
            &key.key("www_url"),
        );
        let mut share = |name: &str, value: Option<f64>, default: f64| {
            let value = value.unwrap_or(default);
            if !(0.0..=1.0).contains(&value) {
                self.report.error(
                    &key.key(name),
                    format!("{value} is not a share between 0 and 1"),
                );
            }
            value
        };
        let max_revoke_ratio = share("max_revoke_ratio", raw.max_revoke_ratio, 0.5);
        let max_plan_loss_ratio = share("max_plan_loss_ratio", raw.max_plan_loss_ratio, 0.2);
        let client_id = raw
            .client_id
            .clone()
            .map(|id| self.non_empty(id, &key.key("client_id")));
        let client_secret_file = self.file_path(
            raw.client_secret_file.as_deref(),
            &key.key("client_secret_file"),
        );
        let access_token_file = self.file_path(
            raw.access_token_file.as_deref(),
            &key.key("access_token_file"),
        );
        let sync_interval = self.duration(
            raw.sync_interval.as_deref(),
            &key.key("sync_interval"),
            Duration::from_secs(5 * MINUTE),
            Bounds::SYNC_INTERVAL,
        );
        let request_timeout = self.duration(
            raw.request_timeout.as_deref(),
            &key.key("request_timeout"),
            Duration::from_secs(30),
            Bounds::REQUEST_TIMEOUT,
        );
        let booking_horizon = self.duration(
            raw.booking_horizon.as_deref(),
            &key.key("booking_horizon"),
            Duration::from_secs(30 * DAY),
            Bounds::BOOKING_HORIZON,
        );
        let token_cache_ttl = self.duration(
            raw.token_cache_ttl.as_deref(),
            &key.key("token_cache_ttl"),
            Duration::from_secs(30 * DAY),
            Bounds::TOKEN_CACHE_TTL,
        );
        Some(CobotConfig {
            subdomain,
            client_id,
            client_secret_file,
            access_token_file,
            api_url: api_url?,
            www_url: www_url?,
            sync_interval,
            request_timeout,
            check_ins: raw.check_ins.unwrap_or(true),
            max_revoke_ratio,
            max_plan_loss_ratio,
            booking_horizon,
            token_cache_ttl,
        })
    }

    fn mqtt(
        &mut self,
        raw: Option<RawMqtt>,
        site_name: &str,
        locks: &[RawLock],
        readers: &[RawReader],
        sensors: &[RawSensor],
    ) -> Option<MqttConfig> {
        let Some(raw) = raw else {
            let mqtt_sensor = sensors
                .iter()
                .position(|s| s.driver.as_deref() == Some("mqtt"));
            let mqtt_lock = locks
                .iter()
                .position(|l| l.driver.as_deref() == Some("mqtt"));
            let mqtt_reader = readers
                .iter()
                .position(|r| r.kind.as_deref().is_none_or(|kind| kind == "mqtt"));
            let needed_by = match (mqtt_lock, mqtt_reader) {
                (Some(i), _) => Some((
                    KeyPath::root("lock").index(i),
                    "an MQTT lock needs the broker",
                )),
                (None, Some(i)) => Some((
                    KeyPath::root("reader").index(i),
                    "MQTT readers talk through the broker",
                )),
                (None, None) => mqtt_sensor.map(|i| {
                    (
                        KeyPath::root("sensor").index(i),
                        "an MQTT door contact talks through the broker",
                    )
                }),
            };
            if let Some((at, reason)) = needed_by {
                self.report
                    .error_at(&KeyPath::root("mqtt"), &at, format!("required: {reason}"));
            }
            return None;
        };
        let key = KeyPath::root("mqtt");
        let url = match self.required(raw.url.as_deref(), &key.key("url")) {
            Some(text) => match url::Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "mqtt" | "mqtts") && url.has_host() => Some(url),
                _ => {
                    self.report.error(
                        &key.key("url"),
                        format!("\"{text}\" is not a broker URL like \"mqtt://127.0.0.1:1883\" or \"mqtts://host:8883\""),
                    );
                    None
                }
            },
            None => None,
        };
        let client_id = match raw.client_id {
            Some(id) => self.non_empty(id, &key.key("client_id")),
            None => format!("portier-{site_name}"),
        };
        Some(MqttConfig {
            url: url?,
            client_id,
            username: raw.username,
            password_file: self.file_path(raw.password_file.as_deref(), &key.key("password_file")),
            ca_file: self.file_path(raw.ca_file.as_deref(), &key.key("ca_file")),
        })
    }
}

impl Checker<'_, '_> {
    fn member_page(&mut self, raw: Option<RawMemberPage>) -> Option<MemberPageConfig> {
        let raw = raw?;
        if !raw.enabled.unwrap_or(false) {
            return None;
        }
        let key = KeyPath::root("member_page");
        let client_id = self
            .required(raw.client_id.as_deref(), &key.key("client_id"))
            .map(str::to_owned);
        let secret = self.required(
            raw.client_secret_file.as_deref(),
            &key.key("client_secret_file"),
        );
        let client_secret_file = match secret {
            Some(text) => self.file_path(Some(text), &key.key("client_secret_file")),
            None => None,
        };
        let public_url = self
            .required(raw.public_url.as_deref(), &key.key("public_url"))
            .map(str::to_owned)
            .and_then(|text| self.http_url(&text, &key.key("public_url")));
        let session_ttl = self.duration(
            raw.session_ttl.as_deref(),
            &key.key("session_ttl"),
            Duration::from_secs(30 * DAY),
            Bounds::SESSION_TTL,
        );
        Some(MemberPageConfig {
            client_id: client_id?,
            client_secret_file: client_secret_file?,
            public_url: public_url?,
            session_ttl,
        })
    }

    fn homeassistant(
        &mut self,
        raw: Option<RawHomeAssistant>,
        has_mqtt: bool,
    ) -> Option<HomeAssistantConfig> {
        let raw = raw?;
        let key = KeyPath::root("homeassistant");
        if !has_mqtt {
            self.report.error_at(
                &KeyPath::root("mqtt"),
                &key,
                "required: Home Assistant discovery talks through the broker",
            );
        }
        let prefix = raw.prefix.unwrap_or_else(|| "homeassistant".to_owned());
        let valid = !prefix.is_empty()
            && prefix.len() <= 64
            && !prefix.starts_with('/')
            && !prefix.ends_with('/')
            && !prefix.contains("//")
            && prefix
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '+' | '#' | '$'));
        if !valid {
            self.report.error(
                &key.key("prefix"),
                format!(
                    "\"{prefix}\" is not a discovery prefix: a topic like \"homeassistant\" \
                     (no wildcards, spaces, or leading or trailing /)"
                ),
            );
        }
        Some(HomeAssistantConfig {
            prefix,
            commands: raw.commands.unwrap_or(false),
        })
    }
}

/// The gateway id a site name gives: lower-cased, every character but a-z, 0-9, `_` and `-`
/// as `_`, at most 32 characters.
fn default_gateway_id(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect()
}
