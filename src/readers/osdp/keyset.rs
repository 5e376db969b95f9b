//! `portier osdp keyset`: a new secure channel key for a reader in install mode.
//!
//! A new reader (or one reset to install mode) takes a secure channel only with the default
//! install key, SCBK-D, and then a key of the panel's. This is the one place Portier sets up
//! such a session: libosdp, given the new key and not told to insist on it, falls back to
//! SCBK-D and sends the reader the new key (osdp_KEYSET). The key is written to
//! `<scbk_file>.new` first, so it is never lost, and becomes `scbk_file` only once a second
//! panel, insisting on the new key alone, has its secure channel.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::panel::{REFRESH, control_panel, pause};
use super::serial::PortProblem;
use crate::config::OsdpLink;

/// How long the second panel may take to set up the secure channel with the new key.
const CONFIRM: Duration = Duration::from_secs(10);
/// How long the first panel goes on after its secure channel, for the key set to complete.
const SETTLE: Duration = Duration::from_secs(2);

/// Why a key was not set.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysetError {
    /// The key file cannot be written.
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// libosdp refused the setup.
    #[error("cannot set up OSDP: {0}")]
    Setup(String),
    /// The reader did not set up a secure channel with the install key.
    #[error(
        "the reader at OSDP address {address} did not take a new key within {}{port}: put it \
         in install mode (see its manual) and try again",
        humantime::format_duration(*.within)
    )]
    NotInstallMode {
        /// The reader's address.
        address: u8,
        /// How long it was given.
        within: Duration,
        /// What is known of the port, if it failed.
        port: String,
    },
    /// The reader took a key but does not set up the secure channel with it.
    #[error(
        "the reader took a key but refuses the secure channel with it; the key is kept in {} \
         (not made the reader's key): try again",
        .path.display()
    )]
    NotConfirmed {
        /// Where the new key is kept.
        path: PathBuf,
    },
}

/// Sends the reader on `link` a new random key and, once it works, writes it to `file`.
pub(crate) fn keyset(
    name: &str,
    link: &OsdpLink,
    file: &Path,
    within: Duration,
) -> Result<(), KeysetError> {
    let key: [u8; 16] = rand::random();
    let pending = pending_path(file);
    write_key(&pending, &key)?;
    let problem = PortProblem::default();
    // 1: the new key, falling back to the install key, which sends the reader the new key.
    let mut panel = control_panel(name, link, Some(key), false, &problem)
        .map_err(|e| KeysetError::Setup(e.to_string()))?;
    let started = crate::clock::instant();
    let mut secure_since: Option<Instant> = None;
    while secure_since.is_none_or(|since| since.elapsed() < SETTLE) {
        if started.elapsed() > within {
            let port = problem
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            return Err(KeysetError::NotInstallMode {
                address: link.address,
                within,
                port,
            });
        }
        panel.refresh();
        if secure_since.is_none() && panel.is_sc_active(0) {
            secure_since = Some(crate::clock::instant());
        }
        pause(REFRESH);
    }
    drop(panel);
    // 2: the new key alone.
    let mut panel = control_panel(name, link, Some(key), true, &problem)
        .map_err(|e| KeysetError::Setup(e.to_string()))?;
    let started = crate::clock::instant();
    while !panel.is_sc_active(0) {
        if started.elapsed() > CONFIRM {
            return Err(KeysetError::NotConfirmed { path: pending });
        }
        panel.refresh();
        pause(REFRESH);
    }
    drop(panel);
    std::fs::rename(&pending, file).map_err(|source| KeysetError::Write {
        path: file.to_owned(),
        source,
    })
}

/// Where a key waits until the reader has it: `<file>.new`.
fn pending_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

/// Writes `key` as 32 hex digits, mode 0600.
fn write_key(path: &Path, key: &[u8; 16]) -> Result<(), KeysetError> {
    let text: String = key.iter().map(|b| format!("{b:02X}")).collect();
    // Made anew, so that the mode is this one whatever an earlier file had.
    let _ = std::fs::remove_file(path);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| {
            f.write_all(format!("{text}\n").as_bytes())?;
            f.sync_all()
        });
    written.map_err(|source| KeysetError::Write {
        path: path.to_owned(),
        source,
    })
}
