//! The acv manager: takes goals and tasks from people, assigns them to sidecars over the bus and collects their
//! reports. This first cut carries tasks (mechanism 1 via the manager's client) and keeps a registry of sidecars;
//! goal decomposition and SLO verification build on it.
//!
//! # Layout
//! - [`client`]: send a task to a component and wait for its report (used by `acv-manager task send`).
//! - [`registry`]: which sidecars exist, from their register and heartbeat broadcasts.
//! - [`server`]: the long-running manager loop.
#![forbid(unsafe_code)]

pub mod client;
pub mod registry;
pub mod server;
