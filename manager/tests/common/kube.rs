//! Pieces of the Kubernetes wiring tests (`k8s*.rs`): `serve`'s Kubernetes flags as the binary parses them, a
//! kube client over a tower-test mocked API server, and an engine with a fake `catalogue` sidecar.

use std::sync::Arc;

use acv_bus::{Bus, memory::MemoryBus};
use acv_manager::engine::Engine;
use acv_manager::k8s::K8sArgs;
use acv_manager::store::{SqlStore, Store};
use acv_protocol::SloMetric;
use clap::Parser;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_test::mock::Handle;

use super::{Behaviour, World, c, fake_sidecar, test_config, wait_until};

/// `acv-manager serve`'s Kubernetes flags, parsed as the binary parses them.
#[derive(Debug, Parser)]
pub struct Flags {
    #[command(flatten)]
    pub k8s: K8sArgs,
}

pub fn flags(args: &[&str]) -> Result<K8sArgs, clap::Error> {
    Flags::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|f| f.k8s)
}

/// An API server's JSON answer.
pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// The `Status` body of a 404.
pub fn not_found(what: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure", "message": format!("{what} not found"),
            "reason": "NotFound", "code": 404 })
}

/// A kube client over a mocked API server, and the handle that plays the server.
pub fn mocked_client() -> (kube::Client, Handle<Request<Body>, Response<Body>>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// An engine running, with what the tests look at.
pub struct Manager {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn Store>,
    pub world: Arc<World>,
    pub shutdown: CancellationToken,
    pub engine_task: tokio::task::JoinHandle<Result<(), acv_bus::BusError>>,
}

/// An engine with a fake `catalogue` sidecar on the memory bus that fixes what it is asked to, in a world where
/// catalogue's P99 is 300 ms.
pub async fn manager() -> Manager {
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
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&super::temp_dir()).await.unwrap());
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
