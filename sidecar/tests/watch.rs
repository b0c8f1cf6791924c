//! The health check acts only on confirmed violations: one failing check (a pod still starting during a rollout)
//! is not mitigated; failing checks in a row are, and the outcome goes to the manager.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use acv_bus::{Bus, memory::MemoryBus};
use acv_cluster::{Cluster, ClusterError};
use acv_protocol::{
    Address, Body, ComponentName, ComponentStatus, MetricsSnapshot, ReplicaState, ReplicaStatus, ReportBody,
    ReportStatus, ResourceLimits, Revision, SloPolicy, TaskBody, Violation,
};
use acv_sidecar::{Agent, handler::TaskHandler, watch::Watcher};
use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

fn name() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

/// A cluster whose readiness follows a script (one entry per status read; the last one repeats).
struct Scripted {
    name: ComponentName,
    ready: Mutex<VecDeque<bool>>,
}

#[async_trait]
impl Cluster for Scripted {
    fn component(&self) -> &ComponentName {
        &self.name
    }
    async fn status(&self) -> Result<ComponentStatus, ClusterError> {
        let mut q = self.ready.lock().unwrap();
        let ready = if q.len() > 1 {
            q.pop_front().unwrap()
        } else {
            *q.front().unwrap()
        };
        let state = if ready {
            ReplicaState::Ready
        } else {
            ReplicaState::Starting
        };
        Ok(ComponentStatus {
            component: self.name.clone(),
            desired_replicas: 1,
            ready_replicas: u32::from(ready),
            replicas: vec![ReplicaStatus {
                name: "catalogue-0".into(),
                state,
                restarts: 0,
            }],
            revision: 1,
            image: "v1".into(),
            env: BTreeMap::new(),
            limits: ResourceLimits {
                cpu_millis: 200,
                memory_mib: 128,
            },
        })
    }
    async fn metrics(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError> {
        Ok(MetricsSnapshot {
            component: self.name.clone(),
            window_secs,
            cpu_percent_of_limit: Some(1.0),
            memory_percent_of_limit: Some(1.0),
            request_rate: Some(0.0),
            p50_ms: None,
            p99_ms: None,
            error_rate_percent: None,
            calls: Vec::new(),
        })
    }
    async fn logs(&self, _: i64) -> Result<Vec<String>, ClusterError> {
        Ok(vec![])
    }
    async fn scale(&self, _: i64) -> Result<ComponentStatus, ClusterError> {
        unreachable!("the test handler does not act")
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

/// Counts mitigations and claims success (the agent must still verify by measurement).
#[derive(Default)]
struct Counting(Mutex<u32>);

#[async_trait]
impl TaskHandler for Counting {
    async fn handle(&self, _: &ComponentName, _: &TaskBody) -> ReportBody {
        unreachable!("no tasks in this test")
    }
    async fn mitigate(&self, c: &ComponentName, id: &str, _: &[Violation]) -> ReportBody {
        *self.0.lock().unwrap() += 1;
        ReportBody {
            diagnosis: None,
            task_id: id.into(),
            component: c.clone(),
            status: ReportStatus::Response,
            message: "fixed it".into(),
            evidence: vec![],
            steps: vec![],
        }
    }
    fn planner_name(&self) -> String {
        "counting".into()
    }
}

/// Runs the agent's health check until `want` messages reached the manager or `max_wait` passed.
async fn run(script: &[bool], want: usize, max_wait: Duration) -> (u32, Vec<Body>) {
    let cluster = Arc::new(Scripted {
        name: name(),
        ready: Mutex::new(script.iter().copied().collect()),
    });
    let handler = Arc::new(Counting::default());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let mut manager = bus.subscribe(&Address::Manager).await.unwrap();
    let agent = Agent::new(name(), bus.clone(), handler.clone(), Duration::from_secs(60))
        .with_watcher(
            Watcher::new(cluster, SloPolicy::default(), 10.0),
            Duration::from_millis(50),
        )
        .with_confirm_checks(2);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.start(shutdown.clone()).await.unwrap());
    let mut bodies = Vec::new();
    let deadline = tokio::time::Instant::now() + max_wait;
    while bodies.len() < want {
        match tokio::time::timeout_at(deadline, manager.next()).await {
            Ok(Some(Ok(d))) => {
                bodies.push(d.envelope.body.clone());
                d.ack().await.unwrap();
            }
            _ => break,
        }
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let n = *handler.0.lock().unwrap();
    (n, bodies)
}

#[tokio::test]
async fn a_single_failing_check_is_not_acted_on() {
    // Ready, one failing check, then ready for good: whatever the timing, nothing to act on.
    let (mitigations, to_manager) = run(&[true, false, true], 1, Duration::from_millis(800)).await;
    assert_eq!(mitigations, 0);
    assert!(to_manager.is_empty(), "{to_manager:?}");
}

#[tokio::test]
async fn confirmed_violation_is_mitigated_and_verified_by_measurement() {
    // Never ready, so still not ready on the re-check after mitigation: the handler's "fixed it" must be
    // downgraded to an ISSUE.
    let (mitigations, to_manager) = run(&[false], 2, Duration::from_secs(20)).await;
    assert_eq!(mitigations, 1);
    assert!(
        matches!(&to_manager[0], Body::Issue(i) if i.violations.len() == 1),
        "{to_manager:?}"
    );
    let Body::Report(r) = &to_manager[1] else {
        panic!("{to_manager:?}")
    };
    assert_eq!(r.status, ReportStatus::Issue);
    assert!(r.message.contains("re-check still fails"), "{}", r.message);
}

#[tokio::test]
async fn an_slo_episode_records_time_to_detect_and_to_mitigate() {
    // Failing, failing (confirmed: an episode starts), then healthy at the re-check: the episode's report record
    // carries its time to detect, and a `recovered` record its time to mitigate.
    let cluster = Arc::new(Scripted {
        name: name(),
        ready: Mutex::new([false, false, true].into_iter().collect()),
    });
    let handler = Arc::new(Counting::default());
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let mut manager = bus.subscribe(&Address::Manager).await.unwrap();
    let audit = acv_sidecar::audit::AuditLog::new(name(), 100);
    let agent = Agent::new(name(), bus.clone(), handler.clone(), Duration::from_secs(60))
        .with_watcher(
            Watcher::new(cluster, SloPolicy::default(), 10.0),
            Duration::from_millis(50),
        )
        .with_confirm_checks(2)
        .with_audit(audit.clone());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.start(shutdown.clone()).await.unwrap());
    let mut records = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !records
        .iter()
        .any(|r: &acv_protocol::AuditRecord| r.outcome.as_deref() == Some("recovered"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovered record; got {records:#?}"
        );
        audit.flush(bus.as_ref()).await.unwrap();
        // Short waits: the agent may record more after the last flush.
        if let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(200), manager.next()).await {
            if let Body::Audit(batch) = &d.envelope.body {
                records.extend(batch.records.clone());
            }
            d.ack().await.unwrap();
        }
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*handler.0.lock().unwrap(), 1);
    let report = records
        .iter()
        .find(|r| r.kind == acv_protocol::AuditKind::Report && r.name.as_deref() == Some("slo"))
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(report.outcome.as_deref(), Some("response"));
    assert!(report.detail["time_to_detect_ms"].is_u64(), "{report:#?}");
    assert!(report.detail["started_at_ms"].is_u64(), "{report:#?}");
    let recovered = records
        .iter()
        .find(|r| r.outcome.as_deref() == Some("recovered"))
        .unwrap();
    assert_eq!(recovered.episode, report.episode, "the same episode");
    assert!(recovered.detail["time_to_mitigate_ms"].is_u64(), "{recovered:#?}");
}
