//! Where door contacts are read: MQTT messages (through the broker connection's [`Topics`])
//! and Modbus discrete inputs (polled). Each hands [`Reading`]s to the doors task; neither
//! judges them.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_modbus::Slave;
use tokio_modbus::client::{Context, Reader, rtu, tcp};
use tokio_modbus::prelude::SlaveContext;

use crate::config::{ContactPayload, ModbusAddress};
use crate::mqtt::{Inbox, Message};

/// What a source saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The contact reads open (`true`) or closed.
    Contact(bool),
    /// The exit button was pressed.
    Exit,
    /// The contact cannot be read, and why (`None`: readable again).
    Problem(Option<String>),
}

/// One reading of one unit's door.
#[derive(Debug)]
pub(crate) struct Reading {
    /// The unit.
    pub unit: String,
    /// What was read.
    pub seen: Seen,
}

/// How a contact payload reads: `Ok(None)` for a message that does not carry the contact
/// (zigbee2mqtt also publishes battery and link quality on the topic), `Err` for one that
/// cannot be read at all.
pub(crate) fn read_payload(payload: &[u8], how: &ContactPayload) -> Result<Option<bool>, String> {
    match how {
        ContactPayload::Plain { open, closed } => {
            let text = std::str::from_utf8(payload)
                .map_err(|_| "the payload is not UTF-8".to_owned())?
                .trim();
            if text.eq_ignore_ascii_case(open.trim()) {
                Ok(Some(true))
            } else if text.eq_ignore_ascii_case(closed.trim()) {
                Ok(Some(false))
            } else {
                Err(format!(
                    "\"{}\" is neither \"{open}\" nor \"{closed}\"",
                    text.chars().take(40).collect::<String>()
                ))
            }
        }
        ContactPayload::Json { key, open_value } => {
            let value: serde_json::Value = serde_json::from_slice(payload)
                .map_err(|e| format!("the payload is not JSON: {e}"))?;
            let object = value
                .as_object()
                .ok_or_else(|| "the payload is not a JSON object".to_owned())?;
            Ok(object.get(key).map(|v| v == open_value))
        }
    }
}

/// Hands a contact topic's messages to the doors task.
pub(crate) struct ContactInbox {
    pub unit: String,
    pub payload: ContactPayload,
    pub tx: mpsc::Sender<Reading>,
}

impl Inbox for ContactInbox {
    fn deliver(&self, message: Message) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            match read_payload(&message.payload, &self.payload) {
                Ok(Some(open)) => self
                    .tx
                    .send(Reading {
                        unit: self.unit.clone(),
                        seen: Seen::Contact(open),
                    })
                    .await
                    .is_ok(),
                Ok(None) => true,
                Err(why) => {
                    tracing::warn!(unit = %self.unit, topic = %message.topic, %why,
                        "door contact message ignored");
                    true
                }
            }
        })
    }
}

/// Hands a request-to-exit topic's messages to the doors task (a replayed, retained one is no
/// one at the door).
pub(crate) struct ExitInbox {
    pub unit: String,
    pub tx: mpsc::Sender<Reading>,
}

impl Inbox for ExitInbox {
    fn deliver(&self, message: Message) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            if message.retained || message.payload.is_empty() {
                return true;
            }
            self.tx
                .send(Reading {
                    unit: self.unit.clone(),
                    seen: Seen::Exit,
                })
                .await
                .is_ok()
        })
    }
}

/// A Modbus contact to poll.
pub(crate) struct ModbusContact {
    pub unit: String,
    pub address: ModbusAddress,
    pub slave: u8,
    pub input: u16,
    pub open_when: bool,
    pub poll: Duration,
    pub rex_input: Option<u16>,
}

/// The longest one read may take.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnects: 500 ms doubling to 30 s, ±25 %.
const RECONNECT: crate::backoff::Backoff = crate::backoff::Backoff {
    first: Duration::from_millis(500),
    cap: Duration::from_secs(30),
    jitter: 0.25,
};

impl ModbusContact {
    /// Polls until `stop` turns true: the contact every `poll` (each change sent), and the exit
    /// input (each press sent once).
    pub(crate) async fn run(self, tx: mpsc::Sender<Reading>, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        let mut last: Option<bool> = None;
        let mut pressed = false;
        // One connection per device: a lock on it shares this one.
        let conn = crate::locks::modbus_connection(&self.address);
        loop {
            let read = {
                let mut ctx = conn.lock().await;
                self.read(&mut ctx).await
            };
            let wait = match read {
                Ok((open, exit)) => {
                    if failures > 0 {
                        tracing::info!(unit = %self.unit, "door contact readable again");
                        if tx.send(self.reading(Seen::Problem(None))).await.is_err() {
                            return;
                        }
                    }
                    failures = 0;
                    if exit && !pressed && tx.send(self.reading(Seen::Exit)).await.is_err() {
                        return;
                    }
                    pressed = exit;
                    if last != Some(open) {
                        last = Some(open);
                        if tx.send(self.reading(Seen::Contact(open))).await.is_err() {
                            return;
                        }
                    }
                    self.poll
                }
                Err(why) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(unit = %self.unit, %why, "cannot read the door contact");
                        let problem = format!(
                            "the door contact of unit \"{}\" cannot be read: {why}",
                            self.unit
                        );
                        if tx
                            .send(self.reading(Seen::Problem(Some(problem))))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    RECONNECT.after(failures)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn reading(&self, seen: Seen) -> Reading {
        Reading {
            unit: self.unit.clone(),
            seen,
        }
    }

    /// One poll: whether the door is open, and whether the exit button is pressed. The
    /// connection is put back only after a good answer.
    async fn read(&self, ctx: &mut Option<Context>) -> Result<(bool, bool), String> {
        let mut connected = match ctx.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        connected.set_slave(Slave(self.slave));
        let read = async {
            let contact = connected
                .read_discrete_inputs(self.input, 1)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("the device refused: {e}"))?;
            let exit = match self.rex_input {
                Some(input) => connected
                    .read_discrete_inputs(input, 1)
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("the device refused: {e}"))?
                    .first()
                    .copied()
                    .unwrap_or(false),
                None => false,
            };
            let value = contact
                .first()
                .copied()
                .ok_or_else(|| "an empty answer".to_owned())?;
            Ok::<_, String>((value == self.open_when, exit))
        };
        let result = tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| format!("no answer within {READ_TIMEOUT:?}"))??;
        *ctx = Some(connected);
        Ok(result)
    }

    async fn connect(&self) -> Result<Context, String> {
        let slave = Slave(self.slave);
        match &self.address {
            ModbusAddress::Tcp(host_port) => {
                let stream = tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(host_port))
                    .await
                    .map_err(|_| format!("connect {host_port}: no answer"))?
                    .map_err(|e| format!("connect {host_port}: {e}"))?;
                let _ = stream.set_nodelay(true);
                Ok(tcp::attach_slave(stream, slave))
            }
            ModbusAddress::Rtu { path, baud } => {
                use tokio_serial::SerialPortBuilderExt;
                let port = tokio_serial::new(path.to_string_lossy(), *baud)
                    .timeout(READ_TIMEOUT)
                    .open_native_async()
                    .map_err(|e| format!("open {}: {e}", path.display()))?;
                Ok(rtu::attach_slave(port, slave))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_json_payloads_read_as_open_closed_or_not_about_the_contact() {
        let plain = ContactPayload::Plain {
            open: "open".into(),
            closed: "closed".into(),
        };
        assert_eq!(read_payload(b" OPEN\n", &plain), Ok(Some(true)));
        assert_eq!(read_payload(b"closed", &plain), Ok(Some(false)));
        assert!(
            read_payload(b"ajar", &plain)
                .unwrap_err()
                .contains("neither")
        );
        assert!(read_payload(&[0xff], &plain).is_err());
        let z2m = ContactPayload::Json {
            key: "contact".into(),
            open_value: serde_json::Value::Bool(false),
        };
        assert_eq!(
            read_payload(br#"{"contact": false, "battery": 90}"#, &z2m),
            Ok(Some(true))
        );
        assert_eq!(read_payload(br#"{"contact": true}"#, &z2m), Ok(Some(false)));
        assert_eq!(read_payload(br#"{"battery": 90}"#, &z2m), Ok(None));
        assert!(read_payload(b"[1]", &z2m).is_err());
        assert!(read_payload(b"{", &z2m).is_err());
    }
}
