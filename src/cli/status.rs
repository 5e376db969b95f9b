//! `portier status [--json]`: the running daemon's `/v1/status`, summarised for a person, with
//! the monitoring-plugin exit codes: 0 ok, 1 degraded, 2 failing, 3 no daemon answers.
//!
//! The answer is read defensively: every field is optional and one of an unexpected type counts
//! as absent, so a daemon of another version (fields added, renamed or reshaped) still gets a
//! summary of what it did say, and the exit code needs only `health.status`.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::output::out;
use super::remote::Daemon;
use super::{Failure, StatusArgs};
use crate::config::Config;

/// How long to wait for the daemon's answer: it is served from memory, so a daemon that takes
/// longer is as good as not answering (monitoring plugins are usually given 10 s in all).
const TIMEOUT: Duration = Duration::from_secs(8);

/// Exit code: no daemon answers, or its answer cannot be read.
const UNKNOWN: u8 = 3;

/// Runs `portier status`.
pub(super) fn run(config: &Config, args: &StatusArgs) -> Result<(), Failure> {
    let daemon = Daemon::public(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(format!("cannot start the async runtime: {e}")))?;
    let unknown = |message: String| {
        eprintln!("portier: {message}");
        Failure::Reported(UNKNOWN)
    };
    let (http_status, body) = runtime
        .block_on(daemon.get_raw("/v1/status", TIMEOUT))
        .map_err(|e| {
            unknown(format!(
                "no daemon answers at {} ({}): is it running? (systemctl status portier)",
                daemon.base(),
                error_chain(&e)
            ))
        })?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        unknown(format!(
            "{}/v1/status answered HTTP {http_status} without JSON: is that portier's listener?",
            daemon.base()
        ))
    })?;
    let doc: StatusDoc = serde_json::from_value(value).unwrap_or_default();
    let health = doc.health.as_ref().and_then(|h| h.status.as_deref());
    let code = match health {
        Some("ok") => 0,
        Some("degraded") => 1,
        Some("failing") => 2,
        other => {
            return Err(unknown(format!(
                "{}/v1/status answered HTTP {http_status} without a health status ({}): is that \
                 portier's listener?",
                daemon.base(),
                other.map_or("none".to_owned(), |s| format!("\"{s}\""))
            )));
        }
    };
    if args.json {
        // As the daemon sent it: every field, in its order.
        out!("{}", String::from_utf8_lossy(&body).trim());
    } else {
        for line in summary(&doc, crate::clock::now()) {
            out!("{line}");
        }
    }
    if code == 0 {
        Ok(())
    } else {
        Err(Failure::Reported(code))
    }
}

/// The innermost cause of reqwest's error: "Connection refused (os error 111)", "operation
/// timed out", rather than the request's URL again.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut innermost = e;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    innermost.to_string()
}

/// Deserializes `T`, or `None` when the value is absent, null or of another shape.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// `/v1/status` as far as the summary uses it.
#[derive(Debug, Default, Deserialize)]
struct StatusDoc {
    #[serde(default, deserialize_with = "lenient")]
    version: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    site: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    health: Option<HealthDoc>,
    #[serde(default, deserialize_with = "lenient")]
    snapshot: Option<SnapshotDoc>,
    #[serde(default, deserialize_with = "lenient")]
    last_sync_attempt: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient")]
    last_sync_success: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient")]
    last_sync_error: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    last_sync_seconds: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    guard: Option<GuardDoc>,
    #[serde(default, deserialize_with = "lenient")]
    offline_since: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient")]
    clock: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    locks: Option<BTreeMap<String, LockDoc>>,
    #[serde(default, deserialize_with = "lenient")]
    readers: Option<BTreeMap<String, ReaderDoc>>,
    #[serde(default, deserialize_with = "lenient")]
    mqtt_connected: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    lockdown: Option<LockdownDoc>,
    #[serde(default, deserialize_with = "lenient")]
    outbox_depth: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    outbox_oldest_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct HealthDoc {
    #[serde(default, deserialize_with = "lenient")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    reasons: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct SnapshotDoc {
    #[serde(default, deserialize_with = "lenient")]
    version: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    age_seconds: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    members: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    skipped_not_connected: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    member_errors: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct GuardDoc {
    #[serde(default, deserialize_with = "lenient")]
    state: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    revoked: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    granted_before: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct LockDoc {
    #[serde(default, deserialize_with = "lenient")]
    driver: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    ok: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    up: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    last_error: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    last_success: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Deserialize)]
struct ReaderDoc {
    #[serde(default, deserialize_with = "lenient")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    unit: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    enrol: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    online: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    secure_channel: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    problem: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    last_frame_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient")]
    bits: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    format: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    parity_ok: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct LockdownDoc {
    #[serde(default, deserialize_with = "lenient")]
    on: Option<bool>,
    #[serde(default, deserialize_with = "lenient")]
    reason: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    since: Option<DateTime<Utc>>,
}

/// One reader's row: `front (wiegand, front_door): online, last frame 12s ago (…), 26 bits
/// H10301, parity ok`. What the reader read is never shown (the daemon does not say it).
fn reader_row(id: &str, reader: &ReaderDoc, now: DateTime<Utc>) -> String {
    let kind = reader.kind.as_deref().unwrap_or("?");
    let serves = match (&reader.unit, reader.enrol) {
        (Some(unit), _) => unit.as_str(),
        (None, Some(true)) => "enrolment",
        (None, _) => "?",
    };
    let mut parts = Vec::new();
    match (reader.online, &reader.problem) {
        (Some(true), _) => parts.push("online".to_owned()),
        (Some(false), Some(problem)) => parts.push(format!("OFFLINE: {problem}")),
        (Some(false), None) => parts.push("OFFLINE".to_owned()),
        (None, _) => {}
    }
    match reader.secure_channel {
        Some(true) => parts.push("secure channel up".to_owned()),
        Some(false) => parts.push("secure channel DOWN".to_owned()),
        None => {}
    }
    parts.push(match reader.last_frame_at {
        Some(t) => format!("last frame {}", ago(t, now)),
        None => "no frame yet".to_owned(),
    });
    if let Some(bits) = reader.bits {
        parts.push(match &reader.format {
            Some(format) => format!("{bits} bits {format}"),
            None => format!("{bits} bits"),
        });
    }
    match reader.parity_ok {
        Some(true) => parts.push("parity ok".to_owned()),
        Some(false) => parts.push("parity FAILED".to_owned()),
        None => {}
    }
    format!("{id} ({kind}, {serves}): {}", parts.join(", "))
}

/// A duration in seconds, short: `45s`, `3m 12s`, `2h 5m`, `3d 4h`.
fn short(seconds: i64) -> String {
    let s = seconds.max(0);
    let (d, h, m) = (s / 86_400, s / 3_600 % 24, s / 60 % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if s >= 3_600 {
        format!("{h}h {m}m")
    } else if s >= 60 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

/// `3m 12s ago (2026-12-01T10:48:02Z)`.
fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (now - t).num_seconds();
    let at = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if seconds < 0 {
        format!("{at} ({} in the future)", short(-seconds))
    } else {
        format!("{} ago ({at})", short(seconds))
    }
}

/// The summary lines: a heading, then one labelled block per part.
fn summary(doc: &StatusDoc, now: DateTime<Utc>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut block = |label: &str, rows: Vec<String>| {
        for (i, row) in rows.into_iter().enumerate() {
            let label = if i == 0 { label } else { "" };
            lines.push(format!("{label:<10} {row}").trim_end().to_owned());
        }
    };
    let unknown = || "?".to_owned();
    let health = doc.health.as_ref();
    let verdict = health
        .and_then(|h| h.status.clone())
        .unwrap_or_else(unknown);
    block(
        "Portier",
        vec![format!(
            "{} at site {}: {}",
            doc.version.clone().unwrap_or_else(unknown),
            doc.site.clone().unwrap_or_else(unknown),
            verdict.to_uppercase()
        )],
    );

    let mut sync = vec![match doc.last_sync_success {
        Some(t) => format!("last success {}", ago(t, now)),
        None => "no successful sync yet".to_owned(),
    }];
    if let Some(t) = doc.last_sync_attempt {
        let took = doc
            .last_sync_seconds
            .map(|s| format!(", took {s:.1}s"))
            .unwrap_or_default();
        sync.push(format!("last attempt {}{took}", ago(t, now)));
    }
    if let Some(error) = &doc.last_sync_error {
        sync.push(format!("last error: {error}"));
    }
    if let Some(t) = doc.offline_since {
        sync.push(format!("offline since {}", ago(t, now)));
    }
    block("Sync", sync);

    block(
        "Snapshot",
        vec![match &doc.snapshot {
            None => "none: every request is denied until a sync succeeds".to_owned(),
            Some(s) => {
                let count = |n: Option<u64>| n.map_or_else(unknown, |n| n.to_string());
                format!(
                    "version {}, synced {} ago: {} members, {} not connected to Cobot, {} with \
                     errors",
                    count(s.version),
                    s.age_seconds.map_or_else(unknown, short),
                    count(s.members),
                    count(s.skipped_not_connected),
                    count(s.member_errors),
                )
            }
        }],
    );

    if let Some(guard) = &doc.guard {
        let row = match guard.state.as_deref() {
            Some("held") => format!(
                "HELD: the last sync would remove access from {} of {} granted members \
                 (portier sync --accept-revocations applies it)",
                guard.revoked.map_or_else(unknown, |n| n.to_string()),
                guard.granted_before.map_or_else(unknown, |n| n.to_string()),
            ),
            Some(state) => state.to_owned(),
            None => unknown(),
        };
        block("Guard", vec![row]);
    }

    let locks = doc.locks.as_ref().map(|locks| {
        locks
            .iter()
            .map(|(id, lock)| {
                let driver = lock.driver.clone().unwrap_or_else(unknown);
                let state = match (lock.ok, lock.up) {
                    (Some(false), _) | (_, Some(false)) => "FAILING",
                    (Some(true), _) | (None, Some(true)) => "ok",
                    (None, None) => "?",
                };
                let mut row = format!("{id} ({driver}): {state}");
                match lock.last_success {
                    Some(t) => row.push_str(&format!(", last success {}", ago(t, now))),
                    None => row.push_str(", no success yet"),
                }
                if let Some(error) = &lock.last_error {
                    row.push_str(&format!("; last error: {error}"));
                }
                row
            })
            .collect::<Vec<_>>()
    });
    match locks {
        Some(rows) if rows.is_empty() => block("Locks", vec!["none configured".to_owned()]),
        Some(rows) => block("Locks", rows),
        None => block("Locks", vec![unknown()]),
    }

    match &doc.readers {
        Some(readers) if readers.is_empty() => {
            block("Readers", vec!["none configured".to_owned()]);
        }
        Some(readers) => block(
            "Readers",
            readers
                .iter()
                .map(|(id, reader)| reader_row(id, reader, now))
                .collect(),
        ),
        None => {}
    }
    if let Some(connected) = doc.mqtt_connected {
        let row = if connected {
            "connected"
        } else {
            "NOT CONNECTED: MQTT readers and locks do not work until it is back"
        };
        block("Broker", vec![row.to_owned()]);
    }
    if let Some(lockdown) = doc.lockdown.as_ref().filter(|l| l.on == Some(true)) {
        let mut row = "ON".to_owned();
        if let Some(since) = lockdown.since {
            row.push_str(&format!(" since {}", ago(since, now)));
        }
        if let Some(reason) = &lockdown.reason {
            row.push_str(&format!(": {reason}"));
        }
        row.push_str("; only lockdown.allow_groups and the admin API open doors");
        block("Lockdown", vec![row]);
    }

    let mut outbox = doc
        .outbox_depth
        .map_or_else(unknown, |n| format!("{n} check-ins waiting for Cobot"));
    if let Some(oldest) = doc.outbox_oldest_seconds.filter(|s| *s > 0.0) {
        outbox.push_str(&format!(", the oldest for {}", short(oldest as i64)));
    }
    block("Outbox", vec![outbox]);
    block("Clock", vec![doc.clock.clone().unwrap_or_else(unknown)]);

    let reasons: Vec<String> = health
        .and_then(|h| h.reasons.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|r| format!("- {r}"))
        .collect();
    if reasons.is_empty() {
        block("Health", vec![verdict]);
    } else {
        block("Health", {
            let mut rows = vec![format!("{verdict}:")];
            rows.extend(reasons);
            rows
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("valid time")
            .with_timezone(&Utc)
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short(0), "0s");
        assert_eq!(short(59), "59s");
        assert_eq!(short(192), "3m 12s");
        assert_eq!(short(2 * 3600 + 5 * 60 + 7), "2h 5m");
        assert_eq!(short(3 * 86_400 + 4 * 3600), "3d 4h");
        assert_eq!(short(-5), "0s");
    }

    #[test]
    fn fields_of_another_shape_or_unknown_ones_count_as_absent() {
        let doc: StatusDoc = serde_json::from_value(serde_json::json!({
            "version": 7,
            "site": "s",
            "health": {"status": "degraded", "reasons": ["a", 3], "since": "x"},
            "snapshot": {"members": "many", "version": 4},
            "clock": {"trusted": true},
            "locks": {"door": {"driver": "mqtt", "ok": true, "probe": {"up": true}}},
            "outbox_depth": -1,
            "something_new": [1, 2],
        }))
        .expect("lenient");
        assert_eq!(doc.version, None);
        assert_eq!(doc.site.as_deref(), Some("s"));
        let health = doc.health.as_ref().expect("health");
        assert_eq!(health.status.as_deref(), Some("degraded"));
        assert_eq!(health.reasons, None);
        let snapshot = doc.snapshot.as_ref().expect("snapshot");
        assert_eq!((snapshot.members, snapshot.version), (None, Some(4)));
        assert_eq!(doc.clock, None);
        assert_eq!(doc.outbox_depth, None);
        assert_eq!(doc.locks.as_ref().map(BTreeMap::len), Some(1));
        let lines = summary(&doc, at("2026-12-01T12:00:00Z"));
        assert!(lines[0].contains("? at site s: DEGRADED"), "{lines:?}");
    }

    #[test]
    fn a_summary_names_every_part() {
        let doc: StatusDoc = serde_json::from_value(serde_json::json!({
            "version": "0.1.0",
            "site": "co-up",
            "health": {"status": "degraded", "reasons": ["lock front failing: timeout"]},
            "snapshot": {"version": 3, "synced_at": "2026-12-01T11:58:00Z", "age_seconds": 120,
                         "members": 40, "skipped_not_connected": 2, "member_errors": 1},
            "last_sync_attempt": "2026-12-01T11:59:30Z",
            "last_sync_success": "2026-12-01T11:58:00Z",
            "last_sync_error": "Cobot answered 503",
            "last_sync_seconds": 0.42,
            "guard": {"state": "held", "revoked": 30, "granted_before": 40},
            "offline_since": "2026-12-01T11:58:00Z",
            "clock": "trusted",
            "locks": {"front": {"driver": "modbus", "ok": false, "last_error": "timeout",
                                "last_success": null},
                      "back": {"driver": "log", "ok": true,
                               "last_success": "2026-12-01T11:00:00Z"}},
            "readers": {
                "front": {"kind": "wiegand", "unit": "front_door", "enrol": false,
                          "online": true, "last_frame_at": "2026-12-01T11:59:48Z", "bits": 26,
                          "format": "H10301", "parity_ok": false},
                "lobby": {"kind": "osdp", "unit": "lobby", "enrol": false, "online": false,
                          "secure_channel": false, "problem": "no answer at address 1",
                          "last_frame_at": null, "bits": null, "format": null,
                          "parity_ok": null},
                "desk": {"kind": "hid", "unit": null, "enrol": true, "online": true,
                         "last_frame_at": null, "bits": null, "format": null,
                         "parity_ok": null},
            },
            "mqtt_connected": false,
            "lockdown": {"on": true, "reason": "fire drill", "since": "2026-12-01T11:55:00Z"},
            "outbox_depth": 3,
            "outbox_oldest_seconds": 7200.0,
        }))
        .expect("status");
        let text = summary(&doc, at("2026-12-01T12:00:00Z")).join("\n");
        for wanted in [
            "Portier    0.1.0 at site co-up: DEGRADED",
            "Sync       last success 2m 0s ago (2026-12-01T11:58:00Z)",
            "last attempt 30s ago (2026-12-01T11:59:30Z), took 0.4s",
            "last error: Cobot answered 503",
            "Snapshot   version 3, synced 2m 0s ago: 40 members, 2 not connected to Cobot, 1 \
             with errors",
            "Guard      HELD: the last sync would remove access from 30 of 40",
            "back (log): ok, last success 1h 0m ago",
            "front (modbus): FAILING, no success yet; last error: timeout",
            "Outbox     3 check-ins waiting for Cobot, the oldest for 2h 0m",
            "Readers    desk (hid, enrolment): online, no frame yet",
            "front (wiegand, front_door): online, last frame 12s ago (2026-12-01T11:59:48Z), \
             26 bits H10301, parity FAILED",
            "lobby (osdp, lobby): OFFLINE: no answer at address 1, secure channel DOWN, no \
             frame yet",
            "Broker     NOT CONNECTED: MQTT readers and locks do not work until it is back",
            "Lockdown   ON since 5m 0s ago (2026-12-01T11:55:00Z): fire drill; only \
             lockdown.allow_groups and the admin API open doors",
            "Clock      trusted",
            "Health     degraded:\n           - lock front failing: timeout",
        ] {
            assert!(text.contains(wanted), "missing {wanted:?} in:\n{text}");
        }
    }
}
