use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::store::Store;

pub(crate) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
}

pub(crate) fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 9, d).unwrap()
}

/// A granted card entry of `member`, asking for a check-in on `check_in_day`.
pub(crate) fn entry(
    member: &str,
    check_in_day: Option<NaiveDate>,
    time: DateTime<Utc>,
) -> NewEvent {
    NewEvent {
        time,
        unit: "front_door".into(),
        member: Some(member.into()),
        credential_kind: CredentialKind::Card,
        granted: true,
        reason: "member m1 holds full_time".into(),
        decision_id: format!("d-{member}-{}", time.timestamp()),
        reader: Some("front_reader".into()),
        opened: true,
        lock_error: None,
        via: None,
        check_in_day,
    }
}

fn seqs(events: &[EventRecord]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn seq_starts_at_one_and_continues_without_gaps_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store
                .append_event(entry("m1", None, at(0)))
                .await
                .unwrap()
                .seq,
            1
        );
        assert_eq!(
            store
                .append_event(entry("m1", None, at(1)))
                .await
                .unwrap()
                .seq,
            2
        );
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store
            .append_event(entry("m1", None, at(2)))
            .await
            .unwrap()
            .seq,
        3
    );
    assert_eq!(seqs(&store.events_after(0, 100).unwrap()), vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_appends_get_the_seqs_one_to_fifty() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append_event(entry("m1", None, at(i))).await })
        })
        .collect();
    let mut returned = HashSet::new();
    for task in tasks {
        returned.insert(task.await.unwrap().unwrap().seq);
    }
    assert_eq!(returned, (1..=50).collect::<HashSet<u64>>());
    assert_eq!(
        seqs(&store.events_after(0, 1000).unwrap()),
        (1..=50).collect::<Vec<u64>>()
    );
}

#[tokio::test]
async fn events_after_is_exclusive_in_order_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for i in 0..10 {
        store.append_event(entry("m1", None, at(i))).await.unwrap();
    }
    assert_eq!(seqs(&store.events_after(3, 4).unwrap()), vec![4, 5, 6, 7]);
    assert_eq!(seqs(&store.events_after(8, 100).unwrap()), vec![9, 10]);
    assert!(store.events_after(10, 100).unwrap().is_empty());
    assert!(store.events_after(u64::MAX, 100).unwrap().is_empty());
    assert!(store.events_after(0, 0).unwrap().is_empty());
}

#[tokio::test]
async fn an_event_is_read_back_exactly_as_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let returned = store
        .append_event(entry("m1", Some(day(1)), at(0)))
        .await
        .unwrap();
    assert_eq!(returned.check_in, Some(CheckInStatus::Pending));
    assert_eq!(store.events_after(0, 1).unwrap(), vec![returned]);
}

#[tokio::test]
async fn the_json_shape_matches_the_http_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let record = store
        .append_event(entry("m1", Some(day(1)), at(0)))
        .await
        .unwrap();
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["seq"], 1);
    assert_eq!(json["credential_kind"], "card");
    assert_eq!(json["time"], "2026-09-21T14:13:20Z");
    assert_eq!(json["check_in"], serde_json::json!({"state": "pending"}));
    let refused = CheckInStatus::Refused {
        reason: "422".into(),
    };
    assert_eq!(
        serde_json::to_value(refused).unwrap(),
        serde_json::json!({"state": "refused", "reason": "422"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_entries_of_one_member_on_one_day_make_exactly_one_check_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.append_event(entry("m1", Some(day(1)), at(i))).await })
        })
        .collect();
    let mut pending = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().check_in.is_some() {
            pending += 1;
        }
    }
    assert_eq!(pending, 1);
    let tasks = store.pending_check_ins().unwrap();
    assert_eq!(tasks.len(), 1);
    let event = &store.events_after(tasks[0].event_seq - 1, 1).unwrap()[0];
    assert_eq!(event.check_in, Some(CheckInStatus::Pending));
}

#[tokio::test]
async fn another_day_or_another_member_gets_its_own_check_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (member, d) in [("m1", 1), ("m1", 2), ("m2", 1), ("m1", 1)] {
        store
            .append_event(entry(member, Some(day(d)), at(0)))
            .await
            .unwrap();
    }
    let keys: Vec<_> = store
        .pending_check_ins()
        .unwrap()
        .into_iter()
        .map(|t| (t.member, t.day))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("m1".into(), day(1)),
            ("m2".into(), day(1)),
            ("m1".into(), day(2))
        ]
    );
}

#[tokio::test]
async fn a_reopened_store_does_not_enqueue_a_second_check_in_for_the_day() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .append_event(entry("m1", Some(day(1)), at(0)))
            .await
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let again = store
        .append_event(entry("m1", Some(day(1)), at(5)))
        .await
        .unwrap();
    assert_eq!(again.check_in, None);
    assert_eq!(store.outbox_depth().unwrap(), 1);
}

#[tokio::test]
async fn denied_events_and_events_without_a_member_never_enqueue_a_check_in() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut denied = entry("m1", Some(day(1)), at(0));
    denied.granted = false;
    let mut anonymous = entry("m1", Some(day(1)), at(0));
    anonymous.member = None;
    let without_day = entry("m1", None, at(0));
    for e in [denied, anonymous, without_day] {
        assert_eq!(store.append_event(e).await.unwrap().check_in, None);
    }
    assert_eq!(store.outbox_depth().unwrap(), 0);
}

#[tokio::test]
async fn last_event_time_is_the_time_of_the_newest_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.last_event_time().unwrap(), None);
    store.append_event(entry("m1", None, at(10))).await.unwrap();
    store.append_event(entry("m1", None, at(20))).await.unwrap();
    assert_eq!(store.last_event_time().unwrap(), Some(at(20)));
}

#[tokio::test]
async fn pruning_keeps_pending_check_ins_and_never_reuses_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append_event(entry("m1", Some(day(1)), at(0)))
        .await
        .unwrap(); // 1: pending
    store.append_event(entry("m2", None, at(1))).await.unwrap(); // 2
    store.append_event(entry("m3", None, at(2))).await.unwrap(); // 3
    store
        .append_event(entry("m4", None, at(100)))
        .await
        .unwrap(); // 4: young
    assert_eq!(store.prune_events(at(50)).unwrap(), 2);
    assert_eq!(seqs(&store.events_after(0, 10).unwrap()), vec![1, 4]);

    assert_eq!(store.prune_events(at(1000)).unwrap(), 1);
    assert_eq!(seqs(&store.events_after(0, 10).unwrap()), vec![1]);
    let next = store
        .append_event(entry("m5", None, at(2000)))
        .await
        .unwrap();
    assert_eq!(next.seq, 5);
}

/// Set in the child process of the crash test: the state directory to append to.
const CRASH_CHILD_DIR: &str = "PORTIER_TEST_APPEND_THEN_ABORT_DIR";

#[tokio::test]
async fn an_acknowledged_event_survives_the_process_being_killed() {
    if let Ok(dir) = std::env::var(CRASH_CHILD_DIR) {
        // Child: append, and die the moment the last append is acknowledged.
        let store = Store::open(std::path::Path::new(&dir)).unwrap();
        for i in 0..20 {
            store
                .append_event(entry("m1", Some(day(1)), at(i)))
                .await
                .unwrap();
        }
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::events::tests::an_acknowledged_event_survives_the_process_being_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_CHILD_DIR, dir.path())
        .status()
        .unwrap();
    assert!(!status.success(), "the child should have aborted");
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        seqs(&store.events_after(0, 100).unwrap()),
        (1..=20).collect::<Vec<u64>>()
    );
    assert_eq!(store.outbox_depth().unwrap(), 1);
}

#[tokio::test]
async fn the_door_outcome_is_stored_with_the_event_and_old_events_read_as_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut shut = entry("m1", None, at(0));
    shut.opened = false;
    shut.lock_error = Some("unreachable".into());
    let stored = store.append_event(shut).await.unwrap();
    assert!(!stored.opened);
    assert_eq!(stored.lock_error.as_deref(), Some("unreachable"));
    let read = store.events_after(0, 10).unwrap();
    assert_eq!(read, vec![stored]);

    // A record written before `opened` and `lock_error` existed.
    let old = serde_json::json!({
        "seq": 2, "time": at(1), "unit": "front_door", "member": "m1",
        "credential_kind": "card", "granted": true, "reason": "r", "decision_id": "d",
        "reader": null, "check_in": null
    });
    let old: EventRecord = serde_json::from_value(old).unwrap();
    assert!(!old.opened);
    assert_eq!(old.lock_error, None);
}
