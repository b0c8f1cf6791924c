//! [`KubeError`]: what can go wrong talking to the API server or Prometheus, and how each case maps onto the
//! backend-neutral [`ClusterError`] that the sandbox host API hands to generated code.

use acv_cluster::ClusterError;

use crate::quantity::QuantityError;

/// Why a Kubernetes backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The Deployment does not exist (HTTP 404).
    #[error("deployment {namespace}/{name} not found")]
    DeploymentNotFound {
        /// Namespace searched.
        namespace: String,
        /// Deployment name.
        name: String,
    },
    /// The ServiceAccount may not do this (HTTP 403): the Role lacks a verb or resource name.
    #[error("permission denied to {action}: {message}")]
    Forbidden {
        /// What was attempted (`get deployments/carts`, `patch deployments/carts/scale`, …).
        action: String,
        /// The API server's message.
        message: String,
    },
    /// The API server rejected the request as invalid (HTTP 400 or 422), e.g. an image reference it refuses.
    #[error("the API server rejected {action}: {message}")]
    Rejected {
        /// What was attempted.
        action: String,
        /// The API server's message.
        message: String,
    },
    /// Any other error status from the API server (409 conflict, 429, 5xx, …).
    #[error("API server answered {code} {reason} to {action}: {message}")]
    Api {
        /// HTTP status code.
        code: u16,
        /// Machine-readable reason (`Conflict`, `InternalError`, …).
        reason: String,
        /// What was attempted.
        action: String,
        /// The API server's message.
        message: String,
    },
    /// The API server could not be reached or its answer could not be read.
    #[error("kubernetes client error during {action}: {source}")]
    Client {
        /// What was attempted.
        action: String,
        /// The client error.
        #[source]
        source: Box<kube::Error>,
    },
    /// The Deployment's pod template has no containers.
    #[error("deployment {0} has no containers")]
    NoContainer(String),
    /// A field that a reconciled Deployment always has is missing (spec, selector, template spec).
    #[error("deployment {deployment} has no {field}")]
    MissingField {
        /// The Deployment.
        deployment: String,
        /// The missing field.
        field: &'static str,
    },
    /// A resource quantity on the Deployment could not be read.
    #[error("cannot read {field} of container {container}: {source}")]
    Quantity {
        /// `limits.cpu`, `limits.memory`, …
        field: &'static str,
        /// The container.
        container: String,
        /// Why.
        #[source]
        source: QuantityError,
    },
    /// `metrics` was called but no Prometheus URL is configured.
    #[error(
        "metrics need Prometheus but no Prometheus URL is configured (set {})",
        crate::ENV_PROMETHEUS_URL
    )]
    PrometheusNotConfigured,
    /// The Prometheus URL is malformed, or the HTTP client could not be built.
    #[error("invalid Prometheus configuration: {0}")]
    PrometheusConfig(String),
    /// The `ACV_KUBE_*` configuration is invalid.
    #[error(transparent)]
    Env(#[from] acv_core::env::EnvError),
    /// Prometheus could not be reached, answered non-2xx, or returned an unexpected body.
    #[error("Prometheus query {query:?} failed: {message}")]
    Prometheus {
        /// The PromQL query.
        query: String,
        /// What went wrong.
        message: String,
    },
}

// === impl KubeError ===

impl KubeError {
    /// Classifies a kube client error for `action` (e.g. `get deployments/carts`). `deployment` is set when the
    /// request targets the Deployment itself, so that a 404 means "no such component".
    pub fn from_kube(err: kube::Error, action: impl Into<String>, deployment: Option<(&str, &str)>) -> Self {
        let action = action.into();
        match err {
            kube::Error::Api(status) => {
                let code = status.code;
                match (code, deployment) {
                    (404, Some((namespace, name))) => KubeError::DeploymentNotFound {
                        namespace: namespace.to_owned(),
                        name: name.to_owned(),
                    },
                    (403, _) => KubeError::Forbidden {
                        action,
                        message: status.message,
                    },
                    (400 | 422, _) => KubeError::Rejected {
                        action,
                        message: status.message,
                    },
                    _ => KubeError::Api {
                        code,
                        reason: status.reason,
                        action,
                        message: status.message,
                    },
                }
            }
            other => KubeError::Client {
                action,
                source: Box::new(other),
            },
        }
    }

    /// A short, stable classification for metrics labels and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            KubeError::DeploymentNotFound { .. } => "not_found",
            KubeError::Forbidden { .. } => "forbidden",
            KubeError::Rejected { .. } => "rejected",
            KubeError::Api { .. } => "api",
            KubeError::Client { .. } => "client",
            KubeError::NoContainer(_) => "no_container",
            KubeError::MissingField { .. } => "missing_field",
            KubeError::Quantity { .. } => "quantity",
            KubeError::PrometheusNotConfigured => "prometheus_not_configured",
            KubeError::PrometheusConfig(_) => "prometheus_config",
            KubeError::Env(_) => "env",
            KubeError::Prometheus { .. } => "prometheus",
        }
    }

    /// Whether this is an API answer with HTTP status `code`.
    pub fn is_status(&self, code: u16) -> bool {
        match self {
            KubeError::DeploymentNotFound { .. } => code == 404,
            KubeError::Forbidden { .. } => code == 403,
            KubeError::Api { code: c, .. } => *c == code,
            _ => false,
        }
    }
}

impl From<KubeError> for ClusterError {
    fn from(err: KubeError) -> Self {
        match err {
            KubeError::DeploymentNotFound { namespace, name } => ClusterError::UnknownComponent(format!(
                "{name} (no Deployment {name} in namespace {namespace})"
            )),
            KubeError::Rejected { .. } => ClusterError::InvalidArgument {
                what: "kubernetes request",
                reason: err.to_string(),
            },
            // The message says what is missing so that a planner (or a person) can fix the Role.
            KubeError::Forbidden { .. } => ClusterError::PermissionDenied(format!(
                "{err}; the sidecar's ServiceAccount needs this verb (see the Role in docs/kubernetes.md)"
            )),
            other => ClusterError::Backend(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("boom", reason)
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn classification() {
        let e = KubeError::from_kube(
            api(404, "NotFound"),
            "get deployments/carts",
            Some(("shop", "carts")),
        );
        assert!(matches!(e, KubeError::DeploymentNotFound { .. }));
        assert!(matches!(ClusterError::from(e), ClusterError::UnknownComponent(m) if m.contains("carts")));

        let e = KubeError::from_kube(api(404, "NotFound"), "get pods/p-1/log", None);
        assert!(e.is_status(404));
        assert_eq!(ClusterError::from(e).kind(), "backend");

        let e = KubeError::from_kube(
            api(403, "Forbidden"),
            "patch deployments/carts",
            Some(("shop", "carts")),
        );
        assert!(matches!(e, KubeError::Forbidden { .. }));
        let c = ClusterError::from(e);
        assert_eq!(c.kind(), "permission_denied");
        assert!(
            c.to_string()
                .contains("permission denied to patch deployments/carts"),
            "{c}"
        );

        let e = KubeError::from_kube(api(422, "Invalid"), "patch deployments/carts", None);
        assert_eq!(ClusterError::from(e).kind(), "invalid_argument");
        let e = KubeError::from_kube(api(409, "Conflict"), "patch deployments/carts", None);
        assert!(e.is_status(409));
        assert_eq!(
            ClusterError::from(KubeError::PrometheusNotConfigured).kind(),
            "backend"
        );
    }
}
