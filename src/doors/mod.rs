//! Door sensors: each unit's door contact (`[[sensor]]`, over MQTT or Modbus) judged against
//! what its lock did, for **forced open** and **held open** alarms (see [`watch`] for the
//! rules), with a request-to-exit input so that leaving is no alarm.
//!
//! One task ([`run`]) owns every door: it reads the sources' [`sources::Reading`]s and the
//! locks' latches, keeps each door's [`DoorStatus`] on a `watch` (health, metrics, the site's
//! topics) and sends each [`DoorNotice`] on a `broadcast` (the site publishes them). A reload
//! rewires every sensor. It never decides or actuates: a door sensor opens nothing.

pub(crate) mod sources;
pub(crate) mod watch;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{broadcast, mpsc};

use crate::config::{Config, ContactSource};
use crate::locks::{Latch, Locks};
use crate::mqtt::Topics;
use sources::{ContactInbox, ExitInbox, ModbusContact, Reading, Seen};
pub(crate) use watch::{DoorEvent, DoorStatus};

/// A door event, for those who publish or count it.
#[derive(Debug, Clone)]
pub(crate) struct DoorNotice {
    /// The unit whose door it is.
    pub unit: String,
    /// What happened.
    pub event: DoorEvent,
    /// When it was seen.
    pub time: DateTime<Utc>,
}

/// A door as health, metrics and the site see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DoorView {
    /// The contact and its alarms.
    pub status: DoorStatus,
    /// Why the contact cannot be read, while it cannot.
    pub problem: Option<String>,
}

/// Every door with a sensor, by unit.
pub(crate) type Doors = BTreeMap<String, DoorView>;

/// What the task works from.
pub(crate) struct Inputs {
    /// The configuration in force (`[[sensor]]`, the units' locks).
    pub config: tokio::sync::watch::Receiver<Arc<Config>>,
    /// The locks, for their latches.
    pub locks: Arc<Locks>,
    /// Subscriptions for MQTT contacts (none without `[mqtt]`).
    pub topics: Option<Topics>,
    /// Where door events go.
    pub notices: broadcast::Sender<DoorNotice>,
    /// Where the doors' states go.
    pub doors: tokio::sync::watch::Sender<Doors>,
}

/// The sensors of one configuration, wired.
struct Wired {
    doors: HashMap<String, (watch::Door, Option<String>)>,
    /// Unit → its lock's id.
    locks: HashMap<String, String>,
    topics: Vec<String>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Wired {
    fn new(config: &Config, inputs: &Inputs, tx: &mpsc::Sender<Reading>) -> Wired {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut wired = Wired {
            doors: HashMap::new(),
            locks: unit_locks(config),
            topics: Vec::new(),
            stop,
        };
        for sensor in &config.sensors {
            wired.doors.insert(
                sensor.unit.clone(),
                (watch::Door::new(sensor.held_open_after), None),
            );
            match &sensor.contact {
                ContactSource::Mqtt {
                    topic,
                    payload,
                    rex_topic,
                } => {
                    let Some(topics) = &inputs.topics else {
                        continue;
                    };
                    topics.add(
                        topic,
                        Arc::new(ContactInbox {
                            unit: sensor.unit.clone(),
                            payload: payload.clone(),
                            tx: tx.clone(),
                        }),
                    );
                    wired.topics.push(topic.clone());
                    if let Some(rex) = rex_topic {
                        topics.add(
                            rex,
                            Arc::new(ExitInbox {
                                unit: sensor.unit.clone(),
                                tx: tx.clone(),
                            }),
                        );
                        wired.topics.push(rex.clone());
                    }
                }
                ContactSource::Modbus {
                    address,
                    slave,
                    input,
                    open_when,
                    poll,
                    rex_input,
                } => {
                    let contact = ModbusContact {
                        unit: sensor.unit.clone(),
                        address: address.clone(),
                        slave: *slave,
                        input: *input,
                        open_when: *open_when,
                        poll: *poll,
                        rex_input: *rex_input,
                    };
                    tokio::spawn(contact.run(tx.clone(), stopped.clone()));
                }
            }
        }
        wired
    }

    fn unwire(&self, topics: Option<&Topics>) {
        let _ = self.stop.send(true);
        if let Some(topics) = topics {
            for topic in &self.topics {
                topics.remove(topic);
            }
        }
    }

    fn view(&self) -> Doors {
        self.doors
            .iter()
            .map(|(unit, (door, problem))| {
                (
                    unit.clone(),
                    DoorView {
                        status: door.status(),
                        problem: problem.clone(),
                    },
                )
            })
            .collect()
    }

    /// The latches of the doors' locks, by unit.
    fn latches(&self, locks: &Locks) -> BTreeMap<String, tokio::sync::watch::Receiver<Latch>> {
        let all = locks.latches();
        self.locks
            .iter()
            .filter_map(|(unit, lock)| Some((unit.clone(), all.get(lock)?.clone())))
            .collect()
    }
}

/// Runs until `shutdown` turns true.
pub(crate) async fn run(inputs: Inputs, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let (tx, mut readings) = mpsc::channel(64);
    let mut config = inputs.config.clone();
    let mut lock_changes = inputs.locks.changes();
    let first = Arc::clone(&config.borrow_and_update());
    let mut sensors = first.sensors.clone();
    let mut wired = Wired::new(&first, &inputs, &tx);
    let mut latches = wired.latches(&inputs.locks);
    sync_latches(&mut wired, &latches);
    inputs.doors.send_replace(wired.view());
    loop {
        let due = wired.doors.values().filter_map(|(d, _)| d.due()).min();
        tokio::select! {
            _ = shutdown.changed() => {
                wired.unwire(inputs.topics.as_ref());
                return;
            }
            Ok(()) = config.changed() => {
                let new = Arc::clone(&config.borrow_and_update());
                // Rewired only when the sensors changed: a door's alarm outlives other reloads.
                if new.sensors != sensors {
                    wired.unwire(inputs.topics.as_ref());
                    wired = Wired::new(&new, &inputs, &tx);
                    sensors.clone_from(&new.sensors);
                } else {
                    wired.locks = unit_locks(&new);
                }
                latches = wired.latches(&inputs.locks);
                sync_latches(&mut wired, &latches);
            }
            Ok(()) = lock_changes.changed() => {
                latches = wired.latches(&inputs.locks);
                sync_latches(&mut wired, &latches);
            }
            Some(reading) = readings.recv() => {
                let now = crate::clock::instant();
                if let Some((door, problem)) = wired.doors.get_mut(&reading.unit) {
                    match reading.seen {
                        Seen::Contact(open) => {
                            if let Some(event) = door.contact(open, now) {
                                send(&inputs, &reading.unit, event);
                            }
                        }
                        Seen::Exit => door.exit_requested(now),
                        Seen::Problem(why) => *problem = why,
                    }
                }
            }
            unit = crate::locks::next_latch_change(&mut latches) => {
                match unit {
                    Some(unit) => {
                        let open = latches.get(&unit).is_some_and(|l| *l.borrow() == Latch::Open);
                        if let Some((door, _)) = wired.doors.get_mut(&unit) {
                            door.lock(open, crate::clock::instant());
                        }
                    }
                    None => {
                        latches = wired.latches(&inputs.locks);
                        latches.retain(|_, l| l.has_changed().is_ok());
                    }
                }
            }
            () = sleep_until(due) => {
                let now = crate::clock::instant();
                for (unit, (door, _)) in &mut wired.doors {
                    if let Some(event) = door.tick(now) {
                        send(&inputs, unit, event);
                    }
                }
            }
        }
        inputs.doors.send_if_modified(|doors| {
            let view = wired.view();
            let changed = *doors != view;
            *doors = view;
            changed
        });
    }
}

/// Each sensor's unit → its lock's id.
fn unit_locks(config: &Config) -> HashMap<String, String> {
    config
        .sensors
        .iter()
        .filter_map(|sensor| {
            let unit = config.policy.units.iter().find(|u| u.id == sensor.unit)?;
            Some((sensor.unit.clone(), unit.lock.clone()?))
        })
        .collect()
}

/// Tells every door whether its lock is open now.
fn sync_latches(
    wired: &mut Wired,
    latches: &BTreeMap<String, tokio::sync::watch::Receiver<Latch>>,
) {
    let now = crate::clock::instant();
    for (unit, (door, _)) in &mut wired.doors {
        let open = latches
            .get(unit)
            .is_some_and(|latch| *latch.borrow() == Latch::Open);
        door.lock(open, now);
    }
}

fn send(inputs: &Inputs, unit: &str, event: DoorEvent) {
    match event {
        DoorEvent::ForcedOpen | DoorEvent::HeldOpen => {
            tracing::warn!(%unit, event = event.as_str(), "door alarm");
        }
        DoorEvent::Flapping => {
            tracing::warn!(%unit, "door contact flapping: its alarms are held until it is quiet for 30 s");
        }
        DoorEvent::Closed | DoorEvent::Opened => {
            tracing::info!(%unit, event = event.as_str(), "door");
        }
    }
    let _ = inputs.notices.send(DoorNotice {
        unit: unit.to_owned(),
        event,
        time: crate::clock::now(),
    });
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
