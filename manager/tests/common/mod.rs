//! Shared pieces of the manager's tests: a fake measured world, fake sidecars on a bus, waits.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_bus::Bus;
use acv_manager::engine::EngineConfig;
use acv_manager::measure::Measurer;
use acv_manager::store::Store;
use acv_protocol::{
    Address, Body, Comparison, ComponentName, Envelope, GoalRecord, Heartbeat, Measurement, MetricsSnapshot,
    Registration, ReportBody, ReportStatus, SloMetric, TaskSpec,
};
use tokio_util::sync::CancellationToken;

pub fn c(n: &str) -> ComponentName {
    ComponentName::new(n).unwrap()
}

pub fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("acv-manager-test-{}", uuid::Uuid::new_v4().simple()))
}

/// Fast settings: deadlines of seconds, a tick of 50 ms.
pub fn test_config() -> EngineConfig {
    EngineConfig {
        default_deadline: Duration::from_secs(30),
        max_rounds: 3,
        subtask_timeout: Duration::from_secs(2),
        max_attempts: 2,
        liveness: Duration::from_millis(1500),
        settle: Duration::from_millis(100),
        tick: Duration::from_millis(50),
    }
}

/// What the fake cluster measures: one value per (component, metric).
#[derive(Default)]
pub struct World {
    values: Mutex<HashMap<(ComponentName, SloMetric), f64>>,
}

impl World {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn set(&self, comp: &str, metric: SloMetric, v: f64) {
        self.values.lock().unwrap().insert((c(comp), metric), v);
    }

    pub fn get(&self, comp: &str, metric: SloMetric) -> f64 {
        self.values.lock().unwrap()[&(c(comp), metric)]
    }

    pub fn measurer(self: &Arc<Self>) -> Arc<dyn Measurer> {
        Arc::new(WorldMeasurer(self.clone()))
    }

    fn measure_one(&self, comp: &ComponentName) -> Option<Measurement> {
        let v = self.values.lock().unwrap();
        let get = |m| v.get(&(comp.clone(), m)).copied();
        if !v.keys().any(|(c, _)| c == comp) {
            return None;
        }
        Some(Measurement {
            metrics: Some(MetricsSnapshot {
                component: comp.clone(),
                window_secs: 10.0,
                cpu_percent_of_limit: get(SloMetric::CpuPercentOfLimit),
                memory_percent_of_limit: get(SloMetric::MemoryPercentOfLimit),
                request_rate: Some(10.0),
                p50_ms: None,
                p99_ms: get(SloMetric::P99LatencyMs),
                error_rate_percent: get(SloMetric::ErrorRatePercent),
                calls: Vec::new(),
            }),
            status: None,
        })
    }
}

struct WorldMeasurer(Arc<World>);

#[async_trait::async_trait]
impl Measurer for WorldMeasurer {
    async fn measure(&self, components: &[ComponentName]) -> Vec<(ComponentName, Measurement)> {
        components
            .iter()
            .filter_map(|c| self.0.measure_one(c).map(|m| (c.clone(), m)))
            .collect()
    }
}

/// How a fake sidecar handles a subtask.
#[derive(Clone)]
pub enum Behaviour {
    /// Brings each objective's value to 80% of its threshold and answers RESPONSE.
    Fix,
    /// Answers RESPONSE without changing anything.
    ClaimOnly,
    /// Never answers.
    Silent,
    /// Like `Fix`, but only once the gate is opened.
    FixAfter(Arc<tokio::sync::Notify>),
}

/// A sidecar stand-in: registers, heartbeats every 100 ms, handles tasks by `behaviour`, until `stop`.
pub async fn fake_sidecar(
    bus: Arc<dyn Bus>,
    world: Arc<World>,
    name: String,
    behaviour: Behaviour,
    stop: CancellationToken,
) {
    let me = c(&name);
    let addr = Address::Component(me.clone());
    let mut inbox = bus.subscribe(&addr).await.unwrap();
    let id = || uuid::Uuid::new_v4().to_string();
    let reg = Registration {
        component: me.clone(),
        peer_url: None,
        planner: "fake".into(),
        version: "test".into(),
        safety: None,
    };
    bus.publish(&Envelope::new(
        id(),
        addr.clone(),
        Address::Broadcast,
        acv_core::now_ms(),
        Body::Register(reg),
    ))
    .await
    .unwrap();
    let mut beat = tokio::time::interval(Duration::from_millis(100));
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = beat.tick() => {
                seq += 1;
                let hb = Heartbeat { component: me.clone(), seq, healthy: None, peer_url: None, planner: None, safety: None };
                let env = Envelope::new(id(), addr.clone(), Address::Broadcast, acv_core::now_ms(), Body::Heartbeat(hb));
                if bus.publish(&env).await.is_err() {
                    return;
                }
            }
            next = inbox.next() => {
                let Some(Ok(d)) = next else { return };
                let env = d.envelope.clone();
                d.ack().await.unwrap();
                let Body::Task(task) = &env.body else { continue };
                let fix = match &behaviour {
                    Behaviour::Silent => continue,
                    Behaviour::ClaimOnly => false,
                    Behaviour::Fix => true,
                    Behaviour::FixAfter(gate) => {
                        tokio::select! {
                            _ = gate.notified() => {}
                            _ = stop.cancelled() => return,
                        }
                        true
                    }
                };
                if fix && let TaskSpec::Declarative { goal } = &task.spec {
                    for o in &goal.objectives {
                        let v = match o.comparison {
                            Comparison::Below => o.threshold * 0.8,
                            Comparison::AtLeast => o.threshold,
                        };
                        world.set(&name, o.metric, v);
                    }
                }
                let report = ReportBody {
                    diagnosis: None,
                    task_id: task.task_id.clone(),
                    component: me.clone(),
                    status: ReportStatus::Response,
                    message: if fix { "fixed".into() } else { "done, trust me".into() },
                    evidence: Vec::new(),
                    steps: Vec::new(),
                };
                let reply = Envelope::new(id(), addr.clone(), env.from.clone(), acv_core::now_ms(), Body::Report(report))
                    .with_correlation(env.id.clone());
                if bus.publish(&reply).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Polls `check` every 50 ms; panics after 60 s so a hang fails the test instead of blocking it.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let wait = async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(60), wait).await.is_err() {
        panic!("timed out waiting for {what}");
    }
}

/// Waits for a goal to reach a final state (panics after 60 s so a hang fails the test).
pub async fn wait_terminal(store: &dyn Store, id: &str) -> GoalRecord {
    let wait = async {
        loop {
            let g = store.goal(id).await.unwrap().unwrap();
            if g.state.is_terminal() {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("goal {id} did not finish"))
}
pub mod kube;
