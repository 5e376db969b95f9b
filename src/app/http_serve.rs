//! Serving the HTTP router on the listener, plain or TLS, with the limits that keep the API up
//! when connections are idle, slow or hostile (DESIGN.md "Bounds on numbers from outside").
//!
//! - A request's headers must arrive within [`HEADER_TIMEOUT`], also between the requests of a
//!   kept-alive connection; a TLS handshake gets the same time. A connection that sends nothing
//!   (or half a header) is closed then.
//! - At most [`MAX_CONNECTIONS`] connections are served at once. When every slot is taken, the
//!   next accepted connection gets the slot of the oldest connection with no request in flight
//!   (idle, half-open or still handshaking: what fills the slots in an attack), which is closed;
//!   when every connection has a request in flight, it waits (and later ones wait in the
//!   kernel's backlog). So `/healthz` answers while hundreds of idle connections are open, and
//!   the process never runs out of file descriptors (which would also stop it reading its
//!   token files).
//!
//! This module owns the accept loop and the connections; it knows nothing of the routes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum_server::accept::Accept;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// How long a client may take to send a request's headers (and to finish a TLS handshake).
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How many connections are served at once.
pub(crate) const MAX_CONNECTIONS: usize = 512;
/// How long open connections may finish their requests after the daemon is told to stop.
const DRAIN: Duration = Duration::from_secs(5);
/// The pause after a failed accept (out of file descriptors, say), so the loop does not spin.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Plain HTTP or HTTPS.
pub(crate) enum Transport {
    /// Plain HTTP (behind a TLS proxy, or on loopback).
    Plain,
    /// HTTPS with this certificate and key.
    Tls(RustlsConfig),
}

/// Serves `router` on `listener` until `shutdown` turns true (or its sender is gone), then
/// lets open requests finish for a bounded time.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Slots::default());
    let tls = match transport {
        Transport::Plain => None,
        Transport::Tls(config) => {
            Some(RustlsAcceptor::new(config).handshake_timeout(HEADER_TIMEOUT))
        }
    };
    let mut connections = JoinSet::new();
    let mut stop = shutdown.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        while connections.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept an HTTP connection");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let Some(slot) = slots.take(&mut stop).await else {
            break;
        };
        let connection = Connection {
            peer,
            router: router.clone(),
            slot,
            shutdown: shutdown.clone(),
        };
        match &tls {
            None => connections.spawn(connection.serve(tcp)),
            Some(acceptor) => connections.spawn(connection.handshake(acceptor.clone(), tcp)),
        };
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("HTTP connections did not finish in time; closing them");
    }
}

/// One accepted connection and what it needs.
struct Connection {
    peer: SocketAddr,
    router: Router,
    slot: Slot,
    shutdown: watch::Receiver<bool>,
}

impl Connection {
    /// Completes the TLS handshake (unless evicted or stopped first), then serves.
    async fn handshake(mut self, acceptor: RustlsAcceptor, tcp: TcpStream) {
        let evicted = Arc::clone(&self.slot.evict);
        let tls = tokio::select! {
            tls = acceptor.accept(tcp, ()) => tls,
            () = evicted.notified() => return,
            _ = self.shutdown.wait_for(|stop| *stop) => return,
        };
        match tls {
            Ok((stream, _)) => self.serve(stream).await,
            Err(e) => tracing::debug!(peer = %self.peer, error = %e, "TLS handshake failed"),
        }
    }

    /// Serves HTTP/1.1 on `io` until the client closes, the header timeout strikes, or the
    /// connection is evicted or the daemon stops (then after the request in flight).
    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let router = TowerToHyperService::new(self.router.clone());
        let peer = self.peer;
        let slots = Arc::clone(&self.slot.slots);
        let id = self.slot.id;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = Busy::new(Arc::clone(&slots), id);
            let answer = hyper::service::Service::call(&router, request);
            async move {
                let answer = answer.await;
                drop(busy);
                answer
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let evicted = Arc::clone(&self.slot.evict);
        let mut closing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(peer = %peer, error = %e, "HTTP connection ended");
                    }
                    return;
                }
                () = evicted.notified(), if !closing => {
                    // Idle: close now (hyper's graceful shutdown would wait for a header that
                    // may never come). A request that arrived meanwhile is answered first.
                    if !self.slot.busy() {
                        return;
                    }
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                _ = self.shutdown.wait_for(|stop| *stop), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The connections being served, oldest first, with their requests in flight.
#[derive(Default)]
struct Slots {
    table: Mutex<SlotTable>,
    /// A slot was freed or a connection went idle: a waiting accept looks again.
    changed: Notify,
}

#[derive(Default)]
struct SlotTable {
    next_id: u64,
    open: BTreeMap<u64, SlotState>,
}

struct SlotState {
    in_flight: usize,
    evict: Arc<Notify>,
    evicting: bool,
}

/// A taken slot; dropping it (the connection ended) frees it.
struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evict: Arc<Notify>,
}

impl Slot {
    /// True while a request is in flight on the connection.
    fn busy(&self) -> bool {
        self.slots
            .lock()
            .open
            .get(&self.id)
            .is_some_and(|state| state.in_flight > 0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
        self.slots.changed.notify_waiters();
    }
}

/// A request in flight on a connection; it cannot be evicted meanwhile.
struct Busy {
    slots: Arc<Slots>,
    id: u64,
}

impl Busy {
    fn new(slots: Arc<Slots>, id: u64) -> Self {
        if let Some(state) = slots.lock().open.get_mut(&id) {
            state.in_flight += 1;
        }
        Self { slots, id }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(state) = self.slots.lock().open.get_mut(&self.id) {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.slots.changed.notify_waiters();
    }
}

/// What a look at the table found.
enum Look {
    Taken(Slot),
    Wait,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for a new connection: a free one, else the one of the oldest idle connection
    /// once it has closed, else the first one freed. `None` when the daemon stops meanwhile.
    async fn take(self: &Arc<Self>, stop: &mut watch::Receiver<bool>) -> Option<Slot> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Look::Taken(slot) = self.look() {
                return Some(slot);
            }
            tokio::select! {
                () = changed => {}
                _ = stop.wait_for(|stop| *stop) => return None,
            }
        }
    }

    fn look(self: &Arc<Self>) -> Look {
        let mut table = self.lock();
        if table.open.len() < MAX_CONNECTIONS {
            let id = table.next_id;
            table.next_id += 1;
            let evict = Arc::new(Notify::new());
            table.open.insert(
                id,
                SlotState {
                    in_flight: 0,
                    evict: Arc::clone(&evict),
                    evicting: false,
                },
            );
            return Look::Taken(Slot {
                slots: Arc::clone(self),
                id,
                evict,
            });
        }
        // One eviction at a time: the connection being closed frees the slot we wait for.
        if !table.open.values().any(|s| s.evicting && s.in_flight == 0)
            && let Some(oldest_idle) = table
                .open
                .values_mut()
                .find(|s| s.in_flight == 0 && !s.evicting)
        {
            oldest_idle.evicting = true;
            // `notify_one` keeps the wake-up if the connection is not waiting yet.
            oldest_idle.evict.notify_one();
        }
        Look::Wait
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn fill(slots: &Arc<Slots>) -> Vec<Slot> {
        (0..MAX_CONNECTIONS)
            .map(|_| match slots.look() {
                Look::Taken(slot) => slot,
                Look::Wait => panic!("a free slot was refused"),
            })
            .collect()
    }

    fn asked_to_close(slot: &Slot) -> bool {
        slot.evict.notified().now_or_never().is_some()
    }

    #[test]
    fn when_every_slot_is_taken_the_oldest_idle_connection_gives_up_its_slot() {
        let slots = Arc::new(Slots::default());
        let mut open = fill(&slots);
        let _request = Busy::new(Arc::clone(&slots), open[0].id);
        assert!(matches!(slots.look(), Look::Wait));
        assert!(
            !asked_to_close(&open[0]),
            "a connection with a request in flight stays"
        );
        assert!(
            asked_to_close(&open[1]),
            "the oldest idle one is asked to close"
        );
        // One eviction at a time: looking again does not close a second connection.
        assert!(matches!(slots.look(), Look::Wait));
        assert!(!asked_to_close(&open[2]));
        drop(open.remove(1));
        assert!(matches!(slots.look(), Look::Taken(_)));
    }

    #[test]
    fn when_every_connection_has_a_request_in_flight_a_new_one_waits() {
        let slots = Arc::new(Slots::default());
        let open = fill(&slots);
        let requests: Vec<Busy> = open
            .iter()
            .map(|slot| Busy::new(Arc::clone(&slots), slot.id))
            .collect();
        assert!(matches!(slots.look(), Look::Wait));
        assert!(open.iter().all(|slot| !asked_to_close(slot)));
        // The first request to finish leaves an idle connection, which then makes room.
        drop(requests);
        assert!(matches!(slots.look(), Look::Wait));
        assert!(asked_to_close(&open[0]));
    }
}
