//! Mechanism 3 end to end, black box, with NO manager: the whole testbed shop on the local runtime, and two real
//! `acv-sidecar` processes — front-end (watching its own SLOs) and catalogue (no watcher of its own, so only a peer
//! can make it act) — with certificates from acv-pki in a temp dir, finding each other on the NATS broadcast.
//! Catalogue is switched to a failing (or slow) build; the test's own measurements (the runtime's metrics and
//! revisions) show front-end's errors (or P99) rise, catalogue rolled back by its own sidecar after front-end's
//! sidecar asked it over mutual TLS, front-end healthy again (by the runtime's figures and by its own sidecar's
//! health check), front-end never touched, and the call in both sidecars' audit logs and metrics. With the rules
//! planner for both faults, and with front-end's LLM planner against a scripted OpenAI-compatible server inside
//! the test. docs/peers.md describes what is checked.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use acv_bus::{Bus, BusConfig, Transport};
use acv_cluster::Cluster;
use acv_e2e::load::{self, Call, LoadSpec, Profile};
use acv_llm::testserver::{Reply, ScriptedServer};
use acv_pki::{DevCa, Identity, Validity};
use acv_protocol::{Address, Body, ComponentName, MetricsSnapshot, ReportBody, RootCause};
use acv_runtime::LocalRuntime;
use common::shop_spec;

/// One shop at a time: each test runs seven services and two sidecars on a small machine.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GOOD: &str = "weaveworksdemos/catalogue:0.3.5";
/// The error-rate objective both sidecars watch, percent.
const ERROR_SLO: f64 = 5.0;
/// The P99 objective both sidecars watch, ms.
const P99_SLO: f64 = 200.0;

/// Catalogue's broken build, and what it does to front-end.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `:errors`: 500 on every business route.
    Errors,
    /// `:slow`: +300 ms per request.
    Slow,
}

impl Fault {
    fn image(self) -> &'static str {
        match self {
            Fault::Errors => "weaveworksdemos/catalogue:errors",
            Fault::Slow => "weaveworksdemos/catalogue:slow",
        }
    }

    /// The figure of front-end's that this fault breaks (error rate % or P99 ms), and its objective.
    fn symptom(self, m: &MetricsSnapshot) -> (Option<f64>, f64) {
        match self {
            Fault::Errors => (m.error_rate_percent, ERROR_SLO),
            Fault::Slow => (m.p99_ms, P99_SLO),
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Fault::Errors => "% errors",
            Fault::Slow => "ms P99",
        }
    }
}

fn name(s: &str) -> ComponentName {
    ComponentName::new(s).unwrap()
}

/// `acv-sidecar` next to Cargo's `acv-shop`: the e2e crate cannot name another package's binary. `cargo test
/// --workspace` (what `make test` runs) builds it with the same features as everything else before any test runs.
/// Tests never build: without it (`cargo test -p acv-e2e` alone) the test says how to get it.
fn sidecar_bin() -> PathBuf {
    common::workspace_bin("acv-sidecar")
}

/// A development CA and certificates for `components` in a fresh temp dir, as `acv-certs` writes them.
fn certs(components: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("acv-peers-e2e-{}", uuid::Uuid::new_v4()));
    let ca = DevCa::generate("peers e2e CA", Duration::from_secs(86_400)).unwrap();
    ca.write(&dir).unwrap();
    for c in components {
        let id = Identity::new("default", name(c)).unwrap();
        ca.issue(&id, Validity::from_now(Duration::from_secs(3600)))
            .unwrap()
            .write(&dir, c)
            .unwrap();
    }
    dir
}

/// A sidecar process; killed (SIGTERM, then SIGKILL) when dropped. Its output goes to `<dir>/<component>.log`.
struct Sidecar {
    child: Child,
    log: PathBuf,
}

impl Sidecar {
    fn spawn(bin: &Path, dir: &Path, component: &str, args: &[String], env: &[(String, String)]) -> Self {
        let log = dir.join(format!("{component}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--component",
            component,
            "--bus",
            "nats",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .args(["--peer-addr", "127.0.0.1:0", "--peer-tls-dir"])
        .arg(dir)
        .args(["--heartbeat", "1s", "--settle", "1s", "--watch-window-secs", "4"])
        .args(["--slo-error-rate-percent", &ERROR_SLO.to_string()])
        .args(["--slo-p99-ms", &P99_SLO.to_string()])
        .arg("--guest")
        .arg(acv_sandbox::dev::checkout_guest_path())
        .arg("--sandbox-cache-dir")
        .arg(acv_sandbox::dev::checkout_cache_dir())
        .args(args)
        .arg("--log-json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("acv-sidecar starts"),
            log,
        }
    }

    /// The admin server's address, from its "Admin server listening." log line.
    fn admin_addr(&self) -> Option<SocketAddr> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == "Admin server listening.")
            .and_then(|v| v["fields"]["addr"].as_str()?.parse().ok())
    }

    /// The value of the first sample of `metric` whose labels include all of `labels` (Prometheus text format).
    async fn metric(&self, metric: &str, labels: &[&str]) -> Option<f64> {
        let addr = self.admin_addr()?;
        let (status, text) = common::get(addr, "/metrics").await;
        assert_eq!(status, 200, "{}'s /metrics", self.log.display());
        text.lines()
            .filter(|l| l.starts_with(metric) && labels.iter().all(|lb| l.contains(lb)))
            .find_map(|l| l.rsplit(' ').next()?.parse().ok())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        common::kill_term(self.child.id());
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The shop, its control API, the test's own bus handle (unique NATS namespace) and the certificates.
struct Rig {
    rt: Arc<LocalRuntime>,
    api: SocketAddr,
    bus: Arc<dyn Bus>,
    namespace: String,
    dir: PathBuf,
}

impl Rig {
    async fn start() -> Self {
        // Compile the guest once into the shared cache before the sidecars need it.
        tokio::task::spawn_blocking(|| acv_sandbox::dev::shared_sandbox().map(|_| ()))
            .await
            .unwrap()
            .expect("the sandbox guest loads");
        let rt = Arc::new(common::start(shop_spec(&common::ALL)).await);
        let api = rt.serve_api("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let namespace = format!("peers-e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut config = BusConfig::default().with_transport(Transport::Nats);
        config.namespace = namespace.clone();
        let bus = acv_bus::connect(&config).await.expect("NATS on 127.0.0.1:4222");
        Self {
            rt,
            api,
            bus,
            namespace,
            dir: certs(&["front-end", "catalogue"]),
        }
    }

    fn bus_env(&self) -> Vec<(String, String)> {
        vec![(
            acv_bus::config::ENV_BUS_NAMESPACE.to_owned(),
            self.namespace.clone(),
        )]
    }

    /// Front-end's metrics over the last `secs`, as the runtime measures them.
    async fn front_end(&self, secs: f64) -> MetricsSnapshot {
        self.rt.cluster("front-end").unwrap().metrics(secs).await.unwrap()
    }

    /// Front-end serves traffic within the objective `fault` breaks, over the last `secs`.
    async fn front_end_healthy(&self, fault: Fault, secs: f64) -> bool {
        let m = self.front_end(secs).await;
        let (value, objective) = fault.symptom(&m);
        m.request_rate.unwrap_or(0.0) > 5.0 && value.is_some_and(|v| v < objective)
    }

    async fn stop(self) {
        self.bus.delete_namespace().await.ok();
        std::fs::remove_dir_all(&self.dir).ok();
        let rt = Arc::try_unwrap(self.rt)
            .ok()
            .expect("the runtime is no longer shared");
        common::shutdown_and_check_no_leaks(rt).await;
    }
}

/// Polls `f` every 100 ms until it returns `Some`; after `secs` fails the test with the sidecars' last log lines.
async fn until<T, F, Fut>(secs: u64, what: &str, sidecars: &[&Sidecar], mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            let logs: Vec<String> = sidecars
                .iter()
                .map(|s| format!("{}:\n{}", s.log.display(), s.tail(60)))
                .collect();
            panic!(
                "timed out after {secs}s waiting for {what}; the sidecars' logs end with:\n{}",
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Steady traffic at front-end's `/catalogue` (which calls catalogue) until aborted.
fn traffic(target: SocketAddr) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        load::run(&LoadSpec {
            target,
            calls: vec![Call::get("/catalogue")],
            profile: Profile::Constant {
                rps: 25.0,
                secs: 600.0,
            },
            max_in_flight: 100,
            timeout: Duration::from_secs(5),
        })
        .await
        .ok();
    })
}

/// Waits until both sidecars announced their peer API on the broadcast (discovery, no manager).
async fn wait_for_announcements(rig: &Rig, sidecars: &[&Sidecar]) {
    let mut sub = rig.bus.subscribe(&Address::Broadcast).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < 2 {
        let next = tokio::time::timeout_at(deadline, sub.next()).await;
        let Ok(Some(Ok(d))) = next else {
            let logs: Vec<String> = sidecars.iter().map(|s| s.tail(30)).collect();
            panic!(
                "no peer announcements from both sidecars within 60 s (seen {seen:?}):\n{}",
                logs.join("\n---\n")
            );
        };
        let announced = match &d.envelope.body {
            Body::Register(r) => r.peer_url.as_ref().map(|_| r.component.clone()),
            Body::Heartbeat(h) => h.peer_url.as_ref().map(|_| h.component.clone()),
            _ => None,
        };
        if let Some(c) = announced {
            seen.insert(c);
        }
        d.ack().await.ok();
    }
}

/// Waits for a heartbeat of front-end's sidecar, sent after `since_ms`, saying its last health check passed.
async fn front_end_check_passes(rig: &Rig, since_ms: u64, sidecars: &[&Sidecar]) {
    let mut sub = rig.bus.subscribe(&Address::Broadcast).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(Some(Ok(d))) = tokio::time::timeout_at(deadline, sub.next()).await else {
            let logs: Vec<String> = sidecars.iter().map(|s| s.tail(40)).collect();
            panic!(
                "front-end's sidecar reported no passing health check within 60 s of the rollback:\n{}",
                logs.join("\n---\n")
            );
        };
        let passed = matches!(&d.envelope.body, Body::Heartbeat(h)
            if h.component == name("front-end") && h.healthy == Some(true))
            && d.envelope.sent_at_ms > since_ms;
        d.ack().await.ok();
        if passed {
            return;
        }
    }
}

/// The scenario, with `front_end_args` choosing front-end's planner. Returns front-end's reports (to the manager
/// address, which nobody else reads) and the two sidecars' logs.
async fn scenario(
    rig: &Rig,
    fault: Fault,
    front_end_args: &[String],
    front_end_env: &[(String, String)],
) -> (Vec<ReportBody>, String, String) {
    let bin = sidecar_bin();
    let api = rig.api.to_string();
    let mut env = rig.bus_env();
    let catalogue = Sidecar::spawn(
        &bin,
        &rig.dir,
        "catalogue",
        &[
            "--runtime-api".into(),
            api.clone(),
            "--planner".into(),
            "rules".into(),
            "--watch-interval".into(),
            "0".into(),
        ],
        &env,
    );
    env.extend(front_end_env.iter().cloned());
    let mut args = vec![
        "--runtime-api".into(),
        api,
        "--watch-interval".into(),
        "1s".into(),
        "--watch-confirm".into(),
        "2".into(),
        // Asking a peer to act waits for the peer's own planner.
        "--step-timeout".into(),
        "90s".into(),
    ];
    args.extend(front_end_args.iter().cloned());
    let front_end = Sidecar::spawn(&bin, &rig.dir, "front-end", &args, &env);
    let mut reports = rig.bus.subscribe(&Address::Manager).await.unwrap();
    wait_for_announcements(rig, &[&catalogue, &front_end]).await;

    let load = traffic(rig.rt.addr("front-end").unwrap());
    let fe = rig.rt.cluster("front-end").unwrap();
    let cat = rig.rt.cluster("catalogue").unwrap();
    until(
        30,
        "healthy front-end traffic",
        &[&front_end, &catalogue],
        || async { rig.front_end_healthy(fault, 2.0).await.then_some(()) },
    )
    .await;
    let fe_before = (fe.history().await.unwrap(), fe.status().await.unwrap());
    let cat_revisions = cat.history().await.unwrap().len();

    cat.set_image(fault.image()).await.unwrap();
    let t_broken = std::time::Instant::now();
    // The test's own measurement: catalogue's broken build hurts front-end. (Over the objective, not a higher
    // figure: the sidecars may fix it within a second or two, and the test must not miss the symptom.)
    until(
        30,
        "front-end hurt by the broken catalogue",
        &[&front_end, &catalogue],
        || async {
            let (value, objective) = fault.symptom(&rig.front_end(2.0).await);
            value.is_some_and(|v| v > objective).then_some(())
        },
    )
    .await;

    // Catalogue's own sidecar rolls back, because front-end's sidecar asked it (catalogue watches nothing itself).
    let rollback = until(
        120,
        "catalogue rolled back by its sidecar",
        &[&front_end, &catalogue],
        || async {
            let h = cat.history().await.unwrap();
            h.iter()
                .skip(cat_revisions)
                .find(|r| r.is_rollback() && r.image == GOOD)
                .cloned()
        },
    )
    .await;
    let t_rollback = std::time::Instant::now();
    println!(
        "catalogue rolled back: revision {} ({})",
        rollback.revision, rollback.image
    );

    // Front-end's re-check passes: measured by the runtime, it is back within the objective the fault broke.
    until(
        60,
        "front-end healthy again",
        &[&front_end, &catalogue],
        || async { rig.front_end_healthy(fault, 2.0).await.then_some(()) },
    )
    .await;
    println!(
        "front-end back within the objective {:.1} s after the rollback",
        t_rollback.elapsed().as_secs_f64()
    );
    // Front-end's own sidecar agrees: a health check of its watcher after the rollback passes (its heartbeats carry
    // the last check's result).
    front_end_check_passes(rig, rollback.created_at_ms, &[&front_end, &catalogue]).await;
    // The whole incident as the runtime measured it at front-end: well over the objective.
    let incident = t_broken.elapsed().as_secs_f64();
    let (value, objective) = fault.symptom(&rig.front_end(incident).await);
    let value = value.expect("front-end's figure over the incident is measured");
    let unit = fault.unit();
    println!("front-end over the {incident:.1} s since catalogue broke ({fault:?}): {value:.1} {unit}");
    assert!(
        value > objective,
        "front-end during the incident: {value:.1} {unit}, objective {objective}"
    );

    // Front-end's sidecar changed nothing of its own component: the cause was not there.
    let fe_after = (fe.history().await.unwrap(), fe.status().await.unwrap());
    assert_eq!(fe_after.0, fe_before.0, "front-end's revisions are unchanged");
    assert_eq!(
        fe_after.1.desired_replicas, fe_before.1.desired_replicas,
        "front-end was not scaled"
    );
    assert_eq!(
        fe_after.1.replicas.iter().map(|r| r.restarts).sum::<u32>(),
        fe_before.1.replicas.iter().map(|r| r.restarts).sum::<u32>(),
        "front-end was not restarted"
    );

    // Front-end's mitigation report (to the manager address; no manager runs) names catalogue as the cause.
    let mut fe_reports = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !fe_reports.iter().any(|r: &ReportBody| {
        r.diagnosis
            .as_ref()
            .is_some_and(|d| d.cause == RootCause::Downstream)
    }) {
        match tokio::time::timeout_at(deadline, reports.next()).await {
            Ok(Some(Ok(d))) => {
                if let Body::Report(r) = &d.envelope.body
                    && r.component == name("front-end")
                {
                    fe_reports.push(r.clone());
                }
                d.ack().await.ok();
            }
            _ => panic!(
                "no downstream report from front-end within 60 s: {fe_reports:#?}\n{}",
                front_end.tail(40)
            ),
        }
    }
    load.abort();
    // Both sides counted the call in their own metrics (the asker also its round trip).
    let counted = (
        front_end
            .metric("acv_peer_calls_total", &["side=\"client\"", "outcome=\"acted\""])
            .await,
        front_end.metric("acv_peer_round_trip_seconds_count", &[]).await,
        catalogue
            .metric("acv_peer_calls_total", &["side=\"server\"", "outcome=\"acted\""])
            .await,
    );
    println!("peer calls acted (front-end, round trips, catalogue): {counted:?}");
    assert!(
        counted.0 >= Some(1.0) && counted.1 >= Some(1.0) && counted.2 >= Some(1.0),
        "peer call metrics (front-end client acted, front-end round trips, catalogue server acted): {counted:?}"
    );
    // Catalogue changed once, by its own sidecar: the rollback (a second ask, if any, was declined).
    let changes: Vec<String> = cat
        .history()
        .await
        .unwrap()
        .iter()
        .skip(cat_revisions + 1)
        .map(|r| r.cause.clone())
        .collect();
    assert_eq!(
        changes,
        std::slice::from_ref(&rollback.cause),
        "catalogue's revisions after the broken build"
    );
    let logs = (front_end.log(), catalogue.log());
    drop(front_end);
    drop(catalogue);
    (fe_reports, logs.0, logs.1)
}

fn check_peer_path(reports: &[ReportBody], fe_log: &str, cat_log: &str) {
    let r = reports
        .iter()
        .find(|r| r.diagnosis.is_some())
        .expect("a report with a diagnosis");
    let d = r.diagnosis.as_ref().unwrap();
    assert_eq!(
        (d.cause, d.component.as_ref()),
        (RootCause::Downstream, Some(&name("catalogue"))),
        "{r:#?}"
    );
    assert!(
        r.steps.iter().any(|s| s.program.contains("acv.ask_peer(")),
        "the step asked the peer: {r:#?}"
    );
    assert!(
        r.steps.iter().all(|s| !s.mutated),
        "front-end's steps changed nothing of its own: {r:#?}"
    );
    // Both sides audited the call; catalogue served it as a request for action and acted (JSON log lines).
    assert!(
        fe_log
            .lines()
            .any(|l| l.contains("Peer call made.") && l.contains("\"peer\":\"catalogue\"")),
        "front-end's audit log: {fe_log}"
    );
    let served: Vec<&str> = cat_log
        .lines()
        .filter(|l| l.contains("Peer call served.") && l.contains("\"caller\":\"front-end\""))
        .collect();
    assert!(
        served.iter().any(|l| l.contains("\"outcome\":\"acted\"")),
        "catalogue's audit log: {served:#?}\n{cat_log}"
    );
    // Catalogue's sidecar made exactly one mutating host call, the rollback (JSON audit lines of its programs).
    let mutating: Vec<String> = cat_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "Host call.")
        .filter_map(|v| v["fields"]["call"].as_str().map(str::to_owned))
        .filter(|c| acv_protocol::MUTATING_CALLS.contains(&c.as_str()))
        .collect();
    assert_eq!(mutating, ["rollback"], "catalogue's mutating host calls");
    // What each side did, for the test's output.
    for r in reports {
        println!("front-end report: {:?}: {}", r.status, r.message);
    }
    for l in &served {
        println!("catalogue served: {l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_front_end_asks_catalogue_which_rolls_back() {
    let _turn = TURN.lock().await;
    let rig = Rig::start().await;
    let (reports, fe_log, cat_log) =
        scenario(&rig, Fault::Errors, &["--planner".into(), "rules".into()], &[]).await;
    check_peer_path(&reports, &fe_log, &cat_log);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_front_end_asks_slow_catalogue_which_rolls_back() {
    let _turn = TURN.lock().await;
    let rig = Rig::start().await;
    let (reports, fe_log, cat_log) =
        scenario(&rig, Fault::Slow, &["--planner".into(), "rules".into()], &[]).await;
    check_peer_path(&reports, &fe_log, &cat_log);
    rig.stop().await;
}

/// The plan a model would give for front-end's violation: ask catalogue to fix itself and report its answer.
fn llm_plan() -> String {
    let program = "import acv\nimport json\n\
        answer = json.loads(acv.ask_peer(\"catalogue\", \"front-end here: your errors hurt mine, please check and fix\"))\n\
        print(answer)\n\
        acv.report(\"RESPONSE\" if answer[\"outcome\"] == \"acted\" else \"ISSUE\", \"asked catalogue: \" + answer[\"message\"])\n";
    serde_json::json!({
        "thought": "my replicas are fine; calls to catalogue fail, so the cause is catalogue",
        "steps": [{"description": "ask catalogue's agent to check and fix itself", "program": program}],
        "done": true,
        "diagnosis": {"cause": "downstream", "component": "catalogue", "summary": "calls to catalogue fail"},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_front_end_asks_catalogue_which_rolls_back() {
    let _turn = TURN.lock().await;
    let server = ScriptedServer::start(Vec::new()).await.unwrap();
    let plan = llm_plan();
    server.set_fallback(move |_| Reply::chat(plan.clone()));
    let env = vec![
        ("ACV_LLM_BACKEND".to_owned(), "openai".to_owned()),
        ("ACV_LLM_MODEL".to_owned(), "scripted".to_owned()),
        ("ACV_LLM_API_KEY".to_owned(), "test".to_owned()),
        ("ACV_LLM_BASE_URL".to_owned(), server.base_url()),
    ];
    let rig = Rig::start().await;
    let (reports, fe_log, cat_log) =
        scenario(&rig, Fault::Errors, &["--planner".into(), "llm".into()], &env).await;
    check_peer_path(&reports, &fe_log, &cat_log);
    // The model was told what the rules know: how to ask a peer, and front-end's calls to catalogue.
    let first = &server.requests()[0].body;
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("acv.ask_peer(") && system.contains("please check and fix"),
        "{system}"
    );
    let user = first["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("\"callee\":\"catalogue\""), "{user}");
    rig.stop().await;
}
