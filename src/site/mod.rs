//! The gateway in the building's own systems, over the broker: what it publishes about itself
//! under `portier/<gateway_id>/` and, with `[homeassistant]`, its Home Assistant discovery and
//! commands.
//!
//! One task ([`run`]) owns all of it. It publishes, through the daemon's one broker connection:
//!
//! - every door event, once durable, on `portier/<gateway>/events` (and, for Home Assistant,
//!   on the unit's `portier/<gateway>/unit/<unit>/event`);
//! - retained states: each unit's lock (`…/unit/<unit>/state`: `LOCKED`, `UNLOCKED`, `JAMMED`,
//!   from what the actuator did), the lockdown (`…/lockdown`) and the sync (`…/sync`);
//! - Home Assistant discovery configs (retained), again after every connection, after a reload
//!   and a random 5–30 s after Home Assistant announces itself `online`; configs of this
//!   gateway that the configuration no longer has are cleared (an empty retained message).
//!
//! With `[homeassistant] commands = true` it takes `OPEN`/`UNLOCK` on a unit's `…/set` as an
//! admin open through the access engine (audited, `via = "homeassistant"`), and `ON` on
//! `…/lockdown/set`; a retained command, a repeat within a second and a lockdown `OFF` are
//! refused and logged (door commands also as a refused event).
//!
//! It never decides: opens go through [`crate::access::Engine`]; and it never publishes a lock
//! command itself.

mod discovery;
mod payloads;

pub(crate) use payloads::masked_reason;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use crate::access::{Credential, Engine, LockdownSwitch, Request};
use crate::config::Config;
use crate::domain::Snapshot;
use crate::locks::{Latch, Locks};
use crate::mqtt::{Inbox, Message, MqttLink, Topics};
use crate::store::{CredentialKind, EventRecord};

/// Home Assistant's discovery is sent again this long after it announces itself, at random in
/// the range, so that many gateways do not answer one restart at once.
const REDISCOVERY_DELAY: std::ops::RangeInclusive<u64> = 5_000..=30_000;
/// A command for the same unit sooner than this after the last one is refused as a repeat.
const REPEAT_WINDOW: Duration = Duration::from_secs(1);
/// The name events and logs give Home Assistant.
const VIA: &str = "homeassistant";

/// What the task works from.
pub(crate) struct Inputs {
    /// The configuration in force (units, `[homeassistant]`, the gateway id).
    pub config: watch::Receiver<Arc<Config>>,
    /// The snapshot in force, for the sync state.
    pub snapshot: watch::Receiver<Option<Arc<Snapshot>>>,
    /// The publishing connection.
    pub link: MqttLink,
    /// Subscriptions on the receiving connection.
    pub topics: Topics,
    /// Every durable event.
    pub feed: broadcast::Receiver<Arc<EventRecord>>,
    /// The locks, for their latches.
    pub locks: Arc<Locks>,
    /// The lockdown, shown and (with commands) switched on.
    pub lockdown: Arc<LockdownSwitch>,
    /// Where Home Assistant's opens are decided and carried out.
    pub engine: Arc<Engine>,
    /// Where the installer page answers (the device's `configuration_url`).
    pub configuration_url: String,
    /// Door sensors' events.
    pub door_notices: broadcast::Receiver<crate::doors::DoorNotice>,
    /// The doors with a contact.
    pub doors: watch::Receiver<crate::doors::Doors>,
}

/// Hands subscribed messages to the task.
struct Forward(mpsc::Sender<Message>);

impl Inbox for Forward {
    fn deliver(&self, message: Message) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        Box::pin(async move { self.0.send(message).await.is_ok() })
    }
}

/// What a subscribed message is to the task.
enum Incoming {
    /// Home Assistant's birth or will.
    HomeAssistantStatus,
    /// A discovery config under this gateway's node.
    OwnConfig,
    /// A unit's command.
    UnitCommand(String),
    /// The lockdown switch's command.
    LockdownCommand,
}

/// The task's state between wake-ups.
struct Site {
    inputs: Inputs,
    config: Arc<Config>,
    /// Topic filters subscribed for the configuration in force, and what each is.
    subscribed: Vec<String>,
    inbox: Arc<dyn Inbox>,
    /// The discovery configs of the configuration in force (published at each connection), by
    /// topic.
    discovery: BTreeMap<String, Vec<u8>>,
    /// The lock states published, by unit topic.
    states: HashMap<String, &'static str>,
    /// When each unit last took a command.
    last_command: HashMap<String, std::time::Instant>,
}

/// Runs until `shutdown` turns true.
pub(crate) async fn run(inputs: Inputs, mut shutdown: watch::Receiver<bool>) {
    let (forward, mut messages) = mpsc::channel(64);
    let mut connects = inputs.link.connects();
    let mut config_rx = inputs.config.clone();
    let mut snapshot_rx = inputs.snapshot.clone();
    let mut lockdown_rx = inputs.lockdown.subscribe();
    let mut lock_changes = inputs.locks.changes();
    let mut feed = inputs.feed.resubscribe();
    let mut door_notices = inputs.door_notices.resubscribe();
    let mut doors_rx = inputs.doors.clone();
    let config = Arc::clone(&inputs.config.borrow());
    // What this configuration publishes, known before the first connection: a config of ours
    // that the broker replays before we publish is then not taken for a stale one.
    let discovery = discovery::configs(&config, &inputs.configuration_url);
    let mut site = Site {
        config,
        inputs,
        subscribed: Vec::new(),
        inbox: Arc::new(Forward(forward)),
        discovery,
        states: HashMap::new(),
        last_command: HashMap::new(),
    };
    site.subscribe();
    let mut latches = site.inputs.locks.latches();
    let mut rediscover: Option<tokio::time::Instant> = None;
    // What is already known is published at the first connection (`connects` starts unseen
    // when the broker was reached before this task ran).
    connects.mark_changed();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            Ok(()) = connects.changed() => site.publish_all(&latches),
            Ok(()) = config_rx.changed() => {
                site.config = Arc::clone(&config_rx.borrow_and_update());
                site.subscribe();
                site.publish_all(&latches);
            }
            Ok(()) = lock_changes.changed() => {
                latches = site.inputs.locks.latches();
                site.publish_states(&latches);
            }
            Ok(()) = snapshot_rx.changed() => site.publish_sync(),
            Ok(()) = doors_rx.changed() => site.publish_states(&latches),
            notice = door_notices.recv() => match notice {
                Ok(notice) => site.publish_door_event(&notice),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => {}
            },
            Ok(()) = lockdown_rx.changed() => {
                site.publish_lockdown();
                let state = lockdown_rx.borrow_and_update().clone();
                site.publish(
                    &site.config.site.events_topic(),
                    false,
                    payloads::lockdown_event(&state),
                );
            }
            event = feed.recv() => match event {
                Ok(event) => site.publish_event(&event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the site's MQTT topics missed events (the broker is slow)");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            Some(message) = messages.recv() => {
                if site.handle(message) && rediscover.is_none() {
                    let wait = rand::random_range(REDISCOVERY_DELAY);
                    rediscover = Some(tokio::time::Instant::now() + Duration::from_millis(wait));
                    tracing::info!(in_ms = wait, "Home Assistant is online: discovery follows");
                }
            }
            () = sleep_until(rediscover) => {
                rediscover = None;
                site.publish_discovery();
            }
            lock = crate::locks::next_latch_change(&mut latches) => match lock {
                Some(_) => site.publish_states(&latches),
                // A driver went out of service: its latch is gone, the new ones are fetched.
                None => {
                    latches = site.inputs.locks.latches();
                    latches.retain(|_, latch| latch.has_changed().is_ok());
                    site.publish_states(&latches);
                }
            },
        }
    }
}

/// Waits until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Site {
    fn base(&self) -> String {
        format!("portier/{}", self.config.site.gateway_id)
    }

    /// Publishes `payload` on `topic` (QoS 1) while the broker is connected; otherwise the next
    /// connection publishes the state again, and an event is only in the log.
    fn publish(&self, topic: &str, retain: bool, payload: Vec<u8>) {
        if !self.inputs.link.is_up() {
            return;
        }
        if let Err(e) =
            self.inputs
                .link
                .client()
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
        {
            tracing::warn!(%topic, error = %e, "cannot publish");
        }
    }

    /// Subscribes what the configuration in force needs, and drops what it no longer does.
    fn subscribe(&mut self) {
        let wanted = self.filters();
        for old in &self.subscribed {
            if !wanted.contains(old) {
                self.inputs.topics.remove(old);
            }
        }
        for filter in &wanted {
            if !self.subscribed.contains(filter) {
                self.inputs.topics.add(filter, Arc::clone(&self.inbox));
            }
        }
        self.subscribed = wanted;
    }

    fn filters(&self) -> Vec<String> {
        let Some(ha) = &self.config.homeassistant else {
            return Vec::new();
        };
        let mut filters = vec![
            format!("{}/status", ha.prefix),
            discovery::own_configs(ha, &discovery::node_id(&self.config)),
        ];
        if ha.commands {
            filters.push(format!("{}/unit/+/set", self.base()));
            filters.push(format!("{}/lockdown/set", self.base()));
        }
        filters
    }

    fn classify(&self, topic: &str) -> Option<Incoming> {
        let ha = self.config.homeassistant.as_ref()?;
        if topic == format!("{}/status", ha.prefix) {
            return Some(Incoming::HomeAssistantStatus);
        }
        if rumqttc::matches(
            topic,
            &discovery::own_configs(ha, &discovery::node_id(&self.config)),
        ) {
            return Some(Incoming::OwnConfig);
        }
        if !ha.commands {
            return None;
        }
        let base = self.base();
        if topic == format!("{base}/lockdown/set") {
            return Some(Incoming::LockdownCommand);
        }
        let unit = topic
            .strip_prefix(&format!("{base}/unit/"))?
            .strip_suffix("/set")?;
        Some(Incoming::UnitCommand(unit.to_owned()))
    }

    /// Handles a subscribed message; true when Home Assistant announced itself online.
    fn handle(&mut self, message: Message) -> bool {
        match self.classify(&message.topic) {
            None => false,
            Some(Incoming::HomeAssistantStatus) => message.payload == b"online",
            Some(Incoming::OwnConfig) => {
                // A config left from an earlier configuration (replayed, retained, on
                // subscribing): clear it. Ours come back too, live; those are left alone.
                if message.retained
                    && !message.payload.is_empty()
                    && !self.discovery.contains_key(&message.topic)
                {
                    tracing::info!(topic = %message.topic, "clearing a stale Home Assistant config");
                    self.publish(&message.topic, true, Vec::new());
                }
                false
            }
            Some(Incoming::UnitCommand(unit)) => {
                self.unit_command(unit, &message);
                false
            }
            Some(Incoming::LockdownCommand) => {
                self.lockdown_command(&message);
                false
            }
        }
    }

    fn unit_command(&mut self, unit: String, message: &Message) {
        let payload = String::from_utf8_lossy(&message.payload);
        let payload = payload.trim();
        if !self.config.policy.units.iter().any(|u| u.id == unit) {
            tracing::warn!(%unit, "Home Assistant command for a unit that is not configured: ignored");
            return;
        }
        if payload.is_empty() {
            // How a retained message is cleared: nothing to carry out.
            return;
        }
        let refusal = if message.retained {
            Some("a retained Home Assistant command is never carried out".to_owned())
        } else if payload == discovery::LOCK {
            // The strike relocks by itself: answer with the state as it is.
            let latches = self.inputs.locks.latches();
            self.states.clear();
            self.publish_states(&latches);
            return;
        } else if payload != discovery::OPEN && payload != discovery::UNLOCK {
            Some(format!(
                "Home Assistant command \"{}\" is not OPEN or UNLOCK",
                payload.chars().take(32).collect::<String>()
            ))
        } else if self
            .last_command
            .get(&unit)
            .is_some_and(|at| at.elapsed() < REPEAT_WINDOW)
        {
            Some("a repeated Home Assistant command within 1 s is not carried out".to_owned())
        } else {
            None
        };
        let engine = Arc::clone(&self.inputs.engine);
        match refusal {
            Some(reason) => {
                tracing::warn!(%unit, %reason, "Home Assistant command refused");
                let mut refused = engine.refuse(&unit, CredentialKind::Admin, None, reason);
                refused.event.via = Some(VIA.to_owned());
                tokio::spawn(async move {
                    engine.carry_out(refused).await;
                });
            }
            None => {
                self.last_command
                    .insert(unit.clone(), crate::clock::instant());
                let request = Request {
                    unit,
                    credential: Credential::Admin { member: None },
                    reader: None,
                    via: Some(VIA),
                };
                tokio::spawn(async move {
                    if let Err(e) = engine.handle(&request).await {
                        tracing::warn!(unit = %request.unit, error = ?e, "Home Assistant open not decided");
                    }
                });
            }
        }
    }

    fn lockdown_command(&mut self, message: &Message) {
        let payload = String::from_utf8_lossy(&message.payload);
        if payload.is_empty() {
            return;
        }
        let refusal = if message.retained {
            Some("a retained command is never carried out")
        } else if payload.trim() == "OFF" {
            Some("the lockdown is switched off only through the API or `portier lockdown off`")
        } else if payload.trim() != "ON" {
            Some("the lockdown switch takes ON")
        } else {
            None
        };
        if let Some(why) = refusal {
            tracing::warn!(payload = %payload.chars().take(32).collect::<String>(), why,
                "Home Assistant lockdown command refused");
            // Home Assistant shows the state again as it is.
            self.publish_lockdown();
            return;
        }
        if self.inputs.lockdown.borrow().on {
            self.publish_lockdown();
            return;
        }
        let switch = Arc::clone(&self.inputs.lockdown);
        tokio::spawn(async move {
            let reason = Some("switched on from Home Assistant".to_owned());
            if let Err(e) = switch.switch(true, reason, "Home Assistant").await {
                tracing::error!(error = %e, "Home Assistant could not switch the lockdown on");
            }
        });
    }

    fn publish_all(&mut self, latches: &BTreeMap<String, watch::Receiver<Latch>>) {
        self.publish_discovery();
        self.states.clear();
        self.publish_states(latches);
        self.publish_lockdown();
        self.publish_sync();
    }

    /// Publishes the discovery configs for the configuration in force and clears those it no
    /// longer has.
    fn publish_discovery(&mut self) {
        let configs = discovery::configs(&self.config, &self.inputs.configuration_url);
        for gone in self.discovery.keys().filter(|t| !configs.contains_key(*t)) {
            self.publish(gone, true, Vec::new());
        }
        for (topic, payload) in &configs {
            self.publish(topic, true, payload.clone());
        }
        if !configs.is_empty() {
            tracing::info!(
                configs = configs.len(),
                "Home Assistant discovery published"
            );
        }
        self.discovery = configs;
    }

    /// Publishes each unit's lock state and door state that changed since they were last
    /// published. A lock whose door is open is not reported locked: it is `UNLOCKED` until the
    /// door closes.
    fn publish_states(&mut self, latches: &BTreeMap<String, watch::Receiver<Latch>>) {
        if !self.inputs.link.is_up() {
            self.states.clear();
            return;
        }
        let doors = self.inputs.doors.borrow().clone();
        for (unit, door) in &doors {
            let Some(open) = door.status.open else {
                continue;
            };
            let state = if open { "OPEN" } else { "CLOSED" };
            let topic = format!("{}/door", self.config.site.unit_topic(unit));
            if self.states.get(&topic) != Some(&state) {
                self.publish(&topic, true, state.as_bytes().to_vec());
                self.states.insert(topic, state);
            }
        }
        let units: BTreeSet<(String, String)> = self
            .config
            .policy
            .units
            .iter()
            .filter_map(|u| Some((u.id.clone(), u.lock.clone()?)))
            .collect();
        for (unit, lock) in units {
            let latch = latches
                .get(&lock)
                .map_or(Latch::Locked, |latch| *latch.borrow());
            let door_open = doors
                .get(&unit)
                .is_some_and(|d| d.status.open == Some(true));
            let state = match payloads::latch_state(latch) {
                "LOCKED" if door_open => "UNLOCKED",
                state => state,
            };
            let topic = format!("{}/state", self.config.site.unit_topic(&unit));
            if self.states.get(&topic) != Some(&state) {
                self.publish(&topic, true, state.as_bytes().to_vec());
                self.states.insert(topic, state);
            }
        }
    }

    fn publish_lockdown(&self) {
        let state = self.inputs.lockdown.borrow().clone();
        self.publish(
            &format!("{}/lockdown", self.base()),
            true,
            payloads::lockdown(&state),
        );
    }

    fn publish_sync(&self) {
        let snapshot = self.inputs.snapshot.borrow().clone();
        if let Some(snapshot) = snapshot {
            self.publish(
                &format!("{}/sync", self.base()),
                true,
                payloads::sync(&snapshot),
            );
        }
    }

    fn publish_door_event(&self, notice: &crate::doors::DoorNotice) {
        if notice.event == crate::doors::DoorEvent::Opened {
            // Not an event others are told of: the door's state topic shows it.
            return;
        }
        self.publish(
            &self.config.site.events_topic(),
            false,
            payloads::door_event(notice),
        );
        if self.config.homeassistant.is_some() {
            self.publish(
                &format!("{}/event", self.config.site.unit_topic(&notice.unit)),
                false,
                payloads::door_unit_event(notice),
            );
        }
    }

    fn publish_event(&self, event: &EventRecord) {
        self.publish(
            &self.config.site.events_topic(),
            false,
            payloads::gateway_event(event),
        );
        if self.config.homeassistant.is_some() {
            self.publish(
                &format!("{}/event", self.config.site.unit_topic(&event.unit)),
                false,
                payloads::unit_event(event),
            );
        }
    }
}
