//! An in-memory [`Capabilities`] for tests: the sandbox's own tests, the planners' tests (run the programs they
//! emit against a believable cluster), and the benchmark.
//!
//! [`FakeCluster`] holds components with replicas, revisions, metrics and logs, applies mutating calls to that
//! state like a real backend would (new revision on image/env/resources change, rollback to the previous one), and
//! counts every call it received, so a test can prove that a refused call never reached the backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use acv_protocol::cluster::{
    ComponentStatus, MetricsSnapshot, ReplicaState, ReplicaStatus, ResourceLimits, Revision,
};
use acv_protocol::{ComponentName, ReportStatus};
use async_trait::async_trait;

use crate::caps::{Capabilities, HostError};

/// One fake component.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeComponent {
    /// Current status (replicas, image, env, limits, revision).
    pub status: ComponentStatus,
    /// Revisions, oldest first; the last is current.
    pub history: Vec<Revision>,
    /// What `metrics()` returns (the window is overwritten with the asked one).
    pub metrics: MetricsSnapshot,
    /// Log lines, oldest first.
    pub logs: Vec<String>,
    /// How many times `restart()` ran.
    pub restarts: u32,
}

impl FakeComponent {
    /// A healthy component with `replicas` ready replicas running `image`, 500m CPU / 256 MiB, revision 1.
    pub fn healthy(name: &ComponentName, image: &str, replicas: u32) -> Self {
        let limits = ResourceLimits {
            cpu_millis: 500,
            memory_mib: 256,
        };
        let revision = Revision {
            revision: 1,
            image: image.to_string(),
            env: BTreeMap::new(),
            limits,
            created_at_ms: 1_700_000_000_000,
            cause: "deploy".into(),
        };
        Self {
            status: ComponentStatus {
                component: name.clone(),
                desired_replicas: replicas,
                ready_replicas: replicas,
                replicas: replica_list(name, replicas),
                revision: 1,
                image: image.to_string(),
                env: BTreeMap::new(),
                limits,
            },
            history: vec![revision],
            metrics: MetricsSnapshot {
                component: name.clone(),
                window_secs: 60.0,
                cpu_percent_of_limit: Some(35.0),
                memory_percent_of_limit: Some(40.0),
                request_rate: Some(120.0),
                p50_ms: Some(8.0),
                p99_ms: Some(42.0),
                error_rate_percent: Some(0.0),
                calls: Vec::new(),
            },
            logs: vec![format!("{name} started"), format!("{name} listening on :8080")],
            restarts: 0,
        }
    }
}

fn replica_list(name: &ComponentName, n: u32) -> Vec<ReplicaStatus> {
    (0..n)
        .map(|i| ReplicaStatus {
            name: format!("{name}-{i}"),
            state: ReplicaState::Ready,
            restarts: 0,
        })
        .collect()
}

#[derive(Debug, Default)]
struct State {
    components: HashMap<ComponentName, FakeComponent>,
    peers: HashMap<ComponentName, String>,
    calls: Vec<String>,
    reports: Vec<(ComponentName, ReportStatus, String)>,
    next_ms: u64,
}

/// In-memory cluster implementing [`Capabilities`].
#[derive(Debug, Default)]
pub struct FakeCluster {
    state: Mutex<State>,
    delay: Option<Duration>,
}

impl FakeCluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cluster with one healthy component `name` (2 replicas of `NAME:1.0`).
    pub fn with_component(name: &ComponentName) -> Self {
        let cluster = Self::new();
        cluster.insert(FakeComponent::healthy(name, &format!("{name}:1.0"), 2));
        cluster
    }

    /// Makes every call sleep `delay` first (to test deadlines on slow backends).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds or replaces a component.
    pub fn insert(&self, component: FakeComponent) {
        self.lock()
            .components
            .insert(component.status.component.clone(), component);
    }

    /// Sets what `ask_peer(peer, …)` answers.
    pub fn set_peer_answer(&self, peer: &ComponentName, answer: &str) {
        self.lock().peers.insert(peer.clone(), answer.to_string());
    }

    /// Edits a component in place (e.g. to degrade its metrics).
    pub fn update(&self, name: &ComponentName, f: impl FnOnce(&mut FakeComponent)) {
        if let Some(c) = self.lock().components.get_mut(name) {
            f(c);
        }
    }

    /// A copy of a component's state.
    pub fn component(&self, name: &ComponentName) -> Option<FakeComponent> {
        self.lock().components.get(name).cloned()
    }

    /// Names of the calls received, in order (`"status"`, `"scale"`, …).
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Reports received, in order.
    pub fn reports(&self) -> Vec<(ComponentName, ReportStatus, String)> {
        self.lock().reports.clone()
    }

    async fn enter(&self, call: &str) {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        self.lock().calls.push(call.to_string());
    }

    fn with<T>(
        &self,
        name: &ComponentName,
        f: impl FnOnce(&mut FakeComponent, u64) -> Result<T, HostError>,
    ) -> Result<T, HostError> {
        let mut state = self.lock();
        state.next_ms += 1;
        let now = 1_700_000_000_000 + state.next_ms;
        let c = state
            .components
            .get_mut(name)
            .ok_or_else(|| HostError::not_found(format!("no component {name:?} in the fake cluster")))?;
        f(c, now)
    }
}

fn new_revision(c: &mut FakeComponent, now: u64, cause: &str, edit: impl FnOnce(&mut Revision)) -> Revision {
    let mut rev = c.history.last().cloned().unwrap_or(Revision {
        revision: 0,
        image: c.status.image.clone(),
        env: c.status.env.clone(),
        limits: c.status.limits,
        created_at_ms: now,
        cause: String::new(),
    });
    edit(&mut rev);
    rev.revision = c.history.last().map_or(1, |r| r.revision + 1);
    rev.created_at_ms = now;
    rev.cause = cause.to_string();
    apply(c, &rev);
    c.history.push(rev.clone());
    rev
}

fn apply(c: &mut FakeComponent, rev: &Revision) {
    c.status.revision = rev.revision;
    c.status.image = rev.image.clone();
    c.status.env = rev.env.clone();
    c.status.limits = rev.limits;
}

#[async_trait]
impl Capabilities for FakeCluster {
    async fn status(&self, component: &ComponentName) -> Result<ComponentStatus, HostError> {
        self.enter("status").await;
        self.with(component, |c, _| Ok(c.status.clone()))
    }

    async fn metrics(
        &self,
        component: &ComponentName,
        window_secs: u32,
    ) -> Result<MetricsSnapshot, HostError> {
        self.enter("metrics").await;
        self.with(component, |c, _| {
            let mut m = c.metrics.clone();
            m.window_secs = f64::from(window_secs);
            Ok(m)
        })
    }

    async fn logs(&self, component: &ComponentName, tail: u32) -> Result<Vec<String>, HostError> {
        self.enter("logs").await;
        self.with(component, |c, _| {
            let skip = c.logs.len().saturating_sub(tail as usize);
            Ok(c.logs[skip..].to_vec())
        })
    }

    async fn history(&self, component: &ComponentName) -> Result<Vec<Revision>, HostError> {
        self.enter("history").await;
        self.with(component, |c, _| Ok(c.history.clone()))
    }

    async fn scale(&self, component: &ComponentName, replicas: u32) -> Result<ComponentStatus, HostError> {
        self.enter("scale").await;
        self.with(component, |c, _| {
            c.status.desired_replicas = replicas;
            c.status.ready_replicas = replicas;
            c.status.replicas = replica_list(component, replicas);
            Ok(c.status.clone())
        })
    }

    async fn restart(&self, component: &ComponentName) -> Result<(), HostError> {
        self.enter("restart").await;
        self.with(component, |c, _| {
            c.restarts += 1;
            for r in &mut c.status.replicas {
                r.restarts += 1;
            }
            Ok(())
        })
    }

    async fn set_image(&self, component: &ComponentName, image: &str) -> Result<Revision, HostError> {
        self.enter("set_image").await;
        self.with(component, |c, now| {
            Ok(new_revision(c, now, "set_image", |r| r.image = image.to_string()))
        })
    }

    async fn set_env(
        &self,
        component: &ComponentName,
        key: &str,
        value: &str,
    ) -> Result<Revision, HostError> {
        self.enter("set_env").await;
        self.with(component, |c, now| {
            Ok(new_revision(c, now, "set_env", |r| {
                r.env.insert(key.to_string(), value.to_string());
            }))
        })
    }

    async fn set_resources(
        &self,
        component: &ComponentName,
        limits: ResourceLimits,
    ) -> Result<Revision, HostError> {
        self.enter("set_resources").await;
        self.with(component, |c, now| {
            Ok(new_revision(c, now, "set_resources", |r| r.limits = limits))
        })
    }

    async fn rollback(&self, component: &ComponentName) -> Result<Revision, HostError> {
        self.enter("rollback").await;
        self.with(component, |c, now| {
            if c.history.len() < 2 {
                return Err(HostError::not_found("no earlier revision to roll back to"));
            }
            let previous = c.history[c.history.len() - 2].clone();
            Ok(new_revision(c, now, "rollback", |r| {
                r.image = previous.image;
                r.env = previous.env;
                r.limits = previous.limits;
            }))
        })
    }

    async fn report(
        &self,
        component: &ComponentName,
        status: ReportStatus,
        message: &str,
    ) -> Result<(), HostError> {
        self.enter("report").await;
        self.lock()
            .reports
            .push((component.clone(), status, message.to_string()));
        Ok(())
    }

    async fn ask_peer(
        &self,
        from: &ComponentName,
        peer: &ComponentName,
        question: &str,
    ) -> Result<String, HostError> {
        self.enter("ask_peer").await;
        let _ = (from, question);
        self.lock()
            .peers
            .get(peer)
            .cloned()
            .ok_or_else(|| HostError::unavailable(format!("peer {peer:?} does not answer")))
    }
}
