//! The repeat window: the same payload on the same reader within 2 s is answered again with
//! the first answer (same decision id) and opens nothing new.
//!
//! Readers resend while a card stays on them, and a flaky link may deliver a message twice;
//! neither may open the door twice or write two events. Only the reader loop uses this.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use super::MAX_PAYLOAD;

/// A repeated payload within this window gets the first answer again.
pub(crate) const REPEAT_WINDOW: Duration = Duration::from_secs(2);

/// An answer as it becomes known: `None` until the first message's event is durable.
pub(crate) type Pending<T> = watch::Receiver<Option<T>>;

/// Recent answers per (reader, payload), to answer repeats without acting twice. Payloads are
/// kept as SHA-256 digests (see [`digest`]), so a burst of large payloads costs 32 bytes each.
#[derive(Debug)]
pub(crate) struct RecentAnswers<T> {
    answers: HashMap<(usize, [u8; 32]), (Instant, Pending<T>)>,
}

impl<T> Default for RecentAnswers<T> {
    fn default() -> Self {
        Self {
            answers: HashMap::new(),
        }
    }
}

/// The repeat key of a payload. An oversized one is denied for its size alone, so its length
/// with its first and last KiB identify it well enough, and hashing stays cheap on the reader
/// loop however large the transport lets payloads be.
fn digest(payload: &[u8]) -> [u8; 32] {
    if payload.len() <= 2 * MAX_PAYLOAD {
        return Sha256::digest(payload).into();
    }
    let mut hasher = Sha256::new();
    hasher.update((payload.len() as u64).to_be_bytes());
    hasher.update(&payload[..MAX_PAYLOAD]);
    hasher.update(&payload[payload.len() - MAX_PAYLOAD..]);
    hasher.finalize().into()
}

impl<T> RecentAnswers<T> {
    /// The answer (maybe still pending) given to the same payload on the same reader within
    /// the window, if any.
    pub(crate) fn repeat(
        &mut self,
        reader: usize,
        payload: &[u8],
        now: Instant,
    ) -> Option<Pending<T>> {
        self.answers
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < REPEAT_WINDOW);
        self.answers
            .get(&(reader, digest(payload)))
            .map(|(_, answer)| answer.clone())
    }

    /// Remembers the answer to a payload; the returned sender fills it in.
    pub(crate) fn remember(
        &mut self,
        reader: usize,
        payload: &[u8],
        now: Instant,
    ) -> watch::Sender<Option<T>> {
        let (tx, rx) = watch::channel(None);
        self.answers.insert((reader, digest(payload)), (now, rx));
        tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_repeat_within_two_seconds_gets_the_first_answer_only_on_the_same_reader() {
        let mut recent = RecentAnswers::default();
        let t0 = Instant::now();
        let answer = recent.remember(0, b"04A1", t0);
        let mut pending = recent
            .repeat(0, b"04A1", t0 + Duration::from_millis(1500))
            .unwrap();
        answer.send_replace(Some("decision d1"));
        let known = *pending.wait_for(Option::is_some).await.unwrap();
        assert_eq!(known, Some("decision d1"));
        assert!(
            recent
                .repeat(1, b"04A1", t0 + Duration::from_millis(1500))
                .is_none()
        );
        assert!(
            recent
                .repeat(0, b"04A1", t0 + Duration::from_millis(2100))
                .is_none()
        );
    }

    #[test]
    fn oversized_payloads_are_told_apart_by_length_and_ends() {
        let big = vec![b'A'; 100 * 1024];
        let mut other_end = big.clone();
        other_end[100 * 1024 - 1] = b'B';
        assert_eq!(digest(&big), digest(&big.clone()));
        assert_ne!(digest(&big), digest(&big[1..]));
        assert_ne!(digest(&big), digest(&other_end));
        assert_ne!(digest(b"04A1"), digest(b"04A2"));
    }
}
