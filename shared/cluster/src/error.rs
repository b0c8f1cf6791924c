//! The one error type of every cluster backend. Each variant maps to a stable `kind` string that the sandbox host
//! API hands to generated code as `acv.HostError.kind`.

/// Why a cluster call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The named component (service) does not exist in this cluster.
    #[error("unknown component {0:?}")]
    UnknownComponent(String),
    /// A replica count outside `0..=max`.
    #[error("invalid replica count {requested}: must be between 0 and {max}")]
    InvalidReplicas {
        /// What was asked for.
        requested: i64,
        /// The largest count this backend accepts.
        max: u32,
    },
    /// An argument was rejected (empty key, zero limit, negative window, …).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// `set_image` named a version the runtime file does not declare.
    #[error("unknown version {version:?}; known versions: {}", known.join(", "))]
    UnknownVersion {
        /// The version asked for.
        version: String,
        /// The versions that exist.
        known: Vec<String>,
    },
    /// `rollback` with only one revision in the history.
    #[error("no previous revision to roll back to (current revision {current})")]
    NoPreviousRevision {
        /// The only revision.
        current: u64,
    },
    /// The runtime file could not be read or is malformed.
    #[error("runtime file: {0}")]
    RuntimeFile(String),
    /// A service's port could not be bound.
    #[error("cannot bind 127.0.0.1:{port} for {service}: {source}")]
    Bind {
        /// The service.
        service: String,
        /// The port.
        port: u16,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The runtime was shut down; the handle is no longer usable.
    #[error("the cluster runtime has been shut down")]
    Stopped,
    /// Waiting for a condition ran out of time.
    #[error("timed out after {secs:.1}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        secs: f64,
    },
    /// The backend refused the operation for lack of permission (Kubernetes RBAC: HTTP 403).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The backend (API server, process table, …) failed.
    #[error("backend error: {0}")]
    Backend(String),
    /// A remote runtime's control API answered with an error of this `kind` (one of the kinds above).
    #[error("{message}")]
    Remote {
        /// The remote error's [`ClusterError::kind`].
        kind: &'static str,
        /// The remote error's message.
        message: String,
    },
}

/// Every kind [`ClusterError::kind`] can return.
pub const ALL_KINDS: [&str; 11] = [
    "unknown_component",
    "invalid_replicas",
    "invalid_argument",
    "unknown_version",
    "no_previous_revision",
    "runtime_file",
    "bind",
    "stopped",
    "timeout",
    "permission_denied",
    "backend",
];

const BAD_INPUT_KINDS: [&str; 6] = [
    "unknown_component",
    "invalid_replicas",
    "invalid_argument",
    "unknown_version",
    "no_previous_revision",
    "runtime_file",
];

// === impl ClusterError ===

impl ClusterError {
    /// A short, stable classification for metrics labels and `acv.HostError.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterError::UnknownComponent(_) => "unknown_component",
            ClusterError::InvalidReplicas { .. } => "invalid_replicas",
            ClusterError::InvalidArgument { .. } => "invalid_argument",
            ClusterError::UnknownVersion { .. } => "unknown_version",
            ClusterError::NoPreviousRevision { .. } => "no_previous_revision",
            ClusterError::RuntimeFile(_) => "runtime_file",
            ClusterError::Bind { .. } => "bind",
            ClusterError::Stopped => "stopped",
            ClusterError::Timeout { .. } => "timeout",
            ClusterError::PermissionDenied(_) => "permission_denied",
            ClusterError::Backend(_) => "backend",
            ClusterError::Remote { kind, .. } => kind,
        }
    }

    /// Whether the caller sent bad input (as opposed to the backend failing).
    pub fn is_bad_input(&self) -> bool {
        if let ClusterError::Remote { kind, .. } = self {
            return BAD_INPUT_KINDS.contains(kind);
        }
        matches!(
            self,
            ClusterError::UnknownComponent(_)
                | ClusterError::InvalidReplicas { .. }
                | ClusterError::InvalidArgument { .. }
                | ClusterError::UnknownVersion { .. }
                | ClusterError::NoPreviousRevision { .. }
                | ClusterError::RuntimeFile(_)
        )
    }

    /// The static kind string equal to `kind`, `"backend"` for an unknown one (used to rebuild remote errors).
    pub fn known_kind(kind: &str) -> &'static str {
        ALL_KINDS
            .iter()
            .copied()
            .find(|k| *k == kind)
            .unwrap_or("backend")
    }

    /// An [`ClusterError::InvalidArgument`] for `what`.
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        ClusterError::InvalidArgument {
            what,
            reason: reason.into(),
        }
    }
}
