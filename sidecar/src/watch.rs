//! The sidecar's own health check (the monitor/analyse half of its MAPE-K loop): measure the component through
//! the cluster backend and compare with the SLO policy.

use std::sync::Arc;

use acv_cluster::Cluster;
use acv_protocol::{Measurement, check_health};
use acv_protocol::{SloPolicy, Violation};

/// One health check's result.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// What was measured.
    pub measurement: Measurement,
    /// Objectives broken (unmeasurable ones included).
    pub violations: Vec<Violation>,
}

/// Measures one component against its policy.
pub struct Watcher {
    cluster: Arc<dyn Cluster>,
    policy: SloPolicy,
    window_secs: f64,
}

// === impl Watcher ===

impl Watcher {
    /// A watcher over `cluster` with `policy`, measuring metrics over `window_secs`.
    pub fn new(cluster: Arc<dyn Cluster>, policy: SloPolicy, window_secs: f64) -> Self {
        Self {
            cluster,
            policy,
            window_secs,
        }
    }

    /// Measures and compares. A backend failure leaves that part unmeasured, which breaks its objectives: a
    /// component we cannot observe is not known to be healthy.
    pub async fn check(&self) -> HealthCheck {
        let component = self.cluster.component().clone();
        let status = match self.cluster.status().await {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%component, %error, "Health check could not read status.");
                None
            }
        };
        let metrics = match self.cluster.metrics(self.window_secs).await {
            Ok(m) => Some(m),
            Err(error) => {
                tracing::warn!(%component, %error, "Health check could not read metrics.");
                None
            }
        };
        let measurement = Measurement { metrics, status };
        let objectives = self.policy.objectives(&component);
        let violations = check_health(&objectives, &[(component, measurement.clone())]);
        HealthCheck {
            measurement,
            violations,
        }
    }
}
