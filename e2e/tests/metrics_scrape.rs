//! Every running acv binary that serves `/metrics` passes Prometheus's own linter: `acv-manager serve` and
//! `acv-sidecar` run as processes on NATS (a fresh namespace), a task goes through the manager to the sidecar so
//! that episode, task round-trip and goal metrics are emitted for real, then each `/metrics` is scraped and fed to
//! `promtool check metrics` (Debian's `prometheus` package, which `.ci/run` installs; without it the test says so
//! and passes, except under `CI=true`). `acv-local` and `acv-all-in-one` serve no `/metrics` (docs/metrics.md).
//!
//! The manager and sidecar binaries live in other packages: Cargo builds them into the same directory as this
//! package's binaries when the workspace's tests are built (`cargo test --workspace`); this test never runs cargo.

mod common;

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
};

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _killed = self.0.kill();
        let _reaped = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_metrics_pass_promtool() {
    let namespace = format!("acv-scrape-{}", uuid::Uuid::new_v4().simple());
    let state = std::env::temp_dir().join(&namespace);
    let (m_admin, m_api, s_admin) = (free_addr(), free_addr(), free_addr());
    let env = [("ACV_BUS", "nats"), ("ACV_BUS_NAMESPACE", namespace.as_str())];
    let mut manager = Command::new(common::workspace_bin("acv-manager"));
    manager
        .args([
            "serve",
            "--admin-addr",
            &m_admin.to_string(),
            "--api-addr",
            &m_api.to_string(),
        ])
        .arg("--state-dir")
        .arg(&state)
        .env_remove("ACV_MANAGER_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut sidecar = Command::new(common::workspace_bin("acv-sidecar"));
    sidecar
        .args([
            "--component",
            "catalogue",
            "--admin-addr",
            &s_admin.to_string(),
            "--heartbeat",
            "1s",
        ])
        .env_remove("ACV_SIDECAR_RUNTIME_API")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        manager.env(k, v);
        sidecar.env(k, v);
    }
    let _manager = Proc(manager.spawn().unwrap());
    let _sidecar = Proc(sidecar.spawn().unwrap());
    for (what, addr) in [("manager", m_admin), ("sidecar", s_admin), ("manager API", m_api)] {
        let path = if what == "manager API" {
            "/v1/agents"
        } else {
            "/ready"
        };
        common::eventually(60, &format!("{what} ready"), || async move {
            (common::get(addr, path).await.0 == 200).then_some(())
        })
        .await;
    }

    // A task through the manager: the sidecar (no cluster backend) answers ISSUE, an episode for each side.
    let url = format!("http://{m_api}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(common::workspace_bin("acvctl"))
            .args([
                "--manager",
                &url,
                "task",
                "send",
                "--to",
                "catalogue",
                "--timeout",
                "60s",
                "Restart",
            ])
            .env_remove("ACV_MANAGER_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the sidecar without a backend answers ISSUE: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let manager_text = common::eventually(30, "the manager's goal and round-trip metrics", || async move {
        let (code, text) = common::get(m_admin, "/metrics").await;
        (code == 200 && text.contains("acv_task_round_trip_seconds_bucket") && text.contains("acv_goals{"))
            .then_some(text)
    })
    .await;
    let sidecar_text = common::eventually(30, "the sidecar's episode metric", || async move {
        let (code, text) = common::get(s_admin, "/metrics").await;
        (code == 200 && text.contains("acv_episodes_total{")).then_some(text)
    })
    .await;
    assert!(
        sidecar_text.contains(r#"acv_episodes_total{trigger="task",outcome="issue"} 1"#),
        "{sidecar_text}"
    );
    acv_telemetry::promtool::assert_passes("acv-manager", &manager_text);
    acv_telemetry::promtool::assert_passes("acv-sidecar", &sidecar_text);
    drop((_manager, _sidecar));
    // The namespace's streams on the shared NATS server go with the test.
    let mut config = acv_bus::BusConfig::default().with_transport(acv_bus::Transport::Nats);
    config.namespace = namespace.clone();
    if let Ok(bus) = acv_bus::connect(&config).await {
        let _deleted = bus.delete_namespace().await;
    }
    let _cleaned = std::fs::remove_dir_all(&state);
}
