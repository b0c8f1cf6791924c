//! The goal engine with in-process fake sidecars on the memory bus and a fake measured world: goals reach
//! `achieved` only when the world (measured by the engine, checked again by the test) meets them; an unknown
//! component is refused; a stopped sidecar ends the goal `failed`/`partial` with the reason; an engine stopped
//! mid-goal and started again on the same SQLite file finishes the goal.

mod common;

use std::sync::Arc;

use acv_bus::{Bus, memory::MemoryBus};
use acv_manager::engine::{Engine, EngineError, resource_from_text};
use acv_manager::store::{SqlStore, Store};
use acv_protocol::{Combine, Comparison, EventKind, GoalObjective, GoalState, SloMetric, SubtaskState};
use common::{Behaviour, World, c, fake_sidecar, test_config, wait_terminal, wait_until};
use tokio_util::sync::CancellationToken;

struct Rig {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    dir: std::path::PathBuf,
    task: tokio::task::JoinHandle<Result<(), acv_bus::BusError>>,
}

async fn rig(bus: Arc<dyn Bus>, world: &Arc<World>, dir: Option<std::path::PathBuf>) -> Rig {
    let dir = dir.unwrap_or_else(common::temp_dir);
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&dir).await.unwrap());
    let engine = Engine::new(
        store.clone(),
        bus,
        Arc::default(),
        world.measurer(),
        test_config(),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(engine.clone().run(shutdown.clone()));
    Rig {
        engine,
        store,
        shutdown,
        dir,
        task,
    }
}

async fn registered(engine: &Engine, names: &[&str]) {
    wait_until("sidecars registered", || async {
        let known = engine.registry().read().await.known();
        names.iter().all(|n| known.contains(&c(n)))
    })
    .await;
}

#[tokio::test]
async fn total_latency_goal_is_split_by_share_and_achieved_by_measurement() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::P99LatencyMs, 300.0);
    world.set("front-end", SloMetric::P99LatencyMs, 500.0);
    let stop = CancellationToken::new();
    for n in ["catalogue", "front-end"] {
        tokio::spawn(fake_sidecar(
            bus.clone(),
            world.clone(),
            n.to_string(),
            Behaviour::Fix,
            stop.clone(),
        ));
    }
    let r = rig(bus, &world, None).await;
    registered(&r.engine, &["catalogue", "front-end"]).await;
    let g = r
        .engine
        .create(resource_from_text(
            "Reduce the total P99 latency of Catalogue and Front-end to under 400 ms.",
        ))
        .await
        .unwrap();
    let done = wait_terminal(&*r.store, &g.id).await;
    assert_eq!(done.state, GoalState::Achieved, "{}", done.reason);
    // The budget was split by each one's share (300:500 of 400 → 150 and 250).
    let subs = r.store.subtasks(&g.id).await.unwrap();
    assert_eq!(subs.len(), 2);
    let text = |comp: &str| {
        subs.iter()
            .find(|s| s.component == c(comp))
            .unwrap()
            .spec
            .text()
            .to_owned()
    };
    assert!(text("catalogue").contains("below 150"), "{}", text("catalogue"));
    assert!(text("front-end").contains("below 250"), "{}", text("front-end"));
    assert!(
        subs.iter()
            .all(|s| s.state == SubtaskState::Done && s.attempts == 1)
    );
    // The test's own measurement agrees.
    let total =
        world.get("catalogue", SloMetric::P99LatencyMs) + world.get("front-end", SloMetric::P99LatencyMs);
    assert!(total < 400.0, "{total}");
    // Every transition was recorded, in order.
    let states: Vec<GoalState> = r
        .store
        .events(&g.id, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::State)
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states,
        vec![
            GoalState::Accepted,
            GoalState::Planning,
            GoalState::Assigned,
            GoalState::Verifying,
            GoalState::Achieved
        ]
    );
    stop.cancel();
    r.shutdown.cancel();
}

#[tokio::test]
async fn a_sidecar_that_does_not_fix_it_leads_to_replanning_then_failed() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::CpuPercentOfLimit, 80.0);
    let stop = CancellationToken::new();
    tokio::spawn(fake_sidecar(
        bus.clone(),
        world.clone(),
        "catalogue".to_string(),
        Behaviour::ClaimOnly,
        stop.clone(),
    ));
    let r = rig(bus, &world, None).await;
    registered(&r.engine, &["catalogue"]).await;
    let mut res =
        resource_from_text("Reduce the average CPU usage of Catalogue to under 30% of resource limit.");
    res.spec.max_rounds = Some(2);
    let g = r.engine.create(res).await.unwrap();
    let done = wait_terminal(&*r.store, &g.id).await;
    // The sidecar claimed success each time; the manager measured and did not believe it.
    assert_eq!(done.state, GoalState::Failed, "{}", done.reason);
    assert!(
        done.reason.contains("not reached after 2 round(s)"),
        "{}",
        done.reason
    );
    assert_eq!(done.round, 2);
    assert_eq!(r.store.subtasks(&g.id).await.unwrap().len(), 2);
    stop.cancel();
    r.shutdown.cancel();
}

#[tokio::test]
async fn unknown_component_is_refused_with_the_reason() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    let stop = CancellationToken::new();
    tokio::spawn(fake_sidecar(
        bus.clone(),
        world.clone(),
        "catalogue".to_string(),
        Behaviour::Fix,
        stop.clone(),
    ));
    let r = rig(bus, &world, None).await;
    registered(&r.engine, &["catalogue"]).await;
    // After the warm-up window the registry is trusted.
    tokio::time::sleep(test_config().liveness).await;
    let err = r
        .engine
        .create(resource_from_text(
            "Reduce the P99 latency of Payments to under 300 ms.",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Refused(_)), "{err}");
    assert!(
        err.to_string().contains("unknown component \"Payments\""),
        "{err}"
    );
    assert!(err.to_string().contains("catalogue"), "{err}");
    assert!(r.store.goals(Default::default(), 10).await.unwrap().is_empty());
    // Impossible: a latency below zero.
    let mut res = resource_from_text("");
    res.spec.objectives = vec![GoalObjective {
        components: vec![c("catalogue")],
        metric: SloMetric::P99LatencyMs,
        comparison: Comparison::Below,
        threshold: -5.0,
        combine: Combine::Each,
    }];
    let err = r.engine.create(res).await.unwrap_err();
    assert!(matches!(err, EngineError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("impossible"), "{err}");
    stop.cancel();
    r.shutdown.cancel();
}

#[tokio::test]
async fn a_stopped_sidecar_ends_the_goal_failed_or_partial_with_the_reason() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::CpuPercentOfLimit, 70.0);
    world.set("front-end", SloMetric::CpuPercentOfLimit, 70.0);
    let alive = CancellationToken::new();
    let stopped = CancellationToken::new();
    tokio::spawn(fake_sidecar(
        bus.clone(),
        world.clone(),
        "catalogue".to_string(),
        Behaviour::Fix,
        alive.clone(),
    ));
    tokio::spawn(fake_sidecar(
        bus.clone(),
        world.clone(),
        "front-end".to_string(),
        Behaviour::Fix,
        stopped.clone(),
    ));
    let r = rig(bus, &world, None).await;
    registered(&r.engine, &["catalogue", "front-end"]).await;
    stopped.cancel();
    let mut res = resource_from_text("Reduce each Catalogue and Front-end's average CPU usage to under 30%.");
    res.spec.deadline_seconds = Some(20);
    let g = r.engine.create(res).await.unwrap();
    let done = wait_terminal(&*r.store, &g.id).await;
    assert!(
        matches!(done.state, GoalState::Failed | GoalState::Partial),
        "{:?}",
        done.state
    );
    assert!(
        done.reason.contains("no answer from front-end"),
        "{}",
        done.reason
    );
    assert!(
        done.updated_ms <= done.deadline_ms,
        "decided within the goal's deadline"
    );
    let subs = r.store.subtasks(&g.id).await.unwrap();
    let fe = subs.iter().find(|s| s.component == c("front-end")).unwrap();
    assert_eq!(fe.state, SubtaskState::TimedOut);
    assert!(fe.message.contains("not live"), "{}", fe.message);
    let cat = subs.iter().find(|s| s.component == c("catalogue")).unwrap();
    assert_eq!(cat.state, SubtaskState::Done);
    alive.cancel();
    r.shutdown.cancel();
}

#[tokio::test]
async fn a_silent_sidecar_gets_retries_then_the_goal_fails() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::P99LatencyMs, 900.0);
    let stop = CancellationToken::new();
    // Heartbeats but never answers tasks.
    tokio::spawn(fake_sidecar(
        bus.clone(),
        world.clone(),
        "catalogue".to_string(),
        Behaviour::Silent,
        stop.clone(),
    ));
    let r = rig(bus, &world, None).await;
    registered(&r.engine, &["catalogue"]).await;
    let g = r
        .engine
        .create(resource_from_text(
            "Reduce the P99 latency of Catalogue to under 300 ms.",
        ))
        .await
        .unwrap();
    let done = wait_terminal(&*r.store, &g.id).await;
    assert_eq!(done.state, GoalState::Failed, "{}", done.reason);
    let sub = &r.store.subtasks(&g.id).await.unwrap()[0];
    assert_eq!(sub.attempts, test_config().max_attempts);
    assert!(
        sub.message
            .contains("no answer from catalogue after 2 attempt(s)"),
        "{}",
        sub.message
    );
    stop.cancel();
    r.shutdown.cancel();
}

#[tokio::test]
async fn cancel_stops_a_goal_and_its_subtasks() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::P99LatencyMs, 900.0);
    let stop = CancellationToken::new();
    tokio::spawn(fake_sidecar(
        bus.clone(),
        world.clone(),
        "catalogue".to_string(),
        Behaviour::Silent,
        stop.clone(),
    ));
    let r = rig(bus, &world, None).await;
    registered(&r.engine, &["catalogue"]).await;
    let g = r
        .engine
        .create(resource_from_text(
            "Reduce the P99 latency of Catalogue to under 300 ms.",
        ))
        .await
        .unwrap();
    let store = r.store.clone();
    let id = g.id.clone();
    wait_until("subtask sent", || {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .subtasks(&id)
                .await
                .unwrap()
                .iter()
                .any(|s| s.state == SubtaskState::Sent)
        }
    })
    .await;
    let cancelled = r.engine.cancel(&g.id).await.unwrap();
    assert_eq!(cancelled.state, GoalState::Cancelled);
    assert_eq!(
        r.store.subtasks(&g.id).await.unwrap()[0].state,
        SubtaskState::Cancelled
    );
    assert!(matches!(
        r.engine.cancel(&g.id).await,
        Err(EngineError::Finished { .. })
    ));
    stop.cancel();
    r.shutdown.cancel();
}

#[tokio::test]
async fn an_engine_killed_mid_goal_resumes_it_from_the_store() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::P99LatencyMs, 700.0);
    let stop = CancellationToken::new();
    let gate = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(fake_sidecar(
        bus.clone(),
        world.clone(),
        "catalogue".to_string(),
        Behaviour::FixAfter(gate.clone()),
        stop.clone(),
    ));
    let first = rig(bus.clone(), &world, None).await;
    registered(&first.engine, &["catalogue"]).await;
    let g = first
        .engine
        .create(resource_from_text(
            "Reduce the P99 latency of Catalogue to under 300 ms.",
        ))
        .await
        .unwrap();
    let store = first.store.clone();
    let id = g.id.clone();
    wait_until("subtask sent", || {
        let store = store.clone();
        let id = id.clone();
        async move {
            store
                .subtasks(&id)
                .await
                .unwrap()
                .iter()
                .any(|s| s.state == SubtaskState::Sent)
        }
    })
    .await;
    // "Kill" the first engine: its task is aborted wherever it is, nothing is shut down cleanly.
    let dir = first.dir.clone();
    first.task.abort();
    assert!(first.task.await.unwrap_err().is_cancelled());
    drop(first.engine);
    drop(first.store);
    // The sidecar answers while no manager runs; the report waits in the manager's durable inbox.
    gate.notify_one();
    let second = rig(bus, &world, Some(dir)).await;
    let done = wait_terminal(&*second.store, &g.id).await;
    assert_eq!(done.state, GoalState::Achieved, "{}", done.reason);
    assert!(world.get("catalogue", SloMetric::P99LatencyMs) < 300.0);
    stop.cancel();
    second.shutdown.cancel();
}
