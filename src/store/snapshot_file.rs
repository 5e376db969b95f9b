//! The snapshot record's own file, `<state_dir>/snapshot`.
//!
//! Cobot's data of a sync is one large record (about 4 MB for 10,000 members) that is written
//! once per sync and read once per start or reload. In sled it stayed in sled's page cache for
//! good after every read or write, next to the compiled snapshot that is all the daemon needs,
//! so it lives in a plain file instead: written to a temporary file, synced, renamed over the
//! old one and the directory synced, so after a crash a reader finds the old record or the new
//! one, never a mix. The file holds the same [`super::record`] format as every sled value.
//! Stores written before this file existed keep the record in sled's default tree under
//! `snapshot`; it is read from there until the next sync writes the file (and removes it).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// The file's name in the state directory.
pub(super) const FILE: &str = "snapshot";

/// The path of the snapshot file in `state_dir`.
pub(super) fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The file's bytes, or `None` when there is no file.
pub(super) fn read(state_dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = match File::open(path(state_dir)) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Replaces the file at `target` with what `fill` writes, atomically and durably.
pub(super) fn replace(
    target: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = target
        .parent()
        .ok_or_else(|| std::io::Error::other("the path has no directory"))?;
    let mut tmp_name = target.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = target.with_file_name(tmp_name);
    let written = (|| {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut out = BufWriter::new(file);
        fill(&mut out)?;
        out.flush()?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, target)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
