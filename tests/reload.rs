//! SIGHUP against the real daemon: the sync task applies a reload (it is the only writer of
//! snapshots), and it does so at once even while a sync waits on a slow Cobot.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use common::{Site, free_port, site_config};
use daemon::Daemon;
use portier::cobot::fake::Fault;

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
