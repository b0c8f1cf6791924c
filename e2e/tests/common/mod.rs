//! Helpers shared by the local runtime tests: start (part of) the shop from `e2e/shop.yaml` on ephemeral ports
//! with fast timings, poll until a condition holds, and check that no process outlived the runtime.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use acv_runtime::{LocalRuntime, RuntimeSpec};

/// The shop spec with only `services` kept, every port 0 and test timings.
pub fn shop_spec(services: &[&str]) -> RuntimeSpec {
    acv_e2e::testbed::ShopOptions {
        shop_bin: env!("CARGO_BIN_EXE_acv-shop").into(),
        ephemeral_ports: true,
        fast: true,
        services: services.iter().map(|s| (*s).to_owned()).collect(),
    }
    .spec()
    .expect("shop.yaml parses")
}

/// Starts `spec` and waits until every service is ready.
pub async fn start(spec: RuntimeSpec) -> LocalRuntime {
    let rt = LocalRuntime::start(spec).await.expect("runtime starts");
    rt.wait_all_ready(Duration::from_secs(30))
        .await
        .expect("shop becomes ready");
    rt
}

/// Polls `f` every 50 ms until it returns `Some`, failing the test after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Shuts the runtime down and asserts that none of the processes it ever spawned still exists, not even as a
/// zombie: `/proc/<pid>` is gone, or belongs to an unrelated process that reused the pid (its name is not
/// `acv-shop`; the name in `/proc/<pid>/stat` survives in zombies, unlike the command line).
pub async fn shutdown_and_check_no_leaks(rt: LocalRuntime) {
    let pids = rt.spawned_pids();
    assert!(!pids.is_empty(), "the runtime spawned nothing");
    rt.shutdown().await;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            !stat.contains("(acv-shop)"),
            "pid {pid} outlived the runtime: {stat}"
        );
    }
}

/// SIGKILLs a process.
pub fn kill9(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success(), "kill -9 {pid} failed");
}

/// GETs `path` from `addr`: status code (0 if no answer) and body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    get_with_token(addr, path, None).await
}

/// [`get`] with `Authorization: Bearer TOKEN` when a token is given.
pub async fn get_with_token(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("http://{addr}{path}").parse().expect("valid uri");
    let mut req = hyper::Request::get(uri);
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(http_body_util::Empty::new()).expect("a request");
    let fut = async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}

/// Every shop service.
pub const ALL: [&str; 7] = acv_e2e::testbed::ALL;

/// Sends SIGTERM.
pub fn kill_term(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success(), "kill -TERM {pid} failed");
}

/// The pids whose parent is `parent` (from `/proc`).
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if acv_runtime::procfs::parent_pid(pid) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Spawns a binary that runs the shop (`acv-local`, `acv-all-in-one`) with every shop port set to 0, and forwards
/// its stdout lines to the returned channel (it prints the addresses it bound).
pub fn spawn_shop_binary(
    cmd: &mut std::process::Command,
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, BufReader};
    for s in ALL {
        cmd.arg(format!("{}_PORT=0", s.to_ascii_uppercase().replace('-', "_")));
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Asserts that a server-side P99 (the runtime's histogram) agrees with the load generator's client-side figures.
/// The client times from its side, so a stall of the client on a busy machine (with a few hundred requests, P99 is
/// the 2nd or 3rd slowest) inflates its P99 but not the server's. So the server's P99 must not be above the client's
/// (beyond the histogram's bucket tolerance `tol_ms`), and not below the client's P90 either, which would be a
/// histogram missing the slow requests.
#[allow(dead_code)]
pub fn assert_p99_agrees(what: &str, server_p99_ms: f64, client: &acv_e2e::load::LoadReport, tol_ms: f64) {
    let (p99, p90) = (client.p99_ms.unwrap(), client.p90_ms.unwrap());
    assert!(
        server_p99_ms <= p99 + tol_ms && (server_p99_ms >= p99 - tol_ms || server_p99_ms >= p90 - tol_ms),
        "{what}: server P99 {server_p99_ms:.1} ms vs load generator P99 {p99:.1} ms, P90 {p90:.1} ms \
         (tolerance {tol_ms:.1} ms)"
    );
}

/// What a finished process printed, stdout then stderr (for assertion messages).
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A binary of another workspace package (`acv-sidecar`, `acv-manager`, `acvctl`), found next to this package's
/// own binaries: Cargo names only a package's own binaries to its tests. `cargo test --workspace` (what `make test`
/// runs) builds them; a test run alone (`cargo test --workspace --test NAME`) does not rebuild them, so build
/// everything first with `cargo test --workspace --locked --no-run`. Tests never run Cargo themselves: a build
/// with other flags would change the dependencies' features and rebuild half the workspace.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_acv-shop"))
        .parent()
        .expect("acv-shop has a directory")
        .join(name);
    assert!(
        path.is_file(),
        "{} missing: run the tests with `cargo test --workspace` (or `cargo test --workspace --locked --no-run` \
         first)",
        path.display()
    );
    path
}

/// A sidecar's task handler as the tests run it in-process: the rules planner, the shared dev sandbox (Python steps
/// in wasmtime), `cluster` as its own component's backend, no peers, default limits and SLOs, `mode` for mutating
/// calls (queued ones wait up to 2 minutes for a decision), programs and host calls recorded in `audit`
/// (`AuditLog::disabled()` records nothing).
pub fn rules_handler(
    cluster: std::sync::Arc<dyn acv_cluster::Cluster>,
    mode: acv_sandbox::SafetyMode,
    audit: acv_sidecar::audit::AuditLog,
) -> acv_sidecar::handler::PlanningHandler {
    use std::sync::Arc;
    acv_sidecar::handler::PlanningHandler {
        planner: Arc::new(acv_llm::RulesPlanner::new()),
        sandbox: Arc::new(acv_sandbox::LazySandbox::preloaded(
            acv_sandbox::dev::shared_sandbox().expect("the dev sandbox loads (make guest)"),
        )),
        cluster: cluster.clone(),
        caps: Arc::new(acv_sidecar::caps::ClusterCaps::new(
            cluster,
            Arc::new(acv_sidecar::caps::NoPeers),
        )),
        mode,
        limits: acv_sandbox::Limits::default(),
        slo: acv_protocol::SloPolicy::default(),
        max_turns: 8,
        settle: Duration::from_secs(2),
        audit,
        approval_timeout: Duration::from_secs(120),
        guard: acv_sidecar::guard::GuardConfig::default(),
    }
}
