//! What the reader kinds' tests share: the demo site with one member, a real engine over a
//! sled store on disk and log-only locks, and the reader loop serving readers on it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};

use super::enrol::Enrolment;
use super::{ReaderStatus, Readers, SelfChecks, Table, Transports};
use crate::access::{AccessMetrics, Engine, EventClock, Inputs};
use crate::config::{Config, ReaderConfig};
use crate::locks::Locks;
use crate::store::{EventRecord, Store};

/// A site to swipe cards at.
pub(crate) struct Site {
    _dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub locks: Arc<Locks>,
    pub engine: Arc<Engine>,
}

/// Metrics nobody reads.
struct Quiet;

impl AccessMetrics for Quiet {
    fn decided(&self, _: bool, _: Option<f64>) {}
    fn stage(&self, _: &'static str, _: f64) {}
    fn actuated(&self, _: f64) {}
    fn lock_failed(&self, _: &str) {}
}

/// Transports that open nothing: no device is plugged in, no broker is configured.
struct Nothing;

impl super::hid::Keyboards for Nothing {
    fn open(
        &self,
        _: &crate::config::HidDevice,
    ) -> std::io::Result<Box<dyn super::hid::device::KeySource>> {
        Err(std::io::ErrorKind::NotFound.into())
    }
}

impl super::wiegand::Gpio for Nothing {
    fn open(
        &self,
        _: &crate::config::WiegandWiring,
    ) -> std::io::Result<Box<dyn super::wiegand::gpio::EdgeSource>> {
        Err(std::io::ErrorKind::NotFound.into())
    }
}

impl Site {
    /// The demo site: Ada (card 04A1B2C3) may open the front door, whose lock logs.
    pub(crate) fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let (config, snapshot) = demo_site(dir.path());
        let locks = Arc::new(
            Locks::new(&config.locks, None, Arc::new(crate::locks::FakeBle::new())).unwrap(),
        );
        let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
        let engine = Arc::new(Engine::new(Inputs {
            snapshot: watch::channel(Some(Arc::new(snapshot))).1,
            config: watch::channel(Arc::clone(&config)).1,
            store: Arc::clone(&store),
            locks: Arc::clone(&locks),
            clock: Arc::new(EventClock::new(None)),
            metrics: Arc::new(Quiet),
            outbox: Arc::new(Notify::new()),
            lockdown: watch::channel(crate::store::Lockdown::default()).1,
            feed: tokio::sync::broadcast::channel(16).0,
        }));
        Site {
            _dir: dir,
            store,
            locks,
            engine,
        }
    }

    /// Transports where nothing opens; a test replaces the one it plays.
    pub(crate) fn transports(&self) -> Transports<'static> {
        Transports {
            mqtt: None,
            keyboards: Arc::new(Nothing),
            gpio: Arc::new(Nothing),
        }
    }

    /// Puts `readers` in service on `transports`, with the reader loop running.
    pub(crate) fn serve(&self, readers: &[ReaderConfig], transports: Transports<'_>) -> Serving {
        let (frames_tx, frames) = mpsc::channel(8);
        let (table_tx, table) = watch::channel(Arc::default());
        let readers = Readers::new(readers, transports, frames_tx, table_tx);
        let enrolment = Enrolment::default();
        let (checks, _probes) = SelfChecks::new();
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(super::run(
            table.clone(),
            frames,
            Arc::clone(&self.engine),
            enrolment.clone(),
            checks,
            stopped,
        ));
        Serving {
            readers,
            table,
            enrolment,
            stop,
            running,
        }
    }

    /// The first `n` events, once there are that many (at most 10 s).
    pub(crate) async fn events(&self, n: usize) -> Vec<EventRecord> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.store.events_after(0, 100).unwrap();
            if events.len() >= n {
                return events;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} events in time, got {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A Wiegand reader on GPIO17/GPIO27 with the default gap and PIN timeout.
pub(crate) fn wiegand_wiring(
    format: crate::config::WiegandFormat,
    credential: crate::config::WiegandCredential,
) -> crate::config::WiegandWiring {
    crate::config::WiegandWiring {
        d0: "GPIO17".into(),
        d1: "GPIO27".into(),
        chip: None,
        format,
        credential,
        frame_gap: Duration::from_millis(25),
        pin_timeout: Duration::from_secs(10),
    }
}

/// Readers in service with the loop running.
pub(crate) struct Serving {
    pub readers: Readers,
    pub table: watch::Receiver<Arc<Table>>,
    pub enrolment: Enrolment,
    stop: watch::Sender<bool>,
    running: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Reader `id`'s status.
    pub(crate) fn status(&self, id: &str) -> ReaderStatus {
        super::statuses(&self.table.borrow())[id].clone()
    }

    /// Shuts the loop down and waits for it.
    pub(crate) async fn stop(self) {
        self.stop.send_replace(true);
        self.running.await.unwrap();
    }
}

/// The demo site with one member, Ada, whose card is 04A1B2C3.
fn demo_site(dir: &std::path::Path) -> (Arc<Config>, crate::domain::Snapshot) {
    use crate::domain::model::{
        CheckInToken, CobotData, CobotMembership, CobotPlan, MembershipPlan,
    };
    let text = crate::demo::DEMO_CONFIG.replace("{api}", "http://127.0.0.1:9");
    let config = Arc::new(Config::parse(&text, &dir.join("portier.toml"), None).unwrap());
    let data = CobotData {
        plans: vec![CobotPlan {
            id: "p_full".into(),
            name: "Full Time".into(),
            hidden: false,
        }],
        memberships: vec![CobotMembership {
            id: "m_ada".into(),
            name: "Ada Lovelace".into(),
            email: None,
            user_id: Some("u_ada".into()),
            plan: Some(MembershipPlan {
                name: Some("Full Time".into()),
                parent_plan_id: Some("p_full".into()),
                canceled_to: None,
            }),
            upcoming_plan: None,
            confirmed_at: Some(crate::clock::now() - chrono::Duration::days(30)),
            starts_at: None,
            canceled_to: None,
            custom_fields: Vec::new(),
        }],
        check_in_tokens: vec![CheckInToken {
            token: "04A1B2C3".into(),
            membership_id: "m_ada".into(),
        }],
        ..CobotData::default()
    };
    let snapshot = crate::domain::compile(&data, &config.policy, 1, crate::clock::now());
    (config, snapshot)
}
