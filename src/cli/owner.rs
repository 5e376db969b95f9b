//! Who may write the state directory: only its owner (the `portier` service user on a box).
//!
//! `sudo portier sync` run as root would otherwise create root-owned files in
//! `/var/lib/portier` (the sled cache, its lock file, the Cobot token) that the service, running
//! as `portier`, can no longer open. So a command that would write the state directory checks
//! its owner first and, when that is another user, refuses with exit 1 and the command to run
//! instead (`sudo -u portier …`). `members`, `explain` and `sync` still work while the daemon
//! holds the store: they ask it over HTTP and write nothing themselves.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Failure;

/// The state directory belongs to someone other than the user running this command.
#[derive(Debug)]
pub(crate) struct ForeignOwner {
    dir: PathBuf,
    owner_uid: u32,
    owner: Option<String>,
    me_uid: u32,
    me: Option<String>,
}

impl ForeignOwner {
    /// The refusal: exit 1, naming the owner and the command to run as them.
    pub(crate) fn refusal(&self) -> Failure {
        let owner = match &self.owner {
            Some(name) => format!("user {name} (uid {})", self.owner_uid),
            None => format!("uid {}", self.owner_uid),
        };
        let me = match &self.me {
            Some(name) => format!("{name} (uid {})", self.me_uid),
            None => format!("uid {}", self.me_uid),
        };
        // sudo takes a user name, or `#UID` for a uid without one.
        let sudo_user = match &self.owner {
            Some(name) => name.clone(),
            None => format!("'#{}'", self.owner_uid),
        };
        Failure::Runtime(format!(
            "the state directory {} belongs to {owner}, and this command would write it as \
             {me}: files it made would lock the service out. Run it as the owner: \
             sudo -u {sudo_user} {}",
            self.dir.display(),
            this_command(),
        ))
    }
}

/// `Some` when `state_dir` exists and belongs to another user than the effective one. A
/// missing directory is made by whoever runs first (the package makes it for `portier`).
pub(crate) fn foreign_owner(state_dir: &Path) -> Option<ForeignOwner> {
    let meta = std::fs::metadata(state_dir).ok()?;
    let me = nix::unistd::geteuid();
    if meta.uid() == me.as_raw() {
        return None;
    }
    let name = |uid: u32| {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    };
    Some(ForeignOwner {
        dir: state_dir.to_path_buf(),
        owner_uid: meta.uid(),
        owner: name(meta.uid()),
        me_uid: me.as_raw(),
        me: name(me.as_raw()),
    })
}

/// Refuses (exit 1) when the state directory belongs to another user: for the commands that
/// write it and have no daemon to ask (`run`, `cobot connect`).
pub(crate) fn ensure_owner(state_dir: &Path) -> Result<(), Failure> {
    match foreign_owner(state_dir) {
        Some(foreign) => Err(foreign.refusal()),
        None => Ok(()),
    }
}

/// Whether a running daemon holds the store in `state_dir`, found without writing anything:
/// the lock file is opened read-only and a shared lock tried (the daemon holds an exclusive one).
pub(crate) fn daemon_holds(state_dir: &Path) -> bool {
    let Ok(lock) = File::open(state_dir.join(crate::store::LOCK_FILE)) else {
        return false;
    };
    match lock.try_lock_shared() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// The command line as typed, with the program as `portier`, quoted for a shell.
fn this_command() -> String {
    let mut words = vec!["portier".to_owned()];
    words.extend(std::env::args_os().skip(1).map(|a| shell_quote(&a)));
    words.join(" ")
}

fn shell_quote(word: &OsString) -> String {
    let text = word.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_with_shell_characters_are_quoted() {
        assert_eq!(shell_quote(&OsString::from("members")), "members");
        assert_eq!(
            shell_quote(&OsString::from("/etc/portier/portier.toml")),
            "/etc/portier/portier.toml"
        );
        assert_eq!(shell_quote(&OsString::from("a b")), "'a b'");
        assert_eq!(shell_quote(&OsString::from("it's")), r"'it'\''s'");
        assert_eq!(shell_quote(&OsString::from("")), "''");
    }

    #[test]
    fn my_own_directory_is_not_foreign_and_a_missing_one_neither() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(foreign_owner(dir.path()).is_none());
        assert!(foreign_owner(&dir.path().join("not-yet")).is_none());
    }
}
