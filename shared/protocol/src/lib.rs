//! Wire types exchanged between acv components over the bus and between sidecars over HTTP.
//! This crate has no I/O: it is serde types, names and validation only, so every component can depend on it.
//!
//! # Layout
//! - [`cluster`]: component status, metrics snapshots and revisions reported by cluster backends.
//! - [`envelope`]: the versioned [`Envelope`] every bus message travels in, addresses, encode/decode.
//! - [`goal`]: goal resources (spec, objectives with each/total/average), their status, events and subtasks.
//! - [`task`]: task and goal bodies (imperative text, declarative SLO objectives).
//! - [`report`]: reports (RESPONSE / ISSUE), evidence and the steps an agent took.
//! - [`safety`]: the safety modes (observe, approve, autonomous) and which host calls mutate.
//! - [`slo`]: SLO metrics, objectives and violations shared by sidecar, manager and evaluation, and their evaluation.
//! - [`names`]: validated component names.
//! - [`approval`]: approve mode's requests, decisions and results.
//! - [`audit`]: the audit trail's records and batches.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod approval;
pub mod audit;
pub mod cluster;
pub mod envelope;
pub mod goal;
pub mod names;
pub mod peer;
pub mod report;
pub mod safety;
pub mod slo;
pub mod task;

pub use approval::{
    ApprovalDecision, ApprovalError, ApprovalRequest, ApprovalResult, ApprovalState, describe_call,
    valid_approval_id,
};
pub use audit::{AuditBatch, AuditKind, AuditRecord};
pub use cluster::{
    CallStats, ComponentStatus, MetricsSnapshot, ReplicaState, ReplicaStatus, ResourceLimits, Revision,
};
pub use envelope::{Address, Body, DecodeError, Envelope, Heartbeat, Kind, PROTOCOL_VERSION, Registration};
pub use goal::{
    Combine, EventKind, GoalError, GoalEvent, GoalObjective, GoalRecord, GoalResource, GoalSpec, GoalState,
    ObjectiveResult, SubtaskRecord, SubtaskState,
};
pub use names::{ComponentName, NameError};
pub use peer::{PeerAnswer, PeerIntent, PeerOutcome, PeerRequest};
pub use report::{
    Diagnosis, Evidence, FinalReport, IssueBody, PENDING_APPROVAL_EVIDENCE, ReportBody, ReportStatus,
    RootCause, StepOutcome, StepRecord,
};
pub use safety::{HOST_CALLS, MUTATING_CALLS, SafetyMode, is_mutating_call};
pub use slo::{
    Comparison, Measurement, Objective, Regression, SloMetric, SloPolicy, Violation, check_health,
    check_objectives, describe_objective, describe_violation, describe_violations, measured_value,
    metric_name, regression,
};
pub use task::{Goal, Mechanism, TaskBody, TaskSpec};
