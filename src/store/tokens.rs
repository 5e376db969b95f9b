//! The app-token cache: which Cobot user an app token belonged to when Cobot last said so.
//!
//! App opens ask Cobot's `/api/user` first; only when Cobot cannot be reached does the cache
//! answer, and only for tokens seen within `token_cache_ttl`. The key is the token's SHA-256,
//! never the token itself, so a copy of the state directory does not hand out working tokens.
//! Writes are not flushed one by one: losing the last half second of sightings in a power cut
//! only means those tokens need Cobot once more.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, decode, encode};

/// What the cache keeps per token hash.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct Sighting {
    /// The Cobot user id `/api/user` answered.
    user_id: String,
    /// When Cobot last confirmed it.
    seen_at: DateTime<Utc>,
}

/// The SHA-256 of an app token, the only form in which tokens are stored. Surrounding
/// whitespace is ignored, as the Cobot client ignores it when sending the token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// `ttl` as chrono's duration; a ttl too large to represent never expires.
fn ttl_delta(ttl: Duration) -> TimeDelta {
    TimeDelta::from_std(ttl).unwrap_or(TimeDelta::MAX)
}

fn expired(sighting: &Sighting, now: DateTime<Utc>, ttl: Duration) -> bool {
    now.signed_duration_since(sighting.seen_at) > ttl_delta(ttl)
}

impl Store {
    /// Remembers that Cobot said the token with this hash belongs to `user_id` at `seen_at`.
    pub(crate) fn remember_app_token(
        &self,
        token_sha256: [u8; 32],
        user_id: &str,
        seen_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sighting = Sighting {
            user_id: user_id.to_owned(),
            seen_at,
        };
        let bytes = encode("app token", &sighting)?;
        let _gate = self.writing();
        self.app_tokens
            .insert(token_sha256, bytes)
            .map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// The user the token with this hash belonged to, if Cobot confirmed it within `ttl` of
    /// `now`; `None` for unknown or expired tokens (answer 401 then).
    pub fn app_token_user(
        &self,
        token_sha256: &[u8; 32],
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let Some(bytes) = self
            .app_tokens
            .get(token_sha256)
            .map_err(|e| self.db_error(e))?
        else {
            return Ok(None);
        };
        let sighting: Sighting = decode("app token", &bytes)?;
        Ok((!expired(&sighting, now, ttl)).then_some(sighting.user_id))
    }

    /// Forgets a token, e.g. when Cobot answered that it does not know it (so it stops working
    /// offline too).
    pub(crate) fn forget_app_token(&self, token_sha256: &[u8; 32]) -> Result<(), StoreError> {
        let _gate = self.writing();
        self.app_tokens
            .remove(token_sha256)
            .map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// Drops tokens not confirmed within `ttl` of `now`; returns how many went. Unreadable
    /// entries are dropped too: they could never answer.
    pub(crate) fn prune_app_tokens(
        &self,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut dropped = 0;
        for item in self.app_tokens.iter() {
            let (key, bytes) = item.map_err(|e| self.db_error(e))?;
            let keep = decode::<Sighting>("app token", &bytes)
                .map(|s| !expired(&s, now, ttl))
                .unwrap_or(false);
            if !keep {
                batch.remove(key);
                dropped += 1;
            }
        }
        self.writing_batch(&self.app_tokens, batch)?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap()
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_remembered_token_answers_within_the_ttl_and_not_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hash = token_hash("app-token-1");
        store.remember_app_token(hash, "user-1", at(0)).unwrap();
        let ttl = 30 * DAY;
        assert_eq!(
            store.app_token_user(&hash, at(0), ttl).unwrap().as_deref(),
            Some("user-1")
        );
        let last_second = at(30 * 86_400);
        assert_eq!(
            store
                .app_token_user(&hash, last_second, ttl)
                .unwrap()
                .as_deref(),
            Some("user-1")
        );
        assert_eq!(
            store
                .app_token_user(&hash, at(30 * 86_400 + 1), ttl)
                .unwrap(),
            None
        );
    }

    #[test]
    fn seeing_a_token_again_restarts_its_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hash = token_hash("tok");
        store.remember_app_token(hash, "user-1", at(0)).unwrap();
        store
            .remember_app_token(hash, "user-1", at(86_400))
            .unwrap();
        let later = at(86_400 + 86_000);
        assert!(store.app_token_user(&hash, later, DAY).unwrap().is_some());
    }

    #[test]
    fn an_unknown_or_forgotten_token_has_no_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let hash = token_hash("tok");
        assert_eq!(store.app_token_user(&hash, at(0), DAY).unwrap(), None);
        store.remember_app_token(hash, "user-1", at(0)).unwrap();
        store.forget_app_token(&hash).unwrap();
        assert_eq!(store.app_token_user(&hash, at(0), DAY).unwrap(), None);
    }

    #[test]
    fn the_token_itself_is_never_written_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let secret = "very-secret-app-token-0123456789";
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .remember_app_token(token_hash(secret), "user-1", at(0))
                .unwrap();
            flush_to_disk(&store);
        }
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "token found in {}",
                entry.display()
            );
        }
    }

    #[test]
    fn hashing_ignores_surrounding_whitespace_only() {
        assert_eq!(token_hash(" abc\n"), token_hash("abc"));
        assert_ne!(token_hash("abc"), token_hash("abd"));
    }

    #[test]
    fn pruning_drops_expired_tokens_and_keeps_fresh_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .remember_app_token(token_hash("old"), "u1", at(0))
            .unwrap();
        store
            .remember_app_token(token_hash("new"), "u2", at(2 * 86_400))
            .unwrap();
        assert_eq!(store.prune_app_tokens(at(2 * 86_400), DAY).unwrap(), 1);
        let now = at(2 * 86_400);
        assert!(
            store
                .app_token_user(&token_hash("new"), now, DAY)
                .unwrap()
                .is_some()
        );
    }

    fn flush_to_disk(store: &Store) {
        store.db.flush().unwrap();
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
