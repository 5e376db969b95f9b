//! Offline truth: 31 days with Cobot unreachable. One gateway compiled its snapshot once, at day
//! 0, from what Cobot answered then, and decides every request from that cache. An always-online
//! gateway re-syncs every day from what Cobot answers *that* day (a plan switch already made, a
//! cancelled member gone from the list) and compiles afresh. For every request — every member,
//! by membership id, card and app user, on every unit, every 15 minutes and one minute before each
//! (so each schedule edge is seen from both sides), across members who start, end, switch plan up
//! and down (one of them on the autumn DST night), a plan copy that ends, booking-only members, a
//! holiday and an override that lapses — both must give the same answer.
//!
//! The clock is a parameter: `decide(&Snapshot, &Request, now)` is pure, so the 31 days take a
//! few seconds and no sleep. The Cobot answers go through the sync's own wire parsing, and the
//! offline gateway's cache goes through a real sled store on disk (saved, the store closed and
//! reopened, loaded and compiled, as `portier run` does at start).
//!
//! `OFFLINE_STEP_MINUTES` (default 15, 1–60) sets how often requests are made; each step also
//! asks one minute before the next. The long local form is `OFFLINE_STEP_MINUTES=1`: every
//! minute of the 31 days (RELIABILITY.md).

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

use std::path::Path;

use chrono::{DateTime, Days, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use portier::cobot::wire;
use portier::config::Config;
use portier::domain::model::{CobotData, Policy};
use portier::domain::{Credential, Decision, Moment, Request, Snapshot, compile, decide};
use portier::store::{Store, StoredSnapshot};
use portier_fake_cobot::fixtures::{self, PLAN_FLEX, PLAN_FULL_TIME, PLAN_PART_TIME, plan_copy};
use serde_json::{Value, json};

const PLAN_NIGHT: &str = "d4e3f6b5c7a85b9d1e2f3a4b5c6d7e84";
const DAYS: u64 = 31;

/// Day 0 is a Saturday; the autumn DST switch (2026-10-25) is day 15, the holiday day 20.
fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 10).unwrap() + Days::new(n)
}

const CONFIG: &str = r#"
[site]
timezone = "Europe/Berlin"
state_dir = "state"

[cobot]
api_url = "http://127.0.0.1:9"
additional_groups_field = "smart_spaces_access_additional_units"
booking_grace = "15m"

[[group]]
id = "full_time"
[[group]]
id = "part_time"
[[group]]
id = "flex"
[[group]]
id = "night"
[[group]]
id = "staff"

[[assignment]]
plan = "Full Time"
groups = ["full_time"]
[[assignment]]
plan = "b2e1d4f3c5a64e7f9b0a1c2d3e4f5a62"
groups = ["part_time"]
[[assignment]]
plan = "Flex (day passes)"
groups = ["flex"]
requires_booking = true
[[assignment]]
plan = "Night Owl"
groups = ["night"]

[[unit]]
id = "building"
[[unit]]
id = "front_door"
parent = "building"
lock = "front_lock"
[[unit]]
id = "office"
parent = "building"
lock = "office_lock"
[[unit]]
id = "night_room"
parent = "building"
lock = "night_lock"

[[permission]]
group = "full_time"
unit = "building"
[[permission]]
group = "part_time"
unit = "front_door"
schedule = ["Mon-Fri 08:00-18:00"]
[[permission]]
group = "flex"
unit = "front_door"
[[permission]]
group = "night"
unit = "night_room"
schedule = ["Fri-Mon 22:00-06:00", "02:00-03:00"]
[[permission]]
group = "night"
unit = "front_door"
schedule = ["Sat,Sun 00:00-24:00"]
[[permission]]
group = "staff"
unit = "office"
schedule = ["Mon-Sat 07:00-20:00"]

[[holiday]]
date = "2026-10-30"

[[override]]
member = "hedy.lamarr@example.com"
blocked = true
until = "2026-10-28"

[[override]]
member = "m0000000000000000000000000000010"
add_groups = ["night"]
until = "2026-10-26"

[[lock]]
id = "front_lock"
driver = "log"
[[lock]]
id = "office_lock"
driver = "log"
[[lock]]
id = "night_lock"
driver = "log"
"#;

fn policy() -> Policy {
    Config::parse(CONFIG, Path::new("/nonexistent/portier.toml"), None)
        .unwrap_or_else(|e| panic!("{e}"))
        .policy
}

/// A member of the simulation: how Cobot describes them on a given day.
struct Member {
    id: &'static str,
    name: &'static str,
    card: &'static str,
}

const MEMBERS: [Member; 11] = [
    Member {
        id: "m0000000000000000000000000000001",
        name: "Ada Lovelace",
        card: "04:A1:00:01",
    },
    Member {
        id: "m0000000000000000000000000000002",
        name: "Grace Hopper",
        card: "04A10002",
    },
    Member {
        id: "m0000000000000000000000000000003",
        name: "Charles Babbage",
        card: "04a1-0003",
    },
    Member {
        id: "m0000000000000000000000000000004",
        name: "Linus Torvalds",
        card: "04A10004",
    },
    Member {
        id: "m0000000000000000000000000000005",
        name: "Barbara Liskov",
        card: "04A10005",
    },
    Member {
        id: "m0000000000000000000000000000006",
        name: "Katherine Johnson",
        card: "04A10006",
    },
    Member {
        id: "m0000000000000000000000000000007",
        name: "Edsger Dijkstra",
        card: "04A10007",
    },
    Member {
        id: "m0000000000000000000000000000008",
        name: "Margaret Hamilton",
        card: "04A10008",
    },
    Member {
        id: "m0000000000000000000000000000009",
        name: "Alan Turing",
        card: "04A10009",
    },
    Member {
        id: "m0000000000000000000000000000010",
        name: "Hedy Lamarr",
        card: "04A10010",
    },
    Member {
        id: "m0000000000000000000000000000011",
        name: "Frances Allen",
        card: "04A10011",
    },
];

fn user_of(m: &Member) -> String {
    fixtures::user_id_of(m.id)
}

fn full() -> Value {
    plan_copy("Full Time", PLAN_FULL_TIME, None)
}
fn part(canceled_to: Option<NaiveDate>) -> Value {
    plan_copy("Part Time (weekdays)", PLAN_PART_TIME, canceled_to)
}
fn night() -> Value {
    plan_copy("Night Owl", PLAN_NIGHT, None)
}
fn flex() -> Value {
    plan_copy("Flex (day passes)", PLAN_FLEX, None)
}

fn with_upcoming(mut membership: Value, plan: Value, starts: NaiveDate) -> Value {
    let mut upcoming = plan;
    upcoming["starts_at"] = json!(fixtures::date(starts));
    membership["upcoming_plan"] = upcoming;
    membership
}

/// Cobot's answers as they are on `today` (what a sync that day would fetch). Changes that
/// Cobot announces in advance (start and end dates, an upcoming plan, bookings) are in every
/// answer from day 0 on; on the day they take effect Cobot's own data moves on.
fn cobot_on(today: NaiveDate) -> CobotData {
    let long_ago = day(0) - Days::new(400);
    let m = |i: usize, plan: Value, starts: NaiveDate, canceled: Option<NaiveDate>| {
        let member = &MEMBERS[i];
        fixtures::membership(
            member.id,
            member.name,
            Some(&user_of(member)),
            plan,
            starts,
            canceled,
        )
    };
    let mut memberships = vec![
        // Ada: full time throughout.
        m(0, full(), long_ago, None),
        // Grace: starts on day 5.
        m(1, full(), day(5), None),
    ];
    // Charles: part time, cancelled to day 12; Cobot stops listing him from day 20.
    if today < day(20) {
        memberships.push(m(2, part(Some(day(12))), long_ago, Some(day(12))));
    }
    // Linus: part time, switching up to full time on day 8.
    memberships.push(if today < day(8) {
        with_upcoming(m(3, part(None), long_ago, None), full(), day(8))
    } else {
        m(3, full(), long_ago, None)
    });
    // Barbara: full time, switching down to the night plan on the DST day.
    memberships.push(if today < day(15) {
        with_upcoming(m(4, full(), long_ago, None), night(), day(15))
    } else {
        m(4, night(), long_ago, None)
    });
    // Katherine: part time whose plan copy ends on day 22 (the membership itself does not).
    memberships.push(m(5, part(Some(day(22))), long_ago, None));
    // Edsger: night plan.
    memberships.push(m(6, night(), long_ago, None));
    // Margaret: booking-only.
    memberships.push(m(7, flex(), long_ago, None));
    // Alan: part time with the extra group "staff" from the custom field.
    memberships.push(m(8, part(None), long_ago, None));
    // Hedy: full time, blocked by an override until day 18.
    memberships.push(m(9, full(), long_ago, None));
    // Frances: starts on day 2 on part time, switches to the night plan on day 25, cancelled to
    // day 28.
    memberships.push(if today < day(25) {
        with_upcoming(m(10, part(None), day(2), Some(day(28))), night(), day(25))
    } else {
        m(10, night(), day(2), Some(day(28)))
    });

    let mut plans = fixtures::plans();
    plans
        .as_array_mut()
        .unwrap()
        .push(json!({"id": PLAN_NIGHT, "name": "Night Owl", "hidden": false}));
    let tokens: Vec<Value> = MEMBERS
        .iter()
        .filter(|member| today < day(20) || member.id != MEMBERS[2].id)
        .map(|member| json!({"token": member.card, "membership": {"id": member.id}}))
        .collect();
    let fields = json!([{ "membership_id": MEMBERS[8].id, "fields": [
        {"id": "f1", "label": "smart_spaces_access_additional_units", "value": "staff"}
    ]}]);
    // Margaret's bookings (UTC hours); the sync fetches yesterday to 30 days ahead.
    let bookings: Vec<Value> = [(3, 8, 16), (15, 0, 3), (16, 7, 9), (29, 20, 23)]
        .iter()
        .filter(|(d, _, _)| day(*d) + Days::new(1) >= today && day(*d) <= today + Days::new(30))
        .map(|(d, from, to)| {
            json!({
                "from": fixtures::time(day(*d), *from), "to": fixtures::time(day(*d), *to),
                "resource": {"id": fixtures::RESOURCE_FLEX_DESK},
                "membership": {"id": MEMBERS[7].id}
            })
        })
        .collect();

    let mut data = CobotData {
        plans: wire::parse_plans(&plans.to_string()).unwrap().items,
        memberships: wire::parse_memberships(&Value::Array(memberships).to_string())
            .unwrap()
            .items,
        check_in_tokens: wire::parse_check_in_tokens(&Value::Array(tokens).to_string())
            .unwrap()
            .items,
        bookings: wire::parse_bookings(&Value::Array(bookings).to_string())
            .unwrap()
            .items,
        malformed: Vec::new(),
    };
    let fields = wire::parse_custom_fields(&fields.to_string())
        .unwrap()
        .items;
    wire::merge_custom_fields(&mut data.memberships, fields);
    data
}

fn local_midnight(d: NaiveDate) -> DateTime<Utc> {
    Berlin
        .from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

/// What matters of a decision: granted or not, and for a grant what it opens for whom.
fn outcome(s: &Snapshot, d: &Decision) -> (bool, Option<String>, Option<(String, u128)>) {
    let member = d.member().map(|m| s.member_id(m).to_owned());
    let permit = d
        .permit()
        .map(|p| (p.lock().unwrap_or("-").to_owned(), p.open_for().as_millis()));
    (d.granted(), if d.granted() { member } else { None }, permit)
}

/// Minutes between requests: `OFFLINE_STEP_MINUTES`, default 15.
fn step_minutes() -> i64 {
    std::env::var("OFFLINE_STEP_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|m| (1..=60).contains(m))
        .unwrap_or(15)
}

/// Day 0's sync as the offline gateway keeps it: saved in a real sled store, the store closed,
/// reopened and read back, then compiled.
fn cache_from_disk(policy: &Policy, synced: DateTime<Utc>) -> Snapshot {
    let dir = tempfile::tempdir().unwrap();
    let record = StoredSnapshot {
        version: 1,
        synced_at: synced,
        data: cobot_on(day(0)),
    };
    Store::open(dir.path())
        .unwrap()
        .save_snapshot(&record)
        .unwrap();
    let loaded = Store::open(dir.path())
        .unwrap()
        .load_snapshot()
        .unwrap()
        .expect("the saved snapshot");
    assert_eq!(loaded, record, "the store gives back what it was given");
    compile(&loaded.data, policy, loaded.version, loaded.synced_at)
}

#[test]
fn thirty_days_offline_every_decision_from_the_day_zero_cache_equals_the_always_online_one() {
    let policy = policy();
    let synced = local_midnight(day(0)) + Duration::hours(10);
    let cache = cache_from_disk(&policy, synced);
    assert_eq!(cache.report().errors(), 0, "{:?}", cache.report());
    let step = step_minutes();
    let probes: Vec<Duration> = if step == 1 {
        vec![Duration::zero()]
    } else {
        vec![Duration::zero(), Duration::minutes(step - 1)]
    };

    let units: Vec<_> = cache.unit_ids().map(str::to_owned).collect();
    let users: Vec<String> = MEMBERS.iter().map(user_of).collect();
    let mut compared = 0u64;
    let mut granted = 0u64;
    let mut mismatches = Vec::new();
    // Per member and unit: was it ever granted, ever denied (so the days really change things).
    let mut seen = std::collections::HashMap::<(usize, String), (bool, bool)>::new();

    for n in 0..DAYS {
        let today = day(n);
        let start = local_midnight(today);
        let end = local_midnight(today + Days::new(1));
        // The online gateway synced this morning, just after midnight.
        let online = compile(&cobot_on(today), &policy, n + 2, start);
        let mut t = start;
        while t < end {
            for at in probes.iter().map(|p| t + *p) {
                let now = Moment::trusted(at);
                for unit in &units {
                    let u_cache = cache.unit(unit).unwrap();
                    let u_online = online.unit(unit).unwrap();
                    for (i, member) in MEMBERS.iter().enumerate() {
                        let credentials = [
                            Credential::Member(member.id),
                            Credential::Card(member.card),
                            Credential::User(&users[i]),
                        ];
                        for credential in credentials {
                            let from_cache = decide(
                                &cache,
                                &Request {
                                    unit: u_cache,
                                    credential,
                                },
                                &now,
                            );
                            let from_online = decide(
                                &online,
                                &Request {
                                    unit: u_online,
                                    credential,
                                },
                                &now,
                            );
                            let a = outcome(&cache, &from_cache);
                            let b = outcome(&online, &from_online);
                            compared += 1;
                            granted += u64::from(a.0);
                            let entry = seen.entry((i, unit.clone())).or_default();
                            if a.0 {
                                entry.0 = true;
                            } else {
                                entry.1 = true;
                            }
                            if a != b && mismatches.len() < 20 {
                                mismatches.push(format!(
                                    "{} ({}) {unit} at {} local, {credential:?}: cache {a:?} \
                                     ({}), online {b:?} ({})",
                                    member.name,
                                    n,
                                    at.with_timezone(&Berlin),
                                    from_cache.reason(&cache),
                                    from_online.reason(&online),
                                ));
                            }
                        }
                    }
                }
            }
            t += Duration::minutes(step);
        }
    }
    assert!(
        mismatches.is_empty(),
        "the cache and the online gateway disagree:\n{}",
        mismatches.join("\n")
    );
    // Not vacuous: many decisions, both answers common, and the days change who gets in.
    assert!(compared > 500_000, "{compared}");
    assert!(
        granted > compared / 10 && granted < compared,
        "{granted}/{compared}"
    );
    let changing = seen.values().filter(|(g, d)| *g && *d).count();
    assert!(
        changing >= 10,
        "only {changing} member/unit pairs ever change"
    );
    eprintln!(
        "{DAYS} days, a request every {step} min: {compared} decisions compared, {granted} \
         granted, {changing} member/unit pairs change, 0 differ"
    );
}

#[test]
fn the_cache_reflects_each_announced_change_on_its_day() {
    let policy = policy();
    let cache = compile(
        &cobot_on(day(0)),
        &policy,
        1,
        local_midnight(day(0)) + Duration::hours(10),
    );
    let at = |n: u64, h: u32, m: u32| {
        Moment::trusted(
            Berlin
                .from_local_datetime(&day(n).and_hms_opt(h, m, 0).unwrap())
                .earliest()
                .unwrap()
                .with_timezone(&Utc),
        )
    };
    let open = |member: usize, unit: &str, now: Moment| {
        decide(
            &cache,
            &Request {
                unit: cache.unit(unit).unwrap(),
                credential: Credential::Card(MEMBERS[member].card),
            },
            &now,
        )
        .granted()
    };
    // Grace starts on day 5.
    assert!(!open(1, "building", at(4, 23, 59)));
    assert!(open(1, "building", at(5, 0, 0)));
    // Charles's last day is day 12.
    assert!(open(2, "front_door", at(12, 17, 59)));
    assert!(!open(2, "front_door", at(13, 9, 0)));
    // Linus moves up to full time on day 8 (a Saturday: the part-time schedule would deny).
    assert!(!open(3, "building", at(7, 12, 0)));
    assert!(open(3, "building", at(8, 12, 0)));
    // Barbara moves to the night plan on the DST night: the repeated 02:00-03:00 hour is hers.
    assert!(open(4, "office", at(14, 23, 0)));
    assert!(!open(4, "office", at(15, 2, 30)));
    assert!(open(4, "night_room", at(15, 2, 30)));
    let repeated = Moment::trusted(Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap());
    assert!(
        open(4, "night_room", repeated),
        "02:30 CET, the second time"
    );
    // The holiday (Friday day 20): schedule-limited access closes, 24/7 stays.
    assert!(!open(8, "front_door", at(20, 10, 0)));
    assert!(!open(8, "office", at(20, 10, 0)));
    assert!(open(0, "front_door", at(20, 10, 0)));
    assert!(!open(8, "front_door", at(21, 10, 0)), "Saturday");
    assert!(open(8, "front_door", at(23, 10, 0)), "Monday");
    // Katherine's plan copy ends on day 22 (a Sunday).
    assert!(open(5, "front_door", at(19, 10, 0)), "Thursday before");
    assert!(!open(5, "front_door", at(23, 10, 0)));
    // Hedy is blocked through day 18.
    assert!(!open(9, "building", at(18, 23, 0)));
    assert!(open(9, "building", at(19, 0, 30)));
    // Margaret only with a booking (± 15 min).
    assert!(open(7, "front_door", at(3, 10, 0)));
    assert!(!open(7, "front_door", at(4, 10, 0)));
}
