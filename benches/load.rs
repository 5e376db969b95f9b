//! Load: swipes at a steady rate (default 50/s for 60 s) through a loopback mosquitto into a
//! release `portier run` whose Cobot is down (the simulated Cobot is stopped after the first
//! sync, so every check-in waits in the outbox). Open loop: a swipe goes out every 1/rate
//! seconds whether or not the previous one was answered, spread over five readers at one door.
//!
//! Reports: answers received vs swipes sent and events stored (no answer lost), card→result
//! latency p50/p99/max (an answer is matched to its swipe by the member named in its reason),
//! and the daemon's RSS at the start and end of the load (and every 10 s). It checks the goals
//! (nothing lost, p99 ≤ 10 ms, end RSS within 10 % of start) and says which were met; it is a
//! measurement, not a CI gate: `scripts/bench-load` builds the release binary and runs it.
//!
//! Environment: `LOAD_RATE` (swipes per second, default 50), `LOAD_SECONDS` (the measured
//! window, default 60), `LOAD_WARMUP_SECONDS` (swipes at the same rate before it, default 0:
//! sled's page cache fills over the first ~12,000 events, and the RSS with it),
//! `LOAD_MEMBERS` (members with a card, default 2,000), `PORTIER_BIN` (default
//! `target/release/portier`), `BENCH_MOSQUITTO_EXTRA` (lines added to mosquitto.conf),
//! `LOAD_STATE_DIR` (where the daemon's state directory is made, e.g. `/dev/shm` to take the
//! disk's `fdatasync` out of the measurement; default: next to the config in a temporary
//! directory).
//!
//! Only `cargo bench` (which passes `--bench`) runs it; CI's `cargo bench --no-run` only
//! compiles it, and started any other way (e.g. `cargo test --benches`) it does nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // reason: a benchmark fails loudly

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use portier_fake_cobot::fixtures::{self, PLAN_FULL_TIME};
use portier_fake_cobot::{FakeCobot, Fixture};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::sync::mpsc;

const READERS: usize = 5;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn member_id(i: usize) -> String {
    format!("l{i:031}")
}

fn card(i: usize) -> String {
    format!("0C{i:06X}")
}

/// The answers so far.
#[derive(Default)]
struct Tally {
    /// (when the swipe was sent, card → result).
    latencies: Vec<(Instant, Duration)>,
    received: usize,
    granted: usize,
    /// Answers whose reason names no member with a swipe waiting for its answer.
    unmatched: usize,
}

impl Tally {
    /// Counts an answer and matches it to the oldest unanswered swipe of the member it names.
    fn collect(
        &mut self,
        (_topic, at, payload): (String, Instant, Vec<u8>),
        sent: &mut HashMap<usize, VecDeque<Instant>>,
    ) {
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        self.received += 1;
        self.granted += usize::from(v["granted"] == true);
        let swiped = v["reason"]
            .as_str()
            .and_then(member_of)
            .and_then(|m| sent.get_mut(&m))
            .and_then(VecDeque::pop_front);
        match swiped {
            Some(s) => self.latencies.push((s, at - s)),
            None => self.unmatched += 1,
        }
    }
}

/// The member index a result's reason names ("Load Member 17 (l000…17) may open …").
fn member_of(reason: &str) -> Option<usize> {
    let rest = reason.split("Load Member ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/load: run it with scripts/bench-load (or cargo bench --bench load)");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(load());
}

async fn load() {
    let rate: u64 = env("LOAD_RATE", 50);
    let seconds: u64 = env("LOAD_SECONDS", 60);
    let warm_up_seconds: u64 = env("LOAD_WARMUP_SECONDS", 0);
    let members: usize = env("LOAD_MEMBERS", 2_000);
    let binary: String = env("PORTIER_BIN", "target/release/portier".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let state = match std::env::var("LOAD_STATE_DIR") {
        Ok(parent) => tempfile::tempdir_in(parent).unwrap(),
        Err(_) => tempfile::tempdir_in(dir.path()).unwrap(),
    };

    let mqtt_port = free_port();
    std::fs::write(
        dir.path().join("mosquitto.conf"),
        format!(
            "listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n{}\n",
            std::env::var("BENCH_MOSQUITTO_EXTRA").unwrap_or_default()
        ),
    )
    .unwrap();
    let mut broker = tokio::process::Command::new("/usr/sbin/mosquitto")
        .arg("-c")
        .arg(dir.path().join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto (apt-get install mosquitto)");

    // Cobot with `members` full-time members, each with a card.
    let today = portier::clock::now().date_naive();
    let mut fixture = Fixture::standard(today);
    let list = fixture.memberships.as_array_mut().unwrap();
    let tokens = fixture.check_in_tokens.as_array_mut().unwrap();
    for i in 0..members {
        let id = member_id(i);
        list.push(fixtures::membership(
            &id,
            &format!("Load Member {i}"),
            Some(&fixtures::user_id_of(&id)),
            fixtures::plan_copy("Full Time", PLAN_FULL_TIME, None),
            today - chrono::Days::new(30),
            None,
        ));
        tokens.push(json!({"token": card(i), "membership": {"id": id}}));
    }
    let cobot = FakeCobot::start(fixture).await.unwrap();
    let api = cobot.url().to_string();
    let http_port = free_port();
    let readers: String = (0..READERS)
        .map(|r| {
            format!(
                "[[reader]]\nid = \"reader_{r}\"\nunit = \"front_door\"\ntopic = \"load/reader/{r}\"\n"
            )
        })
        .collect();
    let config = format!(
        r#"
[site]
timezone = "Europe/Berlin"
state_dir = "{state}"
[http]
listen = "127.0.0.1:{http_port}"
admin_token_file = "admin.token"
[cobot]
api_url = "{api}"
www_url = "{api}"
access_token_file = "cobot.token"
request_timeout = "2s"
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
client_id = "portier-load"
[[group]]
id = "full_time"
[[assignment]]
plan = "Full Time"
groups = ["full_time"]
[[unit]]
id = "front_door"
lock = "front_lock"
open_for = "1s"
[[permission]]
group = "full_time"
unit = "front_door"
[[lock]]
id = "front_lock"
driver = "mqtt"
topic = "load/lock/set"
unlock_payload = "UNLOCK {{decision_id}}"
lock_payload = "LOCK"
{readers}"#,
        api = api.trim_end_matches('/'),
        state = state.path().display()
    );
    std::fs::write(dir.path().join("portier.toml"), config).unwrap();
    for (name, content) in [
        ("cobot.token", "admin-token\n"),
        ("admin.token", "load-admin\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let sync = tokio::process::Command::new(&binary)
        .arg("--config")
        .arg(dir.path().join("portier.toml"))
        .arg("sync")
        .output()
        .await
        .unwrap();
    assert!(
        sync.status.success(),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    // Cobot goes down: connections are refused from now on.
    drop(cobot);

    let mut daemon = tokio::process::Command::new(&binary)
        .arg("--config")
        .arg(dir.path().join("portier.toml"))
        .arg("run")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = daemon.id().unwrap();

    // One client subscribed to every reader's result topic.
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant, Vec<u8>)>();
    let mut options = MqttOptions::new("load-results", "127.0.0.1", mqtt_port);
    options.set_keep_alive(Duration::from_secs(30));
    let (results, mut eventloop) = AsyncClient::new(options, 64);
    let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((
                        p.topic.clone(),
                        portier::clock::instant(),
                        p.payload.to_vec(),
                    ));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = subscribed_tx.send(());
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    results
        .subscribe("load/reader/+/result", QoS::AtLeastOnce)
        .await
        .unwrap();
    subscribed.recv().await.unwrap();
    let mut options = MqttOptions::new("load-readers", "127.0.0.1", mqtt_port);
    options.set_keep_alive(Duration::from_secs(30));
    let (reader, mut eventloop) = AsyncClient::new(options, 1_000);
    tokio::spawn(async move {
        loop {
            if eventloop.poll().await.is_err() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    // Warm up: wait until the daemon answers.
    let deadline = portier::clock::instant() + Duration::from_secs(30);
    'ready: loop {
        assert!(
            portier::clock::instant() < deadline,
            "the daemon never answered"
        );
        reader
            .publish(
                "load/reader/0",
                QoS::AtLeastOnce,
                false,
                format!("{{\"credential\":\"{}\",\"warmup\":1}}", card(0)),
            )
            .await
            .unwrap();
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            break 'ready;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    let client = portier::tls::http_client();
    let events_before = events_after(&client, http_port, 0).await;
    let first_seq = events_before.last().copied().unwrap_or(0);
    let rss_cold = rss_kib(pid);
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load_average = load_average
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");

    // The load: open loop, one swipe every 1/rate s, round robin over the readers. Cards cycle
    // through the members; each payload is distinct (no repeat window). The first `warm_up`
    // swipes are the warm-up: answered and stored like the others, but the latencies and the
    // start RSS are taken from the measured window after it.
    let warm_up = (rate * warm_up_seconds) as usize;
    let total = (rate * (warm_up_seconds + seconds)) as usize;
    let mut window_start = None;
    let mut rss_start = rss_cold;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = portier::clock::instant();
    let mut sent: HashMap<usize, VecDeque<Instant>> = HashMap::new();
    let mut tally = Tally::default();
    let mut rss_samples = vec![(0u64, rss_cold)];
    for i in 0..total {
        let due = start + interval * i as u32;
        if i == warm_up {
            window_start = Some(portier::clock::instant());
            rss_start = rss_kib(pid);
        }
        loop {
            let now = portier::clock::instant();
            if now >= due {
                break;
            }
            if let Ok(Some(item)) = tokio::time::timeout(due - now, rx.recv()).await {
                tally.collect(item, &mut sent);
            }
        }
        let r = i % READERS;
        let m = i % members;
        let payload = format!("{{\"credential\":\"{}\",\"n\":{i}}}", card(m));
        sent.entry(m)
            .or_default()
            .push_back(portier::clock::instant());
        reader
            .publish(format!("load/reader/{r}"), QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
        if i > 0 && i % (rate as usize * 10) == 0 {
            rss_samples.push((i as u64 / rate, rss_kib(pid)));
        }
    }
    let sending = start.elapsed();
    // Late answers: wait while they keep coming.
    while tally.received < total {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(item)) => tally.collect(item, &mut sent),
            _ => break,
        }
    }
    let Tally {
        mut latencies,
        received,
        granted,
        unmatched,
    } = tally;
    let rss_end = rss_kib(pid);
    rss_samples.push((warm_up_seconds + seconds, rss_end));
    let window_start = window_start.unwrap_or(start);
    let mut latencies: Vec<Duration> = latencies
        .drain(..)
        .filter(|(swiped, _)| *swiped >= window_start)
        .map(|(_, d)| d)
        .collect();
    latencies.sort();

    // Events stored during the load.
    let events = events_after(&client, http_port, first_seq).await;
    let stored = events.len();
    let gapless = events
        .iter()
        .zip(first_seq + 1..)
        .all(|(seq, wanted)| *seq == wanted);
    let distinct: HashSet<u64> = events.iter().copied().collect();
    let metrics = client
        .get(format!("http://127.0.0.1:{http_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let outbox = metrics
        .lines()
        .find(|l| l.starts_with("portier_outbox_depth "))
        .unwrap_or("portier_outbox_depth ?")
        .to_owned();

    let lost = total.saturating_sub(received);
    println!(
        "load: {total} swipes at {rate}/s over {:.1} s ({warm_up_seconds} s warm-up, then \
         {seconds} s measured), {READERS} readers, {members} members, Cobot down; state in {}; \
         mosquitto extra: {:?}; load average before: {}",
        sending.as_secs_f64(),
        state.path().display(),
        std::env::var("BENCH_MOSQUITTO_EXTRA").unwrap_or_default(),
        load_average
    );
    println!(
        "answers: {received} of {total} ({lost} lost, {unmatched} not matched to a swipe), \
         {granted} granted; events stored during the load: {stored} ({} distinct), sequence \
         gapless: {gapless}",
        distinct.len()
    );
    let p99 = (!latencies.is_empty()).then(|| percentile(&latencies, 0.99));
    if let Some(p99) = p99 {
        println!(
            "card -> result in the measured window ({} answers): p50 {:?}, p99 {p99:?}, max {:?}",
            latencies.len(),
            percentile(&latencies, 0.5),
            latencies[latencies.len() - 1]
        );
    }
    let growth = rss_end as f64 / rss_start.max(1) as f64 - 1.0;
    println!(
        "RSS: at the first swipe {:.1} MiB; measured window: start {:.1} MiB, end {:.1} MiB \
         ({:+.1} %); samples (s, MiB): {}",
        rss_cold as f64 / 1024.0,
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0,
        growth * 100.0,
        rss_samples
            .iter()
            .map(|(s, k)| format!("({s}, {:.1})", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("{outbox} (check-ins waiting for Cobot)");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "goals: no answer lost: {}; p99 <= 10 ms: {}; RSS end within 10 % of start: {}",
        verdict(lost == 0 && unmatched == 0 && stored == total && gapless),
        verdict(p99.is_some_and(|p| p <= Duration::from_millis(10))),
        verdict(growth.abs() <= 0.10)
    );
    let _ = daemon.kill().await;
    let _ = broker.kill().await;
}

/// The seqs of every stored event after `after`, read page by page over the admin API.
async fn events_after(client: &reqwest::Client, http_port: u16, mut after: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let body: serde_json::Value = client
            .get(format!(
                "http://127.0.0.1:{http_port}/v1/events?after={after}&limit=1000"
            ))
            .bearer_auth("load-admin")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = body["events"].as_array().cloned().unwrap_or_default();
        let Some(last) = page.last() else {
            return seqs;
        };
        after = last["seq"].as_u64().unwrap();
        seqs.extend(page.iter().filter_map(|e| e["seq"].as_u64()));
    }
}
