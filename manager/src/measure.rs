//! How the manager measures components itself to verify goals (it never takes an agent's word for it): the
//! [`Measurer`] trait and [`RuntimeMeasurer`], which reads the local runtime's control API read-only through
//! [`acv_cluster::RemoteCluster`].

use std::net::SocketAddr;
use std::time::Duration;

use acv_cluster::{Cluster, RemoteCluster};
use acv_protocol::{ComponentName, Measurement};

/// Reads components' metrics and status.
#[async_trait::async_trait]
pub trait Measurer: Send + Sync + 'static {
    /// One measurement per component that could be reached; unreachable components are left out (and so count
    /// as not measured, which never satisfies an objective).
    async fn measure(&self, components: &[ComponentName]) -> Vec<(ComponentName, Measurement)>;

    /// The faults active on `component` where the backend knows them (the local runtime does, for the dashboard's
    /// plot marks); empty otherwise or when they cannot be read.
    async fn faults(&self, _component: &ComponentName) -> Vec<ActiveFault> {
        Vec::new()
    }
}

/// A fault active on a component, as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ActiveFault {
    /// The backend's id for it (stable while it lasts).
    pub id: String,
    /// What it does, e.g. `cpu_stress {"load_percent":20,"workers":1}`.
    pub what: String,
}

/// Reads one component's metrics over `window_secs` and its status through any cluster backend (read-only); `None`
/// when neither could be read. Failures are logged, never fatal: the component then counts as not measured.
pub async fn measure_one(cluster: &dyn Cluster, c: &ComponentName, window_secs: f64) -> Option<Measurement> {
    let metrics = cluster
        .metrics(window_secs)
        .await
        .inspect_err(|error| tracing::warn!(component = %c, %error, "Measuring metrics failed."))
        .ok();
    let status = cluster
        .status()
        .await
        .inspect_err(|error| tracing::warn!(component = %c, %error, "Reading status failed."))
        .ok();
    (metrics.is_some() || status.is_some()).then_some(Measurement { metrics, status })
}

/// Measures through a local runtime's control API (`--runtime-api`).
#[derive(Debug, Clone)]
pub struct RuntimeMeasurer {
    api: SocketAddr,
    window_secs: f64,
    timeout: Duration,
}

// === impl RuntimeMeasurer ===

impl RuntimeMeasurer {
    /// Reads metrics over the last `window_secs` from the runtime at `api`.
    pub fn new(api: SocketAddr, window_secs: f64) -> Self {
        Self {
            api,
            window_secs,
            timeout: Duration::from_secs(10),
        }
    }
}

#[async_trait::async_trait]
impl Measurer for RuntimeMeasurer {
    async fn measure(&self, components: &[ComponentName]) -> Vec<(ComponentName, Measurement)> {
        let mut out = Vec::with_capacity(components.len());
        for c in components {
            let cluster = match RemoteCluster::new(self.api, c.clone()) {
                Ok(r) => r.with_timeout(self.timeout),
                Err(error) => {
                    tracing::warn!(%error, "Cannot reach the runtime API.");
                    return out;
                }
            };
            if let Some(m) = measure_one(&cluster, c, self.window_secs).await {
                out.push((c.clone(), m));
            }
        }
        out
    }

    async fn faults(&self, component: &ComponentName) -> Vec<ActiveFault> {
        let cluster = match RemoteCluster::new(self.api, component.clone()) {
            Ok(r) => r.with_timeout(self.timeout),
            Err(error) => {
                tracing::warn!(%error, "Cannot reach the runtime API.");
                return Vec::new();
            }
        };
        match cluster.faults().await {
            Ok(faults) => faults
                .into_iter()
                .map(|f| ActiveFault {
                    id: f.id.0.to_string(),
                    what: describe_fault(&f.fault),
                })
                .collect(),
            Err(error) => {
                tracing::debug!(component = %component, %error, "Reading faults failed.");
                Vec::new()
            }
        }
    }
}

/// `cpu_stress {"load_percent":20,"workers":1}`: the kind, then its parameters.
fn describe_fault(fault: &acv_cluster::Fault) -> String {
    match serde_json::to_value(fault) {
        Ok(serde_json::Value::Object(mut m)) => {
            let kind = m
                .remove("kind")
                .and_then(|k| k.as_str().map(str::to_owned))
                .unwrap_or_else(|| "fault".into());
            if m.is_empty() {
                kind
            } else {
                format!("{kind} {}", serde_json::Value::Object(m))
            }
        }
        _ => format!("{fault:?}"),
    }
}

/// No backend configured: nothing is ever measured, so no goal can be verified (they end failed, "not measured").
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMeasurer;

#[async_trait::async_trait]
impl Measurer for NoMeasurer {
    async fn measure(&self, _components: &[ComponentName]) -> Vec<(ComponentName, Measurement)> {
        Vec::new()
    }
}
