//! The control API end to end: `RemoteCluster` drives a runtime in-process over HTTP with the same results and
//! error kinds as `LocalCluster`, and the `acv-local` binary serves the shop, answers over the API and stops every
//! child on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use acv_cluster::{Cluster, Fault, RemoteCluster};
use acv_protocol::ComponentName;
use common::{eventually, shop_spec, start};

fn name(n: &str) -> ComponentName {
    ComponentName::new(n).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_cluster_matches_the_local_one() {
    // The harness finds acv-shop next to the test binary, as cargo lays it out.
    let found = acv_e2e::testbed::find_shop_bin().expect("acv-shop found");
    assert_eq!(
        found.canonicalize().unwrap(),
        std::path::Path::new(env!("CARGO_BIN_EXE_acv-shop"))
            .canonicalize()
            .unwrap()
    );
    let rt = Arc::new(start(shop_spec(&["catalogue"])).await);
    let api = rt.serve_api("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let cat = RemoteCluster::new(api, name("catalogue")).unwrap();

    let s = cat.status().await.unwrap();
    assert_eq!(
        (s.component.as_str(), s.ready_replicas, s.image.as_str()),
        ("catalogue", 1, "weaveworksdemos/catalogue:0.3.5")
    );
    assert_eq!(cat.scale(2).await.unwrap().desired_replicas, 2);
    eventually(20, "2 ready", || async {
        (cat.status().await.unwrap().ready_replicas == 2).then_some(())
    })
    .await;
    let r = cat.set_env("logger_flag", "true").await.unwrap();
    assert_eq!(r.revision, 2);
    assert_eq!(cat.set_resources(300, 100).await.unwrap().limits.cpu_millis, 300);
    assert_eq!(cat.rollback().await.unwrap().limits.cpu_millis, 200);
    assert_eq!(cat.history().await.unwrap().len(), 4);
    cat.restart().await.unwrap();
    let m = cat.metrics(5.0).await.unwrap();
    assert!(m.memory_percent_of_limit.is_some(), "{m:?}");
    assert!(!cat.logs(20).await.unwrap().is_empty());
    let id = cat
        .inject(Fault::Latency { ms: 5 }, Some(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(id.0, 1);
    assert_eq!(cat.clear_faults().await.unwrap(), 1);

    // Same error kinds as in-process.
    for (e, kind) in [
        (cat.scale(-1).await.unwrap_err(), "invalid_replicas"),
        (cat.set_image("9.9.9").await.unwrap_err(), "unknown_version"),
        (cat.set_env("bad key", "v").await.unwrap_err(), "invalid_argument"),
        (
            cat.inject(Fault::MemoryStress { mib: 0 }, None)
                .await
                .unwrap_err(),
            "invalid_argument",
        ),
        (
            RemoteCluster::new(api, name("nope"))
                .unwrap()
                .status()
                .await
                .unwrap_err(),
            "unknown_component",
        ),
    ] {
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.is_bad_input(), "{e}");
    }
    assert!(RemoteCluster::new("10.1.2.3:7070".parse().unwrap(), name("catalogue")).is_err());

    let pids = rt.spawned_pids();
    rt.shutdown().await;
    assert!(cat.status().await.is_err(), "the API is gone with the runtime");
    for pid in pids {
        assert!(!acv_runtime::procfs::is_alive(pid), "pid {pid} survived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acv_local_serves_the_shop_and_stops_its_children() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_acv-local"));
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/shop.yaml"))
        .args(["--api", "127.0.0.1:0"]);
    cmd.arg(format!("SHOP_BIN={}", env!("CARGO_BIN_EXE_acv-shop")));
    let (mut child, rx) = common::spawn_shop_binary(&mut cmd);
    let mut api: Option<SocketAddr> = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(40))
            .expect("acv-local prints its addresses");
        if let Some(addr) = line.strip_prefix("api        http://") {
            api = Some(addr.parse().unwrap());
        }
        if line.starts_with("all services ready") {
            break;
        }
    }
    let fe = RemoteCluster::new(api.unwrap(), name("front-end")).unwrap();
    assert_eq!(fe.status().await.unwrap().ready_replicas, 1);
    // acv-chaos injects and clears faults through the same API.
    let chaos = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_acv-chaos"))
            .args(["--api", &api.unwrap().to_string()])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = chaos(&["catalogue", "latency", "--ms", "5", "--secs", "60"]);
    assert!(ok && out.contains("injected fault 1"), "{out}");
    let (ok, out) = chaos(&["catalogue", "clear"]);
    assert!(ok && out.contains("cleared 1"), "{out}");
    let (ok, _) = chaos(&["catalogue", "cpu-stress", "--workers", "99"]);
    assert!(!ok, "out-of-range fault is refused");
    let kids = common::children_of(child.id());
    assert_eq!(kids.len(), 7, "one process per shop service");

    common::kill_term(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    eventually(5, "children gone", || async {
        kids.iter()
            .all(|p| !acv_runtime::procfs::is_alive(*p))
            .then_some(())
    })
    .await;
}
