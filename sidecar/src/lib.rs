//! The acv sidecar maintainer: one per microservice. It receives tasks for its own component over the bus, plans
//! and executes them, and answers with reports; it announces itself and sends heartbeats on the broadcast.
//!
//! # Layout
//! - [`config`]: command line / env configuration.
//! - [`agent`]: the task loop (receive → handle → report → ack), approvals' decisions, episode metrics.
//! - [`approvals`]: approve mode's queued calls waiting for an operator (run once when approved, never otherwise).
//! - [`audit`]: the audit trail (programs, host calls, peer calls, reports) sent to the manager in batches.
//! - [`handler`]: what is done with one task or SLO violation: plan ([`acv_llm`]), run steps in the sandbox
//!   ([`exec`]) against the cluster backend ([`caps`]), report. [`handler::NoPlanner`] says plainly it cannot.
//! - [`guard`]: the no-regression guard: a mutating step that makes health worse is reverted.
//! - [`run`]: the handler for a configured component and the agent loop until shutdown (binary or in-process).
//! - [`peer`]: mechanism 3, the mutual-TLS peer API (server, client, discovery).
//! - [`policy`]: who may send tasks to this sidecar (manager and operators' clients; peers only ask).
//! - [`episode`]: what the agent remembers about an incident (backoff after a failed fix, capacity to give back).
//! - [`watch`]: the own health check against the SLO policy (detect), driving mitigation in [`agent`].
#![forbid(unsafe_code)]

pub mod agent;
pub mod approvals;
pub mod audit;
pub mod caps;
pub mod config;
pub mod episode;
pub mod exec;
pub mod guard;
pub mod handler;
pub mod peer;
pub mod policy;
pub mod run;
pub mod watch;

pub use agent::Agent;
pub use config::SidecarConfig;
