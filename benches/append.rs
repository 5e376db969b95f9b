//! How long `Store::append_event` takes until the event is on disk (fsync included), alone and
//! with concurrent callers sharing flushes (group commit). A measurement, not a gate.
//!
//! `cargo bench --bench append`; `PORTIER_BENCH_DIR=/var/lib/portier-bench` measures on another
//! disk than the temp dir's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // reason: a benchmark fails loudly

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use portier::clock;
use portier::store::{CredentialKind, NewEvent, Store};

fn event(i: usize) -> NewEvent {
    NewEvent {
        time: clock::now(),
        unit: "front_door".into(),
        member: Some(format!("member-{}", i % 500)),
        credential_kind: CredentialKind::Card,
        granted: true,
        reason: "member holds full_time, which may open building (24/7)".into(),
        decision_id: format!("decision-{i:08}"),
        reader: Some("front_reader".into()),
        opened: true,
        lock_error: None,
        via: None,
        check_in_day: NaiveDate::from_ymd_opt(2026, 9, 21),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    println!(
        "{label:<28} n={:<5} p50={:>8.2?} p90={:>8.2?} p99={:>8.2?} max={:>8.2?} throughput={:>7.0}/s",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        samples.len() as f64 / wall.as_secs_f64(),
    );
}

async fn run(callers: usize, per_caller: usize) {
    let base = std::env::var_os("PORTIER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(base).unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    // Warm up (first writes create the trees' pages).
    for i in 0..20 {
        store.append_event(event(i)).await.unwrap();
    }
    let started = clock::instant();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_caller);
                for i in 0..per_caller {
                    let t = clock::instant();
                    store.append_event(event(c * per_caller + i)).await.unwrap();
                    samples.push(t.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    let label = format!("append_event, {callers} caller(s)");
    report(&label, samples, started.elapsed());
}

fn main() {
    // `cargo test --benches` passes `--bench`-less args; run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run(1, 500).await;
        run(8, 200).await;
        run(32, 50).await;
    });
}
