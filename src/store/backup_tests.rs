use chrono::{DateTime, NaiveDate, Utc};

use super::*;
use crate::store::{CheckInResult, CredentialKind, NewEvent, StoredSnapshot, SyncStatus};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
}

fn event(member: &str, secs: i64) -> NewEvent {
    NewEvent {
        time: at(secs),
        unit: "front_door".into(),
        member: Some(member.into()),
        credential_kind: CredentialKind::Card,
        granted: true,
        reason: "granted".into(),
        decision_id: format!("d-{secs}"),
        reader: None,
        opened: true,
        lock_error: None,
        via: None,
        check_in_day: NaiveDate::from_ymd_opt(2026, 9, 21),
    }
}

/// A store with a snapshot, a status, three events (one check-in sent, one pending) and a token.
async fn filled(dir: &Path) -> Store {
    let store = Store::open(dir).unwrap();
    store
        .save_snapshot(&StoredSnapshot {
            version: 7,
            synced_at: at(0),
            data: Default::default(),
        })
        .unwrap();
    store
        .save_sync_status(&SyncStatus {
            last_success: Some(at(0)),
            ..SyncStatus::default()
        })
        .unwrap();
    store.append_event(event("m1", 1)).await.unwrap();
    store.append_event(event("m2", 2)).await.unwrap();
    store.append_event(event("m1", 3)).await.unwrap();
    let first = store
        .pending_check_ins()
        .unwrap()
        .into_iter()
        .find(|t| t.member == "m1")
        .unwrap();
    store
        .finish_check_in(&first, CheckInResult::Sent)
        .await
        .unwrap();
    store
        .remember_app_token(crate::store::token_hash("app-1"), "u1", at(4))
        .unwrap();
    store
}

#[tokio::test]
async fn a_backup_restores_every_tree_into_a_fresh_state_directory() {
    let from = tempfile::tempdir().unwrap();
    let bytes = {
        let store = filled(from.path()).await;
        store.backup().unwrap()
    };
    let checked = inspect(&bytes).unwrap();
    assert_eq!(checked.entries("events"), 3);
    assert_eq!(checked.entries("outbox"), 1);
    assert_eq!(checked.entries("check_in_days"), 1);
    assert_eq!(checked.entries("app_tokens"), 1);
    assert_eq!(checked.entries("default"), 1);
    assert_eq!(checked.entries("files"), 1);

    let to = tempfile::tempdir().unwrap();
    let restored = restore(to.path(), &bytes).unwrap();
    assert_eq!(restored, checked);
    let store = Store::open(to.path()).unwrap();
    assert_eq!(store.load_snapshot().unwrap().unwrap().version, 7);
    assert_eq!(store.sync_status().unwrap().last_success, Some(at(0)));
    assert_eq!(store.events_after(0, 10).unwrap().len(), 3);
    assert_eq!(store.pending_check_ins().unwrap()[0].member, "m2");
    assert_eq!(
        store
            .app_token_user(
                &crate::store::token_hash("app-1"),
                at(5),
                std::time::Duration::from_secs(60)
            )
            .unwrap()
            .as_deref(),
        Some("u1")
    );
    // The counter came along: numbering goes on without reusing a seq.
    assert_eq!(store.append_event(event("m3", 6)).await.unwrap().seq, 4);
}

#[tokio::test]
async fn restoring_over_a_store_keeps_the_replaced_one_beside_it() {
    let from = tempfile::tempdir().unwrap();
    let bytes = filled(from.path()).await.backup().unwrap();
    let to = tempfile::tempdir().unwrap();
    {
        let other = Store::open(to.path()).unwrap();
        other.append_event(event("x", 1)).await.unwrap();
    }
    restore(to.path(), &bytes).unwrap();
    assert!(to.path().join(BEFORE_RESTORE).join("db").exists());
    assert!(to.path().join("snapshot").exists());
    let store = Store::open(to.path()).unwrap();
    let members: Vec<_> = store
        .events_after(0, 10)
        .unwrap()
        .into_iter()
        .filter_map(|e| e.member)
        .collect();
    assert_eq!(members, ["m1", "m2", "m1"]);
}

#[tokio::test]
async fn a_restore_is_refused_while_another_process_holds_the_store() {
    let from = tempfile::tempdir().unwrap();
    let bytes = filled(from.path()).await.backup().unwrap();
    let to = tempfile::tempdir().unwrap();
    let _daemon = Store::open(to.path()).unwrap();
    assert!(matches!(
        restore(to.path(), &bytes),
        Err(StoreError::Locked(_))
    ));
}

#[tokio::test]
async fn a_damaged_or_truncated_backup_is_refused_before_anything_changes() {
    let from = tempfile::tempdir().unwrap();
    let bytes = filled(from.path()).await.backup().unwrap();
    let to = tempfile::tempdir().unwrap();
    {
        let other = Store::open(to.path()).unwrap();
        other.append_event(event("x", 1)).await.unwrap();
    }
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    let cases: [(&[u8], &str); 4] = [
        (&bytes[..bytes.len() - 10], "checksum"),
        (&flipped, "checksum"),
        (b"{\"not\": \"a backup\"}", "PORTIER-BACKUP"),
        (b"", "PORTIER-BACKUP"),
    ];
    for (bad, says) in cases {
        match restore(to.path(), bad) {
            Err(StoreError::Backup(why)) => assert!(why.contains(says), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    let store = Store::open(to.path()).unwrap();
    assert_eq!(
        store.events_after(0, 10).unwrap()[0].member.as_deref(),
        Some("x")
    );
    assert!(!to.path().join(BEFORE_RESTORE).exists());
}

#[test]
fn a_well_formed_file_with_a_wrong_count_or_an_unknown_tree_is_refused() {
    let seal = |body: Vec<u8>| {
        let mut out = body;
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out
    };
    let mut body = MAGIC.to_vec();
    write_entry(&mut body, "events", b"k", b"v").unwrap();
    let mut wrong_count = body.clone();
    wrong_count.push(END);
    wrong_count.extend_from_slice(&5u64.to_be_bytes());
    let error = inspect(&seal(wrong_count)).unwrap_err().to_string();
    assert!(error.contains("says 5 entries but holds 1"), "{error}");

    let mut unknown = MAGIC.to_vec();
    write_entry(&mut unknown, "secrets", b"k", b"v").unwrap();
    unknown.push(END);
    unknown.extend_from_slice(&1u64.to_be_bytes());
    let error = inspect(&seal(unknown)).unwrap_err().to_string();
    assert!(error.contains("unknown tree \"secrets\""), "{error}");
}

#[tokio::test]
async fn a_backup_file_is_written_whole_and_readable_only_by_its_owner() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portier.backup");
    write_backup_file(&path, b"content").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"content");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_taken_while_events_are_written_are_each_one_moment_of_the_store() {
    let from = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::open(from.path()).unwrap());
    let writer = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move {
            for i in 0..200 {
                // A new member each time: every event enqueues a check-in with it.
                store
                    .append_event(event(&format!("m{i}"), i))
                    .await
                    .unwrap();
            }
        })
    };
    // A handful of backups spread over the writes (each is restored and checked below).
    let mut backups = Vec::new();
    while !writer.is_finished() && backups.len() < 8 {
        let store = std::sync::Arc::clone(&store);
        backups.push(
            tokio::task::spawn_blocking(move || store.backup())
                .await
                .unwrap()
                .unwrap(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    writer.await.unwrap();
    backups.push(store.backup().unwrap());
    for bytes in backups {
        let to = tempfile::tempdir().unwrap();
        restore(to.path(), &bytes).unwrap();
        let restored = Store::open(to.path()).unwrap();
        let events = restored.events_after(0, 1000).unwrap();
        let n = events.len() as u64;
        assert!(events.iter().map(|e| e.seq).eq(1..=n));
        // Every check-in has its event and the other way round.
        assert_eq!(restored.outbox_depth().unwrap() as u64, n);
        // The counter is not behind the events: the next seq follows them.
        assert_eq!(
            restored.append_event(event("next", 999)).await.unwrap().seq,
            n + 1
        );
    }
}
