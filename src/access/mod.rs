//! The access engine: the one path from a door request to an open (or shut) door and its event.
//!
//! Every way in — a reader of any kind, an app open, a staff open, later a page or a Home
//! Assistant command — turns its input into a [`Request`] and hands it to [`Engine`]. The engine
//! decides against the latest snapshot (from the `watch` channel, never sled), carries the
//! decision out on the lock (a [`crate::domain::Permit`] is the only key a lock driver takes),
//! appends the event, and returns one [`Outcome`] that the way in renders into its own answer.
//!
//! Its inputs are narrow on purpose: the snapshot receiver, the configuration in force, the
//! event store, the locks, the clock-trust source and the metrics hooks. It never parses a
//! transport's payload, renders an HTTP or MQTT answer, publishes a snapshot or reads the
//! daemon's other state.

mod engine;
pub(crate) mod hold;
mod lockdown;
mod outcome;
mod trust;

pub(crate) use engine::{Engine, Inputs, NotDecided};
pub(crate) use lockdown::{LockdownSwitch, SwitchError};
pub(crate) use outcome::{AtTheLock, Outcome};
pub(crate) use trust::EventClock;

use crate::store::CredentialKind;

/// What is presented at a door, owned: the one credential type from the way in to the event.
/// The store keeps only its [`CredentialKind`] (never a card id), and `decide` reads it through
/// its borrowed form [`crate::domain::Credential`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A card or tag id as a reader sent it (normalised and checked by the engine).
    Card(String),
    /// A Cobot user id, already resolved from the app's bearer token.
    App(String),
    /// Staff opening remotely, optionally on behalf of a member (id or email).
    Admin {
        /// The member the open is recorded for.
        member: Option<String>,
    },
}

impl Credential {
    /// How it was presented, as the event log keeps it.
    pub(crate) fn kind(&self) -> CredentialKind {
        match self {
            Credential::Card(_) => CredentialKind::Card,
            Credential::App(_) => CredentialKind::App,
            Credential::Admin { .. } => CredentialKind::Admin,
        }
    }
}

/// A door request from any way in.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The unit asked for.
    pub unit: String,
    /// What was presented.
    pub credential: Credential,
    /// The reader it came through, for reader requests.
    pub reader: Option<String>,
    /// Where a request that came through no reader was made, when not the HTTP API
    /// (`homeassistant`).
    pub via: Option<&'static str>,
}

/// What the engine reports for `/metrics`. The daemon's metrics implement it; the engine
/// never names a metrics library.
pub(crate) trait AccessMetrics: Send + Sync {
    /// A request was decided (`seconds` of deciding) or refused without a decision (`None`).
    fn decided(&self, granted: bool, seconds: Option<f64>);
    /// A stage of the pipeline (`decide`, `actuate`, `persist`, and the ways in's own
    /// `receive` and `publish`) took `seconds`.
    fn stage(&self, stage: &'static str, seconds: f64);
    /// A lock took a command in `seconds`.
    fn actuated(&self, seconds: f64);
    /// The lock `lock` failed a command.
    fn lock_failed(&self, lock: &str);
}

/// A fresh random decision id.
pub(crate) fn decision_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
