//! The local runtime: every service of a [`RuntimeSpec`] runs as N replica processes on 127.0.0.1 behind a
//! round-robin front on the service's stable port. [`LocalRuntime`] is the control handle for the whole set
//! (start, faults, ports, shutdown); [`LocalCluster`] is the [`Cluster`] view of one service.
//!
//! What it does, in Kubernetes terms: replicas are pods (`NAME-N`), restarted with exponential backoff after a
//! crash (`CrashLoopBackOff` while waiting); every image/env/limits change is a revision and its pods replace the
//! old ones (rolling update one pod at a time, or Recreate; see [`Strategy`]); `rollback` re-applies the previous
//! revision; a `/health` probe decides readiness and the
//! front only routes to ready replicas. CPU and memory come from `/proc` and are reported against the declared
//! limits. Memory limits are enforced (a replica over its limit is killed, like an OOM kill); CPU limits are only
//! reported (a replica may use more than 100 % of its limit, and the metrics say so).
//!
//! # Layout
//! - [`spec`]: the runtime file.
//! - [`api`]: the control API (JSON over HTTP) other processes use through [`RemoteCluster`](crate::RemoteCluster).
//! - [`front`]: the round-robin HTTP front.
//! - [`faults`]: pod failure, CPU/memory stress, added latency.
//! - `supervisor`: pods, rollouts, backoff, probes, revisions, sampler.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_protocol::{ComponentName, ComponentStatus, MetricsSnapshot, ReplicaState, Revision};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::window::{cpu_percent_of_limit, stats};
use crate::{Cluster, ClusterError, validate};
use supervisor::{Service, Shared, lock};

pub mod api;
pub mod faults;
pub mod front;
pub mod spec;
mod supervisor;

pub use faults::{Fault, FaultId};
pub use spec::{RuntimeSpec, ServiceSpec, Settings, Strategy};

/// The running set of services. Dropping it kills every child; [`LocalRuntime::shutdown`] also waits for them.
pub struct LocalRuntime {
    shared: Arc<Shared>,
    services: BTreeMap<String, Arc<Service>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The [`Cluster`] view of one local service.
#[derive(Clone)]
pub struct LocalCluster {
    service: Arc<Service>,
}

/// One replica as the control handle sees it (for tests and experiments, beyond what [`Cluster`] shows).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaInfo {
    /// `NAME-N`.
    pub name: String,
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

    /// The [`Cluster`] handle scoped to service `name`.
    pub fn cluster(&self, name: &str) -> Result<LocalCluster, ClusterError> {
        Ok(LocalCluster {
            service: Arc::clone(self.service(name)?),
        })
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

    /// Injects `fault` into service `name`, ending after `duration` if given.
    pub fn inject(
        &self,
        name: &str,
        fault: Fault,
        duration: Option<Duration>,
    ) -> Result<FaultId, ClusterError> {
        self.service(name)?.inject(fault, duration)
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

// === impl LocalCluster ===

impl LocalCluster {
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
        let svc = self.live()?;
        let mut latest = svc.sample().await;
        let mut base = svc.baseline(&latest, Duration::from_secs_f64(window));
        if base.is_none() {
            // No history yet (just started): measure over one sample interval.
            let wait = Duration::from_millis(svc.shared.settings.sample_interval_ms)
                .min(Duration::from_secs_f64(window));
            tokio::time::sleep(wait).await;
            base = Some(latest);
            latest = svc.sample().await;
        }
        let base = base.ok_or_else(|| ClusterError::Backend("no baseline sample".into()))?;
        let span = latest.at.duration_since(base.at).as_secs_f64();
        let cpu_secs: f64 = latest
            .cpu
            .iter()
            .map(|(pid, now)| match base.cpu.get(pid) {
                Some(before) if before <= now => now - before,
                _ => *now,
            })
            .sum();
        let replicas = latest.rss.len();
        let limits = latest.limits;
        let memory = (replicas > 0).then(|| {
            #[allow(clippy::cast_precision_loss)]
            let avg = latest.rss.iter().sum::<u64>() as f64 / replicas as f64;
            100.0 * avg / (f64::from(limits.memory_mib) * 1024.0 * 1024.0)
        });
        let mut added = crate::prom::HistogramSet::default();
        for (pid, h) in &latest.hist {
            added.add(&h.delta(base.hist.get(pid)));
        }
        let has_metrics = svc.spec.metrics_path.is_some() && !latest.hist.is_empty();
        let w = stats(&added, span);
        Ok(MetricsSnapshot {
            component: svc.name.clone(),
            window_secs: span,
            cpu_percent_of_limit: cpu_percent_of_limit(cpu_secs, span, replicas, limits.cpu_millis),
            memory_percent_of_limit: memory,
            request_rate: if has_metrics { w.request_rate } else { None },
            p50_ms: w.p50_ms,
            p99_ms: w.p99_ms,
            error_rate_percent: w.error_rate_percent,
        })
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
