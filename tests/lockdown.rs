//! Lockdown against `portier run` on a real mosquitto: switched on, every lock gets its lock
//! command at once, only `[lockdown] allow_groups` open (staff through the admin API still
//! do), every refusal says why, and it survives a reload and a restart until switched off; it
//! shows in status, health and metrics.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::time::Duration;

use mosquitto::Mosquitto;
use mqtt_site::{LOCK_TOPIC, MqttSite, READER_TOPIC, RESULT_TOPIC};
use portier_fake_cobot::fixtures::{ADA, ADA_CARD};
use rumqttc::QoS;
use serde_json::Value;

/// Ada holds full_time (the building) and staff (the office): in a lockdown for staff she may
/// open the office, not the front door.
const LOCKDOWN: &str = "[lockdown]\nallow_groups = [\"staff\"]\n";

fn ada_app() -> String {
    format!("app-{ADA}")
}

async fn swipe(s: &MqttSite, results: &mut mosquitto::Received) -> Value {
    let reader = s.publisher("test-reader").await;
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    serde_json::from_slice(&results.next().await.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockdown_locks_the_doors_lets_only_its_groups_in_and_lasts_until_switched_off() {
    let s = MqttSite::with_extra(Mosquitto::start().await, LOCKDOWN).await;
    let d = s.start_daemon().await;
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let (_result_client, mut results) = s.broker.subscriber("test-results", RESULT_TOPIC).await;
    assert_eq!(swipe(&s, &mut results).await["opened"], true);
    let unlock = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&unlock.payload).contains("UNLOCK"));

    // On, through the daemon: the open door is locked at once.
    let run = s
        .site
        .portier(&["lockdown", "on", "--reason", "fire drill"])
        .await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("lockdown on (fire drill)"),
        "{}",
        run.stdout
    );
    let lock = lock_commands
        .next_within(Duration::from_secs(5))
        .await
        .expect("a lock command at the lockdown");
    assert!(
        String::from_utf8_lossy(&lock.payload).contains("\"LOCK\""),
        "{:?}",
        lock.payload
    );

    // Ada's card is refused at the front door, saying why; tokio waits out the repeat window.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let answer = swipe(&s, &mut results).await;
    assert_eq!(answer["granted"], false, "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains("lockdown"),
        "{answer}"
    );
    // Her app: the front door is refused (403 naming the lockdown), the office (staff) opens.
    let (status, body) = d.post("/v1/units/front_door/open", Some(&ada_app())).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.to_string().contains("lockdown"), "{body}");
    let (status, body) = d.post("/v1/units/office/open", Some(&ada_app())).await;
    assert_eq!(status, 200, "{body}");
    // Staff through the admin API still open the front door.
    let (status, body) = d
        .post("/v1/admin/units/front_door/open", Some(&d.admin_token))
        .await;
    assert_eq!(status, 200, "{body}");

    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["lockdown"]["on"], true, "{status}");
    assert_eq!(status["lockdown"]["reason"], "fire drill", "{status}");
    let (_, health) = d.admin_get("/healthz").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(health.to_string().contains("lockdown is on"), "{health}");
    assert!(d.metrics().await.contains("portier_lockdown 1\n"));
    // The installer's summary says so too (degraded: exit 1).
    let summary = s.site.portier(&["status"]).await;
    summary.expect_code(1);
    assert!(
        summary.stdout.contains("Lockdown   ON since ") && summary.stdout.contains(": fire drill;"),
        "{}",
        summary.stdout
    );
    let (_, explained) = d
        .admin_get(&format!("/v1/explain?member={ADA}&unit=front_door"))
        .await;
    assert!(explained.to_string().contains("lockdown"), "{explained}");

    // A reload and a restart keep it.
    d.signal("HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["lockdown"]["on"], true, "{status}");
    let mut d = d;
    d.signal("TERM");
    // The store is the old process's until it has exited: wait for that before the restart.
    let _ = tokio::time::timeout(Duration::from_secs(10), d.child.wait()).await;
    drop(d);
    let d = s.start_daemon().await;
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["lockdown"]["on"], true, "after a restart: {status}");
    let (status, _) = d.post("/v1/units/front_door/open", Some(&ada_app())).await;
    assert_eq!(status, 403);

    // Off: Ada opens again.
    s.site.portier(&["lockdown", "off"]).await.expect_code(0);
    let (status, body) = d.post("/v1/units/front_door/open", Some(&ada_app())).await;
    assert_eq!(status, 200, "{body}");
    assert!(d.metrics().await.contains("portier_lockdown 0\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_the_lockdown_goes_into_the_store_and_bad_requests_are_refused() {
    let s = MqttSite::with_extra(Mosquitto::start().await, LOCKDOWN).await;
    let run = s.site.portier(&["lockdown", "on"]).await;
    run.expect_code(0);
    assert!(
        run.stdout.contains("daemon is not running"),
        "{}",
        run.stdout
    );
    let d = s.start_daemon().await;
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["lockdown"]["on"], true, "{status}");

    let client = portier::tls::http_client();
    let url = format!("{}/v1/lockdown", d.base);
    let without_token = client
        .post(&url)
        .json(&serde_json::json!({"on": false}))
        .send();
    assert_eq!(without_token.await.unwrap().status().as_u16(), 401);
    for bad in [
        r#"{"on": "yes"}"#,
        r#"{}"#,
        r#"{"on": false, "why": "x"}"#,
        "not json",
    ] {
        let answer = client
            .post(&url)
            .bearer_auth(&d.admin_token)
            .header("content-type", "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 400, "{bad}");
        let body: Value = answer.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("\"on\""), "{body}");
    }
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(
        status["lockdown"]["on"], true,
        "bad requests changed nothing: {status}"
    );
    // An unknown group in allow_groups is a configuration error.
    let text = std::fs::read_to_string(s.site.config()).unwrap();
    std::fs::write(
        s.site.config(),
        text.replace("allow_groups = [\"staff\"]", "allow_groups = [\"guards\"]"),
    )
    .unwrap();
    let run = s.site.portier(&["check-config"]).await;
    run.expect_code(64);
    assert!(
        run.stderr.contains("lockdown.allow_groups"),
        "{}",
        run.stderr
    );
}
