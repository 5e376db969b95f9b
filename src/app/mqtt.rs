//! The MQTT side of the daemon: one connection (rumqttc, MQTT 3.1.1, clean session) shared by
//! the readers and the MQTT locks.
//!
//! rumqttc's event loop must be polled all the time, or nothing is sent or received; one task
//! does only that, resubscribes the reader topics after every (re)connect, and hands reader
//! messages to the reader task. Connection errors are retried with jittered backoff (capped at
//! 30 s); decisions never wait for the broker.
//!
//! The reader task handles messages one at a time for what must be ordered — recognising a
//! repeat, parsing, deciding — and then carries each decision out (lock command, then the
//! durable event with the lock's outcome, then the result message) in its own task, so a slow
//! lock never holds up the next card. The client takes packets of over 1 MiB (see
//! `locks::mqtt`), so a large reader payload is answered as malformed rather than dropping the
//! connection that every reader and MQTT lock shares.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::decider::Decider;
use super::readers::{ReaderPayload, ReaderResult, RecentResults, parse_payload};
use crate::access::{Credential, Engine, Request};
use crate::config::ReaderConfig;
use crate::locks::MqttLink;
use crate::store::CredentialKind;

/// A message from a reader topic.
struct ReaderMessage {
    reader: usize,
    payload: Vec<u8>,
    retained: bool,
    /// When the event loop took it from the broker (the receive stage starts).
    received: std::time::Instant,
}

const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Polls the MQTT event loop until shutdown, forwarding reader messages.
pub(crate) async fn run_event_loop(
    mut eventloop: EventLoop,
    link: MqttLink,
    readers: Arc<Vec<ReaderConfig>>,
    engine: Arc<Engine>,
    decider: Decider,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = link.client().clone();
    let (tx, rx) = mpsc::channel(256);
    let reader_task = tokio::spawn(run_readers(
        rx,
        client.clone(),
        Arc::clone(&readers),
        engine,
        decider,
    ));
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
                let message = ReaderMessage {
                    reader,
                    payload: publish.payload.to_vec(),
                    retained: publish.retain,
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
    drop(tx);
    // The reader task ends when the channel closes; in-flight decisions finish their writes.
    let _ = tokio::time::timeout(Duration::from_secs(5), reader_task).await;
    let _ = client.try_disconnect();
}

/// Handles reader messages in order, and answers the watchdog's self-checks between them.
async fn run_readers(
    mut messages: mpsc::Receiver<ReaderMessage>,
    client: AsyncClient,
    readers: Arc<Vec<ReaderConfig>>,
    engine: Arc<Engine>,
    mut decider: Decider,
) {
    let mut recent = RecentResults::default();
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let message = tokio::select! {
            message = messages.recv() => match message {
                Some(message) => message,
                None => break,
            },
            Some(probe) = decider.next_probe() => {
                decider.answer(probe);
                continue;
            }
        };
        let Some(reader) = readers.get(message.reader) else {
            continue;
        };
        if message.retained {
            // A stored message replayed by the broker: never acted on, no result message.
            let refused = engine.refuse(
                &reader.unit,
                CredentialKind::Card,
                Some(&reader.id),
                "stale reader message: a retained message replayed by the broker is never acted on"
                    .into(),
            );
            let engine = Arc::clone(&engine);
            in_flight.spawn(async move {
                let _ = engine.carry_out(refused).await;
            });
            continue;
        }
        let now = Instant::now();
        let result_topic = format!("{}/result", reader.topic);
        if let Some(mut previous) = recent.repeat(message.reader, &message.payload, now) {
            // The first one's answer, once its event is durable (it may still be at the lock).
            let client = client.clone();
            in_flight.spawn(async move {
                if let Ok(result) = previous.wait_for(Option::is_some).await
                    && let Some(result) = result.as_ref()
                {
                    publish_result(&client, &result_topic, result);
                }
            });
            continue;
        }
        let parsed = parse_payload(&message.payload, crate::clock::now());
        engine.record_stage("receive", message.received);
        let decided = match parsed {
            ReaderPayload::Card(card) => {
                let request = Request {
                    unit: reader.unit.clone(),
                    credential: Credential::Card(card),
                    reader: Some(reader.id.clone()),
                };
                match engine.decide(&request) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!(reader = %reader.id, error = ?e, "reader's unit cannot be decided");
                        continue;
                    }
                }
            }
            ReaderPayload::Malformed(reason)
            | ReaderPayload::Stale(reason)
            | ReaderPayload::ClockSkew(reason) => {
                engine.refuse(&reader.unit, CredentialKind::Card, Some(&reader.id), reason)
            }
        };
        let answer = recent.remember(message.reader, &message.payload, now);
        let (engine, client) = (Arc::clone(&engine), client.clone());
        in_flight.spawn(async move {
            // Stages: actuate, persist (in carry_out), then publish. The reader hears the
            // answer only once the event is durable (or failed to be: that is logged, and the
            // reader still learns whether the door opened).
            let outcome = engine.carry_out(decided).await;
            let event = outcome.event;
            let result = ReaderResult {
                granted: event.granted,
                unit: event.unit,
                reason: event.reason,
                decision_id: event.decision_id,
                opened: event.opened,
                lock_error: event.lock_error,
            };
            answer.send_replace(Some(result.clone()));
            let publishing = crate::clock::instant();
            publish_result(&client, &result_topic, &result);
            engine.record_stage("publish", publishing);
        });
        // Reap finished tasks so the set does not grow.
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

fn publish_result(client: &AsyncClient, topic: &str, result: &ReaderResult) {
    let payload = match serde_json::to_vec(result) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a reader result");
            return;
        }
    };
    // Never retained: a result is for the swipe that caused it, not for a later subscriber.
    if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
        tracing::warn!(%topic, error = %e, "cannot publish the reader result");
    }
}
