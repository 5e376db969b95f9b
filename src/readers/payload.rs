//! The text payload format readers send (today the MQTT reader; a USB keyboard-wedge reader
//! would send the same): parsing only, no I/O.
//!
//! A reader sends a credential as JSON `{"credential": "04A1B2C3"}` (optionally
//! with `"ts"`, Unix seconds) or the plain card id as text. A payload is JSON only if it starts
//! with `{`. Anything larger than 1 KiB, empty, or not understood is denied as malformed, with a
//! reason, and never crashes anything (the MQTT client takes packets of over 1 MiB, so every
//! payload the broker delivers gets here). A message whose `ts` is more than 10 s old is denied
//! as stale, and one more than 10 s in the future as clock skew (the reader's clock or ours is
//! wrong; acting on it would let a recorded message be replayed later). Repeats are the reader
//! loop's business (`readers::repeat`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Larger payloads are denied as malformed.
pub(crate) const MAX_PAYLOAD: usize = 1024;
/// A `ts` older than this is stale; one further than this in the future is clock skew.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(10);

/// What a reader message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReaderPayload {
    /// A card id to decide on (as sent; the door pipeline normalises and checks it).
    Card(String),
    /// Not understood: denied with this reason.
    Malformed(String),
    /// Too old to act on: denied with this reason.
    Stale(String),
    /// Sent from the future: denied with this reason (starts with "clock skew").
    ClockSkew(String),
}

#[derive(Debug, Deserialize)]
struct JsonPayload {
    credential: Option<serde_json::Value>,
    ts: Option<serde_json::Value>,
}

/// Interprets a reader payload received at `now`.
pub(crate) fn parse_payload(payload: &[u8], now: DateTime<Utc>) -> ReaderPayload {
    use ReaderPayload::{Card, ClockSkew, Malformed, Stale};
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
        // Any JSON number (integer, float, huge, negative) as f64: the arithmetic below cannot
        // overflow or panic, and serde_json never yields NaN or infinity.
        let Some(seconds) = ts.as_f64().filter(|s| s.is_finite()) else {
            return Malformed("malformed reader message: \"ts\" is not a number of seconds".into());
        };
        let age = now.timestamp_millis() as f64 / 1000.0 - seconds;
        let limit = MAX_AGE.as_secs_f64();
        if age > limit {
            return Stale(format!(
                "stale reader message: sent {} s ago, more than {} s",
                shown_seconds(age),
                MAX_AGE.as_secs()
            ));
        }
        if -age > limit {
            return ClockSkew(format!(
                "clock skew: the reader message is dated {} s ahead of this gateway's clock, more \
                 than {} s; check the reader's and the gateway's time",
                shown_seconds(-age),
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

/// Seconds for a reason sentence: whole seconds, absurd values capped.
fn shown_seconds(seconds: f64) -> String {
    const CAP: f64 = 1e12;
    if seconds > CAP {
        format!("more than {CAP:.0}")
    } else {
        format!("{seconds:.0}")
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
    fn a_message_more_than_ten_seconds_in_the_future_is_clock_skew() {
        let ahead = format!(r#"{{"credential":"04A1","ts":{}}}"#, now().timestamp() + 11);
        assert!(matches!(
            parse_payload(ahead.as_bytes(), now()),
            ReaderPayload::ClockSkew(r) if r.starts_with("clock skew")
        ));
        let near = format!(r#"{{"credential":"04A1","ts":{}}}"#, now().timestamp() + 9);
        assert_eq!(
            parse_payload(near.as_bytes(), now()),
            ReaderPayload::Card("04A1".into())
        );
    }

    #[test]
    fn hostile_ts_values_are_denied_never_a_panic() {
        let far_future = [
            i64::MAX.to_string(),
            u64::MAX.to_string(),
            "1e300".to_owned(),
            "99999999999999999999999999999".to_owned(),
        ];
        for ts in far_future {
            let payload = format!(r#"{{"credential":"04A1","ts":{ts}}}"#);
            assert!(
                matches!(
                    parse_payload(payload.as_bytes(), now()),
                    ReaderPayload::ClockSkew(_)
                ),
                "{ts}"
            );
        }
        for ts in [
            i64::MIN.to_string(),
            "-1".into(),
            "0".into(),
            "-1e300".into(),
        ] {
            let payload = format!(r#"{{"credential":"04A1","ts":{ts}}}"#);
            assert!(
                matches!(
                    parse_payload(payload.as_bytes(), now()),
                    ReaderPayload::Stale(_)
                ),
                "{ts}"
            );
        }
        for ts in ["1e400", "true", "[1]", "{}", "\"1795000000\""] {
            let payload = format!(r#"{{"credential":"04A1","ts":{ts}}}"#);
            assert!(
                matches!(
                    parse_payload(payload.as_bytes(), now()),
                    ReaderPayload::Malformed(_)
                ),
                "{ts}"
            );
        }
        let float = format!(
            r#"{{"credential":"04A1","ts":{}.75}}"#,
            now().timestamp() - 2
        );
        assert_eq!(
            parse_payload(float.as_bytes(), now()),
            ReaderPayload::Card("04A1".into())
        );
    }
}
