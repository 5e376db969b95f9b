//! Door sensors against `portier run`: a zigbee2mqtt-style contact on a real mosquitto with an
//! exit button topic, and a contact on a real Modbus TCP server. Opening with no grant is
//! forced open, opening after a card or an exit request is not, a door left open too long is
//! held open; alarms are published on `portier/<gateway>/events`, shown in health and counted
//! in metrics, and closing ends them. The rules' edges are `doors::watch`'s unit tests.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/modbus.rs"]
mod modbus;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::time::Duration;

use mosquitto::{Mosquitto, Received};
use mqtt_site::{MqttSite, READER_TOPIC};
use portier_fake_cobot::fixtures::ADA_CARD;
use rumqttc::QoS;
use serde_json::Value;

const CONTACT: &str = "zigbee2mqtt/front_contact";
const EXIT: &str = "zigbee2mqtt/front_exit";
const EVENTS: &str = "portier/demo-space/events";

/// The next event on the gateway's topic that is a door sensor's (`closed`, `forced_open`,
/// `held_open`), within `within`.
async fn door_event(events: &mut Received, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let p = events.next_within(left).await?;
        let value: Value = serde_json::from_slice(&p.payload).unwrap();
        if matches!(
            value["event"].as_str(),
            Some("closed" | "forced_open" | "held_open")
        ) {
            return Some(value);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_contact_tells_forced_from_granted_and_exits_and_reports_a_held_door() {
    let broker = Mosquitto::start().await;
    let sensor = format!(
        "[[sensor]]\nunit = \"front_door\"\ndriver = \"mqtt\"\ntopic = \"{CONTACT}\"\n\
         json_key = \"contact\"\nopen_value = false\nrex_topic = \"{EXIT}\"\n"
    );
    let text = mqtt_site::config(&broker, &sensor).replace(
        "open_for = \"300ms\"",
        "open_for = \"300ms\"\nheld_open_after = \"2s\"",
    );
    let s = MqttSite::with_config(common::Site::start().await, broker, &text).await;
    let contact = s.publisher("test-contact").await;
    // The door is closed before the daemon starts: a retained state.
    contact
        .publish(
            CONTACT,
            QoS::AtLeastOnce,
            true,
            r#"{"contact":true,"battery":97}"#,
        )
        .await
        .unwrap();
    let d = s.start_daemon().await;
    let (_e, mut events) = s.broker.subscriber("test-events", EVENTS).await;
    let (_s, mut door_state) = s
        .broker
        .subscriber("test-door", "portier/demo-space/unit/front_door/door")
        .await;
    assert_eq!(door_state.next().await.payload.as_ref(), b"CLOSED");
    let set = |closed: bool| {
        let contact = contact.clone();
        async move {
            contact
                .publish(
                    CONTACT,
                    QoS::AtLeastOnce,
                    false,
                    format!(r#"{{"contact":{closed}}}"#),
                )
                .await
                .unwrap();
        }
    };

    // Opened with no grant: forced open, in health and metrics, until it closes.
    set(false).await;
    let forced = door_event(&mut events, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(forced["event"], "forced_open", "{forced}");
    assert_eq!(forced["unit"], "front_door");
    assert_eq!(door_state.next().await.payload.as_ref(), b"OPEN");
    let (_, health) = d
        .poll("/healthz", Duration::from_secs(5), |_, h| {
            h.to_string().contains("forced open")
        })
        .await;
    assert_eq!(health["status"], "degraded", "{health}");
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("portier_door_alarms_total{unit=\"front_door\",kind=\"forced_open\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portier_door_open{unit=\"front_door\"} 1"),
        "{metrics}"
    );
    set(true).await;
    let closed = door_event(&mut events, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(closed["event"], "closed", "{closed}");
    d.poll("/healthz", Duration::from_secs(5), |_, h| {
        !h.to_string().contains("forced open")
    })
    .await;

    // After a card: no alarm (its pulse is 300 ms; the grace covers a slow door).
    let reader = s.publisher("test-reader").await;
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    mqtt_site::wait_events(&d, 1).await;
    set(false).await;
    // … but left open past held_open_after (2 s): held open.
    let held = door_event(&mut events, Duration::from_secs(6))
        .await
        .unwrap();
    assert_eq!(held["event"], "held_open", "{held}");
    set(true).await;
    assert_eq!(
        door_event(&mut events, Duration::from_secs(5))
            .await
            .unwrap()["event"],
        "closed"
    );

    // The exit button lets one person out.
    contact
        .publish(EXIT, QoS::AtLeastOnce, false, r#"{"action":"single"}"#)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    set(false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    set(true).await;
    assert_eq!(
        door_event(&mut events, Duration::from_secs(5))
            .await
            .unwrap()["event"],
        "closed",
        "an exit is no alarm"
    );
    // Garbage on the contact topic changes nothing.
    contact
        .publish(CONTACT, QoS::AtLeastOnce, false, "not json")
        .await
        .unwrap();
    assert!(
        door_event(&mut events, Duration::from_millis(800))
            .await
            .is_none()
    );
    let metrics = d.metrics().await;
    assert!(
        metrics.contains("portier_door_alarms_total{unit=\"front_door\",kind=\"held_open\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portier_door_alarms_total{unit=\"front_door\",kind=\"forced_open\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_contact_is_polled_and_its_exit_input_lets_one_out() {
    let relay = modbus::ModbusServer::start().await;
    let broker = Mosquitto::start().await;
    let sensor = format!(
        "[[sensor]]\nunit = \"office\"\ndriver = \"modbus\"\naddress = \"{}\"\n\
         discrete_input = 3\nopen_when = 1\npoll = \"50ms\"\nrex_input = 4\n",
        relay.url()
    );
    // The office's lock is a relay on the same device: one connection serves both.
    let text = mqtt_site::config(&broker, &sensor).replace(
        "[[lock]]\nid = \"office_lock\"\ndriver = \"log\"",
        &format!(
            "[[lock]]\nid = \"office_lock\"\ndriver = \"modbus\"\naddress = \"{}\"\ncoil = 7",
            relay.url()
        ),
    );
    assert!(text.contains("coil = 7"), "{text}");
    let s = MqttSite::with_config(common::Site::start().await, broker, &text).await;
    let d = s.start_daemon().await;
    let (_e, mut events) = s.broker.subscriber("test-events", EVENTS).await;
    let (_s, mut door_state) = s
        .broker
        .subscriber("test-door", "portier/demo-space/unit/office/door")
        .await;
    assert_eq!(door_state.next().await.payload.as_ref(), b"CLOSED");

    relay.set_input(3, true);
    let forced = door_event(&mut events, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(forced["event"], "forced_open", "{forced}");
    relay.set_input(3, false);
    assert_eq!(
        door_event(&mut events, Duration::from_secs(5))
            .await
            .unwrap()["event"],
        "closed"
    );

    // The exit button, pressed and let go, then the door opens and closes: no alarm.
    relay.set_input(4, true);
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.set_input(4, false);
    relay.set_input(3, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.set_input(3, false);
    assert_eq!(
        door_event(&mut events, Duration::from_secs(5))
            .await
            .unwrap()["event"],
        "closed",
        "an exit is no alarm"
    );

    // Staff open the office: the relay's coil is written over the contact's connection.
    let (status, body) = d
        .post("/v1/admin/units/office/open", Some(&d.admin_token))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(relay.coil(7), Some(true));
    relay.set_input(3, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    relay.set_input(3, false);
    assert_eq!(
        door_event(&mut events, Duration::from_secs(5))
            .await
            .unwrap()["event"],
        "closed",
        "an opening after a grant is no alarm"
    );
    assert_eq!(relay.connections(), 1, "one connection per device");

    // The device goes away: health names the contact.
    let mut relay = relay;
    relay.stop().await;
    let (_, health) = d
        .poll("/healthz", Duration::from_secs(10), |_, h| {
            h.to_string().contains("door contact")
        })
        .await;
    assert!(health.to_string().contains("cannot be read"), "{health}");
}
