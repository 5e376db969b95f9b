//! Hostile values in Cobot's answers, end to end: the real binary syncs them from the fake
//! Cobot, then lists and explains. Nothing may panic; what cannot be read is a malformed record
//! or a failed sync naming it, never a crash or a guessed grant. Dates outside years 1–9999
//! are malformed (Cobot writes `YYYY`; the JSON contract prints `YYYY-MM-DD`).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;

use common::Site;
use portier_fake_cobot::Fixture;
use portier_fake_cobot::fixtures::*;
use serde_json::{Value, json};

/// A connected full-time membership with the given dates (strings as Cobot would send them).
fn dated(id: &str, starts: &str, canceled: Value, confirmed: &str, upcoming: Value) -> Value {
    json!({
        "id": id, "name": format!("Member {id}"), "email": format!("{id}@example.com"),
        "user": { "id": format!("user-{id}") },
        "plan": { "name": "Full Time", "parent_plan": { "id": PLAN_FULL_TIME },
                  "canceled_to": canceled.clone() },
        "upcoming_plan": upcoming,
        "confirmed_at": confirmed, "starts_at": starts, "canceled_to": canceled
    })
}

#[tokio::test]
async fn dates_at_the_ends_of_time_are_synced_listed_and_explained_without_a_panic() {
    let today = common::today();
    let mut fixture = Fixture::standard(today);
    let far_upcoming = json!({
        "name": "Part Time (weekdays)", "parent_plan": { "id": PLAN_PART_TIME },
        "canceled_to": "+262142/12/31", "starts_at": "+262142/12/31"
    });
    let early_upcoming = json!({
        "name": "Part Time (weekdays)", "parent_plan": { "id": PLAN_PART_TIME },
        "starts_at": "-262143/01/01"
    });
    let margaret = membership(
        MARGARET,
        "Margaret Hamilton",
        Some(&user_id_of(MARGARET)),
        plan_copy("Flex (day passes)", PLAN_FLEX, None),
        today - chrono::Days::new(500),
        None,
    );
    fixture.memberships = json!([
        margaret,
        dated(
            "h1",
            "+262142/12/31",
            json!("+262142/12/31"),
            "+262142/12/31 23:59:59 +0000",
            far_upcoming
        ),
        dated(
            "h2",
            "-262143/01/01",
            json!("-262143/01/01"),
            "-262143/01/01 00:00:00 +0000",
            early_upcoming
        ),
        dated(
            "h3",
            "2020/01/01",
            Value::Null,
            "+262142/12/31 23:59:59 -2359",
            Value::Null
        ),
        dated(
            "h4",
            "2020/01/01",
            json!("9999999999/01/01"),
            "2019/12/31 09:00:00 +0000",
            Value::Null
        ),
        dated(
            "h5",
            "2020/01/01",
            Value::Null,
            "+262143-12-31T23:59:59+14:00",
            Value::Null
        ),
    ]);
    let huge: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
    fixture.check_in_tokens = json!([
        { "token": "A".repeat(100_000), "membership": { "id": "h1" } },
        { "token": 1e308, "membership": { "id": "h2" } },
        { "token": huge, "membership": { "id": 12345678901234567890u64 } },
    ]);
    fixture.bookings = json!([
        { "from": "+262142/12/31 23:59:59 +0000", "to": "+262142/12/31 23:59:59 +0000",
          "resource": { "id": RESOURCE_FLEX_DESK }, "membership": { "id": MARGARET } },
        { "from": "-262143/01/01 00:00:00 +0000", "to": "+262142/12/31 23:59:59 +0000",
          "resource": { "id": RESOURCE_FLEX_DESK }, "membership": { "id": MARGARET } },
    ]);
    let site = Site::with_fixture(fixture, today).await;

    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(0);
    let members = site.portier(&["members", "--json"]).await;
    members.expect_code(0);
    let listed = members.json();
    let warnings = run.json()["warnings"].to_string();
    for id in ["h1", "h2", "h3", "h4", "h5"] {
        assert!(
            warnings.contains(&format!("membership {id} ")),
            "{id} is not named malformed: {warnings}"
        );
        assert!(
            listed
                .as_array()
                .is_some_and(|m| m.iter().all(|m| m["id"] != id))
        );
    }
    assert!(listed.as_array().is_some_and(|m| !m.is_empty()), "{listed}");

    for at in [
        "2026-06-01T10:00:00Z",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
    ] {
        for member in ["h1", "h2", "h3", "h4", "h5", MARGARET] {
            let run = site
                .portier(&[
                    "explain",
                    "--member",
                    member,
                    "--unit",
                    "front_door",
                    "--at",
                    at,
                    "--json",
                ])
                .await;
            assert!(
                run.code == 0 || run.code == 2,
                "{member} at {at}: exit {}: {}",
                run.code,
                run.stderr
            );
        }
        site.portier(&["members", "--at", at, "--json"])
            .await
            .expect_code(0);
    }
}

#[tokio::test]
async fn two_records_with_one_membership_id_fail_the_sync_naming_it_and_keep_the_snapshot() {
    let site = Site::start().await;
    site.portier(&["sync"]).await.expect_code(0);
    let before = site.portier(&["members", "--json"]).await.json();

    let mut memberships = site.cobot.fixture().memberships;
    let copy = memberships[0].clone();
    if let Some(list) = memberships.as_array_mut() {
        let mut changed = copy;
        changed["name"] = json!("Someone Else");
        list.push(changed);
    }
    site.cobot.set_memberships(memberships);
    let run = site.portier(&["sync", "--json"]).await;
    run.expect_code(1);
    assert!(
        run.stderr.contains(ADA) && run.stderr.contains("twice"),
        "{}",
        run.stderr
    );
    let after = site.portier(&["members", "--json"]).await.json();
    assert_eq!(after, before);
}
