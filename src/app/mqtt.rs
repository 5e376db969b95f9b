//! The MQTT side of the daemon: one connection (rumqttc, MQTT 3.1.1, clean session) shared by
//! the readers and the MQTT locks.
//!
//! rumqttc's event loop must be polled all the time, or nothing is sent or received; one task
//! does only that, resubscribes the reader topics after every (re)connect, and hands reader
//! messages to the reader loop as frames (`crate::readers`). Connection errors are retried
//! with jittered backoff (capped at 30 s); decisions never wait for the broker. The client
//! takes packets of over 1 MiB (see `locks::mqtt`), so a large reader payload is answered as
//! malformed rather than dropping the connection that every reader and MQTT lock shares.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{Event, EventLoop, Packet, QoS};
use tokio::sync::{mpsc, watch};

use crate::config::ReaderConfig;
use crate::locks::MqttLink;
use crate::readers::Frame;

const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Polls the MQTT event loop until shutdown, forwarding reader messages as frames (a reader's
/// index in `readers` is its index in the reader loop's table).
pub(crate) async fn run_event_loop(
    mut eventloop: EventLoop,
    link: MqttLink,
    readers: Arc<Vec<ReaderConfig>>,
    tx: mpsc::Sender<Frame>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = link.client().clone();
    let mut failures: u32 = 0;
    loop {
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            _ = shutdown.changed() => break,
        };
        // The MQTT locks learn of every (dis)connection before anything else can happen, so
        // an unlock is never queued for a broker that is gone (see locks::mqtt).
        link.observe(&mut eventloop, &polled);
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!("connected to the MQTT broker");
                for reader in readers.iter() {
                    if let Err(e) = client.try_subscribe(&reader.topic, QoS::AtLeastOnce) {
                        tracing::error!(topic = %reader.topic, error = %e, "cannot subscribe");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let Some(reader) = readers.iter().position(|r| r.topic == publish.topic) else {
                    continue;
                };
                let message = Frame {
                    reader,
                    payload: publish.payload.to_vec(),
                    replayed: publish.retain,
                    received: crate::clock::instant(),
                };
                if tx.send(message).await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_millis(250)
                    .saturating_mul(1u32 << failures.min(7))
                    .min(BACKOFF_CAP)
                    .mul_f64(0.75 + rand::random::<f64>() * 0.5);
                tracing::warn!(error = %e, retry_in = ?wait, "MQTT connection failed");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
    let _ = client.try_disconnect();
}
