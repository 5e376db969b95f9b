//! The reconnect rules, on a real `EventLoop` that never connects: requests are inspected
//! in its `pending` queue after `EventLoop::clean` moves them out of the channel.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions,
    Packet, QoS, Request,
};

use super::*;
use crate::locks::LockError;
use crate::locks::tests::{cmd, permit};
use crate::locks::{Actuation, LockDriver};

const TOPIC: &str = "z2m/side/set";

fn setup() -> (MqttLink, EventLoop, MqttLock) {
    let options = MqttOptions::new("test", "127.0.0.1", 1);
    let (client, eventloop) = AsyncClient::new(options, 16);
    let link = MqttLink::new(client);
    let lock = MqttLock::new(
        "side",
        link.clone(),
        TOPIC,
        r#"{"state":"UNLOCK","id":"{decision_id}"}"#,
        Some(r#"{"state":"LOCK"}"#),
    );
    (link, eventloop, lock)
}

#[allow(clippy::result_large_err)] // reason: mirrors EventLoop::poll's own return type
fn connack() -> Result<Event, ConnectionError> {
    Ok(Event::Incoming(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    ))))
}

fn queued_payloads(eventloop: &mut EventLoop) -> Vec<String> {
    eventloop.clean();
    eventloop
        .pending
        .drain(..)
        .filter_map(|r| match r {
            Request::Publish(p) => {
                assert!(!p.retain, "lock commands are never retained");
                assert_eq!(p.qos, QoS::AtLeastOnce);
                Some(String::from_utf8_lossy(&p.payload).into_owned())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_unlock_is_refused_while_the_broker_is_not_connected() {
    let (_link, mut eventloop, lock) = setup();
    let err = lock
        .unlock(&permit("side", Duration::from_secs(5)), &cmd("d1"))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Transport { .. }), "{err}");
    assert!(queued_payloads(&mut eventloop).is_empty());
}

#[tokio::test]
async fn an_unlock_queued_when_the_connection_drops_is_never_sent_after_the_reconnect() {
    let (link, mut eventloop, lock) = setup();
    link.observe(&mut eventloop, &connack());
    assert!(link.is_up());
    lock.unlock(&permit("side", Duration::from_secs(5)), &cmd("d1"))
        .await
        .unwrap();
    // Another client's request in the same queue is left alone.
    link.client()
        .try_publish("portier/readers/front/result", QoS::AtLeastOnce, false, "r")
        .unwrap();
    link.observe(&mut eventloop, &Err(ConnectionError::NetworkTimeout));
    assert!(!link.is_up());
    assert_eq!(queued_payloads(&mut eventloop), vec!["r".to_owned()]);
    // While down, nothing new gets into the queue to be sent late; and the pulse d1 began
    // is not taken as open (d1 may never have arrived), so d2 is not a mere extension.
    let down = lock
        .unlock(&permit("side", Duration::from_secs(5)), &cmd("d2"))
        .await;
    assert!(matches!(down, Err(LockError::Transport { .. })), "{down:?}");
    link.observe(&mut eventloop, &connack());
    assert!(queued_payloads(&mut eventloop).is_empty());
    // Back up: a new grant inside d1's window sends a fresh unlock.
    let again = lock
        .unlock(&permit("side", Duration::from_secs(5)), &cmd("d3"))
        .await;
    assert_eq!(again, Ok(Actuation::Opened));
    assert_eq!(
        queued_payloads(&mut eventloop),
        vec![r#"{"state":"UNLOCK","id":"d3"}"#.to_owned()]
    );
}

#[tokio::test]
async fn a_relock_caught_in_a_drop_is_sent_again_after_the_reconnect() {
    let (link, mut eventloop, lock) = setup();
    link.observe(&mut eventloop, &connack());
    lock.unlock(&permit("side", Duration::from_secs(5)), &cmd("d1"))
        .await
        .unwrap();
    lock.relock_now().await.unwrap();
    link.observe(&mut eventloop, &Err(ConnectionError::NetworkTimeout));
    assert!(queued_payloads(&mut eventloop).is_empty());
    link.observe(&mut eventloop, &connack());
    assert_eq!(
        queued_payloads(&mut eventloop),
        vec![r#"{"state":"LOCK"}"#.to_owned()]
    );
}

#[tokio::test]
async fn an_mqtt_lock_is_healthy_exactly_while_the_broker_is_connected() {
    let (link, mut eventloop, lock) = setup();
    let down = lock.health();
    assert!(!down.ok, "never connected: {down:?}");
    assert!(down.problem.unwrap().contains("not connected"));
    let err = lock
        .unlock(&permit("side", Duration::from_secs(5)), &cmd("d1"))
        .await
        .unwrap_err();
    assert!(err.is_retryable());

    link.observe(&mut eventloop, &connack());
    let up = lock.health();
    assert!(up.ok, "connected again, the refused unlock is over: {up:?}");
    assert!(up.last_error.is_some());

    link.observe(&mut eventloop, &Err(ConnectionError::NetworkTimeout));
    assert!(!lock.health().ok);
}

#[allow(clippy::result_large_err)] // reason: mirrors EventLoop::poll's own return type
fn written(pkid: u16) -> Result<Event, ConnectionError> {
    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(pkid)))
}

#[allow(clippy::result_large_err)] // reason: mirrors EventLoop::poll's own return type
fn acknowledged(pkid: u16) -> Result<Event, ConnectionError> {
    Ok(Event::Incoming(Packet::PubAck(rumqttc::PubAck::new(pkid))))
}

#[test]
fn a_lock_command_is_reported_acknowledged_by_its_own_puback_whoever_else_publishes() {
    let (link, mut eventloop, _lock) = setup();
    link.observe(&mut eventloop, &connack());
    link.send("portier/readers/front/result", false, b"r".to_vec())
        .unwrap();
    let (_, mut unlock) = link.publish(TOPIC, b"u1".to_vec()).unwrap();
    link.send("portier/gw/unit/front/state", true, b"UNLOCKED".to_vec())
        .unwrap();
    let (_, mut second) = link.publish(TOPIC, b"u2".to_vec()).unwrap();
    // rumqttc writes them in the order they were queued, numbering them.
    for pkid in 1..=4 {
        link.observe(&mut eventloop, &written(pkid));
    }
    link.observe(&mut eventloop, &acknowledged(1));
    link.observe(&mut eventloop, &acknowledged(3));
    assert!(unlock.try_recv().is_err(), "not yet acknowledged");
    link.observe(&mut eventloop, &acknowledged(2));
    assert_eq!(unlock.try_recv(), Ok(()));
    assert!(second.try_recv().is_err());
    link.observe(&mut eventloop, &acknowledged(4));
    assert_eq!(second.try_recv(), Ok(()));
}

#[test]
fn a_drop_ends_every_wait_and_the_line_starts_again_with_what_rumqttc_sends_again() {
    let (link, mut eventloop, _lock) = setup();
    link.observe(&mut eventloop, &connack());
    link.send("portier/readers/front/result", false, b"r".to_vec())
        .unwrap();
    let (_, mut lost) = link.publish(TOPIC, b"u1".to_vec()).unwrap();
    link.observe(&mut eventloop, &Err(ConnectionError::NetworkTimeout));
    // The unlock was dropped from the queue; its wait ends at once.
    assert_eq!(
        lost.try_recv(),
        Err(tokio::sync::oneshot::error::TryRecvError::Closed)
    );
    // rumqttc kept the reader's answer and sends it first after the CONNACK (as with a kept
    // session; with a clean one it drops it and reports nothing for it).
    link.observe(&mut eventloop, &connack());
    let (_, mut unlock) = link.publish(TOPIC, b"u2".to_vec()).unwrap();
    link.observe(&mut eventloop, &written(7));
    link.observe(&mut eventloop, &written(8));
    link.observe(&mut eventloop, &acknowledged(7));
    assert!(unlock.try_recv().is_err());
    link.observe(&mut eventloop, &acknowledged(8));
    assert_eq!(unlock.try_recv(), Ok(()));
}

#[tokio::test]
async fn an_unlock_the_broker_never_acknowledges_returns_after_its_bound_as_sent() {
    let (link, mut eventloop, lock) = setup();
    link.observe(&mut eventloop, &connack());
    let started = tokio::time::Instant::now();
    let done = lock
        .unlock(&permit("side", Duration::from_secs(5)), &cmd("d1"))
        .await
        .unwrap();
    assert_eq!(done, Actuation::Opened);
    assert!(started.elapsed() >= ACK_WAIT);
    assert_eq!(
        queued_payloads(&mut eventloop),
        vec![r#"{"state":"UNLOCK","id":"d1"}"#.to_owned()]
    );
}
