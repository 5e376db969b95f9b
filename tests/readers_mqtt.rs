//! Hostile reader payloads against `portier run` on a real mosquitto: oversized messages, a
//! reader clock in the future, card ids that only match under Unicode case folding. Each is
//! answered and recorded as a denial, and the shared broker connection keeps serving the other
//! readers and the MQTT lock.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::time::Duration;

use chrono::NaiveDate;
use common::{Site, today};
use mosquitto::Mosquitto;
use mqtt_site::{LOCK_TOPIC, MqttSite, READER_TOPIC, RESULT_TOPIC, events, shipped_drop_in};
use portier_fake_cobot::Fixture;
use portier_fake_cobot::fixtures::{ADA, ADA_CARD, BARBARA};
use rumqttc::QoS;
use serde_json::{Value, json};

fn json_of(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_reader_payloads_are_denied_and_recorded_and_the_next_card_opens_at_once() {
    let s = MqttSite::with_extra(Mosquitto::start_with(&shipped_drop_in()).await, "").await;
    let d = s.start_daemon().await;
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let (_result_client, mut results) = s.broker.subscriber("test-results", RESULT_TOPIC).await;
    let reader = s.publisher("test-reader").await;

    // 16 KiB, 100 KiB and the largest payload the shipped broker passes on (1 MiB), then a
    // valid card at once: nothing in between waits for a reconnect.
    let sizes = [16 * 1024, 100 * 1024, portier::mqtt::MAX_MESSAGE_SIZE];
    for size in sizes {
        reader
            .publish(READER_TOPIC, QoS::AtLeastOnce, false, vec![b'A'; size])
            .await
            .unwrap();
    }
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();

    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(json_of(&results.next().await.payload));
    }
    let (granted, denied): (Vec<&Value>, Vec<&Value>) =
        answers.iter().partition(|a| a["granted"] == true);
    assert_eq!(granted.len(), 1, "{answers:?}");
    assert_eq!(granted[0]["opened"], true, "{answers:?}");
    assert_eq!(denied.len(), 3, "{answers:?}");
    for answer in &denied {
        let reason = answer["reason"].as_str().unwrap();
        assert!(
            reason.contains("malformed") && reason.contains("1 KiB"),
            "{reason}"
        );
        assert_eq!(answer["opened"], false);
    }
    // The MQTT lock on the same connection took the card's unlock.
    let command = lock_commands.next().await;
    let payload = String::from_utf8_lossy(&command.payload).into_owned();
    assert!(payload.contains("UNLOCK"), "{payload}");
    assert!(payload.contains(granted[0]["decision_id"].as_str().unwrap()));

    let recorded = mqtt_site::wait_events(&d, 4).await;
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    let mut malformed_sizes: Vec<String> = recorded
        .iter()
        .filter(|e| e["granted"] == false)
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect();
    malformed_sizes.sort();
    assert_eq!(malformed_sizes.len(), 3, "{recorded:?}");
    for size in sizes {
        assert!(
            malformed_sizes
                .iter()
                .any(|r| r.contains(&format!("{size} bytes"))),
            "{size}: {malformed_sizes:?}"
        );
    }
    assert!(
        recorded
            .iter()
            .any(|e| e["granted"] == true && e["member"] == ADA && e["opened"] == true)
    );
    // The reader's status shows that it was heard, for wiring checks, and never the card.
    let (_, status) = d.admin_get("/v1/status").await;
    let front = &status["readers"]["front_reader"];
    assert_eq!(front["kind"], "mqtt", "{status}");
    assert_eq!(front["unit"], "front_door", "{status}");
    assert_eq!(
        front["online"], true,
        "its broker connection is up: {status}"
    );
    assert!(front["last_frame_at"].is_string(), "{status}");
    assert!(!status.to_string().contains(ADA_CARD), "{status}");
    // The installer's summary names it the same way.
    let summary = s.site.portier(&["status"]).await;
    assert!(summary.code <= 1, "the daemon answered: {}", summary.stderr);
    assert!(
        summary
            .stdout
            .contains("front_reader (mqtt, front_door): online, last frame "),
        "{}",
        summary.stdout
    );
    assert!(
        summary.stdout.contains("Broker     connected"),
        "{}",
        summary.stdout
    );
    assert!(!summary.stdout.contains(ADA_CARD), "{}", summary.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_shipped_drop_in_a_payload_over_one_mib_never_reaches_portier() {
    let s = MqttSite::with_extra(Mosquitto::start_with(&shipped_drop_in()).await, "").await;
    let d = s.start_daemon().await;
    let (_result_client, mut results) = s.broker.subscriber("test-results", RESULT_TOPIC).await;
    let reader = s.publisher("test-reader").await;
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, vec![b'A'; 2 << 20])
        .await
        .unwrap();
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    // The broker dropped the 2 MiB message; the connection never did, so the card's answer
    // is the first one.
    let answer = json_of(&results.next().await.payload);
    assert_eq!(answer["granted"], true, "{answer}");
    assert_eq!(answer["opened"], true, "{answer}");
    assert_eq!(events(&d).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_drop_in_a_payload_larger_than_portier_takes_costs_only_a_reconnect() {
    // mosquitto's default passes on payloads of up to 256 MB: Portier's client refuses a packet
    // over its limit, drops the connection, reconnects and subscribes again.
    let s = MqttSite::with_extra(Mosquitto::start().await, "").await;
    let d = s.start_daemon().await;
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let (_result_client, mut results) = s.broker.subscriber("test-results", RESULT_TOPIC).await;
    let reader = s.publisher("test-reader").await;
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, vec![b'A'; 2 << 20])
        .await
        .unwrap();
    // A card sent while Portier reconnects is lost with the clean session, so the reader tries
    // again (same payload: a repeat after the first answer is harmless).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let card = json!({"credential": ADA_CARD}).to_string();
        reader
            .publish(READER_TOPIC, QoS::AtLeastOnce, false, card)
            .await
            .unwrap();
        if let Some(answer) = results.next_within(Duration::from_secs(1)).await {
            break json_of(&answer.payload);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no answer after the reconnect"
        );
    };
    assert_eq!(answer["granted"], true, "{answer}");
    assert_eq!(answer["opened"], true, "{answer}");
    let command = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&command.payload).contains("UNLOCK"));
    let recorded = events(&d).await;
    assert!(
        recorded.iter().any(|e| e["granted"] == true),
        "{recorded:?}"
    );
    // The daemon is still healthy enough to serve.
    let (code, _) = d
        .poll("/healthz", Duration::from_secs(1), |_, _| true)
        .await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_message_dated_in_the_future_is_denied_as_clock_skew_and_hostile_ts_never_crash() {
    let s = MqttSite::with_extra(Mosquitto::start().await, "").await;
    let d = s.start_daemon().await;
    let (_result_client, mut results) = s.broker.subscriber("test-results", RESULT_TOPIC).await;
    let reader = s.publisher("test-reader").await;
    let now = portier::clock::now().timestamp();
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"{{"credential":"{ADA_CARD}","ts":{}}}"#, now + 3600),
            "clock skew",
        ),
        (
            format!(r#"{{"credential":"{ADA_CARD}","ts":{}}}"#, i64::MAX),
            "clock skew",
        ),
        (
            format!(r#"{{"credential":"{ADA_CARD}","ts":1e300}}"#),
            "clock skew",
        ),
        (
            format!(r#"{{"credential":"{ADA_CARD}","ts":{}}}"#, now - 3600),
            "stale",
        ),
        (format!(r#"{{"credential":"{ADA_CARD}","ts":-1}}"#), "stale"),
        (
            format!(r#"{{"credential":"{ADA_CARD}","ts":1e400}}"#),
            "malformed",
        ),
    ];
    for (payload, why) in &cases {
        reader
            .publish(READER_TOPIC, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
        let answer = json_of(&results.next().await.payload);
        assert_eq!(answer["granted"], false, "{payload}: {answer}");
        let reason = answer["reason"].as_str().unwrap();
        assert!(reason.contains(why), "{payload}: {reason}");
    }
    // Still serving: a fresh card with a float ts opens.
    let fresh = format!(r#"{{"credential":"{ADA_CARD}","ts":{now}.5}}"#);
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, fresh)
        .await
        .unwrap();
    let answer = json_of(&results.next().await.payload);
    assert_eq!(answer["granted"], true, "{answer}");
    let recorded = events(&d).await;
    assert_eq!(recorded.len(), cases.len() + 1, "{recorded:?}");
    assert!(
        recorded[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("clock skew")
    );
}

/// The standard fixture plus a card `HANS0001` of Ada's and an id Barbara's that is not one.
fn fixture_with_letter_cards(day: NaiveDate) -> Fixture {
    let mut fixture = Fixture::standard(day);
    let tokens = fixture.check_in_tokens.as_array_mut().unwrap();
    tokens.push(json!({"token": "HANS0001", "membership": {"id": ADA, "name": "Ada Lovelace"}}));
    tokens.push(
        json!({"token": "BARBARA_01", "membership": {"id": BARBARA, "name": "Barbara Liskov"}}),
    );
    fixture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_id_that_only_matches_under_unicode_case_folding_is_malformed() {
    let day = today();
    let site = Site::with_fixture(fixture_with_letter_cards(day), day).await;
    let s = MqttSite::on(site, Mosquitto::start().await, "").await;
    let d = s.start_daemon().await;
    let (_result_client, mut results) = s.broker.subscriber("test-results", RESULT_TOPIC).await;
    let reader = s.publisher("test-reader").await;
    // 'ſ' (long s) upper-cases to 'S' under Unicode rules.
    for card in [
        "HANſ0001",
        "ｈａｎｓ0001",
        "HANS\u{a0}0001",
        &"A".repeat(129),
    ] {
        reader
            .publish(READER_TOPIC, QoS::AtLeastOnce, false, card)
            .await
            .unwrap();
        let answer = json_of(&results.next().await.payload);
        assert_eq!(answer["granted"], false, "{card}: {answer}");
        assert!(
            answer["reason"].as_str().unwrap().contains("malformed"),
            "{card}: {answer}"
        );
    }
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, "hans-00:01")
        .await
        .unwrap();
    let answer = json_of(&results.next().await.payload);
    assert_eq!(answer["granted"], true, "{answer}");
    assert_eq!(events(&d).await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_in_token_that_is_not_a_card_id_is_a_member_error() {
    let day = today();
    let site = Site::with_fixture(fixture_with_letter_cards(day), day).await;
    site.portier(&["sync"]).await.expect_code(0);
    let members = site.portier(&["members", "--json"]).await;
    members.expect_code(0);
    let members = members.json();
    let barbara = members
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == BARBARA)
        .unwrap();
    let errors = barbara["errors"].to_string();
    assert!(errors.contains("BARBARA_01"), "{errors}");
    assert!(errors.contains("not a card id"), "{errors}");
    site.portier(&[
        "explain",
        "--credential",
        "BARBARA_01",
        "--unit",
        "front_door",
    ])
    .await
    .expect_code(2);
    site.portier(&[
        "explain",
        "--credential",
        "hans0001",
        "--unit",
        "front_door",
    ])
    .await
    .expect_code(0);
}

/// Every reader payload the broker delivers is acknowledged, whatever it turns out to be
/// (granted, denied, malformed, oversized, stale, a repeat), and it arrives on the readers' own
/// connection, which publishes nothing: results and lock commands leave on the other one. That
/// split is what keeps a stock mosquitto (Nagle on) from holding the next card behind the
/// delayed ACK of a PUBACK the broker sent us (see BENCHMARKS.md, "Card → lock command").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reader_payload_is_acknowledged_on_a_connection_that_only_receives() {
    let broker = Mosquitto::start_with("user root\nlog_type all").await;
    let s = MqttSite::with_extra(broker, "").await;
    let d = s.start_daemon().await;
    assert!(
        s.broker
            .wait_for_subscription(
                "portier-test-readers",
                READER_TOPIC,
                Duration::from_secs(20)
            )
            .await,
        "the daemon never subscribed to {READER_TOPIC} as portier-test-readers"
    );
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let (_result_client, mut results) = s.broker.subscriber("test-results", RESULT_TOPIC).await;
    let reader = s.publisher("test-reader").await;

    let stale = format!(
        r#"{{"credential":"{ADA_CARD}","ts":{}}}"#,
        portier::clock::now().timestamp() - 60
    );
    let payloads: Vec<Vec<u8>> = vec![
        ADA_CARD.into(),       // granted
        ADA_CARD.into(),       // the same payload again: a repeat
        b"DEADBEEF".to_vec(),  // an unknown card: denied
        b"{not json".to_vec(), // malformed
        vec![b'A'; 4 * 1024],  // oversized
        stale.into_bytes(),    // stale
    ];
    for payload in &payloads {
        reader
            .publish(READER_TOPIC, QoS::AtLeastOnce, false, payload.clone())
            .await
            .unwrap();
    }
    let mut answers = Vec::new();
    for _ in &payloads {
        answers.push(json_of(&results.next().await.payload));
    }
    assert_eq!(
        answers.iter().filter(|a| a["granted"] == true).count(),
        2,
        "{answers:?}"
    );
    assert!(
        String::from_utf8_lossy(&lock_commands.next().await.payload).contains("UNLOCK"),
        "no unlock"
    );

    // The broker's log: each delivery to the readers' connection was acknowledged by it, it
    // never published, and the lock command and the results came from the other connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(s.broker.log_path()).unwrap_or_default();
        let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
        let delivered = count("Sending PUBLISH to portier-test-readers (d0, q1, r0, m");
        let acknowledged = count("Received PUBACK from portier-test-readers ");
        if delivered == payloads.len() && acknowledged == delivered {
            assert_eq!(
                count("Received PUBLISH from portier-test-readers "),
                0,
                "{log}"
            );
            assert!(
                log.lines()
                    .any(|l| l.contains("Received PUBLISH from portier-test (")
                        && l.contains(&format!("'{LOCK_TOPIC}'"))),
                "{log}"
            );
            assert_eq!(
                log.lines()
                    .filter(|l| l.contains("Received PUBLISH from portier-test (")
                        && l.contains(&format!("'{RESULT_TOPIC}'")))
                    .count(),
                payloads.len(),
                "{log}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{delivered} deliveries to the readers' connection, {acknowledged} acknowledged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(d);
}
