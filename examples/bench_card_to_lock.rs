//! Benchmark: card → lock command through a real `portier run` and a loopback mosquitto.
//!
//! Starts mosquitto on a free port, a simulated Cobot, and the daemon (the binary given as the
//! first argument, e.g. `target/release/portier`) with one reader and one MQTT lock. Then it
//! swipes N times (default 1,000): publish a card on the reader topic, wait for the unlock
//! command on the lock topic. In the same run it measures one broker hop the same way: the
//! reader client publishes a probe that the lock client receives. Prints p50/p99 of both and
//! their ratio, and card → the reader's answer (which waits for the durable event). The daemon
//! logs at info (`BENCH_DAEMON_LOG` sets another level) into a pipe this process drains.
//!
//! `scripts/bench-card-to-lock` builds and runs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // reason: a benchmark fails loudly

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use portier_fake_cobot::fixtures::ADA_CARD;
use portier_fake_cobot::{FakeCobot, Fixture};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

const READER: &str = "bench/reader";
const LOCK: &str = "bench/lock/set";
const PROBE: &str = "bench/probe";
/// The reader's answer, sent once the swipe's event is durable.
const ANSWER: &str = "bench/reader/result";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

type Received = (String, std::time::Instant, Vec<u8>);

/// A client with TCP_NODELAY whose received publishes go to `sink`.
fn client(port: u16, id: &str, sink: Option<mpsc::UnboundedSender<Received>>) -> AsyncClient {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Some(sink) = &sink {
                        let _ = sink.send((
                            p.topic.clone(),
                            portier::clock::instant(),
                            p.payload.to_vec(),
                        ));
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    client
}

/// The QoS readers publish with (`BENCH_READER_QOS=0` for at most once; default 1).
fn reader_qos() -> QoS {
    match std::env::var("BENCH_READER_QOS").as_deref() {
        Ok("0") => QoS::AtMostOnce,
        _ => QoS::AtLeastOnce,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args
        .next()
        .expect("usage: bench_card_to_lock PORTIER_BINARY [SWIPES]");
    let swipes: usize = args.next().map_or(1000, |s| s.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();

    let mqtt_port = free_port();
    std::fs::write(
        dir.path().join("mosquitto.conf"),
        format!(
            "listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\n{}",
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

    let today = portier::clock::now().date_naive();
    let cobot = FakeCobot::start(Fixture::standard(today)).await.unwrap();
    let api = cobot.url().to_string();
    let http_port = free_port();
    let config = format!(
        r#"
[site]
timezone = "Europe/Berlin"
state_dir = "state"
[http]
listen = "127.0.0.1:{http_port}"
[cobot]
api_url = "{api}"
www_url = "{api}"
access_token_file = "cobot.token"
check_ins = false
[mqtt]
url = "mqtt://127.0.0.1:{mqtt_port}"
client_id = "portier-bench"
[[group]]
id = "full_time"
[[assignment]]
plan = "Full Time"
groups = ["full_time"]
[[unit]]
id = "front_door"
lock = "front_lock"
open_for = "1ms"
[[permission]]
group = "full_time"
unit = "front_door"
[[lock]]
id = "front_lock"
driver = "mqtt"
topic = "{LOCK}"
unlock_payload = "UNLOCK {{decision_id}}"
lock_payload = "LOCK"
[[reader]]
id = "bench_reader"
unit = "front_door"
topic = "{READER}"
"#,
        api = api.trim_end_matches('/')
    );
    std::fs::write(dir.path().join("portier.toml"), config).unwrap();
    let token = dir.path().join("cobot.token");
    std::fs::write(&token, "admin-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
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
    let daemon_log = std::env::var("BENCH_DAEMON_LOG").unwrap_or_else(|_| "info".into());
    let mut daemon = tokio::process::Command::new(&binary)
        .arg("--config")
        .arg(dir.path().join("portier.toml"))
        .arg("run")
        .env("RUST_LOG", &daemon_log)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The daemon logs (to stderr) at info as it does on a box, each line read by another
    // process's thread as journald would: this task drains them (BENCH_DAEMON_LOG=warn for
    // none on a granted swipe).
    if let Some(mut lines) = daemon.stderr.take() {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut lines, &mut tokio::io::sink()).await;
        });
    }

    // As on site, the reader and the lock are separate clients. The lock client is subscribed
    // to the lock topic and to a probe topic: the reader client's publish -> the lock client's
    // delivery on the probe topic is one broker hop. (The lock client publishing the probe
    // itself would leave the broker's PUBACK unanswered right before each swipe, and a broker
    // with Nagle on would hold the unlock behind its delayed ACK: see BENCHMARKS.md.)
    let (tx, mut rx) = mpsc::unbounded_channel();
    let lock_client = client(mqtt_port, "bench-lock", Some(tx.clone()));
    let reader = client(mqtt_port, "bench-reader", None);
    lock_client.subscribe(LOCK, QoS::AtLeastOnce).await.unwrap();
    lock_client
        .subscribe(PROBE, QoS::AtLeastOnce)
        .await
        .unwrap();
    lock_client
        .subscribe(ANSWER, QoS::AtLeastOnce)
        .await
        .unwrap();

    // Wait until the daemon answers a swipe (it connected and subscribed).
    let deadline = portier::clock::instant() + Duration::from_secs(20);
    'ready: loop {
        assert!(
            portier::clock::instant() < deadline,
            "the daemon never opened the lock"
        );
        reader
            .publish(
                READER,
                QoS::AtLeastOnce,
                false,
                format!(r#"{{"credential":"{ADA_CARD}","warmup":1}}"#),
            )
            .await
            .unwrap();
        while let Ok(Some((topic, _, _))) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        {
            if topic == LOCK {
                break 'ready;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    while rx.try_recv().is_ok() {}

    let mut card_to_lock = Vec::with_capacity(swipes);
    let mut broker_round_trip = Vec::with_capacity(swipes);
    let mut card_to_answer = Vec::with_capacity(swipes);
    for i in 0..swipes {
        // The broker alone: one hop from the reader client to the lock client, measured the
        // same way as a swipe.
        let sent = portier::clock::instant();
        reader
            .publish(PROBE, QoS::AtLeastOnce, false, format!("probe {i}"))
            .await
            .unwrap();
        loop {
            let (topic, at, _) = rx.recv().await.unwrap();
            if topic == PROBE {
                broker_round_trip.push(at - sent);
                break;
            }
        }
        // A swipe: a distinct payload each time (a repeat within 2 s would be answered from
        // memory); wait for the unlock, then for the relock so the next swipe opens anew, and
        // for the reader's answer.
        let sent = portier::clock::instant();
        reader
            .publish(
                READER,
                reader_qos(),
                false,
                format!(r#"{{"credential":"{ADA_CARD}","n":{i}}}"#),
            )
            .await
            .unwrap();
        let (mut unlocked, mut relocked, mut answered) = (false, false, false);
        while !(relocked && answered) {
            let (topic, at, payload) = rx.recv().await.unwrap();
            if topic == ANSWER {
                card_to_answer.push(at - sent);
                answered = true;
            } else if topic != LOCK {
                continue;
            } else if payload.starts_with(b"UNLOCK") {
                card_to_lock.push(at - sent);
                unlocked = true;
            } else if unlocked {
                relocked = true;
            }
        }
    }
    card_to_lock.sort();
    broker_round_trip.sort();
    card_to_answer.sort();
    let (c50, c99) = (
        percentile(&card_to_lock, 0.5),
        percentile(&card_to_lock, 0.99),
    );
    let (b50, b99) = (
        percentile(&broker_round_trip, 0.5),
        percentile(&broker_round_trip, 0.99),
    );
    println!("swipes: {swipes}");
    println!(
        "card -> lock command: p50 {c50:?}, p99 {c99:?}, max {:?}",
        card_to_lock[swipes - 1]
    );
    println!("broker publish -> deliver: p50 {b50:?}, p99 {b99:?}");
    println!(
        "card -> reader answer (event durable): p50 {:?}, p99 {:?}",
        percentile(&card_to_answer, 0.5),
        percentile(&card_to_answer, 0.99)
    );
    println!(
        "ratio card->lock / broker round trip: p50 {:.2}x, p99 {:.2}x",
        c50.as_secs_f64() / b50.as_secs_f64(),
        c99.as_secs_f64() / b99.as_secs_f64()
    );
    let _ = daemon.kill().await;
    let _ = broker.kill().await;
    drop(cobot);
}
