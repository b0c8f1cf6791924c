//! The LLM manager path: the engine splits a goal with the LLM planner's manager prompt (as in the paper), served
//! here by a scripted OpenAI-compatible server inside the test; the rules decomposer checks every proposal and is
//! used instead when a proposal names another component, does not add up to the goal, or the LLM fails.

mod common;

use std::sync::Arc;
use std::time::Duration;

use acv_bus::{Bus, memory::MemoryBus};
use acv_llm::testserver::{Reply, ScriptedServer};
use acv_llm::{Backend, ChatClient, LlmConfig, LlmPlanner, Planner};
use acv_manager::engine::{Engine, resource_from_text};
use acv_manager::store::{SqlStore, Store};
use acv_protocol::{GoalState, SloMetric, SubtaskRecord, TaskSpec};
use common::{Behaviour, World, c, fake_sidecar, test_config, wait_terminal, wait_until};
use tokio_util::sync::CancellationToken;

const GOAL: &str = "Reduce the total P99 latency of Catalogue and Front-end to under 400 ms.";

fn planner(server: &ScriptedServer) -> Arc<dyn Planner> {
    let mut cfg = LlmConfig::new(Backend::Other {
        base_url: server.base_url(),
        model: "m".into(),
        api_key: None,
    });
    cfg.timeout = Duration::from_secs(5);
    cfg.backoff_initial = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(20);
    cfg.max_repairs = 1;
    Arc::new(LlmPlanner::new(ChatClient::new(cfg).unwrap()))
}

fn split_json(catalogue: f64, front_end: f64, extra: &str) -> String {
    format!(
        r#"{{"subtasks": [
  {{"component": "catalogue", "task": "Cut catalogue's P99 latency.",
    "objectives": [{{"metric": "p99_latency_ms", "comparison": "below", "threshold": {catalogue}}}]}},
  {{"component": "front-end", "task": "Cut front-end's P99 latency.",
    "objectives": [{{"metric": "p99_latency_ms", "comparison": "below", "threshold": {front_end}}}]}}{extra}
]}}"#
    )
}

fn threshold(subs: &[SubtaskRecord], comp: &str) -> f64 {
    let s = subs.iter().find(|s| s.component == c(comp)).unwrap();
    match &s.spec {
        TaskSpec::Declarative { goal } => goal.objectives[0].threshold,
        TaskSpec::Imperative { text } => panic!("imperative subtask: {text}"),
    }
}

/// Runs the total-latency goal with fake sidecars (they bring each objective to 80% of its threshold) and the
/// engine decomposing with `server`; returns the final goal, its subtasks and its event messages.
async fn run_goal(server: &ScriptedServer) -> (acv_protocol::GoalRecord, Vec<SubtaskRecord>, Vec<String>) {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::P99LatencyMs, 300.0);
    world.set("front-end", SloMetric::P99LatencyMs, 500.0);
    let stop = CancellationToken::new();
    for n in ["catalogue", "front-end", "carts"] {
        tokio::spawn(fake_sidecar(
            bus.clone(),
            world.clone(),
            n.to_string(),
            Behaviour::Fix,
            stop.clone(),
        ));
    }
    let dir = common::temp_dir();
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&dir).await.unwrap());
    let engine = Engine::with_decomposer(
        store.clone(),
        bus,
        Arc::default(),
        world.measurer(),
        test_config(),
        Some(planner(server)),
    );
    let task = tokio::spawn(engine.clone().run(stop.clone()));
    wait_until("sidecars registered", || async {
        let known = engine.registry().read().await.known();
        ["catalogue", "front-end", "carts"]
            .iter()
            .all(|n| known.contains(&c(n)))
    })
    .await;
    let g = engine.create(resource_from_text(GOAL)).await.unwrap();
    let done = wait_terminal(&*store, &g.id).await;
    let subs = store.subtasks(&g.id).await.unwrap();
    let events = store
        .events(&g.id, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.message)
        .collect();
    // The test's own check of the world: the total holds.
    if done.state == GoalState::Achieved {
        let total =
            world.get("catalogue", SloMetric::P99LatencyMs) + world.get("front-end", SloMetric::P99LatencyMs);
        assert!(total < 400.0, "{total}");
    }
    stop.cancel();
    task.await.unwrap().unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    (done, subs, events)
}

#[tokio::test]
async fn the_llm_split_is_used_when_the_rules_accept_it() {
    // Not the rules' split by share (150/250): the LLM gives catalogue the smaller part.
    let server = ScriptedServer::start(vec![Reply::chat(split_json(100.0, 280.0, ""))])
        .await
        .unwrap();
    let (done, subs, events) = run_goal(&server).await;
    assert_eq!(done.state, GoalState::Achieved, "{}\n{events:#?}", done.reason);
    assert_eq!(threshold(&subs, "catalogue"), 100.0);
    assert_eq!(threshold(&subs, "front-end"), 280.0);
    assert!(
        events
            .iter()
            .any(|e| e.contains("llm:m decomposed round 1 (checked by the rules)")),
        "{events:#?}"
    );
    // The manager prompt, with the registered components, the goal's objective and the measurements.
    let req = &server.requests()[0];
    let messages = req.body["messages"].as_array().unwrap();
    let system = messages[0]["content"].as_str().unwrap();
    let user = messages[1]["content"].as_str().unwrap();
    assert!(system.contains("You are the manager"), "{system}");
    assert!(
        system.contains("catalogue") && system.contains("front-end"),
        "{system}"
    );
    assert!(user.contains(GOAL), "{user}");
    assert!(
        user.contains("total p99_latency_ms of catalogue, front-end below 400"),
        "{user}"
    );
    assert!(user.contains("Latest measurements"), "{user}");
}

#[tokio::test]
async fn a_split_that_does_not_add_up_falls_back_to_the_rules() {
    let server = ScriptedServer::start(vec![Reply::chat(split_json(300.0, 300.0, ""))])
        .await
        .unwrap();
    let (done, subs, events) = run_goal(&server).await;
    assert_eq!(done.state, GoalState::Achieved, "{}\n{events:#?}", done.reason);
    // The rules' split by measured share.
    assert_eq!(threshold(&subs, "catalogue"), 150.0);
    assert_eq!(threshold(&subs, "front-end"), 250.0);
    assert!(
        events
            .iter()
            .any(|e| e.contains("proposed a split the rules refuse") && e.contains("do not add up")),
        "{events:#?}"
    );
}

#[tokio::test]
async fn a_component_outside_the_goal_or_unknown_is_refused() {
    // carts is registered but not part of the goal.
    let carts = r#",
  {"component": "carts", "task": "Scale carts.", "objectives": [{"metric": "p99_latency_ms", "comparison": "below", "threshold": 10}]}"#;
    let server = ScriptedServer::start(vec![Reply::chat(split_json(100.0, 200.0, carts))])
        .await
        .unwrap();
    let (done, subs, events) = run_goal(&server).await;
    assert_eq!(done.state, GoalState::Achieved, "{}", done.reason);
    assert_eq!(subs.len(), 2, "no subtask for carts: {subs:#?}");
    assert!(
        events
            .iter()
            .any(|e| e.contains("carts is not part of this goal")),
        "{events:#?}"
    );

    // An unregistered component: the LLM planner's own validation refuses it (with a repair request), then the
    // rules take over.
    let payments = r#",
  {"component": "payments", "task": "x", "objectives": []}"#;
    let server = ScriptedServer::start(vec![]).await.unwrap();
    let answer = split_json(100.0, 200.0, payments);
    server.set_fallback(move |_| Reply::chat(answer.clone()));
    let (done, subs, events) = run_goal(&server).await;
    assert_eq!(done.state, GoalState::Achieved, "{}", done.reason);
    assert_eq!(threshold(&subs, "catalogue"), 150.0);
    assert!(
        events
            .iter()
            .any(|e| e.contains("could not decompose") && e.contains("payments is not one of the components")),
        "{events:#?}"
    );
    assert_eq!(server.request_count(), 2, "one answer and one repair");
}

#[tokio::test]
async fn an_llm_that_fails_leaves_the_goal_to_the_rules() {
    let server = ScriptedServer::start(vec![]).await.unwrap();
    server.set_fallback(|_| Reply::status(500));
    let (done, subs, events) = run_goal(&server).await;
    assert_eq!(done.state, GoalState::Achieved, "{}", done.reason);
    assert_eq!(threshold(&subs, "front-end"), 250.0);
    assert!(
        events.iter().any(|e| e.contains("could not decompose")),
        "{events:#?}"
    );
}
