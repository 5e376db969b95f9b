//! Unit tests of the pulse discipline through the log and BLE drivers, with tokio's paused
//! clock (virtual time: `open_for` passes instantly and deterministically).

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::ble::{classify_write_error, parse_target};
use super::mqtt::render;
use super::*;
use crate::config::{LockConfig, LockDriver as DriverConfig};
use crate::domain::model::{OfflinePolicy, Policy, UnitDef};
use crate::domain::{Credential, Moment, Request, compile, decide};

const OPEN_FOR: Duration = Duration::from_millis(200);
const DEVICE: &str = "AA:BB:CC:DD:EE:FF";
const CHARACTERISTIC: &str = "0000fff1-0000-1000-8000-00805f9b34fb";

/// A permit for `lock`, made the only way permits are made: by `decide` (a staff open).
pub(crate) fn permit(lock: &str, open_for: Duration) -> Permit {
    let policy = Policy {
        timezone: chrono_tz::Europe::Berlin,
        groups: Vec::new(),
        assignments: Vec::new(),
        fallback_plan: None,
        additional_groups_field: None,
        require_connected_user: true,
        units: vec![UnitDef {
            id: "door".into(),
            parent: None,
            lock: Some(lock.into()),
            open_for,
            unlocked: None,
        }],
        permissions: Vec::new(),
        holidays: Vec::new(),
        overrides: Vec::new(),
        offline: OfflinePolicy::default(),
        booking_grace: Duration::ZERO,
        lockdown_groups: Vec::new(),
    };
    let at = Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let snapshot = compile(&Default::default(), &policy, 1, at);
    let unit = snapshot.unit("door").unwrap();
    let request = Request {
        unit,
        credential: Credential::Admin,
    };
    decide(&snapshot, &request, &Moment::trusted(at))
        .into_permit()
        .unwrap()
}

pub(crate) fn cmd(decision_id: &str) -> Command {
    Command {
        decision_id: decision_id.into(),
        unit: "door".into(),
    }
}

fn ble_lock(fake: &Arc<FakeBle>, lock_payload: Option<Vec<u8>>) -> BleLock {
    let backend: Arc<dyn BleBackend> = fake.clone();
    BleLock::new(
        "office",
        backend,
        DEVICE,
        CHARACTERISTIC,
        vec![0x01],
        lock_payload,
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_log_lock_records_unlock_then_relock_after_open_for() {
    let lock = LogLock::new("front");
    let outcome = lock.unlock(&permit("front", OPEN_FOR), &cmd("d1")).await;
    assert_eq!(outcome, Ok(Actuation::Opened));
    assert_eq!(lock.commands(), vec![LogEntry::Unlock(cmd("d1"))]);
    tokio::time::sleep(OPEN_FOR + Duration::from_millis(1)).await;
    assert_eq!(
        lock.commands(),
        vec![LogEntry::Unlock(cmd("d1")), LogEntry::Relock]
    );
    assert!(lock.health().ok);
    assert!(lock.health().last_success.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_grant_during_an_open_pulse_extends_it_instead_of_pulsing_again() {
    let lock = LogLock::new("front");
    let p = permit("front", OPEN_FOR);
    lock.unlock(&p, &cmd("d1")).await.unwrap();
    tokio::time::sleep(OPEN_FOR / 2).await;
    assert_eq!(lock.unlock(&p, &cmd("d2")).await, Ok(Actuation::Extended));
    // Past the first pulse's end: still open, because it was extended.
    tokio::time::sleep(OPEN_FOR / 2 + Duration::from_millis(20)).await;
    assert_eq!(lock.unlocks(), 1);
    assert!(!lock.commands().contains(&LogEntry::Relock));
    // Past the extended end: relocked once.
    tokio::time::sleep(OPEN_FOR / 2).await;
    assert_eq!(
        lock.commands(),
        vec![
            LogEntry::Unlock(cmd("d1")),
            LogEntry::Extended(cmd("d2")),
            LogEntry::Relock
        ]
    );
    // A grant after the relock opens again.
    assert_eq!(lock.unlock(&p, &cmd("d3")).await, Ok(Actuation::Opened));
    assert_eq!(lock.unlocks(), 2);
}

#[tokio::test]
async fn a_permit_for_another_lock_is_not_configured() {
    let lock = LogLock::new("front");
    let err = lock
        .unlock(&permit("side", OPEN_FOR), &cmd("d1"))
        .await
        .unwrap_err();
    assert_eq!(err, LockError::NotConfigured("side".into()));
    assert!(lock.commands().is_empty());
}

#[tokio::test]
async fn the_registry_routes_a_permit_to_its_lock_and_rejects_unknown_locks() {
    let configs = [LockConfig {
        id: "front".into(),
        driver: DriverConfig::Log,
    }];
    let locks = Locks::new(&configs, None, Arc::new(FakeBle::new())).unwrap();
    let outcome = locks.unlock(&permit("front", OPEN_FOR), &cmd("d1")).await;
    assert_eq!(outcome, Ok(Actuation::Opened));
    assert_eq!(locks.log_lock("front").unwrap().unlocks(), 1);
    let unknown = locks.unlock(&permit("nowhere", OPEN_FOR), &cmd("d2")).await;
    assert_eq!(unknown, Err(LockError::NotConfigured("nowhere".into())));
    assert!(locks.health()["front"].ok);
    assert!(locks.relock_all().await.is_empty());
    assert!(
        locks
            .log_lock("front")
            .unwrap()
            .commands()
            .contains(&LogEntry::Relock)
    );
}

#[tokio::test]
async fn a_reload_keeps_unchanged_locks_adds_new_ones_and_relocks_the_ones_it_takes_out() {
    let log = |id: &str| LockConfig {
        id: id.into(),
        driver: DriverConfig::Log,
    };
    let locks = Locks::new(&[log("front"), log("back")], None, Arc::new(FakeBle::new())).unwrap();
    let front = locks.log_lock("front").unwrap();
    let back = locks.log_lock("back").unwrap();
    // The back door is open when the reload takes its lock out.
    locks
        .unlock(&permit("back", OPEN_FOR), &cmd("d1"))
        .await
        .unwrap();

    assert!(
        locks
            .prepare(&[log("front"), log("back")])
            .unwrap()
            .is_empty()
    );
    let prepared = locks.prepare(&[log("front"), log("side")]).unwrap();
    // Nothing changes before it is installed.
    assert!(locks.get("side").is_none());
    let retired = locks.install(prepared);
    assert_eq!(retired.iter().map(|d| d.id()).collect::<Vec<_>>(), ["back"]);
    assert!(retire(retired).await.is_empty());
    assert_eq!(back.commands().last(), Some(&LogEntry::Relock));

    // The unchanged lock is the same driver; the new one opens; the removed one is gone.
    assert!(Arc::ptr_eq(&front, &locks.log_lock("front").unwrap()));
    let side = locks.unlock(&permit("side", OPEN_FOR), &cmd("d2")).await;
    assert_eq!(side, Ok(Actuation::Opened));
    let gone = locks.unlock(&permit("back", OPEN_FOR), &cmd("d3")).await;
    assert_eq!(gone, Err(LockError::NotConfigured("back".into())));
    assert_eq!(locks.health().keys().collect::<Vec<_>>(), ["front", "side"]);
}

#[test]
fn a_reload_with_a_lock_that_cannot_be_set_up_changes_nothing() {
    let configs = [LockConfig {
        id: "front".into(),
        driver: DriverConfig::Log,
    }];
    let locks = Locks::new(&configs, None, Arc::new(FakeBle::new())).unwrap();
    let broken = [
        configs[0].clone(),
        LockConfig {
            id: "side".into(),
            driver: DriverConfig::Mqtt {
                topic: "z2m/side/set".into(),
                unlock_payload: "{}".into(),
                lock_payload: None,
            },
        },
    ];
    assert!(locks.prepare(&broken).is_err());
    assert_eq!(locks.health().keys().collect::<Vec<_>>(), ["front"]);
}

#[test]
fn an_mqtt_lock_without_a_broker_is_rejected_when_building_the_registry() {
    let configs = [LockConfig {
        id: "side".into(),
        driver: DriverConfig::Mqtt {
            topic: "z2m/side/set".into(),
            unlock_payload: "{}".into(),
            lock_payload: None,
        },
    }];
    let err = Locks::new(&configs, None, Arc::new(FakeBle::new())).unwrap_err();
    assert!(matches!(err, LockError::Invalid { ref lock, .. } if lock == "side"));
    assert!(err.to_string().contains("[mqtt]"));
}

#[tokio::test(start_paused = true)]
async fn a_ble_lock_writes_the_unlock_payload_once_and_the_lock_payload_after_open_for() {
    let fake = Arc::new(FakeBle::new());
    let lock = ble_lock(&fake, Some(vec![0x00]));
    let p = permit("office", OPEN_FOR);
    assert_eq!(lock.unlock(&p, &cmd("d1")).await, Ok(Actuation::Opened));
    assert_eq!(lock.unlock(&p, &cmd("d2")).await, Ok(Actuation::Extended));
    let writes = fake.writes();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].payload, vec![0x01]);
    assert_eq!(writes[0].device.to_string(), DEVICE);
    assert_eq!(writes[0].characteristic.to_string(), CHARACTERISTIC);
    tokio::time::sleep(OPEN_FOR + Duration::from_millis(1)).await;
    let payloads: Vec<_> = fake.writes().into_iter().map(|w| w.payload).collect();
    assert_eq!(payloads, vec![vec![0x01], vec![0x00]]);
}

#[tokio::test(start_paused = true)]
async fn a_ble_lock_without_a_lock_payload_writes_nothing_after_open_for() {
    let fake = Arc::new(FakeBle::new());
    let lock = ble_lock(&fake, None);
    lock.unlock(&permit("office", OPEN_FOR), &cmd("d1"))
        .await
        .unwrap();
    tokio::time::sleep(OPEN_FOR * 3).await;
    assert_eq!(fake.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_ble_write_of_unknown_outcome_is_reported_and_never_retried() {
    let fake = Arc::new(FakeBle::new());
    fake.fail_with(Some(BleError::Unknown("disconnected during write".into())));
    let lock = ble_lock(&fake, Some(vec![0x00]));
    let err = lock
        .unlock(&permit("office", OPEN_FOR), &cmd("d1"))
        .await
        .unwrap_err();
    assert!(matches!(err, LockError::Uncertain { .. }));
    assert!(err.to_string().contains("outcome unknown"));
    assert!(!err.is_retryable());
    tokio::time::sleep(OPEN_FOR * 10).await;
    assert_eq!(
        fake.attempts(),
        1,
        "no retry, no relock after a failed unlock"
    );
    assert!(!lock.health().ok);
}

#[tokio::test]
async fn ble_refusals_and_unreachable_devices_map_to_refused_and_transport() {
    let fake = Arc::new(FakeBle::new());
    let lock = ble_lock(&fake, None);
    let p = permit("office", OPEN_FOR);
    fake.fail_with(Some(BleError::Refused("Not permitted".into())));
    let refused = lock.unlock(&p, &cmd("d1")).await.unwrap_err();
    assert!(matches!(refused, LockError::Refused { .. }) && !refused.is_retryable());
    fake.fail_with(Some(BleError::NotWritten("device not found".into())));
    let transport = lock.unlock(&p, &cmd("d2")).await.unwrap_err();
    assert!(matches!(transport, LockError::Transport { .. }) && transport.is_retryable());
    assert_eq!(fake.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_ble_relock_of_unknown_outcome_is_not_retried() {
    let fake = Arc::new(FakeBle::new());
    let lock = ble_lock(&fake, Some(vec![0x00]));
    lock.unlock(&permit("office", OPEN_FOR), &cmd("d1"))
        .await
        .unwrap();
    fake.fail_with(Some(BleError::Unknown("timeout".into())));
    tokio::time::sleep(OPEN_FOR * 20).await;
    assert_eq!(fake.attempts(), 2, "one unlock, one relock attempt");
    assert!(
        lock.health()
            .last_error
            .unwrap()
            .contains("outcome unknown")
    );
}

#[test]
fn ble_addresses_and_uuids_are_parsed_or_rejected_with_the_lock_named() {
    let (address, uuid) = parse_target("office", DEVICE, CHARACTERISTIC).unwrap();
    assert_eq!(address.to_string(), DEVICE);
    assert_eq!(uuid.to_string(), CHARACTERISTIC);
    let bad = parse_target("office", "AA:BB", CHARACTERISTIC).unwrap_err();
    assert!(bad.to_string().contains("office") && bad.to_string().contains("AA:BB"));
    assert!(parse_target("office", DEVICE, "fff1-nope").is_err());
    let empty = BleLock::new(
        "x",
        Arc::new(FakeBle::new()),
        DEVICE,
        CHARACTERISTIC,
        vec![],
        None,
    );
    assert!(empty.is_err());
}

#[test]
fn gatt_answers_are_refusals_and_other_write_failures_are_of_unknown_outcome() {
    use bluer::ErrorKind;
    assert!(matches!(
        classify_write_error(&ErrorKind::NotPermitted, "no"),
        BleError::Refused(_)
    ));
    assert!(matches!(
        classify_write_error(&ErrorKind::InvalidLength, "len"),
        BleError::Refused(_)
    ));
    assert!(matches!(
        classify_write_error(&ErrorKind::Failed, "gone"),
        BleError::Unknown(_)
    ));
}

#[test]
fn payload_templates_fill_decision_id_and_unit_once() {
    let c = Command {
        decision_id: "{unit}".into(),
        unit: "front".into(),
    };
    assert_eq!(
        render(
            r#"{"state":"UNLOCK","id":"{decision_id}","unit":"{unit}"}"#,
            &c
        ),
        r#"{"state":"UNLOCK","id":"{unit}","unit":"front"}"#
    );
    assert_eq!(render("{x} {", &c), "{x} {");
    assert_eq!(render("plain", &c), "plain");
}

#[test]
fn errors_say_which_lock_and_whether_to_retry() {
    let timeout = LockError::Timeout {
        lock: "front".into(),
        after: Duration::from_secs(2),
    };
    assert!(timeout.is_retryable());
    assert!(timeout.to_string().contains("\"front\""));
    assert_eq!(timeout.lock(), "front");
    let refused = LockError::Refused {
        lock: "front".into(),
        detail: "Modbus exception".into(),
    };
    assert!(!refused.is_retryable());
    assert!(!LockError::NotConfigured("x".into()).is_retryable());
}

#[tokio::test]
async fn a_ble_lock_is_unchecked_until_its_probe_finds_the_adapter_and_fails_when_it_goes() {
    let fake = Arc::new(FakeBle::new());
    let lock = ble_lock(&fake, None);
    let unchecked = lock.health();
    assert!(!unchecked.ok, "never checked is not ok: {unchecked:?}");
    assert!(
        unchecked
            .problem
            .as_deref()
            .unwrap()
            .contains("not checked yet"),
        "{unchecked:?}"
    );

    lock.probe().await;
    let healthy = lock.health();
    assert!(healthy.ok, "{healthy:?}");
    assert!(healthy.last_probe.is_some() && healthy.last_success.is_none());

    fake.set_adapter_present(false);
    lock.probe().await;
    let gone = lock.health();
    assert!(!gone.ok);
    let problem = gone.problem.unwrap();
    assert!(
        problem.contains("office") && problem.contains("no Bluetooth adapter"),
        "{problem}"
    );
    assert_eq!(fake.attempts(), 0, "a probe never writes to the lock");

    fake.set_adapter_present(true);
    lock.probe().await;
    assert!(lock.health().ok);
    assert!(
        lock.health()
            .last_error
            .unwrap()
            .contains("no Bluetooth adapter"),
        "kept for flapping"
    );
}

#[tokio::test]
async fn a_refused_command_stays_a_problem_after_a_good_probe_but_a_transport_failure_does_not() {
    let fake = Arc::new(FakeBle::new());
    let lock = ble_lock(&fake, None);
    let p = permit("office", OPEN_FOR);
    fake.fail_with(Some(BleError::NotWritten("device not found".into())));
    lock.unlock(&p, &cmd("d1")).await.unwrap_err();
    assert!(!lock.health().ok);
    lock.probe().await;
    assert!(
        lock.health().ok,
        "the adapter answers again: {:?}",
        lock.health()
    );

    fake.fail_with(Some(BleError::Refused("Not permitted".into())));
    lock.unlock(&p, &cmd("d2")).await.unwrap_err();
    lock.probe().await;
    let refused = lock.health();
    assert!(
        !refused.ok,
        "a refusal needs a successful command: {refused:?}"
    );
    assert!(refused.problem.unwrap().contains("refused"));
}

#[tokio::test]
async fn the_registry_probes_every_lock_and_a_log_lock_needs_no_probe() {
    let configs = [
        LockConfig {
            id: "front".into(),
            driver: DriverConfig::Log,
        },
        LockConfig {
            id: "office".into(),
            driver: DriverConfig::Ble {
                device: DEVICE.into(),
                characteristic: CHARACTERISTIC.into(),
                unlock_payload: vec![0x01],
                lock_payload: None,
            },
        },
    ];
    let fake = Arc::new(FakeBle::new());
    fake.set_adapter_present(false);
    let locks = Locks::new(&configs, None, fake.clone()).unwrap();
    assert!(locks.health()["front"].ok);
    assert!(
        locks.health()["front"].last_probe.is_some(),
        "a log lock is checked at every look"
    );
    assert!(!locks.health()["office"].ok);
    locks.probe_all().await;
    let office = &locks.health()["office"];
    assert!(
        !office.ok
            && office
                .problem
                .as_deref()
                .unwrap()
                .contains("no Bluetooth adapter")
    );
    fake.set_adapter_present(true);
    locks.probe_all().await;
    assert!(locks.health()["office"].ok);
}
