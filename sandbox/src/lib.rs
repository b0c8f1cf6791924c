//! Runs generated Python inside a wasmtime sandbox with a capability-scoped host API and hard limits.
//!
//! A program sees only `import acv` (the host API of its own component, see `docs/sandbox.md`) and a small
//! stdlib subset. It runs in a fresh wasmtime instance with a CPU budget (fuel), a wall-clock deadline (epoch
//! interruption plus a tokio deadline on host calls), a memory cap, capped output, no files, no env, no network.
//! Every host call is checked here — scope (own component only), safety mode (observe / approve / autonomous),
//! argument ranges — and recorded for the audit log, then forwarded to the caller's [`Capabilities`].
//!
//! # Layout
//! - [`engine`]: [`Sandbox`] (engine, component cache, pre-linking, `run`) and [`SandboxConfig`].
//! - [`caps`]: the [`Capabilities`] trait, [`HostCall`], [`HostError`], [`SafetyMode`].
//! - [`limits`]: [`Limits`] and the store-side enforcement (memory limiter, capped output pipes).
//! - [`outcome`]: [`RunOutcome`], [`Verdict`], [`HostCallRecord`].
//! - [`fake`]: [`fake::FakeCluster`], an in-memory [`Capabilities`] for tests.
//! - [`dev`]: locating and building this checkout's guest component.
//! - `host` (private): the WIT bindings and the host-call policy.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod caps;
pub mod dev;
pub mod engine;
mod error;
pub mod fake;
mod host;
pub mod limits;
pub mod outcome;

pub use caps::{Capabilities, HostCall, HostError, HostErrorKind, SafetyMode};
pub use engine::{LoadStats, Sandbox, SandboxConfig};
pub use error::SandboxError;
pub use limits::Limits;
pub use outcome::{CallOutcome, FinalReport, HostCallRecord, PendingCall, RunOutcome, Verdict};
