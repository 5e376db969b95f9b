//! Home Assistant MQTT discovery: the retained configs that make the gateway and its doors
//! appear in Home Assistant, the way zigbee2mqtt describes its devices.
//!
//! One device per gateway (`portier_<gateway>`), with `origin` and `configuration_url`. Per
//! unit with a lock: a `lock` entity when `[homeassistant] commands = true` (its commands are
//! audited admin opens), else a `binary_sensor` of device class `lock` that only shows the
//! state; per unit an `event` entity for its door events. For the gateway: sensors for the last
//! sync and the member count, and the lockdown as a `switch` (commands on; it only switches the
//! lockdown on) or a `binary_sensor`. Every entity is available while the gateway's retained
//! status topic says `online`. Topics are `<prefix>/<component>/portier_<gateway>/<object>/config`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::payloads::EVENT_TYPES;
use crate::config::{Config, HomeAssistantConfig};

/// What Home Assistant is sent to press a door's "Open" (a momentary strike: an open pulse).
pub(crate) const OPEN: &str = "OPEN";
/// What Home Assistant sends for "Unlock"; for a strike it is the same pulse as [`OPEN`].
pub(crate) const UNLOCK: &str = "UNLOCK";
/// What Home Assistant sends for "Lock": the strike relocks by itself, so it only asks for the
/// state again.
pub(crate) const LOCK: &str = "LOCK";

/// The discovery node of a gateway: `portier_<gateway_id>`, also the device identifier and the
/// prefix of every `unique_id`.
pub(crate) fn node_id(config: &Config) -> String {
    format!("portier_{}", config.site.gateway_id)
}

/// The filter that matches every discovery config of this gateway, whatever its component.
pub(crate) fn own_configs(ha: &HomeAssistantConfig, node: &str) -> String {
    format!("{}/+/{node}/+/config", ha.prefix)
}

/// A unit id as a discovery object id (`[a-zA-Z0-9_-]`: a `.` becomes `_`).
fn object_id(unit: &str) -> String {
    unit.replace('.', "_")
}

/// Every discovery config of the gateway, by topic, for `config` (empty when Home Assistant
/// is off). `configuration_url` is where the installer page answers.
pub(crate) fn configs(config: &Config, configuration_url: &str) -> BTreeMap<String, Vec<u8>> {
    let Some(ha) = &config.homeassistant else {
        return BTreeMap::new();
    };
    let node = node_id(config);
    let site = &config.site;
    let base = format!("portier/{}", site.gateway_id);
    let common = json!({
        "availability": [{
            "topic": site.status_topic(),
            "payload_available": crate::mqtt::ONLINE,
            "payload_not_available": crate::mqtt::OFFLINE,
        }],
        "device": {
            "identifiers": [node],
            "name": format!("Portier {}", site.name),
            "manufacturer": "Portier",
            "model": "Access gateway",
            "sw_version": env!("CARGO_PKG_VERSION"),
            "configuration_url": configuration_url,
        },
        "origin": {
            "name": "Portier",
            "sw_version": env!("CARGO_PKG_VERSION"),
        },
        "qos": 1,
    });
    let mut out = BTreeMap::new();
    let mut add = |component: &str, object: &str, entity: Value| {
        let mut payload = common.clone();
        if let (Some(target), Value::Object(fields)) = (payload.as_object_mut(), entity) {
            target.extend(fields);
            target.insert("unique_id".into(), json!(format!("{node}_{object}")));
        }
        out.insert(
            format!("{}/{component}/{node}/{object}/config", ha.prefix),
            payload.to_string().into_bytes(),
        );
    };
    for unit in &config.policy.units {
        let object = object_id(&unit.id);
        let topic = site.unit_topic(&unit.id);
        if unit.lock.is_some() {
            let state = format!("{topic}/state");
            if ha.commands {
                add(
                    "lock",
                    &format!("{object}_lock"),
                    json!({
                        "name": unit.id,
                        "command_topic": format!("{topic}/set"),
                        "state_topic": state,
                        "payload_lock": LOCK,
                        "payload_unlock": UNLOCK,
                        "payload_open": OPEN,
                        "state_locked": "LOCKED",
                        "state_unlocked": "UNLOCKED",
                        "state_jammed": "JAMMED",
                        "optimistic": false,
                        "retain": false,
                    }),
                );
            } else {
                add(
                    "binary_sensor",
                    &format!("{object}_lock"),
                    json!({
                        "name": unit.id,
                        "device_class": "lock",
                        "state_topic": state,
                        // On means unlocked: a jammed relock is shown as open, the safe reading.
                        "value_template": "{{ 'OFF' if value == 'LOCKED' else 'ON' }}",
                        "payload_on": "ON",
                        "payload_off": "OFF",
                    }),
                );
            }
        }
        if config.sensors.iter().any(|s| s.unit == unit.id) {
            add(
                "binary_sensor",
                &format!("{object}_door"),
                json!({
                    "name": format!("{} door", unit.id),
                    "device_class": "door",
                    "state_topic": format!("{topic}/door"),
                    "payload_on": "OPEN",
                    "payload_off": "CLOSED",
                }),
            );
        }
        add(
            "event",
            &format!("{object}_event"),
            json!({
                "name": format!("{} events", unit.id),
                "state_topic": format!("{topic}/event"),
                "event_types": EVENT_TYPES,
                "icon": "mdi:door",
            }),
        );
    }
    let sync = format!("{base}/sync");
    add(
        "sensor",
        "last_sync",
        json!({
            "name": "Last sync",
            "state_topic": sync,
            "value_template": "{{ value_json.synced_at }}",
            "device_class": "timestamp",
            "entity_category": "diagnostic",
        }),
    );
    add(
        "sensor",
        "members",
        json!({
            "name": "Members",
            "state_topic": sync,
            "value_template": "{{ value_json.members }}",
            "state_class": "measurement",
            "icon": "mdi:account-group",
        }),
    );
    // The lockdown: shown either way; with commands a switch (its ON is taken, OFF refused).
    let lockdown = format!("{base}/lockdown");
    let mut entity = json!({
        "name": "Lockdown",
        "state_topic": lockdown,
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": lockdown,
        "payload_on": "ON",
        "payload_off": "OFF",
        "icon": "mdi:shield-lock",
    });
    let component = if ha.commands {
        if let Some(fields) = entity.as_object_mut() {
            fields.insert("command_topic".into(), json!(format!("{lockdown}/set")));
            fields.insert("state_on".into(), json!("ON"));
            fields.insert("state_off".into(), json!("OFF"));
            fields.insert("optimistic".into(), json!(false));
            fields.insert("retain".into(), json!(false));
        }
        "switch"
    } else {
        "binary_sensor"
    };
    add(component, "lockdown", entity);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(commands: bool) -> Config {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("portier.toml");
        std::fs::write(
            &path,
            format!(
                r#"
[site]
name = "Co-Up Berlin"
timezone = "Europe/Berlin"
state_dir = "{state}"

[cobot]
subdomain = "co-up"

[mqtt]
url = "mqtt://127.0.0.1:1883"

[homeassistant]
commands = {commands}

[[lock]]
id = "front-lock"
driver = "log"

[[unit]]
id = "front.door"
lock = "front-lock"

[[unit]]
id = "hall"
"#,
                state = dir.path().display()
            ),
        )
        .expect("write");
        Config::load(&path).expect("valid config")
    }

    fn parsed(configs: &BTreeMap<String, Vec<u8>>, topic: &str) -> Value {
        let bytes = configs
            .get(topic)
            .unwrap_or_else(|| panic!("{topic} in {:?}", configs.keys()));
        serde_json::from_slice(bytes).expect("json")
    }

    #[test]
    fn a_lock_entity_with_commands_and_everything_ha_needs() {
        let configs = configs(&config(true), "http://portier.local:8080/");
        let lock = parsed(
            &configs,
            "homeassistant/lock/portier_co-up_berlin/front_door_lock/config",
        );
        assert_eq!(lock["unique_id"], "portier_co-up_berlin_front_door_lock");
        assert_eq!(
            lock["command_topic"],
            "portier/co-up_berlin/unit/front.door/set"
        );
        assert_eq!(
            lock["state_topic"],
            "portier/co-up_berlin/unit/front.door/state"
        );
        assert_eq!(lock["optimistic"], false);
        assert_eq!(lock["payload_open"], "OPEN");
        assert_eq!(
            lock["availability"][0]["topic"],
            "portier/co-up_berlin/status"
        );
        assert_eq!(lock["device"]["identifiers"][0], "portier_co-up_berlin");
        assert_eq!(
            lock["device"]["configuration_url"],
            "http://portier.local:8080/"
        );
        assert_eq!(lock["origin"]["name"], "Portier");
        assert!(lock.get("object_id").is_none(), "deprecated in HA");
        // A unit without a lock has events but no lock.
        assert!(
            !configs.keys().any(|t| t.contains("/hall_lock/")
                || t.contains("binary_sensor/portier_co-up_berlin/front"))
        );
        let event = parsed(
            &configs,
            "homeassistant/event/portier_co-up_berlin/hall_event/config",
        );
        assert_eq!(event["event_types"][0], "granted");
        assert_eq!(event["state_topic"], "portier/co-up_berlin/unit/hall/event");
        let switch = parsed(
            &configs,
            "homeassistant/switch/portier_co-up_berlin/lockdown/config",
        );
        assert_eq!(switch["command_topic"], "portier/co-up_berlin/lockdown/set");
        for (topic, bytes) in &configs {
            let value: Value = serde_json::from_slice(bytes).expect("json");
            let unique = value["unique_id"].as_str().expect("unique_id");
            assert!(unique.starts_with("portier_co-up_berlin_"), "{topic}");
            assert!(value.get("availability").is_some(), "{topic}");
        }
    }

    #[test]
    fn without_commands_nothing_takes_a_command() {
        let configs = configs(&config(false), "http://127.0.0.1:8080/");
        assert!(
            configs
                .keys()
                .all(|t| !t.contains("/lock/") && !t.contains("/switch/"))
        );
        for bytes in configs.values() {
            let value: Value = serde_json::from_slice(bytes).expect("json");
            assert!(value.get("command_topic").is_none());
        }
        let lock = parsed(
            &configs,
            "homeassistant/binary_sensor/portier_co-up_berlin/front_door_lock/config",
        );
        assert_eq!(lock["device_class"], "lock");
    }
}
