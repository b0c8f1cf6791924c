//! The supervisor of one service: replica slots, spawning with backoff, health probes, readiness routing and
//! status. Roll-outs are in [`rollout`](crate::rollout), faults in [`faults`](crate::faults), the sampler in
//! [`sampling`](crate::sampling). All state sits behind one std mutex that is never held across an await.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use acv_cluster::{Fault, FaultId};
use acv_protocol::{ComponentName, ComponentStatus, ReplicaState, ReplicaStatus, ResourceLimits, Revision};
use bytes::Bytes;
use futures::future::join_all;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::faults::ActiveFault;
use crate::front::FrontState;
use crate::logs::{Logs, pump};
use crate::sampling::Sample;
use crate::spec::{ServiceSpec, Settings, expand};

/// Largest `/metrics` body read from a replica.
const MAX_SCRAPE_BYTES: usize = 4 << 20;

/// Runtime-wide state shared by every service.
pub(crate) struct Shared {
    pub settings: Settings,
    pub stressor: Option<Vec<String>>,
    /// `NAME_SERVICE_HOST`/`NAME_SERVICE_PORT` of every service, like Kubernetes service env vars.
    pub discovery: Vec<(String, String)>,
    pub shutdown: CancellationToken,
    pub stopped: AtomicBool,
    /// Children being stopped (SIGTERM, then SIGKILL after the grace period) and not yet reaped.
    pub terminating: Mutex<Vec<Terminating>>,
    /// Every pid ever spawned (replicas and stressors), for leak checks.
    pub spawned: Mutex<Vec<u32>>,
    pub http: Client<HttpConnector, Empty<Bytes>>,
}

/// One service: spec, front, state, logs and samples.
pub(crate) struct Service {
    pub name: ComponentName,
    pub spec: ServiceSpec,
    pub addr: SocketAddr,
    pub front: Arc<FrontState>,
    pub state: Mutex<ServiceState>,
    pub wake: Notify,
    pub logs: Arc<Logs>,
    pub samples: Mutex<VecDeque<Arc<Sample>>>,
    pub shared: Arc<Shared>,
}

/// The mutable part of a service.
pub(crate) struct ServiceState {
    pub desired: u32,
    pub revisions: Vec<Revision>,
    /// Bumped by `restart()`: part of the pod template, so every pod is replaced.
    pub restart_nonce: u64,
    pub slots: Vec<Slot>,
    pub faults: Vec<ActiveFault>,
    pub next_fault_id: u64,
    /// The uid the next pod gets.
    pub next_uid: u64,
}

/// One pod: the replica ordinal it serves, its template, its process if any, and its restart history. During a
/// rolling update an ordinal has two pods: the old one and a `surge` pod of the new template.
pub(crate) struct Slot {
    /// Unique per pod of the service: a pod that replaces another one at the same ordinal gets a new uid (faults
    /// target uids, so they stay with the pods they were injected into).
    pub uid: u64,
    pub index: u32,
    /// A pod of the new template started next to the old one (named `NAME-N-next` until it takes over).
    pub surge: bool,
    /// What this pod runs.
    pub template: Template,
    pub proc: Option<Proc>,
    pub restarts: u32,
    /// Consecutive failures, driving the backoff; reset when the replica becomes ready.
    pub failures: u32,
    pub restart_at: Option<Instant>,
    pub stressors: Vec<Stressor>,
}

/// What a pod runs: the revision's image, env and limits, plus the restart nonce.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    pub image: String,
    pub env: BTreeMap<String, String>,
    pub limits: ResourceLimits,
    pub nonce: u64,
}

/// A running replica process.
pub(crate) struct Proc {
    pub child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub started: Instant,
    pub ready: bool,
    pub was_ready: bool,
}

/// A child being stopped.
pub(crate) struct Terminating {
    pub child: Child,
    pub pid: u32,
    /// SIGTERM still to be sent (it is sent after the front stopped routing to the replica).
    pub term_pending: bool,
    /// When to send SIGKILL if it is still alive.
    pub kill_at: Instant,
}

/// A stressor process attributed to a replica.
pub(crate) struct Stressor {
    pub fault: FaultId,
    pub child: Child,
    pub pid: u32,
}

/// A replica to health-check.
struct ProbeTarget {
    pid: u32,
    addr: SocketAddr,
}

/// Locks a mutex, recovering from poisoning: the state stays usable even if a task panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl Slot ===

impl Slot {
    fn new(uid: u64, index: u32, template: Template, surge: bool) -> Self {
        Slot {
            uid,
            index,
            surge,
            template,
            proc: None,
            restarts: 0,
            failures: 0,
            restart_at: None,
            stressors: Vec::new(),
        }
    }

    /// `NAME-N`, or `NAME-N-next` for a surge pod.
    pub fn name(&self, service: &ComponentName) -> String {
        if self.surge {
            format!("{service}-{}-next", self.index)
        } else {
            format!("{service}-{}", self.index)
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.proc.as_ref().is_some_and(|p| p.ready)
    }
}

// === impl ServiceState ===

impl ServiceState {
    pub fn current(&self) -> &Revision {
        // `revisions` starts with one entry and only grows.
        self.revisions
            .last()
            .unwrap_or_else(|| unreachable!("a service always has a revision"))
    }

    /// The template pods should run now.
    pub fn template(&self) -> Template {
        let rev = self.current();
        Template {
            image: rev.image.clone(),
            env: rev.env.clone(),
            limits: rev.limits,
            nonce: self.restart_nonce,
        }
    }

    /// A new pod (with a fresh uid) for ordinal `index`.
    pub fn new_slot(&mut self, index: u32, template: Template, surge: bool) -> Slot {
        let uid = self.next_uid;
        self.next_uid += 1;
        Slot::new(uid, index, template, surge)
    }

    /// The uids of the pods an active pod-failure fault selected.
    pub fn failed_pods(&self) -> BTreeSet<u64> {
        self.faults
            .iter()
            .filter(|f| f.fault == Fault::PodFailure)
            .flat_map(|f| f.targets.iter().map(|(uid, _)| *uid))
            .collect()
    }
}

// === impl Service ===

impl Service {
    pub fn new(spec: ServiceSpec, addr: SocketAddr, shared: Arc<Shared>) -> Self {
        let first = Revision {
            revision: 1,
            image: spec.version.clone(),
            env: spec.env.clone(),
            limits: spec.limits,
            created_at_ms: acv_core::now_ms(),
            cause: "create".into(),
        };
        let state = ServiceState {
            desired: spec.replicas,
            revisions: vec![first],
            restart_nonce: 0,
            slots: Vec::new(),
            faults: Vec::new(),
            next_fault_id: 1,
            next_uid: 1,
        };
        Service {
            name: spec.name.clone(),
            addr,
            front: Arc::new(FrontState::default()),
            state: Mutex::new(state),
            wake: Notify::new(),
            logs: Arc::new(Logs::new(shared.settings.log_lines)),
            // An empty sample at creation, before any replica runs, so every later window has a baseline.
            samples: Mutex::new(VecDeque::from([Arc::new(Sample::empty(spec.limits))])),
            spec,
            shared,
        }
    }

    pub fn event(&self, msg: String) {
        tracing::info!(service = %self.name, "{msg}");
        self.logs.push(format!("[supervisor] {msg}"));
    }

    /// Reconciles every probe interval (or when woken) until shutdown.
    pub async fn run_supervisor(self: Arc<Self>) {
        let interval = Duration::from_millis(self.shared.settings.probe_interval_ms);
        loop {
            self.reconcile().await;
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// One reconcile pass: reap, scale, replace outdated replicas, spawn, probe, route.
    pub async fn reconcile(&self) {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let targets = {
            let mut st = lock(&self.state);
            self.reconcile_locked(&mut st)
        };
        reap_terminating(&self.shared);
        let timeout = Duration::from_millis(self.shared.settings.probe_timeout_ms);
        let probes = targets
            .iter()
            .map(|t| probe(&self.shared.http, t.addr, &self.spec.health_path, timeout));
        let results = join_all(probes).await;
        let mut st = lock(&self.state);
        for (t, ok) in targets.iter().zip(results) {
            let Some(slot) = st
                .slots
                .iter_mut()
                .find(|s| s.proc.as_ref().is_some_and(|p| p.pid == t.pid))
            else {
                continue;
            };
            let name = slot.name(&self.name);
            let Some(p) = slot.proc.as_mut() else {
                continue;
            };
            if ok && !p.ready {
                self.logs
                    .push(format!("[supervisor] {name} (pid {}) is ready", p.pid));
            }
            if !ok && p.ready {
                self.logs.push(format!(
                    "[supervisor] {name} (pid {}) failed its health check",
                    p.pid
                ));
            }
            p.ready = ok;
            if ok {
                p.was_ready = true;
                slot.failures = 0;
            }
        }
        self.route(&st);
    }

    fn route(&self, st: &ServiceState) {
        let latency = Self::latency_by_pod(st);
        let ready = st
            .slots
            .iter()
            .filter_map(|s| s.proc.as_ref().filter(|p| p.ready).map(|p| (s.uid, p.addr)))
            .map(|(uid, addr)| (addr, latency.get(&uid).copied().unwrap_or_default()))
            .collect();
        self.front.set_routes(ready);
    }

    fn backoff(&self, failures: u32) -> Duration {
        let s = &self.shared.settings;
        let factor = 1u64 << failures.saturating_sub(1).min(20);
        Duration::from_millis(s.backoff_initial_ms.saturating_mul(factor).min(s.backoff_max_ms))
    }

    fn reconcile_locked(&self, st: &mut ServiceState) -> Vec<ProbeTarget> {
        let now = Instant::now();
        self.expire_faults(st, now);

        // Reap replicas that exited.
        for slot in &mut st.slots {
            let name = slot.name(&self.name);
            let Some(p) = slot.proc.as_mut() else { continue };
            let exit = match p.child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(format!("wait failed: {e}")),
            };
            if let Some(exit) = exit {
                let pid = p.pid;
                slot.proc = None;
                slot.restarts += 1;
                slot.failures += 1;
                let delay = self.backoff(slot.failures);
                slot.restart_at = Some(now + delay);
                self.event(format!(
                    "{name} (pid {pid}) exited ({exit}); restart {} in {} ms",
                    slot.restarts,
                    delay.as_millis()
                ));
            }
        }

        // Scale: pods of ordinals past `desired` go; missing ordinals get a pod of the current template.
        let template = st.template();
        let desired = st.desired;
        for mut slot in extract(&mut st.slots, |s| s.index >= desired) {
            self.kill_slot(&mut slot, "scaled down");
        }
        for index in 0..desired {
            if !st.slots.iter().any(|s| s.index == index) {
                let slot = st.new_slot(index, template.clone(), false);
                st.slots.push(slot);
            }
        }

        // Roll out the current template, ordinal by ordinal.
        self.roll_out(st, &template);

        // Pod failure: in the selected pods nothing runs and nothing restarts.
        let failed = st.failed_pods();
        for slot in st.slots.iter_mut().filter(|s| failed.contains(&s.uid)) {
            let name = slot.name(&self.name);
            if let Some(p) = slot.proc.take() {
                self.kill_now(p.child, p.pid, &format!("{name} failed (pod-failure fault)"));
            }
            slot.restart_at = None;
        }

        // Start what should run.
        for slot in &mut st.slots {
            if failed.contains(&slot.uid) || slot.proc.is_some() || slot.restart_at.is_some_and(|t| now < t) {
                continue;
            }
            let name = slot.name(&self.name);
            match self.spawn_replica(&name, &slot.template) {
                Ok(p) => {
                    slot.restart_at = None;
                    slot.proc = Some(p);
                }
                Err(e) => {
                    slot.failures += 1;
                    let delay = self.backoff(slot.failures);
                    slot.restart_at = Some(now + delay);
                    self.event(format!(
                        "{name} could not start: {e}; retry in {} ms",
                        delay.as_millis()
                    ));
                }
            }
        }

        // Stressors follow the active stress faults.
        self.reconcile_stressors(st);

        self.route(st);
        st.slots
            .iter()
            .filter_map(|s| {
                s.proc.as_ref().map(|p| ProbeTarget {
                    pid: p.pid,
                    addr: p.addr,
                })
            })
            .collect()
    }

    pub(crate) fn kill_slot(&self, slot: &mut Slot, why: &str) {
        let name = slot.name(&self.name);
        if let Some(p) = slot.proc.take() {
            self.kill(p.child, p.pid, &format!("{name} {why}"));
        }
        for s in slot.stressors.drain(..) {
            self.kill_now(s.child, s.pid, &format!("stressor of {name} {why}"));
        }
    }

    /// Stops a replica gracefully: SIGTERM once the front no longer routes to it, SIGKILL after the grace period.
    pub fn kill(&self, child: Child, pid: u32, why: &str) {
        let grace = Duration::from_millis(self.shared.settings.termination_grace_ms);
        self.event(format!("stopping pid {pid}: {why}"));
        lock(&self.shared.terminating).push(Terminating {
            child,
            pid,
            term_pending: true,
            kill_at: Instant::now() + grace,
        });
    }

    /// Sends SIGKILL now and hands the child to the reaper.
    pub fn kill_now(&self, mut child: Child, pid: u32, why: &str) {
        if let Err(e) = child.start_kill() {
            tracing::debug!(pid, error = %e, "Kill failed (already exited?).");
        }
        self.event(format!("killed pid {pid}: {why}"));
        lock(&self.shared.terminating).push(Terminating {
            child,
            pid,
            term_pending: false,
            kill_at: Instant::now(),
        });
    }

    fn spawn_replica(&self, replica: &str, rev: &Template) -> Result<Proc, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let replica = replica.to_owned();
        let vars = |n: &str| match n {
            "PORT" => Some(port.to_string()),
            "REPLICA" => Some(replica.clone()),
            "VERSION" => Some(rev.image.clone()),
            _ => None,
        };
        let mut argv = Vec::with_capacity(self.spec.command.len());
        for a in &self.spec.command {
            argv.push(expand(a, &vars)?);
        }
        let (program, args) = argv.split_first().ok_or("empty command")?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        if let Some(overlay) = self.spec.versions.get(&rev.image) {
            cmd.envs(overlay);
        }
        cmd.envs(&rev.env);
        cmd.envs(
            self.shared
                .discovery
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        cmd.env("PORT", port.to_string())
            .env("ACV_SERVICE", self.name.as_str())
            .env("ACV_REPLICA", &replica)
            .env("ACV_VERSION", &rev.image)
            .env("ACV_CPU_MILLIS", rev.limits.cpu_millis.to_string())
            .env("ACV_MEMORY_MIB", rev.limits.memory_mib.to_string());
        let (child, pid) = self.spawn(cmd, &replica)?;
        self.event(format!(
            "started {replica} (pid {pid}, version {}, 127.0.0.1:{port})",
            rev.image
        ));
        Ok(Proc {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            started: Instant::now(),
            ready: false,
            was_ready: false,
        })
    }

    pub(crate) fn spawn(&self, mut cmd: Command, label: &str) -> Result<(Child, u32), String> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| format!("spawn failed: {e}"))?;
        let pid = child.id().ok_or("process exited before its pid was read")?;
        lock(&self.shared.spawned).push(pid);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, Arc::clone(&self.logs), label.to_owned()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, Arc::clone(&self.logs), label.to_owned()));
        }
        Ok((child, pid))
    }

    /// Replica statuses, derived from the slots.
    pub fn status(&self) -> ComponentStatus {
        let st = lock(&self.state);
        let grace = Duration::from_millis(self.shared.settings.startup_grace_ms);
        let failed = st.failed_pods();
        let replicas: Vec<ReplicaStatus> = st
            .slots
            .iter()
            .map(|s| {
                let state = match &s.proc {
                    Some(p) if p.ready => ReplicaState::Ready,
                    Some(p) if p.was_ready || p.started.elapsed() > grace => ReplicaState::NotReady,
                    Some(_) => ReplicaState::Starting,
                    None if failed.contains(&s.uid) => ReplicaState::NotReady,
                    None if s.restart_at.is_some() => ReplicaState::CrashLoopBackOff,
                    None => ReplicaState::Starting,
                };
                ReplicaStatus {
                    name: s.name(&self.name),
                    state,
                    restarts: s.restarts,
                }
            })
            .collect();
        let rev = st.current();
        ComponentStatus {
            component: self.name.clone(),
            desired_replicas: st.desired,
            ready_replicas: u32::try_from(replicas.iter().filter(|r| r.state == ReplicaState::Ready).count())
                .unwrap_or(u32::MAX),
            replicas,
            revision: rev.revision,
            image: rev.image.clone(),
            env: rev.env.clone(),
            limits: rev.limits,
        }
    }

    /// Kills every process of this service and returns the children to wait for.
    pub fn kill_all(&self) -> Vec<Child> {
        let mut st = lock(&self.state);
        let mut out = Vec::new();
        for slot in &mut st.slots {
            if let Some(mut p) = slot.proc.take() {
                p.child.start_kill().ok();
                out.push(p.child);
            }
            for mut s in slot.stressors.drain(..) {
                s.child.start_kill().ok();
                out.push(s.child);
            }
        }
        out
    }
}

/// Removes and returns the items matching `pred`, keeping the order of the rest.
pub(crate) fn extract<T>(items: &mut Vec<T>, pred: impl Fn(&T) -> bool) -> Vec<T> {
    let (out, keep) = std::mem::take(items).into_iter().partition(|x| pred(x));
    *items = keep;
    out
}

/// Sends pending SIGTERMs, SIGKILLs children past their grace period, and reaps those that exited.
pub(crate) fn reap_terminating(shared: &Shared) {
    let now = Instant::now();
    lock(&shared.terminating).retain_mut(|t| {
        if !matches!(t.child.try_wait(), Ok(None)) {
            return false;
        }
        if t.term_pending {
            t.term_pending = false;
            let sent = i32::try_from(t.pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .map(|pid| rustix::process::kill_process(pid, rustix::process::Signal::TERM));
            if !matches!(sent, Some(Ok(()))) {
                t.kill_at = now;
            }
        }
        if now >= t.kill_at {
            t.child.start_kill().ok();
        }
        true
    });
}

/// Binds an ephemeral port on loopback and releases it for a child to take.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) async fn get(
    http: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Option<(http::StatusCode, Bytes)> {
    let uri: http::Uri = format!("http://{addr}{path}").parse().ok()?;
    let fut = async {
        let resp = http.get(uri).await.ok()?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_SCRAPE_BYTES)
            .collect()
            .await
            .ok()?
            .to_bytes();
        Some((status, body))
    };
    tokio::time::timeout(timeout, fut).await.ok().flatten()
}

async fn probe(
    http: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> bool {
    get(http, addr, path, timeout)
        .await
        .is_some_and(|(s, _)| s.is_success())
}
