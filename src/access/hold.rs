//! The unlock-schedule holder: keeps the locks of units with `unlocked = [...]` open in their
//! windows (not on holidays, not in a lockdown, not while the clock is untrusted), relocks them
//! when a window ends, and does it again after a restart.
//!
//! A hold is a permit from `domain::hold_open` for the rest of the window but at most
//! [`LEASE`], renewed every [`TICK`] and at each whole minute (windows start and end on one):
//! so the end of a window relocks on the minute, and a hold that stops being right for another
//! reason ends at once here (the lock is locked) or, at worst, when its lease runs out. The
//! start of each hold is one event (`via: "schedule"`); renewals are not.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Timelike;
use tokio::sync::watch;

use super::Engine;
use crate::domain::NotHeld;

/// The longest a hold is granted at once.
pub(crate) const LEASE: Duration = Duration::from_secs(60);
/// The longest between two checks.
const TICK: Duration = Duration::from_secs(20);
/// How soon a hold whose lock did not take its command is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Runs until `shutdown`; a new snapshot, configuration or lockdown state is checked at once.
pub(crate) async fn run(engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let mut changes = engine.changes();
    // Unit → its lock, for the holds in force.
    let mut holding: HashMap<String, String> = HashMap::new();
    loop {
        let failed = check(&engine, &mut holding).await;
        let now = crate::clock::now();
        let to_minute = Duration::from_millis(
            60_000
                - u64::from(now.second()) * 1000
                - u64::from(now.nanosecond() / 1_000_000) % 1000,
        ) + Duration::from_millis(50);
        tokio::select! {
            () = tokio::time::sleep(to_minute.min(if failed { RETRY } else { TICK })) => {}
            () = changes.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One round; true when a lock did not take its hold's command.
async fn check(engine: &Engine, holding: &mut HashMap<String, String>) -> bool {
    let mut failed = false;
    let scheduled = engine.scheduled_units();
    // Units whose schedule a reload removed.
    let gone: Vec<String> = holding
        .keys()
        .filter(|unit| !scheduled.iter().any(|(u, _)| u == *unit))
        .cloned()
        .collect();
    for unit in gone {
        if let Some(lock) = holding.remove(&unit) {
            end(engine, &unit, &lock, "its unlock schedule was removed").await;
        }
    }
    for (unit, lock) in scheduled {
        match engine.hold(&unit, LEASE) {
            Ok(decided) if holding.contains_key(&unit) => {
                if let Err(e) = engine.renew(decided).await {
                    failed = true;
                    tracing::warn!(%unit, error = %e, "cannot keep the door open for its unlock schedule; retrying");
                }
            }
            Ok(decided) => match engine.begin_hold(decided).await {
                Ok(()) => {
                    tracing::info!(%unit, "held open by its unlock schedule");
                    holding.insert(unit, lock);
                }
                Err(e) if e.is_retryable() => {
                    // A broker still connecting, a device not reachable yet: the lock's health
                    // says so; try again soon.
                    failed = true;
                    tracing::debug!(%unit, error = %e, "the unlock schedule cannot open the door yet; retrying");
                }
                Err(e) => {
                    tracing::warn!(%unit, error = %e, "the unlock schedule could not open the door; retrying");
                }
            },
            Err(why) => {
                if let Some(lock) = holding.remove(&unit) {
                    match why {
                        // The lease ends with the window: the relock is already on its way.
                        NotHeld::OutsideWindows => {
                            tracing::info!(%unit, "unlock window over");
                        }
                        other => end(engine, &unit, &lock, reason(other)).await,
                    }
                }
            }
        }
    }
    failed
}

fn reason(why: NotHeld) -> &'static str {
    match why {
        NotHeld::NoSchedule => "its unlock schedule was removed",
        NotHeld::OutsideWindows => "its unlock window is over",
        NotHeld::Holiday => "today is a holiday",
        NotHeld::Lockdown => "a lockdown is on",
        NotHeld::ClockUntrusted => "the clock cannot be trusted",
    }
}

async fn end(engine: &Engine, unit: &str, lock: &str, why: &str) {
    tracing::warn!(%unit, why, "unlock schedule's hold ends early: locking the door");
    if let Err(e) = engine.relock(lock).await {
        tracing::error!(%unit, error = %e, "cannot lock the door after its hold ended");
    }
}
