//! `Retry-After` from Cobot as the daemon meets it: a sane one is honoured by the periodic sync,
//! an absurd one (huge, a date in year 9999) is ignored and crashes nothing, strands no
//! check-in, and a manual sync never waits for a pending `Retry-After`. The daemon runs as a
//! child process against the fake Cobot on 127.0.0.1.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use common::{Site, free_port, site_config};
use daemon::Daemon;
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::ADA;

async fn start_daemon(site: &Site) -> Daemon {
    let port = free_port();
    site.write_config(&site_config(), port);
    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(
        d.wait_for_notify("READY=1", Duration::from_secs(10)).await,
        "no READY=1: {:?}",
        d.messages
    );
    d
}

async fn wait_check_ins(site: &Site, member: &str, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = site
            .cobot
            .check_ins()
            .iter()
            .filter(|c| c.membership_id == member)
            .count();
        if n >= 1 || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_neither_crashes_the_daemon_nor_strands_a_check_in() {
    let site = Site::start().await;
    // The start-up sync meets the overflowing value first.
    let huge = Fault::RateLimited {
        retry_after_secs: u64::MAX,
    };
    site.cobot.set_fault_times("/api/plans", huge, 1);
    let mut d = start_daemon(&site).await;

    // The sync recovers by itself (normal backoff, 10 s membership spacing).
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(30), |_, s| {
            s["snapshot"]["version"].as_u64().is_some()
        })
        .await;
    assert!(status["snapshot"]["version"].as_u64().is_some(), "{status}");
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon stays up");

    // A check-in meets an HTTP date in year 9999 and then a huge number: it still arrives.
    let path = format!("/api/memberships/{ADA}/work_sessions");
    let absurd = ["Fri, 31 Dec 9999 23:59:59 GMT", "18446744073709551615"];
    let faults = absurd.iter().map(|r| Fault::RateLimitedRaw {
        retry_after: (*r).into(),
    });
    site.cobot.queue_faults(&path, faults);
    let (code, body) = d
        .post("/v1/units/front_door/open", Some(&format!("app-{ADA}")))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(wait_check_ins(&site, ADA, Duration::from_secs(30)).await, 1);
    let posts = site
        .cobot
        .request_lines()
        .iter()
        .filter(|l| l.starts_with(&format!("POST {path}")))
        .count();
    assert_eq!(posts, 3);
    let (code, _) = d
        .poll("/healthz", Duration::from_secs(1), |_, _| true)
        .await;
    assert_eq!(code, 200);
    d.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), d.child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_sync_asks_cobot_at_once_while_a_retry_after_is_pending() {
    let site = Site::start().await;
    // An honoured Retry-After of an hour: the periodic sync waits for it, a manual one does not.
    let hour = Fault::RateLimited {
        retry_after_secs: 3600,
    };
    site.cobot.set_fault_times("/api/plans", hour, 1);
    let d = start_daemon(&site).await;
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(10), |_, s| {
            s["last_sync_error"].is_string()
        })
        .await;
    assert!(
        status["last_sync_error"]
            .as_str()
            .is_some_and(|e| e.contains("429")),
        "{status}"
    );
    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(0);
    assert_eq!(run.json()["applied"], true);
    let plans = site
        .cobot
        .request_lines()
        .iter()
        .filter(|l| l.as_str() == "GET /api/plans")
        .count();
    assert_eq!(plans, 2, "the start-up sync and the manual one");
}
