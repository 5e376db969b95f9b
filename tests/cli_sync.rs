//! End to end from the command line: the real binary syncs from a real HTTP server playing
//! Cobot on 127.0.0.1 into a real sled cache, then answers `members` and `explain` from it.

#![allow(clippy::panic)] // reason: a test helper reports a missing member by failing the test

mod common;

use chrono::{Datelike, Days, Weekday};
use common::{Site, berlin, utc};
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::*;
use serde_json::Value;

fn member<'a>(members: &'a Value, id: &str) -> &'a Value {
    members
        .as_array()
        .and_then(|a| a.iter().find(|m| m["id"] == id))
        .unwrap_or_else(|| panic!("member {id} not listed in {members}"))
}

fn next(day: chrono::NaiveDate, weekday: Weekday) -> chrono::NaiveDate {
    let mut d = day;
    while d.weekday() != weekday {
        d = d + Days::new(1);
    }
    d
}

#[tokio::test]
async fn a_first_sync_counts_plans_members_skipped_and_errors() {
    let site = Site::start().await;
    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(0);
    let summary = run.json();
    assert_eq!(summary["plans"], 3);
    assert_eq!(summary["members"], 7);
    assert_eq!(summary["skipped_not_connected"], 2);
    // Katherine's unknown plan and Ada's unknown extra group.
    assert_eq!(summary["errors"], 2);
    assert_eq!(summary["applied"], true);

    let lines = site.cobot.request_lines();
    for expected in [
        "GET /api/plans",
        "GET /api/memberships?all=true",
        "GET /api/custom_fields",
        "GET /api/check_in_tokens",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected} not in {lines:?}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET /api/bookings?from="))
    );
}

#[tokio::test]
async fn members_shows_plans_groups_validity_and_errors() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    let run = site.portier(&["members", "--json"]).await;
    run.expect_code(0);
    let members = run.json();
    assert_eq!(members.as_array().map(Vec::len), Some(7));

    let ada = member(&members, ADA);
    assert_eq!(ada["email"], "ada.lovelace@example.com");
    assert_eq!(ada["plan"], "Full Time");
    assert_eq!(ada["groups"], serde_json::json!(["full_time", "staff"]));
    assert!(
        ada["errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("unknown_group")
    );

    let katherine = member(&members, KATHERINE);
    assert_eq!(katherine["plan"], "Part Time (weekdays)");
    assert_eq!(katherine["groups"], serde_json::json!(["part_time"]));
    assert!(katherine["errors"].as_array().is_some_and(|e| {
        e.iter()
            .any(|e| e == "plan.parent_plan.id not given or incorrect")
    }));

    let barbara = member(&members, BARBARA);
    let cancel = site.today + Days::new(10);
    assert_eq!(
        barbara["valid_until"],
        cancel.format("%Y-%m-%d").to_string()
    );

    assert!(
        members
            .as_array()
            .is_some_and(|a| a.iter().all(|m| m["id"] != ALAN && m["id"] != EDSGER)),
        "unconnected members are not listed"
    );
}

#[tokio::test]
async fn explain_grants_and_denies_with_exit_codes_and_reasons() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);

    // A card written differently from Cobot's spelling still matches.
    let run = site
        .portier(&[
            "explain",
            "--credential",
            "04:a1:b2-c3 d4",
            "--unit",
            "front_door",
            "--json",
        ])
        .await;
    run.expect_code(0);
    let view = run.json();
    assert_eq!(view["granted"], true);
    assert_eq!(view["member"], ADA);
    assert_eq!(view["unit"], "front_door");
    assert!(view["chain"].as_array().is_some_and(|c| !c.is_empty()));

    // The custom field's extra group opens the office.
    site.portier(&[
        "explain",
        "--member",
        "ADA.Lovelace@example.com",
        "--unit",
        "office",
    ])
    .await
    .expect_code(0);

    // Unconnected members are unknown.
    let run = site
        .portier(&[
            "explain",
            "--credential",
            ALAN_CARD,
            "--unit",
            "front_door",
            "--json",
        ])
        .await;
    run.expect_code(2);
    assert_eq!(run.json()["member"], Value::Null);

    // Cancelled in the past.
    let run = site
        .portier(&[
            "explain",
            "--member",
            CHARLES,
            "--unit",
            "front_door",
            "--json",
        ])
        .await;
    run.expect_code(2);
    assert_eq!(run.json()["member"], CHARLES);

    // Unknown unit: a usage error naming it.
    let run = site
        .portier(&["explain", "--member", ADA, "--unit", "roof"])
        .await;
    run.expect_code(64);
    assert!(run.stderr.contains("roof"));
}

#[tokio::test]
async fn validity_schedules_plan_switches_and_bookings_follow_the_moment_asked() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    let today = site.today;

    // Grace starts in 16 days.
    site.portier(&["explain", "--member", GRACE, "--unit", "front_door"])
        .await
        .expect_code(2);
    let start = berlin(today + Days::new(16), 0, 1);
    site.portier(&[
        "explain",
        "--member",
        GRACE,
        "--unit",
        "front_door",
        "--at",
        &start,
    ])
    .await
    .expect_code(0);

    // Barbara (part time, Mon-Fri 08:00-18:00) until her cancellation in 10 days.
    let wednesday = next(today, Weekday::Wed);
    let sunday = next(today, Weekday::Sun);
    for (at, code) in [
        (berlin(wednesday, 10, 0), 0),
        (berlin(wednesday, 18, 0), 2),
        (berlin(sunday, 10, 0), 2),
        (berlin(today + Days::new(11), 10, 0), 2),
    ] {
        site.portier(&[
            "explain",
            "--member",
            BARBARA,
            "--unit",
            "front_door",
            "--at",
            &at,
        ])
        .await
        .expect_code(code);
    }

    // Linus switches from part time to full time in 3 days: the building opens then.
    site.portier(&[
        "explain",
        "--member",
        LINUS,
        "--unit",
        "building",
        "--at",
        &berlin(today + Days::new(2), 12, 0),
    ])
    .await
    .expect_code(2);
    site.portier(&[
        "explain",
        "--member",
        LINUS,
        "--unit",
        "building",
        "--at",
        &berlin(today + Days::new(3), 12, 0),
    ])
    .await
    .expect_code(0);

    // Margaret (booking-only) has a booking today 08:00-16:00 UTC.
    site.portier(&[
        "explain",
        "--credential",
        MARGARET_CARD,
        "--unit",
        "front_door",
        "--at",
        &utc(today, 10),
    ])
    .await
    .expect_code(0);
    site.portier(&[
        "explain",
        "--credential",
        MARGARET_CARD,
        "--unit",
        "front_door",
        "--at",
        &utc(today, 20),
    ])
    .await
    .expect_code(2);
}

#[tokio::test]
async fn every_fault_leaves_the_previous_snapshot_in_force() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    let before = site.portier(&["members", "--json"]).await.json();

    let faults = [
        ("/api/memberships", Fault::Status(500), "500"),
        (
            "/api/plans",
            Fault::RateLimited {
                retry_after_secs: 120,
            },
            "try again in 2m",
        ),
        ("/api/memberships", Fault::Unauthorized, "reconnect"),
        (
            "/api/check_in_tokens",
            Fault::Delay(std::time::Duration::from_secs(5)),
            "tim",
        ),
        ("/api/memberships", Fault::Html, "JSON"),
        ("/api/memberships", Fault::TruncatedJson, "JSON"),
    ];
    for (path, fault, says) in faults {
        site.cobot.clear_faults();
        site.cobot.set_fault(path, fault.clone());
        let run = site.portier(&["sync", "--json"]).await;
        assert_eq!(run.code, 1, "{fault:?} on {path}: {}", run.stderr);
        assert!(
            run.stderr.to_lowercase().contains(&says.to_lowercase()),
            "{fault:?}: stderr does not say {says:?}: {}",
            run.stderr
        );
        let after = site.portier(&["members", "--json"]).await.json();
        assert_eq!(after, before, "{fault:?} changed the cache");
    }
}

#[tokio::test]
async fn an_empty_member_list_is_held_by_the_guard_until_accepted() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    site.cobot.set_fault("/api/memberships", Fault::EmptyList);

    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(0);
    assert_eq!(run.json()["applied"], false);
    site.portier(&["explain", "--member", ADA, "--unit", "front_door"])
        .await
        .expect_code(0);

    let run = site
        .portier(&["sync", "--accept-revocations", "--json"])
        .await;
    run.expect_code(0);
    assert_eq!(run.json()["applied"], true);
    assert_eq!(run.json()["members"], 0);
    site.portier(&["explain", "--member", ADA, "--unit", "front_door"])
        .await
        .expect_code(2);
}

#[tokio::test]
async fn without_a_snapshot_or_a_token_commands_say_what_to_do() {
    let site = Site::start().await;
    let run = site
        .portier(&["explain", "--member", ADA, "--unit", "front_door"])
        .await;
    run.expect_code(1);
    assert!(run.stderr.contains("no snapshot yet: run portier sync"));
    site.portier(&["members"]).await.expect_code(1);

    std::fs::remove_file(site.path("cobot.token")).expect("remove token");
    let run = site.portier(&["sync"]).await;
    run.expect_code(64);
    assert!(run.stderr.contains("cobot.access_token_file"));
}

#[tokio::test]
async fn usage_errors_exit_64_not_2() {
    let site = Site::start().await;
    site.portier(&["explain", "--unit", "front_door"])
        .await
        .expect_code(64);
    site.portier(&["no-such-command"]).await.expect_code(64);
    site.portier(&["members", "--at", "yesterday"])
        .await
        .expect_code(64);
    let run = common::run_portier(&[
        "--config".into(),
        "/nonexistent/portier.toml".into(),
        "check-config".into(),
    ])
    .await;
    run.expect_code(64);
    assert!(run.stderr.contains("/nonexistent/portier.toml"));
}

#[tokio::test]
async fn bad_configurations_exit_64_naming_the_key_and_position() {
    let site = Site::start().await;
    let good = std::fs::read_to_string(site.config()).expect("config");
    let cases = [
        // An unknown key (all of them are reported at once).
        (
            good.replace("[site]\n", "[site]\ncolour = \"blue\"\nflavour = 1\n"),
            vec!["site.colour", "site.flavour"],
        ),
        // An unknown group.
        (
            good.replace(
                "group = \"staff\"\nunit = \"office\"",
                "group = \"stuff\"\nunit = \"office\"",
            ),
            vec!["permission[3].group", "stuff"],
        ),
        // A cycle in the unit tree.
        (
            good.replace(
                "[[unit]]\nid = \"building\"\n",
                "[[unit]]\nid = \"building\"\nparent = \"office\"\n",
            ),
            vec!["unit", "cycle"],
        ),
        // A bad schedule.
        (
            good.replace("Mon-Fri 08:00-18:00", "Mon-Fri 8-18"),
            vec!["permission[1].schedule"],
        ),
        // A bad time zone.
        (
            good.replace("Europe/Berlin", "Europe/Atlantis"),
            vec!["site.timezone"],
        ),
    ];
    for (text, wanted) in cases {
        std::fs::write(site.config(), &text).expect("write");
        let run = site.portier(&["check-config"]).await;
        assert_eq!(run.code, 64, "{wanted:?}: {}", run.stderr);
        for w in &wanted {
            assert!(run.stderr.contains(w), "{w} not in {}", run.stderr);
        }
        let path = site.config().display().to_string();
        for line in run.stderr.lines() {
            let rest = line
                .strip_prefix(&format!("{path}:"))
                .unwrap_or_else(|| panic!("{line} does not start with the path"));
            let mut parts = rest.splitn(3, ':');
            let (l, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            assert!(
                l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok(),
                "{line}"
            );
        }
        // Every other command refuses the file too.
        site.portier(&["members"]).await.expect_code(64);
    }
}
