//! Task → report round trips per transport on loopback: latency (p50/p99, one exchange at a time) and throughput
//! (exchanges per second with 16 in flight). Prints a table; nothing is asserted.
//!
//! Run: `cargo bench -p acv-bus --bench roundtrip` (needs RabbitMQ and NATS on 127.0.0.1, see README).
//! `ACV_BENCH_N` sets the number of sequential exchanges (default 300).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use acv_bus::{Bus, BusConfig, Transport};
use acv_protocol::{
    Address, Body, ComponentName, Envelope, Mechanism, ReportBody, ReportStatus, TaskBody, TaskSpec,
};
use tokio::sync::{Mutex, oneshot};

const IN_FLIGHT: usize = 16;

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

fn component() -> ComponentName {
    ComponentName::new("catalogue").unwrap_or_else(|e| panic!("{e}"))
}

async fn responder(bus: Arc<dyn Bus>) {
    let me = Address::Component(component());
    let Ok(mut inbox) = bus.subscribe(&me).await else {
        return;
    };
    while let Some(Ok(d)) = inbox.next().await {
        if let Body::Task(task) = &d.envelope.body {
            let report = ReportBody {
                diagnosis: None,
                task_id: task.task_id.clone(),
                component: task.component.clone(),
                status: ReportStatus::Response,
                message: "ok".into(),
                evidence: vec![],
                steps: vec![],
            };
            let reply = Envelope::new(
                uuid::Uuid::new_v4().to_string(),
                me.clone(),
                d.envelope.from.clone(),
                acv_core::now_ms(),
                Body::Report(report),
            )
            .with_correlation(d.envelope.id.clone());
            if bus.publish(&reply).await.is_err() {
                return;
            }
        }
        d.ack().await.ok();
    }
}

async fn collector(bus: Arc<dyn Bus>, me: Address, waiters: Waiters) {
    let Ok(mut inbox) = bus.subscribe(&me).await else {
        return;
    };
    while let Some(Ok(d)) = inbox.next().await {
        if let Some(c) = &d.envelope.correlation_id
            && let Some(tx) = waiters.lock().await.remove(c)
        {
            tx.send(()).ok();
        }
        d.ack().await.ok();
    }
}

async fn exchange(bus: &Arc<dyn Bus>, me: &Address, waiters: &Waiters) -> Duration {
    let id = uuid::Uuid::new_v4().to_string();
    let task = Envelope::new(
        id.clone(),
        me.clone(),
        Address::Component(component()),
        acv_core::now_ms(),
        Body::Task(TaskBody {
            task_id: id.clone(),
            component: component(),
            spec: TaskSpec::Imperative {
                text: "Report your status".into(),
            },
            mechanism: Mechanism::Solo,
        }),
    );
    let (tx, rx) = oneshot::channel();
    waiters.lock().await.insert(id, tx);
    let start = Instant::now();
    if let Err(e) = bus.publish(&task).await {
        panic!("publish failed: {e}");
    }
    if tokio::time::timeout(Duration::from_secs(30), rx).await.is_err() {
        panic!("no report within 30 s");
    }
    start.elapsed()
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

async fn bench(t: Transport, n: usize) -> Option<(f64, f64, f64)> {
    let mut c = BusConfig::default().with_transport(t);
    c.namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    c.inbox_expiry = Some(Duration::from_secs(120));
    let bus = match acv_bus::connect(&c).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{t}: skipped, broker not reachable: {e}");
            return None;
        }
    };
    let me = Address::Client(ComponentName::new("bench").unwrap_or_else(|e| panic!("{e}")));
    let waiters: Waiters = Arc::default();
    let r = tokio::spawn(responder(bus.clone()));
    let col = tokio::spawn(collector(bus.clone(), me.clone(), waiters.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..20 {
        exchange(&bus, &me, &waiters).await; // warm-up
    }
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        lat.push(exchange(&bus, &me, &waiters).await);
    }
    lat.sort();
    let total = n * 2;
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..IN_FLIGHT {
        let (bus, me, waiters) = (bus.clone(), me.clone(), waiters.clone());
        let count = total / IN_FLIGHT + usize::from(w < total % IN_FLIGHT);
        workers.push(tokio::spawn(async move {
            for _ in 0..count {
                exchange(&bus, &me, &waiters).await;
            }
        }));
    }
    for w in workers {
        w.await.ok();
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    r.abort();
    col.abort();
    bus.delete_namespace().await.ok();
    Some((pct(&lat, 0.5), pct(&lat, 0.99), rate))
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("ACV_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    println!(
        "bus round trip (task -> report), {n} sequential exchanges, then {} with {IN_FLIGHT} in flight",
        n * 2
    );
    println!(
        "{:<8} {:>10} {:>10} {:>16}",
        "bus", "p50 ms", "p99 ms", "exchanges/s"
    );
    for t in [Transport::Memory, Transport::Amqp, Transport::Nats] {
        if let Some((p50, p99, rate)) = bench(t, n).await {
            println!("{:<8} {:>10.3} {:>10.3} {:>16.0}", t.as_str(), p50, p99, rate);
        }
    }
}
