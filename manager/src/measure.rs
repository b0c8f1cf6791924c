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
