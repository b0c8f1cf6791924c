//! Measurements of the local runtime against ground truth: a CPU burner raises the reported CPU % of limit, a
//! memory hog raises memory %, and the P99 from the scraped histogram agrees with the load generator's own P99.
//! The tests take turns (a lock) so they do not disturb each other's CPU and latency figures.

mod common;

use std::time::{Duration, Instant};

use acv_cluster::{Cluster, Fault};
use acv_e2e::load::{self, Call, LoadSpec, Profile};
use common::{assert_p99_agrees, eventually, shop_spec, shutdown_and_check_no_leaks, start};
use tokio::sync::Mutex;

static TURN: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_burner_raises_cpu_and_memory_hog_raises_memory() {
    let _turn = TURN.lock().await;
    // catalogue: 200m CPU, 128 MiB memory.
    let rt = start(shop_spec(&["catalogue"])).await;
    let cat = rt.cluster("catalogue").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cat.metrics(1.5).await.unwrap();
    let idle_cpu = idle.cpu_percent_of_limit.unwrap();
    let idle_mem = idle.memory_percent_of_limit.unwrap();

    // The paper's StressChaos: 2 workers at 50 % = 1 core = 500 % of a 200m limit if the busy 2-core machine
    // gives it; the test asks for a tenth of that (other builds share the machine).
    let id = rt
        .inject(
            "catalogue",
            Fault::CpuStress {
                workers: 2,
                load_percent: 50,
            },
            None,
        )
        .unwrap();
    let stressor = eventually(10, "stressor", || async {
        rt.replicas("catalogue").unwrap()[0]
            .stressor_pids
            .first()
            .copied()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hot = cat.metrics(2.5).await.unwrap();
    let hot_cpu = hot.cpu_percent_of_limit.unwrap();
    println!("cpu % of limit: idle {idle_cpu:.1}, with burner {hot_cpu:.1}");
    assert!(
        hot_cpu >= idle_cpu + 50.0,
        "idle {idle_cpu:.1} % -> with burner {hot_cpu:.1} %"
    );
    assert!(rt.clear_fault("catalogue", id).unwrap());
    eventually(10, "stressor gone", || async {
        rt.replicas("catalogue").unwrap()[0]
            .stressor_pids
            .is_empty()
            .then_some(())
    })
    .await;
    eventually(10, "stressor reaped", || async {
        (!acv_runtime::procfs::is_alive(stressor)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cool = cat.metrics(1.5).await.unwrap().cpu_percent_of_limit.unwrap();
    assert!(
        cool < hot_cpu - 40.0,
        "after clearing: {cool:.1} % (was {hot_cpu:.1} %)"
    );

    // 48 MiB held = 37.5 % of 128 MiB.
    rt.inject(
        "catalogue",
        Fault::MemoryStress { mib: 48 },
        Some(Duration::from_secs(30)),
    )
    .unwrap();
    let mem = eventually(10, "memory up", || async {
        let m = cat.metrics(1.0).await.unwrap().memory_percent_of_limit.unwrap();
        (m >= idle_mem + 30.0).then_some(m)
    })
    .await;
    println!("memory % of limit: idle {idle_mem:.1}, with 48 MiB hog {mem:.1}");
    assert!(mem < 100.0, "{mem}");
    assert_eq!(
        cat.status().await.unwrap().ready_replicas,
        1,
        "48 MiB stays under the limit: no OOM kill"
    );
    shutdown_and_check_no_leaks(rt).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_over_limit_is_oom_killed() {
    let _turn = TURN.lock().await;
    let rt = start(shop_spec(&["user"])).await; // 64 MiB limit
    let user = rt.cluster("user").unwrap();
    rt.inject("user", Fault::MemoryStress { mib: 96 }, None).unwrap();
    eventually(15, "OOM kill", || async {
        let logs = user.logs(100).await.unwrap();
        logs.iter().any(|l| l.contains("OOMKilled")).then_some(())
    })
    .await;
    eventually(10, "restart counted", || async {
        (user.status().await.unwrap().replicas[0].restarts >= 1).then_some(())
    })
    .await;
    rt.clear_faults("user").unwrap();
    rt.wait_ready("user", 1, Duration::from_secs(20)).await.unwrap();
    shutdown_and_check_no_leaks(rt).await;
}

/// Tolerance of the P99 comparison: the histogram P99 is interpolated inside a bucket (buckets are 10–15 ms wide
/// around 60 ms) and the load generator also sees the front and its own scheduling, so they must agree within 25 %
/// of the load generator's P99 or 10 ms, whichever is larger.
const P99_REL_TOL: f64 = 0.25;
const P99_ABS_TOL_MS: f64 = 10.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_p99_agrees_with_load_generator() {
    let _turn = TURN.lock().await;
    let mut spec = shop_spec(&common::ALL);
    // A catalogue with a wide latency spread: 20 ms + up to 40 ms, so P99 is well inside the bucket range.
    let cat = spec
        .services
        .iter_mut()
        .find(|s| s.name.as_str() == "catalogue")
        .unwrap();
    cat.env.insert("SHOP_DELAY_MS".into(), "20".into());
    cat.env.insert("SHOP_JITTER_MS".into(), "40".into());
    let rt = start(spec).await;
    let fe = rt.cluster("front-end").unwrap();

    let t0 = Instant::now();
    let report = load::run(&LoadSpec {
        target: rt.addr("front-end").unwrap(),
        calls: vec![Call::get("/catalogue")],
        profile: Profile::Constant { rps: 40.0, secs: 6.0 },
        max_in_flight: 200,
        timeout: Duration::from_secs(5),
    })
    .await
    .unwrap();
    assert_eq!((report.sent, report.ok), (240, 240), "{report:?}");
    let m = fe.metrics(t0.elapsed().as_secs_f64() + 1.0).await.unwrap();
    let (ours, theirs) = (m.p99_ms.unwrap(), report.p99_ms.unwrap());
    let tol = (P99_REL_TOL * theirs).max(P99_ABS_TOL_MS);
    println!(
        "p99: metrics {ours:.1} ms, load generator {theirs:.1} ms (tolerance {tol:.1} ms); p50 {:.1} vs {:.1}; rate {:.1}/s",
        m.p50_ms.unwrap(),
        report.p50_ms.unwrap(),
        m.request_rate.unwrap()
    );
    assert_p99_agrees("metrics", ours, &report, tol);
    // Every request is in the window: the rate times the window is the request count.
    let counted = m.request_rate.unwrap() * m.window_secs;
    assert!(
        (counted - 240.0).abs() < 1.0,
        "histogram counted {counted:.1} requests, 240 sent"
    );
    assert_eq!(m.error_rate_percent, Some(0.0));
    shutdown_and_check_no_leaks(rt).await;
}
