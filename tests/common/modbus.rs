#![allow(dead_code)] // reason: each test binary uses a different part of the harness
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: test harness: failing loudly is the point

//! A real Modbus TCP server for daemon tests: tokio-modbus's own server, in process on
//! 127.0.0.1, holding coils and registers in memory. It can be stopped (its listener and every
//! connection go away) and started again on the same port, and it can play a gateway whose
//! device behind it does not answer.
//!
//! Use it with `#[path = "common/modbus.rs"] mod modbus;`.

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};

/// The device's memory.
#[derive(Default)]
struct Device {
    coils: HashMap<u16, bool>,
    registers: HashMap<u16, u16>,
    /// Discrete inputs (a door contact, an exit button), set by the test.
    inputs: HashMap<u16, bool>,
    /// Every client address that connected, in order.
    clients: Vec<SocketAddr>,
    /// Answer every request with this exception (e.g. a gateway whose device is gone).
    exception: Option<ExceptionCode>,
}

#[derive(Clone, Default)]
struct Relay(Arc<Mutex<Device>>);

impl Service for Relay {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let mut device = self.0.lock().unwrap();
        if let Some(exception) = device.exception {
            return ready(Err(exception));
        }
        ready(match req {
            Request::WriteSingleCoil(addr, on) => {
                device.coils.insert(addr, on);
                Ok(Response::WriteSingleCoil(addr, on))
            }
            Request::WriteSingleRegister(addr, value) => {
                device.registers.insert(addr, value);
                Ok(Response::WriteSingleRegister(addr, value))
            }
            Request::ReadDiscreteInputs(addr, n) => Ok(Response::ReadDiscreteInputs(
                (addr..addr.saturating_add(n))
                    .map(|a| device.inputs.get(&a).copied().unwrap_or(false))
                    .collect(),
            )),
            Request::ReadCoils(addr, n) => Ok(Response::ReadCoils(
                (addr..addr.saturating_add(n))
                    .map(|a| device.coils.get(&a).copied().unwrap_or(false))
                    .collect(),
            )),
            Request::ReadHoldingRegisters(addr, n) => Ok(Response::ReadHoldingRegisters(
                (addr..addr.saturating_add(n))
                    .map(|a| device.registers.get(&a).copied().unwrap_or(0))
                    .collect(),
            )),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// A Modbus TCP relay on 127.0.0.1.
pub struct ModbusServer {
    relay: Relay,
    /// Where it listens (kept across stop and start).
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl ModbusServer {
    /// Starts a relay on a free port.
    pub async fn start() -> ModbusServer {
        let mut server = ModbusServer {
            relay: Relay::default(),
            addr: "127.0.0.1:0".parse().unwrap(),
            task: None,
        };
        server.serve().await;
        server
    }

    /// `tcp://127.0.0.1:PORT`, for a lock's `address`.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Sets a discrete input (what a door contact or an exit button reads).
    pub fn set_input(&self, addr: u16, on: bool) {
        self.relay.0.lock().unwrap().inputs.insert(addr, on);
    }

    /// The coil's state (`None`: never written).
    pub fn coil(&self, addr: u16) -> Option<bool> {
        self.relay.0.lock().unwrap().coils.get(&addr).copied()
    }

    /// How many connections clients opened so far.
    pub fn connections(&self) -> usize {
        self.relay.0.lock().unwrap().clients.len()
    }

    /// Answers every request with `exception` from now on (`None`: normal answers again).
    pub fn answer_with(&self, exception: Option<ExceptionCode>) {
        self.relay.0.lock().unwrap().exception = exception;
    }

    /// Stops listening and drops every connection: the device is gone.
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Serves again on the same port (after [`ModbusServer::stop`]).
    pub async fn serve(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.expect("bind modbus");
        self.addr = listener.local_addr().unwrap();
        let server = Server::new(listener);
        let relay = self.relay.clone();
        self.task = Some(tokio::spawn(async move {
            let on_connected = |stream, socket_addr| {
                let relay = relay.clone();
                relay.0.lock().unwrap().clients.push(socket_addr);
                async move { accept_tcp_connection(stream, socket_addr, |_| Ok(Some(relay.clone()))) }
            };
            let _ = server.serve(&on_connected, |_err| {}).await;
        }));
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
