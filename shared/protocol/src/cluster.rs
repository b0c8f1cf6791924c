//! What a cluster backend reports about one component. Shared by the cluster backends (which produce these), the
//! sandbox host API (which hands them to generated code as JSON) and the sidecar and manager (which judge SLOs).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ComponentName;

/// Resource limits of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimits {
    /// CPU limit in millicores (1000 = one core).
    pub cpu_millis: u32,
    /// Memory limit in MiB.
    pub memory_mib: u32,
}

/// Lifecycle state of one replica, mirroring what `kubectl get pods` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Started, not yet passing its readiness check.
    Starting,
    /// Passing its readiness check.
    Ready,
    /// Running but failing its readiness check.
    NotReady,
    /// Crashed repeatedly; restarts are being delayed with backoff.
    CrashLoopBackOff,
    /// Stopped and will not be restarted.
    Terminated,
}

/// One replica (a pod, or a local process).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// Replica name (pod name, or `NAME-N` locally).
    pub name: String,
    /// Current state.
    pub state: ReplicaState,
    /// How many times it was restarted.
    pub restarts: u32,
}

/// The state of one component (a Deployment, or a local service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentStatus {
    /// The component.
    pub component: ComponentName,
    /// Replicas asked for.
    pub desired_replicas: u32,
    /// Replicas passing readiness.
    pub ready_replicas: u32,
    /// Each replica.
    pub replicas: Vec<ReplicaStatus>,
    /// Current revision number (increases on every image/env/resources change).
    pub revision: u64,
    /// Image (Kubernetes) or version (local runtime) running.
    pub image: String,
    /// Environment variables of the current revision.
    pub env: BTreeMap<String, String>,
    /// Resource limits of the current revision.
    pub limits: ResourceLimits,
}

/// Measurements of one component over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// The component.
    pub component: ComponentName,
    /// Window length in seconds.
    pub window_secs: f64,
    /// Average CPU use across replicas as a percentage of the per-replica CPU limit.
    pub cpu_percent_of_limit: Option<f64>,
    /// Average memory use across replicas as a percentage of the per-replica memory limit.
    pub memory_percent_of_limit: Option<f64>,
    /// Requests per second.
    pub request_rate: Option<f64>,
    /// Median latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: Option<f64>,
    /// Share of 5xx answers in percent.
    pub error_rate_percent: Option<f64>,
    /// The calls this component made to each component it depends on, over the same window, as the caller
    /// measured them (empty when the component does not export them; the testbed shop's front-end and orders do).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallStats>,
}

/// Calls from one component to another over a metrics window, measured on the calling side (its
/// `client_request_duration_seconds` histogram): what the caller waited for and how often the callee failed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    /// The component called.
    pub callee: ComponentName,
    /// Calls per second.
    pub request_rate: Option<f64>,
    /// Median call latency in milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile call latency in milliseconds.
    pub p99_ms: Option<f64>,
    /// Share of calls that failed (a 5xx answer, no answer or a timeout), in percent.
    pub error_rate_percent: Option<f64>,
}

/// One revision of a component's template (image/version + env + limits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// Revision number, starting at 1.
    pub revision: u64,
    /// Image or version.
    pub image: String,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Limits.
    pub limits: ResourceLimits,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// What created it (`set_image <image>`, `set_env <key>`, `rollback to revision <n>`, …).
    pub cause: String,
}

impl Revision {
    /// Whether this revision was made by a rollback (both backends write `rollback to revision <n>`; a bare
    /// `rollback` is accepted too).
    pub fn is_rollback(&self) -> bool {
        self.cause == "rollback" || self.cause.starts_with("rollback ")
    }
}
