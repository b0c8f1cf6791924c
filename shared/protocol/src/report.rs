//! Report and issue bodies: what agents send back, with the evidence and steps behind their claims.

use serde::{Deserialize, Serialize};

use crate::{ComponentName, Violation};

/// The paper's two report kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportStatus {
    /// The task was carried out; the message answers it.
    Response,
    /// The task could not be carried out (or is not done); the message says why.
    Issue,
}

/// An agent's verdict on its work: the status and message that become a report (from a program's last
/// `acv.report(...)` or from the planner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalReport {
    /// RESPONSE or ISSUE.
    pub status: ReportStatus,
    /// For a person.
    pub message: String,
}

/// A named measurement or observation supporting a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// What was observed, e.g. `p99_latency_ms`.
    pub name: String,
    /// The value as JSON (number, string, object).
    pub value: serde_json::Value,
}

/// How one executed step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// The program ran to completion.
    Ok,
    /// The program raised or a host call failed.
    Error,
    /// The program was stopped by a sandbox limit (CPU, memory, time).
    LimitExceeded,
    /// The step was refused by policy (observe mode, wrong component, not approved).
    Refused,
    /// The step was not executed (no executor configured, or plan-only mode).
    Skipped,
}

/// One step an agent took: the program it ran and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based position in the plan.
    pub index: u32,
    /// What the step is for, in words.
    pub description: String,
    /// The Python program run in the sandbox (empty when the step ran no code).
    #[serde(default)]
    pub program: String,
    /// How it ended.
    pub outcome: StepOutcome,
    /// Captured output or error text (truncated by the executor).
    #[serde(default)]
    pub output: String,
    /// Whether the step changed the cluster: by the sandbox's own record, a mutating host call ran (or was cut
    /// off while running). Refused calls and calls queued for approval did not.
    #[serde(default)]
    pub mutated: bool,
}

/// A report answering a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBody {
    /// The task answered.
    pub task_id: String,
    /// The component that did the work.
    pub component: ComponentName,
    /// RESPONSE or ISSUE.
    pub status: ReportStatus,
    /// The answer or the reason, for a person.
    pub message: String,
    /// Measurements backing the message.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    /// The steps taken, in order.
    #[serde(default)]
    pub steps: Vec<StepRecord>,
}

/// An unsolicited issue raised by a sidecar, e.g. an SLO violation it could not fix alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueBody {
    /// The component raising it.
    pub component: ComponentName,
    /// What is wrong, for a person.
    pub message: String,
    /// The objectives broken, with measured values.
    #[serde(default)]
    pub violations: Vec<Violation>,
}
