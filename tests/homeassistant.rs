//! Home Assistant discovery, states, events and commands against `portier run` on a real
//! mosquitto, read as Home Assistant reads them: retained discovery configs under
//! `homeassistant/`, a lock's state from what its actuator did, door events on the gateway's
//! topics, stale configs of the gateway cleared, discovery re-sent after Home Assistant's
//! birth, and commands (when enabled) carried out as audited admin opens, retained or repeated
//! ones refused.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: tests fail loudly

mod common;
#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/mqtt_site.rs"]
mod mqtt_site;

use std::collections::BTreeMap;
use std::time::Duration;

use mosquitto::{Mosquitto, Received};
use mqtt_site::{LOCK_TOPIC, MqttSite, READER_TOPIC, wait_events};
use portier_fake_cobot::fixtures::{ADA, ADA_CARD};
use rumqttc::QoS;
use serde_json::Value;

const NODE: &str = "portier_demo-space";
const CONFIGS: &str = "homeassistant/+/portier_demo-space/+/config";
const FRONT_LOCK_CONFIG: &str = "homeassistant/lock/portier_demo-space/front_door_lock/config";
const FRONT_STATE: &str = "portier/demo-space/unit/front_door/state";
const FRONT_EVENT: &str = "portier/demo-space/unit/front_door/event";
const FRONT_SET: &str = "portier/demo-space/unit/front_door/set";
const EVENTS: &str = "portier/demo-space/events";
const LOCKDOWN: &str = "portier/demo-space/lockdown";

/// Every message that arrives until none has come for `quiet`.
async fn drain(received: &mut Received, quiet: Duration) -> Vec<rumqttc::Publish> {
    let mut all = Vec::new();
    while let Some(p) = received.next_within(quiet).await {
        all.push(p);
    }
    all
}

/// The retained discovery configs of the gateway a new subscriber gets, by topic.
async fn retained_configs(s: &MqttSite, client: &str) -> BTreeMap<String, Value> {
    let (_c, mut configs) = s.broker.subscriber(client, CONFIGS).await;
    drain(&mut configs, Duration::from_millis(500))
        .await
        .into_iter()
        .filter(|p| !p.payload.is_empty())
        .map(|p| {
            let value = serde_json::from_slice(&p.payload).unwrap();
            (p.topic.clone(), value)
        })
        .collect()
}

/// Waits for the next payload on `received` that satisfies `wanted`.
async fn next_matching(
    received: &mut Received,
    within: Duration,
    wanted: impl Fn(&[u8]) -> bool,
) -> Option<rumqttc::Publish> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let p = received.next_within(left).await?;
        if wanted(&p.payload) {
            return Some(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doors_appear_in_home_assistant_with_live_state_and_events_and_stale_configs_go() {
    let broker = Mosquitto::start().await;
    // A config left from an earlier configuration of this gateway, and one of someone else.
    let old = s_publisher(&broker, "test-old").await;
    let stale = format!("homeassistant/lock/{NODE}/garage_lock/config");
    old.publish(&stale, QoS::AtLeastOnce, true, "{\"name\":\"garage\"}")
        .await
        .unwrap();
    let foreign = "homeassistant/lock/zigbee2mqtt_0x01/lock/config";
    old.publish(foreign, QoS::AtLeastOnce, true, "{\"name\":\"other\"}")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let s = MqttSite::with_extra(broker, "[homeassistant]\ncommands = true\n").await;
    let _d = s.start_daemon().await;
    let (_w, mut watch_stale) = s.broker.subscriber("test-stale", &stale).await;
    // The stale config is cleared (an empty retained message) soon after the start.
    let mut configs = BTreeMap::new();
    for _ in 0..50 {
        configs = retained_configs(&s, "test-configs").await;
        if configs.contains_key(FRONT_LOCK_CONFIG) && !configs.contains_key(&stale) {
            break;
        }
    }
    assert!(!configs.contains_key(&stale), "{:?}", configs.keys());
    drop(watch_stale.next_within(Duration::from_millis(10)).await);
    let (_f, mut foreign_config) = s.broker.subscriber("test-foreign", foreign).await;
    assert!(
        !foreign_config.next().await.payload.is_empty(),
        "another integration's config is left alone"
    );

    // One device, every entity available through the gateway's status topic.
    let lock = &configs[FRONT_LOCK_CONFIG];
    assert_eq!(lock["command_topic"], FRONT_SET);
    assert_eq!(lock["state_topic"], FRONT_STATE);
    assert_eq!(lock["optimistic"], false);
    assert_eq!(lock["device"]["identifiers"][0], NODE);
    assert!(
        lock["device"]["configuration_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("http://127.0.0.1:{}/", s.port))
    );
    for (topic, config) in &configs {
        assert!(
            config["unique_id"]
                .as_str()
                .unwrap()
                .starts_with("portier_demo-space_"),
            "{topic}"
        );
        assert_eq!(
            config["availability"][0]["topic"], "portier/demo-space/status",
            "{topic}"
        );
        assert_eq!(config["origin"]["name"], "Portier", "{topic}");
    }
    for wanted in [
        "homeassistant/lock/portier_demo-space/office_lock/config",
        "homeassistant/event/portier_demo-space/front_door_event/config",
        "homeassistant/event/portier_demo-space/building_event/config",
        "homeassistant/sensor/portier_demo-space/last_sync/config",
        "homeassistant/sensor/portier_demo-space/members/config",
        "homeassistant/switch/portier_demo-space/lockdown/config",
    ] {
        assert!(
            configs.contains_key(wanted),
            "{wanted} in {:?}",
            configs.keys()
        );
    }
    // "building" has no lock: no lock entity.
    assert!(!configs.keys().any(|t| t.contains("building_lock")));

    // States are retained: locked, the sync and the lockdown.
    let (_st, mut state) = s.broker.subscriber("test-state", FRONT_STATE).await;
    assert_eq!(state.next().await.payload.as_ref(), b"LOCKED");
    let (_sy, mut sync) = s
        .broker
        .subscriber("test-sync", "portier/demo-space/sync")
        .await;
    let sync: Value = serde_json::from_slice(&sync.next().await.payload).unwrap();
    assert!(sync["members"].as_u64().unwrap() > 0, "{sync}");
    assert!(sync["synced_at"].is_string(), "{sync}");
    let (_ld, mut lockdown) = s.broker.subscriber("test-lockdown", LOCKDOWN).await;
    let lockdown: Value = serde_json::from_slice(&lockdown.next().await.payload).unwrap();
    assert_eq!(lockdown["state"], "OFF");

    // A card opens the door: the state follows the lock (open, then relocked after 300 ms),
    // and the event shows up on both topics, with the member and never the card id.
    let (_ev, mut events) = s.broker.subscriber("test-events", EVENTS).await;
    let (_ue, mut unit_events) = s.broker.subscriber("test-unit-events", FRONT_EVENT).await;
    let reader = s.publisher("test-reader").await;
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, ADA_CARD)
        .await
        .unwrap();
    assert_eq!(state.next().await.payload.as_ref(), b"UNLOCKED");
    assert_eq!(state.next().await.payload.as_ref(), b"LOCKED");
    let event: Value = serde_json::from_slice(&events.next().await.payload).unwrap();
    assert_eq!(event["event"], "granted", "{event}");
    assert_eq!(event["unit"], "front_door");
    assert_eq!(event["member"], ADA);
    assert_eq!(event["opened"], true);
    let unit_event: Value = serde_json::from_slice(&unit_events.next().await.payload).unwrap();
    assert_eq!(unit_event["event_type"], "granted", "{unit_event}");
    assert_eq!(unit_event["member"], ADA);
    for payload in [event.to_string(), unit_event.to_string()] {
        assert!(!payload.contains(ADA_CARD), "{payload}");
    }

    // An unknown card.
    reader
        .publish(READER_TOPIC, QoS::AtLeastOnce, false, "DEADBEEF99")
        .await
        .unwrap();
    let unit_event: Value = serde_json::from_slice(&unit_events.next().await.payload).unwrap();
    assert_eq!(unit_event["event_type"], "unknown_card", "{unit_event}");
    assert!(unit_event["member"].is_null());
    assert!(!unit_event.to_string().contains("DEADBEEF99"));
}

async fn s_publisher(broker: &Mosquitto, id: &str) -> rumqttc::AsyncClient {
    let (client, eventloop) = rumqttc::AsyncClient::new(broker.options(id), 16);
    mosquitto::drive(eventloop, |_, _| {});
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_opens_doors_as_audited_admin_opens_and_retained_or_repeated_commands_are_refused()
 {
    let broker = Mosquitto::start().await;
    // A retained command waiting on the broker from before the start: never carried out.
    let ha = s_publisher(&broker, "test-ha").await;
    ha.publish(FRONT_SET, QoS::AtLeastOnce, true, "OPEN")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = MqttSite::with_extra(broker, "[homeassistant]\ncommands = true\n").await;
    let (_l, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let d = s.start_daemon().await;
    let events = wait_events(&d, 1).await;
    let refused = &events[0];
    assert_eq!(refused["granted"], false, "{refused}");
    assert_eq!(refused["credential_kind"], "admin");
    assert_eq!(refused["via"], "homeassistant");
    assert!(
        refused["reason"].as_str().unwrap().contains("retained"),
        "{refused}"
    );
    assert!(
        lock_commands
            .next_within(Duration::from_millis(500))
            .await
            .is_none(),
        "a retained command opened the door"
    );
    ha.publish(FRONT_SET, QoS::AtLeastOnce, true, "")
        .await
        .unwrap();

    // OPEN: the lock gets its command, and the event says who asked.
    ha.publish(FRONT_SET, QoS::AtLeastOnce, false, "OPEN")
        .await
        .unwrap();
    let unlock = lock_commands.next().await;
    assert!(
        String::from_utf8_lossy(&unlock.payload).contains("UNLOCK"),
        "{:?}",
        unlock.payload
    );
    // At once again: a repeat, refused and recorded.
    ha.publish(FRONT_SET, QoS::AtLeastOnce, false, "OPEN")
        .await
        .unwrap();
    let events = wait_events(&d, 3).await;
    let opened = &events[1];
    assert_eq!(opened["granted"], true, "{opened}");
    assert_eq!(opened["opened"], true, "{opened}");
    assert_eq!(opened["credential_kind"], "admin");
    assert_eq!(opened["via"], "homeassistant");
    let repeat = &events[2];
    assert_eq!(repeat["granted"], false, "{repeat}");
    assert!(
        repeat["reason"].as_str().unwrap().contains("repeated"),
        "{repeat}"
    );

    // Garbage and unknown units open nothing; garbage is recorded, an unknown unit only logged.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ha.publish(FRONT_SET, QoS::AtLeastOnce, false, "OPEN ALL THE DOORS")
        .await
        .unwrap();
    ha.publish(
        "portier/demo-space/unit/vault/set",
        QoS::AtLeastOnce,
        false,
        "OPEN",
    )
    .await
    .unwrap();
    let events = wait_events(&d, 4).await;
    assert!(
        events[3]["reason"]
            .as_str()
            .unwrap()
            .contains("is not OPEN or UNLOCK"),
        "{}",
        events[3]
    );
    // The relock of the open above, then nothing.
    let rest = drain(&mut lock_commands, Duration::from_millis(800)).await;
    assert!(
        rest.iter()
            .all(|p| !String::from_utf8_lossy(&p.payload).contains("UNLOCK")),
        "{rest:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(wait_events(&d, 4).await.len(), 4);

    // The lockdown switch: ON switches it on; OFF is refused (only the API or the command line
    // switch it off).
    let (_ev, mut gateway_events) = s.broker.subscriber("test-gw-events", EVENTS).await;
    let (_ld, mut lockdown) = s.broker.subscriber("test-lockdown", LOCKDOWN).await;
    let off: Value = serde_json::from_slice(&lockdown.next().await.payload).unwrap();
    assert_eq!(off["state"], "OFF", "{off}");
    ha.publish(
        "portier/demo-space/lockdown/set",
        QoS::AtLeastOnce,
        false,
        "ON",
    )
    .await
    .unwrap();
    let on = next_matching(&mut lockdown, Duration::from_secs(5), |p| {
        String::from_utf8_lossy(p).contains("\"state\":\"ON\"")
    })
    .await
    .expect("the lockdown on");
    assert!(String::from_utf8_lossy(&on.payload).contains("Home Assistant"));
    let switched = next_matching(&mut gateway_events, Duration::from_secs(5), |p| {
        String::from_utf8_lossy(p).contains("lockdown_on")
    })
    .await
    .expect("the lockdown as an event");
    let switched: Value = serde_json::from_slice(&switched.payload).unwrap();
    assert_eq!(
        switched["reason"], "switched on from Home Assistant",
        "{switched}"
    );
    ha.publish(
        "portier/demo-space/lockdown/set",
        QoS::AtLeastOnce,
        false,
        "OFF",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, status) = d.admin_get("/v1/status").await;
    assert_eq!(status["lockdown"]["on"], true, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_commands_home_assistant_only_watches_and_gets_discovery_again_after_its_restart() {
    let s = MqttSite::with_extra(Mosquitto::start().await, "[homeassistant]\n").await;
    let (_l, mut lock_commands) = s.broker.subscriber("test-lock", LOCK_TOPIC).await;
    let d = s.start_daemon().await;
    let lock_sensor = "homeassistant/binary_sensor/portier_demo-space/front_door_lock/config";
    let (_c, mut config) = s.broker.subscriber("test-config", lock_sensor).await;
    let first = config.next().await;
    assert!(first.retain);
    let value: Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(value["device_class"], "lock");
    assert!(value.get("command_topic").is_none());
    let configs = retained_configs(&s, "test-configs").await;
    assert!(
        configs.values().all(|c| c.get("command_topic").is_none()),
        "{configs:?}"
    );

    // A command is not even heard.
    let ha = s_publisher(&s.broker, "test-ha").await;
    ha.publish(FRONT_SET, QoS::AtLeastOnce, false, "OPEN")
        .await
        .unwrap();
    assert!(
        lock_commands
            .next_within(Duration::from_millis(1500))
            .await
            .is_none()
    );
    let (_, body) = d.admin_get("/v1/events?after=0").await;
    assert_eq!(body["events"].as_array().unwrap().len(), 0, "{body}");

    // Home Assistant restarts: its birth message brings the configs again, 5 to 30 s later.
    let born = tokio::time::Instant::now();
    ha.publish("homeassistant/status", QoS::AtLeastOnce, false, "online")
        .await
        .unwrap();
    let again = config
        .next_within(Duration::from_secs(35))
        .await
        .expect("discovery again after Home Assistant's birth");
    let after = born.elapsed();
    assert!(
        after >= Duration::from_secs(4) && after <= Duration::from_secs(32),
        "{after:?}"
    );
    assert_eq!(again.payload, first.payload);
}
