//! Secret files: tokens, passwords and keys are read from files, never written inline.
//!
//! A secret file must be a regular file, readable by the service user and not readable by
//! others (mode 0600 or 0640): a token that any local user can read is refused rather than used,
//! because the admin token opens every door. Errors name the file and say what to do; they
//! never contain the secret, and nothing here logs it.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a secret file cannot be used. The caller reports it (naming the config key) and, for
/// `check-config`, exits 64.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file does not exist: create it (owned by the service user, mode 0600) or fix the path.
    #[error("{}: no such file", .path.display())]
    Missing {
        /// The secret file.
        path: PathBuf,
    },
    /// The file exists but cannot be read (permissions, I/O error): fix ownership or mode.
    #[error("{}: cannot read it: {source}", .path.display())]
    Unreadable {
        /// The secret file.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The path is a folder or a device, not a file.
    #[error("{}: not a regular file", .path.display())]
    NotAFile {
        /// The secret path.
        path: PathBuf,
    },
    /// Other users can read it: `chmod 600` (or 640) the file.
    #[error("{}: readable by others (mode {mode:04o}); chmod 600 (or 640) it", .path.display())]
    ReadableByOthers {
        /// The secret file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not UTF-8 text.
    #[error("{}: not text (UTF-8)", .path.display())]
    NotText {
        /// The secret file.
        path: PathBuf,
    },
    /// The file holds nothing but white space.
    #[error("{}: empty", .path.display())]
    Empty {
        /// The secret file.
        path: PathBuf,
    },
    /// A key file that holds no 128-bit key.
    #[error("{}: not a 128-bit key (32 hex digits); `portier osdp keyset` writes one", .path.display())]
    NotAKey {
        /// The key file.
        path: PathBuf,
    },
}

/// Reads a 128-bit key written as 32 hex digits (an OSDP secure channel base key), checked
/// like every secret file.
pub fn read_key(path: &Path) -> Result<[u8; 16], SecretError> {
    let text = read_secret(path)?;
    let not_a_key = || SecretError::NotAKey {
        path: path.to_owned(),
    };
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_a_key());
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| not_a_key())?;
    }
    Ok(key)
}

/// Reads a secret file and returns its contents with surrounding white space trimmed, after
/// checking that it is a regular file that others cannot read.
pub fn read_secret(path: &Path) -> Result<String, SecretError> {
    let metadata = std::fs::metadata(path).map_err(|source| missing_or_unreadable(path, source))?;
    if !metadata.is_file() {
        return Err(SecretError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(SecretError::ReadableByOthers {
            path: path.to_owned(),
            mode,
        });
    }
    let bytes = std::fs::read(path).map_err(|source| SecretError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText {
        path: path.to_owned(),
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(SecretError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(secret.to_owned())
}

/// Checks that a file that is not secret (a certificate) exists and can be opened.
pub(crate) fn check_readable(path: &Path) -> Result<(), SecretError> {
    let metadata = std::fs::metadata(path).map_err(|source| missing_or_unreadable(path, source))?;
    if !metadata.is_file() {
        return Err(SecretError::NotAFile {
            path: path.to_owned(),
        });
    }
    std::fs::File::open(path)
        .map(drop)
        .map_err(|source| missing_or_unreadable(path, source))
}

fn missing_or_unreadable(path: &Path, source: io::Error) -> SecretError {
    match source.kind() {
        io::ErrorKind::NotFound => SecretError::Missing {
            path: path.to_owned(),
        },
        _ => SecretError::Unreadable {
            path: path.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn secret(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).expect("write secret");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn a_secret_readable_by_others_is_rejected() {
        let dir = tempfile::tempdir().expect("temp dir");
        let open = secret(dir.path(), "open.token", "abc", 0o644);
        assert!(matches!(
            read_secret(&open),
            Err(SecretError::ReadableByOthers { mode: 0o644, .. })
        ));
    }

    #[test]
    fn private_and_group_readable_secrets_are_read_trimmed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let private = secret(dir.path(), "private.token", " abc\n", 0o600);
        let group = secret(dir.path(), "group.token", "abc", 0o640);
        assert_eq!(read_secret(&private).expect("private"), "abc");
        assert_eq!(read_secret(&group).expect("group-readable"), "abc");
    }

    #[test]
    fn missing_empty_and_folder_secrets_are_rejected_naming_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = read_secret(&dir.path().join("absent")).expect_err("missing");
        assert!(matches!(missing, SecretError::Missing { .. }));
        assert!(missing.to_string().contains("absent"));
        let empty = secret(dir.path(), "empty", " \n", 0o600);
        assert!(matches!(
            read_secret(&empty),
            Err(SecretError::Empty { .. })
        ));
        assert!(matches!(
            read_secret(dir.path()),
            Err(SecretError::NotAFile { .. })
        ));
    }
}
