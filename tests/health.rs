//! Honest health, end to end: `portier run` as a child process against real peers (a Modbus TCP
//! server that goes away, a mosquitto broker that is stopped, the fake Cobot on 127.0.0.1, sled
//! on disk). Each test breaks one part and asserts the `/healthz` reason, the `/v1/status`
//! field and the `/metrics` value that must tell; then mends it and asserts they clear.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/modbus.rs"]
mod modbus;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{Site, free_port, site_config};
use daemon::Daemon;
use modbus::ModbusServer;
use mosquitto::Mosquitto;
use mqtt_site::{MqttSite, READER_TOPIC, wait_events};
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::{ADA, ADA_CARD};
use rumqttc::QoS;
use serde_json::Value;

/// Long enough for a probe round (every 5 s) plus a device timeout (2 s), on a busy machine.
const PROBE_WAIT: Duration = Duration::from_secs(30);

async fn start(site: &Site, port: u16) -> Daemon {
    let mut d = Daemon::start(&site.config(), site.dir.path(), port, None);
    assert!(
        d.wait_for_notify("READY=1", Duration::from_secs(10)).await,
        "no READY=1: {:?}",
        d.messages
    );
    d
}

async fn synced(d: &Daemon) {
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(15), |_, s| {
            s["snapshot"]["version"].as_u64().is_some()
        })
        .await;
    assert!(status["snapshot"]["version"].as_u64().is_some(), "{status}");
}

fn reasons(health: &Value) -> Vec<String> {
    health["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn has_reason(health: &Value, words: &[&str]) -> bool {
    reasons(health)
        .iter()
        .any(|r| words.iter().all(|w| r.contains(w)))
}

/// Polls `/healthz` until a reason contains every one of `words`; returns the answer.
async fn wait_reason(d: &Daemon, words: &[&str], within: Duration) -> Value {
    let (code, health) = d
        .poll("/healthz", within, |_, h| has_reason(h, words))
        .await;
    assert!(
        has_reason(&health, words),
        "no reason with {words:?} within {within:?} ({code}): {health}"
    );
    health
}

/// Polls `/healthz` until no reason contains every one of `words`; returns the answer.
async fn wait_no_reason(d: &Daemon, words: &[&str], within: Duration) -> Value {
    let (code, health) = d
        .poll("/healthz", within, |_, h| {
            h["status"].is_string() && !has_reason(h, words)
        })
        .await;
    assert!(
        !has_reason(&health, words),
        "a reason with {words:?} stayed for {within:?} ({code}): {health}"
    );
    health
}

async fn wait_healthy(d: &Daemon, within: Duration) {
    let (code, health) = d.poll("/healthz", within, |_, h| h["status"] == "ok").await;
    assert_eq!(health["status"], "ok", "({code}) {health}");
    assert_eq!(code, 200);
}

/// `GET /metrics` with an optional `Accept`: (content type, body).
async fn scrape(d: &Daemon, accept: Option<&str>) -> (String, String) {
    let mut request = portier::tls::http_client().get(format!("{}/metrics", d.base));
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    (content_type, response.text().await.unwrap())
}

/// The value of the sample `series` (name with labels, exactly as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn value(metrics: &str, series: &str) -> f64 {
    sample(metrics, series).unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

/// Polls `/metrics` until `series` has `want`.
async fn wait_metric(d: &Daemon, series: &str, want: f64) -> String {
    let deadline = tokio::time::Instant::now() + PROBE_WAIT;
    loop {
        let (_, metrics) = scrape(d, None).await;
        if sample(&metrics, series) == Some(want) || tokio::time::Instant::now() > deadline {
            assert_eq!(
                sample(&metrics, series),
                Some(want),
                "{series} in:\n{metrics}"
            );
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// No lock shows `"ok": true` without a success or a probe that succeeded.
fn assert_no_unfounded_ok(status: &Value) {
    for (id, lock) in status["locks"].as_object().unwrap() {
        if lock["ok"] == true {
            assert!(
                lock["last_success"].is_string() || lock["last_probe"].is_string(),
                "lock {id} is ok without ever succeeding: {status}"
            );
        }
    }
}

async fn lock_status(d: &Daemon, lock: &str) -> Value {
    let (code, status) = d.admin_get("/v1/status").await;
    assert_eq!(code, 200, "{status}");
    status["locks"][lock].clone()
}

/// The families DESIGN.md promises, with their types (classic names: counters end in
/// `_total`).
const FAMILIES: [(&str, &str); 15] = [
    ("portier_build_info", "gauge"),
    ("portier_health_status", "gauge"),
    ("portier_last_sync_success_timestamp_seconds", "gauge"),
    ("portier_syncs_total", "counter"),
    ("portier_sync_seconds", "histogram"),
    ("portier_members", "gauge"),
    ("portier_decisions_total", "counter"),
    ("portier_stage_seconds", "histogram"),
    ("portier_lock_up", "gauge"),
    ("portier_mqtt_connected", "gauge"),
    ("portier_clock_trusted", "gauge"),
    ("portier_auth_failures_total", "counter"),
    ("portier_outbox_depth", "gauge"),
    ("portier_outbox_oldest_seconds", "gauge"),
    ("portier_lockdown", "gauge"),
];

const STAGES: [&str; 5] = ["receive", "decide", "actuate", "persist", "publish"];

/// Runs `promtool check metrics` on `text`; `None` when promtool is not installed.
fn promtool_check(text: &str) -> Option<(bool, String)> {
    use std::io::Write;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_that_never_synced_exposes_every_family_as_classic_text_that_promtool_accepts() {
    let site = Site::start().await;
    site.cobot.set_fault("/api/", Fault::Unauthorized);
    let port = free_port();
    site.write_config(&site_config(), port);
    let d = start(&site, port).await;
    wait_reason(&d, &["reconnect"], Duration::from_secs(15)).await;

    let (content_type, metrics) = scrape(&d, None).await;
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    for (family, kind) in FAMILIES {
        assert!(
            metrics.contains(&format!("\n# HELP {family} "))
                || metrics.starts_with(&format!("# HELP {family} ")),
            "no HELP for {family}:\n{metrics}"
        );
        assert!(
            metrics.contains(&format!("# TYPE {family} {kind}\n")),
            "no TYPE {kind} for {family}:\n{metrics}"
        );
    }
    assert!(!metrics.contains("NaN"), "{metrics}");
    assert!(!metrics.contains("# EOF"), "{metrics}");
    assert!(!metrics.contains("# UNIT"), "{metrics}");
    // A daemon that never synced does not look like a healthy idle one.
    assert_eq!(value(&metrics, "portier_health_status"), 2.0);
    assert_eq!(
        value(&metrics, "portier_last_sync_success_timestamp_seconds"),
        0.0
    );
    assert!(value(&metrics, "portier_syncs_total{result=\"failed\"}") >= 1.0);
    assert_eq!(
        value(&metrics, "portier_syncs_total{result=\"applied\"}"),
        0.0
    );
    assert_eq!(value(&metrics, "portier_members"), 0.0);
    assert_eq!(value(&metrics, "portier_sync_seconds_count"), 0.0);
    assert_eq!(
        value(&metrics, "portier_decisions_total{result=\"granted\"}"),
        0.0
    );
    for stage in STAGES {
        assert_eq!(
            value(
                &metrics,
                &format!("portier_stage_seconds_count{{stage=\"{stage}\"}}")
            ),
            0.0
        );
    }
    // The demo site's locks only log: nothing to reach, nothing failing.
    let (_, status) = d.admin_get("/v1/status").await;
    assert_no_unfounded_ok(&status);
    assert_eq!(status["locks"]["front_lock"]["ok"], true, "{status}");
    assert_eq!(value(&metrics, "portier_lock_up{lock=\"front_lock\"}"), 1.0);
    assert_eq!(
        value(&metrics, "portier_lock_up{lock=\"office_lock\"}"),
        1.0
    );
    assert_eq!(value(&metrics, "portier_mqtt_connected"), 0.0);
    assert_eq!(value(&metrics, "portier_clock_trusted"), 1.0);
    assert_eq!(value(&metrics, "portier_outbox_depth"), 0.0);
    assert_eq!(value(&metrics, "portier_outbox_oldest_seconds"), 0.0);
    assert_eq!(value(&metrics, "portier_lockdown"), 0.0);
    assert_eq!(
        value(
            &metrics,
            &format!(
                "portier_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            "portier_auth_failures_total{endpoint=\"/v1/members\"}"
        ),
        0.0
    );

    let (plain_type, plain) = scrape(&d, Some("text/plain")).await;
    assert_eq!(plain_type, content_type);
    assert!(plain.contains("# TYPE portier_syncs_total counter\n"));
    let (om_type, openmetrics) = scrape(
        &d,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert!(
        om_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{om_type}"
    );
    assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
    assert!(openmetrics.contains("# TYPE portier_syncs counter\n"));

    match promtool_check(&metrics) {
        None => eprintln!(
            "SKIPPED promtool check metrics: promtool is not installed \
             (apt-get install prometheus; CI installs it)"
        ),
        Some((ok, output)) => assert!(ok, "promtool check metrics failed:\n{output}\n{metrics}"),
    }
}

/// The demo site with its front lock on a Modbus relay at `front` and its office lock on a
/// Modbus address where nothing listens.
fn modbus_config(front: &ModbusServer, nothing: u16) -> String {
    site_config()
        .replace(
            "[[lock]]\nid = \"front_lock\"\ndriver = \"log\"",
            &format!(
                "[[lock]]\nid = \"front_lock\"\ndriver = \"modbus\"\naddress = \"{}\"\ncoil = 3",
                front.url()
            ),
        )
        .replace(
            "[[lock]]\nid = \"office_lock\"\ndriver = \"log\"",
            &format!(
                "[[lock]]\nid = \"office_lock\"\ndriver = \"modbus\"\n\
                 address = \"tcp://127.0.0.1:{nothing}\"\ncoil = 1"
            ),
        )
        .replace(
            "lock = \"front_lock\"",
            "lock = \"front_lock\"\nopen_for = \"300ms\"",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modbus_lock_whose_server_goes_away_degrades_health_until_it_is_back() {
    let mut relay = ModbusServer::start().await;
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&modbus_config(&relay, free_port()), port);
    site.portier(&["check-config"]).await.expect_code(0);
    let d = start(&site, port).await;
    synced(&d).await;

    // The relay answers the probe's read; the office lock never answered anything.
    let (_, status) = d
        .poll("/v1/status", PROBE_WAIT, |_, s| {
            s["locks"]["front_lock"]["ok"] == true
        })
        .await;
    let front = &status["locks"]["front_lock"];
    assert_eq!(front["ok"], true, "{status}");
    assert!(front["last_probe"].is_string(), "{front}");
    assert_eq!(front["driver"], "modbus");
    assert_no_unfounded_ok(&status);
    let office = &status["locks"]["office_lock"];
    assert_eq!(office["ok"], false, "never succeeded is not ok: {status}");
    assert!(office["last_success"].is_null() && office["last_probe"].is_null());
    assert!(
        office["problem"].as_str().unwrap().contains("office_lock"),
        "{office}"
    );
    let health = wait_reason(&d, &["office_lock"], PROBE_WAIT).await;
    assert_eq!(health["status"], "degraded");
    assert!(!has_reason(&health, &["front_lock"]), "{health}");
    let metrics = wait_metric(&d, "portier_lock_up{lock=\"front_lock\"}", 1.0).await;
    assert_eq!(
        value(&metrics, "portier_lock_up{lock=\"office_lock\"}"),
        0.0
    );
    assert_eq!(value(&metrics, "portier_health_status"), 1.0);

    let (code, body) = d
        .post("/v1/admin/units/front_door/open", Some(&d.admin_token))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["opened"], true, "{body}");

    // The device goes away: the next probe fails and says which lock.
    relay.stop().await;
    let health = wait_reason(&d, &["front_lock", "unreachable"], PROBE_WAIT).await;
    assert_eq!(health["status"], "degraded");
    let front = lock_status(&d, "front_lock").await;
    assert_eq!(front["ok"], false, "{front}");
    assert!(
        front["last_success"].is_string(),
        "the earlier success is kept: {front}"
    );
    wait_metric(&d, "portier_lock_up{lock=\"front_lock\"}", 0.0).await;

    // Back on the same port: the probe reconnects and the reason clears.
    relay.serve().await;
    wait_no_reason(&d, &["front_lock"], PROBE_WAIT).await;
    assert_eq!(lock_status(&d, "front_lock").await["ok"], true);
    wait_metric(&d, "portier_lock_up{lock=\"front_lock\"}", 1.0).await;

    // A gateway whose device behind it does not answer is not a working lock.
    relay.answer_with(Some(tokio_modbus::ExceptionCode::GatewayTargetDevice));
    wait_reason(&d, &["front_lock", "gateway"], PROBE_WAIT).await;
    relay.answer_with(None);
    wait_no_reason(&d, &["front_lock"], PROBE_WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_stopped_health_names_it_and_the_mqtt_lock_until_it_is_back() {
    let mut s = MqttSite::with_extra(Mosquitto::start().await, "").await;
    let d = s.start_daemon().await;
    wait_healthy(&d, Duration::from_secs(15)).await;
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["mqtt_connected"], true, "{status}");
    assert_eq!(status["locks"]["front_lock"]["ok"], true, "{status}");
    let front_reader = &status["readers"]["front_reader"];
    assert_eq!(front_reader["online"], true, "{status}");
    assert!(front_reader.get("problem").is_none(), "{status}");

    // A card goes through every stage once: receive, decide, actuate, persist, publish. The
    // reader repeats it until it is heard (the subscription may still be on its way).
    let reader = s.publisher("test-reader").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        reader
            .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
            .await
            .unwrap();
        let (_, body) = d
            .poll(
                "/v1/events?after=0&limit=10",
                Duration::from_secs(2),
                |_, b| b["events"].as_array().is_some_and(|e| !e.is_empty()),
            )
            .await;
        if body["events"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the card was never heard"
        );
    }
    let events = wait_events(&d, 1).await;
    assert_eq!(events[0]["granted"], true, "{events:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let (_, metrics) = scrape(&d, None).await;
        let counted = STAGES.iter().all(|stage| {
            sample(
                &metrics,
                &format!("portier_stage_seconds_count{{stage=\"{stage}\"}}"),
            )
            .is_some_and(|n| n >= 1.0)
        });
        if counted {
            break metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every stage was timed:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(value(&metrics, "portier_decisions_total{result=\"granted\"}") >= 1.0);
    assert_eq!(value(&metrics, "portier_mqtt_connected"), 1.0);
    assert_eq!(
        value(&metrics, "portier_reader_up{reader=\"front_reader\"}"),
        1.0
    );
    if let Some((ok, output)) = promtool_check(&metrics) {
        assert!(ok, "promtool check metrics failed:\n{output}\n{metrics}");
    }

    s.broker.stop();
    let health = wait_reason(&d, &["MQTT broker", "unreachable"], PROBE_WAIT).await;
    assert_eq!(health["status"], "degraded");
    assert!(has_reason(&health, &["front_lock"]), "{health}");
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["mqtt_connected"], false, "{status}");
    assert_eq!(status["locks"]["front_lock"]["ok"], false, "{status}");
    assert_eq!(
        status["locks"]["office_lock"]["ok"], true,
        "a log lock: {status}"
    );
    // The MQTT reader hears nothing without its broker connection, and says so.
    let (_, status) = d
        .poll("/v1/status", PROBE_WAIT, |_, s| {
            s["readers"]["front_reader"]["online"] == false
        })
        .await;
    assert_eq!(
        status["readers"]["front_reader"]["problem"], "not connected to the MQTT broker",
        "{status}"
    );
    wait_metric(&d, "portier_reader_up{reader=\"front_reader\"}", 0.0).await;
    let metrics = wait_metric(&d, "portier_mqtt_connected", 0.0).await;
    assert_eq!(value(&metrics, "portier_lock_up{lock=\"front_lock\"}"), 0.0);
    assert_eq!(
        value(&metrics, "portier_lock_up{lock=\"office_lock\"}"),
        1.0
    );

    s.broker.restart().await;
    wait_healthy(&d, PROBE_WAIT).await;
    let metrics = wait_metric(&d, "portier_mqtt_connected", 1.0).await;
    assert_eq!(value(&metrics, "portier_lock_up{lock=\"front_lock\"}"), 1.0);
    assert_eq!(
        value(&metrics, "portier_reader_up{reader=\"front_reader\"}"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_reload_and_a_restart_only_change_are_reasons_while_the_old_config_runs() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let mut d = start(&site, port).await;
    synced(&d).await;
    wait_healthy(&d, Duration::from_secs(15)).await;

    let good = std::fs::read_to_string(site.config()).unwrap();
    let bad = good
        .replace("name = \"demo-space\"", "name = \"renamed\"")
        .replace("Europe/Berlin", "Mars/Olympus_Mons");
    std::fs::write(site.config(), &bad).unwrap();
    d.signal("HUP");
    let health = wait_reason(
        &d,
        &["reload rejected", "Mars/Olympus_Mons"],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(health["status"], "degraded");
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(
        status["site"], "demo-space",
        "the old configuration runs: {status}"
    );

    // Valid again, but with another listener: applied except for what needs a restart.
    let moved = good
        .replace("name = \"demo-space\"", "name = \"renamed\"")
        .replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", free_port()),
        );
    std::fs::write(site.config(), &moved).unwrap();
    d.messages.clear();
    d.signal("HUP");
    let health = wait_reason(
        &d,
        &["http.listen", "needs a restart"],
        Duration::from_secs(10),
    )
    .await;
    assert!(!has_reason(&health, &["rejected"]), "{health}");
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["site"], "renamed", "{status}");

    // Another reload that does not touch the listener still needs the restart.
    std::fs::write(site.config(), moved.replace("renamed", "renamed again")).unwrap();
    d.signal("HUP");
    d.poll("/v1/status", Duration::from_secs(10), |_, s| {
        s["site"] == "renamed again"
    })
    .await;
    wait_reason(
        &d,
        &["http.listen", "needs a restart"],
        Duration::from_secs(1),
    )
    .await;

    std::fs::write(site.config(), &good).unwrap();
    d.signal("HUP");
    wait_healthy(&d, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_logged_without_the_token_and_counted_by_route() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let d = Daemon::start_logged(&site.config(), site.dir.path(), port, &[]);
    synced(&d).await;

    const WRONG: &str = "wrong-secret-d3adb33f";
    const BOGUS_APP: &str = "bogus-app-token-0badc0de";
    let (code, _) = portier::tls::http_client()
        .get(format!("{}/v1/members", d.base))
        .bearer_auth(WRONG)
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(code, 401);
    let code = portier::tls::http_client()
        .get(format!("{}/v1/events", d.base))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(code, 401);
    let (code, _) = d.post("/v1/units/front_door/open", Some(BOGUS_APP)).await;
    assert_eq!(code, 401);
    let (code, _) = d.post("/v1/admin/units/front_door/open", Some(WRONG)).await;
    assert_eq!(code, 401);
    let (code, _) = d.post("/v1/sync", None).await;
    assert_eq!(code, 401);

    let (_, metrics) = scrape(&d, None).await;
    for endpoint in [
        "/v1/members",
        "/v1/events",
        "/v1/sync",
        "/v1/units/{unit}/open",
        "/v1/admin/units/{unit}/open",
    ] {
        assert_eq!(
            value(
                &metrics,
                &format!("portier_auth_failures_total{{endpoint=\"{endpoint}\"}}")
            ),
            1.0,
            "{endpoint}"
        );
    }
    assert_eq!(
        value(
            &metrics,
            "portier_auth_failures_total{endpoint=\"/v1/explain\"}"
        ),
        0.0
    );

    let log = d
        .wait_for_stderr("endpoint=\"/v1/sync\"", Duration::from_secs(5))
        .await;
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("authentication failed"))
        .collect();
    assert_eq!(refusals.len(), 5, "{log}");
    assert!(
        refusals.iter().any(|l| l.contains("/v1/members")
            && l.contains("wrong admin token")
            && l.contains("127.0.0.1")),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("/v1/events") && l.contains("no bearer token")),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|l| l.contains("/v1/units/{unit}/open") && l.contains("unknown Cobot token")),
        "{refusals:?}"
    );
    assert!(!log.contains(WRONG), "the token was logged:\n{log}");
    assert!(!log.contains(BOGUS_APP), "the token was logged:\n{log}");
    assert!(!log.contains("test-admin-token"), "{log}");
    // stderr is a pipe here: no colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "ANSI codes in a log that is not a terminal:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_admin_token_file_is_a_reason_until_it_is_fixed_and_reloaded() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let mut d = start(&site, port).await;
    synced(&d).await;
    wait_healthy(&d, Duration::from_secs(15)).await;

    let token_file = site.path("admin.token");
    let mode = |m: u32| {
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(0o644);
    let health = wait_reason(
        &d,
        &["admin token file is unusable", "admin.token"],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(health["status"], "degraded");
    let reason = reasons(&health).join(" ");
    assert!(!reason.contains("test-admin-token"), "{reason}");
    // Until a reload, the token read at start still works.
    assert_eq!(d.admin_get("/v1/members").await.0, 200);

    d.signal("HUP");
    assert!(
        d.wait_for_notify("RELOADING=1", Duration::from_secs(5))
            .await
    );
    let (code, _) = d
        .poll("/v1/members", Duration::from_secs(10), |code, _| {
            code == 401
        })
        .await;
    assert_eq!(
        code, 401,
        "a token others can read is not used after a reload"
    );
    wait_reason(&d, &["admin token file"], Duration::from_secs(1)).await;

    // Fixed on disk but not reloaded: the daemon still has no token, and says so.
    mode(0o600);
    wait_reason(
        &d,
        &["changed since the daemon read it"],
        Duration::from_secs(10),
    )
    .await;
    d.signal("HUP");
    wait_healthy(&d, Duration::from_secs(10)).await;
    assert_eq!(d.admin_get("/v1/members").await.0, 200);

    // A missing file is a reason too; an absent key is not.
    std::fs::remove_file(&token_file).unwrap();
    wait_reason(&d, &["admin token file"], Duration::from_secs(10)).await;
    let without_key = std::fs::read_to_string(site.config())
        .unwrap()
        .replace("admin_token_file = \"admin.token\"\n", "");
    std::fs::write(site.config(), without_key).unwrap();
    d.signal("HUP");
    wait_healthy(&d, Duration::from_secs(10)).await;
}

/// Writes, before the daemon starts, an event with a pending check-in for Ada at `time`.
async fn seed_check_in(site: &Site, time: chrono::DateTime<chrono::Utc>) {
    use portier::store::{CredentialKind, NewEvent, Store};
    let store = Store::open(&site.path("state")).unwrap();
    let day = time.with_timezone(&chrono_tz::Europe::Berlin).date_naive();
    store
        .append_event(NewEvent {
            time,
            unit: "front_door".into(),
            member: Some(ADA.into()),
            credential_kind: CredentialKind::Card,
            granted: true,
            reason: "granted".into(),
            decision_id: "seeded".into(),
            reader: None,
            opened: true,
            lock_error: None,
            via: None,
            check_in_day: Some(day),
        })
        .await
        .unwrap();
    drop(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_in_waiting_more_than_an_hour_is_a_reason_and_the_outbox_metrics_show_it() {
    let site = Site::start().await;
    // Cobot takes no check-ins for Ada (syncs still work).
    site.cobot
        .set_fault(&format!("/api/memberships/{ADA}/"), Fault::Status(500));
    let waited = chrono::Duration::minutes(90);
    seed_check_in(&site, portier::clock::now() - waited).await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let d = start(&site, port).await;
    synced(&d).await;

    let health = wait_reason(
        &d,
        &["oldest pending Cobot check-in", "older than 1 h"],
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(health["status"], "degraded");
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["outbox_depth"], 1, "{status}");
    let oldest = status["outbox_oldest_seconds"].as_i64().unwrap();
    assert!((5400..5400 + 300).contains(&oldest), "{status}");
    let (_, metrics) = scrape(&d, None).await;
    assert_eq!(value(&metrics, "portier_outbox_depth"), 1.0);
    let oldest = value(&metrics, "portier_outbox_oldest_seconds");
    assert!((5400.0..5700.0).contains(&oldest), "{metrics}");
    assert_eq!(value(&metrics, "portier_health_status"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_in_waiting_a_few_minutes_is_no_reason() {
    let site = Site::start().await;
    site.cobot
        .set_fault(&format!("/api/memberships/{ADA}/"), Fault::Status(500));
    seed_check_in(&site, portier::clock::now() - chrono::Duration::minutes(5)).await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let d = start(&site, port).await;
    synced(&d).await;
    wait_healthy(&d, Duration::from_secs(15)).await;
    let (_, metrics) = scrape(&d, None).await;
    assert_eq!(value(&metrics, "portier_outbox_depth"), 1.0);
    assert!(value(&metrics, "portier_outbox_oldest_seconds") >= 300.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_behind_the_last_event_is_untrusted_in_health_and_metrics() {
    let site = Site::start().await;
    // An event from tomorrow: the clock now looks as if it jumped back.
    seed_check_in(&site, portier::clock::now() + chrono::Duration::days(1)).await;
    let port = free_port();
    site.write_config(&site_config(), port);
    let d = start(&site, port).await;
    synced(&d).await;
    let health = wait_reason(
        &d,
        &["clock is untrusted", "jumped back"],
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(health["status"], "degraded");
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["clock"], "untrusted");
    let (_, metrics) = scrape(&d, None).await;
    assert_eq!(value(&metrics, "portier_clock_trusted"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_pipe_are_plain_and_portier_log_format_json_gives_one_object_per_line() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);

    let mut d = Daemon::start_logged(&site.config(), site.dir.path(), port, &[]);
    let text = d
        .wait_for_stderr("portier is serving decisions", Duration::from_secs(10))
        .await;
    assert!(text.contains("portier is serving decisions"), "{text}");
    assert!(text.contains(" INFO "), "{text}");
    assert!(!text.contains('\u{1b}'), "ANSI codes on a pipe:\n{text}");
    d.signal("TERM");
    d.child.wait().await.unwrap();

    let mut d = Daemon::start_logged(
        &site.config(),
        site.dir.path(),
        port,
        &[("PORTIER_LOG_FORMAT", "json")],
    );
    d.wait_for_stderr("portier is serving decisions", Duration::from_secs(10))
        .await;
    d.signal("TERM");
    d.child.wait().await.unwrap();
    let text = d.stderr();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "INFO"
            && l["fields"]["message"] == "portier is serving decisions"
            && l["fields"]["listen"] == format!("127.0.0.1:{port}")
            && l["timestamp"].is_string()),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_successful_sync_for_three_intervals_is_a_reason_until_one_succeeds() {
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&site_config(), port);
    site.portier(&["sync"]).await.expect_code(0);
    // The last success an hour ago (12 intervals of 5 min), and Cobot down now.
    {
        let store = portier::store::Store::open(&site.path("state")).unwrap();
        let mut status = store.sync_status().unwrap();
        status.last_success = Some(portier::clock::now() - chrono::Duration::hours(1));
        store.save_sync_status(&status).unwrap();
    }
    site.cobot.set_fault("/api/", Fault::Status(500));
    let d = start(&site, port).await;
    let health = wait_reason(
        &d,
        &[
            "offline: no successful sync for 1h",
            "3 sync intervals of 5m",
        ],
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(health["status"], "degraded");
    let (_, metrics) = scrape(&d, None).await;
    let last = value(&metrics, "portier_last_sync_success_timestamp_seconds");
    let age = portier::clock::now().timestamp() as f64 - last;
    assert!((3590.0..3900.0).contains(&age), "{age} s\n{metrics}");
    assert_eq!(value(&metrics, "portier_sync_interval_seconds"), 300.0);

    site.cobot.clear_faults();
    let (code, body) = d.post("/v1/sync?wait=true", Some(&d.admin_token)).await;
    assert_eq!(code, 200, "{body}");
    wait_no_reason(&d, &["no successful sync"], Duration::from_secs(10)).await;
    wait_healthy(&d, Duration::from_secs(10)).await;
}
