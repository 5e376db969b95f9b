//! The pure heart of Portier: Cobot's data and the site's policy compile into a snapshot, and
//! `decide` answers door requests from it.
//!
//! Nothing here does I/O, reads the clock or knows sled, reqwest or tokio; time comes in as a
//! parameter. This module imports nothing else of the crate.

mod card;
mod compile;
mod compile_members;
mod decide;
mod explain;
mod groups;
pub mod guard;
mod hold;
pub mod model;
mod pos_index;
pub mod schedule;
mod snapshot;

#[cfg(test)]
pub(crate) mod testkit;

pub use card::{MalformedCard, normalize_card};
pub use compile::compile;
pub use decide::{ClockProblem, ClockTrust, Credential, Decision, Moment, Permit, Request, decide};
pub use hold::{NotHeld, hold_open, unlock_schedule};
pub use snapshot::{CompileReport, MemberIdx, MemberView, PLAN_ERROR, Snapshot, UnitIdx};
