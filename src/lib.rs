//! Portier: an on-premise access gateway for coworking spaces that run on Cobot.
//!
//! Data flows one way: `cobot` (HTTP client, wire types) → `sync` → `store` (sled) →
//! `domain::Snapshot` → `access` (the engine: `domain::decide`, then `locks`, then the event in
//! `store`). Every way in is an adapter on `access`: `readers` (one loop for every reader kind)
//! the daemon's HTTP opens and Home Assistant's commands (`site`, which also publishes the
//! gateway's events and states). `mqtt` owns the one broker connection that readers and MQTT
//! locks share. `app` is the daemon's composition root, `cli` the command line; `clock` is the
//! only clock reader. `outbox` sends the Cobot check-ins events cause. ARCHITECTURE.md says who
//! owns what.

pub(crate) mod access;
pub(crate) mod app;
pub(crate) mod backoff;
pub mod cli;
pub mod clock;
pub mod cobot;
pub mod config;
pub mod demo;
pub mod domain;
pub(crate) mod doors;
pub mod locks;
pub(crate) mod memory;
pub mod mqtt;
pub mod outbox;
pub(crate) mod readers;
pub(crate) mod site;
pub mod store;
pub mod sync;
pub mod tls;
pub(crate) mod views;
