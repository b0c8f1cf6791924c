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
//! - [`guest`]: where an installation finds the guest component (flag/env, else next to the binary).
//! - [`lazy`]: [`LazySandbox`], loaded on first use and released after an idle period (what the sidecar holds).
//! - `fake` (feature `dev`): `FakeCluster`, an in-memory [`Capabilities`] for tests.
//! - `dev` (feature `dev`): locating and building this checkout's guest component, for tests and benches.
//! - `host` (private): the WIT bindings and the host-call policy.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod caps;
#[cfg(feature = "dev")]
pub mod dev;
pub mod engine;
mod error;
#[cfg(feature = "dev")]
pub mod fake;
pub mod guest;
mod host;
pub mod lazy;
pub mod limits;
pub mod outcome;

pub use caps::{Capabilities, HostCall, HostError, HostErrorKind, SafetyMode};
pub use engine::{LoadStats, Sandbox, SandboxConfig};
pub use error::SandboxError;
pub use lazy::LazySandbox;
pub use limits::Limits;
pub use outcome::{CallOutcome, FinalReport, HostCallRecord, PendingCall, RunOutcome, Verdict};
