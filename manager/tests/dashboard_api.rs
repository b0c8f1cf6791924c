//! The dashboard's routes against an in-process manager (engine + router on 127.0.0.1:0, a token) with a fake
//! sidecar on the memory bus and a fake measured world: the page and its assets without the token, the SLO series
//! sampled through the engine's measurer, the event stream, and clear errors. The page itself is driven in headless
//! Chromium by `e2e/tests/dashboard.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use acv_bus::{Bus, memory::MemoryBus};
use acv_manager::dashboard::{ComponentSeries, SeriesIndex};
use acv_manager::engine::Engine;
use acv_manager::store::{SqlStore, Store};
use acv_protocol::SloMetric;
use common::{Behaviour, World, c, fake_sidecar, test_config, wait_until};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "dash-s3cret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_series_and_events() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let world = World::new();
    world.set("catalogue", SloMetric::P99LatencyMs, 800.0);
    world.set("catalogue", SloMetric::CpuPercentOfLimit, 42.0);
    let stop = CancellationToken::new();
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&common::temp_dir()).await.unwrap());
    let engine = Engine::new(
        store,
        bus.clone(),
        Arc::default(),
        world.measurer(),
        test_config(),
    );
    tokio::spawn(engine.clone().run(stop.clone()));
    tokio::spawn(fake_sidecar(
        bus,
        world.clone(),
        "catalogue".into(),
        Behaviour::Fix,
        stop.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = acv_manager::api::router(engine.clone(), Some(TOKEN.into()));
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{url}{path}"));

    // The page and its assets need no token; they hold no data.
    let r = get("/").send().await.unwrap();
    assert_eq!(r.status(), 200, "/ leads to the page");
    assert!(r.text().await.unwrap().contains("acv dashboard"));
    let r = get("/dashboard/assets/uPlot.iife.min.js").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let r = get("/dashboard/assets/nope.js").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["message"], "no dashboard asset \"nope.js\"");

    // The data does.
    assert_eq!(get("/v1/series").send().await.unwrap().status(), 401);
    assert_eq!(get("/v1/dashboard/events").send().await.unwrap().status(), 401);

    // The sampler measures every registered component through the engine's measurer.
    let e = engine.clone();
    wait_until("the sidecar registered", || {
        let e = e.clone();
        async move { e.registry().read().await.known().contains(&c("catalogue")) }
    })
    .await;
    let index = loop {
        let index: SeriesIndex = get("/v1/series")
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !index.components.is_empty() {
            break index;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(index.components, vec![c("catalogue")]);
    assert!(index.mutating_calls.iter().any(|m| m == "scale"));
    let series: ComponentSeries = get("/v1/series?component=catalogue")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = series.samples.last().expect("a sample");
    assert_eq!(last.p99_ms, Some(800.0));
    assert_eq!(last.cpu_percent, Some(42.0));
    assert_eq!(series.interval_ms, index.interval_ms);

    // Clear errors.
    let r = get("/v1/series?component=carts")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body = r.text().await.unwrap();
    assert!(body.contains("sampled: catalogue"), "{body}");
    let r = get("/v1/series?component=Not%20A%20Name")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The event stream pushes new samples (and refreshes) with the token.
    world.set("catalogue", SloMetric::P99LatencyMs, 120.0);
    let mut sse = get("/v1/dashboard/events")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    let mut seen = String::new();
    let got = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = sse.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: refresh") && seen.contains("\"p99_ms\":120.0") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(got, Ok(true), "the stream did not push a new sample: {seen}");
    stop.cancel();
}
