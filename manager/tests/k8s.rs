//! The manager's Kubernetes wiring (`acv_manager::k8s`) run for real, without a cluster: the `acv-manager serve`
//! flags parsed as the binary parses them; `k8s::spawn_with` starting the Goal controller with the engine as its
//! sink over a mocked API server (tower-test, a small in-memory stand-in that lists, watches and stores status like
//! the API server does), with fake sidecars on the memory bus and a measured fake world; the controller refusing to
//! start without the CRD. The webhook is in `k8s_webhook.rs`, the `--kube` measurer in `k8s_measure.rs`.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_manager::k8s::spawn_with;
use acv_protocol::{GoalState, SloMetric};
use common::kube::{flags, json_response, manager, mocked_client, not_found};
use common::{c, test_config, wait_until};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

#[test]
fn the_kubernetes_flags_parse_and_bad_ones_are_refused() {
    let k = flags(&[]).unwrap();
    assert!(!k.goal_controller && k.webhook_addr.is_none() && k.inject_env.is_empty());
    assert_eq!(k.goal_poll, Duration::from_secs(5));
    assert_eq!(k.inject_image, concat!("acv/sidecar:", env!("CARGO_PKG_VERSION")));
    let k = flags(&[
        "--goal-controller",
        "--goal-namespace",
        "acv-shop",
        "--goal-poll",
        "250ms",
        "--webhook-addr",
        "127.0.0.1:9443",
        "--webhook-tls-dir",
        "/tls",
        "--inject-image",
        "acv/sidecar:test",
        "--inject-env",
        "ACV_BUS=nats,ACV_NATS_URL=nats://nats.acv-system:4222",
        "--inject-env",
        "ACV_KUBE_PROMETHEUS_URL=http://prometheus.monitoring.svc:9090",
    ])
    .unwrap();
    assert_eq!(k.goal_namespace.as_deref(), Some("acv-shop"));
    assert_eq!(k.goal_poll, Duration::from_millis(250));
    assert_eq!(k.webhook_addr, Some("127.0.0.1:9443".parse().unwrap()));
    assert_eq!(k.inject_env.len(), 3);
    assert_eq!(
        k.inject_env[1],
        ("ACV_NATS_URL".into(), "nats://nats.acv-system:4222".into())
    );
    for (bad, says) in [
        (&["--webhook-addr", "127.0.0.1:9443"][..], "--webhook-tls-dir"),
        (&["--webhook-tls-dir", "/tls"][..], "--webhook-addr"),
        (&["--goal-namespace", "acv-shop"][..], "--goal-controller"),
        (&["--goal-controller", "--goal-poll", "0"][..], "more than 0"),
        (&["--inject-env", "no-equals"][..], "KEY=VALUE"),
        (&["--inject-env", "BAD-KEY=1"][..], "environment variable name"),
    ] {
        let err = flags(bad).unwrap_err().to_string();
        assert!(err.contains(says), "{bad:?}: {err}");
    }
}

// --- the Goal controller against a mocked API server ---

const GOALS: &str = "/apis/acv.dev/v1alpha1/namespaces/acv-shop/goals";

/// What the stand-in API server holds: the Goal objects, a resource version, the open watch (answered when there
/// is something to tell), and every status the manager wrote.
#[derive(Default)]
struct ApiState {
    goals: BTreeMap<String, Value>,
    version: u64,
    pending: Vec<Value>,
    watch: Option<SendResponse<Response<Body>>>,
    statuses: Vec<Value>,
    unexpected: Vec<String>,
}

#[derive(Clone, Default)]
struct FakeApi(Arc<Mutex<ApiState>>);

impl FakeApi {
    /// Answers the client's requests until it goes away.
    async fn serve(self, mut handle: Handle<Request<Body>, Response<Body>>) {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let watch = query.split('&').any(|kv| kv == "watch=true");
            let mut s = self.0.lock().unwrap();
            match (&parts.method, path.strip_prefix(GOALS)) {
                (&Method::GET, Some("")) if watch => {
                    s.watch = Some(send);
                    s.deliver();
                }
                (&Method::GET, Some("")) => {
                    let list = json!({
                        "apiVersion": "acv.dev/v1alpha1",
                        "kind": "GoalList",
                        "metadata": { "resourceVersion": s.version.to_string() },
                        "items": s.goals.values().cloned().collect::<Vec<_>>(),
                    });
                    send.send_response(json_response(StatusCode::OK, &list));
                }
                (&Method::PATCH, Some(rest)) if rest.ends_with("/status") => {
                    let name = rest
                        .trim_start_matches('/')
                        .trim_end_matches("/status")
                        .to_owned();
                    let patch: Value = serde_json::from_slice(&bytes).unwrap();
                    let content_type = parts.headers.get(http::header::CONTENT_TYPE).unwrap();
                    assert_eq!(content_type, "application/apply-patch+yaml");
                    assert!(query.contains("fieldManager=acv-manager"), "{query}");
                    if !s.goals.contains_key(&name) {
                        send.send_response(json_response(StatusCode::NOT_FOUND, &not_found(&name)));
                        continue;
                    }
                    s.statuses.push(patch["status"].clone());
                    let object = s.update(&name, |goal| goal["status"] = patch["status"].clone());
                    send.send_response(json_response(StatusCode::OK, &object));
                }
                _ => {
                    s.unexpected.push(format!("{} {path}?{query}", parts.method));
                    send.send_response(json_response(StatusCode::NOT_FOUND, &not_found(&path)));
                }
            }
        }
    }

    /// A Goal is created (as `kubectl apply` would): stored and announced on the watch.
    fn create(&self, mut goal: Value) {
        let mut s = self.0.lock().unwrap();
        s.version += 1;
        goal["metadata"]["resourceVersion"] = json!(s.version.to_string());
        goal["metadata"]["generation"] = json!(1);
        let name = goal["metadata"]["name"].as_str().unwrap().to_owned();
        s.goals.insert(name, goal.clone());
        s.pending.push(json!({ "type": "ADDED", "object": goal }));
        s.deliver();
    }

    /// A Goal's spec is changed (as `kubectl apply` of an edited file would): a new generation.
    fn edit_spec(&self, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut s = self.0.lock().unwrap();
        s.update(name, |goal| {
            edit(&mut goal["spec"]);
            let generation = goal["metadata"]["generation"].as_i64().unwrap();
            goal["metadata"]["generation"] = json!(generation + 1);
        });
    }

    fn statuses(&self) -> Vec<Value> {
        self.0.lock().unwrap().statuses.clone()
    }

    fn goal(&self, name: &str) -> Value {
        self.0.lock().unwrap().goals[name].clone()
    }

    fn unexpected(&self) -> Vec<String> {
        self.0.lock().unwrap().unexpected.clone()
    }
}

impl ApiState {
    /// Changes a stored goal, bumps its resource version and announces it; returns the new object.
    fn update(&mut self, name: &str, change: impl FnOnce(&mut Value)) -> Value {
        self.version += 1;
        let version = self.version.to_string();
        let goal = self.goals.get_mut(name).unwrap();
        change(goal);
        goal["metadata"]["resourceVersion"] = json!(version);
        let goal = goal.clone();
        self.pending
            .push(json!({ "type": "MODIFIED", "object": goal.clone() }));
        self.deliver();
        goal
    }

    /// Answers the open watch with the events not yet told (the client then watches again from there).
    fn deliver(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let Some(send) = self.watch.take() else { return };
        let mut body = Vec::new();
        for event in self.pending.drain(..) {
            serde_json::to_writer(&mut body, &event).unwrap();
            body.push(b'\n');
        }
        send.send_response(
            Response::builder()
                .status(StatusCode::OK)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap(),
        );
    }
}

/// A Goal as `kubectl apply` of an examples-style file would store it.
fn goal_object(name: &str, component: &str, threshold: f64) -> Value {
    json!({
        "apiVersion": "acv.dev/v1alpha1",
        "kind": "Goal",
        "metadata": { "name": name, "namespace": "acv-shop", "uid": format!("uid-{name}") },
        "spec": {
            "text": format!("Keep {component} P99 under {threshold} ms."),
            "objectives": [{ "components": [component], "metric": "p99_latency_ms", "comparison": "below",
                             "threshold": threshold }],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goal_resource_becomes_a_manager_goal_and_its_state_is_written_to_status() {
    let m = manager().await;
    let (client, handle) = mocked_client();
    let api = FakeApi::default();
    let server = tokio::spawn(api.clone().serve(handle));
    let args = flags(&[
        "--goal-controller",
        "--goal-namespace",
        "acv-shop",
        "--goal-poll",
        "100ms",
    ])
    .unwrap();
    let started = spawn_with(args, m.engine.clone(), Some(client), m.shutdown.clone())
        .await
        .expect("the Goal controller starts");
    assert_eq!(started.tasks.len(), 1, "only the controller was asked for");
    assert_eq!(started.webhook_addr, None);

    // A Goal appears in the cluster.
    api.create(goal_object("fast-catalogue", "catalogue", 200.0));
    let id = "acv-shop-fast-catalogue";
    wait_until("the goal's final state in .status", || async {
        api.statuses().iter().any(|s| s["state"] == "achieved")
    })
    .await;

    // The engine got the goal, under the controller's name for it, with the resource's spec, and achieved it by
    // its own measurement — which the world confirms.
    let record = m.store.goal(id).await.unwrap().expect("the manager has the goal");
    assert_eq!(record.state, GoalState::Achieved, "{}", record.reason);
    assert_eq!(record.spec.objectives[0].threshold, 200.0);
    assert_eq!(record.spec.objectives[0].components, vec![c("catalogue")]);
    let measured = m.world.get("catalogue", SloMetric::P99LatencyMs);
    assert!(measured < 200.0, "{measured}");

    // What was written to .status: the manager's states in their order, ending with the measured result.
    let statuses = api.statuses();
    let states: Vec<&str> = statuses.iter().filter_map(|s| s["state"].as_str()).collect();
    let order = ["accepted", "planning", "assigned", "verifying", "achieved"];
    let ranks: Vec<usize> = states
        .iter()
        .map(|s| {
            order
                .iter()
                .position(|o| o == s)
                .unwrap_or_else(|| panic!("state {s}"))
        })
        .collect();
    eprintln!("states written to .status: {states:?}");
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "{states:?}");
    assert_eq!(states.last(), Some(&"achieved"));
    assert_eq!(
        states.iter().filter(|s| **s == "achieved").count(),
        1,
        "an unchanged status is not written again: {states:?}"
    );
    let last = statuses.last().unwrap();
    assert_eq!(last["goalId"], id);
    assert_eq!(last["observedGeneration"], 1);
    assert_eq!(last["results"][0]["met"], true, "{last}");
    assert_eq!(last["results"][0]["value"].as_f64(), Some(measured), "{last}");
    let events = m.store.events(id, 0).await.unwrap();
    assert_eq!(last["events"].as_u64(), Some(events.len() as u64), "{last}");
    assert_eq!(
        api.goal("fast-catalogue")["status"],
        *last,
        "the stored object has it"
    );

    // Goals do not change in the manager: an edited spec is refused in .status, naming the way out.
    api.edit_spec("fast-catalogue", |spec| {
        spec["objectives"][0]["threshold"] = json!(150.0)
    });
    wait_until("the edit refused in .status", || async {
        api.statuses().last().is_some_and(|s| s["refused"].is_string())
    })
    .await;
    let refused = api.statuses().last().unwrap().clone();
    assert_eq!(refused["observedGeneration"], 2, "{refused}");
    let why = refused["refused"].as_str().unwrap();
    assert!(
        why.contains("different spec") && why.contains("new name"),
        "{why}"
    );
    let record = m.store.goal(id).await.unwrap().unwrap();
    assert_eq!(
        (record.state, record.spec.objectives[0].threshold),
        (GoalState::Achieved, 200.0),
        "the manager's goal is untouched"
    );

    // A goal naming a component no sidecar maintains is refused, and the manager holds nothing for it (once the
    // engine's warm-up, during which sidecars may still be registering, is over).
    tokio::time::sleep(test_config().liveness).await;
    api.create(goal_object("fast-payment", "payment", 100.0));
    wait_until("the unknown component refused in .status", || async {
        api.statuses()
            .iter()
            .any(|s| s["goalId"] == "acv-shop-fast-payment" && s["refused"].is_string())
    })
    .await;
    let status = api.goal("fast-payment")["status"].clone();
    assert!(
        status["refused"].as_str().unwrap().contains("payment"),
        "{status}"
    );
    assert!(m.store.goal("acv-shop-fast-payment").await.unwrap().is_none());

    m.shutdown.cancel();
    for task in started.tasks {
        task.await.unwrap().expect("the controller stops cleanly");
    }
    m.engine_task.await.unwrap().unwrap();
    server.abort();
    assert_eq!(
        api.unexpected(),
        Vec::<String>::new(),
        "requests the API server would not know"
    );
}

#[tokio::test]
async fn without_the_goal_crd_the_controller_refuses_to_start_and_says_why() {
    let m = manager().await;
    let (client, mut handle) = mocked_client();
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("a list request");
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path(), "/apis/acv.dev/v1alpha1/goals");
        send.send_response(json_response(
            StatusCode::NOT_FOUND,
            &not_found("the server could not find the requested resource"),
        ));
        // Nothing else is asked once the check failed.
        assert!(handle.next_request().await.is_none());
    });
    let err = spawn_with(
        flags(&["--goal-controller"]).unwrap(),
        m.engine.clone(),
        Some(client),
        m.shutdown.clone(),
    )
    .await
    .expect_err("no CRD, no controller");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("Goal controller")
            && msg.contains("is the Goal CRD installed")
            && msg.contains("not found"),
        "{msg}"
    );
    server.await.unwrap();
    m.shutdown.cancel();
    m.engine_task.await.unwrap().unwrap();
}
