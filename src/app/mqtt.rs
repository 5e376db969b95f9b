//! The MQTT side of the daemon: rumqttc, MQTT 3.1.1, clean session. Lock commands and reader
//! results are published on one connection (`mqtt.client_id`, shared by the MQTT locks); reader
//! messages arrive on a second one (`<client_id>-readers`), opened only when readers are
//! configured, which sends nothing but their PUBACKs.
//!
//! Why two: every QoS 1 publish of ours draws a PUBACK from the broker, and the last one of a
//! swipe (the relock's, `open_for` later) is answered by nothing, so our kernel delays its ACK
//! by ~40 ms. A broker with Nagle's algorithm on (mosquitto's default) holds any further small
//! packet on that connection until then: a card arriving on it would wait up to ~40 ms. On the
//! readers' connection the broker only ever sends deliveries, each answered at once by a PUBACK,
//! so nothing of the broker's is left unacknowledged when the next card comes (see
//! BENCHMARKS.md, "Card → lock command over a loopback mosquitto").
//!
//! rumqttc's event loops must be polled all the time, or nothing is sent or received; one task
//! per connection does only that (the readers' one resubscribes the reader topics after every
//! (re)connect and hands reader messages to the reader task). Connection errors are retried
//! with jittered backoff (capped at 30 s); decisions never wait for the broker.
//!
//! The reader task handles messages one at a time for what must be ordered — recognising a
//! repeat, parsing, deciding — and then carries each decision out (lock command, then the
//! durable event with the lock's outcome, then the result message) in its own task, so a slow
//! lock never holds up the next card. The client takes packets of over 1 MiB (see
//! `locks::mqtt`), so a large reader payload is answered as malformed rather than dropping the
//! connection that every reader shares.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::decider::Decider;
use super::doors::{Doors, Presenter};
use super::readers::{ReaderPayload, ReaderResult, RecentResults, parse_payload};
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

/// Polls the MQTT event loops until shutdown: `eventloop` is the connection of the locks and
/// the reader results (`link` observes it), `reader_eventloop` the one reader messages arrive on
/// (`None` when no reader is configured).
pub(crate) async fn run_event_loop(
    mut eventloop: EventLoop,
    reader_eventloop: Option<(MqttLink, EventLoop)>,
    link: MqttLink,
    readers: Arc<Vec<ReaderConfig>>,
    doors: Arc<Doors>,
    decider: Decider,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = link.client().clone();
    let (tx, rx) = mpsc::channel(256);
    let reader_task = tokio::spawn(run_readers(
        rx,
        client.clone(),
        Arc::clone(&readers),
        doors,
        decider,
    ));
    let reader_connection = reader_eventloop.map(|(reader_link, reader_eventloop)| {
        tokio::spawn(run_reader_connection(
            reader_eventloop,
            reader_link,
            Arc::clone(&readers),
            tx.clone(),
            shutdown.clone(),
        ))
    });
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
            }
            Ok(_) => {}
            Err(e) => {
                if !back_off(&mut failures, &e, "", &mut shutdown).await {
                    break;
                }
            }
        }
    }
    // The reader task (which also answers the watchdog's self-checks) ends when the channel
    // closes, once the readers' connection has stopped too; in-flight decisions finish their
    // writes.
    drop(tx);
    if let Some(connection) = reader_connection {
        let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), reader_task).await;
    let _ = client.try_disconnect();
}

/// Polls the readers' connection until shutdown: subscribes the reader topics after every
/// CONNACK and forwards reader messages. rumqttc sends each PUBACK as soon as the message is
/// read, whatever the message turns out to be.
async fn run_reader_connection(
    mut eventloop: EventLoop,
    link: MqttLink,
    readers: Arc<Vec<ReaderConfig>>,
    tx: mpsc::Sender<ReaderMessage>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = link.client().clone();
    let mut failures: u32 = 0;
    loop {
        let polled = tokio::select! {
            polled = eventloop.poll() => polled,
            _ = shutdown.changed() => break,
        };
        // Only for its health: no lock command is ever sent on this connection.
        link.observe(&mut eventloop, &polled);
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!("readers connected to the MQTT broker");
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
                if !back_off(&mut failures, &e, " (readers)", &mut shutdown).await {
                    break;
                }
            }
        }
    }
    let _ = client.try_disconnect();
}

/// Waits before the next connection attempt (jittered, doubling, capped at 30 s); false when
/// shutdown came first.
async fn back_off(
    failures: &mut u32,
    error: &rumqttc::ConnectionError,
    which: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    *failures = failures.saturating_add(1);
    let wait = Duration::from_millis(250)
        .saturating_mul(1u32 << (*failures).min(7))
        .min(BACKOFF_CAP)
        .mul_f64(0.75 + rand::random::<f64>() * 0.5);
    tracing::warn!(%error, retry_in = ?wait, "MQTT connection failed{which}");
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        _ = shutdown.changed() => false,
    }
}

/// Handles reader messages in order, and answers the watchdog's self-checks between them.
async fn run_readers(
    mut messages: mpsc::Receiver<ReaderMessage>,
    client: AsyncClient,
    readers: Arc<Vec<ReaderConfig>>,
    doors: Arc<Doors>,
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
            let mut refused = doors.refusal(
                &reader.unit,
                CredentialKind::Card,
                Some(&reader.id),
                "stale reader message: a retained message replayed by the broker is never acted on"
                    .into(),
            );
            let doors = Arc::clone(&doors);
            in_flight.spawn(async move {
                let _ = doors.carry_out(&mut refused).await;
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
        doors.record_stage("receive", message.received);
        let mut decided = match parsed {
            ReaderPayload::Card(card) => {
                match doors.decide(&reader.unit, Presenter::Card(&card), Some(&reader.id)) {
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
                doors.refusal(&reader.unit, CredentialKind::Card, Some(&reader.id), reason)
            }
        };
        let answer = recent.remember(message.reader, &message.payload, now);
        let (doors, client) = (Arc::clone(&doors), client.clone());
        in_flight.spawn(async move {
            // Stages: actuate, persist (in carry_out), then publish. The reader hears the
            // answer only once the event is durable (or failed to be: that is logged, and the
            // reader still learns whether the door opened).
            let carried = doors.carry_out(&mut decided).await;
            let result = ReaderResult {
                granted: decided.granted,
                unit: decided.unit.clone(),
                reason: decided.reason.clone(),
                decision_id: decided.decision_id.clone(),
                opened: carried.opened(),
                lock_error: carried.lock_error().map(str::to_owned),
            };
            answer.send_replace(Some(result.clone()));
            let publishing = crate::clock::instant();
            publish_result(&client, &result_topic, &result);
            doors.record_stage("publish", publishing);
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
