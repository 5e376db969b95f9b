use super::*;
use crate::store::events::tests::{at, day, entry};

async fn store_with_one_check_in() -> (tempfile::TempDir, Store, CheckInTask) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .append_event(entry("m1", Some(day(1)), at(0)))
        .await
        .unwrap();
    let task = store.pending_check_ins().unwrap().remove(0);
    (dir, store, task)
}

fn first_event(store: &Store) -> EventRecord {
    store.events_after(0, 1).unwrap().remove(0)
}

#[tokio::test]
async fn a_new_check_in_task_is_due_at_once_and_points_at_its_event() {
    let (_dir, store, task) = store_with_one_check_in().await;
    assert_eq!(
        task,
        CheckInTask {
            member: "m1".into(),
            day: day(1),
            event_seq: 1,
            attempts: 0,
            uncertain: false,
            next_attempt: None,
        }
    );
    assert_eq!(store.outbox_depth().unwrap(), 1);
}

#[tokio::test]
async fn a_sent_check_in_leaves_the_outbox_marks_its_event_and_blocks_a_second_that_day() {
    let (_dir, store, task) = store_with_one_check_in().await;
    store
        .finish_check_in(&task, CheckInResult::Sent)
        .await
        .unwrap();
    assert_eq!(store.outbox_depth().unwrap(), 0);
    assert_eq!(first_event(&store).check_in, Some(CheckInStatus::Sent));
    let later = store
        .append_event(entry("m1", Some(day(1)), at(60)))
        .await
        .unwrap();
    assert_eq!(later.check_in, None);
    assert_eq!(store.outbox_depth().unwrap(), 0);
    let next_day = store
        .append_event(entry("m1", Some(day(2)), at(90_000)))
        .await
        .unwrap();
    assert_eq!(next_day.check_in, Some(CheckInStatus::Pending));
}

#[tokio::test]
async fn a_refused_check_in_records_cobots_reason_in_the_event() {
    let (_dir, store, task) = store_with_one_check_in().await;
    let reason = "Cobot refused the check-in (422): No time passes left.".to_owned();
    store
        .finish_check_in(
            &task,
            CheckInResult::Refused {
                reason: reason.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(store.outbox_depth().unwrap(), 0);
    assert_eq!(
        first_event(&store).check_in,
        Some(CheckInStatus::Refused { reason })
    );
}

#[tokio::test]
async fn a_retry_counts_the_attempt_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .append_event(entry("m1", Some(day(1)), at(0)))
            .await
            .unwrap();
        let task = store.pending_check_ins().unwrap().remove(0);
        let retry = CheckInResult::Retry {
            at: at(30),
            uncertain: true,
        };
        store.finish_check_in(&task, retry).await.unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let task = store.pending_check_ins().unwrap().remove(0);
    assert_eq!(
        (task.attempts, task.uncertain, task.next_attempt),
        (1, true, Some(at(30)))
    );
    assert_eq!(first_event(&store).check_in, Some(CheckInStatus::Pending));
}

#[tokio::test]
async fn marking_a_task_as_sending_makes_it_uncertain_until_an_answer_is_recorded() {
    let (_dir, store, task) = store_with_one_check_in().await;
    let sending = store.check_in_sending(&task).await.unwrap().unwrap();
    assert!(sending.uncertain);
    assert!(store.pending_check_ins().unwrap()[0].uncertain);
    let retry = CheckInResult::Retry {
        at: at(5),
        uncertain: false,
    };
    store.finish_check_in(&sending, retry).await.unwrap();
    assert!(!store.pending_check_ins().unwrap()[0].uncertain);
}

#[tokio::test]
async fn finishing_a_task_twice_changes_nothing_the_second_time() {
    let (_dir, store, task) = store_with_one_check_in().await;
    store
        .finish_check_in(&task, CheckInResult::Sent)
        .await
        .unwrap();
    let refused = CheckInResult::Refused {
        reason: "late".into(),
    };
    store.finish_check_in(&task, refused).await.unwrap();
    assert_eq!(first_event(&store).check_in, Some(CheckInStatus::Sent));
    assert_eq!(store.check_in_sending(&task).await.unwrap(), None);
}

#[tokio::test]
async fn a_sent_event_may_be_pruned_and_old_day_markers_go_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // at(0) is 2026-09-21 14:13 UTC: an entry on its own day.
    store
        .append_event(entry("m1", Some(day(21)), at(0)))
        .await
        .unwrap();
    let task = store.pending_check_ins().unwrap().remove(0);
    assert_eq!(store.prune_events(at(100)).unwrap(), 0, "pending is kept");
    store
        .finish_check_in(&task, CheckInResult::Sent)
        .await
        .unwrap();
    assert_eq!(store.prune_events(at(100)).unwrap(), 1);
    assert_eq!(
        store.check_in_days.len(),
        1,
        "the marker of a recent day stays"
    );
    let much_later = at(100) + chrono::Duration::days(400);
    store.prune_events(much_later).unwrap();
    assert_eq!(store.check_in_days.len(), 0);
}
