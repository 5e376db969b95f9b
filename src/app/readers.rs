//! What a card reader sends, and how repeated or replayed messages are recognised.
//!
//! A reader publishes a credential on its topic: JSON `{"credential": "04A1B2C3"}` (optionally
//! with `"ts"`, Unix seconds) or the plain card id as text. A payload is JSON only if it starts
//! with `{`. Anything larger than 1 KiB, empty, or not understood is denied as malformed, with a
//! reason, and never crashes anything. A message whose `ts` is more than 10 s old is denied as
//! stale. The same payload on the same reader within 2 s is answered again with the first
//! result (same decision id) and opens nothing new.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Larger payloads are denied as malformed.
pub(crate) const MAX_PAYLOAD: usize = 1024;
/// A `ts` older than this is stale.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10);
/// A repeated payload within this window gets the first answer again.
pub(crate) const REPEAT_WINDOW: Duration = Duration::from_secs(2);

/// What a reader message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReaderPayload {
    /// A card id to decide on.
    Card(String),
    /// Not understood: denied with this reason.
    Malformed(String),
    /// Too old to act on: denied with this reason.
    Stale(String),
}

#[derive(Debug, Deserialize)]
struct JsonPayload {
    credential: Option<serde_json::Value>,
    ts: Option<serde_json::Value>,
}

/// Interprets a reader payload received at `now`.
pub(crate) fn parse_payload(payload: &[u8], now: DateTime<Utc>) -> ReaderPayload {
    use ReaderPayload::{Card, Malformed, Stale};
    if payload.len() > MAX_PAYLOAD {
        return Malformed(format!(
            "malformed reader message: {} bytes, more than the 1 KiB allowed",
            payload.len()
        ));
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return Malformed("malformed reader message: not UTF-8 text".into());
    };
    if !text.starts_with('{') {
        let card = text.trim();
        if card.is_empty() {
            return Malformed("malformed reader message: empty".into());
        }
        if card.chars().any(char::is_control) {
            return Malformed("malformed reader message: control characters in the card id".into());
        }
        return Card(card.to_owned());
    }
    let parsed: JsonPayload = match serde_json::from_str(text) {
        Ok(p) => p,
        Err(e) => return Malformed(format!("malformed reader message: invalid JSON ({e})")),
    };
    if let Some(ts) = parsed.ts {
        let Some(seconds) = ts.as_f64().filter(|s| s.is_finite()) else {
            return Malformed("malformed reader message: \"ts\" is not a number of seconds".into());
        };
        let age = now.timestamp_millis() as f64 / 1000.0 - seconds;
        if age > MAX_AGE.as_secs_f64() {
            return Stale(format!(
                "stale reader message: sent {age:.0} s ago, more than {} s",
                MAX_AGE.as_secs()
            ));
        }
    }
    match parsed.credential {
        Some(serde_json::Value::String(card)) if !card.trim().is_empty() => {
            Card(card.trim().to_owned())
        }
        Some(_) => Malformed("malformed reader message: \"credential\" is not a card id".into()),
        None => Malformed("malformed reader message: no \"credential\"".into()),
    }
}

/// The answer published on `<reader topic>/result` (never retained).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReaderResult {
    /// Whether the door opens.
    pub granted: bool,
    /// The reader's unit.
    pub unit: String,
    /// Why.
    pub reason: String,
    /// The decision's id (also in the event and the lock command).
    pub decision_id: String,
}

/// Recent answers per (reader, payload), to answer repeats without acting twice.
#[derive(Debug, Default)]
pub(crate) struct RecentResults {
    answers: HashMap<(usize, Vec<u8>), (Instant, ReaderResult)>,
}

impl RecentResults {
    /// The answer given to the same payload on the same reader within the window, if any.
    pub(crate) fn repeat(
        &mut self,
        reader: usize,
        payload: &[u8],
        now: Instant,
    ) -> Option<ReaderResult> {
        self.answers
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < REPEAT_WINDOW);
        self.answers
            .get(&(reader, payload.to_vec()))
            .map(|(_, result)| result.clone())
    }

    /// Remembers the answer to a payload.
    pub(crate) fn remember(
        &mut self,
        reader: usize,
        payload: &[u8],
        now: Instant,
        result: ReaderResult,
    ) {
        self.answers
            .insert((reader, payload.to_vec()), (now, result));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000, 0).unwrap()
    }

    #[test]
    fn plain_text_and_json_payloads_carry_a_card() {
        assert_eq!(
            parse_payload(b" 04A1B2C3 \n", now()),
            ReaderPayload::Card("04A1B2C3".into())
        );
        assert_eq!(
            parse_payload(br#"{"credential":"04:a1:b2"}"#, now()),
            ReaderPayload::Card("04:a1:b2".into())
        );
        let fresh = format!(r#"{{"credential":"04A1","ts":{}}}"#, now().timestamp() - 3);
        assert_eq!(
            parse_payload(fresh.as_bytes(), now()),
            ReaderPayload::Card("04A1".into())
        );
    }

    #[test]
    fn bad_payloads_are_malformed_with_a_reason() {
        for payload in [
            &b""[..],
            b"   ",
            b"{not json",
            br#"{"card":"x"}"#,
            br#"{"credential":42}"#,
            br#"{"credential":"x","ts":"yesterday"}"#,
            b"\xff\xfe",
            b"04\x00A1",
        ] {
            assert!(
                matches!(parse_payload(payload, now()), ReaderPayload::Malformed(_)),
                "{payload:?}"
            );
        }
        let big = vec![b'A'; MAX_PAYLOAD + 1];
        assert!(
            matches!(parse_payload(&big, now()), ReaderPayload::Malformed(r) if r.contains("1 KiB"))
        );
    }

    #[test]
    fn a_message_older_than_ten_seconds_is_stale() {
        let old = format!(r#"{{"credential":"04A1","ts":{}}}"#, now().timestamp() - 11);
        assert!(matches!(
            parse_payload(old.as_bytes(), now()),
            ReaderPayload::Stale(_)
        ));
    }

    #[test]
    fn a_repeat_within_two_seconds_gets_the_first_answer_only_on_the_same_reader() {
        let mut recent = RecentResults::default();
        let t0 = Instant::now();
        let result = ReaderResult {
            granted: true,
            unit: "front_door".into(),
            reason: "ok".into(),
            decision_id: "d1".into(),
        };
        recent.remember(0, b"04A1", t0, result.clone());
        assert_eq!(
            recent.repeat(0, b"04A1", t0 + Duration::from_millis(1500)),
            Some(result)
        );
        assert_eq!(
            recent.repeat(1, b"04A1", t0 + Duration::from_millis(1500)),
            None
        );
        assert_eq!(
            recent.repeat(0, b"04A1", t0 + Duration::from_millis(2100)),
            None
        );
    }
}
