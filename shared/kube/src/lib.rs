//! Kubernetes backend of [`acv_cluster::Cluster`]: one Deployment in one namespace, scoped to one component, via
//! kube-rs for the API server and the Prometheus HTTP API for metrics.
//!
//! # Layout
//! - [`KubeCluster`]: the `Cluster` implementation (status, scale, restart, set image/env/resources, history,
//!   rollback, logs, metrics).
//! - [`KubeOptions`]: deployment/container names, replica cap, Prometheus URL and the request histogram's name,
//!   labels and unit (Sock Shop's by default); read from env with [`KubeOptions::from_env`].
//! - [`error`]: [`KubeError`] and its mapping onto [`acv_cluster::ClusterError`].
//! - [`model`]: pure conversions from Deployments, ReplicaSets and Pods to the acv wire types.
//! - [`patch`]: the patch bodies (`kubectl scale`, `rollout restart`, `set image`, `rollout undo`, …).
//! - [`promql`]: PromQL builders; [`prometheus`]: the instant-query client.
//! - [`quantity`]: exact parsing of `500m`, `1`, `512Mi`, `1Gi` into millicores and MiB.
//! - [`crd`]: the `Goal` custom resource (same spec as `acvctl goal apply -f`), its status, the generated CRD.
//! - [`controller`]: the Goal controller (kube-rs runtime) feeding goals to the manager and writing `.status`.
//! - [`webhook`]: sidecar injection (a pure AdmissionReview → JSON patch function) and its rustls server.
#![forbid(unsafe_code)]

use std::time::Duration;

use acv_core::env::{EnvError, Parser, Strings};

pub mod cluster;
pub mod controller;
pub mod crd;
pub mod error;
pub mod model;
pub mod patch;
pub mod prometheus;
pub mod promql;
pub mod quantity;
pub mod webhook;

#[cfg(test)]
mod fixtures;

pub use cluster::KubeCluster;

/// Selects rustls' `ring` crypto provider for the process, unless one is already installed. Needed before building
/// a TLS client: in a binary that also links other rustls users (lapin, async-nats), both `ring` and `aws-lc-rs`
/// end up enabled and rustls then refuses to guess. Idempotent and cheap; [`KubeCluster::connect`] calls it.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    rustls::crypto::ring::default_provider().install_default().ok();
}
pub use error::KubeError;
pub use quantity::QuantityError;

/// Namespace (`ACV_KUBE_NAMESPACE`, default: the client configuration's namespace, i.e. the pod's own in a
/// cluster).
pub const ENV_NAMESPACE: &str = "ACV_KUBE_NAMESPACE";
/// Deployment name (`ACV_KUBE_DEPLOYMENT`, default: the component name).
pub const ENV_DEPLOYMENT: &str = "ACV_KUBE_DEPLOYMENT";
/// Container name (`ACV_KUBE_CONTAINER`, default: the container named like the component, else the first).
pub const ENV_CONTAINER: &str = "ACV_KUBE_CONTAINER";
/// Largest replica count `scale` accepts (`ACV_KUBE_MAX_REPLICAS`, default 20, at most 1000).
pub const ENV_MAX_REPLICAS: &str = "ACV_KUBE_MAX_REPLICAS";
/// Prometheus HTTP API base URL (`ACV_KUBE_PROMETHEUS_URL`, e.g. `http://prometheus.monitoring:9090`; unset: no
/// metrics).
pub const ENV_PROMETHEUS_URL: &str = "ACV_KUBE_PROMETHEUS_URL";
/// Per-query Prometheus timeout (`ACV_KUBE_PROMETHEUS_TIMEOUT`, default `5s`).
pub const ENV_PROMETHEUS_TIMEOUT: &str = "ACV_KUBE_PROMETHEUS_TIMEOUT";
/// Request histogram base name (`ACV_KUBE_LATENCY_METRIC`, default `request_duration_seconds`, as in Sock Shop).
pub const ENV_LATENCY_METRIC: &str = "ACV_KUBE_LATENCY_METRIC";
/// Label selecting the service in that histogram (`ACV_KUBE_SERVICE_LABEL`, default `name`; Sock Shop services
/// themselves set `service`).
pub const ENV_SERVICE_LABEL: &str = "ACV_KUBE_SERVICE_LABEL";
/// Value of that label (`ACV_KUBE_SERVICE_VALUE`, default: the component name).
pub const ENV_SERVICE_VALUE: &str = "ACV_KUBE_SERVICE_VALUE";
/// Label holding the HTTP status code (`ACV_KUBE_STATUS_LABEL`, default `status_code`).
pub const ENV_STATUS_LABEL: &str = "ACV_KUBE_STATUS_LABEL";
/// How the component's series of the request histogram are found (`ACV_KUBE_REQUEST_MATCH`: `label`, the default,
/// by [`ENV_SERVICE_LABEL`]; or `pods`, by the `namespace` and `pod` labels of the Deployment's pods, for services
/// that do not name themselves in their metrics).
pub const ENV_REQUEST_MATCH: &str = "ACV_KUBE_REQUEST_MATCH";
/// Unit of the request histogram's buckets (`ACV_KUBE_LATENCY_UNIT`: `seconds`, the default, or `milliseconds`).
pub const ENV_LATENCY_UNIT: &str = "ACV_KUBE_LATENCY_UNIT";
/// Field manager recorded on every patch (`ACV_KUBE_FIELD_MANAGER`, default `acv-sidecar`).
pub const ENV_FIELD_MANAGER: &str = "ACV_KUBE_FIELD_MANAGER";

/// Upper bound of [`KubeOptions::max_replicas`].
pub const MAX_REPLICAS_CAP: u32 = 1000;

/// How [`KubeCluster`] finds and measures its component.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeOptions {
    /// Deployment name; `None` means the component name.
    pub deployment: Option<String>,
    /// Container name; `None` means the container named like the component, else the first.
    pub container: Option<String>,
    /// Largest replica count `scale` accepts.
    pub max_replicas: u32,
    /// Prometheus HTTP API base URL; `None` disables `metrics` (it returns [`KubeError::PrometheusNotConfigured`]).
    pub prometheus_url: Option<String>,
    /// Per-query Prometheus timeout.
    pub prometheus_timeout: Duration,
    /// Request histogram base name (without `_bucket` / `_count`).
    pub latency_metric: String,
    /// Label naming the service in the request histogram.
    pub service_label: String,
    /// That label's value; `None` means the component name.
    pub service_value: Option<String>,
    /// Label holding the HTTP status code.
    pub status_label: String,
    /// How the component's series of the request histogram are found.
    pub request_match: RequestMatch,
    /// Unit of the request histogram's buckets.
    pub latency_unit: LatencyUnit,
    /// Field manager recorded on patches.
    pub field_manager: String,
}

/// How the component's series of the request histogram are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RequestMatch {
    /// By a label naming the service ([`KubeOptions::service_label`] = [`KubeOptions::service_value`]).
    #[default]
    Label,
    /// By the Deployment's pods (`namespace` and `pod` labels added by Prometheus' Kubernetes pod discovery).
    Pods,
}

/// Unit of a latency histogram's bucket bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatencyUnit {
    /// Seconds (the Prometheus convention, Sock Shop).
    #[default]
    Seconds,
    /// Milliseconds (e.g. OpenTelemetry's older `http.server.duration`).
    Milliseconds,
}

// === impl LatencyUnit ===

impl LatencyUnit {
    /// Milliseconds per unit.
    pub fn millis(self) -> f64 {
        match self {
            LatencyUnit::Seconds => 1000.0,
            LatencyUnit::Milliseconds => 1.0,
        }
    }
}

// === impl KubeOptions ===

impl Default for KubeOptions {
    fn default() -> Self {
        Self {
            deployment: None,
            container: None,
            max_replicas: 20,
            prometheus_url: None,
            prometheus_timeout: Duration::from_secs(5),
            latency_metric: "request_duration_seconds".into(),
            service_label: "name".into(),
            service_value: None,
            status_label: "status_code".into(),
            request_match: RequestMatch::Label,
            latency_unit: LatencyUnit::Seconds,
            field_manager: "acv-sidecar".into(),
        }
    }
}

impl KubeOptions {
    /// Reads the `ACV_KUBE_*` keys; every bad key is reported at once.
    pub fn from_env(env: &dyn Strings) -> Result<Self, EnvError> {
        let d = Self::default();
        let mut p = Parser::default();
        let label = |s: &str| {
            let ok = s
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if ok {
                Ok(s.to_owned())
            } else {
                Err(format!("{s:?} is not a Prometheus label or metric name"))
            }
        };
        let options = Self {
            deployment: p.parse_with(env, ENV_DEPLOYMENT, |s| Ok(s.to_owned())),
            container: p.parse_with(env, ENV_CONTAINER, |s| Ok(s.to_owned())),
            max_replicas: p
                .parse_with(env, ENV_MAX_REPLICAS, |s| match s.parse::<u32>() {
                    Ok(n) if (1..=MAX_REPLICAS_CAP).contains(&n) => Ok(n),
                    _ => Err(format!("must be an integer in 1..={MAX_REPLICAS_CAP}")),
                })
                .unwrap_or(d.max_replicas),
            prometheus_url: p.parse_with(env, ENV_PROMETHEUS_URL, |s| {
                prometheus::Prometheus::new(s, d.prometheus_timeout)
                    .map(|_| s.to_owned())
                    .map_err(|e| e.to_string())
            }),
            prometheus_timeout: p.duration_or(env, ENV_PROMETHEUS_TIMEOUT, d.prometheus_timeout),
            latency_metric: p
                .parse_with(env, ENV_LATENCY_METRIC, label)
                .unwrap_or(d.latency_metric),
            service_label: p
                .parse_with(env, ENV_SERVICE_LABEL, label)
                .unwrap_or(d.service_label),
            service_value: p.parse_with(env, ENV_SERVICE_VALUE, |s| Ok(s.to_owned())),
            status_label: p
                .parse_with(env, ENV_STATUS_LABEL, label)
                .unwrap_or(d.status_label),
            request_match: p
                .parse_with(env, ENV_REQUEST_MATCH, |s| match s {
                    "label" => Ok(RequestMatch::Label),
                    "pods" => Ok(RequestMatch::Pods),
                    _ => Err("must be `label` or `pods`".to_owned()),
                })
                .unwrap_or(d.request_match),
            latency_unit: p
                .parse_with(env, ENV_LATENCY_UNIT, |s| match s {
                    "seconds" | "s" => Ok(LatencyUnit::Seconds),
                    "milliseconds" | "ms" => Ok(LatencyUnit::Milliseconds),
                    _ => Err("must be `seconds` or `milliseconds`".to_owned()),
                })
                .unwrap_or(d.latency_unit),
            field_manager: p
                .parse_with(env, ENV_FIELD_MANAGER, |s| Ok(s.to_owned()))
                .unwrap_or(d.field_manager),
        };
        p.finish()?;
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn options_from_env() {
        let env: HashMap<&str, &str> = HashMap::new();
        assert_eq!(KubeOptions::from_env(&env).unwrap(), KubeOptions::default());

        let env = HashMap::from([
            (ENV_DEPLOYMENT, "carts-v2"),
            (ENV_MAX_REPLICAS, "8"),
            (ENV_PROMETHEUS_URL, "http://prometheus.monitoring:9090"),
            (ENV_SERVICE_LABEL, "service"),
            (ENV_PROMETHEUS_TIMEOUT, "2s"),
            (ENV_LATENCY_METRIC, "http_server_duration_milliseconds"),
            (ENV_LATENCY_UNIT, "ms"),
            (ENV_REQUEST_MATCH, "pods"),
        ]);
        let o = KubeOptions::from_env(&env).unwrap();
        assert_eq!(o.deployment.as_deref(), Some("carts-v2"));
        assert_eq!(o.max_replicas, 8);
        assert_eq!(
            o.prometheus_url.as_deref(),
            Some("http://prometheus.monitoring:9090")
        );
        assert_eq!(o.service_label, "service");
        assert_eq!(o.prometheus_timeout, Duration::from_secs(2));
        assert_eq!(o.latency_metric, "http_server_duration_milliseconds");
        assert_eq!(o.latency_unit, LatencyUnit::Milliseconds);
        assert_eq!(o.request_match, RequestMatch::Pods);

        let env = HashMap::from([
            (ENV_MAX_REPLICAS, "0"),
            (ENV_PROMETHEUS_URL, "nope"),
            (ENV_SERVICE_LABEL, "bad-label"),
            (ENV_LATENCY_UNIT, "minutes"),
            (ENV_REQUEST_MATCH, "everything"),
        ]);
        match KubeOptions::from_env(&env) {
            Err(EnvError::Invalid(bad)) => assert_eq!(bad.len(), 5, "{bad:?}"),
            other => panic!("expected 5 bad keys, got {other:?}"),
        }
    }
}
