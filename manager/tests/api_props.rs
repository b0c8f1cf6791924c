//! Property tests over the bodies the manager's HTTP API takes from outside — `POST /v1/goals` (Goal resource),
//! `POST /v1/tasks`, `POST /v1/approvals/{id}/approve|deny` (decision), `POST /v1/goals/{id}/cancel` — sent over
//! real HTTP to the real router (in-process engine, SQLite store, memory bus). Whatever the body — random bytes,
//! random JSON, or a valid body with a random part replaced or its bytes damaged — the answer is a success or a 4xx
//! with a typed error body (`{"error": KIND, "message": TEXT}`), never a 5xx, a hang or a panic. Cases are bounded
//! (256 per property) so `make test` stays fast.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use acv_bus::{Bus, memory::MemoryBus};
use acv_manager::api::ErrorBody;
use acv_manager::engine::Engine;
use acv_manager::registry::Registry;
use acv_manager::store::{Approval, SqlStore, Store};
use acv_protocol::{Address, ApprovalState, Body, Envelope, Registration};
use proptest::prelude::*;
use serde_json::{Value, json};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// The error kinds the API documents.
const KINDS: [&str; 7] = [
    "invalid",
    "refused",
    "conflict",
    "not_found",
    "finished",
    "unauthorized",
    "internal",
];

/// One manager for every case: a runtime, the router on 127.0.0.1:0, an HTTP client.
struct Rig {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    http: reqwest::Client,
    store: Arc<dyn Store>,
}

fn rig() -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (addr, store) = rt.block_on(async {
            let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
            let world = common::World::new();
            let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&common::temp_dir()).await.unwrap());
            // catalogue and front-end are known sidecars, so goals about them are accepted (not only refused).
            let mut registry = Registry::default();
            for name in ["catalogue", "front-end"] {
                registry.apply(&Envelope::new(
                    format!("reg-{name}"),
                    Address::Component(common::c(name)),
                    Address::Broadcast,
                    acv_core::now_ms(),
                    Body::Register(Registration {
                        component: common::c(name),
                        peer_url: None,
                        planner: "fake".into(),
                        version: "test".into(),
                        safety: None,
                    }),
                ));
            }
            let engine = Engine::new(
                store.clone(),
                bus,
                Arc::new(tokio::sync::RwLock::new(registry)),
                world.measurer(),
                common::test_config(),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let router = acv_manager::api::router(engine, None);
            tokio::spawn(async move { axum::serve(listener, router).await });
            (addr, store)
        });
        Rig {
            rt,
            addr,
            http: reqwest::Client::new(),
            store,
        }
    })
}

/// POSTs `body` to `path` (segments are percent-encoded) and checks the answer: 2xx, or 4xx with a typed error.
fn post(segments: &[&str], body: Vec<u8>) -> Result<u16, TestCaseError> {
    let rig = rig();
    let mut url = reqwest::Url::parse(&format!("http://{}/", rig.addr)).unwrap();
    url.path_segments_mut().unwrap().extend(segments);
    let (code, text) = rig.rt.block_on(async {
        let resp = rig
            .http
            .post(url.clone())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("the manager answers");
        let code = resp.status().as_u16();
        (code, resp.text().await.unwrap_or_default())
    });
    prop_assert!(code < 500, "{url}: {code} {text}");
    if code >= 400 {
        let err: ErrorBody = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{url}: {code} with an untyped body {text:?}: {e}")))?;
        prop_assert!(KINDS.contains(&err.error.as_str()), "{url}: kind {:?}", err.error);
        prop_assert!(!err.message.is_empty(), "{url}: an empty message");
    } else {
        prop_assert!((200..300).contains(&code), "{url}: {code} {text}");
    }
    Ok(code)
}

/// A pending approval (as a sidecar in approve mode would have queued it); returns its id.
fn pending_approval() -> String {
    let rig = rig();
    let now = acv_core::now_ms();
    let a = Approval {
        id: uuid::Uuid::new_v4().to_string(),
        component: common::c("catalogue"),
        episode: "ep-1".into(),
        task_id: None,
        call: "scale".into(),
        args: json!({"replicas": 2}),
        program: "scale(2)".into(),
        state: ApprovalState::Pending,
        requested_ms: now,
        expires_ms: now + 600_000,
        decided_ms: None,
        decided_by: None,
        reason: None,
        result: None,
    };
    rig.rt
        .block_on(rig.store.insert_approval(&a))
        .expect("approval stored");
    a.id
}

/// Arbitrary JSON, a few levels deep, with the keys of the API's bodies so that deep paths get hit.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("apiVersion".to_owned()),
        Just("kind".to_owned()),
        Just("metadata".to_owned()),
        Just("name".to_owned()),
        Just("spec".to_owned()),
        Just("text".to_owned()),
        Just("objectives".to_owned()),
        Just("components".to_owned()),
        Just("threshold".to_owned()),
        Just("to".to_owned()),
        Just("timeout_secs".to_owned()),
        Just("by".to_owned()),
        Just("reason".to_owned()),
        "[a-zA-Z_]{1,10}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::String),
        prop_oneof![
            Just("catalogue"),
            Just("front-end"),
            Just("Goal"),
            Just("acv.dev/v1alpha1"),
            Just("p99_latency_ms"),
            Just("cpu_percent_of_limit"),
            Just("below"),
            Just("Reduce the P99 latency of Catalogue to under 300 ms."),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a random path of `cur` with `with` (stopping early at a leaf).
fn mutate(cur: &mut Value, path: &[usize], with: Value) {
    let Some((&i, rest)) = path.split_first() else {
        *cur = with;
        return;
    };
    match cur {
        Value::Object(m) if !m.is_empty() => {
            let key = m.keys().nth(i % m.len()).cloned();
            match key.and_then(|k| m.get_mut(&k)) {
                Some(next) => mutate(next, rest, with),
                None => *cur = with,
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let n = a.len();
            mutate(&mut a[i % n], rest, with);
        }
        _ => *cur = with,
    }
}

/// Damages the bytes of `body`: each edit overwrites, inserts or removes one byte at a position.
fn damage(mut body: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, op, byte) in edits {
        let at = at % (body.len() + 1);
        match op % 3 {
            0 if at < body.len() => body[at] = byte,
            1 => body.insert(at, byte),
            _ if at < body.len() => {
                body.remove(at);
            }
            _ => body.push(byte),
        }
    }
    body
}

/// Valid bodies the mutations start from (each must be accepted as it is, see `the_mutation_bases_are_valid`).
fn valid_goal(name: &str) -> Value {
    json!({"apiVersion": "acv.dev/v1alpha1", "kind": "Goal", "metadata": {"name": name},
        "spec": {"text": "Reduce the P99 latency of Catalogue to under 300 ms.", "deadlineSeconds": 120,
            "objectives": [{"components": ["catalogue"], "metric": "p99_latency_ms", "comparison": "below",
                "threshold": 300.0}]}})
}

fn valid_task() -> Value {
    json!({"to": "catalogue", "text": "Scale replicas to 2 for your microservice component.", "timeout_secs": 60})
}

fn valid_decision() -> Value {
    json!({"by": "carol", "reason": "looks right"})
}

/// A Goal resource whose fields have the right types but random values (names, texts, numbers at their extremes,
/// unknown and known components, metrics and modes), so that validation and the engine see them, not only serde.
fn typed_goal() -> impl Strategy<Value = Value> {
    let component = prop_oneof![
        Just("catalogue".to_owned()),
        Just("front-end".to_owned()),
        "[a-z0-9-]{0,70}",
        ".{0,20}",
    ];
    let objective = (
        prop::collection::vec(component.clone(), 0..4),
        prop_oneof![
            Just("p99_latency_ms".to_owned()),
            Just("cpu_percent_of_limit".to_owned()),
            Just("ready_percent".to_owned()),
            "[a-z_]{0,20}",
        ],
        prop_oneof![Just("below".to_owned()), Just("at_least".to_owned()), ".{0,8}"],
        prop_oneof![any::<f64>(), Just(0.0), Just(-1.0), Just(f64::MAX), Just(1e-300)],
        prop_oneof![Just("each"), Just("total"), Just("average")],
    )
        .prop_map(|(components, metric, comparison, threshold, combine)| {
            json!({"components": components, "metric": metric, "comparison": comparison,
                "threshold": serde_json::Number::from_f64(threshold).map_or(Value::Null, Value::Number),
                "combine": combine})
        });
    (
        prop::option::of(".{0,80}"),
        prop_oneof![
            Just("Reduce the P99 latency of Catalogue to under 300 ms.".to_owned()),
            Just("Reduce each Catalogue and Front-end's average CPU usage to under 30%.".to_owned()),
            ".{0,200}",
        ],
        prop::collection::vec(objective, 0..3),
        prop::option::of(prop_oneof![any::<u64>(), Just(0u64), Just(u64::MAX)]),
        prop::option::of(prop_oneof![
            Just("observe"),
            Just("approve"),
            Just("autonomous"),
            Just("x")
        ]),
        prop::option::of(any::<u32>()),
    )
        .prop_map(|(name, text, objectives, deadline, safety, rounds)| {
            json!({"apiVersion": "acv.dev/v1alpha1", "kind": "Goal", "metadata": {"name": name},
                "spec": {"text": text, "objectives": objectives, "deadlineSeconds": deadline,
                    "safety": safety, "maxRounds": rounds}})
        })
}

/// A task request with the right types and random values.
fn typed_task() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("catalogue".to_owned()), "[a-z0-9-]{0,70}", ".{0,20}"],
        prop_oneof![Just(String::new()), Just("   ".to_owned()), ".{0,300}"],
        prop::option::of(prop_oneof![any::<u64>(), Just(0u64), Just(u64::MAX)]),
    )
        .prop_map(|(to, text, timeout)| json!({"to": to, "text": text, "timeout_secs": timeout}))
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..512)
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6)
}

fn path() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..5)
}

fn goal_name() -> String {
    format!("g-{}", &uuid::Uuid::new_v4().simple().to_string()[..16])
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn goals_random_bytes(body in bytes()) {
        post(&["v1", "goals"], body)?;
    }

    #[test]
    fn goals_random_json(v in any_json()) {
        post(&["v1", "goals"], v.to_string().into_bytes())?;
    }

    #[test]
    fn goals_mutated(path in path(), with in any_json()) {
        let mut v = valid_goal(&goal_name());
        mutate(&mut v, &path, with);
        post(&["v1", "goals"], v.to_string().into_bytes())?;
    }

    #[test]
    fn goals_with_random_values(v in typed_goal()) {
        post(&["v1", "goals"], v.to_string().into_bytes())?;
    }

    #[test]
    fn goals_damaged(edits in edits()) {
        post(&["v1", "goals"], damage(valid_goal(&goal_name()).to_string().into_bytes(), &edits))?;
    }

    #[test]
    fn tasks_random_bytes(body in bytes()) {
        post(&["v1", "tasks"], body)?;
    }

    #[test]
    fn tasks_random_json(v in any_json()) {
        post(&["v1", "tasks"], v.to_string().into_bytes())?;
    }

    #[test]
    fn tasks_mutated(path in path(), with in any_json()) {
        let mut v = valid_task();
        mutate(&mut v, &path, with);
        post(&["v1", "tasks"], v.to_string().into_bytes())?;
    }

    #[test]
    fn tasks_with_random_values(v in typed_task()) {
        post(&["v1", "tasks"], v.to_string().into_bytes())?;
    }

    #[test]
    fn tasks_damaged(edits in edits()) {
        post(&["v1", "tasks"], damage(valid_task().to_string().into_bytes(), &edits))?;
    }

    #[test]
    fn decisions_random_bodies(body in bytes(), v in any_json(), approve in any::<bool>()) {
        let verb = if approve { "approve" } else { "deny" };
        post(&["v1", "approvals", &pending_approval(), verb], body)?;
        post(&["v1", "approvals", &pending_approval(), verb], v.to_string().into_bytes())?;
    }

    #[test]
    fn decisions_mutated_and_damaged(
        path in path(),
        with in any_json(),
        edits in edits(),
        approve in any::<bool>(),
    ) {
        let verb = if approve { "approve" } else { "deny" };
        let mut v = valid_decision();
        mutate(&mut v, &path, with);
        post(&["v1", "approvals", &pending_approval(), verb], v.to_string().into_bytes())?;
        let damaged = damage(valid_decision().to_string().into_bytes(), &edits);
        post(&["v1", "approvals", &pending_approval(), verb], damaged)?;
    }

    #[test]
    fn ids_in_paths(id in ".{1,40}", body in bytes()) {
        post(&["v1", "approvals", &id, "approve"], body.clone())?;
        post(&["v1", "goals", &id, "cancel"], body)?;
    }
}

#[test]
fn the_mutation_bases_are_valid() {
    let goal = post(
        &["v1", "goals"],
        valid_goal(&goal_name()).to_string().into_bytes(),
    )
    .unwrap();
    assert_eq!(goal, 201);
    let task = post(&["v1", "tasks"], valid_task().to_string().into_bytes()).unwrap();
    assert_eq!(task, 201);
    for verb in ["approve", "deny"] {
        let decided = post(
            &["v1", "approvals", &pending_approval(), verb],
            valid_decision().to_string().into_bytes(),
        )
        .unwrap();
        assert_eq!(decided, 200, "{verb}");
    }
}
