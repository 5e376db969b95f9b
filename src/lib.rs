//! Portier: an on-premise access gateway for coworking spaces that run on Cobot.
//!
//! Data flows one way: `cobot` (HTTP client, wire types) → `sync` → `store` (sled) →
//! `domain::Snapshot` → `domain::decide`.

pub mod config;
pub mod domain;
pub mod clock;
pub mod store;
pub mod app;
pub mod cli;
pub mod sync;
pub mod views;
pub mod demo;
