//! Door requests from readers, the app and staff: decide, actuate, record.
//!
//! Deciding is synchronous and reads only the snapshot in memory. Carrying a decision out runs
//! the stages in order: the lock command goes out first (the door is not kept waiting for a
//! disk flush), then, once the lock's outcome is known, the event is written once — granted or
//! not, and whether the door opened (`opened`, else `lock_error`) — and the caller answers the
//! reader or the HTTP client only once that event is durable. The first entry of a member on a
//! site-local day whose door opened (or that was granted at a unit without a lock) creates a
//! Cobot check-in through the store's outbox, in the same write as the event, so it happens
//! exactly once even across restarts; a grant whose lock failed creates none.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::Notify;

use super::metrics::ResultLabel;
use super::state::Daemon;
use crate::domain::{Credential, Decision, Moment, Permit, Request, Snapshot, decide};
use crate::locks::{Actuation, Command, LockError, Locks};
use crate::store::{CredentialKind, EventRecord, NewEvent, StoreError};

/// Who is at the door.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Presenter<'a> {
    /// A card at a reader.
    Card(&'a str),
    /// A Cobot user through the app (already resolved from the bearer token).
    App(&'a str),
    /// Staff opening remotely, optionally on behalf of a member (id or email).
    Admin(Option<&'a str>),
}

impl Presenter<'_> {
    fn kind(&self) -> CredentialKind {
        match self {
            Presenter::Card(_) => CredentialKind::Card,
            Presenter::App(_) => CredentialKind::App,
            Presenter::Admin(_) => CredentialKind::Admin,
        }
    }
}

/// Why a door request could not even be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotDecided {
    /// The unit is not configured (HTTP 404).
    UnknownUnit(String),
    /// The member named by staff is not synced (HTTP 400).
    UnknownMember(String),
}

/// A decision, ready to be carried out.
pub(crate) struct Decided {
    /// The decision's id: in the event, the reader result and the lock command.
    pub decision_id: String,
    /// The unit asked for.
    pub unit: String,
    /// Whether it opens.
    pub granted: bool,
    /// The membership id the credential resolved to.
    pub member: Option<String>,
    /// One sentence: why.
    pub reason: String,
    permit: Option<Permit>,
    kind: CredentialKind,
    reader: Option<String>,
    time: DateTime<Utc>,
    check_in_day: Option<NaiveDate>,
}

/// What happened at the lock.
#[derive(Debug)]
pub(crate) enum AtTheLock {
    /// Denied: nothing was sent.
    NotGranted,
    /// Granted, but the unit has no lock.
    NoLock,
    /// The lock command was sent (or an open pulse was extended).
    Done(Actuation),
    /// The lock command failed.
    Failed(LockError),
}

impl AtTheLock {
    /// Whether the door opened: the lock took the command or extended an open pulse.
    pub(crate) fn opened(&self) -> bool {
        matches!(self, AtTheLock::Done(_))
    }

    /// Why a granted door did not open, in a word (`no_lock`, or [`LockError::kind`]).
    pub(crate) fn lock_error(&self) -> Option<&'static str> {
        match self {
            AtTheLock::NotGranted | AtTheLock::Done(_) => None,
            AtTheLock::NoLock => Some("no_lock"),
            AtTheLock::Failed(e) => Some(e.kind()),
        }
    }

    /// Whether this entry counts for a Cobot check-in: the door opened, or the unit has no
    /// lock to open (a granted area). A lock that failed means the member did not get in.
    fn counts_as_entry(&self) -> bool {
        matches!(self, AtTheLock::Done(_) | AtTheLock::NoLock)
    }
}

/// A decision carried out.
pub(crate) struct Carried {
    /// The lock's side.
    pub actuation: AtTheLock,
    /// The stored event, or why it could not be stored.
    pub event: Result<EventRecord, StoreError>,
}

impl Carried {
    /// Whether the door opened.
    pub(crate) fn opened(&self) -> bool {
        self.actuation.opened()
    }

    /// Why a granted door did not open, in a word.
    pub(crate) fn lock_error(&self) -> Option<&'static str> {
        self.actuation.lock_error()
    }
}

/// The door pipeline.
pub(crate) struct Doors {
    daemon: Arc<Daemon>,
    locks: Arc<Locks>,
    outbox: Arc<Notify>,
}

/// A fresh random decision id.
pub(crate) fn decision_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Doors {
    /// The pipeline over the daemon's snapshot, these locks and this outbox.
    pub(crate) fn new(daemon: Arc<Daemon>, locks: Arc<Locks>, outbox: Arc<Notify>) -> Self {
        Self {
            daemon,
            locks,
            outbox,
        }
    }

    /// Records the time a stage of the pipeline took, from `started` until now
    /// (`portier_stage_seconds`).
    pub(crate) fn record_stage(&self, stage: &'static str, started: std::time::Instant) {
        self.daemon
            .metrics
            .stage(stage, started.elapsed().as_secs_f64());
    }

    /// Decides a request at `unit` now.
    pub(crate) fn decide(
        &self,
        unit: &str,
        presenter: Presenter<'_>,
        reader: Option<&str>,
    ) -> Result<Decided, NotDecided> {
        let started = crate::clock::instant();
        let now = crate::clock::now();
        let snapshot = match (self.daemon.current(), presenter) {
            (Some(snapshot), _) => snapshot,
            // Staff can open a door before the first sync: units and locks come from the
            // configuration, so a snapshot without Cobot data is enough for that.
            (None, Presenter::Admin(None)) => {
                let config = self.daemon.config();
                Arc::new(crate::domain::compile(
                    &crate::domain::model::CobotData::default(),
                    &config.policy,
                    0,
                    now,
                ))
            }
            (None, _) => {
                if !self
                    .daemon
                    .config()
                    .policy
                    .units
                    .iter()
                    .any(|u| u.id == unit)
                {
                    return Err(NotDecided::UnknownUnit(unit.to_owned()));
                }
                return Ok(self.refusal(
                    unit,
                    presenter.kind(),
                    reader,
                    "no snapshot yet: every request is denied until the first sync".into(),
                ));
            }
        };
        let unit_idx = snapshot
            .unit(unit)
            .ok_or_else(|| NotDecided::UnknownUnit(unit.to_owned()))?;
        let admin_member = match presenter {
            Presenter::Admin(Some(who)) => Some(
                snapshot
                    .find_member(who)
                    .ok_or_else(|| NotDecided::UnknownMember(who.to_owned()))?,
            ),
            _ => None,
        };
        let credential = match presenter {
            Presenter::Card(card) => {
                // One check for every reader kind: an id that is not 1-128 of [0-9A-Z] after
                // removing separators is malformed, whatever the snapshot holds.
                if let Err(e) = crate::domain::normalize_card(card) {
                    return Ok(self.refusal(
                        unit,
                        presenter.kind(),
                        reader,
                        format!("malformed card id: {e}"),
                    ));
                }
                Credential::Card(card)
            }
            Presenter::App(user) => Credential::User(user),
            Presenter::Admin(_) => Credential::Admin,
        };
        let moment = Moment {
            at: now,
            clock: self.daemon.clock_trust(now),
        };
        let decision = decide(
            &snapshot,
            &Request {
                unit: unit_idx,
                credential,
            },
            &moment,
        );
        let elapsed = started.elapsed().as_secs_f64();
        let metrics = &self.daemon.metrics;
        metrics.decision_seconds.observe(elapsed);
        metrics.stage("decide", elapsed);
        metrics
            .decisions
            .get_or_create(&ResultLabel {
                result: if decision.granted() {
                    "granted"
                } else {
                    "denied"
                },
            })
            .inc();
        let member = admin_member.or(decision.member());
        Ok(self.decided(&snapshot, decision, member, presenter.kind(), reader, now))
    }

    fn decided(
        &self,
        snapshot: &Snapshot,
        decision: Decision,
        member: Option<crate::domain::MemberIdx>,
        kind: CredentialKind,
        reader: Option<&str>,
        now: DateTime<Utc>,
    ) -> Decided {
        let config = self.daemon.config();
        let unit = snapshot.unit_id(decision.unit()).to_owned();
        let reason = decision.reason(snapshot);
        let granted = decision.granted();
        let member_id = member.map(|m| snapshot.member_id(m).to_owned());
        let check_in_day = (granted && config.cobot.check_ins && member_id.is_some())
            .then(|| now.with_timezone(&snapshot.timezone()).date_naive());
        tracing::info!(%unit, member = member_id.as_deref().unwrap_or("-"), granted, %reason, "access decided");
        Decided {
            decision_id: decision_id(),
            unit,
            granted,
            member: member_id,
            reason,
            permit: decision.into_permit(),
            kind,
            reader: reader.map(str::to_owned),
            time: now,
            check_in_day,
        }
    }

    /// A denial without a decision (malformed or stale reader messages, no snapshot).
    pub(crate) fn refusal(
        &self,
        unit: &str,
        kind: CredentialKind,
        reader: Option<&str>,
        reason: String,
    ) -> Decided {
        self.daemon
            .metrics
            .decisions
            .get_or_create(&ResultLabel { result: "denied" })
            .inc();
        tracing::info!(%unit, granted = false, %reason, "access refused");
        Decided {
            decision_id: decision_id(),
            unit: unit.to_owned(),
            granted: false,
            member: None,
            reason,
            permit: None,
            kind,
            reader: reader.map(str::to_owned),
            time: crate::clock::now(),
            check_in_day: None,
        }
    }

    /// Sends the lock command (if granted), then records the event with the lock's outcome;
    /// returns once the event is durable. The permit is used up: carrying out the same
    /// decision again opens nothing.
    pub(crate) async fn carry_out(&self, decided: &mut Decided) -> Carried {
        let permit = decided.permit.take();
        let command = Command {
            decision_id: decided.decision_id.clone(),
            unit: decided.unit.clone(),
        };
        let actuation = self.actuate(permit.as_ref(), &command).await;
        let check_in_day = decided.check_in_day.filter(|_| actuation.counts_as_entry());
        let persisting = crate::clock::instant();
        let event = self
            .daemon
            .store
            .append_event(NewEvent {
                time: decided.time,
                unit: decided.unit.clone(),
                member: decided.member.clone(),
                credential_kind: decided.kind,
                granted: decided.granted,
                reason: decided.reason.clone(),
                decision_id: decided.decision_id.clone(),
                reader: decided.reader.clone(),
                opened: actuation.opened(),
                lock_error: actuation.lock_error().map(str::to_owned),
                check_in_day,
            })
            .await;
        self.record_stage("persist", persisting);
        match &event {
            Ok(record) => {
                self.daemon.saw_event(record.time);
                if record.check_in.is_some() {
                    self.outbox.notify_one();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, decision_id = %decided.decision_id, "cannot record the event")
            }
        }
        Carried { actuation, event }
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
        let outcome = self.locks.unlock(permit, command).await;
        self.record_stage("actuate", started);
        match outcome {
            Ok(done) => {
                self.daemon
                    .metrics
                    .actuation_seconds
                    .observe(started.elapsed().as_secs_f64());
                AtTheLock::Done(done)
            }
            Err(e) => {
                tracing::warn!(unit = %command.unit, error = %e, "lock command failed; the door stays shut");
                self.daemon
                    .metrics
                    .lock_errors
                    .get_or_create(&super::metrics::LockLabel {
                        lock: lock.to_owned(),
                    })
                    .inc();
                AtTheLock::Failed(e)
            }
        }
    }
}
