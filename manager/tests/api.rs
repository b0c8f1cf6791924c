//! The HTTP API and the real `acvctl` binary against an in-process manager (engine + router on 127.0.0.1:0) with
//! fake sidecars on the memory bus.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use acv_bus::{Bus, memory::MemoryBus};
use acv_manager::api::{AgentView, GoalDetail};
use acv_manager::engine::Engine;
use acv_manager::store::{SqlStore, Store, TaskRecord, TaskState};
use acv_protocol::{GoalRecord, GoalState, ReportStatus, SloMetric};
use common::{Behaviour, World, c, fake_sidecar, test_config, wait_until};
use tokio_util::sync::CancellationToken;

struct Manager {
    url: String,
    engine: Arc<Engine>,
    stop: CancellationToken,
    world: Arc<World>,
}

async fn manager(token: Option<&str>, sidecars: &[(&str, Behaviour)]) -> Manager {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::P99LatencyMs, 800.0);
    world.set("front-end", SloMetric::P99LatencyMs, 200.0);
    let stop = CancellationToken::new();
    for (n, b) in sidecars {
        tokio::spawn(fake_sidecar(
            bus.clone(),
            world.clone(),
            n.to_string(),
            b.clone(),
            stop.clone(),
        ));
    }
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&common::temp_dir()).await.unwrap());
    let engine = Engine::new(store, bus, Arc::default(), world.measurer(), test_config());
    tokio::spawn(engine.clone().run(stop.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let router = acv_manager::api::router(engine.clone(), token.map(str::to_owned));
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    let names: Vec<_> = sidecars.iter().map(|(n, _)| c(n)).collect();
    let e = engine.clone();
    wait_until("sidecars registered", || {
        let e = e.clone();
        let names = names.clone();
        async move {
            let known = e.registry().read().await.known();
            names.iter().all(|n| known.contains(n))
        }
    })
    .await;
    // Past the start-up window, so unknown components are refused at once.
    tokio::time::sleep(test_config().liveness).await;
    Manager {
        url: format!("http://{addr}"),
        engine,
        stop,
        world,
    }
}

fn goal_json(text: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "acv.dev/v1alpha1", "kind": "Goal", "spec": {"text": text}})
}

#[tokio::test]
async fn goals_agents_tasks_and_sse_over_http() {
    let m = manager(
        None,
        &[("catalogue", Behaviour::Fix), ("front-end", Behaviour::Fix)],
    )
    .await;
    let http = reqwest::Client::new();
    // Bad input: not JSON, wrong kind, unknown component.
    let r = http
        .post(format!("{}/v1/goals", m.url))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let mut wrong = goal_json("x");
    wrong["kind"] = "Pod".into();
    let r = http
        .post(format!("{}/v1/goals", m.url))
        .json(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{}/v1/goals", m.url))
        .json(&goal_json("Reduce the P99 latency of Payments to under 300 ms."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "refused");
    assert!(body["message"].as_str().unwrap().contains("Payments"), "{body}");

    // A goal, followed over SSE to the end.
    let r = http
        .post(format!("{}/v1/goals", m.url))
        .json(&goal_json("Reduce the P99 latency of Catalogue to under 300 ms."))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let g: GoalRecord = r.json().await.unwrap();
    let mut sse = http
        .get(format!("{}/v1/goals/{}/events", m.url, g.id))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let read = async {
        while let Some(chunk) = sse.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("SSE stream ended after the final state");
    assert!(text.contains("event: goal"), "{text}");
    assert!(text.contains("\"state\":\"achieved\""), "{text}");
    assert!(
        text.starts_with("id: 1\n") || text.contains("\nid: 1\n") || text.contains("id: 1"),
        "{text}"
    );
    // Resuming after the last event id gives nothing new, and the stream ends at once.
    let detail: GoalDetail = http
        .get(format!("{}/v1/goals/{}", m.url, g.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(detail.goal.state, GoalState::Achieved);
    assert_eq!(detail.subtasks.len(), 1);
    assert!(m.world.get("catalogue", SloMetric::P99LatencyMs) < 300.0);
    let list: Vec<GoalRecord> = http
        .get(format!("{}/v1/goals?state=achieved", m.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        http.get(format!("{}/v1/goals?state=bogus", m.url))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        http.get(format!("{}/v1/goals/nope", m.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .post(format!("{}/v1/goals/{}/cancel", m.url, g.id))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "an achieved goal cannot be cancelled");

    // Agents with liveness.
    let agents: Vec<AgentView> = http
        .get(format!("{}/v1/agents", m.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(agents.len(), 2);
    assert!(agents.iter().all(|a| a.live));

    // A task through the manager is recorded with its report.
    let t: TaskRecord = http
        .post(format!("{}/v1/tasks", m.url))
        .json(&serde_json::json!({"to": "front-end", "text": "Restart the service."}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (url, id) = (m.url.clone(), t.id.clone());
    wait_until("the task report", || {
        let (http, url, id) = (http.clone(), url.clone(), id.clone());
        async move {
            let t: TaskRecord = http
                .get(format!("{url}/v1/tasks/{id}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            t.state == TaskState::Reported
        }
    })
    .await;
    let tasks: Vec<TaskRecord> = http
        .get(format!("{}/v1/tasks", m.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks[0].report.as_ref().unwrap().status, ReportStatus::Response);
    m.stop.cancel();
    drop(m.engine);
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let m = manager(Some("s3cret"), &[("catalogue", Behaviour::Fix)]).await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/v1/goals", m.url)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/v1/goals", m.url))
        .bearer_auth("wrong!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/v1/goals", m.url))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    m.stop.cancel();
}

fn acvctl(url: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_acvctl"))
        .env("ACV_MANAGER_URL", url)
        .env_remove("ACV_MANAGER_TOKEN")
        .args(args)
        .output()
        .unwrap()
}

async fn acvctl_async(url: &str, args: &[&str]) -> std::process::Output {
    let url = url.to_owned();
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        acvctl(&url, &a)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acvctl_exit_codes_and_output() {
    let m = manager(
        None,
        &[("catalogue", Behaviour::Fix), ("front-end", Behaviour::Silent)],
    )
    .await;
    // Achieved → 0, with the events shown.
    let out = acvctl_async(
        &m.url,
        &[
            "goal",
            "create",
            "--wait",
            "--timeout",
            "60s",
            "Reduce the P99 latency of Catalogue to under 300 ms.",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("achieved"), "{stdout}");
    assert!(stdout.contains("p99_latency_ms of catalogue"), "{stdout}");
    // Unknown component → 2 with the reason.
    let out = acvctl_async(
        &m.url,
        &[
            "goal",
            "create",
            "Reduce the P99 latency of Payments to under 300 ms.",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown component \"Payments\""));
    // Waiting beyond --timeout on a silent sidecar → 4.
    let out = acvctl_async(
        &m.url,
        &[
            "goal",
            "create",
            "--wait",
            "--timeout",
            "1s",
            "Reduce the P99 latency of Front-end to under 100 ms.",
        ],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same goal, followed to its end: the silent sidecar makes it fail → 3.
    let goals: Vec<GoalRecord> =
        serde_json::from_slice(&acvctl_async(&m.url, &["--json", "goal", "list"]).await.stdout).unwrap();
    let fe = goals.iter().find(|g| g.spec.text.contains("Front-end")).unwrap();
    let out = acvctl_async(&m.url, &["goal", "watch", &fe.id, "--timeout", "60s"]).await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // apply -f with a Goal resource in YAML; a broken file → 2.
    let dir = common::temp_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("goal.yaml");
    std::fs::write(
        &file,
        "apiVersion: acv.dev/v1alpha1\nkind: Goal\nmetadata:\n  name: cat-latency\nspec:\n  objectives:\n    - components: [catalogue]\n      metric: p99_latency_ms\n      comparison: below\n      threshold: 250\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out = acvctl_async(&m.url, &["goal", "apply", "-f", f, "--wait", "--timeout", "60s"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Applying the same resource again is idempotent.
    let out = acvctl_async(&m.url, &["--json", "goal", "apply", "-f", f]).await;
    assert_eq!(out.status.code(), Some(0));
    let again: GoalRecord = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (again.id.as_str(), again.state),
        ("cat-latency", GoalState::Achieved)
    );
    std::fs::write(
        &file,
        "apiVersion: acv.dev/v1alpha1\nkind: Goal\nspec: {objectives: [{components: []}]}\n",
    )
    .unwrap();
    assert_eq!(
        acvctl_async(&m.url, &["goal", "apply", "-f", f])
            .await
            .status
            .code(),
        Some(2)
    );
    // get (table), agents (table and JSON), tasks through the manager.
    let out = acvctl_async(&m.url, &["goal", "get", "cat-latency"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("achieved — already holds"), "{stdout}");
    assert!(
        stdout.contains("measured  p99_latency_ms of catalogue below 250: measured 240.0"),
        "{stdout}"
    );
    let out = acvctl_async(&m.url, &["agents"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("LIVE"));
    let agents: Vec<AgentView> =
        serde_json::from_slice(&acvctl_async(&m.url, &["agents", "--json"]).await.stdout).unwrap();
    assert_eq!(agents.len(), 2);
    let out = acvctl_async(
        &m.url,
        &["task", "send", "--to", "catalogue", "Restart the service."],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("RESPONSE from catalogue"));
    let out = acvctl_async(
        &m.url,
        &["task", "send", "--to", "front-end", "--timeout", "1s", "Restart."],
    )
    .await;
    assert_eq!(out.status.code(), Some(4));
    // No manager there → 1 with a clear message.
    let out = acvctl_async("http://127.0.0.1:9", &["goal", "list"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the manager"));
    m.stop.cancel();
    std::fs::remove_dir_all(&dir).unwrap();
}
