//! Modbus locks against a real Modbus TCP server (tokio-modbus's own, in process, on
//! 127.0.0.1:0) holding coils and registers in memory. Tests synchronise by polling the
//! server's state with a deadline, never by fixed sleeps.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

#[path = "common/permit.rs"]
mod permit;

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use permit::{cmd, permit};
use portier::config::{ModbusAddress, ModbusTarget};
use portier::locks::{Actuation, LockDriver, LockError, ModbusLock};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};

const OPEN_FOR: Duration = Duration::from_millis(200);
const SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// The device's memory and what it was asked.
#[derive(Default)]
struct Device {
    coils: HashMap<u16, bool>,
    registers: HashMap<u16, u16>,
    /// Every write, in order.
    writes: Vec<(u16, u16)>,
    /// Answer every request with this exception instead.
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
                device.writes.push((addr, u16::from(on)));
                Ok(Response::WriteSingleCoil(addr, on))
            }
            Request::WriteSingleRegister(addr, value) => {
                device.registers.insert(addr, value);
                device.writes.push((addr, value));
                Ok(Response::WriteSingleRegister(addr, value))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

impl Relay {
    fn coil(&self, addr: u16) -> Option<bool> {
        self.0.lock().unwrap().coils.get(&addr).copied()
    }
    fn register(&self, addr: u16) -> Option<u16> {
        self.0.lock().unwrap().registers.get(&addr).copied()
    }
    fn writes(&self) -> Vec<(u16, u16)> {
        self.0.lock().unwrap().writes.clone()
    }
}

/// Serves `relay` on `addr` until the handle is aborted (which also ends its connections).
async fn serve(relay: Relay, addr: SocketAddr) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(listener);
    let task = tokio::spawn(async move {
        let on_connected = |stream, socket_addr| {
            let relay = relay.clone();
            async move { accept_tcp_connection(stream, socket_addr, |_| Ok(Some(relay.clone()))) }
        };
        let _ = server.serve(&on_connected, |_err| {}).await;
    });
    (addr, task)
}

fn lock(addr: SocketAddr, target: ModbusTarget) -> ModbusLock {
    ModbusLock::with_timeout(
        "front_relay",
        ModbusAddress::Tcp(addr.to_string()),
        1,
        target,
        SHORT_TIMEOUT,
    )
}

async fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn a_coil_goes_on_and_off_again_after_open_for() {
    let relay = Relay::default();
    let (addr, _server) = serve(relay.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let lock = lock(addr, ModbusTarget::Coil(3));

    let started = portier::clock::instant();
    let outcome = lock
        .unlock(&permit("front_relay", OPEN_FOR), &cmd("d1"))
        .await;
    assert_eq!(outcome, Ok(Actuation::Opened));
    assert_eq!(
        relay.coil(3),
        Some(true),
        "acknowledged before unlock returns"
    );

    wait_until(|| relay.coil(3) == Some(false), "the coil goes off").await;
    assert!(started.elapsed() >= OPEN_FOR);
    assert_eq!(relay.writes(), vec![(3, 1), (3, 0)]);
    assert!(lock.health().ok);
}

#[tokio::test]
async fn a_register_gets_its_value_then_zero_after_open_for() {
    let relay = Relay::default();
    let (addr, _server) = serve(relay.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let target = ModbusTarget::Register {
        register: 10,
        value: 7,
    };
    let lock = lock(addr, target);

    let started = portier::clock::instant();
    lock.unlock(&permit("front_relay", OPEN_FOR), &cmd("d1"))
        .await
        .unwrap();
    assert_eq!(relay.register(10), Some(7));
    wait_until(
        || relay.register(10) == Some(0),
        "the register goes back to 0",
    )
    .await;
    assert!(started.elapsed() >= OPEN_FOR);
    assert_eq!(relay.writes(), vec![(10, 7), (10, 0)]);
}

#[tokio::test]
async fn a_second_grant_during_the_pulse_does_not_toggle_the_coil_but_extends_the_pulse() {
    let relay = Relay::default();
    let (addr, _server) = serve(relay.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let lock = lock(addr, ModbusTarget::Coil(0));
    let p = permit("front_relay", OPEN_FOR);

    lock.unlock(&p, &cmd("d1")).await.unwrap();
    tokio::time::sleep(OPEN_FOR / 2).await;
    let second = portier::clock::instant();
    assert_eq!(lock.unlock(&p, &cmd("d2")).await, Ok(Actuation::Extended));
    assert_eq!(relay.writes(), vec![(0, 1)], "no second write");

    wait_until(|| relay.coil(0) == Some(false), "the coil goes off").await;
    assert!(
        second.elapsed() >= OPEN_FOR,
        "off only open_for after the second grant"
    );
    assert_eq!(relay.writes(), vec![(0, 1), (0, 0)]);
}

#[tokio::test]
async fn a_modbus_exception_is_a_refusal_that_is_not_retried() {
    let relay = Relay::default();
    relay.0.lock().unwrap().exception = Some(ExceptionCode::IllegalDataAddress);
    let (addr, _server) = serve(relay.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let lock = lock(addr, ModbusTarget::Coil(99));

    let err = lock
        .unlock(&permit("front_relay", OPEN_FOR), &cmd("d1"))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Refused { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("front_relay"));
    assert!(!lock.health().ok);

    // The connection survives a refusal: the next command on it works.
    relay.0.lock().unwrap().exception = None;
    lock.unlock(&permit("front_relay", OPEN_FOR), &cmd("d2"))
        .await
        .unwrap();
    assert_eq!(relay.coil(99), Some(true));
}

#[tokio::test]
async fn with_the_server_down_unlock_is_a_transport_error_and_the_lock_reconnects_when_it_is_back()
{
    let relay = Relay::default();
    let (addr, server) = serve(relay.clone(), "127.0.0.1:0".parse().unwrap()).await;
    let lock = lock(addr, ModbusTarget::Coil(1));
    let p = permit("front_relay", Duration::from_millis(50));
    lock.unlock(&p, &cmd("d1")).await.unwrap();
    wait_until(|| relay.coil(1) == Some(false), "first pulse ends").await;

    server.abort();
    let _ = server.await;
    let err = lock.unlock(&p, &cmd("d2")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        matches!(err, LockError::Transport { .. } | LockError::Timeout { .. }),
        "{err}"
    );
    // Nothing listens now: the reconnect is refused.
    let err = lock.unlock(&p, &cmd("d3")).await.unwrap_err();
    assert!(matches!(err, LockError::Transport { .. }), "{err}");
    assert!(!lock.health().ok);

    let (_addr, _server) = serve(relay.clone(), addr).await;
    assert_eq!(lock.unlock(&p, &cmd("d4")).await, Ok(Actuation::Opened));
    assert_eq!(relay.coil(1), Some(true));
    wait_until(|| relay.coil(1) == Some(false), "second pulse ends").await;
    assert!(lock.health().ok);
}

#[tokio::test]
async fn a_device_that_never_answers_times_out() {
    // Accepts connections and reads nothing back.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let lock = lock(addr, ModbusTarget::Coil(0));
    let started = portier::clock::instant();
    let err = lock
        .unlock(&permit("front_relay", OPEN_FOR), &cmd("d1"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LockError::Timeout {
            lock: "front_relay".into(),
            after: SHORT_TIMEOUT
        }
    );
    assert!(started.elapsed() < SHORT_TIMEOUT * 3);
}
