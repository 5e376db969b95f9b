//! `[[lock]]` → [`LockConfig`], and the MQTT topic and Modbus address checks that readers and
//! door sensors share.
//!
//! A lock's keys depend on its driver ([`Variants`]). Addresses, MACs, UUIDs and hex payloads
//! are parsed here, once, so drivers get values they can use as they are.

use std::collections::HashMap;
use std::path::PathBuf;

use super::checker::{Checker, check_name};
use super::error::KeyPath;
use super::raw::RawLock;
use super::variants::Variants;
use super::{LockConfig, LockDriver, ModbusAddress, ModbusTarget};

/// Modbus TCP's well-known port.
const MODBUS_TCP_PORT: u16 = 502;
/// Default RTU baud rate.
const DEFAULT_BAUD: u32 = 9600;
/// The Bluetooth base UUID a 16-bit short UUID expands into.
const BLE_BASE_UUID_TAIL: &str = "-0000-1000-8000-00805f9b34fb";

/// The drivers and the keys each accepts.
const DRIVERS: Variants = Variants {
    field: "driver",
    called: "driver",
    table: &[
        (
            "modbus",
            &["address", "slave", "coil", "register", "register_value"],
        ),
        ("mqtt", &["topic", "unlock_payload", "lock_payload"]),
        (
            "ble",
            &["device", "characteristic", "unlock_payload", "lock_payload"],
        ),
        ("log", &[]),
    ],
};

/// Checks every `[[lock]]` and returns those that are valid.
pub(crate) fn locks(ck: &mut Checker<'_, '_>, raw: &[RawLock]) -> Vec<LockConfig> {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    let mut locks = Vec::new();
    for (i, lock) in raw.iter().enumerate() {
        let key = KeyPath::root("lock").index(i);
        let id = ck.required(lock.id.as_deref(), &key.key("id"));
        if let Some(id) = id {
            check_name(ck, id, &key.key("id"));
            if let Some(first) = first_index.get(id) {
                ck.report.error(
                    &key.key("id"),
                    format!("duplicate lock id \"{id}\" (also lock[{first}])"),
                );
            } else {
                first_index.insert(id, i);
            }
        }
        let driver = lock_driver(ck, lock, &key);
        if let (Some(id), Some(driver)) = (id, driver) {
            locks.push(LockConfig {
                id: id.to_owned(),
                driver,
            });
        }
    }
    locks
}

fn lock_driver(ck: &mut Checker<'_, '_>, lock: &RawLock, key: &KeyPath) -> Option<LockDriver> {
    let name = ck.required(lock.driver.as_deref(), &key.key("driver"))?;
    let present = [
        ("address", lock.address.is_some()),
        ("slave", lock.slave.is_some()),
        ("coil", lock.coil.is_some()),
        ("register", lock.register.is_some()),
        ("register_value", lock.register_value.is_some()),
        ("topic", lock.topic.is_some()),
        ("unlock_payload", lock.unlock_payload.is_some()),
        ("lock_payload", lock.lock_payload.is_some()),
        ("device", lock.device.is_some()),
        ("characteristic", lock.characteristic.is_some()),
    ];
    let (name, foreign) = DRIVERS.pick(ck, key, name, &present)?;
    let driver = match name {
        "modbus" => modbus(ck, lock, key),
        "mqtt" => mqtt(ck, lock, key),
        "ble" => ble(ck, lock, key),
        _ => Some(LockDriver::Log),
    };
    driver.filter(|_| !foreign)
}

fn modbus(ck: &mut Checker<'_, '_>, lock: &RawLock, key: &KeyPath) -> Option<LockDriver> {
    let address = ck
        .required(lock.address.as_deref(), &key.key("address"))
        .and_then(|text| {
            let parsed = modbus_address(text);
            if let Err(problem) = &parsed {
                ck.report.error(&key.key("address"), problem.clone());
            }
            parsed.ok()
        });
    let slave = int_in_range(
        ck,
        lock.slave.unwrap_or(1),
        &key.key("slave"),
        u8::MAX.into(),
    );
    let register_value = lock.register_value.unwrap_or(1);
    let target = match (lock.coil, lock.register) {
        (Some(coil), None) => {
            if lock.register_value.is_some() {
                ck.report
                    .error(&key.key("register_value"), "goes with register, not coil");
            }
            int_in_range(ck, coil, &key.key("coil"), u16::MAX.into()).map(ModbusTarget::Coil)
        }
        (None, Some(register)) => {
            let register = int_in_range(ck, register, &key.key("register"), u16::MAX.into());
            let value = int_in_range(
                ck,
                register_value,
                &key.key("register_value"),
                u16::MAX.into(),
            );
            register
                .zip(value)
                .map(|(register, value)| ModbusTarget::Register { register, value })
        }
        (Some(_), Some(_)) => {
            ck.report
                .error(&key.key("register"), "give coil or register, not both");
            None
        }
        (None, None) => {
            ck.report.error(
                &key.key("coil"),
                "required: coil or register (what to switch)",
            );
            None
        }
    };
    Some(LockDriver::Modbus {
        address: address?,
        slave: u8::try_from(slave?).ok()?,
        target: target?,
    })
}

/// An integer in `0..=max`, as `u16` (`slave` narrows it further to `u8`).
fn int_in_range(ck: &mut Checker<'_, '_>, value: i64, key: &KeyPath, max: i64) -> Option<u16> {
    match u16::try_from(value) {
        Ok(v) if value <= max => Some(v),
        _ => {
            ck.report
                .error(key, format!("{value} is out of range (0 to {max})"));
            None
        }
    }
}

/// Parses `tcp://host[:port]` or `rtu:///dev/ttyUSB0[?baud=9600]`.
pub(crate) fn modbus_address(text: &str) -> Result<ModbusAddress, String> {
    let shape = || {
        format!(
            "\"{text}\" is not a Modbus address like \"tcp://127.0.0.1:502\" or \"rtu:///dev/ttyUSB0?baud=9600\""
        )
    };
    let url = url::Url::parse(text).map_err(|_| shape())?;
    match url.scheme() {
        "tcp" => {
            let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(shape)?;
            if !matches!(url.path(), "" | "/") || url.query().is_some() {
                return Err(shape());
            }
            let port = url.port().unwrap_or(MODBUS_TCP_PORT);
            Ok(ModbusAddress::Tcp(format!("{host}:{port}")))
        }
        "rtu" => {
            if url.host_str().is_some_and(|h| !h.is_empty()) || matches!(url.path(), "" | "/") {
                return Err(format!(
                    "\"{text}\" needs the serial device's full path after rtu://, like \"rtu:///dev/ttyUSB0\""
                ));
            }
            let mut baud = DEFAULT_BAUD;
            for (name, value) in url.query_pairs() {
                match name.as_ref() {
                    "baud" => {
                        baud = value.parse().ok().filter(|b| *b > 0).ok_or_else(|| {
                            format!("baud \"{value}\" is not a baud rate like 9600")
                        })?
                    }
                    other => {
                        return Err(format!(
                            "unknown setting \"{other}\" in \"{text}\" (only baud)"
                        ));
                    }
                }
            }
            Ok(ModbusAddress::Rtu {
                path: PathBuf::from(url.path()),
                baud,
            })
        }
        _ => Err(shape()),
    }
}

fn mqtt(ck: &mut Checker<'_, '_>, lock: &RawLock, key: &KeyPath) -> Option<LockDriver> {
    let topic = topic(ck, lock.topic.as_deref(), &key.key("topic"));
    let unlock_payload = ck.required(lock.unlock_payload.as_deref(), &key.key("unlock_payload"));
    Some(LockDriver::Mqtt {
        topic: topic?,
        unlock_payload: unlock_payload?.to_owned(),
        lock_payload: lock.lock_payload.clone(),
    })
}

fn ble(ck: &mut Checker<'_, '_>, lock: &RawLock, key: &KeyPath) -> Option<LockDriver> {
    let device = ck
        .required(lock.device.as_deref(), &key.key("device"))
        .and_then(|text| {
            let mac = mac_address(text);
            if mac.is_none() {
                ck.report.error(
                    &key.key("device"),
                    format!("\"{text}\" is not a Bluetooth address like \"AA:BB:CC:DD:EE:FF\""),
                );
            }
            mac
        });
    let characteristic = ck
        .required(lock.characteristic.as_deref(), &key.key("characteristic"))
        .and_then(|text| {
            let uuid = uuid(text);
            if uuid.is_none() {
                ck.report.error(
                    &key.key("characteristic"),
                    format!(
                        "\"{text}\" is not a UUID like \"0000fff1-0000-1000-8000-00805f9b34fb\""
                    ),
                );
            }
            uuid
        });
    let unlock_payload = ck
        .required(lock.unlock_payload.as_deref(), &key.key("unlock_payload"))
        .and_then(|text| hex_payload(ck, text, &key.key("unlock_payload")));
    let lock_payload = match lock.lock_payload.as_deref() {
        Some(text) => Some(hex_payload(ck, text, &key.key("lock_payload"))?),
        None => None,
    };
    Some(LockDriver::Ble {
        device: device?,
        characteristic: characteristic?,
        unlock_payload: unlock_payload?,
        lock_payload,
    })
}

/// `AA:BB:CC:DD:EE:FF` (any case) → upper case.
fn mac_address(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    ok.then(|| text.to_ascii_uppercase())
}

/// A full 128-bit UUID (8-4-4-4-12 hex), or a 16-bit short one (`fff1`) expanded with the
/// Bluetooth base UUID → lower case.
fn uuid(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if lower.len() == 4 && lower.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(format!("0000{lower}{BLE_BASE_UUID_TAIL}"));
    }
    let groups: Vec<&str> = lower.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let ok = lengths == [8, 4, 4, 4, 12]
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()));
    ok.then_some(lower)
}

/// Hex bytes like `"01"` or `"a0ff"` (spaces allowed between bytes).
fn hex_payload(ck: &mut Checker<'_, '_>, text: &str, key: &KeyPath) -> Option<Vec<u8>> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = (!digits.is_empty() && digits.len().is_multiple_of(2))
        .then(|| {
            (0..digits.len())
                .step_by(2)
                .map(|i| {
                    digits
                        .get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
        })
        .flatten();
    if bytes.is_none() {
        ck.report.error(
            key,
            format!("\"{text}\" is not hex bytes like \"01\" or \"a0ff\""),
        );
    }
    bytes
}

/// An MQTT topic to publish or subscribe to exactly: not empty, no wildcards.
pub(super) fn topic(ck: &mut Checker<'_, '_>, text: Option<&str>, key: &KeyPath) -> Option<String> {
    let text = ck.required(text, key)?;
    if text.is_empty() || text.contains(['+', '#', '\0']) {
        ck.report.error(
            key,
            format!(
                "\"{text}\" is not an MQTT topic without wildcards, like \"portier/readers/front\""
            ),
        );
        return None;
    }
    Some(text.to_owned())
}
