//! Benchmarks of the domain's hot path: `decide` on a snapshot of 10,000 members, 50 units and
//! 200 permissions (target p50 ≤ 1 µs, p99 ≤ 5 µs), and `compile` of 10,000 memberships.
//!
//! Besides criterion's means, `decide_percentiles` times 200,000 single calls and prints p50,
//! p99 and p99.9, since the target is about the tail.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as TimeDelta, NaiveDate, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use portier::domain::model::{
    AssignmentDef, CheckInToken, CobotData, CobotMembership, CobotPlan, CustomField, GroupDef,
    MembershipPlan, OfflinePolicy, OverrideDef, PermissionDef, Policy, UnitDef,
};
use portier::domain::schedule::Schedule;
use portier::domain::{Credential, Moment, Request, Snapshot, UnitIdx, compile, decide};

const MEMBERS: usize = 10_000;
const UNITS: usize = 50;
const PERMISSIONS: usize = 200;
const GROUPS: usize = 20;
const PLANS: usize = 10;

/// A small deterministic generator (xorshift), so every run benchmarks the same site.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

fn synced_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0)
        .single()
        .unwrap_or_default()
}

/// 50 units (a site, 7 floors, 42 doors), 20 groups, 10 plans, 200 permissions (a third of
/// them scheduled), a few overrides and holidays.
fn policy(rng: &mut Rng) -> Policy {
    let group = |g: usize| format!("group_{g}");
    let mut units = vec![UnitDef {
        id: "site".into(),
        parent: None,
        lock: None,
        open_for: Duration::from_secs(5),
        unlocked: None,
    }];
    for f in 0..7 {
        units.push(UnitDef {
            id: format!("floor_{f}"),
            parent: Some("site".into()),
            lock: None,
            open_for: Duration::from_secs(5),
            unlocked: None,
        });
    }
    for d in 0..UNITS - 8 {
        units.push(UnitDef {
            id: format!("door_{d}"),
            parent: Some(format!("floor_{}", d % 7)),
            lock: Some(format!("lock_{d}")),
            open_for: Duration::from_secs(5),
            unlocked: None,
        });
    }
    let windows = ["Mon-Fri 08:00-18:00", "22:00-06:00", "Sat,Sun 10:00-16:00"];
    let permissions = (0..PERMISSIONS)
        .map(|i| PermissionDef {
            group: group(rng.below(GROUPS)),
            unit: units[8 + rng.below(UNITS - 8)].id.clone(),
            schedule: (i % 3 == 0)
                .then(|| Schedule::parse(&[windows[i % windows.len()]]).ok())
                .flatten(),
        })
        .collect();
    Policy {
        timezone: chrono_tz::Europe::Berlin,
        groups: (0..GROUPS)
            .map(|g| GroupDef {
                id: group(g),
                name: group(g),
            })
            .collect(),
        assignments: (0..PLANS)
            .map(|p| AssignmentDef {
                plan: format!("Plan {p}"),
                groups: vec![group(p * 2), group(p * 2 + 1)],
                requires_booking: false,
                booking_resources: vec![],
            })
            .collect(),
        fallback_plan: Some("Plan 0".into()),
        additional_groups_field: Some("smart_spaces_access_additional_units".into()),
        require_connected_user: true,
        units,
        permissions,
        holidays: vec![day(2026, 12, 25), day(2026, 12, 26)],
        overrides: (0..20)
            .map(|i| OverrideDef {
                member: format!("m{i}@example.com"),
                add_groups: vec![group(i)],
                blocked: i == 3,
                until: None,
            })
            .collect(),
        offline: OfflinePolicy {
            max_age: Some(Duration::from_secs(7 * 86_400)),
            keep_groups: vec![group(0)],
        },
        booking_grace: Duration::from_secs(900),
        lockdown_groups: Vec::new(),
    }
}

fn cobot(rng: &mut Rng) -> CobotData {
    let memberships = (0..MEMBERS)
        .map(|i| CobotMembership {
            id: format!("{i:032x}"),
            name: format!("Member {i}"),
            email: Some(format!("m{i}@example.com")),
            user_id: Some(format!("user{i:024x}")),
            plan: Some(MembershipPlan {
                name: None,
                parent_plan_id: Some(format!("plan{}", rng.below(PLANS + 1))),
                canceled_to: None,
            }),
            upcoming_plan: None,
            confirmed_at: Some(synced_at() - TimeDelta::days(60)),
            starts_at: Some(day(2026, 1, 1)),
            canceled_to: (i % 10 == 0).then(|| day(2026, 2, 1)),
            custom_fields: vec![CustomField {
                label: "smart_spaces_access_additional_units".into(),
                value: if i % 5 == 0 {
                    format!("group_{}", i % GROUPS)
                } else {
                    String::new()
                },
            }],
        })
        .collect();
    CobotData {
        plans: (0..PLANS)
            .map(|p| CobotPlan {
                id: format!("plan{p}"),
                name: format!("Plan {p}"),
                hidden: false,
            })
            .collect(),
        memberships,
        check_in_tokens: (0..MEMBERS)
            .map(|i| CheckInToken {
                token: format!("{:08x}", i * 7919),
                membership_id: format!("{i:032x}"),
            })
            .collect(),
        bookings: vec![],
        malformed: vec![],
    }
}

struct Site {
    snapshot: Snapshot,
    cards: Vec<String>,
    units: Vec<UnitIdx>,
    moments: Vec<Moment>,
}

fn site() -> (CobotData, Policy, Site) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let policy = policy(&mut rng);
    let data = cobot(&mut rng);
    let snapshot = compile(&data, &policy, 1, synced_at());
    let mut cards: Vec<String> = data
        .check_in_tokens
        .iter()
        .map(|t| t.token.clone())
        .collect();
    cards.push("ffffffff".into()); // an unknown card
    let units = snapshot
        .unit_ids()
        .filter_map(|u| snapshot.unit(u))
        .collect();
    let moments = (0..7 * 24)
        .map(|h| Moment::trusted(synced_at() + TimeDelta::hours(h)))
        .collect();
    (
        data,
        policy,
        Site {
            snapshot,
            cards,
            units,
            moments,
        },
    )
}

/// The i-th request of the workload: a card at a door at an hour of the week.
fn request(site: &Site, i: usize) -> (Request<'_>, &Moment) {
    let card = &site.cards[(i * 7) % site.cards.len()];
    let unit = site.units[8 + (i * 13) % (site.units.len() - 8)];
    let moment = &site.moments[(i * 31) % site.moments.len()];
    (
        Request {
            unit,
            credential: Credential::Card(card),
        },
        moment,
    )
}

fn bench_decide(c: &mut Criterion) {
    let (_, _, site) = site();
    let mut i = 0usize;
    c.bench_function("decide_card_10k_members", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let (req, now) = request(&site, i);
            black_box(decide(&site.snapshot, black_box(&req), now).granted())
        })
    });
    let ids: Vec<String> = (0..MEMBERS).map(|i| format!("{i:032x}")).collect();
    c.bench_function("decide_member_id_10k_members", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let unit = site.units[8 + (i * 13) % (site.units.len() - 8)];
            let req = Request {
                unit,
                credential: Credential::Member(&ids[(i * 7) % ids.len()]),
            };
            black_box(
                decide(
                    &site.snapshot,
                    black_box(&req),
                    &site.moments[i % site.moments.len()],
                )
                .granted(),
            )
        })
    });
    decide_percentiles(&site);
}

/// Times 200,000 single decisions and prints p50/p99/p99.9 and the share granted.
// The bench measures wall time itself: reading the clock is its purpose.
#[allow(clippy::disallowed_methods)]
fn decide_percentiles(site: &Site) {
    const CALLS: usize = 200_000;
    for i in 0..10_000 {
        let (req, now) = request(site, i);
        black_box(decide(&site.snapshot, &req, now));
    }
    let mut samples = Vec::with_capacity(CALLS);
    let mut granted = 0usize;
    for i in 0..CALLS {
        let (req, now) = request(site, i);
        let start = Instant::now();
        let d = decide(&site.snapshot, black_box(&req), now);
        let elapsed = start.elapsed();
        granted += usize::from(black_box(d).granted());
        samples.push(elapsed);
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "decide over {CALLS} calls ({MEMBERS} members, {UNITS} units, {PERMISSIONS} permissions): p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}; {granted} granted",
        pct(0.50),
        pct(0.99),
        pct(0.999),
        samples[samples.len() - 1],
    );
}

fn bench_compile(c: &mut Criterion) {
    let (data, policy, _) = site();
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("compile_10k_memberships", |b| {
        b.iter(|| black_box(compile(black_box(&data), &policy, 2, synced_at())).member_count())
    });
    group.finish();
}

criterion_group!(benches, bench_decide, bench_compile);
criterion_main!(benches);
