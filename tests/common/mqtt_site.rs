//! The integration site with a real mosquitto broker and `portier run` as a child process:
//! the front door's lock is an MQTT lock on the daemon's one broker connection, a reader sits
//! at the front door, and more can be added with [`MqttSite::with_extra`].
//!
//! Use it from a test file together with `mod common;`, `#[path = "common/daemon.rs"] mod
//! daemon;` and `#[path = "common/mosquitto.rs"] mod mosquitto;`.

#![allow(dead_code)] // reason: each test binary uses a different part of the harness
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // reason: test harness: failing loudly is the point

use std::time::Duration;

use rumqttc::AsyncClient;
use serde_json::Value;

use super::common::{Site, free_port, site_config};
use super::daemon::Daemon;
use super::mosquitto::{self, Mosquitto};

pub const READER_TOPIC: &str = "portier/readers/front";
pub const RESULT_TOPIC: &str = "portier/readers/front/result";
pub const LOCK_TOPIC: &str = "locks/front/set";

/// The shipped mosquitto drop-in, as a broker configuration addition.
pub fn shipped_drop_in() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/mosquitto-portier.conf"
    ))
    .expect("read config/mosquitto-portier.conf")
}

/// The site configuration: MQTT lock and reader at the front door, plus `extra` TOML.
pub fn config(broker: &Mosquitto, extra: &str) -> String {
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
             [[reader]]\nid = \"front_reader\"\nunit = \"front_door\"\ntopic = \"{READER_TOPIC}\"\n\n{extra}\n",
            broker.url()
        )
}

/// A site, its broker and the daemon's HTTP port.
pub struct MqttSite {
    pub site: Site,
    pub broker: Mosquitto,
    pub port: u16,
}

impl MqttSite {
    /// The standard site on `broker`, with `extra` TOML appended; its config is checked.
    pub async fn with_extra(broker: Mosquitto, extra: &str) -> MqttSite {
        Self::on(Site::start().await, broker, extra).await
    }

    /// `site` on `broker`, with `extra` TOML appended; its config is checked.
    pub async fn on(site: Site, broker: Mosquitto, extra: &str) -> MqttSite {
        let text = config(&broker, extra);
        Self::with_config(site, broker, &text).await
    }

    /// `site` on `broker` with the configuration `text` (see [`config`]); it is checked.
    pub async fn with_config(site: Site, broker: Mosquitto, text: &str) -> MqttSite {
        let port = free_port();
        site.write_config(text, port);
        site.portier(&["check-config"]).await.expect_code(0);
        MqttSite { site, broker, port }
    }

    /// Starts `portier run` and waits for READY=1 and the first snapshot.
    pub async fn start_daemon(&self) -> Daemon {
        Daemon::start_serving(&self.site.config(), self.site.dir.path(), self.port)
            .await
            .0
    }

    /// A client playing a reader (it may publish up to 4 MiB).
    pub async fn publisher(&self, id: &str) -> AsyncClient {
        let (client, eventloop) = AsyncClient::new(self.broker.options(id), 16);
        mosquitto::drive(eventloop, |_, _| {});
        client
    }
}

/// Every stored event.
pub async fn events(d: &Daemon) -> Vec<Value> {
    let (status, body) = d.admin_get("/v1/events?after=0&limit=1000").await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().unwrap_or_default()
}

/// Waits until at least `n` events are stored (or 10 s pass) and returns them all.
pub async fn wait_events(d: &Daemon, n: usize) -> Vec<Value> {
    let (_, body) = d
        .poll(
            "/v1/events?after=0&limit=1000",
            Duration::from_secs(10),
            |_, b| b["events"].as_array().is_some_and(|e| e.len() >= n),
        )
        .await;
    body["events"].as_array().cloned().unwrap_or_default()
}
