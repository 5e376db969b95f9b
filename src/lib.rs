//! Portier: an on-premise access gateway for coworking spaces that run on Cobot.
//!
//! Data flows one way: `cobot` (HTTP client, wire types) → `sync` → `store` (sled) →
//! `domain::Snapshot` → `domain::decide`. `app` is the daemon's composition root, `cli` the
//! command line; `clock` is the only clock reader. Events are kept by `store`; `outbox` sends
//! the Cobot check-ins they cause.

pub(crate) mod access;
pub mod app;
pub mod cli;
pub mod clock;
pub mod cobot;
pub mod config;
pub mod demo;
pub mod domain;
pub mod locks;
pub mod mqtt;
pub mod outbox;
pub(crate) mod readers;
pub mod store;
pub mod sync;
pub mod views;
