//! One sync: fetch Cobot's data, compile it with the loaded policy, apply the mass-change
//! guard (revocations and lost plans), persist, and report what happened.
//!
//! The sync is the only writer of snapshots. It replaces the stored snapshot only after a
//! complete fetch and a successful compile, so a failed or partial sync never replaces a good
//! snapshot. It does not retry: the command line tries once, the daemon wraps this in its own
//! paced retries. An empty plan list while memberships name a parent plan is a Cobot glitch, not
//! a fact: that sync fails, as a malformed answer would.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cobot::{CobotClient, CobotError, FetchOptions};
use crate::config::Config;
use crate::domain::guard;
use crate::domain::model::{CobotData, Policy};
use crate::domain::{Snapshot, compile};
use crate::store::{GuardState, Store, StoreError, StoredSnapshot};

/// Why a sync did not complete. Nothing was applied in any of these cases.
#[derive(Debug, Error)]
pub(crate) enum SyncError {
    /// Cobot failed or answered something unusable: the old snapshot stays; retry later.
    #[error("sync failed: {0}")]
    Cobot(#[from] CobotError),
    /// The cache could not be read or written: the old snapshot stays; check the disk.
    #[error("sync failed: {0}")]
    Store(#[from] StoreError),
}

/// The outcome of a complete sync, applied or held by the guard (`portier sync --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SyncSummary {
    /// Items of `/api/plans`, hidden ones included.
    pub plans: usize,
    /// Synced members.
    pub members: usize,
    /// Memberships not connected to a Cobot user (not synced).
    pub skipped_not_connected: usize,
    /// Members with errors plus records skipped as malformed.
    pub errors: usize,
    /// Whether the new snapshot is now in force.
    pub applied: bool,
    /// The snapshot version in force after this sync (0: none yet).
    pub version: u64,
    /// Members the sync revokes (or would have revoked, when held).
    pub revoked: usize,
    /// Members granted before the sync.
    pub granted_before: usize,
    /// Members whose plan was known before and would be unknown after (fallback or none).
    #[serde(default)]
    pub plan_lost: usize,
    /// Members whose plan was known before the sync (not those on the fallback plan).
    #[serde(default)]
    pub plan_known_before: usize,
    /// Things a space manager should look at (ambiguous plan names, malformed records, …).
    pub warnings: Vec<String>,
}

/// A complete sync: its summary and, when applied, the new snapshot.
pub(crate) struct SyncResult {
    /// What happened.
    pub summary: SyncSummary,
    /// The new snapshot, when it was applied.
    pub snapshot: Option<Snapshot>,
}

/// What Cobot must be asked for, given the policy.
pub fn fetch_options(
    policy: &Policy,
    booking_horizon: Duration,
    now: DateTime<Utc>,
) -> FetchOptions {
    let needs_bookings = policy.assignments.iter().any(|a| a.requires_booking);
    let horizon = chrono::Duration::from_std(booking_horizon).unwrap_or(chrono::Duration::days(30));
    FetchOptions {
        custom_fields: policy.additional_groups_field.is_some(),
        bookings: needs_bookings.then(|| {
            // Checked: a horizon from the configuration must not panic the sync.
            let from = now
                .checked_sub_signed(chrono::Duration::days(1))
                .unwrap_or(now);
            let to = now
                .checked_add_signed(horizon)
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            (from, to)
        }),
    }
}

/// Compiles the stored snapshot with the loaded policy (at start, after a reload).
pub(crate) fn compile_stored(stored: &StoredSnapshot, policy: &Policy) -> Snapshot {
    compile(&stored.data, policy, stored.version, stored.synced_at)
}

/// Fails a fetch whose plan list is empty while memberships name a parent plan: Cobot did not
/// lose every plan at once, and believing it would move every member to the fallback plan.
fn check_plan_list(data: &CobotData) -> Result<(), CobotError> {
    if !data.plans.is_empty() {
        return Ok(());
    }
    let naming = data
        .memberships
        .iter()
        .filter(|m| {
            let current = m.plan.as_ref();
            let upcoming = m.upcoming_plan.as_ref().map(|u| &u.plan);
            [current, upcoming]
                .into_iter()
                .flatten()
                .any(|p| p.parent_plan_id.is_some())
        })
        .count();
    if naming == 0 {
        return Ok(());
    }
    Err(CobotError::Malformed {
        path: "/api/plans".into(),
        detail: format!(
            "the plan list is empty while {naming} memberships name a parent plan; \
             the old snapshot stays in force"
        ),
    })
}

/// What the mass-change guard compares a new snapshot against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Baseline<'a> {
    /// The snapshot in force, as the daemon holds it in memory (`None`: none yet, or the
    /// stored one was unreadable at start); nothing is compiled again.
    InForce(Option<&'a Snapshot>),
    /// The stored snapshot, compiled with the loaded policy (the command line).
    Stored,
}

/// Cobot's `/api/memberships` allows 6 requests a minute, and every sync makes one: the daemon
/// spaces its sync attempts at least this far apart (a request waits, it is never refused).
pub(crate) const MEMBERSHIP_SPACING: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs one sync now. `now` is read through `clock` before and after the fetch.
pub(crate) async fn sync_once(
    config: &Config,
    store: &Store,
    client: &CobotClient,
    accept_revocations: bool,
    baseline: Baseline<'_>,
    clock: impl Fn() -> DateTime<Utc>,
) -> Result<SyncResult, SyncError> {
    let started = clock();
    let mut status = store.sync_status()?;
    status.last_attempt = Some(started);
    let options = fetch_options(&config.policy, config.cobot.booking_horizon, started);
    let data = match client.fetch(&options).await.and_then(|data| {
        check_plan_list(&data)?;
        Ok(data)
    }) {
        Ok(data) => data,
        Err(e) => {
            status.last_error = Some(e.to_string());
            store.save_sync_status(&status)?;
            return Err(e.into());
        }
    };
    let finished = clock();
    let compiled;
    let old = match baseline {
        Baseline::InForce(current) => current,
        Baseline::Stored => match store.load_snapshot() {
            Ok(Some(stored)) => {
                compiled = compile_stored(&stored, &config.policy);
                Some(&compiled)
            }
            Ok(None) => None,
            // An unreadable snapshot counts as none: this sync replaces it (and, like a first
            // sync, is not held by the guard, since there is nothing readable to protect).
            Err(StoreError::Corrupt { detail, .. }) => {
                tracing::warn!(%detail, "the stored snapshot cannot be read; this sync replaces it");
                None
            }
            Err(other) => return Err(other.into()),
        },
    };
    let version = old.map_or(0, Snapshot::version) + 1;
    let new = compile(&data, &config.policy, version, finished);

    let (revocation, plan_loss) = match old {
        Some(old) => (
            guard::revocation(old, &new, finished),
            guard::plan_loss(old, &new, finished),
        ),
        None => (
            guard::Revocation {
                revoked: 0,
                granted_before: 0,
            },
            guard::PlanLoss {
                lost: 0,
                known_before: 0,
            },
        ),
    };
    let too_many = revocation.ratio() > config.cobot.max_revoke_ratio
        || plan_loss.ratio() > config.cobot.max_plan_loss_ratio;
    // The first sync is never held: there is nothing to protect yet.
    let held = old.is_some() && !accept_revocations && too_many;
    let (revoked, granted_before) = (revocation.revoked, revocation.granted_before);

    let report = new.report();
    let mut warnings = report.warnings.clone();
    warnings.extend(data.malformed.iter().cloned());
    let mut summary = SyncSummary {
        plans: report.plans,
        members: report.members,
        skipped_not_connected: report.skipped_not_connected,
        errors: report.members_with_errors + report.malformed,
        applied: !held,
        version,
        revoked,
        granted_before,
        plan_lost: plan_loss.lost,
        plan_known_before: plan_loss.known_before,
        warnings,
    };

    status.last_success = Some(finished);
    status.last_error = None;
    if held {
        summary.version = version - 1;
        status.guard = GuardState::Held {
            revoked,
            granted_before,
            plan_lost: plan_loss.lost,
            plan_known_before: plan_loss.known_before,
        };
        store.save_sync_status(&status)?;
        tracing::warn!(
            revoked,
            granted_before,
            plan_lost = plan_loss.lost,
            plan_known_before = plan_loss.known_before,
            "sync held by the mass-change guard"
        );
        return Ok(SyncResult {
            summary,
            snapshot: None,
        });
    }
    store.save_snapshot(&StoredSnapshot {
        version,
        synced_at: finished,
        data,
    })?;
    status.guard = GuardState::Applied;
    store.save_sync_status(&status)?;
    tracing::info!(version, members = summary.members, "sync applied");
    Ok(SyncResult {
        summary,
        snapshot: Some(new),
    })
}
