//! `portier run` end to end with real peers: a real mosquitto broker, a real HTTP server
//! playing Cobot, a real sled cache, and the daemon as a child process that talks to a
//! systemd-style notify socket. A card on a reader topic must come out as a lock command, a
//! result message, a stored event and exactly one Cobot check-in — also across Cobot outages
//! and a kill -9.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::time::Duration;

use common::{Site, free_port, site_config};
use daemon::Daemon;
use mosquitto::Mosquitto;
use portier_fake_cobot::Fault;
use portier_fake_cobot::fixtures::{ADA, ADA_CARD, CHARLES};
use rumqttc::{AsyncClient, QoS};
use serde_json::Value;

const READER_TOPIC: &str = "portier/readers/front";
const LOCK_TOPIC: &str = "locks/front/set";

/// The integration site plus MQTT: the front door's lock is an MQTT lock, a reader sits at
/// it, and a lobby has no lock at all.
fn daemon_config(broker: &Mosquitto) -> String {
    site_config()
        .replace(
            "[[lock]]\nid = \"front_lock\"\ndriver = \"log\"",
            &format!(
                "[[lock]]\nid = \"front_lock\"\ndriver = \"mqtt\"\ntopic = \"{LOCK_TOPIC}\"\n\
                 unlock_payload = '{{\"state\":\"UNLOCK\",\"decision\":\"{{decision_id}}\"}}'\n\
                 lock_payload = '{{\"state\":\"LOCK\"}}'"
            ),
        )
        .replace(
            "lock = \"front_lock\"",
            "lock = \"front_lock\"\nopen_for = \"300ms\"",
        )
        + &format!(
            "\n[mqtt]\nurl = \"{}\"\nclient_id = \"portier-test\"\n\n\
             [[reader]]\nid = \"front_reader\"\nunit = \"front_door\"\ntopic = \"{READER_TOPIC}\"\n\n\
             [[unit]]\nid = \"lobby\"\nparent = \"building\"\n",
            broker.url()
        )
}

struct Setup {
    site: Site,
    broker: Mosquitto,
    port: u16,
}

async fn setup() -> Setup {
    let broker = Mosquitto::start().await;
    let site = Site::start().await;
    let port = free_port();
    site.write_config(&daemon_config(&broker), port);
    let check = site.portier(&["check-config"]).await;
    check.expect_code(0);
    Setup { site, broker, port }
}

impl Setup {
    async fn start_daemon(&self) -> Daemon {
        let mut d = Daemon::start(
            &self.site.config(),
            self.site.dir.path(),
            self.port,
            Some(Duration::from_secs(2)),
        );
        assert!(
            d.wait_for_notify("READY=1", Duration::from_secs(10)).await,
            "no READY=1: {:?}",
            d.messages
        );
        d
    }

    async fn publisher(&self) -> AsyncClient {
        let (client, eventloop) = AsyncClient::new(self.broker.options("test-reader"), 16);
        mosquitto::drive(eventloop, |_, _| {});
        client
    }
}

/// Waits until the daemon has a snapshot.
async fn synced(d: &Daemon) {
    let (_, status) = d
        .poll("/v1/status", Duration::from_secs(15), |_, s| {
            s["snapshot"]["version"].as_u64().is_some()
        })
        .await;
    assert!(status["snapshot"]["version"].as_u64().is_some(), "{status}");
}

async fn events(d: &Daemon) -> Vec<Value> {
    let (status, body) = d.admin_get("/v1/events?after=0&limit=1000").await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

async fn wait_check_ins(site: &Site, member: &str, want: usize, within: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = site
            .cobot
            .check_ins()
            .iter()
            .filter(|c| c.membership_id == member)
            .count();
        if n >= want || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_opens_the_door_is_recorded_answered_and_checked_in_once() {
    let s = setup().await;
    let mut d = s.start_daemon().await;
    synced(&d).await;
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let (_result_client, mut results) = s
        .broker
        .subscriber("test-results", &format!("{READER_TOPIC}/result"))
        .await;
    let reader = s.publisher().await;

    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, "04:a1:b2:c3:d4")
        .await
        .unwrap();
    let command = lock_commands.next().await;
    assert!(!command.retain, "lock commands are never retained");
    let payload = String::from_utf8_lossy(&command.payload).into_owned();
    assert!(payload.contains("UNLOCK"), "{payload}");
    let result: Value = serde_json::from_slice(&results.next().await.payload).unwrap();
    assert_eq!(result["granted"], true, "{result}");
    assert_eq!(result["opened"], true, "{result}");
    assert_eq!(result["unit"], "front_door");
    let decision = result["decision_id"].as_str().unwrap().to_owned();
    assert!(
        payload.contains(&decision),
        "lock command carries the decision id"
    );
    let relock = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&relock.payload).contains("LOCK"));

    let recorded = events(&d).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["seq"], 1);
    assert_eq!(recorded[0]["member"], ADA);
    assert_eq!(recorded[0]["credential_kind"], "card");
    assert_eq!(recorded[0]["granted"], true);
    assert_eq!(recorded[0]["opened"], true);
    assert_eq!(recorded[0]["decision_id"], decision.as_str());
    assert_eq!(
        wait_check_ins(&s.site, ADA, 1, Duration::from_secs(10)).await,
        1
    );

    // The same payload again within 2 s: the same answer, nothing new.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, "04:a1:b2:c3:d4")
        .await
        .unwrap();
    let again: Value = serde_json::from_slice(&results.next().await.payload).unwrap();
    assert_eq!(again["decision_id"], decision.as_str());
    assert!(
        lock_commands
            .next_within(Duration::from_millis(500))
            .await
            .is_none()
    );
    assert_eq!(events(&d).await.len(), 1);

    // Another entry the same day opens the door but makes no second check-in.
    let json = format!(r#"{{"credential":"{ADA_CARD}"}}"#);
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, json)
        .await
        .unwrap();
    let second: Value = serde_json::from_slice(&results.next().await.payload).unwrap();
    assert_eq!(second["granted"], true);
    assert_ne!(second["decision_id"], decision.as_str());
    // A malformed payload is answered and recorded, never a crash.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, "{broken")
        .await
        .unwrap();
    let malformed: Value = serde_json::from_slice(&results.next().await.payload).unwrap();
    assert_eq!(malformed["granted"], false);
    assert_eq!(malformed["opened"], false);
    assert!(malformed["reason"].as_str().unwrap().contains("malformed"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        wait_check_ins(&s.site, ADA, 2, Duration::from_millis(1)).await,
        1
    );
    let recorded = events(&d).await;
    let seqs: Vec<u64> = recorded.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, vec![1, 2, 3]);

    // The watchdog pings follow the deciding task's self-checks (WATCHDOG_USEC is 2 s here).
    assert!(
        d.wait_for_notify("WATCHDOG=1", Duration::from_secs(3))
            .await,
        "{:?}",
        d.messages
    );
    assert!(d.messages.iter().any(|m| m.contains("STATUS=")));
    let (code, health) = d
        .poll("/healthz", Duration::from_secs(1), |_, _| true)
        .await;
    assert_eq!(code, 200, "{health}");
    let metrics = d.metrics().await;
    assert!(metrics.contains("portier_decisions_total"), "{metrics}");
    assert!(metrics.contains("portier_outbox_depth 0"), "{metrics}");

    d.signal("TERM");
    let status = tokio::time::timeout(Duration::from_secs(10), d.child.wait())
        .await
        .expect("exits within 10 s")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(
        d.wait_for_notify("STOPPING=1", Duration::from_secs(1))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cobot_down_the_door_opens_and_the_check_in_arrives_once_after_a_kill() {
    let s = setup().await;
    let mut d = s.start_daemon().await;
    synced(&d).await;
    s.site
        .cobot
        .set_fault("/api/memberships/", Fault::Status(503));
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let reader = s.publisher().await;
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    let command = lock_commands.next().await;
    assert!(String::from_utf8_lossy(&command.payload).contains("UNLOCK"));
    let (_, body) = d
        .poll("/v1/events", Duration::from_secs(5), |_, b| {
            b["events"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await;
    assert_eq!(body["events"][0]["granted"], true);
    assert_eq!(
        wait_check_ins(&s.site, ADA, 1, Duration::from_millis(500)).await,
        0
    );

    // kill -9 while the check-in is still owed; restart with Cobot back.
    d.signal("KILL");
    let _ = d.child.wait().await;
    s.site.cobot.clear_faults();
    let d = s.start_daemon().await;
    assert_eq!(
        wait_check_ins(&s.site, ADA, 1, Duration::from_secs(15)).await,
        1
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        wait_check_ins(&s.site, ADA, 2, Duration::from_millis(1)).await,
        1
    );
    let recorded = events(&d).await;
    assert_eq!(
        recorded.len(),
        1,
        "the event survived the kill: {recorded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_opens_check_the_token_with_cobot_and_fall_back_to_the_cache() {
    let s = setup().await;
    let d = s.start_daemon().await;
    synced(&d).await;
    let ada = format!("app-{ADA}");

    let (code, body) = d.post("/v1/units/front_door/open", Some(&ada)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["granted"], true);
    assert_eq!(body["member"], ADA);
    let (code, _) = d.post("/v1/units/front_door/open", Some("who-knows")).await;
    assert_eq!(code, 401);
    let (code, _) = d.post("/v1/units/front_door/open", None).await;
    assert_eq!(code, 401);
    let (code, _) = d.post("/v1/units/roof/open", Some(&ada)).await;
    assert_eq!(code, 404);
    let (code, body) = d
        .post("/v1/units/front_door/open", Some(&format!("app-{CHARLES}")))
        .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["granted"], false);
    let (code, body) = d.post("/v1/units/lobby/open", Some(&ada)).await;
    assert_eq!(code, 409);
    assert_eq!(body["opened"], false, "{body}");
    assert_eq!(body["lock_error"], "no_lock", "{body}");

    // Cobot unreachable: a token seen before still opens, an unseen one does not.
    s.site.cobot.set_fault("/api/user", Fault::Status(503));
    let (code, body) = d.post("/v1/units/front_door/open", Some(&ada)).await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = d
        .post("/v1/units/front_door/open", Some("never-seen"))
        .await;
    assert_eq!(code, 401);

    let kinds: Vec<Value> = events(&d)
        .await
        .iter()
        .map(|e| e["credential_kind"].clone())
        .collect();
    assert!(kinds.iter().all(|k| k == "app"), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_ask_the_daemon_while_it_holds_the_store() {
    let s = setup().await;
    let d = s.start_daemon().await;
    synced(&d).await;
    let members = s.site.portier(&["members", "--json"]).await;
    members.expect_code(0);
    assert_eq!(members.json().as_array().map(Vec::len), Some(7));
    s.site
        .portier(&["explain", "--member", ADA, "--unit", "front_door"])
        .await
        .expect_code(0);
    s.site
        .portier(&["explain", "--member", CHARLES, "--unit", "front_door"])
        .await
        .expect_code(2);
    s.site
        .portier(&["explain", "--member", ADA, "--unit", "roof"])
        .await
        .expect_code(64);
    let sync = s.site.portier(&["sync", "--json"]).await;
    sync.expect_code(0);
    assert_eq!(sync.json()["applied"], true);

    // Admin endpoints need the admin token, then well-formed parameters.
    let (code, _) = d.post("/v1/admin/units/front_door/open", None).await;
    assert_eq!(code, 401);
    let anonymous = portier::tls::http_client()
        .get(format!("{}/v1/events", d.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (code, body) = d.admin_get("/v1/events?limit=lots").await;
    assert_eq!(code, 400);
    assert!(body["error"].is_string(), "{body}");
    let (code, _) = d.admin_get("/v1/explain?unit=front_door").await;
    assert_eq!(code, 400);
    let (code, _) = d
        .admin_get(&format!("/v1/explain?unit=roof&member={ADA}"))
        .await;
    assert_eq!(code, 404);
    let (code, body) = d
        .admin_get(&format!(
            "/v1/explain?unit=front_door&credential={ADA_CARD}"
        ))
        .await;
    assert_eq!(code, 200);
    assert_eq!(body["granted"], true);
    let (code, body) = d
        .post("/v1/admin/units/front_door/open", Some(&d.admin_token))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["granted"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_reader_message_replayed_by_the_broker_opens_nothing() {
    let s = setup().await;
    let reader = s.publisher().await;
    // Stored by the broker before the daemon subscribes: it arrives with the retain flag.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, true, ADA_CARD)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_lock_client, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let (_result_client, mut results) = s
        .broker
        .subscriber("test-results", &format!("{READER_TOPIC}/result"))
        .await;
    let d = s.start_daemon().await;
    synced(&d).await;
    let (_, body) = d
        .poll("/v1/events", Duration::from_secs(5), |_, b| {
            b["events"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await;
    let recorded = body["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["granted"], false);
    assert!(recorded[0]["reason"].as_str().unwrap().contains("stale"));
    assert!(
        lock_commands
            .next_within(Duration::from_millis(500))
            .await
            .is_none()
    );
    assert!(
        results
            .next_within(Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_certificate_the_api_is_served_over_https_and_commands_still_reach_it() {
    let s = setup().await;
    let (cert, key) = (s.site.path("tls.crt"), s.site.path("tls.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "2",
            "-subj",
            "/CN=portier.local",
            "-addext",
            "subjectAltName=DNS:portier.local",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    common::write_secret(&key, &std::fs::read_to_string(&key).unwrap());
    let config = std::fs::read_to_string(s.site.config()).unwrap().replace(
        "[http]\n",
        "[http]\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n",
    );
    std::fs::write(s.site.config(), config).unwrap();
    s.site.portier(&["check-config"]).await.expect_code(0);
    let _d = s.start_daemon().await;

    let pem = std::fs::read(&cert).unwrap();
    let https = portier::tls::http_client_builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).unwrap())
        .danger_accept_invalid_hostnames(true)
        .build()
        .unwrap();
    let health = https
        .get(format!("https://127.0.0.1:{}/healthz", s.port))
        .send()
        .await
        .expect("HTTPS answers");
    assert!(health.status().as_u16() == 200 || health.status().as_u16() == 503);
    assert!(
        portier::tls::http_client()
            .get(format!("http://127.0.0.1:{}/healthz", s.port))
            .send()
            .await
            .is_err(),
        "plain HTTP is not served"
    );
    // The command line pins the daemon's certificate when it asks it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let run = s.site.portier(&["members", "--json"]).await;
        if run.code == 0 {
            assert_eq!(run.json().as_array().map(Vec::len), Some(7));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", run.stderr);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_the_first_sync_health_is_failing_and_only_staff_can_open() {
    let s = setup().await;
    s.site.cobot.set_fault("/api/", Fault::Unauthorized);
    let d = s.start_daemon().await;
    let (code, health) = d
        .poll("/healthz", Duration::from_secs(10), |_, h| {
            h["reasons"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r.as_str().is_some_and(|r| r.contains("reconnect")))
            })
        })
        .await;
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "failing");
    let (code, _) = d
        .post("/v1/units/front_door/open", Some(&format!("app-{ADA}")))
        .await;
    assert_eq!(code, 401);
    let (code, body) = d
        .post("/v1/admin/units/front_door/open", Some(&d.admin_token))
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["granted"], true);
}
