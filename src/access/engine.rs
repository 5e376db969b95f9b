//! [`Engine`]: decide, carry out on the lock, append the event.
//!
//! Deciding is synchronous and reads only the snapshot in memory, so a reader loop can decide
//! its messages in order and carry each out in its own task. Carrying out runs the stages in
//! order: the lock command goes out first (the door is not kept waiting for a disk flush), then,
//! once the lock's outcome is known, the event is written once — granted or not, and whether the
//! door opened — and the outcome is returned only once that event is durable. The first entry of
//! a member on a site-local day whose door opened (or that was granted at a unit without a lock)
//! creates a Cobot check-in through the store's outbox, in the same write as the event, so it
//! happens exactly once even across restarts; a grant whose lock failed creates none.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{MutexGuard, Notify, broadcast, watch};

use super::outcome::{AtTheLock, Decided, Outcome};
use super::{AccessMetrics, Credential, EventClock, Request, decision_id};
use crate::config::Config;
use crate::domain::{self, Decision, MemberIdx, Moment, Permit, Snapshot, decide};
use crate::locks::{Command, Locks};
use crate::store::{CredentialKind, EventRecord, NewEvent, Store};

/// How long after a lock command went out its event is written.
///
/// The event's transaction and flush take CPU just when the broker is forwarding the command
/// to the lock, and on a small box they share its cores: written at once, they delayed the
/// command. The wait is a blocking-pool thread's sleep, not tokio's timer, which would round
/// it up to a millisecond. The reader's and the HTTP answer wait for the durable event, so they
/// come this much later; events that meet in the wait share a flush. Measured in
/// BENCHMARKS.md ("card → lock on both brokers").
const COMMIT_DELAY: Duration = Duration::from_micros(250);

/// Why a door request could not even be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotDecided {
    /// The unit is not configured (HTTP 404).
    UnknownUnit(String),
    /// The member named by staff is not synced (HTTP 400).
    UnknownMember(String),
}

/// What the engine is built from: only what a decision and its carrying out need.
pub(crate) struct Inputs {
    /// The snapshot decisions are made from (`None` until the first sync).
    pub snapshot: watch::Receiver<Option<Arc<Snapshot>>>,
    /// The configuration in force: the policy (units before the first sync) and whether
    /// check-ins are on.
    pub config: watch::Receiver<Arc<Config>>,
    /// The event log.
    pub store: Arc<Store>,
    /// The site's locks.
    pub locks: Arc<Locks>,
    /// The clock-trust source, told of every event appended.
    pub clock: Arc<EventClock>,
    /// Where decisions, stages and lock failures are counted.
    pub metrics: Arc<dyn AccessMetrics>,
    /// Woken when an event enqueues a Cobot check-in.
    pub outbox: Arc<Notify>,
    /// Whether a lockdown is on.
    pub lockdown: watch::Receiver<crate::store::Lockdown>,
    /// Every event once it is durable, for those who show or forward them (the site's MQTT
    /// topics, Home Assistant). Nobody listening is fine; a slow listener misses events, it
    /// never holds a door up.
    pub feed: broadcast::Sender<Arc<EventRecord>>,
}

/// Wakes on any change of what decisions are made from (see [`Engine::changes`]).
pub(crate) struct Changes {
    snapshot: watch::Receiver<Option<Arc<Snapshot>>>,
    config: watch::Receiver<Arc<Config>>,
    lockdown: watch::Receiver<crate::store::Lockdown>,
}

impl Changes {
    /// Returns at the next change (never, once every sender is gone).
    pub(crate) async fn changed(&mut self) {
        tokio::select! {
            Ok(()) = self.snapshot.changed() => {}
            Ok(()) = self.config.changed() => {}
            Ok(()) = self.lockdown.changed() => {}
            else => std::future::pending().await,
        }
    }
}

/// The access engine (see the module header).
pub(crate) struct Engine {
    inputs: Inputs,
    /// The line events are written in: the order their outcomes became known, a lock
    /// command's event after its [`COMMIT_DELAY`] (those behind it wait too, so none overtakes
    /// it). Held up to the event's transaction, not its flush, which is shared.
    line: tokio::sync::Mutex<()>,
}

impl Engine {
    /// An engine over these inputs.
    pub(crate) fn new(inputs: Inputs) -> Self {
        Self {
            inputs,
            line: tokio::sync::Mutex::new(()),
        }
    }

    /// Decides and carries out a request: what an HTTP open does in one go.
    pub(crate) async fn handle(&self, request: &Request) -> Result<Outcome, NotDecided> {
        let decided = self.decide(request)?;
        Ok(self.carry_out(decided).await)
    }

    /// Records how long a stage took, from `started` until now (`portier_stage_seconds`).
    pub(crate) fn record_stage(&self, stage: &'static str, started: std::time::Instant) {
        self.inputs
            .metrics
            .stage(stage, started.elapsed().as_secs_f64());
    }

    /// The moment of a decision at `now`: how far the clock is trusted, and the lockdown.
    fn moment(&self, now: DateTime<Utc>) -> Moment {
        Moment {
            at: now,
            clock: self.inputs.clock.trust(now),
            lockdown: self.inputs.lockdown.borrow().on,
        }
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.inputs.snapshot.borrow().clone()
    }

    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.inputs.config.borrow())
    }

    /// Decides a request now, against the latest snapshot.
    pub(crate) fn decide(&self, request: &Request) -> Result<Decided, NotDecided> {
        let started = crate::clock::instant();
        let now = crate::clock::now();
        let unit = request.unit.as_str();
        let snapshot = match (self.snapshot(), &request.credential) {
            (Some(snapshot), _) => snapshot,
            // Staff can open a door before the first sync: units and locks come from the
            // configuration, so a snapshot without Cobot data is enough for that.
            (None, Credential::Admin { member: None }) => Arc::new(domain::compile(
                &domain::model::CobotData::default(),
                &self.config().policy,
                0,
                now,
            )),
            (None, _) => {
                if !self.config().policy.units.iter().any(|u| u.id == unit) {
                    return Err(NotDecided::UnknownUnit(unit.to_owned()));
                }
                return Ok(self.refuse_request(
                    request,
                    "no snapshot yet: every request is denied until the first sync".into(),
                ));
            }
        };
        let unit_idx = snapshot
            .unit(unit)
            .ok_or_else(|| NotDecided::UnknownUnit(unit.to_owned()))?;
        let credential = match &request.credential {
            Credential::Card(card) => {
                // One check for every reader kind: an id that is not 1-128 of [0-9A-Z] after
                // removing separators is malformed, whatever the snapshot holds.
                if let Err(e) = domain::normalize_card(card) {
                    return Ok(self.refuse_request(request, format!("malformed card id: {e}")));
                }
                domain::Credential::Card(card)
            }
            Credential::App(user) => domain::Credential::User(user),
            Credential::Admin { .. } => domain::Credential::Admin,
        };
        let admin_member = match &request.credential {
            Credential::Admin {
                member: Some(who), ..
            } => Some(
                snapshot
                    .find_member(who)
                    .ok_or_else(|| NotDecided::UnknownMember(who.clone()))?,
            ),
            _ => None,
        };
        let moment = self.moment(now);
        let decision = decide(
            &snapshot,
            &domain::Request {
                unit: unit_idx,
                credential,
            },
            &moment,
        );
        let elapsed = started.elapsed().as_secs_f64();
        self.inputs.metrics.stage("decide", elapsed);
        self.inputs
            .metrics
            .decided(decision.granted(), Some(elapsed));
        let member = admin_member.or(decision.member());
        Ok(self.decided(&snapshot, decision, member, request, now))
    }

    fn decided(
        &self,
        snapshot: &Snapshot,
        decision: Decision,
        member: Option<MemberIdx>,
        request: &Request,
        now: DateTime<Utc>,
    ) -> Decided {
        let unit = snapshot.unit_id(decision.unit()).to_owned();
        let reason = decision.reason(snapshot);
        let granted = decision.granted();
        let member = member.map(|m| snapshot.member_id(m).to_owned());
        let check_in_day = (granted && self.config().cobot.check_ins && member.is_some())
            .then(|| now.with_timezone(&snapshot.timezone()).date_naive());
        Decided {
            event: NewEvent {
                time: now,
                unit,
                member,
                credential_kind: request.credential.kind(),
                granted,
                reason,
                decision_id: decision_id(),
                reader: request.reader.clone(),
                opened: false,
                lock_error: None,
                via: request.via.map(str::to_owned),
                check_in_day,
            },
            permit: decision.into_permit(),
        }
    }

    /// A denial without a decision: a request that a way in refuses before deciding
    /// (malformed, stale or replayed reader messages), or one made before the first sync.
    pub(crate) fn refuse(
        &self,
        unit: &str,
        kind: CredentialKind,
        reader: Option<&str>,
        reason: String,
    ) -> Decided {
        self.inputs.metrics.decided(false, None);
        Decided {
            event: NewEvent {
                time: crate::clock::now(),
                unit: unit.to_owned(),
                member: None,
                credential_kind: kind,
                granted: false,
                reason,
                decision_id: decision_id(),
                reader: reader.map(str::to_owned),
                opened: false,
                lock_error: None,
                via: None,
                check_in_day: None,
            },
            permit: None,
        }
    }

    fn refuse_request(&self, request: &Request, reason: String) -> Decided {
        let kind = request.credential.kind();
        self.refuse(&request.unit, kind, request.reader.as_deref(), reason)
    }

    /// Sends the lock command (if granted), then appends the event with the lock's outcome;
    /// returns once the event is durable. The permit is used up with the decision.
    pub(crate) async fn carry_out(&self, decided: Decided) -> Outcome {
        let Decided { mut event, permit } = decided;
        let command = Command {
            decision_id: event.decision_id.clone(),
            unit: event.unit.clone(),
        };
        let lock = self.actuate(permit.as_ref(), &command).await;
        // The event's place in the line of events: taken as soon as the lock's outcome is known.
        let turn = self.line.lock().await;
        let commanded = matches!(lock, AtTheLock::Done(_)).then(crate::clock::instant);
        if commanded.is_some() {
            // A driver may only have handed its command to another task (the broker
            // connection's, woken on this worker): let that task write it before this one
            // hands the event over.
            tokio::task::yield_now().await;
        }
        let open_for = permit
            .as_ref()
            .map(Permit::open_for)
            .filter(|_| lock.opened());
        event.opened = lock.opened();
        event.lock_error = lock.lock_error().map(str::to_owned);
        event.check_in_day = event.check_in_day.filter(|_| lock.counts_as_entry());
        let stored = self.append(turn, &event, commanded).await;
        // Logged with the event, not before the lock's command nor while the broker forwards it
        // (on a box each line wakes journald).
        tracing::info!(
            unit = %event.unit,
            lock = permit.as_ref().and_then(Permit::lock).unwrap_or("-"),
            member = event.member.as_deref().unwrap_or("-"),
            granted = event.granted,
            opened = event.opened,
            reason = %event.reason,
            decision_id = %event.decision_id,
            seq = stored.as_ref().ok().copied().unwrap_or(0),
            "access decided"
        );
        Outcome {
            event,
            lock,
            stored,
            open_for,
        }
    }

    /// Appends the event in its `turn` in the line (after a lock command sent at `commanded`,
    /// once [`COMMIT_DELAY`] has passed); once durable tells the clock-trust source, the outbox
    /// (a check-in) and the feed; its seq.
    async fn append(
        &self,
        turn: MutexGuard<'_, ()>,
        event: &NewEvent,
        commanded: Option<Instant>,
    ) -> Result<u64, crate::store::StoreError> {
        let persisting = crate::clock::instant();
        let appended = self.write(turn, event, commanded).await;
        self.record_stage("persist", persisting);
        match appended {
            Ok(record) => {
                self.inputs.clock.saw(record.time);
                if record.check_in.is_some() {
                    self.inputs.outbox.notify_one();
                }
                let seq = record.seq;
                let _ = self.inputs.feed.send(Arc::new(record));
                Ok(seq)
            }
            Err(e) => {
                tracing::error!(error = %e, decision_id = %event.decision_id, "cannot record the event");
                Err(e)
            }
        }
    }

    /// Writes the event in its `turn` (not before [`COMMIT_DELAY`] after a lock command sent
    /// at `commanded`) and waits until it is durable. The next in line goes on once the
    /// transaction is done; the flush is shared with it.
    async fn write(
        &self,
        turn: MutexGuard<'_, ()>,
        event: &NewEvent,
        commanded: Option<Instant>,
    ) -> Result<EventRecord, crate::store::StoreError> {
        let store = &self.inputs.store;
        let written = match commanded {
            None => store.append_event_unflushed(event),
            Some(at) => {
                store
                    .append_event_unflushed_at(event, at + COMMIT_DELAY)
                    .await
            }
        };
        drop(turn);
        let record = written?;
        store.flush().await?;
        Ok(record)
    }

    /// The actuate stage: the lock command for a permit, if there is one and it names a lock.
    async fn actuate(&self, permit: Option<&Permit>, command: &Command) -> AtTheLock {
        let Some(permit) = permit else {
            return AtTheLock::NotGranted;
        };
        let Some(lock) = permit.lock() else {
            return AtTheLock::NoLock;
        };
        let started = crate::clock::instant();
        let outcome = self.inputs.locks.unlock(permit, command).await;
        self.record_stage("actuate", started);
        match outcome {
            Ok(done) => {
                self.inputs
                    .metrics
                    .actuated(started.elapsed().as_secs_f64());
                AtTheLock::Done(done)
            }
            Err(e) => {
                tracing::warn!(unit = %command.unit, error = %e, "lock command failed; the door stays shut");
                self.inputs.metrics.lock_failed(lock);
                AtTheLock::Failed(e)
            }
        }
    }

    /// The snapshot in force, or before the first sync one compiled from the configuration
    /// alone (units, locks and holidays; no members).
    fn snapshot_or_units(&self, now: DateTime<Utc>) -> Arc<Snapshot> {
        self.snapshot().unwrap_or_else(|| {
            Arc::new(domain::compile(
                &domain::model::CobotData::default(),
                &self.config().policy,
                0,
                now,
            ))
        })
    }

    /// What a member's request at `unit` would be answered now — granted, and the reason —
    /// without carrying it out, counting it or recording it (the member page lists the doors
    /// this way). `None` before the first sync or for an unknown unit.
    pub(crate) fn preview(&self, unit: &str, user_id: &str) -> Option<(bool, String)> {
        let snapshot = self.snapshot()?;
        let unit = snapshot.unit(unit)?;
        let now = crate::clock::now();
        let moment = self.moment(now);
        let decision = decide(
            &snapshot,
            &domain::Request {
                unit,
                credential: domain::Credential::User(user_id),
            },
            &moment,
        );
        Some((decision.granted(), decision.reason(&snapshot)))
    }

    /// The next moment within `horizon` at which the member's request at `unit` would be
    /// granted, looking every `step` from now (the member page's "opens for you at …"); `None`
    /// when none is found. Every rule of `decide` applies (schedules, holidays, the validity of
    /// the membership, bookings, the lockdown as it is now).
    pub(crate) fn next_grant(
        &self,
        unit: &str,
        user_id: &str,
        horizon: std::time::Duration,
        step: std::time::Duration,
    ) -> Option<DateTime<Utc>> {
        let snapshot = self.snapshot()?;
        let unit = snapshot.unit(unit)?;
        let step = chrono::Duration::from_std(step).ok()?;
        let horizon = chrono::Duration::from_std(horizon).ok()?;
        let now = crate::clock::now();
        let lockdown = self.inputs.lockdown.borrow().on;
        // From the next whole step, so that the times shown are round.
        let step_secs = step.num_seconds().max(1);
        let first = now.timestamp() - now.timestamp().rem_euclid(step_secs) + step_secs;
        let mut at = DateTime::from_timestamp(first, 0)?;
        while at - now <= horizon {
            let moment = Moment {
                at,
                clock: domain::ClockTrust::Trusted,
                lockdown,
            };
            let request = domain::Request {
                unit,
                credential: domain::Credential::User(user_id),
            };
            if decide(&snapshot, &request, &moment).granted() {
                return Some(at);
            }
            at += step;
        }
        None
    }

    /// The snapshot in force (`None` before the first sync).
    pub(crate) fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot()
    }

    /// What changes a decision's inputs: the snapshot, the configuration, the lockdown.
    pub(crate) fn changes(&self) -> Changes {
        Changes {
            snapshot: self.inputs.snapshot.clone(),
            config: self.inputs.config.clone(),
            lockdown: self.inputs.lockdown.clone(),
        }
    }

    /// The units with an unlock schedule, by id, with their lock.
    pub(crate) fn scheduled_units(&self) -> Vec<(String, String)> {
        self.config()
            .policy
            .units
            .iter()
            .filter(|u| u.unlocked.is_some())
            .filter_map(|u| Some((u.id.clone(), u.lock.clone()?)))
            .collect()
    }

    /// Whether `unit`'s unlock schedule holds it open now (see [`domain::hold_open`]): the
    /// decision, recorded as a granted request of staff `via` the schedule when carried out,
    /// for at most `lease`.
    pub(crate) fn hold(
        &self,
        unit: &str,
        lease: std::time::Duration,
    ) -> Result<Decided, domain::NotHeld> {
        let now = crate::clock::now();
        let snapshot = self.snapshot_or_units(now);
        let idx = snapshot.unit(unit).ok_or(domain::NotHeld::NoSchedule)?;
        let moment = self.moment(now);
        let permit = domain::hold_open(&snapshot, idx, &moment, lease)?;
        let schedule = domain::unlock_schedule(&snapshot, idx).unwrap_or_default();
        Ok(Decided {
            event: NewEvent {
                time: now,
                unit: unit.to_owned(),
                member: None,
                credential_kind: CredentialKind::Admin,
                granted: true,
                reason: format!("held open by the unlock schedule ({schedule})"),
                decision_id: decision_id(),
                reader: None,
                opened: false,
                lock_error: None,
                via: Some("schedule".to_owned()),
                check_in_day: None,
            },
            permit: Some(permit),
        })
    }

    /// Starts a hold: opens the lock and, once it opened, records the hold's event. A lock that
    /// does not take the command records nothing (the holder tries again soon: a broker still
    /// connecting at start-up is no event).
    pub(crate) async fn begin_hold(&self, decided: Decided) -> Result<(), crate::locks::LockError> {
        let Decided { mut event, permit } = decided;
        self.renew_permit(permit.as_ref(), &event).await?;
        event.opened = true;
        let turn = self.line.lock().await;
        let _ = self
            .append(turn, &event, Some(crate::clock::instant()))
            .await;
        Ok(())
    }

    /// Keeps a hold going: the lock's open pulse is pushed back (or, if the lock was closed
    /// meanwhile, opened again) without an event; the hold's start was recorded.
    pub(crate) async fn renew(&self, decided: Decided) -> Result<(), crate::locks::LockError> {
        self.renew_permit(decided.permit.as_ref(), &decided.event)
            .await
    }

    async fn renew_permit(
        &self,
        permit: Option<&Permit>,
        event: &NewEvent,
    ) -> Result<(), crate::locks::LockError> {
        let Some(permit) = permit else {
            return Err(crate::locks::LockError::NotConfigured(event.unit.clone()));
        };
        let command = Command {
            decision_id: event.decision_id.clone(),
            unit: event.unit.clone(),
        };
        self.inputs.locks.unlock(permit, &command).await.map(|_| ())
    }

    /// Locks `lock` now (a hold that ended before its window did: a reload, a holiday).
    pub(crate) async fn relock(&self, lock: &str) -> Result<(), crate::locks::LockError> {
        match self.inputs.locks.get(lock) {
            Some(driver) => driver.relock_now().await,
            None => Ok(()),
        }
    }

    /// A trial decision on the current snapshot (an unknown card on the first unit): it
    /// exercises the path a door request takes, for the watchdog's self-check.
    pub(crate) fn self_check(&self) {
        let Some(snapshot) = self.snapshot() else {
            return;
        };
        let Some(unit) = self
            .config()
            .policy
            .units
            .first()
            .and_then(|u| snapshot.unit(&u.id))
        else {
            return;
        };
        let now = crate::clock::now();
        let moment = self.moment(now);
        let request = domain::Request {
            unit,
            credential: domain::Credential::Card("portier-self-check"),
        };
        std::hint::black_box(decide(&snapshot, &request, &moment).granted());
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
