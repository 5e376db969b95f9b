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
