//! [`LocalCluster`]: the [`Cluster`] view of one service of a running [`LocalRuntime`](crate::LocalRuntime).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use acv_cluster::{Cluster, ClusterError, validate};
use acv_protocol::{ComponentName, ComponentStatus, MetricsSnapshot, ReplicaState, Revision};

use crate::supervisor::{Service, lock};

/// The [`Cluster`] view of one local service.
#[derive(Clone)]
pub struct LocalCluster {
    service: Arc<Service>,
}

// === impl LocalCluster ===

impl LocalCluster {
    pub(crate) fn new(service: Arc<Service>) -> Self {
        LocalCluster { service }
    }

    fn live(&self) -> Result<&Service, ClusterError> {
        if self.service.shared.stopped.load(Ordering::SeqCst) {
            return Err(ClusterError::Stopped);
        }
        Ok(&self.service)
    }

    /// The front address of this service.
    pub fn addr(&self) -> SocketAddr {
        self.service.addr
    }
}

#[async_trait::async_trait]
impl Cluster for LocalCluster {
    fn component(&self) -> &ComponentName {
        &self.service.name
    }

    async fn status(&self) -> Result<ComponentStatus, ClusterError> {
        Ok(self.live()?.status())
    }

    async fn metrics(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError> {
        let window = validate::window(window_secs)?;
        Ok(self.live()?.metrics(Duration::from_secs_f64(window)).await)
    }

    async fn logs(&self, tail: i64) -> Result<Vec<String>, ClusterError> {
        let n = validate::tail(tail)?;
        Ok(self.live()?.logs.tail(n))
    }

    async fn scale(&self, replicas: i64) -> Result<ComponentStatus, ClusterError> {
        let svc = self.live()?;
        let n = validate::replicas(replicas, svc.shared.settings.max_replicas)?;
        let before = {
            let mut st = lock(&svc.state);
            std::mem::replace(&mut st.desired, n)
        };
        if before != n {
            svc.event(format!("scaled from {before} to {n} replicas"));
        }
        svc.reconcile().await;
        Ok(svc.status())
    }

    async fn restart(&self) -> Result<(), ClusterError> {
        let svc = self.live()?;
        lock(&svc.state).restart_nonce += 1;
        svc.event("restart of every replica requested".into());
        svc.wake.notify_one();
        Ok(())
    }

    async fn set_image(&self, image: &str) -> Result<Revision, ClusterError> {
        validate::image(image)?;
        let svc = self.live()?;
        if !svc.spec.versions.is_empty() && !svc.spec.versions.contains_key(image) {
            return Err(ClusterError::UnknownVersion {
                version: image.to_owned(),
                known: svc.spec.versions.keys().cloned().collect(),
            });
        }
        Ok(svc.new_revision(format!("set_image {image}"), |r| r.image = image.to_owned()))
    }

    async fn set_env(&self, key: &str, value: &str) -> Result<Revision, ClusterError> {
        validate::env_var(key, value)?;
        let svc = self.live()?;
        Ok(svc.new_revision(format!("set_env {key}"), |r| {
            r.env.insert(key.to_owned(), value.to_owned());
        }))
    }

    async fn set_resources(&self, cpu_millis: i64, memory_mib: i64) -> Result<Revision, ClusterError> {
        let limits = validate::resources(cpu_millis, memory_mib)?;
        let svc = self.live()?;
        Ok(svc.new_revision(
            format!("set_resources cpu={cpu_millis}m memory={memory_mib}Mi"),
            |r| r.limits = limits,
        ))
    }

    async fn rollback(&self) -> Result<Revision, ClusterError> {
        let svc = self.live()?;
        let previous = {
            let st = lock(&svc.state);
            let n = st.revisions.len();
            if n < 2 {
                return Err(ClusterError::NoPreviousRevision {
                    current: st.current().revision,
                });
            }
            st.revisions[n - 2].clone()
        };
        Ok(
            svc.new_revision(format!("rollback to revision {}", previous.revision), |r| {
                r.image = previous.image.clone();
                r.env = previous.env.clone();
                r.limits = previous.limits;
            }),
        )
    }

    async fn history(&self) -> Result<Vec<Revision>, ClusterError> {
        Ok(lock(&self.live()?.state).revisions.clone())
    }
}

/// Whether a status shows a crash (any replica in `CrashLoopBackOff`).
pub fn is_crashlooping(status: &ComponentStatus) -> bool {
    status
        .replicas
        .iter()
        .any(|r| r.state == ReplicaState::CrashLoopBackOff)
}
