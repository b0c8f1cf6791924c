//! The sandbox's [`Capabilities`] backed by the sidecar's cluster backend: what generated programs can do, with
//! cluster errors mapped to the stable `acv.HostError` kinds. The sandbox has already checked scope, safety mode
//! and argument ranges before any of these run.

use std::sync::Arc;

use acv_cluster::{Cluster, ClusterError};
use acv_protocol::{ComponentName, ComponentStatus, MetricsSnapshot, ReportStatus, ResourceLimits, Revision};
use acv_sandbox::{Capabilities, HostError, HostErrorKind};
use async_trait::async_trait;

/// Answers `acv.ask_peer` (mechanism 3).
#[async_trait]
pub trait Peers: Send + Sync {
    /// Asks `peer` a question on behalf of `from`.
    async fn ask(
        &self,
        from: &ComponentName,
        peer: &ComponentName,
        question: &str,
    ) -> Result<String, HostError>;
}

/// Used when no peer endpoint is configured: every question fails with `unavailable`, saying why.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPeers;

#[async_trait]
impl Peers for NoPeers {
    async fn ask(&self, _from: &ComponentName, peer: &ComponentName, _q: &str) -> Result<String, HostError> {
        Err(HostError::unavailable(format!(
            "no peer endpoint is configured, so {peer} cannot be asked"
        )))
    }
}

/// Capabilities over one component's cluster backend.
pub struct ClusterCaps {
    cluster: Arc<dyn Cluster>,
    peers: Arc<dyn Peers>,
}

fn host_err(e: ClusterError) -> HostError {
    let kind = match e.kind() {
        "no_previous_revision" | "unknown_component" | "unknown_version" => HostErrorKind::NotFound,
        "timeout" | "stopped" => HostErrorKind::Unavailable,
        "permission_denied" => HostErrorKind::Refused,
        _ if e.is_bad_input() => HostErrorKind::InvalidArgument,
        _ => HostErrorKind::Backend,
    };
    HostError::new(kind, e.to_string())
}

// === impl ClusterCaps ===

impl ClusterCaps {
    /// Capabilities over `cluster`, asking peers through `peers`.
    pub fn new(cluster: Arc<dyn Cluster>, peers: Arc<dyn Peers>) -> Self {
        Self { cluster, peers }
    }

    /// Refuses a component other than the backend's own. The sandbox already guarantees this; checking again costs
    /// nothing and keeps a wrongly wired backend from acting on another service.
    fn own(&self, component: &ComponentName) -> Result<(), HostError> {
        if component == self.cluster.component() {
            Ok(())
        } else {
            Err(HostError::new(
                HostErrorKind::Refused,
                format!(
                    "this sidecar maintains {}, not {component}",
                    self.cluster.component()
                ),
            ))
        }
    }
}

#[async_trait]
impl Capabilities for ClusterCaps {
    async fn status(&self, c: &ComponentName) -> Result<ComponentStatus, HostError> {
        self.own(c)?;
        self.cluster.status().await.map_err(host_err)
    }

    async fn metrics(&self, c: &ComponentName, window_secs: u32) -> Result<MetricsSnapshot, HostError> {
        self.own(c)?;
        self.cluster
            .metrics(f64::from(window_secs))
            .await
            .map_err(host_err)
    }

    async fn logs(&self, c: &ComponentName, tail: u32) -> Result<Vec<String>, HostError> {
        self.own(c)?;
        self.cluster.logs(i64::from(tail)).await.map_err(host_err)
    }

    async fn history(&self, c: &ComponentName) -> Result<Vec<Revision>, HostError> {
        self.own(c)?;
        self.cluster.history().await.map_err(host_err)
    }

    async fn scale(&self, c: &ComponentName, replicas: u32) -> Result<ComponentStatus, HostError> {
        self.own(c)?;
        self.cluster.scale(i64::from(replicas)).await.map_err(host_err)
    }

    async fn restart(&self, c: &ComponentName) -> Result<(), HostError> {
        self.own(c)?;
        self.cluster.restart().await.map_err(host_err)
    }

    async fn set_image(&self, c: &ComponentName, image: &str) -> Result<Revision, HostError> {
        self.own(c)?;
        self.cluster.set_image(image).await.map_err(host_err)
    }

    async fn set_env(&self, c: &ComponentName, key: &str, value: &str) -> Result<Revision, HostError> {
        self.own(c)?;
        self.cluster.set_env(key, value).await.map_err(host_err)
    }

    async fn set_resources(&self, c: &ComponentName, limits: ResourceLimits) -> Result<Revision, HostError> {
        self.own(c)?;
        self.cluster
            .set_resources(i64::from(limits.cpu_millis), i64::from(limits.memory_mib))
            .await
            .map_err(host_err)
    }

    async fn rollback(&self, c: &ComponentName) -> Result<Revision, HostError> {
        self.own(c)?;
        self.cluster.rollback().await.map_err(host_err)
    }

    async fn report(&self, c: &ComponentName, status: ReportStatus, message: &str) -> Result<(), HostError> {
        tracing::info!(component = %c, ?status, message, "Program reported.");
        Ok(())
    }

    async fn ask_peer(
        &self,
        from: &ComponentName,
        peer: &ComponentName,
        q: &str,
    ) -> Result<String, HostError> {
        self.peers.ask(from, peer, q).await
    }
}
