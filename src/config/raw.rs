//! The configuration file as written: serde structs that mirror the TOML tables one to one.
//!
//! Every field is optional here, even required ones, so that a missing key becomes one error in
//! the list (naming the key) rather than stopping deserialisation at the first gap. Integers are
//! read as `i64` and checked for range in `validate`, for the same reason. Unknown keys are not
//! denied by serde; `validate` collects them all with `serde_ignored`. Nothing here checks
//! meaning: that is `validate`'s job.

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawConfig {
    pub site: Option<RawSite>,
    pub http: Option<RawHttp>,
    pub cobot: Option<RawCobot>,
    pub offline: Option<RawOffline>,
    pub events: Option<RawEvents>,
    pub mqtt: Option<RawMqtt>,
    #[serde(default, rename = "group")]
    pub groups: Vec<RawGroup>,
    #[serde(default, rename = "assignment")]
    pub assignments: Vec<RawAssignment>,
    #[serde(default, rename = "unit")]
    pub units: Vec<RawUnit>,
    #[serde(default, rename = "permission")]
    pub permissions: Vec<RawPermission>,
    #[serde(default, rename = "holiday")]
    pub holidays: Vec<RawHoliday>,
    #[serde(default, rename = "override")]
    pub overrides: Vec<RawOverride>,
    #[serde(default, rename = "lock")]
    pub locks: Vec<RawLock>,
    #[serde(default, rename = "reader")]
    pub readers: Vec<RawReader>,
    #[serde(default, rename = "sensor")]
    pub sensors: Vec<RawSensor>,
    pub lockdown: Option<RawLockdown>,
    pub homeassistant: Option<RawHomeAssistant>,
    pub member_page: Option<RawMemberPage>,
}

/// `[member_page]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawMemberPage {
    pub enabled: Option<bool>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub public_url: Option<String>,
    pub session_ttl: Option<String>,
}

/// `[homeassistant]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHomeAssistant {
    pub prefix: Option<String>,
    pub commands: Option<bool>,
}

/// `[lockdown]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLockdown {
    pub allow_groups: Option<Vec<String>>,
}

/// `[site]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSite {
    pub name: Option<String>,
    pub gateway_id: Option<String>,
    pub timezone: Option<String>,
    pub state_dir: Option<String>,
}

/// `[http]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHttp {
    pub listen: Option<String>,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub admin_token_file: Option<String>,
    pub page_password_file: Option<String>,
}

/// `[cobot]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawCobot {
    pub subdomain: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    pub access_token_file: Option<String>,
    pub api_url: Option<String>,
    pub www_url: Option<String>,
    pub sync_interval: Option<String>,
    pub require_connected_user: Option<bool>,
    pub additional_groups_field: Option<String>,
    pub fallback_plan: Option<String>,
    pub request_timeout: Option<String>,
    pub check_ins: Option<bool>,
    pub max_revoke_ratio: Option<f64>,
    pub max_plan_loss_ratio: Option<f64>,
    pub booking_grace: Option<String>,
    pub booking_horizon: Option<String>,
    pub token_cache_ttl: Option<String>,
}

/// `[offline]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOffline {
    pub max_age: Option<String>,
    pub keep_groups: Option<Vec<String>>,
}

/// `[events]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawEvents {
    pub retention: Option<String>,
}

/// `[mqtt]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawMqtt {
    pub url: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
}

/// `[[group]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawGroup {
    pub id: Option<String>,
    pub name: Option<String>,
}

/// `[[assignment]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawAssignment {
    pub plan: Option<String>,
    pub groups: Option<Vec<String>>,
    pub requires_booking: Option<bool>,
    pub booking_resources: Option<Vec<String>>,
}

/// `[[unit]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawUnit {
    pub id: Option<String>,
    pub parent: Option<String>,
    pub lock: Option<String>,
    pub open_for: Option<String>,
    pub unlocked: Option<Vec<String>>,
    pub held_open_after: Option<String>,
}

/// `[[sensor]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawSensor {
    pub unit: Option<String>,
    pub driver: Option<String>,
    pub topic: Option<String>,
    pub open_payload: Option<String>,
    pub closed_payload: Option<String>,
    pub json_key: Option<String>,
    pub open_value: Option<toml::Value>,
    pub rex_topic: Option<String>,
    pub address: Option<String>,
    pub slave: Option<i64>,
    pub discrete_input: Option<i64>,
    pub open_when: Option<i64>,
    pub poll: Option<String>,
    pub rex_input: Option<i64>,
}

/// `[[permission]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawPermission {
    pub group: Option<String>,
    pub unit: Option<String>,
    pub schedule: Option<Vec<String>>,
}

/// `[[holiday]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawHoliday {
    pub date: Option<String>,
    /// Free text for the reader of the file ("Christmas"); not used.
    #[allow(
        dead_code,
        reason = "documentation for installers, accepted and ignored"
    )]
    pub name: Option<String>,
}

/// `[[override]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawOverride {
    pub member: Option<String>,
    pub add_groups: Option<Vec<String>>,
    pub blocked: Option<bool>,
    pub until: Option<String>,
}

/// `[[lock]]`: the keys of every driver side by side; `locks` checks which belong to `driver`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawLock {
    pub id: Option<String>,
    pub driver: Option<String>,
    // modbus
    pub address: Option<String>,
    pub slave: Option<i64>,
    pub coil: Option<i64>,
    pub register: Option<i64>,
    pub register_value: Option<i64>,
    // mqtt (and ble: unlock_payload, lock_payload as hex)
    pub topic: Option<String>,
    pub unlock_payload: Option<String>,
    pub lock_payload: Option<String>,
    // ble
    pub device: Option<String>,
    pub characteristic: Option<String>,
}

/// `[[reader]]`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawReader {
    pub id: Option<String>,
    pub kind: Option<String>,
    pub unit: Option<String>,
    pub topic: Option<String>,
    pub device: Option<String>,
    pub usb: Option<String>,
    pub enrol: Option<bool>,
    // wiegand
    pub d0: Option<String>,
    pub d1: Option<String>,
    pub chip: Option<String>,
    pub format: Option<RawWiegandFormat>,
    pub credential: Option<String>,
    pub frame_gap: Option<String>,
    pub pin_timeout: Option<String>,
    // osdp
    pub port: Option<String>,
    pub baud: Option<i64>,
    pub address: Option<i64>,
    pub scbk_file: Option<String>,
}

/// A Wiegand reader's `format`: `"auto"`, `"raw"`, or a bit count as a number or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum RawWiegandFormat {
    Bits(i64),
    Text(String),
}
