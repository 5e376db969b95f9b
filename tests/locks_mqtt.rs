//! MQTT locks against a real mosquitto on loopback: what a lock receives, when, and what
//! happens when the broker goes away and comes back.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/permit.rs"]
mod permit;

use std::time::Duration;

use mosquitto::{Mosquitto, drive};
use permit::{cmd, permit};
use portier::config::MqttConfig;
use portier::locks::{Actuation, LockDriver, LockError, MqttLock};
use portier::mqtt::{MqttLink, mqtt_client};
use rumqttc::QoS;

const TOPIC: &str = "zigbee2mqtt/side_door/set";
const UNLOCK: &str = r#"{"state":"UNLOCK","decision":"{decision_id}","unit":"{unit}"}"#;
const LOCK: &str = r#"{"state":"LOCK"}"#;
const OPEN_FOR: Duration = Duration::from_millis(200);

/// The daemon's side: a client built by `mqtt_client`, its event loop driven in the
/// background and fed to `MqttLink::observe`, and one MQTT lock on it.
async fn daemon(broker: &Mosquitto) -> (MqttLink, MqttLock) {
    let config = MqttConfig {
        url: broker.url().parse().unwrap(),
        client_id: "portier-test".into(),
        username: None,
        password_file: None,
        ca_file: None,
    };
    let (client, eventloop) = mqtt_client(&config, None, 64).unwrap();
    let link = MqttLink::new(client);
    let observer = link.clone();
    drive(eventloop, move |eventloop, polled| {
        observer.observe(eventloop, polled)
    });
    wait_until(|| link.is_up(), "the link comes up").await;
    let lock = MqttLock::new("side_door", link.clone(), TOPIC, UNLOCK, Some(LOCK));
    (link, lock)
}

async fn wait_until(mut condition: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn text(publish: &rumqttc::Publish) -> String {
    String::from_utf8_lossy(&publish.payload).into_owned()
}

#[tokio::test]
async fn the_unlock_payload_arrives_with_the_decision_id_unretained_at_qos_1_then_the_lock_payload()
{
    let broker = Mosquitto::start().await;
    let (_sub, mut received) = broker.subscriber("door", TOPIC).await;
    let (_link, lock) = daemon(&broker).await;

    let started = portier::clock::instant();
    let outcome = lock
        .unlock(&permit("side_door", OPEN_FOR), &cmd("dec-42"))
        .await;
    assert_eq!(outcome, Ok(Actuation::Opened));

    let unlock = received.next().await;
    assert_eq!(unlock.topic, TOPIC);
    assert_eq!(
        text(&unlock),
        r#"{"state":"UNLOCK","decision":"dec-42","unit":"door"}"#
    );
    assert!(!unlock.retain, "lock commands are never retained");
    assert_eq!(unlock.qos, QoS::AtLeastOnce);

    let relock = received.next().await;
    assert_eq!(text(&relock), LOCK);
    assert!(!relock.retain);
    assert!(started.elapsed() >= OPEN_FOR, "relock only after open_for");
    assert!(received.next_within(OPEN_FOR * 2).await.is_none());
    assert!(lock.health().ok);
}

#[tokio::test]
async fn a_grant_during_the_open_pulse_sends_nothing_new_and_pushes_the_relock_back() {
    let broker = Mosquitto::start().await;
    let (_sub, mut received) = broker.subscriber("door", TOPIC).await;
    let (_link, lock) = daemon(&broker).await;
    let p = permit("side_door", OPEN_FOR);

    lock.unlock(&p, &cmd("d1")).await.unwrap();
    assert!(text(&received.next().await).contains("d1"));
    tokio::time::sleep(OPEN_FOR / 2).await;
    let second = portier::clock::instant();
    assert_eq!(lock.unlock(&p, &cmd("d2")).await, Ok(Actuation::Extended));

    let next = received.next().await;
    assert_eq!(text(&next), LOCK, "no second unlock, only the relock");
    assert!(
        second.elapsed() >= OPEN_FOR,
        "the relock moved to the second grant + open_for"
    );
    assert!(received.next_within(OPEN_FOR * 2).await.is_none());
}

#[tokio::test]
async fn with_the_broker_down_an_unlock_fails_at_once_and_is_not_delivered_when_it_returns() {
    let mut broker = Mosquitto::start().await;
    let (link, lock) = daemon(&broker).await;
    let p = permit("side_door", OPEN_FOR);

    broker.stop();
    wait_until(|| !link.is_up(), "the link notices the broker is gone").await;
    let err = lock.unlock(&p, &cmd("while-down")).await.unwrap_err();
    assert!(matches!(err, LockError::Transport { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(!lock.health().ok);

    broker.restart().await;
    let (_sub, mut received) = broker.subscriber("door", TOPIC).await;
    wait_until(|| link.is_up(), "the link reconnects").await;
    assert!(
        received.next_within(OPEN_FOR * 2).await.is_none(),
        "nothing from the outage is delivered late"
    );

    lock.unlock(&p, &cmd("after")).await.unwrap();
    assert!(text(&received.next().await).contains("after"));
    assert!(lock.health().ok);
}

/// Measures unlock → delivery through the broker against the broker's own publish → deliver
/// round trip through the same client, in the same run (DESIGN's benchmark bar).
#[tokio::test]
async fn an_unlock_reaches_the_lock_within_a_few_broker_round_trips() {
    const ROUNDS: usize = 200;
    let broker = Mosquitto::start().await;
    let (_sub, mut received) = broker.subscriber("door", "#").await;
    let (link, lock) = daemon(&broker).await;
    let p = permit("side_door", Duration::from_secs(5));

    let mut broker_rtt = Vec::with_capacity(ROUNDS);
    let mut unlock_rtt = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let t = portier::clock::instant();
        link.client()
            .publish("bench/raw", QoS::AtLeastOnce, false, "x")
            .await
            .unwrap();
        assert_eq!(text(&received.next().await), "x");
        broker_rtt.push(t.elapsed());

        let t = portier::clock::instant();
        lock.unlock(&p, &cmd(&format!("b{i}"))).await.unwrap();
        assert!(text(&received.next().await).contains(&format!("\"b{i}\"")));
        unlock_rtt.push(t.elapsed());
        lock.relock_now().await.unwrap();
        assert_eq!(text(&received.next().await), LOCK);
    }
    let (b50, b99) = percentiles(&mut broker_rtt);
    let (u50, u99) = percentiles(&mut unlock_rtt);
    println!(
        "loopback mosquitto, {ROUNDS} rounds: broker publish→deliver p50 {b50:?} p99 {b99:?}; \
         unlock→deliver p50 {u50:?} p99 {u99:?}"
    );
    // Loose bounds: a delayed-ACK stall (no TCP_NODELAY) would show as ~40 ms.
    assert!(u50 < Duration::from_millis(20), "unlock p50 {u50:?}");
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}
