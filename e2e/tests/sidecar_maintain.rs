//! The whole maintainer chain on real parts: a task arrives on the bus → the rules planner plans → each step's
//! Python runs in the wasmtime sandbox → host calls reach the local runtime running the real `acv-shop` catalogue
//! → the report goes back on the bus. State is checked on the runtime itself, not on what the report claims.
//! (These tests live in e2e, above both the sidecar and the testbed, so the layering stays one way.)

mod common;

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, memory::MemoryBus};
use acv_cluster::Cluster;
use acv_protocol::{
    Address, Body, ComponentName, Envelope, Mechanism, ReplicaState, ReportBody, ReportStatus, SloPolicy,
    TaskBody, TaskSpec,
};
use acv_runtime::LocalRuntime;
use acv_sandbox::{LazySandbox, Limits, SafetyMode};
use acv_sidecar::{
    Agent,
    caps::{ClusterCaps, NoPeers},
    handler::PlanningHandler,
    watch::Watcher,
};
use tokio_util::sync::CancellationToken;

struct Rig {
    runtime: LocalRuntime,
    cluster: Arc<dyn Cluster>,
    bus: Arc<dyn Bus>,
    shutdown: CancellationToken,
    agent: tokio::task::JoinHandle<Result<(), acv_bus::BusError>>,
    me: Address,
    replies: acv_bus::Subscription,
    manager: acv_bus::Subscription,
}

fn catalogue() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

/// The process-wide test sandbox, already loaded (never released).
fn shared_sandbox() -> Arc<LazySandbox> {
    Arc::new(LazySandbox::preloaded(
        acv_sandbox::dev::shared_sandbox().unwrap(),
    ))
}

async fn rig(mode: SafetyMode, watch: Option<Duration>) -> Rig {
    rig_with(mode, watch, shared_sandbox()).await
}

async fn rig_with(mode: SafetyMode, watch: Option<Duration>, sandbox: Arc<LazySandbox>) -> Rig {
    let spec = common::shop_spec(&["catalogue"]);
    let runtime = LocalRuntime::start(spec).await.unwrap();
    runtime.wait_all_ready(Duration::from_secs(30)).await.unwrap();
    let cluster: Arc<dyn Cluster> = Arc::new(runtime.cluster("catalogue").unwrap());
    let handler = PlanningHandler {
        planner: Arc::new(acv_llm::RulesPlanner::new()),
        sandbox,
        cluster: cluster.clone(),
        caps: Arc::new(ClusterCaps::new(cluster.clone(), Arc::new(NoPeers))),
        mode,
        limits: Limits::default(),
        slo: SloPolicy::default(),
        max_turns: 8,
        settle: Duration::from_millis(1500),
        audit: acv_sidecar::audit::AuditLog::disabled(),
        approval_timeout: Duration::from_secs(900),
        guard: acv_sidecar::guard::GuardConfig::default(),
    };
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let mut agent = Agent::new(
        catalogue(),
        bus.clone(),
        Arc::new(handler),
        Duration::from_secs(60),
    );
    if let Some(every) = watch {
        agent = agent.with_watcher(Watcher::new(cluster.clone(), SloPolicy::default(), 5.0), every);
    }
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(agent.start(shutdown.clone()).await.unwrap());
    let me = Address::Client(ComponentName::new("test").unwrap());
    let replies = bus.subscribe(&me).await.unwrap();
    let manager = bus.subscribe(&Address::Manager).await.unwrap();
    Rig {
        runtime,
        cluster,
        bus,
        shutdown,
        agent,
        me,
        replies,
        manager,
    }
}

impl Rig {
    async fn ask(&mut self, text: &str) -> ReportBody {
        let id = uuid::Uuid::new_v4().to_string();
        let task = Envelope::new(
            id.clone(),
            self.me.clone(),
            Address::Component(catalogue()),
            acv_core::now_ms(),
            Body::Task(TaskBody {
                task_id: id.clone(),
                component: catalogue(),
                spec: TaskSpec::Imperative { text: text.into() },
                mechanism: Mechanism::Solo,
            }),
        );
        self.bus.publish(&task).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(90), self.replies.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.envelope.correlation_id.as_deref(), Some(id.as_str()));
        let Body::Report(r) = d.envelope.body.clone() else {
            panic!("not a report")
        };
        d.ack().await.unwrap();
        r
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.agent.await.unwrap().unwrap();
        self.runtime.shutdown().await;
    }
}

/// Sends `n` real requests to the service's front so that latency metrics have data.
async fn traffic(runtime: &LocalRuntime, n: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = runtime.port("catalogue").unwrap();
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"GET /catalogue HTTP/1.1\r\nHost: catalogue\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        assert!(
            buf.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
}

async fn eventually_ready(cluster: &Arc<dyn Cluster>, replicas: u32) {
    for _ in 0..300 {
        let s = cluster.status().await.unwrap();
        if s.desired_replicas == replicas && s.ready_replicas == replicas {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not {replicas} ready replicas: {:?}",
        cluster.status().await.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imperative_tasks_change_the_real_service() {
    let mut rig = rig(SafetyMode::Autonomous, None).await;

    let r = rig
        .ask("Scale replicas to 3 for your microservice component.")
        .await;
    assert_eq!(r.status, ReportStatus::Response, "{r:#?}");
    assert!(
        !r.steps.is_empty() && r.steps.iter().all(|s| s.program.contains("import acv")),
        "{r:#?}"
    );
    assert!(
        r.steps.iter().any(|s| s.mutated),
        "the sandbox recorded the scale: {r:#?}"
    );
    eventually_ready(&rig.cluster, 3).await;

    let r = rig
        .ask("Update your deployment and set the environment variable logger_flag to true.")
        .await;
    assert_eq!(r.status, ReportStatus::Response, "{r:#?}");
    let s = rig.cluster.status().await.unwrap();
    assert_eq!(
        s.env.get("logger_flag").map(String::as_str),
        Some("true"),
        "{s:?}"
    );

    traffic(&rig.runtime, 60).await;
    let r = rig
        .ask("Report the P99 latency of your microservice component.")
        .await;
    assert_eq!(r.status, ReportStatus::Response, "{r:#?}");
    assert!(r.message.contains("ms"), "{r:#?}");

    let r = rig.ask("Please teleport the database to the moon.").await;
    assert_eq!(
        r.status,
        ReportStatus::Issue,
        "an unknown request is an honest ISSUE: {r:#?}"
    );

    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_mode_refuses_mutations() {
    let mut rig = rig(SafetyMode::Observe, None).await;
    let r = rig
        .ask("Scale replicas to 3 for your microservice component.")
        .await;
    assert_eq!(r.status, ReportStatus::Issue, "{r:#?}");
    let s = rig.cluster.status().await.unwrap();
    assert_eq!(s.desired_replicas, 1, "nothing changed in observe mode");
    assert!(r.message.contains("Observe mode"), "{r:#?}");
    assert!(r.steps.iter().all(|s| !s.mutated), "{r:#?}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_is_released_when_idle_and_the_next_task_loads_it_again() {
    let config = acv_sandbox::dev::checkout_config().unwrap();
    let sandbox = Arc::new(LazySandbox::new(config, Some(Duration::from_millis(300))));
    let mut rig = rig_with(SafetyMode::Autonomous, None, sandbox.clone()).await;
    assert!(!sandbox.stats().loaded, "nothing loaded before the first task");

    let r = rig
        .ask("Scale replicas to 2 for your microservice component.")
        .await;
    assert_eq!(r.status, ReportStatus::Response, "{r:#?}");
    assert_eq!(sandbox.stats().loads, 1);
    eventually_ready(&rig.cluster, 2).await;

    // Bounded wait for the idle timer (not a timing assertion: only that it happens).
    for _ in 0..300 {
        if !sandbox.stats().loaded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = sandbox.stats();
    assert!(!stats.loaded && stats.unloads >= 1, "{stats:?}");

    // The second task after unloading loads the sandbox again and works.
    let r = rig
        .ask("Update your deployment and set the environment variable logger_flag to true.")
        .await;
    assert_eq!(r.status, ReportStatus::Response, "{r:#?}");
    assert!(!r.steps.is_empty(), "{r:#?}");
    assert_eq!(sandbox.stats().loads, 2);
    let s = rig.cluster.status().await.unwrap();
    assert_eq!(
        s.env.get("logger_flag").map(String::as_str),
        Some("true"),
        "{s:?}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_detects_a_broken_rollout_and_rolls_back() {
    let mut rig = rig(SafetyMode::Autonomous, Some(Duration::from_secs(2))).await;
    // A bad release: the dataset's broken catalogue build crash-loops on start.
    let healthy = rig.cluster.status().await.unwrap().image;
    rig.cluster
        .set_image("weaveworksdemos/catalogue:0.3.6")
        .await
        .unwrap();

    // The sidecar raises an ISSUE to the manager, mitigates, and reports the verified outcome.
    let mut issue_seen = false;
    let report = loop {
        let d = tokio::time::timeout(Duration::from_secs(120), rig.manager.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let body = d.envelope.body.clone();
        d.ack().await.unwrap();
        eprintln!("manager inbox: {body:?}");
        match body {
            Body::Issue(i) => {
                assert!(!i.violations.is_empty());
                issue_seen = true;
            }
            Body::Report(r) if r.status == ReportStatus::Response => break r,
            Body::Report(r) => tracing::info!(?r, "Mitigation not finished yet."),
            _ => {}
        }
    };
    assert!(issue_seen);
    assert!(
        report.steps.iter().any(|s| s.program.contains("acv.rollback(")),
        "{report:#?}"
    );
    let s = rig.cluster.status().await.unwrap();
    assert_eq!(s.image, healthy, "back on the healthy build");
    assert!(s.replicas.iter().all(|r| r.state == ReplicaState::Ready), "{s:?}");
    rig.stop().await;
}
