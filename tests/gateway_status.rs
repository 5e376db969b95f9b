//! The gateway's availability on a real mosquitto, as Home Assistant and monitoring read it:
//! `portier/<gateway_id>/status` is `online` (retained) while the daemon runs, `offline` after
//! a clean stop, and `offline` by the broker's last will when the daemon dies without a word.

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
use mqtt_site::MqttSite;

/// The demo site is "demo-space": its gateway id is that, lower-cased.
const STATUS: &str = "portier/demo-space/status";

/// The retained status a new subscriber gets at once.
async fn retained_status(s: &MqttSite, client: &str) -> (String, bool) {
    let (_client, mut status) = s.broker.subscriber(client, STATUS).await;
    let message = status.next().await;
    (
        String::from_utf8_lossy(&message.payload).into_owned(),
        message.retain,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_is_online_while_it_runs_and_offline_after_a_stop_or_a_crash() {
    let s = MqttSite::with_extra(Mosquitto::start().await, "").await;
    let d = s.start_daemon().await;
    assert_eq!(
        retained_status(&s, "test-1").await,
        ("online".to_owned(), true)
    );

    // A clean stop says goodbye.
    let (_watch, mut changes) = s.broker.subscriber("test-watch", STATUS).await;
    assert_eq!(changes.next().await.payload.as_ref(), b"online");
    let mut d = d;
    d.signal("TERM");
    let bye = changes
        .next_within(Duration::from_secs(10))
        .await
        .expect("offline");
    assert_eq!(bye.payload.as_ref(), b"offline");
    // Let it finish its goodbye (a DISCONNECT, so the broker drops the last will): dropping
    // the child kills it.
    let exited = tokio::time::timeout(Duration::from_secs(10), d.child.wait()).await;
    assert!(exited.is_ok_and(|status| status.unwrap().success()));
    drop(d);
    assert!(
        changes
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "a clean stop does not set off the last will"
    );
    assert_eq!(
        retained_status(&s, "test-2").await,
        ("offline".to_owned(), true)
    );

    // Back, then killed: the broker publishes the last will.
    let mut d = s.start_daemon().await;
    let online = changes
        .next_within(Duration::from_secs(10))
        .await
        .expect("online");
    assert_eq!(online.payload.as_ref(), b"online");
    d.child.start_kill().unwrap();
    let will = changes
        .next_within(Duration::from_secs(10))
        .await
        .expect("the last will");
    assert_eq!(will.payload.as_ref(), b"offline");
    assert_eq!(
        retained_status(&s, "test-3").await,
        ("offline".to_owned(), true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_ids_are_checked_and_a_changed_one_needs_a_restart() {
    let broker = Mosquitto::start().await;
    let s = MqttSite::with_extra(broker, "").await;
    let text = std::fs::read_to_string(s.site.config()).unwrap();
    let bad = text.replace("[site]\n", "[site]\ngateway_id = \"Front Desk!\"\n");
    std::fs::write(s.site.config(), &bad).unwrap();
    let run = s.site.portier(&["check-config"]).await;
    run.expect_code(64);
    assert!(
        run.stderr.contains("site.gateway_id") && run.stderr.contains("1 to 32 of a-z"),
        "{}",
        run.stderr
    );
    let good = text.replace("[site]\n", "[site]\ngateway_id = \"front-desk_2\"\n");
    std::fs::write(s.site.config(), &good).unwrap();
    s.site.portier(&["check-config"]).await.expect_code(0);
    let d = s.start_daemon().await;
    let (_c, mut status) = s
        .broker
        .subscriber("test-gw", "portier/front-desk_2/status")
        .await;
    assert_eq!(status.next().await.payload.as_ref(), b"online");
    // Renamed while running: the topic stays until a restart, and health says so.
    std::fs::write(
        s.site.config(),
        text.replace("[site]\n", "[site]\ngateway_id = \"other\"\n"),
    )
    .unwrap();
    d.signal("HUP");
    let (_, health) = d
        .poll("/healthz", Duration::from_secs(10), |_, h| {
            h.to_string().contains("site.gateway_id")
        })
        .await;
    assert!(health.to_string().contains("site.gateway_id"), "{health}");
}
