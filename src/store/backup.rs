//! Backups of the store: a consistent copy of every tree in one file, and putting one back.
//!
//! [`Store::backup`] copies while no write can land: every write to the store holds the
//! store's write gate shared, the backup holds it alone for as long as it reads, so the copy
//! is one moment of the store (an event is never in it without its check-in, nor the event
//! counter behind the events). The running daemon can therefore be backed up online, with
//! door events waiting only for the few milliseconds the copy takes.
//!
//! [`restore`] needs the store to itself (the daemon stopped): it checks the whole file first,
//! writes it into a new database (and snapshot file) beside the old ones, and only then swaps
//! them in by renaming, so a bad file or a crash while building leaves the old store in place.
//! The replaced store stays as `cache.sled.before-restore` and `snapshot.before-restore` until
//! the next restore.
//!
//! The file: the line `PORTIER-BACKUP 1\n`, then one frame per entry — `1`, the tree's name
//! (length `u8`), the key and the value (each length `u32`, big-endian) — then the end: `0`,
//! the number of entries (`u64`) and the SHA-256 of everything before it. The snapshot file is
//! the entry `snapshot` of the pseudo-tree `files`. Records keep their own [`super::record`]
//! format byte, so a backup of an older version restores into a newer one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{Store, StoreError, snapshot_file, take_owner_lock};

/// The first line of every backup file.
const MAGIC: &[u8] = b"PORTIER-BACKUP 1\n";
/// The trees a backup holds, by the name written in the file; `files` holds the snapshot file.
const TREES: [&str; 7] = [
    "files",
    "default",
    "meta",
    "events",
    "outbox",
    "check_in_days",
    "app_tokens",
];
/// The pseudo-tree of files in the state directory.
const FILES: &str = "files";
const ENTRY: u8 = 1;
const END: u8 = 0;
/// The replaced database after a restore (and the snapshot file, with the same suffix).
pub const BEFORE_RESTORE: &str = "cache.sled.before-restore";
/// The suffix of what a restore replaced.
const BEFORE_RESTORE_SUFFIX: &str = ".before-restore";
/// Where a restore builds the new database before swapping it in.
const RESTORING: &str = "cache.sled.restoring";

/// What a backup holds (or a restore put back): entries per tree.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackupSummary {
    /// `(tree, entries)` in file order.
    pub trees: Vec<(&'static str, usize)>,
    /// Size of the file.
    pub bytes: usize,
}

impl BackupSummary {
    /// Entries of one tree.
    pub(crate) fn entries(&self, tree: &str) -> usize {
        self.trees
            .iter()
            .find(|(name, _)| *name == tree)
            .map_or(0, |(_, n)| *n)
    }
}

impl Store {
    /// A consistent copy of the whole store, as a backup file's bytes.
    pub fn backup(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = MAGIC.to_vec();
        let mut count: u64 = 0;
        {
            // Poisoning cannot leave bad state behind: the guarded data lives in sled.
            let _alone = self
                .gate
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(bytes) =
                snapshot_file::read(&self.state_dir).map_err(|e| self.file_error(e))?
            {
                write_entry(&mut out, FILES, snapshot_file::FILE.as_bytes(), &bytes)?;
                count += 1;
            }
            for name in TREES.into_iter().filter(|t| *t != FILES) {
                for item in self.tree_named(name).iter() {
                    let (key, value) = item.map_err(|e| self.db_error(e))?;
                    write_entry(&mut out, name, &key, &value)?;
                    count += 1;
                }
            }
        }
        out.push(END);
        out.extend_from_slice(&count.to_be_bytes());
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        Ok(out)
    }

    fn tree_named(&self, name: &str) -> &sled::Tree {
        match name {
            "meta" => &self.meta,
            "events" => &self.events,
            "outbox" => &self.outbox,
            "check_in_days" => &self.check_in_days,
            "app_tokens" => &self.app_tokens,
            _ => &self.db,
        }
    }
}

fn write_entry(out: &mut Vec<u8>, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
    let too_big = |what: &str| StoreError::Record {
        what: "backup entry",
        detail: format!("{what} in tree {tree} is over 4 GiB"),
    };
    out.push(ENTRY);
    // Tree names are the constants above, all short.
    out.push(u8::try_from(tree.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(tree.as_bytes());
    for part in [key, value] {
        let len = u32::try_from(part.len()).map_err(|_| too_big("a record"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    Ok(())
}

/// One entry of a checked backup file.
struct Entry<'a> {
    tree: &'static str,
    key: &'a [u8],
    value: &'a [u8],
}

/// Reads a backup file's bytes, checking all of it; the error says what is wrong.
fn parse(bytes: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or("it does not start with \"PORTIER-BACKUP 1\" (not a Portier backup, or one of a newer format)")?;
    let sum_at = bytes
        .len()
        .checked_sub(32)
        .ok_or("it is too short to be a backup")?;
    if Sha256::digest(&bytes[..sum_at])[..] != bytes[sum_at..] {
        return Err("its checksum does not match (the file is truncated or damaged)".to_owned());
    }
    let body = &body[..body.len().saturating_sub(32)];
    let mut reader = Reader { rest: body };
    let mut entries = Vec::new();
    loop {
        match reader.take(1)?[0] {
            ENTRY => {
                let len = usize::from(reader.take(1)?[0]);
                let name = reader.take(len)?;
                let tree = TREES
                    .into_iter()
                    .find(|t| t.as_bytes() == name)
                    .ok_or_else(|| {
                        format!(
                            "it holds an unknown tree \"{}\"",
                            String::from_utf8_lossy(name)
                        )
                    })?;
                let key = reader.take_sized()?;
                let value = reader.take_sized()?;
                if tree == FILES && key != snapshot_file::FILE.as_bytes() {
                    return Err(format!(
                        "it holds an unknown file \"{}\"",
                        String::from_utf8_lossy(key)
                    ));
                }
                entries.push(Entry { tree, key, value });
            }
            END => {
                let count = u64::from_be_bytes(
                    reader
                        .take(8)?
                        .try_into()
                        .map_err(|_| "its end is damaged")?,
                );
                if count != entries.len() as u64 || !reader.rest.is_empty() {
                    return Err(format!(
                        "it says {count} entries but holds {}",
                        entries.len()
                    ));
                }
                return Ok(entries);
            }
            other => return Err(format!("it has an unknown frame type {other}")),
        }
    }
}

/// A cursor over a backup's bytes.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err("it ends in the middle of an entry".into());
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn take_sized(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(
            self.take(4)?
                .try_into()
                .map_err(|_| "it ends in the middle of an entry")?,
        );
        self.take(usize::try_from(len).map_err(|_| "an entry is too large")?)
    }
}

/// What a backup file holds, after checking all of it (nothing is written).
pub fn inspect(bytes: &[u8]) -> Result<BackupSummary, StoreError> {
    let entries = parse(bytes).map_err(StoreError::Backup)?;
    Ok(summary(&entries, bytes.len()))
}

fn summary(entries: &[Entry<'_>], bytes: usize) -> BackupSummary {
    BackupSummary {
        trees: TREES
            .into_iter()
            .map(|t| (t, entries.iter().filter(|e| e.tree == t).count()))
            .collect(),
        bytes,
    }
}

/// Replaces the store in `state_dir` with the backup in `bytes`.
///
/// Refuses with [`StoreError::Locked`] while another process (the daemon) holds the store, and
/// with [`StoreError::Backup`] for a file that is not a whole, undamaged backup; in both cases
/// nothing was changed.
pub fn restore(state_dir: &Path, bytes: &[u8]) -> Result<BackupSummary, StoreError> {
    let entries = parse(bytes).map_err(StoreError::Backup)?;
    let _lock = take_owner_lock(state_dir)?;
    let dir_error = |path: PathBuf| {
        move |source| StoreError::Dir {
            path: path.clone(),
            source,
        }
    };
    let restoring = state_dir.join(RESTORING);
    if restoring.exists() {
        std::fs::remove_dir_all(&restoring).map_err(dir_error(restoring.clone()))?;
    }
    let snapshot = state_dir.join(snapshot_file::FILE);
    let snapshot_restoring = state_dir.join(format!("{}.restoring", snapshot_file::FILE));
    let new_snapshot = entries.iter().find(|e| e.tree == FILES).map(|e| e.value);
    if let Some(bytes) = new_snapshot {
        snapshot_file::replace(&snapshot_restoring, |out| out.write_all(bytes))
            .map_err(dir_error(snapshot_restoring.clone()))?;
    }
    {
        let db = super::open_db(&restoring)?;
        let db_error = |source| StoreError::Db {
            path: restoring.clone(),
            source,
        };
        for entry in entries.iter().filter(|e| e.tree != FILES) {
            let tree = match entry.tree {
                "default" => (*db).clone(),
                name => db.open_tree(name).map_err(db_error)?,
            };
            tree.insert(entry.key, entry.value).map_err(db_error)?;
        }
        let log = std::fs::File::open(restoring.join("db")).map_err(|e| db_error(e.into()))?;
        super::sync_to_disk(&db, &log).map_err(db_error)?;
    }
    // Set the current store aside (the database and the snapshot file), then move the new one
    // in. A crash between the renames leaves a whole store either way; run the restore again.
    for current in [state_dir.join("cache.sled"), snapshot.clone()] {
        let mut before = current.clone().into_os_string();
        before.push(BEFORE_RESTORE_SUFFIX);
        let before = PathBuf::from(before);
        if before.is_dir() {
            std::fs::remove_dir_all(&before).map_err(dir_error(before.clone()))?;
        } else if before.exists() {
            std::fs::remove_file(&before).map_err(dir_error(before.clone()))?;
        }
        if current.exists() {
            std::fs::rename(&current, &before).map_err(dir_error(current.clone()))?;
        }
    }
    let current = state_dir.join("cache.sled");
    std::fs::rename(&restoring, &current).map_err(dir_error(current.clone()))?;
    if new_snapshot.is_some() {
        std::fs::rename(&snapshot_restoring, &snapshot).map_err(dir_error(snapshot.clone()))?;
    }
    // The renames themselves must survive a power cut.
    std::fs::File::open(state_dir)
        .and_then(|d| d.sync_all())
        .map_err(dir_error(state_dir.to_path_buf()))?;
    Ok(summary(&entries, bytes.len()))
}

/// Writes `bytes` to `path` as a new file readable only by its owner (a backup holds member
/// names and emails), through a temporary file beside it so a crash leaves no half backup.
pub fn write_backup_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
