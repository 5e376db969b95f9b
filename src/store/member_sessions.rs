//! Member page sessions: who logged in with their Cobot account, until when.
//!
//! A session is kept under the SHA-256 of its cookie value, never the value itself, so a copy
//! of the state directory opens no doors. It lasts from login until `member_page.session_ttl`
//! without asking Cobot again (doors keep working offline); an admin can revoke a user's
//! sessions. Expired ones are dropped by the daemon's hourly retention run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::tokens::token_hash;
use super::{Store, StoreError, decode, encode};

/// One member page session.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MemberSession {
    /// The Cobot user id the login returned.
    pub user_id: String,
    /// When the member logged in.
    pub created: DateTime<Utc>,
    /// When the session ends.
    pub expires: DateTime<Utc>,
    /// The token state-changing requests of this session carry (CSRF).
    pub csrf: String,
}

impl Store {
    /// Keeps a new session under the hash of its cookie value, durably.
    pub(crate) async fn save_member_session(
        &self,
        cookie: &str,
        session: &MemberSession,
    ) -> Result<(), StoreError> {
        let bytes = encode("member session", session)?;
        {
            let _gate = self.writing();
            self.member_sessions
                .insert(token_hash(cookie), bytes)
                .map_err(|e| self.db_error(e))?;
        }
        self.flush().await
    }

    /// The session of this cookie value, if it has not expired at `now`.
    pub(crate) fn member_session(
        &self,
        cookie: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<MemberSession>, StoreError> {
        let Some(bytes) = self
            .member_sessions
            .get(token_hash(cookie))
            .map_err(|e| self.db_error(e))?
        else {
            return Ok(None);
        };
        let session: MemberSession = decode("member session", &bytes)?;
        Ok((session.expires > now).then_some(session))
    }

    /// Ends the session of this cookie value (logout).
    pub(crate) fn end_member_session(&self, cookie: &str) -> Result<(), StoreError> {
        let _gate = self.writing();
        self.member_sessions
            .remove(token_hash(cookie))
            .map_err(|e| self.db_error(e))?;
        Ok(())
    }

    /// Ends every session of `user_id` (every session when `None`); returns how many.
    pub(crate) fn revoke_member_sessions(
        &self,
        user_id: Option<&str>,
    ) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut revoked = 0;
        for item in self.member_sessions.iter() {
            let (key, bytes) = item.map_err(|e| self.db_error(e))?;
            let matches = match user_id {
                None => true,
                Some(user) => decode::<MemberSession>("member session", &bytes)
                    .map(|s| s.user_id == user)
                    .unwrap_or(true),
            };
            if matches {
                batch.remove(key);
                revoked += 1;
            }
        }
        self.writing_batch(&self.member_sessions, batch)?;
        Ok(revoked)
    }

    /// Drops sessions expired at `now` (and unreadable ones); returns how many went.
    pub(crate) fn prune_member_sessions(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut batch = sled::Batch::default();
        let mut dropped = 0;
        for item in self.member_sessions.iter() {
            let (key, bytes) = item.map_err(|e| self.db_error(e))?;
            let keep = decode::<MemberSession>("member session", &bytes)
                .map(|s| s.expires > now)
                .unwrap_or(false);
            if !keep {
                batch.remove(key);
                dropped += 1;
            }
        }
        self.writing_batch(&self.member_sessions, batch)?;
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + secs, 0).unwrap_or_default()
    }

    fn session(user: &str, expires: i64) -> MemberSession {
        MemberSession {
            user_id: user.into(),
            created: at(0),
            expires: at(expires),
            csrf: "c".into(),
        }
    }

    #[tokio::test]
    async fn sessions_last_until_they_expire_are_revoked_per_user_and_never_keep_the_cookie() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        store
            .save_member_session("cookie-a", &session("u1", 100))
            .await
            .expect("save");
        store
            .save_member_session("cookie-b", &session("u2", 100))
            .await
            .expect("save");
        store
            .save_member_session("cookie-c", &session("u1", 10))
            .await
            .expect("save");
        assert_eq!(
            store.member_session("cookie-a", at(50)).expect("read"),
            Some(session("u1", 100))
        );
        assert_eq!(
            store.member_session("cookie-c", at(50)).expect("read"),
            None
        );
        assert_eq!(store.member_session("nope", at(0)).expect("read"), None);
        for item in store.member_sessions.iter() {
            let (key, _) = item.expect("entry");
            assert_ne!(
                key.as_ref(),
                b"cookie-a",
                "the cookie itself is never a key"
            );
        }
        assert_eq!(store.prune_member_sessions(at(50)).expect("prune"), 1);
        assert_eq!(store.revoke_member_sessions(Some("u1")).expect("revoke"), 1);
        assert_eq!(
            store.member_session("cookie-a", at(50)).expect("read"),
            None
        );
        assert!(
            store
                .member_session("cookie-b", at(50))
                .expect("read")
                .is_some()
        );
        store.end_member_session("cookie-b").expect("end");
        assert_eq!(
            store.member_session("cookie-b", at(50)).expect("read"),
            None
        );
        assert_eq!(store.revoke_member_sessions(None).expect("revoke"), 0);
    }
}
