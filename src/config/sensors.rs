//! `[[sensor]]` → [`SensorConfig`]: door contacts over MQTT or Modbus, one per unit.
//!
//! A key of the other driver is an unknown key, as for locks. `held_open_after` is the unit's
//! (`[[unit]] held_open_after`, default 60 s).

use std::collections::HashMap;
use std::time::Duration;

use super::bounds::Bounds;
use super::checker::Checker;
use super::error::KeyPath;
use super::locks::{modbus_address, topic};
use super::raw::{RawSensor, RawUnit};
use super::variants::Variants;
use super::{ContactPayload, ContactSource, SensorConfig};

/// Default `unit.held_open_after`.
const HELD_OPEN_AFTER: Duration = Duration::from_secs(60);
/// Default `sensor.poll`.
const POLL: Duration = Duration::from_millis(250);

const DRIVERS: Variants = Variants {
    field: "driver",
    called: "driver",
    table: &[
        (
            "mqtt",
            &[
                "topic",
                "open_payload",
                "closed_payload",
                "json_key",
                "open_value",
                "rex_topic",
            ],
        ),
        (
            "modbus",
            &[
                "address",
                "slave",
                "discrete_input",
                "open_when",
                "poll",
                "rex_input",
            ],
        ),
    ],
};

/// Checks every `[[sensor]]`: an existing unit with at most one sensor, and its driver's keys.
pub(crate) fn sensors(
    ck: &mut Checker<'_, '_>,
    raw: &[RawSensor],
    units: &[RawUnit],
) -> Vec<SensorConfig> {
    let mut held_open_after: HashMap<&str, Duration> = HashMap::new();
    for (i, unit) in units.iter().enumerate() {
        let after = ck.duration(
            unit.held_open_after.as_deref(),
            &KeyPath::root("unit").index(i).key("held_open_after"),
            HELD_OPEN_AFTER,
            Bounds::HELD_OPEN_AFTER,
        );
        if let Some(id) = &unit.id {
            held_open_after.insert(id, after);
        }
    }
    let mut first_unit: HashMap<&str, usize> = HashMap::new();
    let mut sensors = Vec::new();
    for (i, sensor) in raw.iter().enumerate() {
        let key = KeyPath::root("sensor").index(i);
        let unit = ck.required(sensor.unit.as_deref(), &key.key("unit"));
        if let Some(unit) = unit {
            if !held_open_after.contains_key(unit) {
                ck.report
                    .error(&key.key("unit"), format!("unknown unit \"{unit}\""));
            } else if let Some(first) = first_unit.insert(unit, i) {
                ck.report.error(
                    &key.key("unit"),
                    format!("unit \"{unit}\" has a sensor already (sensor[{first}])"),
                );
            }
        }
        let contact = contact(ck, sensor, &key);
        if let (Some(unit), Some(contact)) = (unit, contact) {
            sensors.push(SensorConfig {
                unit: unit.to_owned(),
                held_open_after: held_open_after
                    .get(unit)
                    .copied()
                    .unwrap_or(HELD_OPEN_AFTER),
                contact,
            });
        }
    }
    sensors
}

fn contact(ck: &mut Checker<'_, '_>, sensor: &RawSensor, key: &KeyPath) -> Option<ContactSource> {
    let name = ck.required(sensor.driver.as_deref(), &key.key("driver"))?;
    let present = [
        ("topic", sensor.topic.is_some()),
        ("open_payload", sensor.open_payload.is_some()),
        ("closed_payload", sensor.closed_payload.is_some()),
        ("json_key", sensor.json_key.is_some()),
        ("open_value", sensor.open_value.is_some()),
        ("rex_topic", sensor.rex_topic.is_some()),
        ("address", sensor.address.is_some()),
        ("slave", sensor.slave.is_some()),
        ("discrete_input", sensor.discrete_input.is_some()),
        ("open_when", sensor.open_when.is_some()),
        ("poll", sensor.poll.is_some()),
        ("rex_input", sensor.rex_input.is_some()),
    ];
    let (name, foreign) = DRIVERS.pick(ck, key, name, &present)?;
    let source = if name == "mqtt" {
        mqtt(ck, sensor, key)
    } else {
        modbus(ck, sensor, key)
    };
    source.filter(|_| !foreign)
}

fn mqtt(ck: &mut Checker<'_, '_>, sensor: &RawSensor, key: &KeyPath) -> Option<ContactSource> {
    let contact_topic = topic(ck, sensor.topic.as_deref(), &key.key("topic"));
    let rex_topic = match &sensor.rex_topic {
        Some(text) => Some(topic(ck, Some(text), &key.key("rex_topic"))?),
        None => None,
    };
    let payload = match (&sensor.json_key, &sensor.open_value) {
        (Some(json_key), Some(value)) => {
            if sensor.open_payload.is_some() || sensor.closed_payload.is_some() {
                ck.report.error(
                    &key.key("json_key"),
                    "either json_key and open_value or open_payload and closed_payload",
                );
                return None;
            }
            let open_value = match value {
                toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
                toml::Value::Integer(n) => serde_json::Value::from(*n),
                toml::Value::String(s) => serde_json::Value::from(s.as_str()),
                other => {
                    ck.report.error(
                        &key.key("open_value"),
                        format!("{other} is not a true/false, number or string"),
                    );
                    return None;
                }
            };
            ContactPayload::Json {
                key: json_key.clone(),
                open_value,
            }
        }
        (Some(_), None) => {
            ck.report.error(
                &key.key("open_value"),
                "required with json_key: the value that means open (zigbee2mqtt's contact: false)",
            );
            return None;
        }
        (None, Some(_)) => {
            ck.report
                .error(&key.key("json_key"), "required with open_value");
            return None;
        }
        (None, None) => {
            let open = sensor.open_payload.clone().unwrap_or_else(|| "open".into());
            let closed = sensor
                .closed_payload
                .clone()
                .unwrap_or_else(|| "closed".into());
            if open.trim().eq_ignore_ascii_case(closed.trim()) {
                ck.report.error(
                    &key.key("closed_payload"),
                    "the same as open_payload: the door's states could not be told apart",
                );
                return None;
            }
            ContactPayload::Plain { open, closed }
        }
    };
    Some(ContactSource::Mqtt {
        topic: contact_topic?,
        payload,
        rex_topic,
    })
}

fn modbus(ck: &mut Checker<'_, '_>, sensor: &RawSensor, key: &KeyPath) -> Option<ContactSource> {
    let address = ck
        .required(sensor.address.as_deref(), &key.key("address"))
        .and_then(|text| {
            let parsed = modbus_address(text);
            if let Err(problem) = &parsed {
                ck.report.error(&key.key("address"), problem.clone());
            }
            parsed.ok()
        });
    let slave = in_range(ck, sensor.slave.unwrap_or(1), &key.key("slave"), 255);
    let input = match sensor.discrete_input {
        Some(n) => in_range(ck, n, &key.key("discrete_input"), 65_535),
        None => {
            ck.report.error(&key.key("discrete_input"), "required");
            None
        }
    };
    let open_when = match sensor.open_when.unwrap_or(1) {
        0 => Some(false),
        1 => Some(true),
        n => {
            ck.report
                .error(&key.key("open_when"), format!("{n} is not 0 or 1"));
            None
        }
    };
    let poll = ck.duration(
        sensor.poll.as_deref(),
        &key.key("poll"),
        POLL,
        Bounds::SENSOR_POLL,
    );
    let rex_input = match sensor.rex_input {
        Some(n) => Some(in_range(ck, n, &key.key("rex_input"), 65_535)?),
        None => None,
    };
    Some(ContactSource::Modbus {
        address: address?,
        slave: u8::try_from(slave?).ok()?,
        input: input?,
        open_when: open_when?,
        poll,
        rex_input,
    })
}

fn in_range(ck: &mut Checker<'_, '_>, value: i64, key: &KeyPath, max: i64) -> Option<u16> {
    match u16::try_from(value) {
        Ok(v) if value <= max => Some(v),
        _ => {
            ck.report
                .error(key, format!("{value} is out of range (0 to {max})"));
            None
        }
    }
}
