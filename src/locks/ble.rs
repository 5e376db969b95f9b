//! Bluetooth LE locks (`driver = "ble"`): write a GATT characteristic to unlock, and the lock
//! payload (if any) after `open_for`.
//!
//! The radio sits behind [`BleBackend`] (connect + write): [`BluerBackend`] talks to BlueZ
//! through bluer; a fake in `fake_ble` (tests only) records writes. A BLE write is not idempotent in
//! general (some locks toggle), so there is **no blind retry**: a failure before anything was
//! written is `Transport` (retry is safe), a GATT error answer is `Refused`, and a write whose
//! outcome is unknown (timeout or disconnect midway) is `Uncertain`, never retried.

use std::sync::Arc;
use std::time::Duration;

use bluer::{AdapterEvent, Address, ErrorKind, Uuid};
use futures_util::StreamExt;

use super::pulse::{Actuator, Pulse};
use super::{BoxFuture, Command, LockError};

/// Longest wait to find and connect the device and resolve its services.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one characteristic write.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);
/// Outer bound on a whole backend call, in case a backend forgets its own timeouts.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a BLE write failed, split by what the caller may do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BleError {
    /// Nothing was written (no adapter, device not found, connect failed): retry is safe.
    #[error("nothing written: {0}")]
    NotWritten(String),
    /// The device answered the write with an error (not permitted, bad length, ...).
    #[error("GATT error: {0}")]
    Refused(String),
    /// The write was started and may or may not have reached the device.
    #[error("outcome unknown: {0}")]
    Unknown(String),
}

/// The radio: connect to a device and write one characteristic, once.
pub trait BleBackend: Send + Sync {
    /// Connects to `device` if needed, finds `characteristic` and writes `payload` to it
    /// once. Applies its own timeouts.
    fn write<'a>(
        &'a self,
        device: Address,
        characteristic: Uuid,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), BleError>>;

    /// Whether the radio is there (the health probe: a Bluetooth adapter is present). The
    /// default says yes, for backends without an adapter to look for.
    fn adapter_present(&self) -> BoxFuture<'_, Result<(), BleError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The BlueZ backend: the default adapter of the system's bluetoothd, over D-Bus.
#[derive(Default)]
pub struct BluerBackend {
    session: tokio::sync::OnceCell<bluer::Session>,
}

impl BluerBackend {
    /// A backend that opens its D-Bus session on first use (so a box without Bluetooth only
    /// fails when a BLE lock is actually used).
    pub fn new() -> Self {
        Self::default()
    }

    async fn adapter(&self) -> Result<bluer::Adapter, BleError> {
        let session = self
            .session
            .get_or_try_init(bluer::Session::new)
            .await
            .map_err(|e| BleError::NotWritten(format!("cannot reach bluetoothd: {e}")))?;
        session
            .default_adapter()
            .await
            .map_err(|e| BleError::NotWritten(format!("no Bluetooth adapter: {e}")))
    }

    /// Finds the characteristic, connecting (and discovering the device) first if needed.
    async fn characteristic(
        &self,
        device: Address,
        uuid: Uuid,
    ) -> Result<bluer::gatt::remote::Characteristic, BleError> {
        let not_written =
            |what: &str, e: bluer::Error| BleError::NotWritten(format!("{what}: {e}"));
        let adapter = self.adapter().await?;
        let known = adapter
            .device_addresses()
            .await
            .map_err(|e| not_written("listing devices", e))?;
        if !known.contains(&device) {
            // BlueZ only connects to devices it has seen: scan until this one shows up.
            let events = adapter
                .discover_devices()
                .await
                .map_err(|e| not_written("starting discovery", e))?;
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                if matches!(event, AdapterEvent::DeviceAdded(a) if a == device) {
                    break;
                }
            }
        }
        let dev = adapter
            .device(device)
            .map_err(|e| not_written("device", e))?;
        if !dev.is_connected().await.unwrap_or(false) {
            dev.connect().await.map_err(|e| not_written("connect", e))?;
        }
        for service in dev
            .services()
            .await
            .map_err(|e| not_written("services", e))?
        {
            let chars = service
                .characteristics()
                .await
                .map_err(|e| not_written("characteristics", e))?;
            for ch in chars {
                if ch.uuid().await.ok() == Some(uuid) {
                    return Ok(ch);
                }
            }
        }
        Err(BleError::NotWritten(format!(
            "device {device} has no characteristic {uuid}"
        )))
    }
}

impl BleBackend for BluerBackend {
    fn adapter_present(&self) -> BoxFuture<'_, Result<(), BleError>> {
        Box::pin(async move {
            tokio::time::timeout(super::IO_TIMEOUT, self.adapter())
                .await
                .map_err(|_| {
                    BleError::NotWritten(format!(
                        "bluetoothd did not answer within {:?}",
                        super::IO_TIMEOUT
                    ))
                })?
                .map(drop)
        })
    }

    fn write<'a>(
        &'a self,
        device: Address,
        characteristic: Uuid,
        payload: &'a [u8],
    ) -> BoxFuture<'a, Result<(), BleError>> {
        Box::pin(async move {
            let ch =
                tokio::time::timeout(CONNECT_TIMEOUT, self.characteristic(device, characteristic))
                    .await
                    .map_err(|_| {
                        BleError::NotWritten(format!(
                            "device {device} not connected within {CONNECT_TIMEOUT:?}"
                        ))
                    })??;
            match tokio::time::timeout(WRITE_TIMEOUT, ch.write(payload)).await {
                Err(_) => Err(BleError::Unknown(format!(
                    "write not confirmed within {WRITE_TIMEOUT:?}"
                ))),
                Ok(Err(e)) => Err(classify_write_error(&e.kind, &e.to_string())),
                Ok(Ok(())) => Ok(()),
            }
        })
    }
}

/// Sorts a failed write: errors the device (or BlueZ, before sending) answers are refusals;
/// anything else happened midway and leaves the outcome unknown.
pub(crate) fn classify_write_error(kind: &ErrorKind, message: &str) -> BleError {
    match kind {
        ErrorKind::NotPermitted
        | ErrorKind::NotAuthorized
        | ErrorKind::InvalidLength
        | ErrorKind::InvalidOffset
        | ErrorKind::InvalidArguments
        | ErrorKind::NotSupported => BleError::Refused(message.to_owned()),
        _ => BleError::Unknown(message.to_owned()),
    }
}

/// A lock on Bluetooth LE.
pub struct BleLock {
    pulse: Pulse<BleActuator>,
}

struct BleActuator {
    id: String,
    backend: Arc<dyn BleBackend>,
    device: Address,
    characteristic: Uuid,
    unlock_payload: Vec<u8>,
    lock_payload: Option<Vec<u8>>,
}

/// Parses a lock's device address and characteristic UUID.
pub(crate) fn parse_target(
    id: &str,
    device: &str,
    characteristic: &str,
) -> Result<(Address, Uuid), LockError> {
    let invalid = |detail: String| LockError::Invalid {
        lock: id.to_owned(),
        detail,
    };
    let address = device.parse::<Address>().map_err(|_| {
        invalid(format!(
            "device \"{device}\" is not an address like AA:BB:CC:DD:EE:FF"
        ))
    })?;
    let uuid = Uuid::parse_str(characteristic).map_err(|e| {
        invalid(format!(
            "characteristic \"{characteristic}\" is not a UUID: {e}"
        ))
    })?;
    Ok((address, uuid))
}

impl BleLock {
    /// A BLE lock writing through `backend`; fails if the address or UUID do not parse.
    pub fn new(
        id: &str,
        backend: Arc<dyn BleBackend>,
        device: &str,
        characteristic: &str,
        unlock_payload: Vec<u8>,
        lock_payload: Option<Vec<u8>>,
    ) -> Result<Self, LockError> {
        let (device, characteristic) = parse_target(id, device, characteristic)?;
        if unlock_payload.is_empty() {
            return Err(LockError::Invalid {
                lock: id.to_owned(),
                detail: "unlock_payload is empty".into(),
            });
        }
        Ok(BleLock {
            pulse: Pulse::new(
                id,
                BleActuator {
                    id: id.to_owned(),
                    backend,
                    device,
                    characteristic,
                    unlock_payload,
                    lock_payload,
                },
            ),
        })
    }
}

impl BleActuator {
    async fn write(&self, payload: &[u8]) -> Result<(), LockError> {
        let call = self
            .backend
            .write(self.device, self.characteristic, payload);
        let lock = self.id.clone();
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => Err(LockError::Uncertain {
                lock,
                detail: format!("outcome unknown: no answer within {CALL_TIMEOUT:?}"),
            }),
            Ok(Ok(())) => Ok(()),
            Ok(Err(BleError::NotWritten(detail))) => Err(LockError::Transport { lock, detail }),
            Ok(Err(BleError::Refused(detail))) => Err(LockError::Refused { lock, detail }),
            Ok(Err(BleError::Unknown(detail))) => Err(LockError::Uncertain {
                lock,
                detail: format!("outcome unknown: {detail}"),
            }),
        }
    }
}

impl Actuator for BleActuator {
    fn open<'a>(&'a self, _cmd: &'a Command) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.write(&self.unlock_payload))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(async move {
            match &self.lock_payload {
                Some(payload) => self.write(payload).await,
                None => Ok(()),
            }
        })
    }

    fn has_probe(&self) -> bool {
        true
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(async move {
            self.backend
                .adapter_present()
                .await
                .map_err(|e| LockError::Transport {
                    lock: self.id.clone(),
                    detail: match e {
                        BleError::NotWritten(d) | BleError::Refused(d) | BleError::Unknown(d) => d,
                    },
                })
        })
    }
}

// Everything a lock does goes through its open pulse.
super::pulse::lock_driver_via_pulse!(BleLock);
