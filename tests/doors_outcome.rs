//! The door outcome end to end (`portier run`, real mosquitto, a Modbus lock whose server is
//! gone): the event is written once the lock's outcome is known, the reader result, the HTTP
//! open answers and the events say whether the door opened, and a Cobot check-in is made only
//! for an entry whose door opened (or that was granted at a unit without a lock).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::time::Duration;

use common::{Site, free_port};
use mosquitto::Mosquitto;
use mqtt_site::{LOCK_TOPIC, MqttSite, READER_TOPIC, RESULT_TOPIC, events};
use portier_fake_cobot::fixtures::{ADA, ADA_CARD};
use rumqttc::QoS;
use serde_json::Value;

const OFFICE_READER: &str = "portier/readers/office";

/// The MQTT site, with the office's lock on Modbus TCP at a port nothing listens on, a reader
/// at the office, and a lobby without a lock.
async fn site() -> MqttSite {
    site_with_office_lock_at(free_port()).await
}

/// The same, with the office's Modbus lock at `port` on loopback.
async fn site_with_office_lock_at(dead: u16) -> MqttSite {
    let broker = Mosquitto::start().await;
    let extra = format!(
        "[[reader]]\nid = \"office_reader\"\nunit = \"office\"\ntopic = \"{OFFICE_READER}\"\n\n\
         [[unit]]\nid = \"lobby\"\nparent = \"building\"\n"
    );
    let text = mqtt_site::config(&broker, &extra).replace(
        "[[lock]]\nid = \"office_lock\"\ndriver = \"log\"",
        &format!(
            "[[lock]]\nid = \"office_lock\"\ndriver = \"modbus\"\n\
             address = \"tcp://127.0.0.1:{dead}\"\nslave = 1\ncoil = 0"
        ),
    );
    assert!(text.contains("driver = \"modbus\""), "{text}");
    MqttSite::with_config(Site::start().await, broker, &text).await
}

fn json_of(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).unwrap()
}

async fn check_ins_of(site: &Site, member: &str) -> usize {
    site.cobot
        .check_ins()
        .iter()
        .filter(|c| c.membership_id == member)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_whose_lock_is_unreachable_says_the_door_stayed_shut_and_makes_no_check_in() {
    let s = site().await;
    let d = s.start_daemon().await;
    let (_office_client, mut office_results) = s
        .broker
        .subscriber("test-office-results", &format!("{OFFICE_READER}/result"))
        .await;
    let (_front_client, mut front_results) = s
        .broker
        .subscriber("test-front-results", RESULT_TOPIC)
        .await;
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let reader = s.publisher("test-reader").await;

    // Ada may open the office, but its lock's server is gone.
    // The same card twice: the second arrives while the first still waits at the lock, and
    // gets the first one's answer once that is known.
    for _ in 0..2 {
        reader
            .publish(OFFICE_READER, QoS::AtLeastOnce, false, ADA_CARD)
            .await
            .unwrap();
    }
    let shut = json_of(&office_results.next().await.payload);
    assert_eq!(shut["granted"], true, "{shut}");
    assert_eq!(shut["opened"], false, "{shut}");
    assert_eq!(shut["lock_error"], "unreachable", "{shut}");
    let recorded = events(&d).await;
    assert_eq!(
        recorded.len(),
        1,
        "written once, with the outcome: {recorded:?}"
    );
    assert_eq!(recorded[0]["decision_id"], shut["decision_id"]);
    assert_eq!(recorded[0]["granted"], true);
    assert_eq!(recorded[0]["opened"], false);
    assert_eq!(recorded[0]["lock_error"], "unreachable");
    assert_eq!(
        recorded[0]["check_in"],
        Value::Null,
        "no check-in in the outbox"
    );
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["outbox_depth"], 0, "{status}");

    // The front door's lock works: that entry opens and is the day's one check-in.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    let opened = json_of(&front_results.next().await.payload);
    assert_eq!(opened["granted"], true, "{opened}");
    assert_eq!(opened["opened"], true, "{opened}");
    assert!(opened.get("lock_error").is_none(), "{opened}");
    let command = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&command.payload).contains("UNLOCK"));
    let recorded = events(&d).await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(recorded[1]["opened"], true);
    assert_eq!(recorded[1]["lock_error"], Value::Null);
    assert!(recorded[1]["check_in"].is_object(), "{recorded:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while check_ins_of(&s.site, ADA).await == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(check_ins_of(&s.site, ADA).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_opens_say_whether_the_door_opened() {
    let s = site().await;
    let d = s.start_daemon().await;
    let ada = format!("app-{ADA}");

    let (code, body) = d.post("/v1/units/office/open", Some(&ada)).await;
    assert_eq!(code, 502, "{body}");
    assert_eq!(body["granted"], true, "{body}");
    assert_eq!(body["opened"], false, "{body}");
    assert_eq!(body["lock_error"], "unreachable", "{body}");
    let (code, body) = d
        .post("/v1/admin/units/office/open", Some(&d.admin_token))
        .await;
    assert_eq!(code, 502, "{body}");
    assert_eq!(body["opened"], false, "{body}");
    assert_eq!(body["lock_error"], "unreachable", "{body}");

    let (code, body) = d.post("/v1/units/lobby/open", Some(&ada)).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["granted"], true, "{body}");
    assert_eq!(body["opened"], false, "{body}");
    assert_eq!(body["lock_error"], "no_lock", "{body}");

    let (code, body) = d.post("/v1/units/front_door/open", Some(&ada)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["opened"], true, "{body}");
    assert!(body.get("lock_error").is_none(), "{body}");
    let (code, body) = d
        .post("/v1/admin/units/front_door/open", Some(&d.admin_token))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["opened"], true, "{body}");

    let (code, body) = d
        .post(
            "/v1/units/front_door/open",
            Some(&format!("app-{}", portier_fake_cobot::fixtures::CHARLES)),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["opened"], false, "{body}");
    assert!(body.get("lock_error").is_none(), "{body}");

    let recorded = events(&d).await;
    let outcomes: Vec<(Value, Value)> = recorded
        .iter()
        .map(|e| (e["opened"].clone(), e["lock_error"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (false.into(), "unreachable".into()),
            (false.into(), "unreachable".into()),
            (false.into(), "no_lock".into()),
            (true.into(), Value::Null),
            (true.into(), Value::Null),
            (false.into(), Value::Null),
        ]
    );
    // The failed app open made no check-in; the lobby entry (no lock, granted) did, and it is
    // the day's only one, so the later front door entry made none.
    assert_eq!(recorded[0]["check_in"], Value::Null);
    assert!(recorded[2]["check_in"].is_object(), "{recorded:?}");
    assert_eq!(recorded[3]["check_in"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_never_answers_times_out_and_the_result_says_so_also_to_a_repeat() {
    // A Modbus "device" that accepts the connection and then says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let (held_tx, mut held) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            let _ = held_tx.send(socket);
        }
    });
    let s = site_with_office_lock_at(port).await;
    let d = s.start_daemon().await;
    let (_office_client, mut office_results) = s
        .broker
        .subscriber("test-office-results", &format!("{OFFICE_READER}/result"))
        .await;
    let reader = s.publisher("test-reader").await;
    // The same card twice: the second arrives while the first still waits at the lock, and
    // gets the first one's answer once that is known.
    for _ in 0..2 {
        reader
            .publish(OFFICE_READER, QoS::AtLeastOnce, false, ADA_CARD)
            .await
            .unwrap();
    }
    let shut = json_of(
        &office_results
            .next_within(Duration::from_secs(10))
            .await
            .unwrap()
            .payload,
    );
    assert!(held.try_recv().is_ok(), "the lock was asked");
    assert_eq!(shut["granted"], true, "{shut}");
    assert_eq!(shut["opened"], false, "{shut}");
    assert_eq!(shut["lock_error"], "timeout", "{shut}");
    let again = json_of(
        &office_results
            .next_within(Duration::from_secs(10))
            .await
            .unwrap()
            .payload,
    );
    assert_eq!(again, shut);
    let recorded = events(&d).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["lock_error"], "timeout");
    assert_eq!(recorded[0]["check_in"], Value::Null);
}
