//! A service without a Prometheus `/metrics` of its own — a plain `python3 -m http.server`, as a newcomer would try
//! first — still gets a request rate, latency and error rate under the local runtime: the front times every request
//! it answers. Checked against the load generator's own measurement, without and with an added-latency fault. Also:
//! a metrics window asked for right after start covers at least one sample interval, never "the last 0 s".

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use acv_cluster::{Cluster, Fault};
use acv_e2e::load::{self, Call, LoadReport, LoadSpec, Profile};
use acv_protocol::MetricsSnapshot;
use acv_runtime::{LocalRuntime, RuntimeSpec};
use common::{assert_p99_agrees, shutdown_and_check_no_leaks};

/// Sample interval of the test runtime.
const SAMPLE_MS: u64 = 500;
/// P99 tolerance, as in `metrics_under_load.rs`: the histogram P99 is interpolated inside a bucket and the load
/// generator also sees its own scheduling, so they must agree within 25 % of its P99 or 10 ms, whichever is larger.
const P99_REL_TOL: f64 = 0.25;
const P99_ABS_TOL_MS: f64 = 10.0;

fn web_spec(dir: &std::path::Path) -> RuntimeSpec {
    let yaml = format!(
        r#"
settings: {{ probe_interval_ms: 100, sample_interval_ms: {SAMPLE_MS}, startup_grace_ms: 5000 }}
services:
  - name: web
    command: ["python3", "-m", "http.server", "${{PORT}}", "--bind", "127.0.0.1", "--directory", "{}"]
    health_path: /
    limits: {{ cpu_millis: 500, memory_mib: 256 }}
"#,
        dir.display()
    );
    RuntimeSpec::parse(&yaml, &BTreeMap::new()).expect("the runtime file parses")
}

async fn load(rt: &LocalRuntime, secs: f64) -> LoadReport {
    load::run(&LoadSpec {
        target: rt.addr("web").unwrap(),
        calls: vec![Call::get("/index.html")],
        profile: Profile::Constant { rps: 30.0, secs },
        max_in_flight: 100,
        timeout: Duration::from_secs(5),
    })
    .await
    .unwrap()
}

/// The runtime's figures over the load that started at `t0` agree with the load generator's.
fn check(what: &str, m: &MetricsSnapshot, report: &LoadReport) {
    let (ours, theirs) = (m.p99_ms.unwrap(), report.p99_ms.unwrap());
    let tol = (P99_REL_TOL * theirs).max(P99_ABS_TOL_MS);
    let counted = m.request_rate.unwrap() * m.window_secs;
    println!(
        "{what}: p99 runtime {ours:.1} ms vs load generator {theirs:.1} ms (tolerance {tol:.1}); p50 {:.1} vs {:.1}; \
         {counted:.1} requests counted over {:.2} s, {} sent",
        m.p50_ms.unwrap(),
        report.p50_ms.unwrap(),
        m.window_secs,
        report.sent
    );
    assert_p99_agrees(what, ours, report, tol);
    #[allow(clippy::cast_precision_loss)]
    let sent = report.sent as f64;
    assert!(
        (counted - sent).abs() < 1.0,
        "{what}: the front counted {counted:.1} requests, {sent} were sent"
    );
    assert_eq!(m.error_rate_percent, Some(0.0), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_server_gets_rate_and_latency_from_the_front() {
    let dir = std::env::temp_dir().join(format!("acv-front-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>hello</h1>\n").unwrap();

    let rt = LocalRuntime::start(web_spec(&dir)).await.unwrap();
    let web = rt.cluster("web").unwrap();
    // Right after start: the window covers at least one sample interval, not the moments since start.
    let first = web.metrics(60.0).await.unwrap();
    #[allow(clippy::cast_precision_loss)]
    let least = SAMPLE_MS as f64 / 1000.0;
    assert!(
        first.window_secs >= least,
        "a window of {:.3} s right after start",
        first.window_secs
    );
    rt.wait_ready("web", 1, Duration::from_secs(30)).await.unwrap();

    // Phase 1: plain load.
    tokio::time::sleep(Duration::from_millis(2 * SAMPLE_MS)).await;
    let t0 = Instant::now();
    let report = load(&rt, 5.0).await;
    assert_eq!(report.ok, report.sent, "{report:?}");
    let m = web.metrics(t0.elapsed().as_secs_f64() + 0.5).await.unwrap();
    check("plain", &m, &report);
    assert!(m.cpu_percent_of_limit.is_some() && m.memory_percent_of_limit.is_some());

    // Phase 2: 40 ms added by the front (the latency fault): both sides see it.
    rt.inject("web", Fault::Latency { ms: 40 }, None).unwrap();
    tokio::time::sleep(Duration::from_millis(3 * SAMPLE_MS)).await;
    let t0 = Instant::now();
    let report = load(&rt, 5.0).await;
    assert_eq!(report.ok, report.sent, "{report:?}");
    let m = web.metrics(t0.elapsed().as_secs_f64() + 0.5).await.unwrap();
    check("with 40 ms added", &m, &report);
    assert!(m.p50_ms.unwrap() >= 40.0, "{m:?}");

    shutdown_and_check_no_leaks(rt).await;
    std::fs::remove_dir_all(&dir).ok();
}
