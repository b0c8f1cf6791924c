//! Mechanism 2 on real parts, over real brokers: the manager's goal engine (SQLite store, measurements from the
//! local runtime's control API) and a catalogue sidecar (rules planner, Python steps in the wasmtime sandbox) on
//! RabbitMQ and on NATS. The starting state breaks the objective (a CPU stressor next to catalogue's one pod); the
//! manager assigns the subtask, the sidecar acts, the manager verifies by its own measurement — and the test then
//! measures again itself. The sidecar's own watcher is off, so only the manager's subtask can fix it.

mod common;

use std::{sync::Arc, time::Duration};

use acv_bus::{BusConfig, Transport};
use acv_cluster::{Cluster, Fault, RemoteCluster, Selector};
use acv_manager::{
    engine::{Engine, EngineConfig, resource_from_text},
    measure::RuntimeMeasurer,
    store::{SqlStore, Store},
};
use acv_protocol::{ComponentName, GoalState};
use acv_runtime::LocalRuntime;
use acv_sandbox::SafetyMode;
use acv_sidecar::Agent;
use tokio_util::sync::CancellationToken;

const GOAL: &str = "Reduce the average CPU usage of Catalogue to under 30% of resource limit.";

async fn cpu(cluster: &dyn Cluster) -> f64 {
    cluster
        .metrics(3.0)
        .await
        .unwrap()
        .cpu_percent_of_limit
        .unwrap_or(0.0)
}

async fn cpu_goal_is_achieved_on(transport: Transport) {
    let catalogue = ComponentName::new("catalogue").unwrap();
    let spec = common::shop_spec(&["catalogue"]);
    let rt = Arc::new(LocalRuntime::start(spec).await.unwrap());
    rt.wait_all_ready(Duration::from_secs(30)).await.unwrap();
    let api = rt.serve_api("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cluster: Arc<dyn Cluster> = Arc::new(RemoteCluster::new(api, catalogue.clone()).unwrap());

    let mut bus_config = BusConfig::default().with_transport(transport);
    bus_config.namespace = format!("acv-goal-{}", uuid::Uuid::new_v4().simple());
    let bus = acv_bus::connect(&bus_config)
        .await
        .unwrap_or_else(|e| panic!("{transport} broker must be up: {e}"));

    // The sidecar: real planner, sandbox and runtime; no watcher of its own.
    let handler = common::rules_handler(
        cluster.clone(),
        SafetyMode::Autonomous,
        acv_sidecar::audit::AuditLog::disabled(),
    );
    let stop = CancellationToken::new();
    let agent = Agent::new(
        catalogue.clone(),
        bus.clone(),
        Arc::new(handler),
        Duration::from_millis(500),
    );
    let agent_task = tokio::spawn(agent.start(stop.clone()).await.unwrap());

    // The manager.
    let dir = std::env::temp_dir().join(format!("acv-goal-{}", uuid::Uuid::new_v4().simple()));
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&dir).await.unwrap());
    let engine = Engine::new(
        store.clone(),
        bus.clone(),
        Arc::default(),
        Arc::new(RuntimeMeasurer::new(api, 3.0)),
        EngineConfig {
            default_deadline: Duration::from_secs(150),
            max_rounds: 3,
            subtask_timeout: Duration::from_secs(60),
            max_attempts: 2,
            liveness: Duration::from_secs(5),
            settle: Duration::from_secs(4),
            tick: Duration::from_millis(100),
        },
    );
    let engine_task = tokio::spawn(engine.clone().run(stop.clone()));

    // Break the objective: a stressor next to the one pod (the paper's StressChaos, lighter).
    RemoteCluster::new(api, catalogue.clone())
        .unwrap()
        .inject_selected(
            Fault::CpuStress {
                workers: 1,
                load_percent: 20,
            },
            Selector::ALL,
            Some(Duration::from_secs(300)),
        )
        .await
        .unwrap();
    let mut before = 0.0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        before = cpu(cluster.as_ref()).await;
        if before > 40.0 {
            break;
        }
    }
    assert!(
        before > 40.0,
        "the stressor did not raise catalogue's CPU above 40% of limit: {before:.1}%"
    );

    // Wait until the manager knows the sidecar, then state the goal.
    tokio::time::timeout(Duration::from_secs(30), async {
        while !engine.registry().read().await.known().contains(&catalogue) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the sidecar registers with the manager");
    let goal = engine.create(resource_from_text(GOAL)).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(240), async {
        loop {
            let g = store.goal(&goal.id).await.unwrap().unwrap();
            if g.state.is_terminal() {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the goal ends (it never hangs)");
    let events = store.events(&goal.id, 0).await.unwrap();
    let story: Vec<String> = events
        .iter()
        .map(|e| format!("{:?}: {}", e.state, e.message))
        .collect();
    assert_eq!(
        done.state,
        GoalState::Achieved,
        "CPU before {before:.1}%: {}\n{story:#?}",
        done.reason
    );
    // The test's own measurement, not the manager's word: the average is under the objective now.
    let after = cpu(cluster.as_ref()).await;
    let status = cluster.status().await.unwrap();
    eprintln!(
        "{transport}: CPU {before:.1}% -> {after:.1}% of limit, {} replicas, cpu limit {} m\n{}",
        status.desired_replicas,
        status.limits.cpu_millis,
        story.join("\n")
    );
    assert!(
        after < 30.0,
        "CPU {after:.1}% of limit after the goal ({} replicas)",
        status.desired_replicas
    );
    // What fixed it, by the runtime's own record: more replicas, a higher limit, or the stressed replica replaced
    // (a stressor hits the pods that exist when it is injected, as Chaos Mesh's StressChaos does, so a rolling
    // restart is a real fix for it).
    let faults = RemoteCluster::new(api, catalogue.clone())
        .unwrap()
        .faults()
        .await
        .unwrap();
    let replaced = faults.iter().flat_map(|f| &f.targets).any(|t| t.replaced);
    assert!(
        status.desired_replicas > 1 || status.limits.cpu_millis > 200 || replaced,
        "nothing was changed: {status:?}, faults {faults:?}"
    );

    stop.cancel();
    engine_task.await.unwrap().unwrap();
    agent_task.await.unwrap().unwrap();
    bus.delete_namespace().await.unwrap();
    rt.shutdown().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_goal_is_achieved_over_rabbitmq() {
    cpu_goal_is_achieved_on(Transport::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_goal_is_achieved_over_nats() {
    cpu_goal_is_achieved_on(Transport::Nats).await;
}
