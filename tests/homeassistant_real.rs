//! A real Home Assistant (PyPI `homeassistant` 2024.3.3 with its MQTT integration, set up
//! through its own onboarding and config flow) pointed at the broker a running Portier uses:
//! the doors appear as entities, Home Assistant's "Open" opens the front door (the MQTT lock
//! gets its command, the event log says who asked), and door events show up on the event
//! entity.
//!
//! Home Assistant runs on the Python that `scripts/test` prepares (`target/test-ha`, from
//! `tests/peers/home-assistant-requirements.txt`), or `$PORTIER_TEST_HA_PYTHON`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::process::Stdio;
use std::time::Duration;

use mosquitto::Mosquitto;
use mqtt_site::{LOCK_TOPIC, MqttSite, READER_TOPIC, wait_events};
use portier_fake_cobot::fixtures::ADA_CARD;
use rumqttc::QoS;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The Python with Home Assistant installed.
fn python() -> String {
    if let Ok(python) = std::env::var("PORTIER_TEST_HA_PYTHON") {
        return python;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-ha/bin/python");
    assert!(
        std::path::Path::new(venv).exists(),
        "no Python with Home Assistant: run `bash scripts/test` (it makes {venv}) or set \
         PORTIER_TEST_HA_PYTHON"
    );
    venv.to_owned()
}

/// Home Assistant behind `tests/peers/home_assistant.py`, driven one JSON line at a time.
struct HomeAssistant {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    dir: tempfile::TempDir,
}

impl HomeAssistant {
    async fn start(broker_port: u16) -> HomeAssistant {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/peers/home_assistant.py"
            ))
            .arg(dir.path())
            .arg(common::free_port().to_string())
            .arg(broker_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start Home Assistant");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut ha = HomeAssistant {
            _child: child,
            stdin,
            stdout,
            dir,
        };
        let ready = ha.answer(Duration::from_secs(300)).await;
        assert_eq!(ready["ready"], true, "{ready}");
        ha
    }

    async fn answer(&mut self, within: Duration) -> Value {
        let line = tokio::time::timeout(within, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("Home Assistant answers in time; {}", self.log()))
            .unwrap()
            .unwrap_or_else(|| panic!("Home Assistant stopped; {}", self.log()));
        serde_json::from_str(&line).unwrap()
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("hass.out")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        format!(
            "its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    async fn ask(&mut self, command: Value) -> Value {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
        self.answer(Duration::from_secs(120)).await
    }

    /// The entity whose id starts with `domain.` and contains `part`, once it has a state
    /// (an event entity has none until its first event: `settled` false takes it as it is).
    async fn entity(&mut self, domain: &str, part: &str, settled: bool) -> (String, Value) {
        for _ in 0..120 {
            let ids = self
                .ask(json!({"op": "entities", "prefix": format!("{domain}.")}))
                .await;
            let found = ids["ids"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .find(|id| id.contains(part))
                .map(str::to_owned);
            if let Some(id) = found {
                if !settled {
                    let state = self.state(&id).await;
                    return (id, state);
                }
                let state = self
                    .ask(json!({"op": "wait_entity", "entity_id": id, "timeout": 30}))
                    .await;
                assert_eq!(state["ok"], true, "{state}; {}", self.log());
                return (id, state["state"].clone());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("no {domain} entity with {part}; {}", self.log());
    }

    async fn state(&mut self, entity: &str) -> Value {
        self.ask(json!({"op": "state", "entity_id": entity})).await["state"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_sees_the_doors_opens_one_and_shows_its_events() {
    let s = MqttSite::with_extra(
        Mosquitto::start().await,
        "[homeassistant]\ncommands = true\n",
    )
    .await;
    let d = s.start_daemon().await;
    let (_l, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let mut ha = HomeAssistant::start(s.broker.port).await;

    // The entities appear with Portier's states.
    let (lock, state) = ha.entity("lock", "front_door", true).await;
    assert_eq!(state["state"], "locked", "{state}");
    let (_, members) = ha.entity("sensor", "members", true).await;
    assert!(
        members["state"].as_str().unwrap().parse::<u32>().unwrap() > 0,
        "{members}"
    );
    let (lockdown_switch, lockdown) = ha.entity("switch", "lockdown", true).await;
    assert_eq!(lockdown["state"], "off", "{lockdown}");
    let (events, before) = ha.entity("event", "front_door", false).await;
    assert_eq!(
        before["attributes"]["event_types"][0], "granted",
        "{before}"
    );

    // "Open" in Home Assistant: the lock gets its command, the log says who asked.
    let opened = ha
        .ask(json!({"op": "service", "domain": "lock", "service": "open",
                    "data": {"entity_id": lock}}))
        .await;
    assert_eq!(opened["ok"], true, "{opened}; {}", ha.log());
    let unlock = lock_commands.next_within(Duration::from_secs(10)).await;
    let unlock = unlock.expect("the lock's command after Home Assistant's open");
    assert!(String::from_utf8_lossy(&unlock.payload).contains("UNLOCK"));
    let event = wait_events(&d, 1).await[0].clone();
    assert_eq!(event["granted"], true, "{event}");
    assert_eq!(event["credential_kind"], "admin");
    assert_eq!(event["via"], "homeassistant");

    // Its event entity shows the grant, then a card nobody holds.
    let mut seen = Value::Null;
    for _ in 0..40 {
        seen = ha.state(&events).await;
        if seen["attributes"]["event_type"] == "granted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen["attributes"]["event_type"], "granted", "{seen}");
    let reader = s.publisher("test-reader").await;
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, "DEADBEEF99")
        .await
        .unwrap();
    for _ in 0..40 {
        seen = ha.state(&events).await;
        if seen["attributes"]["event_type"] == "unknown_card" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen["attributes"]["event_type"], "unknown_card", "{seen}");
    assert!(!seen.to_string().contains("DEADBEEF99"), "{seen}");
    // And a member's card.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    let after = wait_events(&d, 3).await;
    assert_eq!(after[2]["granted"], true, "{}", after[2]);

    // The lockdown switch turns the lockdown on, and not off.
    for service in ["turn_on", "turn_off"] {
        let switched = ha
            .ask(
                json!({"op": "service", "domain": "switch", "service": service,
                        "data": {"entity_id": lockdown_switch}}),
            )
            .await;
        assert_eq!(switched["ok"], true, "{switched}");
        // Time for a command to arrive and be carried out (or refused).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, status) = d
            .poll("/v1/status", Duration::from_secs(10), |_, b| {
                b["lockdown"]["on"] == true
            })
            .await;
        assert_eq!(status["lockdown"]["on"], true, "{service}: {status}");
        let mut shown = Value::Null;
        for _ in 0..40 {
            shown = ha.state(&lockdown_switch).await;
            if shown["state"] == "on" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(shown["state"], "on", "{service}: {shown}");
    }
    drop(ha);
}
