//! The fallback plan names a Cobot plan (id or exact name), resolved at compile time against
//! Cobot's plan list like any membership's plan; its assignment may name the same plan the
//! other way. One that resolves to nothing is an error in `sync`, on the members and in health,
//! never a refused configuration.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;

use std::time::Duration;

use common::{Site, free_port, site_config};
use daemon::Daemon;
use portier_fake_cobot::fixtures::*;
use serde_json::Value;

/// The integration site with the fallback and the part-time assignment written as given.
fn config(fallback: &str, part_time_assignment: &str) -> String {
    site_config()
        .replace(
            "fallback_plan = \"Part Time (weekdays)\"",
            &format!("fallback_plan = \"{fallback}\""),
        )
        .replace(
            "[[assignment]]\nplan = \"Part Time (weekdays)\"",
            &format!("[[assignment]]\nplan = \"{part_time_assignment}\""),
        )
}

fn katherine(members: &Value) -> Value {
    members
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == KATHERINE))
        .cloned()
        .unwrap_or_else(|| panic!("Katherine not listed in {members}"))
}

#[tokio::test]
async fn a_fallback_named_by_plan_name_applies_an_assignment_written_by_id_and_back() {
    let site = Site::start().await;
    for (fallback, assignment) in [
        ("Part Time (weekdays)", PLAN_PART_TIME),
        (PLAN_PART_TIME, "Part Time (weekdays)"),
    ] {
        site.write_config(&config(fallback, assignment), free_port());
        site.portier(&["check-config"]).await.expect_code(0);
        let run = site.portier(&["sync", "--json"]).await;
        run.expect_code(0);
        let members = site.portier(&["members", "--json"]).await.json();
        let k = katherine(&members);
        assert_eq!(k["plan"], "Part Time (weekdays)", "{fallback}: {k}");
        assert_eq!(
            k["groups"],
            serde_json::json!(["part_time"]),
            "{fallback}: {k}"
        );
        assert_eq!(
            k["errors"],
            serde_json::json!(["plan.parent_plan.id not given or incorrect"])
        );
    }
}

#[tokio::test]
async fn an_unresolved_fallback_is_shown_by_sync_on_the_members_and_in_health() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&config("Night Owls", "Part Time (weekdays)"), port);
    site.portier(&["check-config"]).await.expect_code(0);
    let run = site.portier(&["sync"]).await;
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("the fallback plan \"Night Owls\" is unresolved"),
        "{}",
        run.stdout
    );
    let members = site.portier(&["members", "--json"]).await.json();
    let k = katherine(&members);
    assert_eq!(k["plan"], Value::Null, "{k}");
    assert_eq!(k["groups"], serde_json::json!([]), "{k}");
    assert!(
        k["errors"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e.as_str().is_some_and(|e| e.contains("Night Owls")))),
        "{k}"
    );
    // Ada's plan is known: the fallback's trouble is not hers.
    let ada = members
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == ADA))
        .cloned()
        .unwrap();
    assert!(!ada["errors"].to_string().contains("fallback"), "{ada}");
    site.portier(&["explain", "--member", KATHERINE, "--unit", "front_door"])
        .await
        .expect_code(2);

    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(d.wait_for_notify("READY=1", Duration::from_secs(10)).await);
    let (code, health) = d
        .poll("/healthz", Duration::from_secs(10), |_, h| {
            h["reasons"].to_string().contains("fallback plan")
        })
        .await;
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reasons"].to_string().contains("Night Owls"),
        "{health}"
    );
}
