//! What the gateway publishes about itself, byte for byte: door events, lock states, the
//! lockdown and the sync. Pure functions, so the formats are tested without a broker.

use serde_json::json;

use crate::domain::Snapshot;
use crate::locks::Latch;
use crate::store::{CredentialKind, EventRecord, Lockdown};

/// The kinds of door event Home Assistant's `event` entity lists (an event type not listed is
/// dropped by it). The door-contact kinds come with door sensors.
pub(crate) const EVENT_TYPES: [&str; 7] = [
    "granted",
    "denied",
    "unknown_card",
    "forced_open",
    "held_open",
    "closed",
    "flapping",
];

/// An event's kind, in a word: `granted`, `unknown_card` (a card no member holds, or no card id
/// at all) or `denied`.
pub(crate) fn event_kind(event: &EventRecord) -> &'static str {
    if event.granted {
        "granted"
    } else if event.credential_kind == CredentialKind::Card && event.member.is_none() {
        "unknown_card"
    } else {
        "denied"
    }
}

/// A reason as published to the broker, which more clients read than the admin API: a card id
/// in it (`unknown card "04A1B2C3"`) shows only its last four characters (`…B2C3`), enough to
/// tell cards apart at a door, not enough to clone one.
pub(crate) fn masked_reason(reason: &str) -> String {
    const MARK: &str = "card \"";
    let mut out = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(at) = rest.find(MARK) {
        let (before, from) = rest.split_at(at + MARK.len());
        out.push_str(before);
        let Some(end) = from.find('"') else {
            rest = from;
            break;
        };
        let card: Vec<char> = from[..end].chars().collect();
        out.push('…');
        if card.len() > 4 {
            out.extend(&card[card.len() - 4..]);
        }
        rest = &from[end..];
    }
    out.push_str(rest);
    out
}

/// The payload on `portier/<gateway>/events`: the stored event (as `GET /v1/events` shows it,
/// with card ids in the reason masked) with its kind as `event`.
pub(crate) fn gateway_event(event: &EventRecord) -> Vec<u8> {
    let mut value = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("event".into(), json!(event_kind(event)));
        object.insert("reason".into(), json!(masked_reason(&event.reason)));
    }
    value.to_string().into_bytes()
}

/// The payload on a unit's `event` topic, in the shape Home Assistant's `event` entity reads
/// (`event_type`, the rest as attributes). The member is the membership id.
pub(crate) fn unit_event(event: &EventRecord) -> Vec<u8> {
    json!({
        "event_type": event_kind(event),
        "seq": event.seq,
        "member": event.member,
        "credential": event.credential_kind,
        "reader": event.reader,
        "reason": masked_reason(&event.reason),
        "opened": event.opened,
        "lock_error": event.lock_error,
        "via": event.via,
    })
    .to_string()
    .into_bytes()
}

/// A door sensor's event on `portier/<gateway>/events`: `{"event", "unit", "time"}`.
pub(crate) fn door_event(notice: &crate::doors::DoorNotice) -> Vec<u8> {
    json!({
        "event": notice.event.as_str(),
        "unit": notice.unit,
        "time": notice.time,
    })
    .to_string()
    .into_bytes()
}

/// A door sensor's event on the unit's `event` topic, for Home Assistant.
pub(crate) fn door_unit_event(notice: &crate::doors::DoorNotice) -> Vec<u8> {
    json!({ "event_type": notice.event.as_str(), "time": notice.time })
        .to_string()
        .into_bytes()
}

/// The retained state of a unit's lock: `LOCKED`, `UNLOCKED` (open, relock to come) or
/// `JAMMED` (the relock failed and is not retried).
pub(crate) fn latch_state(latch: Latch) -> &'static str {
    match latch {
        Latch::Locked => "LOCKED",
        Latch::Open => "UNLOCKED",
        Latch::Jammed => "JAMMED",
    }
}

/// The retained lockdown state: `{"state": "ON"|"OFF", "reason", "since"}`.
pub(crate) fn lockdown(state: &Lockdown) -> Vec<u8> {
    json!({
        "state": if state.on { "ON" } else { "OFF" },
        "reason": state.reason,
        "since": state.since,
    })
    .to_string()
    .into_bytes()
}

/// The lockdown switched, on `portier/<gateway>/events`: `{"event": "lockdown_on" |
/// "lockdown_off", "reason", "time"}`.
pub(crate) fn lockdown_event(state: &Lockdown) -> Vec<u8> {
    json!({
        "event": if state.on { "lockdown_on" } else { "lockdown_off" },
        "reason": state.reason,
        "time": state.since,
    })
    .to_string()
    .into_bytes()
}

/// The retained sync summary: when the snapshot in force was synced, its members and version.
pub(crate) fn sync(snapshot: &Snapshot) -> Vec<u8> {
    json!({
        "synced_at": snapshot.synced_at(),
        "members": snapshot.report().members,
        "snapshot_version": snapshot.version(),
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(granted: bool, kind: CredentialKind, member: Option<&str>) -> EventRecord {
        EventRecord {
            seq: 7,
            time: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            unit: "front".into(),
            member: member.map(str::to_owned),
            credential_kind: kind,
            granted,
            reason: "because".into(),
            decision_id: "d".into(),
            reader: Some("r1".into()),
            opened: granted,
            lock_error: None,
            check_in: None,
            via: None,
        }
    }

    #[test]
    fn kinds_tell_unknown_cards_from_denied_members() {
        assert_eq!(
            event_kind(&event(true, CredentialKind::Card, Some("m1"))),
            "granted"
        );
        assert_eq!(
            event_kind(&event(false, CredentialKind::Card, None)),
            "unknown_card"
        );
        assert_eq!(
            event_kind(&event(false, CredentialKind::Card, Some("m1"))),
            "denied"
        );
        assert_eq!(
            event_kind(&event(false, CredentialKind::App, None)),
            "denied"
        );
        for kind in ["granted", "denied", "unknown_card"] {
            assert!(EVENT_TYPES.contains(&kind), "{kind} must be listed for HA");
        }
    }

    #[test]
    fn event_payloads_carry_the_kind_and_no_card_id() {
        let e = event(false, CredentialKind::Card, None);
        let gateway: serde_json::Value = serde_json::from_slice(&gateway_event(&e)).expect("json");
        assert_eq!(gateway["event"], "unknown_card");
        assert_eq!(gateway["seq"], 7);
        assert_eq!(gateway["unit"], "front");
        let unit: serde_json::Value = serde_json::from_slice(&unit_event(&e)).expect("json");
        assert_eq!(unit["event_type"], "unknown_card");
        assert_eq!(unit["reader"], "r1");
        assert!(unit.get("card").is_none() && gateway.get("card").is_none());
    }

    #[test]
    fn card_ids_in_reasons_are_masked() {
        assert_eq!(
            masked_reason("unknown card \"DEADBEEF99\": it is not registered"),
            "unknown card \"…EF99\": it is not registered"
        );
        assert_eq!(
            masked_reason("card \"AB\" and card \"0123456\""),
            "card \"…\" and card \"…3456\""
        );
        assert_eq!(masked_reason("granted: full_time"), "granted: full_time");
        assert_eq!(masked_reason("card \"open ended"), "card \"open ended");
        let mut e = event(false, CredentialKind::Card, None);
        e.reason = "unknown card \"DEADBEEF99\"".into();
        for payload in [gateway_event(&e), unit_event(&e)] {
            assert!(!String::from_utf8_lossy(&payload).contains("DEADBEEF99"));
        }
    }

    #[test]
    fn lockdown_state_is_on_or_off() {
        let on = Lockdown {
            on: true,
            reason: Some("drill".into()),
            since: None,
        };
        let value: serde_json::Value = serde_json::from_slice(&lockdown(&on)).expect("json");
        assert_eq!(value["state"], "ON");
        assert_eq!(value["reason"], "drill");
        let off: serde_json::Value =
            serde_json::from_slice(&lockdown(&Lockdown::default())).expect("json");
        assert_eq!(off["state"], "OFF");
    }
}
