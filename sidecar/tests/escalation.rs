//! Escalation with backoff and giving capacity back, counted on a fake cluster:
//! - an unfixable violation gives one escalation ISSUE, then tries spaced by a growing cooldown (not one per
//!   interval), and a new try (and escalation) as soon as the situation changes (another revision);
//! - capacity added by a mitigation is given back after the quiet period by the headroom rule, with its cost.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use acv_bus::{Bus, memory::MemoryBus};
use acv_cluster::{Cluster, ClusterError};
use acv_protocol::{
    Address, Body, ComponentName, ComponentStatus, Diagnosis, MetricsSnapshot, ReplicaState, ReplicaStatus,
    ReportBody, ReportStatus, ResourceLimits, Revision, RootCause, SloPolicy, TaskBody, TaskSpec, Violation,
};
use acv_sidecar::{Agent, handler::TaskHandler, watch::Watcher};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

fn name() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

/// What the fake component looks like right now.
#[derive(Debug, Clone)]
struct State {
    ready: bool,
    revision: u64,
    replicas: u32,
    cpu_percent: f64,
}

struct Fake {
    name: ComponentName,
    state: Arc<Mutex<State>>,
}

#[async_trait]
impl Cluster for Fake {
    fn component(&self) -> &ComponentName {
        &self.name
    }
    async fn status(&self) -> Result<ComponentStatus, ClusterError> {
        let s = self.state.lock().unwrap().clone();
        let state = if s.ready {
            ReplicaState::Ready
        } else {
            ReplicaState::NotReady
        };
        Ok(ComponentStatus {
            component: self.name.clone(),
            desired_replicas: s.replicas,
            ready_replicas: if s.ready { s.replicas } else { 0 },
            replicas: (0..s.replicas)
                .map(|i| ReplicaStatus {
                    name: format!("catalogue-{i}"),
                    state,
                    restarts: 0,
                })
                .collect(),
            revision: s.revision,
            image: "v1".into(),
            env: BTreeMap::new(),
            limits: ResourceLimits {
                cpu_millis: 200,
                memory_mib: 128,
            },
        })
    }
    async fn metrics(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError> {
        let s = self.state.lock().unwrap().clone();
        Ok(MetricsSnapshot {
            component: self.name.clone(),
            window_secs,
            cpu_percent_of_limit: Some(s.cpu_percent),
            memory_percent_of_limit: Some(10.0),
            request_rate: Some(20.0),
            p50_ms: Some(5.0),
            p99_ms: Some(20.0),
            error_rate_percent: Some(0.0),
            calls: Vec::new(),
        })
    }
    async fn logs(&self, _: i64) -> Result<Vec<String>, ClusterError> {
        Ok(vec![])
    }
    async fn scale(&self, _: i64) -> Result<ComponentStatus, ClusterError> {
        unreachable!("the test handlers act on the state directly")
    }
    async fn restart(&self) -> Result<(), ClusterError> {
        unreachable!()
    }
    async fn set_image(&self, _: &str) -> Result<Revision, ClusterError> {
        unreachable!()
    }
    async fn set_env(&self, _: &str, _: &str) -> Result<Revision, ClusterError> {
        unreachable!()
    }
    async fn set_resources(&self, _: i64, _: i64) -> Result<Revision, ClusterError> {
        unreachable!()
    }
    async fn rollback(&self) -> Result<Revision, ClusterError> {
        unreachable!()
    }
    async fn history(&self) -> Result<Vec<Revision>, ClusterError> {
        Ok(vec![])
    }
}

/// A handler that "mitigates" by applying `fix` to the state, and records every task it gets.
struct Scripted {
    state: Arc<Mutex<State>>,
    fix: fn(&mut State),
    mitigations: Mutex<u32>,
    tasks: Mutex<Vec<String>>,
}

#[async_trait]
impl TaskHandler for Scripted {
    async fn handle(&self, c: &ComponentName, task: &TaskBody) -> ReportBody {
        let text = task.spec.text().to_owned();
        if let TaskSpec::Imperative { text } = &task.spec
            && let Some(n) = text.strip_prefix("Scale to ").and_then(|t| t.split(' ').next())
        {
            self.state.lock().unwrap().replicas = n.parse().unwrap();
        }
        self.tasks.lock().unwrap().push(text);
        report(c, &task.task_id, ReportStatus::Response, None)
    }
    async fn mitigate(&self, c: &ComponentName, id: &str, _: &[Violation]) -> ReportBody {
        *self.mitigations.lock().unwrap() += 1;
        (self.fix)(&mut self.state.lock().unwrap());
        let diagnosis = Diagnosis::new(RootCause::BadReplicas, "every replica is down");
        report(c, id, ReportStatus::Response, Some(diagnosis))
    }
    fn planner_name(&self) -> String {
        "scripted".into()
    }
}

fn report(c: &ComponentName, id: &str, status: ReportStatus, diagnosis: Option<Diagnosis>) -> ReportBody {
    ReportBody {
        diagnosis,
        task_id: id.into(),
        component: c.clone(),
        status,
        message: "did something".into(),
        evidence: vec![],
        steps: vec![],
    }
}

struct Run {
    state: Arc<Mutex<State>>,
    handler: Arc<Scripted>,
    bus: Arc<dyn Bus>,
    shutdown: CancellationToken,
    manager: acv_bus::Subscription,
}

async fn start(initial: State, fix: fn(&mut State), quiet: Duration) -> Run {
    let state = Arc::new(Mutex::new(initial));
    let cluster = Arc::new(Fake {
        name: name(),
        state: state.clone(),
    });
    let handler = Arc::new(Scripted {
        state: state.clone(),
        fix,
        mitigations: Mutex::new(0),
        tasks: Mutex::new(vec![]),
    });
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let manager = bus.subscribe(&Address::Manager).await.unwrap();
    let agent = Agent::new(name(), bus.clone(), handler.clone(), Duration::from_secs(60))
        .with_watcher(
            Watcher::new(cluster, SloPolicy::default(), 10.0),
            Duration::from_millis(20),
        )
        .with_confirm_checks(1)
        .with_backoff(Duration::from_millis(150), Duration::from_millis(600))
        .with_quiet_period(quiet)
        .with_verify_window(Duration::ZERO);
    let shutdown = CancellationToken::new();
    tokio::spawn(agent.start(shutdown.clone()).await.unwrap());
    Run {
        state,
        handler,
        bus,
        shutdown,
        manager,
    }
}

/// Collects what reached the manager for `secs`.
async fn collect(run: &mut Run, wait: Duration) -> Vec<Body> {
    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, run.manager.next()).await {
        bodies.push(d.envelope.body.clone());
        d.ack().await.ok();
    }
    bodies
}

fn escalations(bodies: &[Body]) -> Vec<&acv_protocol::IssueBody> {
    bodies
        .iter()
        .filter_map(|b| match b {
            Body::Issue(i) if i.message.starts_with("Cannot fix") => Some(i),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn unfixable_fault_escalates_once_then_backs_off_until_the_situation_changes() {
    let down = State {
        ready: false,
        revision: 1,
        replicas: 2,
        cpu_percent: 5.0,
    };
    let mut run = start(down, |_| {}, Duration::from_secs(3600)).await;
    // 1.5 s of checks every 20 ms: about 75 chances to act. With a cooldown of 150 ms doubling to 600 ms the
    // agent may try at most at 0, 0.15, 0.45, 1.05 s (and once more if the machine is slow to start).
    let bodies = collect(&mut run, Duration::from_millis(1500)).await;
    let tries = *run.handler.mitigations.lock().unwrap();
    assert!((2..=5).contains(&tries), "{tries} mitigations in 1.5 s");
    let esc = escalations(&bodies);
    assert_eq!(esc.len(), 1, "one escalation, then backoff: {bodies:#?}");
    assert_eq!(
        esc[0].diagnosis.as_ref().map(|d| d.cause),
        Some(RootCause::BadReplicas),
        "the escalation carries the diagnosis"
    );
    let reports = bodies.iter().filter(|b| matches!(b, Body::Report(_))).count();
    assert_eq!(
        reports as u32, tries,
        "each try is reported, as an ISSUE after the re-check"
    );
    let detected = bodies
        .iter()
        .filter(|b| matches!(b, Body::Issue(i) if i.message.starts_with("SLO violation detected")))
        .count();
    assert_eq!(detected, 1, "the violation is announced once, not on every retry");

    // A new revision is a new situation: tried again at once, and escalated again when that fails too.
    run.state.lock().unwrap().revision = 2;
    let bodies = collect(&mut run, Duration::from_millis(120)).await;
    let tries_after = *run.handler.mitigations.lock().unwrap();
    assert!(tries_after > tries, "the new revision was not tried");
    assert_eq!(escalations(&bodies).len(), 1, "{bodies:#?}");
    run.shutdown.cancel();
    drop(run.bus);
}

#[tokio::test]
async fn capacity_added_by_a_mitigation_is_given_back_after_the_quiet_period() {
    // CPU at 90% of the limit on 1 replica; the "mitigation" scales to 4, which brings each replica to 5%.
    let hot = State {
        ready: true,
        revision: 1,
        replicas: 1,
        cpu_percent: 90.0,
    };
    let scale_out = |s: &mut State| {
        s.replicas = 4;
        s.cpu_percent = 5.0;
    };
    let mut run = start(hot, scale_out, Duration::from_millis(200)).await;
    let bodies = collect(&mut run, Duration::from_millis(1200)).await;
    assert_eq!(*run.handler.mitigations.lock().unwrap(), 1);
    // 4 replicas × 5% of 200m = 40m in all: one replica at 35% of its limit carries it, and 1 was the baseline.
    assert_eq!(
        run.handler.tasks.lock().unwrap().as_slice(),
        ["Scale to 1 replicas"]
    );
    assert_eq!(run.state.lock().unwrap().replicas, 1);
    let capacity: Vec<&ReportBody> = bodies
        .iter()
        .filter_map(|b| match b {
            Body::Report(r) if r.task_id.starts_with("capacity") => Some(r),
            _ => None,
        })
        .collect();
    assert!(!capacity.is_empty(), "{bodies:#?}");
    let cost = capacity[0]
        .evidence
        .iter()
        .find(|e| e.name == "mitigation_cost")
        .expect("the give-back reports the episode's cost");
    assert_eq!(cost.value["baseline_replicas"], 1);
    assert_eq!(cost.value["peak_replicas"], 4);
    assert!(
        cost.value["extra_replica_seconds"].as_f64().unwrap() > 0.0,
        "{cost:?}"
    );
    run.shutdown.cancel();
}
