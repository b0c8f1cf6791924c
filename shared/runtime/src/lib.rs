//! The local runtime: every service of a [`RuntimeSpec`] runs as N replica processes on 127.0.0.1 behind a
//! round-robin front on the service's stable port. [`LocalRuntime`] is the control handle for the whole set
//! (start, faults, ports, shutdown); [`LocalCluster`] is the [`Cluster`](acv_cluster::Cluster) view of one
//! service.
//! Agents do not link this crate: they reach a runtime in another process through its control API ([`api`]) with
//! [`acv_cluster::RemoteCluster`].
//!
//! What it does, in Kubernetes terms: replicas are pods (`NAME-N`), restarted with exponential backoff after a
//! crash (`CrashLoopBackOff` while waiting); every image/env/limits change is a revision and its pods replace the
//! old ones (rolling update one pod at a time, or Recreate; see [`Strategy`]); `rollback` re-applies the previous
//! revision; a `/health` probe decides readiness and the front only routes to ready replicas. CPU and memory come
//! from `/proc` and are reported against the declared limits. Memory limits are enforced (a replica over its limit
//! is killed, like an OOM kill); CPU limits are only reported (a replica may use more than 100 % of its limit, and
//! the metrics say so). Request rate, latency and errors come from the service's own `request_duration_seconds`
//! histogram when it exports one, else from the front, which times every request it forwards.
//!
//! # Layout
//! - [`spec`]: the runtime file.
//! - [`api`]: the control API (JSON over HTTP) other processes use through
//!   [`RemoteCluster`](acv_cluster::RemoteCluster).
//! - [`front`]: the round-robin HTTP front, with its request histogram.
//! - `supervisor`: pods, backoff, probes, routing, status; `rollout`: revisions and pod replacement;
//!   `faults`: pod failure, CPU/memory stressors, added latency; `sampling`: the sampler and metrics windows.
//! - [`prom`]: a Prometheus text exposition parser and histogram sets.
//! - [`window`]: windows over two scrapes: request rate, quantiles from histogram buckets, error rate.
//! - [`procfs`]: CPU time and resident memory of a process from `/proc`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_cluster::ClusterError;
use acv_protocol::{ComponentName, ComponentStatus};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use supervisor::{Service, Shared, lock};

pub mod api;
mod cluster;
mod faults;
pub mod front;
mod logs;
pub mod procfs;
pub mod prom;
mod rollout;
mod sampling;
pub mod spec;
mod supervisor;
pub mod window;

pub use acv_cluster::{Fault, FaultId, FaultStatus, FaultTarget, Mode, Selector};
pub use cluster::{LocalCluster, is_crashlooping};
pub use spec::{RuntimeSpec, ServiceSpec, Settings, Strategy};

/// The running set of services. Dropping it kills every child; [`LocalRuntime::shutdown`] also waits for them.
pub struct LocalRuntime {
    shared: Arc<Shared>,
    services: BTreeMap<String, Arc<Service>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// One replica as the control handle sees it (for tests and experiments, beyond what
/// [`Cluster`](acv_cluster::Cluster) shows).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaInfo {
    /// `NAME-N`.
    pub name: String,
    /// Unique per pod of the service: a pod replacing another one (rollout, restart, scale-out) gets a new one,
    /// a process restarted in place keeps it.
    pub uid: u64,
    /// The process, if one runs.
    pub pid: Option<u32>,
    /// Where it listens, if it runs.
    pub addr: Option<SocketAddr>,
    /// Whether it passes its health check.
    pub ready: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// Pids of the stressors attributed to it.
    pub stressor_pids: Vec<u32>,
}

// === impl LocalRuntime ===

impl LocalRuntime {
    /// Binds every service's front, then starts the supervisors, which spawn the replicas. Returns without waiting
    /// for readiness (see [`LocalRuntime::wait_ready`]). Must be called inside a Tokio runtime.
    pub async fn start(spec: RuntimeSpec) -> Result<Self, ClusterError> {
        spec.validate()?;
        let mut listeners = Vec::new();
        for svc in &spec.services {
            let l = tokio::net::TcpListener::bind(("127.0.0.1", svc.port))
                .await
                .map_err(|source| ClusterError::Bind {
                    service: svc.name.to_string(),
                    port: svc.port,
                    source,
                })?;
            let addr = l.local_addr().map_err(|e| ClusterError::Backend(e.to_string()))?;
            listeners.push((svc.clone(), l, addr));
        }
        let discovery = listeners
            .iter()
            .flat_map(|(svc, _, addr)| {
                let prefix = svc.name.as_str().to_ascii_uppercase().replace('-', "_");
                [
                    (format!("{prefix}_SERVICE_HOST"), addr.ip().to_string()),
                    (format!("{prefix}_SERVICE_PORT"), addr.port().to_string()),
                ]
            })
            .collect();
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(10))
            .build_http();
        let shared = Arc::new(Shared {
            settings: spec.settings.clone(),
            stressor: spec.stressor.clone(),
            discovery,
            shutdown: CancellationToken::new(),
            stopped: AtomicBool::new(false),
            terminating: Mutex::new(Vec::new()),
            spawned: Mutex::new(Vec::new()),
            http,
        });
        let mut services = BTreeMap::new();
        let mut tasks = Vec::new();
        for (svc, listener, addr) in listeners {
            let service = Arc::new(Service::new(svc, addr, Arc::clone(&shared)));
            service.event(format!("front listening on {addr}"));
            tasks.push(tokio::spawn(front::serve(
                listener,
                Arc::clone(&service.front),
                shared.shutdown.clone(),
            )));
            tasks.push(tokio::spawn(Arc::clone(&service).run_supervisor()));
            tasks.push(tokio::spawn(Arc::clone(&service).run_sampler()));
            services.insert(service.name.to_string(), service);
        }
        Ok(LocalRuntime {
            shared,
            services,
            tasks: Mutex::new(tasks),
        })
    }

    /// Parses a runtime file and starts it.
    pub async fn start_file(
        path: &std::path::Path,
        vars: &BTreeMap<String, String>,
    ) -> Result<Self, ClusterError> {
        Self::start(RuntimeSpec::from_file(path, vars)?).await
    }

    fn service(&self, name: &str) -> Result<&Arc<Service>, ClusterError> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(ClusterError::Stopped);
        }
        self.services
            .get(name)
            .ok_or_else(|| ClusterError::UnknownComponent(name.to_owned()))
    }

    /// The [`Cluster`](acv_cluster::Cluster) handle scoped to service `name`.
    pub fn cluster(&self, name: &str) -> Result<LocalCluster, ClusterError> {
        Ok(LocalCluster::new(Arc::clone(self.service(name)?)))
    }

    /// The service names.
    pub fn services(&self) -> Vec<ComponentName> {
        self.services.values().map(|s| s.name.clone()).collect()
    }

    /// The front address (stable port) of service `name`.
    pub fn addr(&self, name: &str) -> Result<SocketAddr, ClusterError> {
        Ok(self.service(name)?.addr)
    }

    /// The front port of service `name`.
    pub fn port(&self, name: &str) -> Result<u16, ClusterError> {
        Ok(self.addr(name)?.port())
    }

    /// The replicas of service `name`, with pids and addresses.
    pub fn replicas(&self, name: &str) -> Result<Vec<ReplicaInfo>, ClusterError> {
        let svc = self.service(name)?;
        let st = lock(&svc.state);
        Ok(st
            .slots
            .iter()
            .map(|s| ReplicaInfo {
                name: s.name(&svc.name),
                uid: s.uid,
                pid: s.proc.as_ref().map(|p| p.pid),
                addr: s.proc.as_ref().map(|p| p.addr),
                ready: s.proc.as_ref().is_some_and(|p| p.ready),
                restarts: s.restarts,
                stressor_pids: s.stressors.iter().map(|s| s.pid).collect(),
            })
            .collect())
    }

    /// `(forwarded, refused for lack of a ready replica)` requests of service `name`'s front.
    pub fn front_counts(&self, name: &str) -> Result<(u64, u64), ClusterError> {
        Ok(self.service(name)?.front.counts())
    }

    /// Injects `fault` into every pod of service `name`, ending after `duration` if given.
    pub fn inject(
        &self,
        name: &str,
        fault: Fault,
        duration: Option<Duration>,
    ) -> Result<FaultId, ClusterError> {
        Ok(self.service(name)?.inject(fault, Selector::ALL, duration)?.id)
    }

    /// Injects `fault` into the pods of service `name` that `selector` picks among those that exist now (pods
    /// created later are clean), ending after `duration` if given. The answer names the pods.
    pub fn inject_selected(
        &self,
        name: &str,
        fault: Fault,
        selector: Selector,
        duration: Option<Duration>,
    ) -> Result<FaultStatus, ClusterError> {
        self.service(name)?.inject(fault, selector, duration)
    }

    /// The active faults of service `name`.
    pub fn faults(&self, name: &str) -> Result<Vec<FaultStatus>, ClusterError> {
        Ok(self.service(name)?.faults())
    }

    /// Clears one fault of service `name`; returns whether it was active.
    pub fn clear_fault(&self, name: &str, id: FaultId) -> Result<bool, ClusterError> {
        Ok(self.service(name)?.clear_faults(Some(id)) > 0)
    }

    /// Clears every fault of service `name`; returns how many were active.
    pub fn clear_faults(&self, name: &str) -> Result<usize, ClusterError> {
        Ok(self.service(name)?.clear_faults(None))
    }

    /// Every pid this runtime ever spawned (replicas and stressors), for leak checks.
    pub fn spawned_pids(&self) -> Vec<u32> {
        lock(&self.shared.spawned).clone()
    }

    /// Serves the control API ([`api`]) on `addr` (loopback only; port 0 = any) until shutdown; returns where.
    pub async fn serve_api(self: &Arc<Self>, addr: SocketAddr) -> Result<SocketAddr, ClusterError> {
        if !addr.ip().is_loopback() {
            return Err(ClusterError::invalid(
                "api address",
                format!("{addr} is not a loopback address"),
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ClusterError::Bind {
                service: "control-api".into(),
                port: addr.port(),
                source,
            })?;
        let bound = listener
            .local_addr()
            .map_err(|e| ClusterError::Backend(e.to_string()))?;
        let task = tokio::spawn(api::serve(
            listener,
            Arc::downgrade(self),
            self.shared.shutdown.clone(),
        ));
        lock(&self.tasks).push(task);
        Ok(bound)
    }

    /// Waits until service `name` has `replicas` ready replicas and no others.
    pub async fn wait_ready(
        &self,
        name: &str,
        replicas: u32,
        timeout: Duration,
    ) -> Result<ComponentStatus, ClusterError> {
        let svc = Arc::clone(self.service(name)?);
        wait_for(
            &svc,
            timeout,
            &format!("{replicas} ready replicas of {name}"),
            |s| s.ready_replicas == replicas && s.replicas.len() == replicas as usize,
        )
        .await
    }

    /// Waits until every service has all its desired replicas ready.
    pub async fn wait_all_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        for svc in self.services.values() {
            wait_for(svc, timeout, &format!("all replicas of {}", svc.name), |s| {
                s.ready_replicas == s.desired_replicas && s.replicas.len() == s.desired_replicas as usize
            })
            .await?;
        }
        Ok(())
    }

    /// Stops the fronts and supervisors, kills every child and waits until each one is reaped.
    /// Idempotent; every handle (this one, [`LocalCluster`]s) answers [`ClusterError::Stopped`] afterwards.
    pub async fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.shutdown.cancel();
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in tasks {
            if let Err(e) = t.await {
                tracing::debug!(error = %e, "Runtime task ended abnormally.");
            }
        }
        let mut children: Vec<_> = self.services.values().flat_map(|s| s.kill_all()).collect();
        children.extend(lock(&self.shared.terminating).drain(..).map(|t| t.child));
        for mut c in children {
            c.start_kill().ok();
            if tokio::time::timeout(Duration::from_secs(5), c.wait())
                .await
                .is_err()
            {
                tracing::warn!(pid = ?c.id(), "Child did not exit within 5 s of SIGKILL.");
            }
        }
        for s in self.services.values() {
            s.event("runtime shut down".into());
        }
    }
}

impl Drop for LocalRuntime {
    fn drop(&mut self) {
        // After `shutdown` this finds nothing; after a panic it still kills every child (kill_on_drop would too,
        // but only once the last handle to a service is gone).
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.shutdown.cancel();
        for s in self.services.values() {
            drop(s.kill_all());
        }
        for t in lock(&self.shared.terminating).iter_mut() {
            t.child.start_kill().ok();
        }
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
    }
}

async fn wait_for(
    svc: &Service,
    timeout: Duration,
    what: &str,
    done: impl Fn(&ComponentStatus) -> bool,
) -> Result<ComponentStatus, ClusterError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let s = svc.status();
        if done(&s) {
            return Ok(s);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                what: what.to_owned(),
                secs: timeout.as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
