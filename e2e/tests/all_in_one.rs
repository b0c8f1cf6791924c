//! `acv-all-in-one` end to end: the local runtime, the manager's serve loop and a sidecar (rules planner, Python
//! steps in the wasmtime sandbox) in one process on the in-memory bus. A task sent with `--task` is planned and
//! executed against the real `acv-shop` catalogue and its report printed; the runtime's control API shows the effect;
//! SIGTERM stops the sidecar, the manager and every service process, exit code 0.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use acv_cluster::{Cluster, RemoteCluster};
use acv_protocol::ComponentName;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_runs_a_task_and_stops_cleanly() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_acv-all-in-one"));
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/shop.yaml"))
        .args([
            "--api",
            "127.0.0.1:0",
            "--components",
            "catalogue",
            "--to",
            "catalogue",
        ])
        .args(["--watch-interval", "0", "--settle", "200ms", "--timeout", "60s"])
        .args(["--manager-api", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(std::env::temp_dir().join(format!("acv-all-in-one-{}", std::process::id())))
        .args([
            "--guest",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../sandbox/guest/build/acv-guest.wasm"
            ),
        ])
        .args(["--task", "Scale replicas to 2 for your microservice component."])
        .arg(format!("SHOP_BIN={}", env!("CARGO_BIN_EXE_acv-shop")))
        .env("RUST_LOG", "warn");
    let (mut child, rx) = common::spawn_shop_binary(&mut cmd);
    let mut api: Option<SocketAddr> = None;
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("acv-all-in-one went quiet ({e}); so far: {lines:#?}"));
        if let Some(addr) = line.strip_prefix("api        http://") {
            api = Some(addr.parse().unwrap());
        }
        lines.push(line.clone());
        if line.starts_with("Ctrl-C to stop") {
            break;
        }
    }
    let out = lines.join("\n");
    assert!(
        out.contains("sidecars for catalogue on the in-memory bus"),
        "{out}"
    );
    assert!(out.contains("RESPONSE from catalogue"), "{out}");
    // The sidecar really acted on the runtime.
    let catalogue = RemoteCluster::new(api.unwrap(), ComponentName::new("catalogue").unwrap()).unwrap();
    assert_eq!(catalogue.status().await.unwrap().desired_replicas, 2, "{out}");
    let kids = common::children_of(child.id());
    assert!(
        kids.len() >= 8,
        "7 services + a second catalogue replica: {kids:?}"
    );

    common::kill_term(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().any(|l| l == "stopped"), "{rest:?}");
    for pid in kids {
        assert!(
            !acv_runtime::procfs::is_alive(pid),
            "pid {pid} outlived acv-all-in-one"
        );
    }
}
