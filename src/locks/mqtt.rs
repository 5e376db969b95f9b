//! MQTT locks (`driver = "mqtt"`, e.g. zigbee2mqtt): a lock command topic on the shared broker
//! connection.
//!
//! Commands go through [`MqttLink`] (`crate::mqtt`), which owns the connection and the rules
//! that keep an unlock from being sent late or retained. An unlock returns once the command was
//! handed to the connected client. This file renders payloads and keeps the pulse; it never
//! polls the connection.

use std::sync::atomic::{AtomicU64, Ordering};

use super::pulse::{Actuator, Pulse};
use super::{BoxFuture, Command, LockError};
use crate::mqtt::MqttLink;

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
