//! The check-in worker against the fake Cobot (a real HTTP server on 127.0.0.1) and a real sled
//! store in a temporary directory.

// Test helpers outside `#[test]` fns may fail loudly too (clippy only exempts the fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use portier::clock;
use portier::cobot::CobotClient;
use portier::outbox::{self, Settings};
use portier::store::{CheckInStatus, CredentialKind, EventRecord, NewEvent, Store};
use portier_fake_cobot::Fixture;
use portier_fake_cobot::{FakeCobot, Fault};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Berlin;
const POST_M1: &str = "POST /api/memberships/m1/work_sessions";
const GET_M1: &str = "GET /api/memberships/m1/check_ins";

fn today() -> NaiveDate {
    clock::now().with_timezone(&TZ).date_naive()
}

async fn fake() -> FakeCobot {
    let fake = FakeCobot::start(Fixture::empty()).await.unwrap();
    fake.set_memberships(json!([{ "id": "m1" }, { "id": "m2" }, { "id": "m3" }]));
    fake.set_now(clock::now());
    fake
}

fn entry(member: &str) -> NewEvent {
    NewEvent {
        time: clock::now(),
        unit: "front_door".into(),
        member: Some(member.into()),
        credential_kind: CredentialKind::App,
        granted: true,
        reason: "granted".into(),
        decision_id: format!("d-{member}"),
        reader: None,
        opened: true,
        lock_error: None,
        via: None,
        check_in_day: Some(today()),
    }
}

/// Short backoffs, so retries happen within a test.
fn fast_settings() -> Settings {
    Settings {
        tz: TZ,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(200),
    }
}

/// A running worker; stopping it waits for it to return.
struct Worker {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Worker {
    fn start(store: &Arc<Store>, fake: &FakeCobot, timeout: Duration) -> Worker {
        let url = fake.url();
        let client = move || {
            CobotClient::new(url.clone(), url.clone(), "admin-token".into(), timeout)
                .map_err(|e| e.to_string())
        };
        let settings = fast_settings();
        let wake = Arc::new(Notify::new());
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(outbox::run_with(
            settings,
            store.clone(),
            client,
            wake.clone(),
            shutdown,
            clock::now,
        ));
        Worker { wake, stop, task }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("the worker stops promptly")
            .unwrap();
    }
}

fn open(dir: &tempfile::TempDir) -> Arc<Store> {
    Arc::new(Store::open(dir.path()).unwrap())
}

async fn append(store: &Store, worker: Option<&Worker>, member: &str) -> EventRecord {
    let record = store.append_event(entry(member)).await.unwrap();
    if let Some(w) = worker {
        w.wake.notify_one();
    }
    record
}

fn event(store: &Store, seq: u64) -> EventRecord {
    store.events_after(seq - 1, 1).unwrap().remove(0)
}

/// Polls `done` until it holds (at most 10 s).
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = clock::instant() + Duration::from_secs(10);
    while !done() {
        assert!(clock::instant() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn count(fake: &FakeCobot, prefix: &str) -> usize {
    fake.request_lines()
        .iter()
        .filter(|l| l.starts_with(prefix))
        .count()
}

fn sent(store: &Store, seq: u64) -> bool {
    event(store, seq).check_in == Some(CheckInStatus::Sent)
}

#[tokio::test]
async fn a_granted_entry_reaches_cobot_once_and_its_event_says_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, store) = (fake().await, open(&dir));
    let worker = Worker::start(&store, &fake, Duration::from_secs(2));
    let first = append(&store, Some(&worker), "m1").await;
    append(&store, Some(&worker), "m1").await;
    eventually("the check-in is sent", || sent(&store, first.seq)).await;
    worker.stop().await;
    assert_eq!(fake.check_ins().len(), 1);
    assert_eq!(count(&fake, POST_M1), 1);
    assert_eq!(
        count(&fake, GET_M1),
        0,
        "a certain first try does not ask first"
    );
    assert_eq!(store.outbox_depth().unwrap(), 0);
}

#[tokio::test]
async fn cobot_answering_500_is_retried_and_the_check_in_arrives_once_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, store) = (fake().await, open(&dir));
    fake.set_fault("/api/memberships/m1/work_sessions", Fault::Status(500));
    let worker = Worker::start(&store, &fake, Duration::from_secs(2));
    let first = append(&store, Some(&worker), "m1").await;
    eventually("three failed tries", || count(&fake, POST_M1) >= 3).await;
    assert_eq!(
        event(&store, first.seq).check_in,
        Some(CheckInStatus::Pending)
    );
    let task = store.pending_check_ins().unwrap().remove(0);
    assert!(task.attempts >= 2 && !task.uncertain, "{task:?}");
    fake.clear_faults();
    eventually("the check-in is sent", || sent(&store, first.seq)).await;
    worker.stop().await;
    assert_eq!(fake.check_ins().len(), 1);
}

#[tokio::test]
async fn a_post_that_times_out_after_cobot_made_the_check_in_is_not_posted_again() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, store) = (fake().await, open(&dir));
    let slow = Fault::AnswerLate(Duration::from_secs(3));
    fake.set_fault_times("/api/memberships/m1/work_sessions", slow, 1);
    let worker = Worker::start(&store, &fake, Duration::from_millis(300));
    let first = append(&store, Some(&worker), "m1").await;
    eventually("the check-in is settled", || sent(&store, first.seq)).await;
    worker.stop().await;
    let lines = fake.request_lines();
    let posts: Vec<_> = lines.iter().filter(|l| l.starts_with(POST_M1)).collect();
    assert_eq!(posts.len(), 1, "{lines:?}");
    let asked_after_post = lines
        .iter()
        .skip_while(|l| !l.starts_with(POST_M1))
        .any(|l| l.starts_with(GET_M1));
    assert!(asked_after_post, "{lines:?}");
    assert_eq!(fake.check_ins().len(), 1);
}

#[tokio::test]
async fn an_unreachable_cobot_is_retried_and_the_check_in_arrives_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, store) = (fake().await, open(&dir));
    // A port nobody listens on: connection refused, as when the uplink is down.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = url::Url::parse(&format!("http://{}/", dead.local_addr().unwrap())).unwrap();
    drop(dead);
    let target = Arc::new(std::sync::Mutex::new(dead_url));
    let worker = {
        let target = target.clone();
        let client = move || {
            let url = target.lock().unwrap().clone();
            CobotClient::new(
                url.clone(),
                url,
                "admin-token".into(),
                Duration::from_secs(2),
            )
            .map_err(|e| e.to_string())
        };
        let (stop, shutdown) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(outbox::run_with(
            fast_settings(),
            store.clone(),
            client,
            wake.clone(),
            shutdown,
            clock::now,
        ));
        Worker { wake, stop, task }
    };
    let first = append(&store, Some(&worker), "m1").await;
    eventually("two failed tries", || {
        store.pending_check_ins().unwrap()[0].attempts >= 2
    })
    .await;
    assert!(store.pending_check_ins().unwrap()[0].uncertain);
    *target.lock().unwrap() = fake.url();
    eventually("the check-in is sent", || sent(&store, first.seq)).await;
    worker.stop().await;
    let lines = fake.request_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with(GET_M1) && lines[1].starts_with(POST_M1),
        "{lines:?}"
    );
    assert_eq!(fake.check_ins().len(), 1);
}

#[tokio::test]
async fn a_final_422_is_recorded_in_the_event_and_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, store) = (fake().await, open(&dir));
    fake.set_fault("/api/memberships/m1/work_sessions", Fault::Status(422));
    let worker = Worker::start(&store, &fake, Duration::from_secs(2));
    let first = append(&store, Some(&worker), "m1").await;
    eventually("the refusal is recorded", || {
        matches!(
            event(&store, first.seq).check_in,
            Some(CheckInStatus::Refused { .. })
        )
    })
    .await;
    worker.stop().await;
    let Some(CheckInStatus::Refused { reason }) = event(&store, first.seq).check_in else {
        panic!("not refused");
    };
    assert!(
        reason.contains("422") && reason.contains("injected fault"),
        "{reason}"
    );
    assert_eq!(count(&fake, POST_M1), 1);
    assert_eq!(store.outbox_depth().unwrap(), 0);
    let again = store.append_event(entry("m1")).await.unwrap();
    assert_eq!(
        again.check_in, None,
        "one check-in per member and day, refused or not"
    );
}

#[tokio::test]
async fn a_429_waits_for_retry_after_before_trying_again() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, store) = (fake().await, open(&dir));
    let limited = Fault::RateLimited {
        retry_after_secs: 1,
    };
    fake.set_fault_times("/api/memberships/m1/work_sessions", limited, 1);
    let worker = Worker::start(&store, &fake, Duration::from_secs(2));
    let started = clock::instant();
    let first = append(&store, Some(&worker), "m1").await;
    eventually("the check-in is sent", || sent(&store, first.seq)).await;
    let took = started.elapsed();
    worker.stop().await;
    assert!(took >= Duration::from_millis(950), "retried after {took:?}");
    assert_eq!(count(&fake, POST_M1), 2);
    assert_eq!(fake.check_ins().len(), 1);
}

#[tokio::test]
async fn check_ins_recorded_while_offline_are_sent_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake().await;
    let seqs = {
        let store = open(&dir);
        let mut seqs = Vec::new();
        for member in ["m1", "m2", "m3", "m2"] {
            seqs.push(append(&store, None, member).await.seq);
        }
        seqs
    };
    let store = open(&dir);
    assert_eq!(store.outbox_depth().unwrap(), 3);
    let worker = Worker::start(&store, &fake, Duration::from_secs(2));
    eventually("all are sent", || store.outbox_depth().unwrap() == 0).await;
    worker.stop().await;
    let mut members: Vec<_> = fake
        .check_ins()
        .into_iter()
        .map(|c| c.membership_id)
        .collect();
    members.sort();
    assert_eq!(members, vec!["m1", "m2", "m3"]);
    for seq in &seqs[..3] {
        assert_eq!(event(&store, *seq).check_in, Some(CheckInStatus::Sent));
    }
    assert_eq!(event(&store, seqs[3]).check_in, None);
}

#[tokio::test]
async fn a_crash_during_the_post_makes_the_restarted_worker_ask_before_posting() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake().await;
    let seq = {
        let store = open(&dir);
        let record = append(&store, None, "m1").await;
        let task = store.pending_check_ins().unwrap().remove(0);
        store.check_in_sending(&task).await.unwrap();
        // The POST reached Cobot; then the process died before the answer was recorded.
        let client = CobotClient::new(
            fake.url(),
            fake.url(),
            "admin-token".into(),
            Duration::from_secs(2),
        )
        .unwrap();
        client.check_in("m1").await.unwrap();
        record.seq
    };
    fake.clear_requests();
    let store = open(&dir);
    let worker = Worker::start(&store, &fake, Duration::from_secs(2));
    eventually("the check-in is settled", || sent(&store, seq)).await;
    worker.stop().await;
    assert_eq!(count(&fake, POST_M1), 0, "{:?}", fake.request_lines());
    assert_eq!(count(&fake, GET_M1), 1);
    assert_eq!(fake.check_ins().len(), 1);
}

#[tokio::test]
async fn without_a_cobot_client_nothing_is_sent_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let settings = Settings {
        tz: TZ,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(50),
    };
    let (stop, shutdown) = watch::channel(false);
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let client = move || -> Result<CobotClient, String> {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err("no Cobot token: run portier cobot connect".into())
    };
    let wake = Arc::new(Notify::new());
    let task = tokio::spawn(outbox::run_with(
        settings,
        store.clone(),
        client,
        wake.clone(),
        shutdown,
        clock::now,
    ));
    append(&store, None, "m1").await;
    wake.notify_one();
    eventually("the worker asked twice", || {
        asked.load(std::sync::atomic::Ordering::SeqCst) >= 2
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(store.outbox_depth().unwrap(), 1);
    assert_eq!(store.pending_check_ins().unwrap()[0].attempts, 0);
}

#[tokio::test]
async fn the_worker_stops_promptly_even_while_waiting_for_cobot() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, store) = (fake().await, open(&dir));
    fake.set_fault(
        "/api/memberships/m1/work_sessions",
        Fault::Delay(Duration::from_secs(30)),
    );
    let worker = Worker::start(&store, &fake, Duration::from_secs(30));
    append(&store, Some(&worker), "m1").await;
    eventually("the POST is in flight", || count(&fake, POST_M1) == 1).await;
    worker.stop().await;
    let task = store.pending_check_ins().unwrap().remove(0);
    assert!(
        task.uncertain,
        "an interrupted POST must be settled by asking first"
    );
}

#[tokio::test]
async fn an_absurd_retry_after_is_ignored_and_the_check_in_arrives_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (fake, store) = (fake().await, open(&dir));
    let absurd = [
        "18446744073709551615",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "99999999999",
        "-1",
        "soon",
    ];
    let faults = absurd.iter().map(|r| Fault::RateLimitedRaw {
        retry_after: (*r).into(),
    });
    fake.queue_faults("/api/memberships/m1/work_sessions", faults);
    let worker = Worker::start(&store, &fake, Duration::from_secs(2));
    let first = append(&store, Some(&worker), "m1").await;
    eventually("the check-in is sent", || sent(&store, first.seq)).await;
    // `stop` fails the test if the worker panicked on the way.
    worker.stop().await;
    assert_eq!(count(&fake, POST_M1), absurd.len() + 1);
    assert_eq!(fake.check_ins().len(), 1);
}
