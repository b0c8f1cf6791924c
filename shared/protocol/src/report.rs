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
    /// The program ran, but its change made the component's health worse by the SLO measure, so the sidecar's
    /// no-regression guard put the previous revision and replica count back.
    Reverted,
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

/// The root-cause category of a diagnosis: what an agent concluded is behind the symptoms it saw. The experiment
/// harness's L4 oracle compares it with the fault that was injected, so it is a closed set, not free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootCause {
    /// Nothing is wrong: every objective holds.
    Healthy,
    /// Some replicas are down, crash-looping or not ready while the others are fine (e.g. pod failure).
    BadReplicas,
    /// CPU is saturated by something other than request load (a hog or stress in some or all replicas).
    CpuSaturation,
    /// Memory is near or over the limit (a leak or a hog).
    MemoryPressure,
    /// Request load rose beyond what the current replicas carry.
    LoadIncrease,
    /// A recent change (image, env, resources) made the service worse.
    BadRelease,
    /// The resource limits are too tight for the service's normal work.
    TightLimits,
    /// The symptoms come from a service this one calls (see [`Diagnosis::component`]).
    Downstream,
    /// The agent could not tell.
    Unknown,
}

impl RootCause {
    /// The wire name, e.g. `bad_replicas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::BadReplicas => "bad_replicas",
            Self::CpuSaturation => "cpu_saturation",
            Self::MemoryPressure => "memory_pressure",
            Self::LoadIncrease => "load_increase",
            Self::BadRelease => "bad_release",
            Self::TightLimits => "tight_limits",
            Self::Downstream => "downstream",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for RootCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A structured diagnosis: the root-cause category, the component it lies in when that is not the reporting one,
/// and the measurements that led to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// The category.
    pub cause: RootCause,
    /// Where the cause lies when it is another component (for [`RootCause::Downstream`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentName>,
    /// One line for a person, e.g. "2 of 3 replicas not ready since 12:01:03; the others are fine".
    #[serde(default)]
    pub summary: String,
    /// The observations behind it.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

impl Diagnosis {
    /// A diagnosis of `cause` with a summary and no evidence yet.
    pub fn new(cause: RootCause, summary: impl Into<String>) -> Self {
        Self {
            cause,
            component: None,
            summary: summary.into(),
            evidence: Vec::new(),
        }
    }
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
    /// What the agent concluded is behind the symptoms, when the task was a diagnosis or a mitigation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

/// The name of the evidence that lists the calls an episode queued for approval (approve mode): its value is a JSON
/// array of [`ApprovalRequest`](crate::ApprovalRequest)s.
pub const PENDING_APPROVAL_EVIDENCE: &str = "pending_approval";

impl ReportBody {
    /// The calls this report's episode queued for approval (its [`PENDING_APPROVAL_EVIDENCE`]); unreadable
    /// entries are left out.
    pub fn approval_requests(&self) -> Vec<crate::ApprovalRequest> {
        self.evidence
            .iter()
            .filter(|e| e.name == PENDING_APPROVAL_EVIDENCE)
            .filter_map(|e| serde_json::from_value::<Vec<crate::ApprovalRequest>>(e.value.clone()).ok())
            .flatten()
            .collect()
    }
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
    /// What the sidecar concluded is behind them, when it got that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<Diagnosis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagnosis_is_optional_and_uses_snake_case_causes() {
        let old = r#"{"task_id":"t1","component":"catalogue","status":"RESPONSE","message":"ok"}"#;
        let report: ReportBody = serde_json::from_str(old).unwrap();
        assert_eq!(report.diagnosis, None);

        let mut diagnosis = Diagnosis::new(RootCause::Downstream, "catalogue answers slowly");
        diagnosis.component = Some(ComponentName::new("catalogue").unwrap());
        let json = serde_json::to_value(&diagnosis).unwrap();
        assert_eq!(json["cause"], "downstream");
        assert_eq!(json["component"], "catalogue");
        let back: Diagnosis = serde_json::from_value(json).unwrap();
        assert_eq!(back, diagnosis);

        let unknown = serde_json::from_str::<Diagnosis>(r#"{"cause":"cosmic_rays"}"#);
        assert!(unknown.is_err(), "an unknown cause is an error, not a guess");
    }

    #[test]
    fn display_matches_the_wire_name() {
        for cause in [
            RootCause::Healthy,
            RootCause::BadReplicas,
            RootCause::LoadIncrease,
            RootCause::Unknown,
        ] {
            assert_eq!(serde_json::to_value(cause).unwrap(), cause.to_string());
        }
    }
}
