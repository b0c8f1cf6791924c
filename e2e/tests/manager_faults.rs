//! The manager when things go wrong, on real processes over RabbitMQ and NATS (`acv-local` shop, `acv-manager
//! serve`, `acv-sidecar` processes, the real `acvctl`):
//! - a goal whose sidecar was SIGKILLed ends `failed`/`partial` by its deadline, naming the silent sidecar;
//! - the `acv-manager` process SIGKILLed mid-goal and started again on the same `--state-dir` finishes the goal
//!   (the sidecar's report waits in the manager's durable bus inbox), checked by the test's own measurement;
//! - a latency goal over a service with no traffic holds ("no requests in the window"), rather than failing as
//!   "not measured".

mod common;
mod manager_stack;

use std::time::Duration;

use acv_bus::Transport;
use acv_cluster::Cluster;
use manager_stack::{ManagerTimings, Stack};

/// One test at a time (each runs the whole shop).
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CPU_GOAL: &str = "Reduce the average CPU usage of Catalogue to under 30% of resource limit.";

async fn stopped_sidecar(transport: Transport) {
    let _turn = TURN.lock().await;
    let mut stack = Stack::start(transport, ManagerTimings::default());
    stack.stress_catalogue().await;
    stack.start_sidecar("catalogue");
    stack.wait_agents_live(&["catalogue"], 60).await;
    stack.kill_sidecar("catalogue");
    let name = format!("stopped-{transport}");
    let out = stack
        .acvctl(&[
            "goal",
            "create",
            "--name",
            &name,
            "--deadline",
            "30s",
            "--wait",
            "--timeout",
            "90s",
            CPU_GOAL,
        ])
        .await;
    let story = stack.story(&name).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "exit 3 (failed or partial)\n{}\n{story}",
        common::output_text(&out)
    );
    let g = stack.goal(&name).await;
    let goal = &g["goal"];
    let state = goal["state"].as_str().unwrap();
    let reason = goal["reason"].as_str().unwrap();
    assert!(state == "failed" || state == "partial", "{state}: {reason}");
    assert!(
        reason.contains("no answer from catalogue") && reason.contains("not live"),
        "the reason names the silent sidecar: {reason}\n{story}"
    );
    // Decided by its deadline (one tick and a measurement of slack), from the manager's own record.
    let final_at = g["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["kind"] == "state")
        .and_then(|e| e["at_ms"].as_u64())
        .unwrap();
    let deadline = goal["deadline_ms"].as_u64().unwrap();
    assert!(
        final_at <= deadline + 15_000,
        "ended {} ms after its deadline\n{story}",
        final_at.saturating_sub(deadline)
    );
    eprintln!("{transport}: {state}: {reason}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_whose_sidecar_is_stopped_fails_by_its_deadline_over_rabbitmq() {
    stopped_sidecar(Transport::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_whose_sidecar_is_stopped_fails_by_its_deadline_over_nats() {
    stopped_sidecar(Transport::Nats).await;
}

async fn manager_killed(transport: Transport) {
    let _turn = TURN.lock().await;
    let mut stack = Stack::start(transport, ManagerTimings::default());
    let before = stack.stress_catalogue().await;
    stack.start_sidecar("catalogue");
    stack.wait_agents_live(&["catalogue"], 60).await;
    let name = format!("killed-{transport}");
    let out = stack
        .acvctl(&["goal", "create", "--name", &name, "--deadline", "120s", CPU_GOAL])
        .await;
    assert!(out.status.success(), "{}", common::output_text(&out));
    // Mid-goal: the subtask is out to the sidecar.
    common::eventually(60, "the subtask sent", || async {
        let g = stack.goal(&name).await;
        (g["goal"]["state"] == "assigned"
            && g["subtasks"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["state"] == "sent")))
        .then_some(())
    })
    .await;
    stack.kill_manager();
    stack.start_manager();
    let out = stack.acvctl(&["goal", "watch", &name, "--timeout", "150s"]).await;
    let story = stack.story(&name).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "achieved after the restart\n{}\n{story}",
        common::output_text(&out)
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = stack.cpu("catalogue").await;
    let replicas = stack
        .cluster("catalogue")
        .status()
        .await
        .unwrap()
        .desired_replicas;
    eprintln!(
        "{transport}: catalogue CPU {before:.1}% -> {after:.1}% of limit, {replicas} replicas, across a SIGKILL of \
         the manager\n{story}"
    );
    assert!(after < 30.0, "catalogue CPU {after:.1}% of limit after the goal");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_sigkilled_mid_goal_finishes_it_after_a_restart_over_rabbitmq() {
    manager_killed(Transport::Amqp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_sigkilled_mid_goal_finishes_it_after_a_restart_over_nats() {
    manager_killed(Transport::Nats).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_goal_over_a_quiet_service_holds_without_traffic() {
    let _turn = TURN.lock().await;
    let mut stack = Stack::start(Transport::Nats, ManagerTimings::default());
    stack.start_sidecar("catalogue");
    stack.wait_agents_live(&["catalogue"], 60).await;
    // The test's own reading: catalogue is up and served nothing.
    let m = stack.cluster("catalogue").metrics(5.0).await.unwrap();
    assert_eq!((m.request_rate, m.p99_ms), (Some(0.0), None), "{m:?}");
    let out = stack
        .acvctl(&[
            "goal",
            "create",
            "--name",
            "quiet",
            "--deadline",
            "60s",
            "--wait",
            "--timeout",
            "90s",
            "Reduce the P99 latency of Catalogue to under 300 ms.",
        ])
        .await;
    let g = stack.goal("quiet").await;
    let reason = g["goal"]["reason"].as_str().unwrap().to_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        common::output_text(&out),
        stack.story("quiet").await
    );
    assert!(reason.contains("no requests in the window"), "{reason}");
    assert!(
        g["subtasks"].as_array().is_some_and(Vec::is_empty),
        "nothing to fix, nothing assigned: {g}"
    );
    stack.stop().await;
}
