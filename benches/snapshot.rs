//! Compile + store a snapshot of 10,000 memberships (the work a sync does after the fetch),
//! against a real sled on disk. Goal (DESIGN.md): ≤ 1 s. A measurement, not a gate.
//!
//! `cargo bench --bench snapshot`

#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: a benchmark fails loudly

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use portier::cobot::wire;
use portier::config::Config;
use portier::domain::compile;
use portier::domain::model::CobotData;
use portier::store::{Store, StoredSnapshot};
use portier_fake_cobot::fixtures;

const CONFIG: &str = r#"
[site]
timezone = "Europe/Berlin"
[cobot]
subdomain = "bench"
[[group]]
id = "full_time"
[[assignment]]
plan = "Full Time"
groups = ["full_time"]
[[unit]]
id = "building"
[[unit]]
id = "front_door"
parent = "building"
[[permission]]
group = "full_time"
unit = "building"
"#;

fn data(n: usize) -> CobotData {
    let memberships = wire::parse_memberships(&fixtures::large(n).to_string()).unwrap();
    let plans = wire::parse_plans(&fixtures::plans().to_string()).unwrap();
    CobotData {
        plans: plans.items,
        memberships: memberships.items,
        ..CobotData::default()
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(CONFIG, &dir.path().join("portier.toml"), None).unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let data = data(10_000);
    let now = portier::clock::now();
    let mut version = 0;
    let mut group = c.benchmark_group("snapshot");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("compile_and_store_10k_memberships", |b| {
        b.iter(|| {
            version += 1;
            let snapshot = compile(&data, &config.policy, version, now);
            store
                .save_snapshot(&StoredSnapshot {
                    version,
                    synced_at: now,
                    data: data.clone(),
                })
                .unwrap();
            snapshot
        });
    });
    group.bench_function("load_and_compile_10k_memberships_at_start", |b| {
        b.iter(|| {
            let stored = store.load_snapshot().unwrap().unwrap();
            compile(
                &stored.data,
                &config.policy,
                stored.version,
                stored.synced_at,
            )
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
