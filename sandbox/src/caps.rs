//! The capability interface between the sandbox and whoever owns the cluster (the sidecar): [`Capabilities`],
//! the typed [`HostCall`]s a program can make, [`HostError`], and the [`SafetyMode`] that decides which calls run.

use acv_protocol::cluster::{ComponentStatus, MetricsSnapshot, ResourceLimits, Revision};
use acv_protocol::{ComponentName, ReportStatus};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use acv_protocol::SafetyMode;

/// The stable failure kinds a program sees as `acv.HostError.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostErrorKind {
    /// The sandbox refused the call: another component, or a mutating call in observe mode.
    Refused,
    /// The mutating call was queued for operator approval and did not run (approve mode).
    ApprovalRequired,
    /// An argument is out of range or malformed.
    InvalidArgument,
    /// The thing asked for does not exist (e.g. no earlier revision to roll back to).
    NotFound,
    /// The backend or peer cannot be reached right now.
    Unavailable,
    /// The backend failed.
    Backend,
    /// The call did not finish before the run's deadline.
    Timeout,
    /// The run made more host calls than its limit allows.
    LimitExceeded,
}

impl HostErrorKind {
    /// The snake_case word the program sees.
    pub fn as_str(self) -> &'static str {
        match self {
            HostErrorKind::Refused => "refused",
            HostErrorKind::ApprovalRequired => "approval_required",
            HostErrorKind::InvalidArgument => "invalid_argument",
            HostErrorKind::NotFound => "not_found",
            HostErrorKind::Unavailable => "unavailable",
            HostErrorKind::Backend => "backend",
            HostErrorKind::Timeout => "timeout",
            HostErrorKind::LimitExceeded => "limit_exceeded",
        }
    }
}

impl std::fmt::Display for HostErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed host call, as the program sees it (`acv.HostError` with `kind` and `message`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HostError {
    /// Stable kind.
    pub kind: HostErrorKind,
    /// Human-readable detail (shown to the program and recorded for audit).
    pub message: String,
}

impl HostError {
    /// Builds an error of `kind`.
    pub fn new(kind: HostErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    /// Shorthand for [`HostErrorKind::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(HostErrorKind::InvalidArgument, message)
    }
    /// Shorthand for [`HostErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(HostErrorKind::NotFound, message)
    }
    /// Shorthand for [`HostErrorKind::Backend`].
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(HostErrorKind::Backend, message)
    }
    /// Shorthand for [`HostErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(HostErrorKind::Unavailable, message)
    }
}

/// The cluster operations a sandboxed program can reach, implemented by the caller (the sidecar, over its cluster
/// backend; tests, over the `dev` feature's `fake::FakeCluster`).
///
/// The sandbox calls these only after its own checks passed: `component` is always the sandbox's own component
/// (never a name the program chose), mutating methods are only called in [`SafetyMode::Autonomous`] (or when the
/// caller executes an approved [`HostCall`] itself), and arguments are range-checked (see [`HostCall`]).
/// Implementations still own their backend's rules (e.g. refusing a replica count the cluster cannot hold).
///
/// Calls are awaited on the task that awaits [`Sandbox::run`](crate::Sandbox::run); each is bounded by the run's
/// wall-clock deadline (a call still pending at the deadline is dropped and the run ends with
/// [`Verdict::Timeout`](crate::Verdict::Timeout)).
#[async_trait]
pub trait Capabilities: Send + Sync {
    /// Current state (`acv.status()`).
    async fn status(&self, component: &ComponentName) -> Result<ComponentStatus, HostError>;
    /// Measurements over the last `window_secs` seconds (`acv.metrics(window_secs)`).
    async fn metrics(
        &self,
        component: &ComponentName,
        window_secs: u32,
    ) -> Result<MetricsSnapshot, HostError>;
    /// The last `tail` log lines, oldest first (`acv.logs(tail)`).
    async fn logs(&self, component: &ComponentName, tail: u32) -> Result<Vec<String>, HostError>;
    /// Revisions, oldest first (`acv.history()`).
    async fn history(&self, component: &ComponentName) -> Result<Vec<Revision>, HostError>;
    /// Mutating: sets the replica count; the status after (`acv.scale(replicas)`).
    async fn scale(&self, component: &ComponentName, replicas: u32) -> Result<ComponentStatus, HostError>;
    /// Mutating: restarts every replica (`acv.restart()`).
    async fn restart(&self, component: &ComponentName) -> Result<(), HostError>;
    /// Mutating: rolls out `image`; the new revision (`acv.set_image(image)`).
    async fn set_image(&self, component: &ComponentName, image: &str) -> Result<Revision, HostError>;
    /// Mutating: sets one environment variable; the new revision (`acv.set_env(key, value)`).
    async fn set_env(&self, component: &ComponentName, key: &str, value: &str)
    -> Result<Revision, HostError>;
    /// Mutating: sets resource limits; the new revision (`acv.set_resources(cpu_millis, memory_mib)`).
    async fn set_resources(
        &self,
        component: &ComponentName,
        limits: ResourceLimits,
    ) -> Result<Revision, HostError>;
    /// Mutating: rolls back to the previous revision; the revision now current (`acv.rollback()`).
    async fn rollback(&self, component: &ComponentName) -> Result<Revision, HostError>;
    /// The program reported (`acv.report(status, message)`). The sandbox records the last report in
    /// [`RunOutcome::report`](crate::RunOutcome::report) whatever this returns; the default does nothing.
    async fn report(
        &self,
        component: &ComponentName,
        status: ReportStatus,
        message: &str,
    ) -> Result<(), HostError> {
        let _ = (component, status, message);
        Ok(())
    }
    /// Asks `peer`'s agent `question` on behalf of `from` (mechanism 3); the answer (`acv.ask_peer(peer, q)`).
    async fn ask_peer(
        &self,
        from: &ComponentName,
        peer: &ComponentName,
        question: &str,
    ) -> Result<String, HostError>;
}

/// Capabilities without a backend: every call fails with [`HostErrorKind::Unavailable`]. What
/// [`Sandbox::warm_up`](crate::Sandbox::warm_up) instantiates with (it calls nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBackend;

fn no_backend<T>() -> Result<T, HostError> {
    Err(HostError::unavailable(
        "no cluster backend is attached to this sandbox",
    ))
}

#[async_trait]
impl Capabilities for NoBackend {
    async fn status(&self, _: &ComponentName) -> Result<ComponentStatus, HostError> {
        no_backend()
    }
    async fn metrics(&self, _: &ComponentName, _: u32) -> Result<MetricsSnapshot, HostError> {
        no_backend()
    }
    async fn logs(&self, _: &ComponentName, _: u32) -> Result<Vec<String>, HostError> {
        no_backend()
    }
    async fn history(&self, _: &ComponentName) -> Result<Vec<Revision>, HostError> {
        no_backend()
    }
    async fn scale(&self, _: &ComponentName, _: u32) -> Result<ComponentStatus, HostError> {
        no_backend()
    }
    async fn restart(&self, _: &ComponentName) -> Result<(), HostError> {
        no_backend()
    }
    async fn set_image(&self, _: &ComponentName, _: &str) -> Result<Revision, HostError> {
        no_backend()
    }
    async fn set_env(&self, _: &ComponentName, _: &str, _: &str) -> Result<Revision, HostError> {
        no_backend()
    }
    async fn set_resources(&self, _: &ComponentName, _: ResourceLimits) -> Result<Revision, HostError> {
        no_backend()
    }
    async fn rollback(&self, _: &ComponentName) -> Result<Revision, HostError> {
        no_backend()
    }
    async fn ask_peer(&self, _: &ComponentName, _: &ComponentName, _: &str) -> Result<String, HostError> {
        no_backend()
    }
}

/// Upper bound on `scale(replicas)`.
pub const MAX_REPLICAS: u32 = 1_000;
/// Upper bound on `logs(tail)`.
pub const MAX_LOG_TAIL: u32 = 10_000;
/// Upper bound on `metrics(window_secs)` (one day).
pub const MAX_WINDOW_SECS: u32 = 86_400;
/// Upper bound on `set_resources(cpu_millis)` (256 cores).
pub const MAX_CPU_MILLIS: u32 = 256_000;
/// Upper bound on `set_resources(memory_mib)` (1 TiB).
pub const MAX_MEMORY_MIB: u32 = 1 << 20;
/// Upper bound on the length of string arguments (image, env value, report message, question), in bytes.
pub const MAX_STRING_BYTES: usize = 64 * 1024;

/// One validated host call with typed arguments. Serialises as `{"call": "scale", "replicas": 3}`.
///
/// Approve mode hands the caller the mutating calls it did not run ([`RunOutcome::pending`](crate::RunOutcome));
/// after an operator approves one, the caller runs it with [`HostCall::execute`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum HostCall {
    /// `acv.status()`.
    Status,
    /// `acv.metrics(window_secs)`.
    Metrics {
        /// Window length, 1..=[`MAX_WINDOW_SECS`].
        window_secs: u32,
    },
    /// `acv.logs(tail)`.
    Logs {
        /// Line count, 0..=[`MAX_LOG_TAIL`].
        tail: u32,
    },
    /// `acv.history()`.
    History,
    /// `acv.scale(replicas)`.
    Scale {
        /// Replica count, 0..=[`MAX_REPLICAS`].
        replicas: u32,
    },
    /// `acv.restart()`.
    Restart,
    /// `acv.set_image(image)`.
    SetImage {
        /// Image reference (non-empty, no whitespace).
        image: String,
    },
    /// `acv.set_env(key, value)`.
    SetEnv {
        /// Variable name (`[A-Za-z_][A-Za-z0-9_]*`).
        key: String,
        /// Value.
        value: String,
    },
    /// `acv.set_resources(cpu_millis, memory_mib)`.
    SetResources {
        /// New limits (both > 0).
        limits: ResourceLimits,
    },
    /// `acv.rollback()`.
    Rollback,
    /// `acv.report(status, message)`.
    Report {
        /// RESPONSE or ISSUE.
        status: ReportStatus,
        /// Free text.
        message: String,
    },
    /// `acv.ask_peer(component, question)`.
    AskPeer {
        /// The component asked (never the own one).
        peer: ComponentName,
        /// The question.
        question: String,
    },
}

impl HostCall {
    /// The Python function name (`scale`, `set_image`, …).
    pub fn name(&self) -> &'static str {
        match self {
            HostCall::Status => "status",
            HostCall::Metrics { .. } => "metrics",
            HostCall::Logs { .. } => "logs",
            HostCall::History => "history",
            HostCall::Scale { .. } => "scale",
            HostCall::Restart => "restart",
            HostCall::SetImage { .. } => "set_image",
            HostCall::SetEnv { .. } => "set_env",
            HostCall::SetResources { .. } => "set_resources",
            HostCall::Rollback => "rollback",
            HostCall::Report { .. } => "report",
            HostCall::AskPeer { .. } => "ask_peer",
        }
    }

    /// Whether the call changes the cluster (the calls in [`acv_protocol::MUTATING_CALLS`]).
    pub fn is_mutating(&self) -> bool {
        acv_protocol::is_mutating_call(self.name())
    }

    /// Runs the call against `caps` for `component` and returns its result as JSON (`null` for calls without a
    /// value). This performs no policy check: the sandbox checks before calling it, and a caller executing an
    /// approved pending call has taken that decision itself.
    pub async fn execute(
        &self,
        caps: &dyn Capabilities,
        component: &ComponentName,
    ) -> Result<serde_json::Value, HostError> {
        fn json<T: Serialize>(value: T) -> Result<serde_json::Value, HostError> {
            serde_json::to_value(value).map_err(|e| HostError::backend(format!("cannot encode result: {e}")))
        }
        match self {
            HostCall::Status => json(caps.status(component).await?),
            HostCall::Metrics { window_secs } => json(caps.metrics(component, *window_secs).await?),
            HostCall::Logs { tail } => json(caps.logs(component, *tail).await?),
            HostCall::History => json(caps.history(component).await?),
            HostCall::Scale { replicas } => json(caps.scale(component, *replicas).await?),
            HostCall::Restart => json(caps.restart(component).await?),
            HostCall::SetImage { image } => json(caps.set_image(component, image).await?),
            HostCall::SetEnv { key, value } => json(caps.set_env(component, key, value).await?),
            HostCall::SetResources { limits } => json(caps.set_resources(component, *limits).await?),
            HostCall::Rollback => json(caps.rollback(component).await?),
            HostCall::Report { status, message } => json(caps.report(component, *status, message).await?),
            HostCall::AskPeer { peer, question } => json(caps.ask_peer(component, peer, question).await?),
        }
    }
}
