//! The on-disk cache: the only module that names sled.
//!
//! It keeps Cobot's data of the last applied sync (with the snapshot version and the time of
//! that sync) and the sync status. The snapshot record is one file (`snapshot_file`), replaced
//! atomically and durably before `save` returns, so after a crash a reader finds the old record
//! or the new one, never a mix. Decisions never read from here: the snapshot is compiled from
//! the stored data at start and after every sync and then lives in memory. Every record carries
//! its format (`record`), so a newer version reads what an older one wrote.
//!
//! One process owns the store. `open` takes an exclusive lock on `portier.lock` in the state
//! directory first, so a second process gets [`StoreError::Locked`] at once instead of waiting.
//!
//! Besides the snapshot it keeps the audit trail and what hangs off it, one submodule each:
//! `events` (the numbered event log, tree `events`), `outbox` (Cobot check-ins still to send,
//! tree `outbox`, and the per-day markers of sent ones, tree `check_in_days`) and `tokens` (the
//! hashed app-token cache, tree `app_tokens`). An event and the check-in it causes are written
//! in one sled transaction, so a crash never leaves one without the other. Nothing here talks
//! to Cobot or reads the clock: times come in as parameters.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use thiserror::Error;

use crate::domain::model::CobotData;

mod backup;
mod check_in;
mod events;
mod member_sessions;
mod outbox;
mod record;
mod snapshot_file;
mod tokens;

pub use backup::{BEFORE_RESTORE, BackupSummary, inspect, restore, write_backup_file};
pub use check_in::{CheckInResult, CheckInStatus, CheckInTask};
pub use events::{CredentialKind, EventRecord, NewEvent};
pub use member_sessions::MemberSession;
pub use tokens::token_hash;

/// sled's page cache, set explicitly: the box has little memory and the working set is small
/// (a status record, and the tail of the event log, which is written and read in order; the
/// large snapshot record is a file of its own).
const CACHE_BYTES: u64 = 4 * 1024 * 1024;
/// The file in the state directory whose exclusive lock marks the process that owns the store.
pub(crate) const LOCK_FILE: &str = "portier.lock";
/// Where stores written before the snapshot file kept the snapshot record (sled's default tree).
const SNAPSHOT_KEY: &[u8] = b"snapshot";
const STATUS_KEY: &[u8] = b"sync_status";
/// Key of the lockdown state.
const LOCKDOWN_KEY: &[u8] = b"lockdown";

/// What can go wrong with the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process (normally `portier run`) holds the store: ask it over HTTP instead.
    #[error("the store in {0} is in use by another portier process")]
    Locked(PathBuf),
    /// The state directory cannot be created or opened: fix its path or permissions.
    #[error("cannot open the state directory {path}: {source}")]
    Dir {
        /// The state directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// sled failed (disk full, I/O error, corruption): nothing was written; report and stop.
    #[error("store error in {path}: {source}")]
    Db {
        /// The database directory.
        path: PathBuf,
        /// What sled said.
        source: sled::Error,
    },
    /// The snapshot file cannot be read or written (disk full, permissions): nothing changed;
    /// check the disk and the state directory's owner.
    #[error("cannot read or write {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A backup file is not a whole, undamaged Portier backup: nothing was changed; use another.
    #[error("not a usable Portier backup: {0}")]
    Backup(String),
    /// A stored record cannot be read back (written by an incompatible version): re-sync.
    #[error("stored {what} cannot be read ({detail}): run portier sync to replace it")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// An event, check-in or app-token record cannot be encoded or read back (damaged, or from an
    /// incompatible version). The operation did nothing and the record stays as it is on disk;
    /// report it, since re-syncing does not replace these records.
    #[error("stored {what} cannot be read or written ({detail}); it is left as it is on disk")]
    Record {
        /// Which kind of record.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Cobot's data of the last applied sync, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSnapshot {
    /// The snapshot version: 1 for the first applied sync, +1 for each after it.
    pub version: u64,
    /// When the sync that fetched this data finished.
    pub synced_at: DateTime<Utc>,
    /// What Cobot returned.
    pub data: CobotData,
}

/// The state of the mass-revocation guard after the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum GuardState {
    /// The last sync was applied.
    Applied,
    /// The last sync would have revoked too many members, or taken the plan from too many, and
    /// was not applied.
    Held {
        /// Members it would have revoked.
        revoked: usize,
        /// Members granted before it.
        granted_before: usize,
        /// Members whose known plan it would have made unknown (absent in older stores: 0).
        #[serde(default)]
        plan_lost: usize,
        /// Members whose plan was known before it.
        #[serde(default)]
        plan_known_before: usize,
    },
}

/// Whether a lockdown is on: kept across restarts and reloads until switched off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockdown {
    /// On: only `[lockdown] allow_groups` (and staff through the admin API) open.
    pub on: bool,
    /// Why, as given when it was switched.
    pub reason: Option<String>,
    /// When it was last switched.
    pub since: Option<DateTime<Utc>>,
}

/// What the last sync attempts did, for `status` and health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// When the last sync was tried.
    pub last_attempt: Option<DateTime<Utc>>,
    /// When a sync last fetched Cobot's data completely (applied or held).
    pub last_success: Option<DateTime<Utc>>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    /// The guard's verdict on the last complete sync.
    pub guard: GuardState,
}

impl Default for SyncStatus {
    fn default() -> Self {
        Self {
            last_attempt: None,
            last_success: None,
            last_error: None,
            guard: GuardState::Applied,
        }
    }
}

/// The open store. Dropping it releases the lock.
pub struct Store {
    db: sled::Db,
    /// Tree `events`: seq (big-endian u64) → [`EventRecord`].
    events: sled::Tree,
    /// Tree `outbox`: `YYYY-MM-DD/<membership id>` → pending [`CheckInTask`].
    outbox: sled::Tree,
    /// Tree `check_in_days`: same keys → the final [`CheckInStatus`] of a finished check-in, so a
    /// later entry that day does not enqueue another.
    check_in_days: sled::Tree,
    /// Tree `meta`: counters (the next event seq).
    meta: sled::Tree,
    /// Tree `app_tokens`: SHA-256 of an app token → who it belonged to and when it was seen.
    app_tokens: sled::Tree,
    /// Tree `member_sessions`: SHA-256 of a member page cookie → its [`MemberSession`].
    member_sessions: sled::Tree,
    /// The write gate: every write holds it shared, [`Store::backup`] alone, so a backup is one
    /// moment of the store. Held only around synchronous sled calls, never across an `.await`.
    gate: RwLock<()>,
    /// Serialises seq assignment so seqs are consecutive. Held only around the (synchronous)
    /// sled transaction, never across an `.await`; the flush after it is shared.
    append_lock: Mutex<()>,
    /// sled's log file (`<db>/db`), opened a second time only to `fdatasync` it: see
    /// [`sync_to_disk`].
    log_file: Arc<File>,
    /// Group commit: how many writes have asked to be made durable so far.
    flush_requests: AtomicU64,
    /// Group commit: the number of requests known to be durable; held while one flush runs,
    /// so the callers queued behind it find themselves covered instead of syncing again.
    flushed: tokio::sync::Mutex<u64>,
    path: PathBuf,
    /// The state directory (the snapshot file's home).
    state_dir: PathBuf,
    /// Held for the lifetime of the store: the OS lock that makes this process the owner.
    _lock: File,
}

impl Store {
    /// Opens (creating if needed) the store in `state_dir`, taking the owner lock.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let lock = take_owner_lock(state_dir)?;
        let path = state_dir.join("cache.sled");
        let db = open_db(&path)?;
        let tree = |name: &str| {
            db.open_tree(name).map_err(|source| StoreError::Db {
                path: path.clone(),
                source,
            })
        };
        let log_file = File::open(path.join("db")).map_err(|source| StoreError::Db {
            path: path.clone(),
            source: source.into(),
        })?;
        Ok(Self {
            log_file: Arc::new(log_file),
            flush_requests: AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
            events: tree("events")?,
            outbox: tree("outbox")?,
            check_in_days: tree("check_in_days")?,
            meta: tree("meta")?,
            app_tokens: tree("app_tokens")?,
            member_sessions: tree("member_sessions")?,
            gate: RwLock::new(()),
            append_lock: Mutex::new(()),
            db,
            path,
            state_dir: state_dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Holds the write gate shared for one write (see [`Store::backup`]).
    fn writing(&self) -> RwLockReadGuard<'_, ()> {
        // Poisoning cannot leave bad state behind: the gate guards no data.
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored snapshot record, or `None` before the first applied sync.
    pub fn load_snapshot(&self) -> Result<Option<StoredSnapshot>, StoreError> {
        let bytes = snapshot_file::read(&self.state_dir).map_err(|e| self.file_error(e))?;
        match bytes {
            Some(bytes) => record::decode(&bytes)
                .map(Some)
                .map_err(|detail| StoreError::Corrupt {
                    what: "snapshot",
                    detail,
                }),
            // A store from before the snapshot file.
            None => self.read(SNAPSHOT_KEY, "snapshot"),
        }
    }

    /// Replaces the snapshot record atomically and durably.
    pub fn save_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let _gate = self.writing();
        snapshot_file::replace(&snapshot_file::path(&self.state_dir), |out| {
            record::encode_to(out, snapshot)
        })
        .map_err(|e| self.file_error(e))?;
        // The file takes the place of the record a store from before it kept in sled. Losing
        // this removal in a crash is harmless: the file is read first.
        if self
            .db
            .contains_key(SNAPSHOT_KEY)
            .map_err(|e| self.db_error(e))?
        {
            self.db.remove(SNAPSHOT_KEY).map_err(|e| self.db_error(e))?;
        }
        Ok(())
    }

    fn file_error(&self, source: std::io::Error) -> StoreError {
        StoreError::File {
            path: snapshot_file::path(&self.state_dir),
            source,
        }
    }

    /// The sync status (default before the first sync).
    pub fn sync_status(&self) -> Result<SyncStatus, StoreError> {
        Ok(self.read(STATUS_KEY, "sync status")?.unwrap_or_default())
    }

    /// The lockdown state (off before it was ever switched).
    pub fn lockdown(&self) -> Result<Lockdown, StoreError> {
        Ok(self
            .read(LOCKDOWN_KEY, "lockdown state")?
            .unwrap_or_default())
    }

    /// Replaces the lockdown state durably.
    pub(crate) fn save_lockdown(&self, lockdown: &Lockdown) -> Result<(), StoreError> {
        self.write(LOCKDOWN_KEY, lockdown)
    }

    /// Replaces the sync status durably.
    pub fn save_sync_status(&self, status: &SyncStatus) -> Result<(), StoreError> {
        self.write(STATUS_KEY, status)
    }

    fn read<T: for<'de> Deserialize<'de>>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self.db.get(key).map_err(|e| self.db_error(e))? else {
            return Ok(None);
        };
        record::decode(&bytes)
            .map(Some)
            .map_err(|detail| StoreError::Corrupt { what, detail })
    }

    fn write<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), StoreError> {
        let bytes = record::encode(value).map_err(|detail| StoreError::Corrupt {
            what: "record",
            detail,
        })?;
        {
            let _gate = self.writing();
            self.db.insert(key, bytes).map_err(|e| self.db_error(e))?;
        }
        // sled only fsyncs every 500 ms on its own; a sync that says "applied" must survive a
        // power cut, so wait for the flush.
        sync_to_disk(&self.db, &self.log_file).map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// Applies `batch` to `tree` under the write gate.
    fn writing_batch(&self, tree: &sled::Tree, batch: sled::Batch) -> Result<(), StoreError> {
        let _gate = self.writing();
        tree.apply_batch(batch).map_err(|e| self.db_error(e))
    }

    fn db_error(&self, source: sled::Error) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Turns a failed transaction into a [`StoreError`]: our own abort as is, sled's as `Db`.
    fn tx_error(&self, e: TransactionError<StoreError>) -> StoreError {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(source) => self.db_error(source),
        }
    }

    /// Waits until everything this caller wrote is on disk.
    ///
    /// Group commit: a caller registers after its write is in sled's memory, then waits its
    /// turn; a flush covers every write registered before it started, so callers that queued
    /// behind a flush usually return without one of their own (on an SD card, where one
    /// `fdatasync` takes milliseconds, that is what keeps concurrent doors fast). The lock is a
    /// tokio one, so waiting does not block a thread.
    ///
    /// Not `sled::Tree::flush_async`: in sled 0.34.7 concurrent `flush_async` calls can lose
    /// their wake-up and hang forever (spacejam/sled#1308, fixed only on the unreleased main
    /// branch; it hung this module's parallel tests). The blocking flush runs on tokio's
    /// blocking pool instead.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let mine = self.flush_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= mine {
            return Ok(());
        }
        let covers = self.flush_requests.load(Ordering::SeqCst);
        let (db, log) = (self.db.clone(), self.log_file.clone());
        tokio::task::spawn_blocking(move || sync_to_disk(&db, &log))
            .await
            .unwrap_or_else(|e| {
                Err(sled::Error::Io(std::io::Error::other(format!(
                    "the flush task failed: {e}"
                ))))
            })
            .map_err(|e| self.db_error(e))?;
        *flushed = covers;
        Ok(())
    }
}

/// Creates `state_dir` if needed and takes the exclusive lock on its `portier.lock`: the one
/// process that holds it owns the store. Another process gets [`StoreError::Locked`] at once.
fn take_owner_lock(state_dir: &Path) -> Result<File, StoreError> {
    let dir_error = |source| StoreError::Dir {
        path: state_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(dir_error)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join(LOCK_FILE))
        .map_err(dir_error)?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(state_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(dir_error(e)),
    }
}

/// Opens (creating if needed) the sled database at `path` with Portier's settings.
/// How long [`open_db`] waits for a closing handle of this process to let go of sled's lock.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens sled at `path`. The caller holds the owner lock, so another process cannot hold sled's
/// own file lock; only a `Store` of this process that was just dropped can (sled's background
/// threads close the file a moment after the last handle goes, e.g. when a restore or a test
/// reopens the store at once). That is waited out, for at most [`SLED_LOCK_WAIT`].
fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    let deadline = crate::clock::instant() + SLED_LOCK_WAIT;
    loop {
        match sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && crate::clock::instant() < deadline =>
            {
                // Opening is synchronous (start-up, a restore, the command line) and this wait
                // is rare and short.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(source) => {
                return Err(StoreError::Db {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// Makes everything written to `db` so far survive a power cut.
///
/// sled 0.34's `flush` writes its log and waits with `sync_file_range` on Linux, which neither
/// flushes the disk's (or SD card's) write cache nor the file's size, so it only survives a
/// killed process, not a power cut. An `fdatasync` of the log file afterwards does both; it
/// covers writes made through sled's own descriptor, since it acts on the file.
fn sync_to_disk(db: &sled::Db, log_file: &File) -> sled::Result<()> {
    db.flush()?;
    log_file.sync_data()?;
    Ok(())
}

/// Serialises a record for sled, in the current [`record`] format.
fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    record::encode(value).map_err(|detail| StoreError::Record { what, detail })
}

/// Reads a record back from sled, in any [`record`] format this version reads.
fn decode<T: for<'de> Deserialize<'de>>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    record::decode(bytes).map_err(|detail| StoreError::Record { what, detail })
}

/// Aborts a transaction with a [`StoreError`].
fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::CobotPlan;

    fn record(version: u64) -> StoredSnapshot {
        StoredSnapshot {
            version,
            synced_at: DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default(),
            data: CobotData {
                plans: vec![CobotPlan {
                    id: "p1".into(),
                    name: "Full Time".into(),
                    hidden: false,
                }],
                ..CobotData::default()
            },
        }
    }

    #[test]
    fn a_saved_snapshot_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.load_snapshot().unwrap(), None);
            store.save_snapshot(&record(1)).unwrap();
            store.save_snapshot(&record(2)).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load_snapshot().unwrap(), Some(record(2)));
    }

    #[test]
    fn a_snapshot_record_of_a_store_before_the_snapshot_file_is_read_then_moved_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Format 1: plain JSON in sled's default tree.
        let legacy = serde_json::to_vec(&record(1)).unwrap();
        store.db.insert(SNAPSHOT_KEY, legacy).unwrap();
        assert_eq!(store.load_snapshot().unwrap(), Some(record(1)));

        store.save_snapshot(&record(2)).unwrap();
        assert!(!store.db.contains_key(SNAPSHOT_KEY).unwrap());
        let file = std::fs::read(dir.path().join("snapshot")).unwrap();
        assert_eq!(file[0], record::CURRENT);
        assert_eq!(store.load_snapshot().unwrap(), Some(record(2)));
    }

    #[test]
    fn an_unreadable_snapshot_file_is_reported_as_corrupt_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.save_snapshot(&record(1)).unwrap();
        std::fs::write(dir.path().join("snapshot"), b"\x02{\"version\": tr").unwrap();
        match store.load_snapshot() {
            Err(StoreError::Corrupt { what, detail }) => {
                assert_eq!(what, "snapshot");
                assert!(detail.contains("record format 2"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // A sync's save replaces it.
        store.save_snapshot(&record(2)).unwrap();
        assert_eq!(store.load_snapshot().unwrap(), Some(record(2)));
    }

    #[test]
    fn a_second_owner_is_refused_while_the_first_holds_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open(dir.path()),
            Err(StoreError::Locked(_))
        ));
    }

    #[test]
    fn sync_status_defaults_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.sync_status().unwrap(), SyncStatus::default());
        let status = SyncStatus {
            last_error: Some("Cobot answered 500".into()),
            guard: GuardState::Held {
                revoked: 6,
                granted_before: 10,
                plan_lost: 2,
                plan_known_before: 10,
            },
            ..SyncStatus::default()
        };
        store.save_sync_status(&status).unwrap();
        assert_eq!(store.sync_status().unwrap(), status);
    }
}
