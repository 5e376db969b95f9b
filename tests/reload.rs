//! SIGHUP and SIGTERM against the real daemon on a real mosquitto: the sync task applies a
//! reload (it is the only writer of snapshots) at once even while a sync waits on a slow
//! Cobot; a reload puts new locks and readers in service and takes removed ones out; SIGTERM
//! locks an open door within its bound even while a sync hangs.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::time::Duration;

use common::{Site, free_port, site_config};
use daemon::Daemon;
use mosquitto::Mosquitto;
use mqtt_site::{LOCK_TOPIC, MqttSite, READER_TOPIC, RESULT_TOPIC};
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::ADA_CARD;
use rumqttc::QoS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_applied_while_a_sync_hangs_on_a_slow_cobot() {
    let site = Site::start().await;
    let port = free_port();
    // Cobot may take ten minutes to answer: the sync below stays in flight for the whole test.
    let config = site_config().replace("request_timeout = \"2s\"", "request_timeout = \"600s\"");
    site.write_config(&config, port);
    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(d.wait_for_notify("READY=1", Duration::from_secs(10)).await);
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(15), |_, s| {
            s["snapshot"]["version"].as_u64().is_some()
        })
        .await;
    let version = status["snapshot"]["version"].clone();
    let synced = status["last_sync_success"].clone();
    assert!(version.as_u64().is_some(), "{status}");

    let memberships = || {
        site.cobot
            .requests()
            .iter()
            .filter(|r| r.path_and_query.starts_with("/api/memberships"))
            .count()
    };
    let before = memberships();
    site.cobot
        .set_fault("/api/memberships", Fault::Delay(Duration::from_secs(3600)));
    let (code, _) = d.post("/v1/sync", Some("test-admin-token")).await;
    assert_eq!(code, 202);
    // The sync waits for the membership spacing (10 s), then asks Cobot and hangs.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while memberships() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync never asked Cobot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let renamed = std::fs::read_to_string(site.config())
        .unwrap()
        .replace("name = \"demo-space\"", "name = \"renamed\"");
    std::fs::write(site.config(), renamed).unwrap();
    d.messages.clear();
    d.signal("HUP");
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(30), |_, s| {
            s["site"] == "renamed"
        })
        .await;
    assert_eq!(status["site"], "renamed", "the reload waited: {status}");
    assert!(d.wait_for_notify("READY=1", Duration::from_secs(10)).await);
    // Still the snapshot from before: the hanging sync has not finished.
    assert_eq!(status["snapshot"]["version"], version, "{status}");
    assert_eq!(status["last_sync_success"], synced, "{status}");
}

/// The MQTT site's configuration with a side door added: a unit, its MQTT lock and its
/// reader.
fn with_side_door(config: &str) -> String {
    config.replace(
        "[[lock]]\nid = \"office_lock\"",
        "[[unit]]\nid = \"side_door\"\nparent = \"building\"\nlock = \"side_lock\"\n\n\
         [[reader]]\nid = \"side_reader\"\nunit = \"side_door\"\ntopic = \"portier/readers/side\"\n\n\
         [[lock]]\nid = \"side_lock\"\ndriver = \"mqtt\"\ntopic = \"locks/side/set\"\n\
         unlock_payload = \"OPEN\"\nlock_payload = \"SHUT\"\n\n\
         [[lock]]\nid = \"office_lock\"",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_puts_a_new_lock_and_reader_in_service_and_takes_a_removed_reader_out() {
    let s = MqttSite::with_extra(
        Mosquitto::start_with(Mosquitto::LOG_SUBSCRIPTIONS).await,
        "",
    )
    .await;
    let mut d = s.start_daemon().await;
    let (_side_client, mut side_commands) =
        s.broker.subscriber("test-side", "locks/side/set").await;
    let (_front_client, mut front_commands) = s.broker.subscriber("test-front", LOCK_TOPIC).await;
    let (_results_client, mut results) = s
        .broker
        .subscriber("test-results", "portier/readers/+/result")
        .await;
    let reader = s.publisher("test-reader").await;

    // The front reader opens the front door before the reload.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    let answer = results
        .next_within(Duration::from_secs(10))
        .await
        .expect("front answer");
    assert_eq!(answer.topic, RESULT_TOPIC);
    assert!(
        front_commands
            .next_within(Duration::from_secs(5))
            .await
            .is_some()
    );

    // The new file: a side door with its lock and reader; the front reader is gone.
    let text = std::fs::read_to_string(s.site.config()).unwrap();
    let text = with_side_door(&text).replace(
        &format!(
            "[[reader]]\nid = \"front_reader\"\nunit = \"front_door\"\ntopic = \"{READER_TOPIC}\"\n"
        ),
        "",
    );
    assert!(!text.contains("front_reader"), "{text}");
    std::fs::write(s.site.config(), text).unwrap();
    s.site.portier(&["check-config"]).await.expect_code(0);
    d.messages.clear();
    d.signal("HUP");
    assert!(d.wait_for_notify("READY=1", Duration::from_secs(10)).await);
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(10), |_, s| {
            !s["locks"]["side_lock"].is_null()
        })
        .await;
    assert!(!status["locks"]["side_lock"].is_null(), "{status}");
    let (_, health) = d
        .poll("/healthz", Duration::from_secs(1), |_, _| true)
        .await;
    let reasons = health["reasons"].to_string();
    assert!(
        !reasons.contains("restart"),
        "a lock or reader change needs no restart: {health}"
    );
    assert!(
        s.broker
            .wait_for_subscription(
                "portier-test-readers",
                "portier/readers/side",
                Duration::from_secs(10)
            )
            .await,
        "the new reader's topic was not subscribed"
    );

    // A card on the new reader opens the new lock.
    reader
        .publish("portier/readers/side", QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    let command = side_commands
        .next_within(Duration::from_secs(10))
        .await
        .expect("side lock command");
    assert_eq!(&command.payload[..], b"OPEN");
    assert!(!command.retain);
    let answer = results
        .next_within(Duration::from_secs(10))
        .await
        .expect("side answer");
    assert_eq!(answer.topic, "portier/readers/side/result");
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["granted"], true, "{answer}");
    assert_eq!(answer["opened"], true, "{answer}");

    // The removed reader is no longer answered and opens nothing.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, "04A1B2C3D5")
        .await
        .unwrap();
    assert!(
        results.next_within(Duration::from_secs(2)).await.is_none(),
        "a removed reader answered"
    );
    // (The front lock's own relock from the first swipe may still arrive; no unlock does.)
    while let Some(command) = front_commands.next_within(Duration::from_millis(500)).await {
        assert!(
            !String::from_utf8_lossy(&command.payload).contains("UNLOCK"),
            "the removed reader opened the door"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stalled_sync_locks_the_open_door_within_its_bound() {
    // The front door stays open for a minute unless shutdown locks it.
    let broker = Mosquitto::start().await;
    let text = mqtt_site::config(&broker, "")
        .replace("open_for = \"300ms\"", "open_for = \"60s\"")
        .replace("request_timeout = \"2s\"", "request_timeout = \"600s\"");
    let s = MqttSite::with_config(common::Site::start().await, broker, &text).await;
    let mut d = s.start_daemon().await;
    let (_lock_client, mut commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let reader = s.publisher("test-reader").await;

    // A sync hangs on Cobot.
    let memberships = || {
        s.site
            .cobot
            .requests()
            .iter()
            // Not the check-in's `/api/memberships/{id}/work_sessions`.
            .filter(|r| r.path_and_query.starts_with("/api/memberships?"))
            .count()
    };
    let before = memberships();
    s.site
        .cobot
        .set_fault("/api/memberships", Fault::Delay(Duration::from_secs(3600)));
    let (code, _) = d.post("/v1/sync", Some("test-admin-token")).await;
    assert_eq!(code, 202);

    // The door opens.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    let unlock = commands
        .next_within(Duration::from_secs(10))
        .await
        .expect("unlock");
    assert!(String::from_utf8_lossy(&unlock.payload).contains("UNLOCK"));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while memberships() == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sync never asked Cobot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM while the sync waits on Cobot: the door is locked, over the broker, and the
    // daemon exits within the shutdown bound (9 s; systemd's TimeoutStopSec is 15 s).
    let asked = tokio::time::Instant::now();
    d.signal("TERM");
    let relock = commands
        .next_within(Duration::from_secs(9))
        .await
        .expect("no relock at shutdown");
    assert_eq!(&relock.payload[..], br#"{"state":"LOCK"}"#);
    let relocked_after = asked.elapsed();
    let exit = tokio::time::timeout(Duration::from_secs(9), d.child.wait())
        .await
        .expect("the daemon did not exit within its bound")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    // Far inside the bound: the stalled sync is dropped at once, not waited for.
    assert!(
        relocked_after < Duration::from_secs(5),
        "relocked only after {relocked_after:?}"
    );
    eprintln!(
        "relocked {relocked_after:?} after SIGTERM, exited {:?} after",
        asked.elapsed()
    );
}
