//! `portier backup PATH` and `portier restore PATH`: moving the state to a new SD card.
//!
//! A backup is taken online: when the daemon holds the store, it makes the copy
//! (`GET /v1/backup`, admin token) and this command only writes the file; otherwise this
//! process opens the store itself. Either way the file is checked whole before it is written.
//! A restore replaces the store, which only the owner of the store may do, so it refuses while
//! the daemon runs (exit 1) rather than pulling the data from under it.

use super::output::out;
use super::remote::{self, Answer};
use super::{BackupArgs, Failure, RestoreArgs};
use crate::config::Config;
use crate::store::{self, BackupSummary, Store, StoreError};

pub(super) fn backup(config: &Config, args: &BackupArgs) -> Result<(), Failure> {
    let state_dir = &config.site.state_dir;
    if !state_dir.join("cache.sled").exists() {
        return Err(Failure::Runtime(format!(
            "there is no store in {} to back up (site.state_dir of {})",
            state_dir.display(),
            config.path.display()
        )));
    }
    // Another user's store is read only through its running daemon, never opened here (that
    // would leave files this user owns in the state directory).
    if let Some(foreign) = super::owner::foreign_owner(state_dir)
        && !super::owner::daemon_holds(state_dir)
    {
        return Err(foreign.refusal());
    }
    let (bytes, source) = match Store::open(state_dir) {
        Ok(store) => (
            store
                .backup()
                .map_err(|e| Failure::Runtime(e.to_string()))?,
            "the store",
        ),
        Err(StoreError::Locked(_)) => {
            let daemon = remote::Daemon::new(config)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))?;
            match runtime.block_on(daemon.download("/v1/backup"))? {
                Answer::Ok(bytes) => (bytes, "the running daemon"),
                Answer::Err(status, message) => return Err(remote::failure(status, message)),
            }
        }
        Err(other) => return Err(Failure::Runtime(other.to_string())),
    };
    // What came over the wire is checked like a file that is restored.
    let summary = store::inspect(&bytes)
        .map_err(|e| Failure::Runtime(format!("the backup from {source} is unusable: {e}")))?;
    store::write_backup_file(&args.path, &bytes)
        .map_err(|e| Failure::Runtime(format!("cannot write {}: {e}", args.path.display())))?;
    out!(
        "backed up {} (from {source}) to {}: {}",
        state_dir.display(),
        args.path.display(),
        describe(&summary)
    );
    Ok(())
}

pub(super) fn restore(config: &Config, args: &RestoreArgs) -> Result<(), Failure> {
    let state_dir = &config.site.state_dir;
    super::owner::ensure_owner(state_dir)?;
    let bytes = std::fs::read(&args.path)
        .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", args.path.display())))?;
    let summary = match store::restore(state_dir, &bytes) {
        Ok(summary) => summary,
        Err(StoreError::Locked(dir)) => {
            return Err(Failure::Runtime(format!(
                "the daemon is running and holds the store in {}: stop it first \
                 (sudo systemctl stop portier), restore, then start it again; nothing was changed",
                dir.display()
            )));
        }
        Err(e @ StoreError::Backup(_)) => {
            return Err(Failure::Runtime(format!(
                "{}: {e}; nothing was changed",
                args.path.display()
            )));
        }
        Err(other) => return Err(Failure::Runtime(other.to_string())),
    };
    let snapshot = match Store::open(state_dir).and_then(|s| s.load_snapshot()) {
        Ok(Some(stored)) => format!(
            "snapshot v{} synced {}",
            stored.version,
            stored.synced_at.format("%Y-%m-%d %H:%M UTC")
        ),
        Ok(None) => "no snapshot (run portier sync)".to_owned(),
        Err(e) => format!("but {e}"),
    };
    out!(
        "restored {} into {}: {snapshot}; {}. The replaced store is kept as {}/*.before-restore",
        args.path.display(),
        state_dir.display(),
        describe(&summary),
        state_dir.display()
    );
    Ok(())
}

fn describe(summary: &BackupSummary) -> String {
    format!(
        "events: {}, check-ins waiting for Cobot: {}, cached app tokens: {} ({} bytes)",
        summary.entries("events"),
        summary.entries("outbox"),
        summary.entries("app_tokens"),
        summary.bytes
    )
}
