//! The [`Cluster`] trait scoped to one component, which the sandbox host API calls, and [`RemoteCluster`], its client
//! for a local runtime in another process: what an agent links. The local runtime itself (supervisor, fronts,
//! faults, control-API server) is the `acv-runtime` crate; the Kubernetes backend is `acv-kube`.
//!
//! # Layout
//! - [`Cluster`]: status, metrics, logs, scale, restart, set image/env/resources, rollback, history of one component.
//! - [`error`]: [`ClusterError`], typed and classified by [`ClusterError::kind`].
//! - [`validate`]: input checks every backend applies the same way (replicas, env keys, limits, windows).
//! - [`fault`]: [`Fault`], the faults a local runtime injects, as its control API carries them; [`Selector`] (which
//!   pods, as Chaos Mesh's `mode`) and [`FaultStatus`].
//! - [`remote`]: [`RemoteCluster`], the `Cluster` of a local runtime in another process, over its control API.
#![forbid(unsafe_code)]

use acv_protocol::{ComponentName, ComponentStatus, MetricsSnapshot, Revision};

pub mod error;
pub mod fault;
pub mod remote;
pub mod validate;

pub use error::ClusterError;
pub use fault::{Fault, FaultId, FaultStatus, FaultTarget, Mode, Selector};
pub use remote::RemoteCluster;

/// A cluster backend scoped to one component (a Deployment, or a local service).
///
/// Numeric inputs are `i64` on purpose: they come straight from generated Python code, and the backend must turn a
/// negative or absurd number into a typed [`ClusterError`] rather than the caller wrapping or panicking.
#[async_trait::async_trait]
pub trait Cluster: Send + Sync {
    /// The component this handle is scoped to.
    fn component(&self) -> &ComponentName;

    /// Desired and ready replicas, each replica's state and restarts, image/version, env and limits.
    async fn status(&self) -> Result<ComponentStatus, ClusterError>;

    /// CPU and memory as % of limit, request rate, P50/P99 latency and error rate over the last `window_secs`.
    async fn metrics(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError>;

    /// The last `tail` log lines (all replicas, oldest first).
    async fn logs(&self, tail: i64) -> Result<Vec<String>, ClusterError>;

    /// Sets the desired replica count and returns the status right after (replicas converge asynchronously).
    async fn scale(&self, replicas: i64) -> Result<ComponentStatus, ClusterError>;

    /// Replaces every replica (like `kubectl rollout restart`).
    async fn restart(&self) -> Result<(), ClusterError>;

    /// Switches the image (Kubernetes) or version (local runtime); returns the new revision.
    async fn set_image(&self, image: &str) -> Result<Revision, ClusterError>;

    /// Sets one environment variable; returns the new revision.
    async fn set_env(&self, key: &str, value: &str) -> Result<Revision, ClusterError>;

    /// Sets the per-replica CPU (millicores) and memory (MiB) limits; returns the new revision.
    async fn set_resources(&self, cpu_millis: i64, memory_mib: i64) -> Result<Revision, ClusterError>;

    /// Goes back to the revision before the current one (recorded as a new revision, like `kubectl rollout undo`).
    async fn rollback(&self) -> Result<Revision, ClusterError>;

    /// Every revision, oldest first.
    async fn history(&self) -> Result<Vec<Revision>, ClusterError>;
}
