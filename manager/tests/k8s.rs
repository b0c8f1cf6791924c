//! The manager's Kubernetes wiring (`acv_manager::k8s`) run for real, without a cluster: the `acv-manager serve`
//! flags parsed as the binary parses them; `k8s::spawn_with` starting the Goal controller with the engine as its
//! sink over a mocked API server (tower-test, a small in-memory stand-in that lists, watches and stores status like
//! the API server does), with fake sidecars on the memory bus and a measured fake world; the controller refusing to
//! start without the CRD; and the sidecar-injection webhook served over HTTPS with a certificate from the repo's own
//! PKI (`acv_pki`, what `acv-certs --server-name` writes), answering AdmissionReview fixtures to a client that trusts
//! only that CA.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_bus::{Bus, memory::MemoryBus};
use acv_manager::engine::Engine;
use acv_manager::k8s::{K8sArgs, spawn_with};
use acv_manager::store::{SqlStore, Store};
use acv_protocol::{GoalState, SloMetric};
use clap::Parser;
use common::{Behaviour, World, c, fake_sidecar, test_config, wait_until};
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_test::mock::{Handle, SendResponse};

/// `acv-manager serve`'s Kubernetes flags, parsed as the binary parses them.
#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    k8s: K8sArgs,
}

fn flags(args: &[&str]) -> Result<K8sArgs, clap::Error> {
    Flags::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|f| f.k8s)
}

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

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn not_found(what: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure", "message": format!("{what} not found"),
            "reason": "NotFound", "code": 404 })
}

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

fn mocked_client() -> (kube::Client, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// The Goal of manifests/examples-style YAML, as the API server would store it.
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

struct Manager {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    world: Arc<World>,
    shutdown: CancellationToken,
    engine_task: tokio::task::JoinHandle<Result<(), acv_bus::BusError>>,
}

/// An engine with a fake `catalogue` sidecar on the memory bus that fixes what it is asked to, in a world where
/// catalogue's P99 is 300 ms.
async fn manager() -> Manager {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::P99LatencyMs, 300.0);
    let shutdown = CancellationToken::new();
    tokio::spawn(fake_sidecar(
        bus.clone(),
        world.clone(),
        "catalogue".into(),
        Behaviour::Fix,
        shutdown.clone(),
    ));
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&common::temp_dir()).await.unwrap());
    let engine = Engine::new(
        store.clone(),
        bus,
        Arc::default(),
        world.measurer(),
        test_config(),
    );
    let engine_task = tokio::spawn(engine.clone().run(shutdown.clone()));
    wait_until("the catalogue sidecar registered", || async {
        engine.registry().read().await.known().contains(&c("catalogue"))
    })
    .await;
    Manager {
        engine,
        store,
        world,
        shutdown,
        engine_task,
    }
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

// --- the injection webhook over HTTPS ---

/// The name the API server dials (the Service in manifests/base/webhook.yaml, as in the cert-manager Certificate).
const WEBHOOK_HOST: &str = "acv-manager.acv-system.svc";

fn review(uid: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "acv-shop",
            "operation": "CREATE",
            "userInfo": { "username": "system:serviceaccount:kube-system:replicaset-controller" },
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": { "generateName": "carts-5d4f7b9c8-", "namespace": "acv-shop", "labels": labels,
                              "annotations": annotations },
                "spec": {
                    "containers": [{ "name": "carts", "image": "acv/shop:0.1.0" }],
                    "serviceAccountName": "default",
                },
            },
            "dryRun": false,
        }
    })
}

#[tokio::test]
async fn the_webhook_answers_admission_reviews_over_https_with_a_certificate_from_the_pki() {
    let m = manager().await;
    // The CA and the webhook's serving certificate, as `acv-certs --server-name` writes them.
    let dir = common::temp_dir();
    let ca = acv_pki::DevCa::generate("acv test CA", Duration::from_secs(3600)).unwrap();
    let validity = acv_pki::Validity::from_now(Duration::from_secs(3600));
    ca.issue_server(
        &[WEBHOOK_HOST, "acv-manager.acv-system.svc.cluster.local"],
        validity,
    )
    .unwrap()
    .write_tls(&dir)
    .unwrap();
    let args = flags(&[
        "--webhook-addr",
        "127.0.0.1:0",
        "--webhook-tls-dir",
        dir.to_str().unwrap(),
        "--inject-image",
        "acv/sidecar:test",
        "--inject-env",
        "ACV_BUS=nats,ACV_NATS_URL=nats://nats.acv-system:4222",
    ])
    .unwrap();
    let started = spawn_with(args, m.engine.clone(), None, m.shutdown.clone())
        .await
        .expect("the webhook starts");
    let addr = started.webhook_addr.expect("the webhook's address");

    // A client that trusts only the test CA and dials the Service's name (resolved to the test's address).
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .resolve(WEBHOOK_HOST, addr)
        .build()
        .unwrap();
    let url = format!("https://{WEBHOOK_HOST}:{}/mutate", addr.port());
    let post = |body: Vec<u8>| {
        let (client, url) = (trusting.clone(), url.clone());
        async move {
            let res = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("HTTPS to the webhook");
            assert_eq!(res.status(), reqwest::StatusCode::OK);
            let review: Value = res.json().await.unwrap();
            assert_eq!(review["kind"], "AdmissionReview");
            assert_eq!(review["response"]["allowed"], true, "never denies: {review}");
            review["response"].clone()
        }
    };
    let health = trusting
        .get(format!("https://{WEBHOOK_HOST}:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");

    // Opted in (the pod's label): patched, with the sidecar configured by the flags.
    let opted_in = review(
        "uid-in",
        json!({ "name": "carts", "acv.dev/inject": "enabled" }),
        json!({}),
    );
    let response = post(serde_json::to_vec(&opted_in).unwrap()).await;
    assert_eq!(response["uid"], "uid-in");
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut pod = opted_in["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    let containers = pod["spec"]["containers"].as_array().unwrap();
    let sidecar = containers
        .iter()
        .find(|c| c["name"] == "acv-sidecar")
        .expect("the sidecar container");
    assert_eq!(sidecar["image"], "acv/sidecar:test");
    let env: BTreeMap<&str, &str> = sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(env.get("ACV_SIDECAR_COMPONENT"), Some(&"carts"));
    assert_eq!(env.get("ACV_BUS"), Some(&"nats"));
    assert_eq!(env.get("ACV_NATS_URL"), Some(&"nats://nats.acv-system:4222"));
    assert_eq!(pod["spec"]["serviceAccountName"], "carts-acv");
    assert_eq!(
        containers[0]["name"], "carts",
        "the application container is untouched"
    );

    // Opted out (annotation): admitted unchanged.
    let opted_out = review(
        "uid-out",
        json!({ "name": "carts" }),
        json!({ "acv.dev/inject": "false" }),
    );
    let response = post(serde_json::to_vec(&opted_out).unwrap()).await;
    assert_eq!(response["uid"], "uid-out");
    assert!(response.get("patch").is_none(), "{response}");

    // Malformed: allowed, with a warning (and the uid, when it can be read).
    for (body, uid) in [
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"uid-bad","object":7}}"#.to_vec(), "uid-bad"),
        (b"not json at all".to_vec(), ""),
    ] {
        let response = post(body).await;
        assert_eq!(response["uid"], uid, "{response}");
        assert!(response.get("patch").is_none(), "{response}");
        let warnings = response["warnings"].as_array().expect("a warning");
        assert!(
            warnings[0].as_str().unwrap().contains("sidecar not injected"),
            "{warnings:?}"
        );
    }

    // A client that does not trust the CA gets no answer: the TLS is real.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve(WEBHOOK_HOST, addr)
        .build()
        .unwrap();
    let err = untrusting
        .post(&url)
        .body(serde_json::to_vec(&opted_in).unwrap())
        .send()
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(err.is_connect(), "{err:?}");
    // Nor does one dialling a name the certificate does not carry.
    let wrong_name = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .resolve("elsewhere.acv-system.svc", addr)
        .build()
        .unwrap();
    assert!(
        wrong_name
            .get(format!(
                "https://elsewhere.acv-system.svc:{}/healthz",
                addr.port()
            ))
            .send()
            .await
            .is_err()
    );

    m.shutdown.cancel();
    for task in started.tasks {
        task.await.unwrap().unwrap();
    }
    m.engine_task.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_webhook_does_not_start_without_its_tls_files() {
    let m = manager().await;
    let dir = common::temp_dir();
    let err = spawn_with(
        flags(&[
            "--webhook-addr",
            "127.0.0.1:0",
            "--webhook-tls-dir",
            dir.to_str().unwrap(),
        ])
        .unwrap(),
        m.engine.clone(),
        None,
        m.shutdown.clone(),
    )
    .await
    .expect_err("no TLS files");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("tls.crt") && msg.contains(dir.to_str().unwrap()),
        "{msg}"
    );
    m.shutdown.cancel();
    m.engine_task.await.unwrap().unwrap();
}
