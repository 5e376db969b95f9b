//! `portier backup` and `portier restore` through the real binary and the real daemon: an online
//! backup goes through the running daemon, a restore refuses while it runs, and a backup
//! restored on a fresh state directory (a new SD card) brings back members, events and their
//! numbering.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use common::{Site, free_port};
use daemon::Daemon;
use portier_fake_cobot::fixtures::{ADA, MARGARET};
use serde_json::Value;

async fn start_daemon(site: &Site, port: u16) -> Daemon {
    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(
        d.wait_for_notify("READY=1", Duration::from_secs(10)).await,
        "no READY=1: {:?}",
        d.messages
    );
    d
}

async fn admin_open(d: &Daemon, member: &str) -> Value {
    portier::tls::http_client()
        .post(format!("{}/v1/admin/units/front_door/open", d.base))
        .bearer_auth(&d.admin_token)
        .json(&serde_json::json!({ "member": member }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn stop(mut d: Daemon) {
    d.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), d.child.wait())
        .await
        .expect("the daemon stops")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_onto_a_new_card_with_members_and_events() {
    let old = Site::start().await;
    let port = free_port();
    old.write_config(&common::site_config(), port);
    old.portier(&["sync"]).await.expect_code(0);
    let d = start_daemon(&old, port).await;
    assert_eq!(admin_open(&d, ADA).await["granted"], true);
    assert_eq!(admin_open(&d, MARGARET).await["opened"], true);

    // Online: the daemon holds the store, so the copy comes from it.
    let file = old.path("portier.backup");
    let backup = old.portier(&["backup", file.to_str().unwrap()]).await;
    backup.expect_code(0);
    assert!(
        backup.stdout.contains("from the running daemon") && backup.stdout.contains("events: 2"),
        "{}",
        backup.stdout
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A restore would pull the store from under the daemon: refused, nothing changed.
    let refused = old.portier(&["restore", file.to_str().unwrap()]).await;
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("stop it first"),
        "{}",
        refused.stderr
    );
    assert!(!old.path("state/cache.sled.before-restore").exists());
    let (_, events) = d.admin_get("/v1/events").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 2, "{events}");
    stop(d).await;

    // The new card: same configuration, empty state directory.
    let new = Site::start().await;
    let new_port = free_port();
    new.write_config(&common::site_config(), new_port);
    let restored = new.portier(&["restore", file.to_str().unwrap()]).await;
    restored.expect_code(0);
    assert!(
        restored.stdout.contains("snapshot v") && restored.stdout.contains("events: 2"),
        "{}",
        restored.stdout
    );
    let members = new.portier(&["members", "--json"]).await;
    members.expect_code(0);
    assert!(members.stdout.contains(ADA), "{}", members.stdout);

    let d = start_daemon(&new, new_port).await;
    let (_, events) = d.admin_get("/v1/events").await;
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["member"], ADA);
    assert_eq!(events[1]["member"], MARGARET);
    assert_eq!(admin_open(&d, ADA).await["granted"], true);
    let (_, after) = d.admin_get("/v1/events?after=2").await;
    assert_eq!(after["events"][0]["seq"], 3, "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_backup_reads_the_store_itself_and_a_damaged_file_is_refused() {
    let site = Site::start().await;
    let file = site.path("portier.backup");
    let nothing = site.portier(&["backup", file.to_str().unwrap()]).await;
    nothing.expect_code(1);
    assert!(nothing.stderr.contains("no store"), "{}", nothing.stderr);

    site.portier(&["sync"]).await.expect_code(0);
    let backup = site.portier(&["backup", file.to_str().unwrap()]).await;
    backup.expect_code(0);
    assert!(
        backup.stdout.contains("from the store"),
        "{}",
        backup.stdout
    );

    let mut bytes = std::fs::read(&file).unwrap();
    bytes.truncate(bytes.len() - 100);
    let damaged = site.path("damaged.backup");
    std::fs::write(&damaged, bytes).unwrap();
    let refused = site.portier(&["restore", damaged.to_str().unwrap()]).await;
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("not a usable Portier backup")
            && refused.stderr.contains("nothing was changed"),
        "{}",
        refused.stderr
    );
    let missing = site
        .portier(&["restore", "/nonexistent/portier.backup"])
        .await;
    missing.expect_code(1);
    assert!(
        missing.stderr.contains("/nonexistent/portier.backup"),
        "{}",
        missing.stderr
    );

    // The good file restores over the existing store, which is kept beside it.
    site.portier(&["restore", file.to_str().unwrap()])
        .await
        .expect_code(0);
    assert!(site.path("state/cache.sled.before-restore").exists());
    site.portier(&["members"]).await.expect_code(0);
}
