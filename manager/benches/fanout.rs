//! The manager's fan-out: one goal over N simulated sidecars (bus clients in this process, default 1,000) on NATS
//! and on RabbitMQ — time from `create` to every subtask delivered (p50/p99 over the goals, and per subtask) — and
//! the API's goal reads per second. Prints figures; nothing is asserted.
//!
//! Run: `cargo bench -p acv-manager --bench fanout` (needs RabbitMQ and NATS on 127.0.0.1).
//! `ACV_BENCH_SIDECARS` (default 1000), `ACV_BENCH_GOALS` goals per transport (default 5),
//! `ACV_BENCH_TRANSPORTS` (default `nats,amqp`), `ACV_BENCH_TIMEOUT_SECS` per transport (default 300): a transport
//! that does not finish in time is reported as such and the bench goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use acv_bus::{Bus, BusConfig, Transport};
use acv_manager::engine::{Engine, EngineConfig};
use acv_manager::measure::Measurer;
use acv_manager::store::{SqlStore, Store};
use acv_protocol::{
    Address, Body, Combine, Comparison, ComponentName, Envelope, GoalObjective, GoalResource, GoalSpec,
    Measurement, MetricsSnapshot, Registration, SloMetric,
};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Every component measures a P99 of 1 s, so every subtask is needed.
struct Slow;

#[async_trait::async_trait]
impl Measurer for Slow {
    async fn measure(&self, components: &[ComponentName]) -> Vec<(ComponentName, Measurement)> {
        components
            .iter()
            .map(|c| {
                let m = MetricsSnapshot {
                    component: c.clone(),
                    window_secs: 10.0,
                    cpu_percent_of_limit: Some(10.0),
                    memory_percent_of_limit: Some(10.0),
                    request_rate: Some(1.0),
                    p50_ms: Some(500.0),
                    p99_ms: Some(1000.0),
                    error_rate_percent: Some(0.0),
                    calls: Vec::new(),
                };
                (
                    c.clone(),
                    Measurement {
                        metrics: Some(m),
                        status: None,
                    },
                )
            })
            .collect()
    }
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Delivered {
    count: AtomicUsize,
    at: Mutex<Vec<Instant>>,
}

/// Announces a simulated sidecar on the broadcast (again when the manager missed it: on RabbitMQ a broadcast sent
/// before the manager's queue is bound reaches nobody).
async fn register(bus: &dyn Bus, name: ComponentName) -> anyhow::Result<()> {
    let reg = Registration {
        component: name.clone(),
        peer_url: None,
        planner: "sim".into(),
        version: "bench".into(),
        safety: None,
    };
    bus.publish(&Envelope::new(
        uuid::Uuid::new_v4().to_string(),
        Address::Component(name),
        Address::Broadcast,
        acv_core::now_ms(),
        Body::Register(reg),
    ))
    .await?;
    Ok(())
}

async fn sim_sidecar(
    bus: Arc<dyn Bus>,
    name: ComponentName,
    delivered: Arc<Delivered>,
) -> anyhow::Result<()> {
    let me = Address::Component(name.clone());
    let mut inbox = bus.subscribe(&me).await?;
    register(&*bus, name).await?;
    tokio::spawn(async move {
        while let Some(Ok(d)) = inbox.next().await {
            if matches!(d.envelope.body, Body::Task(_)) {
                delivered.at.lock().await.push(Instant::now());
                delivered.count.fetch_add(1, Ordering::SeqCst);
            }
            if d.ack().await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// One transport: the measurement bounded by `limit`, then the bench's namespace and store are removed whatever
/// happened (a thousand queues must not be left on a shared broker).
async fn run(transport: Transport, sidecars: usize, goals: usize, limit: Duration) -> anyhow::Result<()> {
    let mut config = BusConfig::default().with_transport(transport);
    config.namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let bus = acv_bus::connect(&config).await?;
    let dir = std::env::temp_dir().join(format!("acv-bench-{}", config.namespace));
    let shutdown = CancellationToken::new();
    let outcome = tokio::time::timeout(
        limit,
        measure(transport, bus.clone(), &dir, shutdown.clone(), sidecars, goals),
    )
    .await;
    shutdown.cancel();
    if let Err(e) = bus.delete_namespace().await {
        eprintln!("warning: deleting the bench namespace: {e}");
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("warning: removing {}: {e}", dir.display());
    }
    match outcome {
        Ok(r) => r,
        Err(_) => anyhow::bail!(
            "did not finish within {} s (ACV_BENCH_TIMEOUT_SECS)",
            limit.as_secs()
        ),
    }
}

async fn measure(
    transport: Transport,
    bus: Arc<dyn Bus>,
    dir: &std::path::Path,
    shutdown: CancellationToken,
    sidecars: usize,
    goals: usize,
) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(dir).await?);
    let engine_config = EngineConfig {
        liveness: Duration::from_secs(3600),
        tick: Duration::from_millis(20),
        subtask_timeout: Duration::from_secs(600),
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        store.clone(),
        bus.clone(),
        Arc::default(),
        Arc::new(Slow),
        engine_config,
    );
    tokio::spawn(engine.clone().run(shutdown.clone()));
    let delivered = Arc::new(Delivered {
        count: AtomicUsize::new(0),
        at: Mutex::new(Vec::new()),
    });
    let names: Vec<ComponentName> = (0..sidecars)
        .map(|i| ComponentName::new(format!("sim-{i:04}")))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for (i, n) in names.iter().enumerate() {
        sim_sidecar(bus.clone(), n.clone(), delivered.clone()).await?;
        if (i + 1) % 200 == 0 {
            eprintln!(
                "{:<6} {} sidecars subscribed after {:.1}s",
                transport.as_str(),
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut announced = Instant::now();
    loop {
        let known = engine.registry().read().await.known();
        if known.len() >= sidecars {
            break;
        }
        if announced.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "{:<6} {} of {sidecars} sidecars known after {:.1}s",
                transport.as_str(),
                known.len(),
                started.elapsed().as_secs_f64()
            );
        }
        if announced.elapsed() > Duration::from_secs(2) {
            for n in names.iter().filter(|n| !known.contains(n)) {
                register(&*bus, n.clone()).await?;
            }
            announced = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "sidecars did not register in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let setup = started.elapsed();
    let mut all_delivered = Vec::new();
    let mut per_subtask = Vec::new();
    for g in 0..goals {
        delivered.count.store(0, Ordering::SeqCst);
        delivered.at.lock().await.clear();
        let spec = GoalSpec {
            objectives: vec![GoalObjective {
                components: names.clone(),
                metric: SloMetric::P99LatencyMs,
                comparison: Comparison::Below,
                threshold: 100.0,
                combine: Combine::Each,
            }],
            ..GoalSpec::default()
        };
        let t0 = Instant::now();
        let goal = engine
            .create(GoalResource::new(Some(format!("fanout-{g}")), spec))
            .await?;
        while delivered.count.load(Ordering::SeqCst) < sidecars {
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(300),
                "subtasks not delivered in 300 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        all_delivered.push(t0.elapsed().as_secs_f64() * 1000.0);
        per_subtask.extend(
            delivered
                .at
                .lock()
                .await
                .iter()
                .map(|t| t.duration_since(t0).as_secs_f64() * 1000.0),
        );
        engine.cancel(&goal.id).await?;
    }
    all_delivered.sort_by(f64::total_cmp);
    per_subtask.sort_by(f64::total_cmp);
    println!(
        "{:<6} {sidecars:>5} sidecars (setup {:.1}s), {goals} goals: create→all delivered p50 {:.0} ms p99 {:.0} ms; \
         per subtask p50 {:.0} ms p99 {:.0} ms",
        transport.as_str(),
        setup.as_secs_f64(),
        pct(&all_delivered, 0.5),
        pct(&all_delivered, 0.99),
        pct(&per_subtask, 0.5),
        pct(&per_subtask, 0.99),
    );

    // API goal reads: a small goal, read by 16 concurrent clients for 3 s.
    if transport == Transport::Nats {
        api_reads(engine.clone(), &names[0]).await?;
    }
    Ok(())
}

async fn api_reads(engine: Arc<Engine>, component: &ComponentName) -> anyhow::Result<()> {
    let spec = GoalSpec {
        text: format!("Reduce the P99 latency of {component} to under 100 ms."),
        ..GoalSpec::default()
    };
    let goal = engine
        .create(GoalResource::new(Some("read-me".into()), spec))
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = acv_manager::api::router(engine.clone(), None);
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/goals/{}", goal.id);
    let n = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(3);
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (http, url, n, errors) = (http.clone(), url.clone(), n.clone(), errors.clone());
        clients.push(tokio::spawn(async move {
            while Instant::now() < until {
                let ok = match http.get(&url).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let counter = if ok { &n } else { &errors };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for c in clients {
        c.await?;
    }
    println!(
        "api    GET /v1/goals/{{id}} (SQLite store, 16 clients, 3 s): {:.0} requests/s, {} errors",
        n.load(Ordering::Relaxed) as f64 / 3.0,
        errors.load(Ordering::Relaxed)
    );
    server.abort();
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let sidecars = env_usize("ACV_BENCH_SIDECARS", 1000);
    let goals = env_usize("ACV_BENCH_GOALS", 5);
    let transports = std::env::var("ACV_BENCH_TRANSPORTS").unwrap_or_else(|_| "nats,amqp".into());
    let limit = Duration::from_secs(env_usize("ACV_BENCH_TIMEOUT_SECS", 300) as u64);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        println!("manager fan-out (one goal over N simulated sidecars in one process; SQLite store)");
        for t in transports.split(',') {
            let transport: Transport = t.trim().parse().map_err(anyhow::Error::msg)?;
            if let Err(e) = run(transport, sidecars, goals, limit).await {
                println!("{:<6} failed: {e:#}", transport.as_str());
            }
        }
        Ok(())
    })
}
