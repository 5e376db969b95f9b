//! The pure heart of Portier: Cobot's data and the site's policy compile into a snapshot, and
//! `decide` answers door requests from it.
//!
//! Nothing here does I/O, reads the clock or knows sled, reqwest or tokio; time comes in as a
//! parameter. This module imports nothing else of the crate.

pub mod model;
pub mod schedule;
