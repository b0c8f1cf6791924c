//! What a run produced: output, the audited host calls, the verdict and the final report.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::caps::{HostCall, HostError, HostErrorKind};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// The program ran to its end (or raised `SystemExit(0)`).
    Ok,
    /// The program raised (or failed to compile); `traceback` is Python's formatted traceback.
    GuestError {
        /// Formatted traceback, starting in the program (`File "<program>", line N`).
        traceback: String,
    },
    /// The CPU budget ([`Limits::fuel`](crate::Limits::fuel)) ran out.
    OutOfFuel,
    /// The wall-clock deadline ([`Limits::wall_clock`](crate::Limits::wall_clock)) passed.
    Timeout,
    /// The program tried to grow memory beyond [`Limits::memory_bytes`](crate::Limits::memory_bytes).
    MemoryLimit,
    /// The program ended on an uncaught `acv.HostError` from a call the sandbox refused or queued for approval.
    Refused {
        /// The sandbox's reason, as recorded on the call.
        reason: String,
        /// Formatted traceback.
        traceback: String,
    },
    /// The guest trapped for another reason (a wasm-level fault such as stack exhaustion).
    Crashed {
        /// wasmtime's trap message.
        message: String,
    },
}

impl Verdict {
    /// A short static label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::GuestError { .. } => "guest_error",
            Verdict::OutOfFuel => "out_of_fuel",
            Verdict::Timeout => "timeout",
            Verdict::MemoryLimit => "memory_limit",
            Verdict::Refused { .. } => "refused",
            Verdict::Crashed { .. } => "crashed",
        }
    }

    /// Whether the program ran to its end.
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }
}

/// What became of one host call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CallOutcome {
    /// It ran and returned `result` (the JSON the program received; `null` for calls without a value).
    Ok {
        /// The result.
        result: serde_json::Value,
    },
    /// It ran (or was checked) and failed.
    Error {
        /// The error the program received.
        error: HostError,
    },
    /// The sandbox refused it (scope or safety mode); it did not run.
    Refused {
        /// Why.
        reason: String,
    },
    /// Approve mode: it did not run and waits for an operator (see [`RunOutcome::pending`]).
    PendingApproval,
}

/// One host call, recorded for the audit log whatever its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCallRecord {
    /// Position in the run, from 0.
    pub seq: u32,
    /// Python function name (`status`, `scale`, …).
    pub name: String,
    /// The arguments as the program passed them (JSON object; `component` is present when the program named one).
    pub args: serde_json::Value,
    /// What happened.
    pub outcome: CallOutcome,
    /// Time spent in the host for this call (JSON: `elapsed_us`, microseconds).
    #[serde(rename = "elapsed_us", with = "duration_micros")]
    pub elapsed: Duration,
}

/// A mutating call queued in approve mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCall {
    /// The [`HostCallRecord::seq`] of the call.
    pub seq: u32,
    /// The validated call, ready for [`HostCall::execute`] once approved.
    pub call: HostCall,
}

/// The program's last `acv.report(status, message)`.
pub use acv_protocol::FinalReport;

/// Everything a run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// How it ended.
    pub verdict: Verdict,
    /// What the program printed (lossy UTF-8, at most [`Limits::max_output_bytes`](crate::Limits)).
    pub stdout: String,
    /// What the program wrote to stderr (same cap).
    pub stderr: String,
    /// Whether stdout or stderr was cut at the cap.
    pub output_truncated: bool,
    /// Every host call, in order (at most [`Limits::max_host_calls`](crate::Limits)).
    pub calls: Vec<HostCallRecord>,
    /// Host calls attempted beyond [`Limits::max_host_calls`](crate::Limits); they failed with `limit_exceeded`
    /// and are counted here instead of recorded.
    pub calls_over_limit: u32,
    /// Mutating calls queued for approval (approve mode), in order.
    pub pending: Vec<PendingCall>,
    /// The last report, if the program made one.
    pub report: Option<FinalReport>,
    /// Fuel consumed (a deterministic measure of the CPU work done).
    pub fuel_consumed: u64,
    /// Wall-clock time from the start of instantiation to the end of the run (JSON: `elapsed_us`).
    #[serde(rename = "elapsed_us", with = "duration_micros")]
    pub elapsed: Duration,
}

impl RunOutcome {
    /// Whether the run changed the cluster, by the sandbox's own record: a mutating host call
    /// ([`acv_protocol::MUTATING_CALLS`]) ran, successfully or not (a backend failure or a deadline in the middle of
    /// a call may have left a partial change). Calls that were refused, queued for approval, or rejected before
    /// running (invalid argument, over the call limit) did not change anything.
    pub fn mutated(&self) -> bool {
        self.calls.iter().any(|call| {
            acv_protocol::is_mutating_call(&call.name)
                && match &call.outcome {
                    CallOutcome::Ok { .. } => true,
                    CallOutcome::Error { error } => !matches!(
                        error.kind,
                        HostErrorKind::InvalidArgument
                            | HostErrorKind::Refused
                            | HostErrorKind::ApprovalRequired
                            | HostErrorKind::LimitExceeded
                    ),
                    CallOutcome::Refused { .. } | CallOutcome::PendingApproval => false,
                }
        })
    }
}

mod duration_micros {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_micros(u64::deserialize(d)?))
    }
}
