//! Portier: an on-premise access gateway for coworking spaces that run on Cobot.
//!
//! Data flows one way: `cobot` (HTTP client, wire types) → `sync` → `store` (sled) →
//! `domain::Snapshot` → `domain::decide`.

pub mod cobot;
pub mod domain;
