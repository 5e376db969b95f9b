//! The one place that knows Cobot: its API v1 wire format, its HTTP endpoints and its OAuth flow.
//!
//! `wire` turns Cobot's JSON into the domain's [`CobotData`](crate::domain::model::CobotData),
//! skipping (and naming) bad records and failing on bad responses. `client` speaks HTTP to
//! Cobot, one try per request; pacing and retries belong to the caller (the daemon), which uses
//! the per-request building blocks; `factory` makes it for a configuration. `connect` is
//! `portier cobot connect`. The simulated Cobot that plays it on loopback for `portier demo` and
//! the tests is a crate of its own (`crates/fake-cobot`).
//!
//! Nothing here decides access, touches the store or reads the clock, and nothing here logs a
//! token.

pub mod client;
pub mod connect;
mod error;
mod factory;
pub mod member_login;
pub mod wire;

pub use client::{CheckIn, CheckInOutcome, CobotClient, CobotUser, FetchOptions, NavigationLink};
pub use connect::{ConnectError, ConnectFlow, ConnectParams, load_stored_token, store_token};
pub use error::CobotError;
pub use factory::{client_for, token_for};
