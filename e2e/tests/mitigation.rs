//! The paper's faults against the real shop catalogue (processes on the local runtime), under load, measured from
//! outside by the test (never read from the agent's report):
//! 1. without an agent the fault violates the SLOs (the test sees it, then clears the fault);
//! 2. with a watching sidecar (rules planner, sandbox) the same fault, with a duration, is detected and the SLOs
//!    hold again before the fault ends; replicas and limits are back at the baseline (1 replica, 200m / 128 MiB)
//!    within a stated time after it ends; the report carries the diagnosis with the expected cause.
//!
//! Faults are shorter than the paper's 120 s to fit a shared 2-core machine; each test is bounded (≈ 1 min).
//! Times (detect, restore) are printed, not asserted against wall-clock figures.

mod common;

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, memory::MemoryBus};
use acv_cluster::{Cluster, Fault, Selector};
use acv_e2e::load::{Call, LoadSpec, Profile};
use acv_protocol::{
    Address, Body, ComponentName, Measurement, ReportBody, ResourceLimits, RootCause, SloPolicy, check_health,
};
use acv_runtime::LocalRuntime;
use acv_sandbox::SafetyMode;
use acv_sidecar::{Agent, handler::PlanningHandler, watch::Watcher};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const BASELINE: ResourceLimits = ResourceLimits {
    cpu_millis: 200,
    memory_mib: 128,
};
/// Metrics window of the test's own SLO check (s).
const WINDOW: f64 = 3.0;
/// Top of the rising-traffic test. The paper's `increase` ends at 100 req/s, which puts one catalogue replica at
/// only 53–60 % of its CPU limit here (docs/local-runtime.md): so close to the 50 % objective that both the agent's
/// and the test's checks flicker around it (a CI run saw neither act nor recover). 130 req/s (≈ 75 %) is decisive.
const PEAK_RPS: f64 = 130.0;
/// Replicas and limits must be back at the baseline this long after the fault ends.
const BACK_WITHIN: Duration = Duration::from_secs(30);

fn catalogue() -> ComponentName {
    ComponentName::new("catalogue").unwrap()
}

/// One fault at a time: each test runs the catalogue under load, and a CPU stress would disturb the others.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Rig {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    runtime: LocalRuntime,
    cluster: Arc<dyn Cluster>,
    load: tokio::task::JoinHandle<()>,
}

/// The catalogue alone, with `rps` requests/s at its front for `secs`.
async fn rig(rps: f64, secs: f64) -> Rig {
    let turn = TURN.lock().await;
    let runtime = common::start(common::shop_spec(&["catalogue"])).await;
    let cluster: Arc<dyn Cluster> = Arc::new(runtime.cluster("catalogue").unwrap());
    let load = spawn_load(&runtime, Profile::Constant { rps, secs });
    Rig {
        _turn: turn,
        runtime,
        cluster,
        load,
    }
}

/// Sends `profile` at the catalogue's front in the background.
fn spawn_load(runtime: &LocalRuntime, profile: Profile) -> tokio::task::JoinHandle<()> {
    let spec = LoadSpec {
        target: runtime.addr("catalogue").unwrap(),
        calls: vec![Call::get("/catalogue")],
        profile,
        max_in_flight: 200,
        timeout: Duration::from_secs(5),
    };
    tokio::spawn(async move {
        let r = acv_e2e::load::run(&spec).await.unwrap();
        eprintln!("load: {r:?}");
    })
}

/// The test's own SLO check (the paper's: ready, CPU and memory under 50% of limit, P99 under 200 ms).
async fn slo_broken(cluster: &Arc<dyn Cluster>) -> Vec<String> {
    let status = cluster.status().await.ok();
    let metrics = cluster.metrics(WINDOW).await.ok();
    let m = Measurement { metrics, status };
    let objectives = SloPolicy::default().objectives(&catalogue());
    check_health(&objectives, &[(catalogue(), m)])
        .iter()
        .map(acv_protocol::describe_violation)
        .collect()
}

/// Polls the SLOs every 500 ms until `pred(broken)` holds `times` checks in a row, or `max` passes.
async fn until(
    cluster: &Arc<dyn Cluster>,
    max: Duration,
    times: u32,
    pred: impl Fn(&[String]) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    let mut streak = 0;
    let mut first = None;
    while start.elapsed() < max {
        let broken = slo_broken(cluster).await;
        if pred(&broken) {
            first.get_or_insert(start.elapsed());
            streak += 1;
            if streak >= times {
                return first;
            }
        } else {
            streak = 0;
            first = None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

struct Sidecar {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), acv_bus::BusError>>,
    manager: acv_bus::Subscription,
}

async fn sidecar(cluster: Arc<dyn Cluster>) -> Sidecar {
    // The sidecar's own log (its decisions, the guard's verdicts) when asked for: ACV_TEST_LOG=1.
    if std::env::var_os("ACV_TEST_LOG").is_some() {
        let _already = acv_telemetry::init_tracing(acv_telemetry::LogFormat::Text);
    }
    let handler = PlanningHandler {
        settle: Duration::from_millis(1500),
        ..common::rules_handler(
            cluster.clone(),
            SafetyMode::Autonomous,
            acv_sidecar::audit::AuditLog::disabled(),
        )
    };
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let manager = bus.subscribe(&Address::Manager).await.unwrap();
    let agent = Agent::new(catalogue(), bus, Arc::new(handler), Duration::from_secs(60))
        .with_watcher(
            Watcher::new(cluster, SloPolicy::default(), WINDOW),
            Duration::from_secs(1),
        )
        .with_confirm_checks(2)
        .with_quiet_period(Duration::from_secs(5));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.start(shutdown.clone()).await.unwrap());
    Sidecar {
        shutdown,
        task,
        manager,
    }
}

impl Sidecar {
    /// Every message that reached the manager so far.
    async fn drain(&mut self) -> Vec<acv_protocol::Envelope> {
        let mut out = Vec::new();
        while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(50), self.manager.next()).await
        {
            out.push(d.envelope.clone());
            d.ack().await.ok();
        }
        out
    }

    /// Every message that reached the manager, waiting up to `max` for the episode's first report (the fix shows
    /// in the measurements before the agent's own re-check has finished).
    async fn drain_until_report(&mut self, max: Duration) -> Vec<acv_protocol::Envelope> {
        let deadline = Instant::now() + max;
        let mut out = Vec::new();
        while !out
            .iter()
            .any(|e: &acv_protocol::Envelope| matches!(e.body, Body::Report(_)))
        {
            match tokio::time::timeout_at(deadline, self.manager.next()).await {
                Ok(Some(Ok(d))) => {
                    out.push(d.envelope.clone());
                    d.ack().await.ok();
                }
                _ => break,
            }
        }
        out.extend(self.drain().await);
        out
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

/// Injects `fault` for `secs`, in every pod; returns when it was injected.
fn inject(rig: &Rig, fault: Fault, secs: u64) -> Instant {
    rig.runtime
        .inject_selected("catalogue", fault, Selector::ALL, Some(Duration::from_secs(secs)))
        .unwrap();
    Instant::now()
}

/// Prints the times `make bench` collects: time-to-detect (injection → the agent's first ISSUE to the manager)
/// and time-to-mitigate (injection → the SLOs hold again, as measured by the test).
fn print_times(name: &str, at_ms: u64, to_manager: &[acv_protocol::Envelope], restored: Duration) {
    let detect = to_manager
        .iter()
        .find(|e| matches!(e.body, Body::Issue(_)))
        .map(|e| e.sent_at_ms.saturating_sub(at_ms) as f64 / 1000.0);
    let detect = detect.map_or("none".to_owned(), |d| format!("{d:.1} s"));
    eprintln!(
        "MITIGATION {name}: time-to-detect {detect}, time-to-mitigate {:.1} s",
        restored.as_secs_f64()
    );
}

fn reports(to_manager: &[acv_protocol::Envelope]) -> Vec<ReportBody> {
    to_manager
        .iter()
        .filter_map(|e| match &e.body {
            Body::Report(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Phase 1: with no agent, `fault` breaks the SLOs (seen within 15 s); then it is cleared and the service
/// recovers by itself before phase 2.
async fn violates_without_agent(rig: &Rig, fault: Fault) {
    inject(rig, fault, 20);
    let seen = until(&rig.cluster, Duration::from_secs(15), 2, |b| !b.is_empty()).await;
    assert!(
        seen.is_some(),
        "without an agent {fault:?} did not violate the SLOs"
    );
    eprintln!(
        "no agent: {fault:?} violates after {seen:?}: {:?}",
        slo_broken(&rig.cluster).await
    );
    rig.runtime.clear_faults("catalogue").unwrap();
    let healthy = until(&rig.cluster, Duration::from_secs(30), 2, <[String]>::is_empty).await;
    assert!(healthy.is_some(), "not healthy again after clearing {fault:?}");
}

/// Phase 2: with the agent, `fault` for `secs` is detected and mitigated before it ends; the capacity is back at
/// the baseline within [`BACK_WITHIN`] of its end. Returns the reports.
async fn agent_restores_before_the_fault_ends(
    rig: &Rig,
    name: &str,
    fault: Fault,
    secs: u64,
    cause: RootCause,
) {
    let mut car = sidecar(rig.cluster.clone()).await;
    // Healthy checks first, so the watcher has a baseline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let at_ms = acv_core::now_ms();
    let at = inject(rig, fault, secs);
    let detected = until(&rig.cluster, Duration::from_secs(secs), 1, |b| !b.is_empty()).await;
    let t0 = at.elapsed();
    let restored = until(&rig.cluster, Duration::from_secs(secs), 3, <[String]>::is_empty).await;
    let ends = at + Duration::from_secs(secs);
    eprintln!(
        "agent: {fault:?} ({secs} s): violation seen after {detected:?}, SLOs hold again {restored:?} after that"
    );
    assert!(restored.is_some(), "{fault:?}: SLOs never held again");
    assert!(
        Instant::now() < ends,
        "{fault:?}: the SLOs did not hold again before the fault ended"
    );
    let to_manager = car.drain_until_report(Duration::from_secs(30)).await;
    print_times(name, at_ms, &to_manager, t0 + restored.unwrap_or_default());
    let reports = reports(&to_manager);
    let diagnosed: Vec<_> = reports.iter().filter_map(|r| r.diagnosis.as_ref()).collect();
    assert!(
        diagnosed.iter().any(|d| d.cause == cause),
        "{fault:?}: expected a {cause} diagnosis: {reports:#?}"
    );
    // Back to the baseline within BACK_WITHIN after the fault's end.
    tokio::time::sleep_until(ends).await;
    common::eventually(BACK_WITHIN.as_secs(), "capacity back at the baseline", || async {
        let s = rig.cluster.status().await.ok()?;
        (s.desired_replicas == 1 && s.ready_replicas == 1 && s.limits == BASELINE).then_some(())
    })
    .await;
    assert!(
        slo_broken(&rig.cluster).await.is_empty(),
        "healthy after the fault"
    );
    car.stop().await;
}

async fn finish(rig: Rig) {
    let Rig {
        _turn, runtime, load, ..
    } = rig;
    load.abort();
    common::shutdown_and_check_no_leaks(runtime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_stress_is_replaced_not_scaled() {
    let rig = rig(20.0, 120.0).await;
    let stress = Fault::CpuStress {
        workers: 2,
        load_percent: 50,
    };
    violates_without_agent(&rig, stress).await;
    agent_restores_before_the_fault_ends(&rig, "cpu-stress", stress, 40, RootCause::CpuSaturation).await;
    finish(rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_is_replaced() {
    let rig = rig(20.0, 120.0).await;
    violates_without_agent(&rig, Fault::PodFailure).await;
    agent_restores_before_the_fault_ends(&rig, "pod-failure", Fault::PodFailure, 40, RootCause::BadReplicas)
        .await;
    finish(rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_is_replaced() {
    let rig = rig(20.0, 120.0).await;
    let hog = Fault::MemoryStress { mib: 96 };
    violates_without_agent(&rig, hog).await;
    agent_restores_before_the_fault_ends(&rig, "memory-hog", hog, 40, RootCause::MemoryPressure).await;
    finish(rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_release_is_rolled_back() {
    let rig = rig(20.0, 120.0).await;
    let good = rig.cluster.status().await.unwrap().image;
    let bad = "weaveworksdemos/catalogue:slow";
    // No agent: the slow build (+300 ms per request) breaks the P99 objective; a person rolls back.
    rig.cluster.set_image(bad).await.unwrap();
    let seen = until(&rig.cluster, Duration::from_secs(15), 2, |b| !b.is_empty()).await;
    assert!(
        seen.is_some(),
        "without an agent the bad release did not violate the SLOs"
    );
    rig.cluster.rollback().await.unwrap();
    assert!(
        until(&rig.cluster, Duration::from_secs(30), 2, <[String]>::is_empty)
            .await
            .is_some()
    );

    let mut car = sidecar(rig.cluster.clone()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let at = Instant::now();
    let at_ms = acv_core::now_ms();
    rig.cluster.set_image(bad).await.unwrap();
    let detected = until(&rig.cluster, Duration::from_secs(40), 1, |b| !b.is_empty()).await;
    let t0 = at.elapsed();
    let restored = until(&rig.cluster, Duration::from_secs(40), 3, <[String]>::is_empty).await;
    eprintln!(
        "agent: bad release: violation seen after {detected:?}, SLOs hold again {restored:?} after that ({:?} after \
         the release)",
        at.elapsed()
    );
    assert!(restored.is_some(), "SLOs never held again");
    let to_manager = car.drain_until_report(Duration::from_secs(30)).await;
    print_times(
        "bad-release",
        at_ms,
        &to_manager,
        t0 + restored.unwrap_or_default(),
    );
    let s = rig.cluster.status().await.unwrap();
    assert_eq!(s.image, good, "rolled back to the good build");
    assert_eq!((s.desired_replicas, s.limits), (1, BASELINE));
    let reports = reports(&to_manager);
    assert!(
        reports.iter().any(|r| r
            .diagnosis
            .as_ref()
            .is_some_and(|d| d.cause == RootCause::BadRelease)),
        "{reports:#?}"
    );
    car.stop().await;
    finish(rig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rising_traffic_is_met_with_proportional_replicas_given_back_afterwards() {
    // A trickle keeps the service measured between the phases.
    let rig = rig(2.0, 240.0).await;
    // No agent: PEAK_RPS requests/s put the one replica well over 50% of its CPU limit.
    let burst = spawn_load(
        &rig.runtime,
        Profile::Constant {
            rps: PEAK_RPS,
            secs: 15.0,
        },
    );
    let seen = until(&rig.cluster, Duration::from_secs(15), 2, |b| !b.is_empty()).await;
    assert!(
        seen.is_some(),
        "without an agent {PEAK_RPS} req/s did not violate the SLOs"
    );
    eprintln!(
        "no agent: {PEAK_RPS} req/s violates: {:?}",
        slo_broken(&rig.cluster).await
    );
    burst.await.unwrap();
    assert!(
        until(&rig.cluster, Duration::from_secs(30), 2, <[String]>::is_empty)
            .await
            .is_some()
    );

    // With the agent: the paper's `increase` shape (1 → PEAK_RPS req/s) over 40 s, then 30 s at the peak.
    let mut car = sidecar(rig.cluster.clone()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let at_ms = acv_core::now_ms();
    let at = Instant::now();
    let (ramp, hold) = (40.0, 30.0);
    let rise = spawn_load(
        &rig.runtime,
        Profile::Ramp {
            from_rps: 1.0,
            to_rps: PEAK_RPS,
            ramp_secs: ramp,
            hold_secs: hold,
        },
    );
    let total = Duration::from_secs_f64(ramp + hold);
    let detected = until(&rig.cluster, total, 1, |b| !b.is_empty()).await;
    let t0 = at.elapsed();
    let restored = until(&rig.cluster, total.saturating_sub(t0), 3, <[String]>::is_empty).await;
    eprintln!("agent: increase: violation seen after {detected:?}, SLOs hold again {restored:?} after that");
    assert!(detected.is_some(), "the rise never violated the SLOs");
    if restored.is_none() {
        let to_manager = car.drain().await;
        panic!(
            "SLOs did not hold again before the load ended: {:?}; replicas {:?}; the sidecar said: {:#?}",
            slo_broken(&rig.cluster).await,
            rig.cluster.status().await.map(|s| s.desired_replicas),
            to_manager.iter().map(|e| &e.body).collect::<Vec<_>>()
        );
    }
    // Near the threshold the measurement may flicker; what counts is that the full peak, which broke the SLOs
    // without an agent, is carried: they hold during the hold phase.
    tokio::time::sleep_until(at + Duration::from_secs_f64(ramp + 5.0)).await;
    let held = until(
        &rig.cluster,
        Duration::from_secs_f64(hold - 10.0),
        3,
        <[String]>::is_empty,
    )
    .await;
    assert!(
        held.is_some(),
        "the SLOs did not hold at {PEAK_RPS} req/s with the agent: {:?}",
        slo_broken(&rig.cluster).await
    );
    let peak = rig.cluster.status().await.unwrap().desired_replicas;
    assert!(
        (2..10).contains(&peak),
        "scaled in proportion to the load, not to the ceiling: {peak} replicas"
    );
    rise.await.unwrap();
    // After the load, a quiet period (5 s here), then back to 1 replica by the headroom rule.
    common::eventually(BACK_WITHIN.as_secs(), "replicas given back", || async {
        let s = rig.cluster.status().await.ok()?;
        (s.desired_replicas == 1 && s.limits == BASELINE).then_some(())
    })
    .await;
    let to_manager = car.drain().await;
    print_times("increase", at_ms, &to_manager, t0 + restored.unwrap_or_default());
    let reports = reports(&to_manager);
    assert!(
        reports.iter().any(|r| r
            .diagnosis
            .as_ref()
            .is_some_and(|d| d.cause == RootCause::LoadIncrease)),
        "{reports:#?}"
    );
    let cost = reports
        .iter()
        .flat_map(|r| r.evidence.iter())
        .rfind(|e| e.name == "mitigation_cost")
        .expect("the episode's cost is reported");
    eprintln!("increase: cost {}", cost.value);
    assert!(cost.value["extra_replica_seconds"].as_f64().unwrap() > 0.0);
    car.stop().await;
    finish(rig).await;
}
