//! The acv sidecar maintainer: one per microservice. It receives tasks for its own component over the bus, plans
//! and executes them, and answers with reports; it announces itself and sends heartbeats on the broadcast.
//!
//! # Layout
//! - [`config`]: command line / env configuration.
//! - [`agent`]: the task loop (receive → handle → report → ack).
//! - [`handler`]: what is done with one task. Until a planner and the sandbox executor are wired in, the handler
//!   answers truthfully that no planner is configured.
#![forbid(unsafe_code)]

pub mod agent;
pub mod config;
pub mod handler;

pub use agent::Agent;
pub use config::SidecarConfig;
