//! Modbus locks (`driver = "modbus"`): a relay or door controller on Modbus TCP or RTU.
//!
//! A coil is pulsed (on, wait `open_for`, off); a holding register gets its value, then 0. Each
//! device (address) has one connection, shared by every lock and door contact on it
//! ([`shared_connection`]; devices often take only one or two clients), opened on the first
//! call and dropped after any transport error, so the next call reconnects; each call names
//! its slave. tokio-modbus has no timeouts of its own: every
//! connect and every write here is wrapped in [`IO_TIMEOUT`]. A Modbus exception is the device
//! refusing (`Refused`, the connection is kept); I/O and protocol errors are `Transport`.
//! The health probe reads the same coil or register over the same connection.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_modbus::client::{Context, Reader, Writer, rtu, tcp};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use tokio_serial::SerialPortBuilderExt;

use super::pulse::{Actuator, Pulse};
use super::{BoxFuture, Command, IO_TIMEOUT, LockError};
use crate::config::{ModbusAddress, ModbusTarget};

/// One device's connection slot (empty until first used or after a transport error).
type Slot = tokio::sync::Mutex<Option<Context>>;

/// One device's connection, shared by everyone who talks to it.
pub(crate) type SharedConnection = Arc<Slot>;

/// The connections in use, by device address.
static CONNECTIONS: LazyLock<Mutex<HashMap<String, Weak<Slot>>>> = LazyLock::new(Mutex::default);

/// The connection to the device at `address`: the one already in use by a lock or a door
/// contact there, or a new one. Callers hold its mutex for one request and its answer, name
/// their slave on every request, and drop the connection (`take()`) after a transport error.
pub(crate) fn shared_connection(address: &ModbusAddress) -> SharedConnection {
    let key = format!("{address:?}");
    let mut connections = CONNECTIONS.lock().unwrap_or_else(PoisonError::into_inner);
    connections.retain(|_, weak| weak.strong_count() > 0);
    if let Some(existing) = connections.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    let fresh: SharedConnection = Arc::default();
    connections.insert(key, Arc::downgrade(&fresh));
    fresh
}

/// A lock driven over Modbus.
pub struct ModbusLock {
    pulse: Pulse<ModbusActuator>,
}

struct ModbusActuator {
    id: String,
    address: ModbusAddress,
    slave: u8,
    target: ModbusTarget,
    timeout: Duration,
    /// The device's connection, shared with the other locks and door contacts on it.
    conn: SharedConnection,
}

impl ModbusLock {
    /// A Modbus lock; nothing is connected until the first command.
    pub fn new(id: &str, address: ModbusAddress, slave: u8, target: ModbusTarget) -> Self {
        Self::with_timeout(id, address, slave, target, IO_TIMEOUT)
    }

    /// Like [`ModbusLock::new`] with another per-call timeout (tests use a short one).
    pub fn with_timeout(
        id: &str,
        address: ModbusAddress,
        slave: u8,
        target: ModbusTarget,
        timeout: Duration,
    ) -> Self {
        let address_for_conn = address.clone();
        ModbusLock {
            pulse: Pulse::new(
                id,
                ModbusActuator {
                    id: id.to_owned(),
                    address,
                    slave,
                    target,
                    timeout,
                    conn: shared_connection(&address_for_conn),
                },
            ),
        }
    }
}

impl ModbusActuator {
    fn transport(&self, detail: impl std::fmt::Display) -> LockError {
        LockError::Transport {
            lock: self.id.clone(),
            detail: detail.to_string(),
        }
    }

    fn timed_out(&self) -> LockError {
        LockError::Timeout {
            lock: self.id.clone(),
            after: self.timeout,
        }
    }

    async fn connect(&self) -> Result<Context, LockError> {
        let slave = Slave(self.slave);
        match &self.address {
            ModbusAddress::Tcp(host_port) => {
                // Resolved on every connect, so a name whose address changes keeps working.
                let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(host_port))
                    .await
                {
                    Err(_) => return Err(self.timed_out()),
                    Ok(Err(e)) => return Err(self.transport(format!("connect {host_port}: {e}"))),
                    Ok(Ok(stream)) => stream,
                };
                // Requests are a dozen bytes: without this each write waits for a delayed ACK.
                stream
                    .set_nodelay(true)
                    .map_err(|e| self.transport(format!("TCP_NODELAY on {host_port}: {e}")))?;
                Ok(tcp::attach_slave(stream, slave))
            }
            ModbusAddress::Rtu { path, baud } => {
                let port = tokio_serial::new(path.to_string_lossy(), *baud)
                    .timeout(self.timeout)
                    .open_native_async()
                    .map_err(|e| self.transport(format!("open {}: {e}", path.display())))?;
                Ok(rtu::attach_slave(port, slave))
            }
        }
    }

    /// Writes the open (`on`) or closed level, connecting first if needed.
    async fn write(&self, on: bool) -> Result<(), LockError> {
        let mut conn = self.conn.lock().await;
        let mut ctx = match conn.take() {
            Some(ctx) => ctx,
            None => self.connect().await?,
        };
        ctx.set_slave(Slave(self.slave));
        let call = async {
            match self.target {
                ModbusTarget::Coil(coil) => ctx.write_single_coil(coil, on).await,
                ModbusTarget::Register { register, value } => {
                    ctx.write_single_register(register, if on { value } else { 0 })
                        .await
                }
            }
        };
        let outcome = tokio::time::timeout(self.timeout, call).await;
        match outcome {
            Err(_) => Err(self.timed_out()), // connection dropped: a late answer must not confuse the next call
            Ok(Err(e)) => Err(self.transport(e)),
            Ok(Ok(answer)) => {
                *conn = Some(ctx);
                answer.map_err(|exception| self.refused(exception))
            }
        }
    }

    /// Reads the coil or register (the probe), connecting first if needed. Any answer shows
    /// the device is there, a Modbus exception included (some relays refuse reads), except a
    /// gateway's "target device failed to respond" or "path unavailable": then the gateway
    /// answers but the lock behind it does not.
    async fn read(&self) -> Result<(), LockError> {
        let mut conn = self.conn.lock().await;
        let mut ctx = match conn.take() {
            Some(ctx) => ctx,
            None => self.connect().await?,
        };
        ctx.set_slave(Slave(self.slave));
        let call = async {
            match self.target {
                ModbusTarget::Coil(coil) => ctx.read_coils(coil, 1).await.map(|r| r.err()),
                ModbusTarget::Register { register, .. } => ctx
                    .read_holding_registers(register, 1)
                    .await
                    .map(|r| r.err()),
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(self.timed_out()),
            Ok(Err(e)) => Err(self.transport(e)),
            Ok(Ok(exception)) => {
                *conn = Some(ctx);
                match exception {
                    Some(
                        e @ (ExceptionCode::GatewayPathUnavailable
                        | ExceptionCode::GatewayTargetDevice),
                    ) => Err(self.transport(format!("the Modbus gateway answers: {e}"))),
                    _ => Ok(()),
                }
            }
        }
    }

    fn refused(&self, exception: ExceptionCode) -> LockError {
        LockError::Refused {
            lock: self.id.clone(),
            detail: format!(
                "Modbus exception {exception} (0x{:02X}) from slave {}",
                u8::from(exception),
                self.slave
            ),
        }
    }
}

impl Actuator for ModbusActuator {
    fn open<'a>(&'a self, _cmd: &'a Command) -> BoxFuture<'a, Result<(), LockError>> {
        Box::pin(self.write(true))
    }

    fn close(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(self.write(false))
    }

    fn has_probe(&self) -> bool {
        true
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), LockError>> {
        Box::pin(self.read())
    }
}

// Everything a lock does goes through its open pulse.
super::pulse::lock_driver_via_pulse!(ModbusLock);
