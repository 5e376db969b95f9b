//! Stored data across versions: a state directory written by the previous store format
//! (`tests/fixtures/state-format-1.tar.gz`, records without a schema version) opens with this
//! version with its members, events, outbox and token cache intact; a snapshot record that
//! cannot be read makes health failing with a reason, and a sync replaces it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use common::{Site, free_port, site_config};
use daemon::Daemon;
use portier::store::{CheckInStatus, CredentialKind, Store, token_hash};
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::{
    ADA, BARBARA, CHARLES, GRACE, KATHERINE, LINUS, MARGARET, user_id_of,
};
use serde_json::Value;

/// The members the fixture's snapshot synced (the connected ones of the standard fixtures).
const FIXTURE_MEMBERS: [&str; 7] = [ADA, CHARLES, GRACE, KATHERINE, BARBARA, LINUS, MARGARET];

/// Unpacks the previous-format state directory as `<dir>/state`.
fn unpack_previous_format(dir: &Path) {
    let archive =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-format-1.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .status()
        .expect("run tar");
    assert!(status.success(), "tar -xzf {}", archive.display());
}

fn fixture_time(h: u32, m: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 11, 20)
        .unwrap()
        .and_hms_opt(h, m, 0)
        .unwrap()
        .and_utc()
}

/// The site's configuration, keeping events for years (the fixture's are from 2026-11-20, and
/// the daemon's retention must not prune them whenever this test runs).
fn config_keeping_events() -> String {
    site_config() + "\n[events]\nretention = \"10y\"\n"
}

#[test]
fn a_store_of_the_previous_format_opens_with_its_snapshot_events_outbox_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    unpack_previous_format(dir.path());
    let store = Store::open(&dir.path().join("state")).unwrap();

    let snapshot = store.load_snapshot().unwrap().expect("a snapshot");
    assert_eq!(snapshot.version, 1);
    assert_eq!(snapshot.synced_at, fixture_time(9, 0));
    for member in FIXTURE_MEMBERS {
        assert!(
            snapshot.data.memberships.iter().any(|m| m.id == member),
            "{member} is missing"
        );
    }
    let status = store.sync_status().unwrap();
    assert_eq!(status.last_success, Some(fixture_time(9, 0)));

    let events = store.events_after(0, 100).unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(events[0].member.as_deref(), Some(ADA));
    assert_eq!(events[0].check_in, Some(CheckInStatus::Sent));
    assert_eq!(events[1].member, None);
    assert!(!events[1].granted);
    assert_eq!(events[2].credential_kind, CredentialKind::App);
    assert_eq!(events[2].check_in, Some(CheckInStatus::Pending));
    assert_eq!(events[3].check_in, None);
    assert_eq!(store.last_event_time().unwrap(), Some(fixture_time(12, 0)));

    let pending = store.pending_check_ins().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].member, MARGARET);
    assert_eq!(pending[0].event_seq, 3);

    let ttl = Duration::from_secs(30 * 86_400);
    assert_eq!(
        store
            .app_token_user(
                &token_hash(&format!("app-{MARGARET}")),
                fixture_time(13, 0),
                ttl
            )
            .unwrap(),
        Some(user_id_of(MARGARET))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portier_serves_a_state_directory_of_the_previous_format_and_keeps_numbering_events() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&config_keeping_events(), port);
    unpack_previous_format(site.dir.path());

    // The command line reads the old snapshot as it is.
    let members = site.portier(&["members", "--json"]).await;
    members.expect_code(0);
    let mut ids: Vec<String> = members
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    let mut expected: Vec<String> = FIXTURE_MEMBERS.iter().map(|m| (*m).to_owned()).collect();
    expected.sort();
    assert_eq!(ids, expected);

    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(
        d.wait_for_notify("READY=1", Duration::from_secs(10)).await,
        "no READY=1: {:?}",
        d.messages
    );
    // The pending check-in of the old outbox reaches Cobot, and its event says so.
    let (_, body) = d
        .poll("/v1/events", Duration::from_secs(30), |code, body| {
            code == 200 && body["events"][2]["check_in"]["state"] == "sent"
        })
        .await;
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len(), 4, "{body}");
    assert_eq!(events[2]["check_in"]["state"], "sent", "{body}");
    assert_eq!(events[0]["member"], ADA);
    assert_eq!(events[1]["reason"], "unknown card 0BADCAFE");
    let check_ins = site.cobot.check_ins();
    assert_eq!(
        check_ins
            .iter()
            .filter(|c| c.membership_id == MARGARET)
            .count(),
        1,
        "{check_ins:?}"
    );

    // The event counter carried over: the next event is number 5.
    let open: Value = portier::tls::http_client()
        .post(format!("{}/v1/admin/units/front_door/open", d.base))
        .bearer_auth(&d.admin_token)
        .json(&serde_json::json!({ "member": ADA }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(open["granted"], true, "{open}");
    let (_, body) = d.admin_get("/v1/events?after=4").await;
    assert_eq!(body["events"][0]["seq"], 5, "{body}");

    // The start-up sync replaced the old snapshot: its version follows the old one.
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(30), |_, s| {
            s["snapshot"]["version"] == 2
        })
        .await;
    assert_eq!(status["snapshot"]["version"], 2, "{status}");
    assert!(site.path("state/snapshot").exists());
}

/// Overwrites the stored snapshot record (its own file since a sync wrote it) with `bytes`, as
/// damage on disk or a newer version would.
fn damage_snapshot(state: &Path, bytes: &[u8]) {
    let file = state.join("snapshot");
    assert!(file.exists(), "the sync wrote no snapshot file");
    std::fs::write(file, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_snapshot_makes_health_failing_until_a_sync_replaces_it() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);
    site.portier(&["sync", "--json"]).await.expect_code(0);
    damage_snapshot(
        &site.path("state"),
        b"\x02{\"version\": 3, \"synced_at\": tru",
    );

    // Commands that read it say what is wrong and what to do.
    let members = site.portier(&["members"]).await;
    members.expect_code(1);
    assert!(
        members.stderr.contains("stored snapshot cannot be read")
            && members.stderr.contains("portier sync"),
        "{}",
        members.stderr
    );

    // The daemon starts anyway, denies everything, and health says why.
    site.cobot.set_fault("/api/", Fault::Status(503));
    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(
        d.wait_for_notify("READY=1", Duration::from_secs(10)).await,
        "no READY=1: {:?}",
        d.messages
    );
    let health = portier::tls::http_client()
        .get(format!("{}/healthz", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "failing", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("stored snapshot cannot be read") && reasons.contains("sync"),
        "{health}"
    );
    let (code, _) = d
        .admin_get(&format!("/v1/explain?unit=front_door&member={ADA}"))
        .await;
    assert_eq!(code, 503);

    // Once Cobot answers, a sync replaces it and health recovers.
    site.cobot.clear_faults();
    let (code, body) = d.post("/v1/sync?wait=true", Some(&d.admin_token)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["applied"], true, "{body}");
    let health: Value = portier::tls::http_client()
        .get(format!("{}/healthz", d.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(health["status"], "failing", "{health}");
    assert!(
        !health["reasons"].to_string().contains("cannot be read"),
        "{health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portier_sync_replaces_a_snapshot_of_an_unknown_format() {
    let site = Site::start().await;
    site.portier(&["sync", "--json"]).await.expect_code(0);
    // A record of a newer format (a downgrade) or damage: format byte 9.
    damage_snapshot(&site.path("state"), b"\x09future");
    let explain = site
        .portier(&["explain", "--member", ADA, "--unit", "front_door"])
        .await;
    explain.expect_code(1);
    assert!(
        explain.stderr.contains("record format 9"),
        "{}",
        explain.stderr
    );

    let sync = site.portier(&["sync", "--json"]).await;
    sync.expect_code(0);
    assert_eq!(sync.json()["applied"], true);
    let members = site.portier(&["members", "--json"]).await;
    members.expect_code(0);
    assert!(members.stdout.contains(ADA), "{}", members.stdout);
}
