//! The engine on real parts: the demo site's configuration, log-only locks and a sled store in
//! a temporary directory.

use std::sync::Mutex;

use chrono::{Datelike, Timelike};

use super::*;
use crate::access::Credential;
use crate::locks::FakeBle;

/// Counts what the engine reports.
#[derive(Default)]
struct Counted {
    decided: Mutex<Vec<(bool, bool)>>,
}

impl AccessMetrics for Counted {
    fn decided(&self, granted: bool, seconds: Option<f64>) {
        self.decided
            .lock()
            .unwrap()
            .push((granted, seconds.is_some()));
    }
    fn stage(&self, _: &'static str, _: f64) {}
    fn actuated(&self, _: f64) {}
    fn lock_failed(&self, _: &str) {}
}

struct Rig {
    _dir: tempfile::TempDir,
    engine: Engine,
    snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    config: Arc<Config>,
    locks: Arc<Locks>,
    store: Arc<Store>,
    metrics: Arc<Counted>,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let text = crate::demo::DEMO_CONFIG.replace("{api}", "http://127.0.0.1:9");
    let config = Arc::new(Config::parse(&text, &dir.path().join("portier.toml"), None).unwrap());
    let locks = Arc::new(Locks::new(&config.locks, None, Arc::new(FakeBle::new())).unwrap());
    let store = Arc::new(Store::open(&dir.path().join("state")).unwrap());
    let (snapshot, snapshot_rx) = watch::channel(None);
    let metrics = Arc::new(Counted::default());
    let engine = Engine::new(Inputs {
        snapshot: snapshot_rx,
        config: watch::channel(Arc::clone(&config)).1,
        store: Arc::clone(&store),
        locks: Arc::clone(&locks),
        clock: Arc::new(EventClock::new(None)),
        metrics: Arc::clone(&metrics) as Arc<dyn AccessMetrics>,
        outbox: Arc::new(Notify::new()),
        lockdown: watch::channel(crate::store::Lockdown::default()).1,
        feed: tokio::sync::broadcast::channel(16).0,
    });
    Rig {
        _dir: dir,
        engine,
        snapshot,
        config,
        locks,
        store,
        metrics,
    }
}

fn request(unit: &str, credential: Credential) -> Request {
    Request {
        unit: unit.into(),
        credential,
        reader: None,
        via: None,
    }
}

#[tokio::test]
async fn before_the_first_sync_a_card_is_refused_but_staff_open_and_both_are_recorded() {
    let rig = rig();
    let card = request("front_door", Credential::Card("04A1B2C3".into()));
    let refused = rig.engine.handle(&card).await.unwrap();
    assert!(!refused.event.granted);
    assert!(
        refused.event.reason.contains("no snapshot yet"),
        "{}",
        refused.event.reason
    );
    assert!(matches!(refused.lock, AtTheLock::NotGranted));

    let staff = request("front_door", Credential::Admin { member: None });
    let opened = rig.engine.handle(&staff).await.unwrap();
    assert!(
        opened.event.granted && opened.event.opened,
        "{:?}",
        opened.event
    );
    assert!(matches!(opened.lock, AtTheLock::Done(_)));
    assert_eq!(rig.locks.log_lock("front_lock").unwrap().unlocks(), 1);

    // The record the answers render is the record the store keeps.
    let events = rig.store.events_after(0, 10).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(refused.stored.as_ref().ok(), Some(&events[0].seq));
    assert_eq!(events[1].decision_id, opened.event.decision_id);
    assert_eq!(events[1].credential_kind, CredentialKind::Admin);
    assert!(events[1].opened);
    assert_eq!(
        *rig.metrics.decided.lock().unwrap(),
        vec![(false, false), (true, true)]
    );
}

#[tokio::test]
async fn with_a_snapshot_unknown_and_malformed_cards_open_nothing_and_unknown_units_are_not_decided()
 {
    let rig = rig();
    let empty = domain::compile(
        &domain::model::CobotData::default(),
        &rig.config.policy,
        1,
        crate::clock::now(),
    );
    rig.snapshot.send_replace(Some(Arc::new(empty)));

    let unknown = request("front_door", Credential::Card("04A1B2C3".into()));
    let outcome = rig.engine.handle(&unknown).await.unwrap();
    assert!(!outcome.event.granted && !outcome.event.opened);
    assert_eq!(outcome.event.credential_kind, CredentialKind::Card);

    let malformed = request("front_door", Credential::Card("04-A1!".into()));
    let outcome = rig.engine.handle(&malformed).await.unwrap();
    assert!(
        outcome.event.reason.starts_with("malformed card id"),
        "{}",
        outcome.event.reason
    );
    assert_eq!(rig.locks.log_lock("front_lock").unwrap().unlocks(), 0);

    let nowhere = request("attic", Credential::App("user_1".into()));
    assert_eq!(
        rig.engine.handle(&nowhere).await.unwrap_err(),
        NotDecided::UnknownUnit("attic".into())
    );
    let nobody = request(
        "front_door",
        Credential::Admin {
            member: Some("nobody@example.org".into()),
        },
    );
    assert_eq!(
        rig.engine.handle(&nobody).await.unwrap_err(),
        NotDecided::UnknownMember("nobody@example.org".into())
    );
    assert_eq!(rig.store.events_after(0, 10).unwrap().len(), 2);
}

#[tokio::test]
async fn a_decision_is_carried_out_once_and_its_permit_is_used_up() {
    let rig = rig();
    let staff = request("office", Credential::Admin { member: None });
    let decided = rig.engine.decide(&staff).unwrap();
    assert!(decided.event.granted);
    let outcome = rig.engine.carry_out(decided).await;
    assert!(outcome.event.opened);
    // `carry_out` took the decision by value: the same permit cannot open the door again.
    assert_eq!(rig.locks.log_lock("office_lock").unwrap().unlocks(), 1);
    rig.engine.self_check();
}

#[test]
fn the_next_grant_is_the_first_moment_a_schedule_lets_the_member_in() {
    use crate::domain::testkit;
    let rig = rig();
    let data = testkit::data(vec![testkit::member("m_drop", Some("p_drop"))]);
    let now = crate::clock::now();
    let snapshot = domain::compile(&data, &testkit::policy(), 1, now);
    rig.snapshot.send_replace(Some(Arc::new(snapshot)));
    let step = std::time::Duration::from_secs(15 * 60);
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    // Drop In: the front door Mon-Fri 08:00-18:00 (Berlin).
    let next = rig
        .engine
        .next_grant("front_door", "user_m_drop", week, step)
        .expect("within a week");
    let local = next.with_timezone(&testkit::TZ);
    assert!(
        next > now && next - now <= chrono::Duration::minutes(15) + chrono::Duration::days(4),
        "{local}"
    );
    assert!(local.weekday().num_days_from_monday() < 5, "{local}");
    assert!((8..18).contains(&local.hour()), "{local}");
    assert_eq!(local.minute() % 15, 0, "{local}");
    assert_eq!(local.second(), 0);
    // Nothing of hers opens the office (staff only), nor any door for a stranger.
    assert_eq!(
        rig.engine.next_grant("office", "user_m_drop", week, step),
        None
    );
    assert_eq!(
        rig.engine.next_grant("front_door", "nobody", week, step),
        None
    );
}

#[tokio::test]
async fn a_lock_commands_event_waits_its_delay_and_what_is_decided_meanwhile_stays_behind_it() {
    let rig = rig();
    let started = crate::clock::instant();
    let staff = rig
        .engine
        .decide(&request("front_door", Credential::Admin { member: None }))
        .unwrap();
    // Before the first sync a card is refused: an event with no lock command, no wait.
    let card = rig
        .engine
        .decide(&request("front_door", Credential::Card("04A1B2C3".into())))
        .unwrap();
    let front_lock = rig.locks.log_lock("front_lock").unwrap();
    let (opened, refused) = tokio::join!(rig.engine.carry_out(staff), async {
        // Handed over once the grant's command is out and its event waits.
        while front_lock.unlocks() == 0 {
            tokio::task::yield_now().await;
        }
        rig.engine.carry_out(card).await
    });
    assert!(started.elapsed() >= COMMIT_DELAY);
    assert!(opened.event.opened, "{:?}", opened.event);
    assert!(!refused.event.granted, "{:?}", refused.event);
    assert_eq!(opened.stored.as_ref().ok(), Some(&1));
    assert_eq!(refused.stored.as_ref().ok(), Some(&2));
    let events = rig.store.events_after(0, 10).unwrap();
    assert_eq!(events[0].decision_id, opened.event.decision_id);
    assert_eq!(events[1].decision_id, refused.event.decision_id);
}
