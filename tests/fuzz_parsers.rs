//! Fuzzing of every parser that reads text from outside, with proptest at depth (so it runs on
//! stable and in CI): the configuration file (arbitrary TOML and mutated versions of the shipped
//! `config/portier.toml` and the demo site), Cobot's JSON answers (arbitrary values and structural
//! and byte-level mutations of the fixtures, carried on through `compile` and `decide`), and
//! schedule strings. The property everywhere: no panic; a rejected configuration names a key or
//! a position for every error.
//!
//! Cases per target: `PROPTEST_CASES` (default sized for about a minute of CI on a small
//! machine; see RELIABILITY.md for the long local form). Seeds that once mattered are replayed
//! first from `tests/corpus/` on every run; proptest keeps shrunk failures in
//! `tests/fuzz_parsers.proptest-regressions`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

use std::path::Path;

use chrono::{NaiveDate, TimeZone, Utc};
use portier::cobot::wire;
use portier::config::Config;
use portier::domain::model::CobotData;
use portier::domain::schedule::Schedule;
use portier::domain::{Credential, Moment, Request, compile, decide};
use portier_fake_cobot::fixtures;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, FileFailurePersistence};
use serde_json::Value;

const SHIPPED_CONFIG: &str = include_str!("../config/portier.toml");

/// Cases for one target: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runner(default: u32) -> RunnerConfig {
    RunnerConfig {
        cases: cases(default),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        max_shrink_iters: 2_000,
        ..RunnerConfig::default()
    }
}

fn corpus(folder: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(folder);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (
                p.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Parses `text` as a configuration; a rejection must point at something for every error.
fn check_config(text: &str) {
    let path = Path::new("/nonexistent/portier.toml");
    match Config::parse(text, path, None) {
        Ok(config) => {
            // A valid configuration compiles and decides without panicking.
            let synced = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
            let snapshot = compile(&CobotData::default(), &config.policy, 1, synced);
            let at = Moment::trusted(Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap());
            for unit in snapshot.unit_ids().collect::<Vec<_>>() {
                let u = snapshot.unit(unit).unwrap();
                let d = decide(
                    &snapshot,
                    &Request {
                        unit: u,
                        credential: Credential::Admin,
                    },
                    &at,
                );
                let _ = d.granted();
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "rejected without an error");
            for e in &errors.0 {
                assert!(
                    // A file with no settings at all gets one file-level error naming the file.
                    !e.key.is_empty()
                        || e.line > 0
                        || e.message.contains("edit /nonexistent/portier.toml"),
                    "an error names neither a key nor a position: {e}\n--- text:\n{text}"
                );
                assert!(!e.message.is_empty(), "an error without a message: {e:?}");
                let _ = e.to_string();
            }
        }
    }
}

/// Values a mutation puts in place of a value in the file.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"\"".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("1e308".to_owned()),
        Just("nan".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("\"18446744073709551615s\"".to_owned()),
        Just("\"99999999999d\"".to_owned()),
        Just("\"0s\"".to_owned()),
        Just("\"1ns\"".to_owned()),
        Just("\"584942417355y\"".to_owned()),
        Just("\"-5m\"".to_owned()),
        Just("\"24:00-24:00\"".to_owned()),
        Just("[\"Mon-Sun 00:00-24:00\", \"xx\"]".to_owned()),
        Just("\"9999-12-31\"".to_owned()),
        Just("\"0000-01-01\"".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
        Just("\"Mars/Olympus\"".to_owned()),
        Just("\"http://10.0.0.1\"".to_owned()),
        Just("\"mqtt://[::1]:99999\"".to_owned()),
        Just("\"rtu:///dev/ttyUSB0?baud=0\"".to_owned()),
        Just("\"tcp://127.0.0.1:5020\"".to_owned()),
        Just("'\\u0000'".to_owned()),
        "\"[^\"\\\\\\n]{0,40}\"".prop_map(|s| s),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
    ]
}

/// One edit of a configuration text.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    ReplaceValue(usize, String),
    InsertLine(usize, String),
    Truncate(usize),
    FlipByte(usize, u8),
    Uncomment(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let line = prop_oneof![
        toml_value().prop_map(|v| format!("unknown_key = {v}")),
        Just("[site]".to_owned()),
        Just("[[lock]]".to_owned()),
        Just("[[unit]]".to_owned()),
        Just("[[permission]]".to_owned()),
        Just("[[reader]]".to_owned()),
        Just("[[override]]".to_owned()),
        Just("[[holiday]]".to_owned()),
        Just("[offline]".to_owned()),
        Just("[events]".to_owned()),
        Just("[mqtt]".to_owned()),
        Just("site = 1".to_owned()),
        Just("[site.timezone]".to_owned()),
        (
            prop::sample::select(vec![
                "id",
                "unit",
                "group",
                "parent",
                "lock",
                "driver",
                "open_for",
                "schedule",
                "date",
                "until",
                "member",
                "topic",
                "sync_interval",
                "retention",
                "max_age",
                "keep_groups",
                "max_revoke_ratio",
                "slave",
                "coil",
                "register",
                "address",
                "booking_horizon",
                "token_cache_ttl",
                "request_timeout",
                "fallback_plan",
                "timezone",
                "listen",
            ]),
            toml_value()
        )
            .prop_map(|(k, v)| format!("{k} = {v}")),
        "[ -~]{0,60}",
    ];
    prop_oneof![
        1 => any::<usize>().prop_map(Edit::DeleteLine),
        1 => any::<usize>().prop_map(Edit::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        4 => (any::<usize>(), toml_value()).prop_map(|(i, v)| Edit::ReplaceValue(i, v)),
        3 => (any::<usize>(), line).prop_map(|(i, l)| Edit::InsertLine(i, l)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::FlipByte(i, b)),
        2 => any::<usize>().prop_map(Edit::Uncomment),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut bytes_edits = Vec::new();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::ReplaceValue(i, v) => {
                // The i-th line that has a value gets a new one.
                let with_value: Vec<usize> = (0..lines.len())
                    .filter(|&j| !lines[j].trim_start().starts_with('#') && lines[j].contains('='))
                    .collect();
                if !with_value.is_empty() {
                    let j = with_value[i % with_value.len()];
                    let key = lines[j].split('=').next().unwrap_or("").to_owned();
                    lines[j] = format!("{key}= {v}");
                }
            }
            Edit::InsertLine(i, l) => lines.insert(i % (lines.len() + 1), l.clone()),
            Edit::Uncomment(i) => {
                let commented: Vec<usize> = (0..lines.len())
                    .filter(|&j| {
                        let t = lines[j].trim_start();
                        t.starts_with("# ") && t.contains('=')
                    })
                    .collect();
                if !commented.is_empty() {
                    let j = commented[i % commented.len()];
                    lines[j] = lines[j].trim_start().trim_start_matches("# ").to_owned();
                }
            }
            other => bytes_edits.push(other.clone()),
        }
    }
    let mut out = lines.join("\n").into_bytes();
    for e in bytes_edits {
        match e {
            Edit::Truncate(i) if !out.is_empty() => out.truncate(i % out.len()),
            Edit::FlipByte(i, b) if !out.is_empty() => {
                let at = i % out.len();
                out[at] = b;
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn seed_config() -> impl Strategy<Value = String> {
    let integration = portier::demo::DEMO_CONFIG
        .replace("{api}", "http://127.0.0.1:9")
        .replace("{http_port}", "8080");
    prop::sample::select(vec![
        SHIPPED_CONFIG.to_owned(),
        portier::demo::DEMO_CONFIG.to_owned(),
        integration,
    ])
}

#[test]
fn the_configuration_corpus_never_panics_and_every_error_points_somewhere() {
    for (name, text) in corpus("config") {
        eprintln!("corpus: {name}");
        check_config(&text);
    }
    check_config(SHIPPED_CONFIG);
}

proptest! {
    #![proptest_config(runner(1_500))]

    #[test]
    fn mutated_configurations_never_panic_and_every_error_names_a_key_or_position(
        seed in seed_config(),
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        check_config(&apply(&seed, &edits));
    }
}

/// Arbitrary TOML documents built from tables, arrays of tables and keys of the config.
fn toml_document() -> impl Strategy<Value = String> {
    let header = prop::sample::select(vec![
        "[site]",
        "[http]",
        "[cobot]",
        "[offline]",
        "[events]",
        "[mqtt]",
        "[[group]]",
        "[[assignment]]",
        "[[unit]]",
        "[[permission]]",
        "[[holiday]]",
        "[[override]]",
        "[[lock]]",
        "[[reader]]",
        "[[nonsense]]",
    ]);
    let key = prop::sample::select(vec![
        "timezone",
        "name",
        "state_dir",
        "listen",
        "subdomain",
        "api_url",
        "www_url",
        "sync_interval",
        "id",
        "plan",
        "groups",
        "group",
        "unit",
        "parent",
        "lock",
        "open_for",
        "schedule",
        "date",
        "member",
        "add_groups",
        "blocked",
        "until",
        "driver",
        "address",
        "slave",
        "coil",
        "topic",
        "unlock_payload",
        "url",
        "client_id",
        "keep_groups",
        "max_age",
        "retention",
        "fallback_plan",
        "requires_booking",
        "booking_resources",
        "device",
        "characteristic",
    ]);
    let entry = (key, toml_value()).prop_map(|(k, v)| format!("{k} = {v}"));
    let section = (header, prop::collection::vec(entry, 0..6))
        .prop_map(|(h, es)| format!("{h}\n{}", es.join("\n")));
    prop::collection::vec(section, 0..12).prop_map(|s| {
        format!(
            "[site]\ntimezone = \"Europe/Berlin\"\n[cobot]\nsubdomain = \"x\"\n{}",
            s.join("\n")
        )
    })
}

proptest! {
    #![proptest_config(runner(1_500))]

    #[test]
    fn arbitrary_toml_documents_never_panic_and_every_error_names_a_key_or_position(
        text in toml_document(),
    ) {
        check_config(&text);
    }

    #[test]
    fn arbitrary_text_as_configuration_never_panics(text in "\\PC{0,300}") {
        check_config(&text);
    }
}

// ---------------------------------------------------------------------------------------------
// Cobot JSON
// ---------------------------------------------------------------------------------------------

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 24).unwrap()
}

/// Leaves of arbitrary JSON, weighted towards what a Cobot parser meets at its edges.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "2026/10/25",
            "2026/02/30",
            "9999/12/31",
            "0000/01/01",
            "-262144/01/01",
            "2026/10/25 02:30:00 +0000",
            "2026/10/25 25:61:61 +9999",
            "9999/12/31 23:59:59 -2400",
            "262143/12/31 23:59:59 +0000",
            "2026-10-25",
            "2026-10-25T02:30:00Z",
            "HANſ0001",
            "04:A1:B2:C3:D4",
            "staff, unknown_group,,  ,",
            "smart_spaces_access_additional_units",
            fixtures::PLAN_FULL_TIME,
            fixtures::PLAN_UNKNOWN,
            fixtures::ADA,
        ])
        .prop_map(|s| Value::String(s.to_owned())),
        "\\PC{0,24}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "id",
                        "name",
                        "email",
                        "user",
                        "plan",
                        "parent_plan",
                        "upcoming_plan",
                        "starts_at",
                        "canceled_to",
                        "confirmed_at",
                        "hidden",
                        "token",
                        "membership",
                        "membership_id",
                        "fields",
                        "label",
                        "value",
                        "from",
                        "to",
                        "resource",
                        "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(item, p, out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(item, p, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(usize, Value),
    Remove(usize),
    DuplicateRecord(usize),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        4 => (any::<usize>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        2 => any::<usize>().prop_map(JsonEdit::Remove),
        1 => any::<usize>().prop_map(JsonEdit::DuplicateRecord),
    ]
}

fn apply_json(mut doc: Value, edits: &[JsonEdit]) -> Value {
    for e in edits {
        let mut ps = Vec::new();
        pointers(&doc, String::new(), &mut ps);
        if ps.is_empty() {
            continue;
        }
        match e {
            JsonEdit::Replace(i, v) => {
                if let Some(slot) = doc.pointer_mut(&ps[i % ps.len()]) {
                    *slot = v.clone();
                }
            }
            JsonEdit::Remove(i) => {
                let p = &ps[i % ps.len()];
                let (parent, last) = p.rsplit_once('/').unwrap();
                let last = last.replace("~1", "/").replace("~0", "~");
                let target = if parent.is_empty() {
                    Some(&mut doc)
                } else {
                    doc.pointer_mut(parent)
                };
                match target {
                    Some(Value::Object(m)) => {
                        m.remove(&last);
                    }
                    Some(Value::Array(a)) => {
                        if let Some(i) = last.parse::<usize>().ok().filter(|&i| i < a.len()) {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
            JsonEdit::DuplicateRecord(i) => {
                if let Value::Array(a) = &mut doc
                    && !a.is_empty()
                {
                    let r = a[i % a.len()].clone();
                    a.push(r);
                }
            }
        }
    }
    doc
}

#[derive(Debug, Clone)]
enum ByteEdit {
    Truncate(usize),
    Set(usize, u8),
    Insert(usize, String),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        any::<usize>().prop_map(ByteEdit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "{", "}", "[", "]", ",", "\"", "\\u", "null", ":", "1e999"
            ])
        )
            .prop_map(|(i, s)| ByteEdit::Insert(i, s.to_owned())),
    ]
}

fn apply_bytes(text: &str, edits: &[ByteEdit]) -> String {
    let mut b = text.as_bytes().to_vec();
    for e in edits {
        if b.is_empty() {
            break;
        }
        match e {
            ByteEdit::Truncate(i) => b.truncate(i % b.len()),
            ByteEdit::Set(i, v) => {
                let at = i % b.len();
                b[at] = *v;
            }
            ByteEdit::Insert(i, s) => {
                let at = i % b.len();
                b.splice(at..at, s.bytes());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

/// Which Cobot answer a document is fed to.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Plans,
    Memberships,
    CustomFields,
    CheckInTokens,
    Bookings,
    CheckIns,
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop::sample::select(vec![
        Endpoint::Plans,
        Endpoint::Memberships,
        Endpoint::CustomFields,
        Endpoint::CheckInTokens,
        Endpoint::Bookings,
        Endpoint::CheckIns,
    ])
}

fn fixture(e: Endpoint) -> Value {
    match e {
        Endpoint::Plans => fixtures::plans(),
        Endpoint::Memberships => fixtures::memberships(today()),
        Endpoint::CustomFields => fixtures::custom_fields(),
        Endpoint::CheckInTokens => fixtures::check_in_tokens(),
        Endpoint::Bookings => fixtures::bookings(today()),
        Endpoint::CheckIns => serde_json::json!([
            {"id": "c1", "valid_from": "2026/10/24 08:00:00 +0000", "valid_until": null}
        ]),
    }
}

/// The integration site's policy: what the fuzzed Cobot data is compiled against.
fn site_policy() -> portier::domain::model::Policy {
    let text = portier::demo::DEMO_CONFIG
        .replace("{api}", "http://127.0.0.1:9")
        .replace("{http_port}", "8080");
    Config::parse(&text, Path::new("/nonexistent/portier.toml"), None)
        .expect("the demo configuration is valid")
        .policy
}

/// Feeds `body` to the endpoint's parser and, with the fixtures for the rest, through the sync's
/// own steps: merge, compile, decide for every member and card on every unit at DST moments.
fn check_cobot(e: Endpoint, body: &str) {
    let standard = |f: Endpoint| fixture(f).to_string();
    let mut data = CobotData {
        plans: wire::parse_plans(&standard(Endpoint::Plans)).unwrap().items,
        memberships: wire::parse_memberships(&standard(Endpoint::Memberships))
            .unwrap()
            .items,
        check_in_tokens: wire::parse_check_in_tokens(&standard(Endpoint::CheckInTokens))
            .unwrap()
            .items,
        bookings: wire::parse_bookings(&standard(Endpoint::Bookings))
            .unwrap()
            .items,
        malformed: Vec::new(),
    };
    let mut fields = wire::parse_custom_fields(&standard(Endpoint::CustomFields))
        .unwrap()
        .items;
    match e {
        Endpoint::Plans => {
            if let Ok(p) = wire::parse_plans(body) {
                data.plans = p.items;
                data.malformed.extend(p.malformed);
            }
        }
        Endpoint::Memberships => {
            if let Ok(p) = wire::parse_memberships(body) {
                data.memberships = p.items;
                data.malformed.extend(p.malformed);
            }
        }
        Endpoint::CustomFields => {
            if let Ok(p) = wire::parse_custom_fields(body) {
                fields = p.items;
                data.malformed.extend(p.malformed);
            }
        }
        Endpoint::CheckInTokens => {
            if let Ok(p) = wire::parse_check_in_tokens(body) {
                data.check_in_tokens = p.items;
                data.malformed.extend(p.malformed);
            }
        }
        Endpoint::Bookings => {
            if let Ok(p) = wire::parse_bookings(body) {
                data.bookings = p.items;
                data.malformed.extend(p.malformed);
            }
        }
        Endpoint::CheckIns => {
            let _ = wire::parse_check_ins(body).map(|p| p.items.len());
            return;
        }
    }
    wire::merge_custom_fields(&mut data.memberships, fields);
    // The stored form must round-trip (the store keeps CobotData as JSON).
    let stored = serde_json::to_string(&data).unwrap();
    let back: CobotData = serde_json::from_str(&stored).unwrap();
    assert_eq!(back, data);

    let policy = site_policy();
    let synced = Utc.with_ymd_and_hms(2026, 10, 24, 10, 0, 0).unwrap();
    let snapshot = compile(&data, &policy, 1, synced);
    let moments = [
        Utc.with_ymd_and_hms(2026, 10, 24, 10, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap(),
        Utc.with_ymd_and_hms(9999, 12, 31, 23, 0, 0).unwrap(),
    ];
    let units: Vec<_> = snapshot.unit_ids().map(str::to_owned).collect();
    let members: Vec<String> = data.memberships.iter().map(|m| m.id.clone()).collect();
    let cards: Vec<String> = data
        .check_in_tokens
        .iter()
        .map(|t| t.token.clone())
        .collect();
    for at in moments {
        let now = Moment::trusted(at);
        let _ = snapshot.members_at(at);
        for unit in &units {
            let u = snapshot.unit(unit).unwrap();
            for m in &members {
                let d = decide(
                    &snapshot,
                    &Request {
                        unit: u,
                        credential: Credential::Member(m),
                    },
                    &now,
                );
                let _ = d.reason(&snapshot);
            }
            for c in &cards {
                let d = decide(
                    &snapshot,
                    &Request {
                        unit: u,
                        credential: Credential::Card(c),
                    },
                    &now,
                );
                let _ = d.chain(&snapshot);
            }
        }
    }
}

#[test]
fn the_cobot_corpus_never_panics() {
    for (name, body) in corpus("cobot") {
        eprintln!("corpus: {name}");
        for e in [
            Endpoint::Plans,
            Endpoint::Memberships,
            Endpoint::CustomFields,
            Endpoint::CheckInTokens,
            Endpoint::Bookings,
            Endpoint::CheckIns,
        ] {
            check_cobot(e, &body);
        }
    }
}

proptest! {
    #![proptest_config(runner(800))]

    #[test]
    fn structurally_mutated_cobot_answers_never_panic_through_compile_and_decide(
        e in endpoint(),
        edits in prop::collection::vec(json_edit(), 1..6),
    ) {
        let doc = apply_json(fixture(e), &edits);
        check_cobot(e, &doc.to_string());
    }

    #[test]
    fn byte_mutated_cobot_answers_never_panic(
        e in endpoint(),
        edits in prop::collection::vec(byte_edit(), 1..6),
    ) {
        check_cobot(e, &apply_bytes(&fixture(e).to_string(), &edits));
    }

    #[test]
    fn arbitrary_json_as_any_cobot_answer_never_panics(
        e in endpoint(),
        doc in json_value(),
    ) {
        check_cobot(e, &doc.to_string());
    }
}

// ---------------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------------

fn check_schedule(windows: &[String]) {
    if let Ok(s) = Schedule::parse(windows) {
        // Its display parses back to the same schedule.
        let shown: Vec<String> = s.windows().iter().map(ToString::to_string).collect();
        let again = Schedule::parse(&shown)
            .unwrap_or_else(|e| panic!("{windows:?} shown as {shown:?} does not parse: {e}"));
        assert_eq!(again, s, "{windows:?} → {shown:?}");
        for minute in (0..7 * 24 * 60).step_by(37) {
            let local = NaiveDate::from_ymd_opt(2026, 10, 19)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                + chrono::Duration::minutes(minute);
            let _ = s.contains(local);
        }
    }
}

fn schedule_window() -> impl Strategy<Value = String> {
    let day = prop::sample::select(vec![
        "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "mon", "SUN", "Mo", "Monday", "",
    ]);
    let days = prop_oneof![
        Just(String::new()),
        day.clone().prop_map(|d| format!("{d} ")),
        (day.clone(), day.clone()).prop_map(|(a, b)| format!("{a}-{b} ")),
        prop::collection::vec(day, 1..4).prop_map(|ds| format!("{} ", ds.join(", "))),
    ];
    let time = prop_oneof![
        (0u32..30, 0u32..70).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        Just("24:00".to_owned()),
        Just("00:00".to_owned()),
        Just("99999999999999999999:00".to_owned()),
        Just("-1:00".to_owned()),
        Just("1:5".to_owned()),
        Just("".to_owned()),
        Just("٠٨:٠٠".to_owned()),
    ];
    prop_oneof![
        4 => (days, time.clone(), time).prop_map(|(d, a, b)| format!("{d}{a}-{b}")),
        1 => "\\PC{0,30}",
        1 => "[A-Za-z0-9:, -]{0,30}",
    ]
}

#[test]
fn the_schedule_corpus_never_panics() {
    for (name, text) in corpus("schedule") {
        eprintln!("corpus: {name}");
        let windows: Vec<String> = text.lines().map(str::to_owned).collect();
        check_schedule(&windows);
        for w in windows {
            check_schedule(&[w]);
        }
    }
}

proptest! {
    #![proptest_config(runner(4_000))]

    #[test]
    fn arbitrary_schedule_strings_never_panic_and_valid_ones_round_trip(
        windows in prop::collection::vec(schedule_window(), 0..4),
    ) {
        check_schedule(&windows);
    }
}
