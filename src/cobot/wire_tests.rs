//! Unit tests of `wire`, against the shapes of `reference/cobot-api.md` (F1, F2 verbatim).

use chrono::TimeZone;

use super::*;

const F1_PLANS: &str = include_str!("testdata/f1_plans.json");
const F2_MEMBERSHIPS: &str = include_str!("testdata/f2_memberships.json");

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[test]
fn f1_plans_are_read_with_hidden_ones_included() {
    let parsed = parse_plans(F1_PLANS).unwrap();
    assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
    let names: Vec<_> = parsed.items.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["Full Time", "Part Time (weekdays)", "Flex (day passes)"]
    );
    assert!(parsed.items[1].hidden);
    assert_eq!(parsed.items[0].id, "a1f0c3e2b4d54f6e8a9b0c1d2e3f4a51");
}

#[test]
fn f2_memberships_cover_all_five_cases() {
    let parsed = parse_memberships(F2_MEMBERSHIPS).unwrap();
    assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
    let m = &parsed.items;
    assert_eq!(m.len(), 5);

    // 1. active and connected
    assert_eq!(m[0].id, "0c4f75fa14924423810d6f12aeb56fbb");
    assert_eq!(m[0].name, "Ada Lovelace");
    assert_eq!(m[0].email.as_deref(), Some("ada@example.com"));
    assert_eq!(
        m[0].user_id.as_deref(),
        Some("1d4d33ea2501579f146a6f12aeb56fbb")
    );
    let plan = m[0].plan.as_ref().unwrap();
    assert_eq!(
        plan.parent_plan_id.as_deref(),
        Some("a1f0c3e2b4d54f6e8a9b0c1d2e3f4a51")
    );
    assert_eq!(plan.name.as_deref(), Some("Full Time"));
    assert_eq!(plan.canceled_to, None);
    assert_eq!(
        m[0].confirmed_at,
        Some(Utc.with_ymd_and_hms(2024, 1, 2, 9, 0, 0).unwrap())
    );
    assert_eq!(m[0].starts_at, Some(day(2024, 1, 2)));
    assert_eq!(m[0].upcoming_plan, None);

    // 2. cancelled in the past, on the membership and on its plan copy
    assert_eq!(m[1].canceled_to, Some(day(2025, 3, 31)));
    assert_eq!(
        m[1].plan.as_ref().unwrap().canceled_to,
        Some(day(2025, 3, 31))
    );

    // 3. confirmed, starting in the future
    assert_eq!(m[2].starts_at, Some(day(2025, 7, 1)));
    assert!(m[2].confirmed_at.is_some());

    // 4. not connected (`"user": null`)
    assert_eq!(m[3].user_id, None);

    // 5. unknown parent plan: read as given, judged later
    assert_eq!(
        m[4].plan.as_ref().unwrap().parent_plan_id.as_deref(),
        Some("ffffffffffffffffffffffffffffffff")
    );
}

#[test]
fn a_user_that_is_null_missing_or_without_id_is_not_connected() {
    let body = r#"[
        {"id": "a", "user": null},
        {"id": "b"},
        {"id": "c", "user": {"email": "c@example.com"}},
        {"id": "d", "user": {"id": "u-d"}}
    ]"#;
    let parsed = parse_memberships(body).unwrap();
    let users: Vec<_> = parsed.items.iter().map(|m| m.user_id.clone()).collect();
    assert_eq!(users, [None, None, None, Some("u-d".to_owned())]);
}

#[test]
fn a_malformed_membership_is_skipped_and_named() {
    let body = r#"[
        {"id": "good", "name": "Ada"},
        {"name": "Nobody"},
        {"id": "bad-date", "name": "Bob", "starts_at": "2025/13/45"},
        "not an object",
        {"id": "bad-upcoming", "upcoming_plan": {"parent_plan": {"id": "p"}}}
    ]"#;
    let parsed = parse_memberships(body).unwrap();
    assert_eq!(parsed.items.len(), 1);
    assert_eq!(parsed.items[0].id, "good");
    let msgs = parsed.malformed.join("\n");
    assert_eq!(parsed.malformed.len(), 4, "{msgs}");
    assert!(
        parsed.malformed[0].contains("#2 (Nobody)") && parsed.malformed[0].contains("no id"),
        "{msgs}"
    );
    assert!(
        parsed.malformed[1].contains("bad-date (Bob)")
            && parsed.malformed[1].contains("starts_at \"2025/13/45\" is not a date"),
        "{msgs}"
    );
    assert!(parsed.malformed[2].contains("#4"), "{msgs}");
    assert!(
        parsed.malformed[3].contains("upcoming_plan has no starts_at"),
        "{msgs}"
    );
}

#[test]
fn unknown_fields_are_ignored_and_iso_dates_are_accepted() {
    let body = r#"[{"id": "x", "brand_new_field": {"a": [1, 2]},
        "confirmed_at": "2025-06-01T08:00:00Z", "starts_at": "2025-06-02",
        "canceled_to": "", "upcoming_plan": {"name": "Full Time",
        "parent_plan": {"id": "p1"}, "starts_at": "2025/06/20", "price": "1.0"}}]"#;
    let parsed = parse_memberships(body).unwrap();
    assert!(parsed.malformed.is_empty(), "{:?}", parsed.malformed);
    let m = &parsed.items[0];
    assert_eq!(
        m.confirmed_at,
        Some(Utc.with_ymd_and_hms(2025, 6, 1, 8, 0, 0).unwrap())
    );
    assert_eq!(m.starts_at, Some(day(2025, 6, 2)));
    assert_eq!(m.canceled_to, None);
    let up = m.upcoming_plan.as_ref().unwrap();
    assert_eq!(up.starts_at, day(2025, 6, 20));
    assert_eq!(up.plan.parent_plan_id.as_deref(), Some("p1"));
}

#[test]
fn a_body_that_is_not_an_array_fails_the_whole_response() {
    let err = parse_memberships(r#"{"errors": {"base": "nope"}}"#).unwrap_err();
    assert!(err.contains("expected a JSON array"), "{err}");
}

#[test]
fn an_html_body_fails_as_not_json() {
    let err = parse_plans("<!DOCTYPE html><html><body>Maintenance</body></html>").unwrap_err();
    assert!(err.starts_with("not JSON"), "{err}");
}

#[test]
fn a_truncated_body_fails_as_truncated() {
    let cut = &F2_MEMBERSHIPS[..F2_MEMBERSHIPS.len() / 2];
    let err = parse_memberships(cut).unwrap_err();
    assert!(err.starts_with("truncated JSON"), "{err}");
}

#[test]
fn custom_fields_are_merged_into_their_memberships() {
    let mut memberships = parse_memberships(r#"[{"id": "m1"}, {"id": "m2"}]"#)
        .unwrap()
        .items;
    let body = r#"[
        {"membership_id": "m1", "fields": [
            {"id": "f1", "label": "smart_spaces_access_additional_units", "value": "staff, x"},
            {"id": "f2", "label": "RFID card", "value": null}]},
        {"membership_id": "unknown", "fields": [{"id": "f1", "label": "l", "value": "v"}]},
        {"fields": []}
    ]"#;
    let parsed = parse_custom_fields(body).unwrap();
    assert_eq!(parsed.malformed.len(), 1);
    merge_custom_fields(&mut memberships, parsed.items);
    assert_eq!(
        memberships[0].custom_fields,
        [
            CustomField {
                label: "smart_spaces_access_additional_units".into(),
                value: "staff, x".into()
            },
            CustomField {
                label: "RFID card".into(),
                value: String::new()
            }
        ]
    );
    assert!(memberships[1].custom_fields.is_empty());
}

#[test]
fn check_in_tokens_need_a_token_and_a_membership() {
    let body = r#"[
        {"token": "04A1B2C3", "membership": {"id": "m1", "name": "Ada"}},
        {"token": 12345, "membership": {"id": "m2"}},
        {"token": "0000", "membership": null}
    ]"#;
    let parsed = parse_check_in_tokens(body).unwrap();
    assert_eq!(parsed.items.len(), 2);
    assert_eq!(parsed.items[1].token, "12345");
    assert_eq!(parsed.malformed.len(), 1);
}

#[test]
fn bookings_without_membership_are_ignored_not_malformed() {
    let body = r#"[
        {"from": "2025/06/15 09:00:00 +0000", "to": "2025/06/15 17:00:00 +0200",
         "resource": {"id": "r1", "name": "Desk"}, "membership": {"id": "m1", "name": "Ada"}},
        {"from": "2025/06/15 09:00:00 +0000", "to": "2025/06/15 10:00:00 +0000",
         "resource": {"id": "r1"}, "title": "event booking"},
        {"from": "2025/06/15 09:00:00 +0000", "to": "2025/06/15 10:00:00 +0000", "membership": null},
        {"from": "soon", "to": "2025/06/15 10:00:00 +0000", "membership": {"id": "m2"}}
    ]"#;
    let parsed = parse_bookings(body).unwrap();
    assert_eq!(parsed.items.len(), 1);
    let b = &parsed.items[0];
    assert_eq!(b.membership_id, "m1");
    assert_eq!(b.resource_id.as_deref(), Some("r1"));
    assert_eq!(b.to, Utc.with_ymd_and_hms(2025, 6, 15, 15, 0, 0).unwrap());
    assert_eq!(parsed.malformed.len(), 1, "{:?}", parsed.malformed);
    assert!(parsed.malformed[0].contains("of membership m2"));
}

#[test]
fn query_times_use_cobots_format() {
    let t = Utc.with_ymd_and_hms(2025, 6, 14, 0, 0, 0).unwrap();
    assert_eq!(format_query_time(t), "2025-06-14 00:00 +0000");
}

#[test]
fn dates_and_times_outside_four_digit_years_make_the_record_malformed() {
    assert_eq!(parse_date("9999/12/31"), Some(day(9999, 12, 31)));
    assert_eq!(parse_date("0001-01-01"), Some(day(1, 1, 1)));
    for hostile in [
        "+262142/12/31",
        "-262143/01/01",
        "+10000-01-01",
        "0000/01/01",
    ] {
        assert_eq!(parse_date(hostile), None, "{hostile}");
    }
    assert!(parse_time("9999/12/31 23:59:59 +0000").is_some());
    for hostile in [
        "+262142/12/31 23:59:59 +0000",
        "-262143/01/01 00:00:00 +0000",
        "9999/12/31 23:59:59 -2359",
        "0001/01/01 00:00:00 +2359",
    ] {
        assert_eq!(parse_time(hostile), None, "{hostile}");
    }
    let body = r#"[{"id": "far", "starts_at": "+262142/12/31"},
                   {"id": "ok", "starts_at": "2025/06/02"}]"#;
    let parsed = parse_memberships(body).unwrap();
    assert_eq!(parsed.items.len(), 1);
    assert!(
        parsed.malformed[0].contains("membership far") && parsed.malformed[0].contains("starts_at"),
        "{:?}",
        parsed.malformed
    );
}

#[test]
fn two_records_with_one_membership_id_fail_the_whole_answer_naming_it() {
    let body = r#"[{"id": "m1", "name": "A"}, {"id": "m2"}, {"id": " m1 ", "name": "B"}]"#;
    let error = parse_memberships(body).unwrap_err();
    assert!(error.contains("m1") && error.contains("twice"), "{error}");
}

#[test]
fn deeply_nested_or_huge_values_fail_or_skip_without_a_panic() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_memberships(&deep).is_ok_and(|p| p.items.is_empty()));
    let deep_record = format!(
        "[{{\"id\": \"m1\", \"x\": {}{}}}]",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    // An unknown field is skipped, however deep.
    assert!(parse_memberships(&deep_record).is_ok_and(|p| p.items.len() == 1));
    let deep_object = format!("[{}1{}]", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    assert!(parse_plans(&deep_object).is_ok_and(|p| p.items.is_empty()));
    let huge = r#"[{"id": 1e999999}, {"id": -0.0}, {"id": 18446744073709551616}, {"id": "p"}]"#;
    let parsed = parse_plans(huge);
    assert!(parsed.is_err() || parsed.is_ok_and(|p| !p.items.is_empty()));
}
