//! The mass-change guard from the command line: a Cobot plan list answered short or empty must
//! not move members to the fallback plan (or to none) without someone accepting it. The real
//! binary syncs from the fake Cobot on 127.0.0.1 into a real sled cache.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use chrono::{Datelike, Days, NaiveDate, Weekday};
use std::time::Duration;

use common::{Site, berlin, free_port, site_config};
use daemon::Daemon;
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::*;
use serde_json::Value;

/// A weekday after today without a booking of Margaret's (she has today and in a week).
fn weekday_without_booking(today: NaiveDate) -> NaiveDate {
    (1..7)
        .map(|d| today + Days::new(d))
        .find(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun))
        .expect("a weekday within six days")
}

/// Exit code of `explain` for Margaret at the front door at noon on `day`.
async fn margaret_at_noon(site: &Site, day: NaiveDate) -> i32 {
    let at = berlin(day, 12, 0);
    let args = [
        "explain",
        "--member",
        MARGARET,
        "--unit",
        "front_door",
        "--at",
        &at,
    ];
    site.portier(&args).await.code
}

fn plan_of(members: &Value, id: &str) -> Value {
    members
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == id))
        .map(|m| m["plan"].clone())
        .unwrap_or_else(|| panic!("{id} not listed in {members}"))
}

#[tokio::test]
async fn an_empty_plan_list_while_memberships_name_plans_fails_the_sync_and_keeps_the_snapshot() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    let before = site.portier(&["members", "--json"]).await.json();

    site.cobot.set_fault("/api/plans", Fault::EmptyList);
    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(1);
    assert!(run.stderr.contains("/api/plans"), "{}", run.stderr);
    assert!(run.stderr.contains("empty"), "{}", run.stderr);
    let after = site.portier(&["members", "--json"]).await.json();
    assert_eq!(after, before);
}

#[tokio::test]
async fn an_empty_plan_list_fails_even_the_first_sync() {
    let site = Site::start().await;
    site.cobot.set_fault("/api/plans", Fault::EmptyList);
    site.portier(&["sync"]).await.expect_code(1);
    site.portier(&["members"]).await.expect_code(1);
}

#[tokio::test]
async fn plans_left_out_of_the_list_hold_the_sync_and_nobody_gains_the_fallback_doors() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    let day = weekday_without_booking(site.today);
    assert_eq!(
        margaret_at_noon(&site, day).await,
        2,
        "no booking, no entry"
    );

    // Cobot answers with only the part-time plan: Full Time and Flex are gone.
    site.cobot.set_plans(part_time_only(&site));

    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(0);
    let summary = run.json();
    assert_eq!(summary["applied"], false, "{summary}");
    // Ada, Grace (Full Time) and Margaret (Flex) of the six with a known plan; Katherine is on
    // the fallback already and does not count.
    assert_eq!(summary["plan_lost"], 3, "{summary}");
    assert!(summary["revoked"].is_u64(), "{summary}");

    // Nothing changed: Margaret did not gain the fallback's front door, Ada keeps her plan.
    assert_eq!(margaret_at_noon(&site, day).await, 2);
    let members = site.portier(&["members", "--json"]).await.json();
    assert_eq!(plan_of(&members, ADA), "Full Time");

    let text = site.portier(&["sync"]).await;
    text.expect_code(0);
    assert!(text.stdout.contains("NOT applied"), "{}", text.stdout);
    assert!(
        text.stdout.contains("--accept-revocations"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn accept_revocations_applies_a_fresh_sync_after_a_plan_loss_hold() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    site.cobot.set_plans(part_time_only(&site));
    let held = site.portier(&["sync", "--json"]).await;
    held.expect_code(0);
    assert_eq!(held.json()["applied"], false);

    let run = site
        .portier(&["sync", "--accept-revocations", "--json"])
        .await;
    run.expect_code(0);
    let summary = run.json();
    assert_eq!(summary["applied"], true, "{summary}");
    assert_eq!(summary["plan_lost"], 3, "{summary}");
    let members = site.portier(&["members", "--json"]).await.json();
    assert_eq!(plan_of(&members, ADA), "Part Time (weekdays)");
    let day = weekday_without_booking(site.today);
    assert_eq!(
        margaret_at_noon(&site, day).await,
        0,
        "accepted: the fallback applies"
    );
}

#[tokio::test]
async fn a_few_plans_lost_below_the_ratio_are_applied() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    // Flex alone: Margaret, one of six (17 %), under the default 20 %.
    let plans = site.cobot.fixture().plans;
    let short: Vec<Value> = plans
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] != PLAN_FLEX)
        .cloned()
        .collect();
    site.cobot.set_plans(Value::Array(short));
    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(0);
    let summary = run.json();
    assert_eq!(summary["applied"], true, "{summary}");
    assert_eq!(summary["plan_lost"], 1, "{summary}");
}

#[tokio::test]
async fn max_plan_loss_ratio_is_a_share_and_a_lower_one_holds_a_smaller_loss() {
    let site = Site::start().await;
    let good = std::fs::read_to_string(site.config()).unwrap();
    let with = |ratio: &str| {
        good.replace(
            "access_token_file = \"cobot.token\"\n",
            &format!("access_token_file = \"cobot.token\"\nmax_plan_loss_ratio = {ratio}\n"),
        )
    };
    std::fs::write(site.config(), with("1.5")).unwrap();
    let run = site.portier(&["check-config"]).await;
    run.expect_code(64);
    assert!(
        run.stderr.contains("cobot.max_plan_loss_ratio"),
        "{}",
        run.stderr
    );

    std::fs::write(site.config(), with("0.1")).unwrap();
    site.portier(&["check-config"]).await.expect_code(0);
    site.portier(&["sync"]).await.expect_code(0);
    let plans = site.cobot.fixture().plans;
    let short: Vec<Value> = plans
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] != PLAN_FLEX)
        .cloned()
        .collect();
    site.cobot.set_plans(Value::Array(short));
    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(0);
    assert_eq!(run.json()["applied"], false, "1 of 6 is more than 10 %");
}

/// Cobot's plans without Full Time and Flex.
fn part_time_only(site: &Site) -> Value {
    let plans = site.cobot.fixture().plans;
    let short: Vec<Value> = plans
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] == PLAN_PART_TIME)
        .cloned()
        .collect();
    Value::Array(short)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_loss_held_by_the_daemon_degrades_health_until_accepted() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(d.wait_for_notify("READY=1", Duration::from_secs(10)).await);
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(15), |_, s| {
            s["snapshot"]["version"].as_u64().is_some()
        })
        .await;
    let version = status["snapshot"]["version"].clone();

    site.cobot.set_plans(part_time_only(&site));
    let (code, summary) = d
        .post("/v1/sync?wait=true", Some(&d.admin_token.clone()))
        .await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["applied"], false, "{summary}");
    assert_eq!(summary["plan_lost"], 3, "{summary}");
    let (_, health) = d
        .poll("/healthz", Duration::from_secs(1), |_, _| true)
        .await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reasons"]
            .to_string()
            .contains("take the plan from 3 of 6"),
        "{health}"
    );
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(1), |_, _| true)
        .await;
    assert_eq!(status["snapshot"]["version"], version, "nothing applied");

    let (code, summary) = d
        .post(
            "/v1/sync?wait=true&accept_revocations=true",
            Some(&d.admin_token.clone()),
        )
        .await;
    assert_eq!(code, 200, "{summary}");
    assert_eq!(summary["applied"], true, "{summary}");
    let (_, health) = d
        .poll("/healthz", Duration::from_secs(1), |_, _| true)
        .await;
    assert!(!health["reasons"].to_string().contains("held"), "{health}");
}
