//! The sidecar as its container image holds it: the built `acv-sidecar` binary and the sandbox guest copied into an
//! empty directory (`app/`, like `/app` in manifests/images/Containerfile.sidecar), run from there with nothing
//! else from the build, once finding the guest next to itself and once through `ACV_SANDBOX_GUEST`. It must answer
//! a task whose steps run in the sandbox (against the shop's catalogue on the local runtime, over NATS). Without
//! the guest it must stop at once with a message naming the path it looked at.
//!
//! Needs: `acv-sidecar` built in this target directory (`cargo build -p acv-sidecar`; `cargo test --workspace`
//! builds it), the guest (`make guest`), and NATS on 127.0.0.1:4222 (`make brokers`). A missing one fails the test
//! with that instruction.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acv_bus::{BusConfig, Transport};
use acv_protocol::{ComponentName, ReportStatus};
use common::{shop_spec, start};

/// The `acv-sidecar` binary next to this package's binaries.
fn sidecar_bin() -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_acv-local")).parent().unwrap();
    let bin = dir.join("acv-sidecar");
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build -p acv-sidecar` (same CARGO_TARGET_DIR) first",
        bin.display()
    );
    bin
}

fn guest() -> PathBuf {
    let g = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sandbox/guest/build/acv-guest.wasm");
    assert!(g.is_file(), "{} is missing: run `make guest`", g.display());
    g
}

fn nats_up() {
    assert!(
        std::net::TcpStream::connect_timeout(&"127.0.0.1:4222".parse().unwrap(), Duration::from_secs(2))
            .is_ok(),
        "no NATS on 127.0.0.1:4222: run `make brokers`"
    );
}

/// A fresh directory holding only `app/acv-sidecar` (and `app/acv-guest.wasm` when `with_guest`).
fn image_dir(tag: &str, with_guest: bool) -> PathBuf {
    let root = std::env::temp_dir().join(format!("acv-image-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&root).ok();
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::copy(sidecar_bin(), app.join("acv-sidecar")).unwrap();
    if with_guest {
        std::fs::copy(guest(), app.join("acv-guest.wasm")).unwrap();
    }
    root
}

/// Runs the copied sidecar from its own directory with a clean environment (no source tree, no cargo env).
fn spawn(root: &Path, args: &[String], env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(root.join("app/acv-sidecar"));
    cmd.current_dir(root)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Logs go to a file: an unread pipe would fill up and block the sidecar.
        .stderr(std::fs::File::create(root.join("sidecar.log")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copied_sidecar_runs_tasks_with_the_guest_next_to_it_or_configured() {
    nats_up();
    let rt = Arc::new(start(shop_spec(&["catalogue"])).await);
    let api = rt.serve_api("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let catalogue: ComponentName = "catalogue".parse().unwrap();

    for (tag, configured) in [("next-to-binary", false), ("configured", true)] {
        let namespace = format!("acv-image-{tag}-{}", std::process::id());
        let root = image_dir(tag, !configured);
        let mut env = vec![("ACV_BUS_NAMESPACE", namespace.clone())];
        if configured {
            // The guest somewhere else entirely, named by env, as a pod could mount it.
            let elsewhere = root.join("guest");
            std::fs::create_dir_all(&elsewhere).unwrap();
            std::fs::copy(guest(), elsewhere.join("g.wasm")).unwrap();
            env.push((
                "ACV_SANDBOX_GUEST",
                elsewhere.join("g.wasm").display().to_string(),
            ));
        }
        let admin = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = [
            "--component",
            "catalogue",
            "--bus",
            "nats",
            "--runtime-api",
            &api.to_string(),
            "--admin-addr",
            &admin,
            "--watch-interval",
            "0",
            "--settle",
            "1s",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let child = Killed(spawn(&root, &args, &env));

        let config = BusConfig {
            namespace: namespace.clone(),
            ..BusConfig::default()
        }
        .with_transport(Transport::Nats);
        let bus = acv_bus::connect(&config).await.unwrap();
        let mut client = acv_manager::client::Client::connect(bus).await.unwrap();
        let started = Instant::now();
        let reply = client
            .ask(
                &catalogue,
                "Report the cpu usage of your microservice component.",
                Duration::from_secs(240),
            )
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(root.join("sidecar.log")).unwrap_or_default();
                panic!("{tag}: no report: {e}\n{log}")
            });
        let r = &reply.report;
        assert_eq!(r.status, ReportStatus::Response, "{tag}: {}", r.message);
        assert!(
            !r.steps.is_empty() && r.steps.iter().all(|s| s.program.contains("import acv")),
            "{tag}: the steps ran as Python programs in the sandbox: {:?}",
            r.steps
        );
        let cache = if configured {
            root.join("guest/cache")
        } else {
            root.join("app/cache")
        };
        let cached = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
        eprintln!(
            "{tag}: RESPONSE with {} step(s) after {:.1} s; compiled-code cache {} has {cached} entr(y/ies)",
            r.steps.len(),
            started.elapsed().as_secs_f64(),
            cache.display()
        );
        assert!(
            cached > 0,
            "{tag}: the compiled code was cached next to the guest ({})",
            cache.display()
        );
        drop(child);
        std::fs::remove_dir_all(&root).ok();
    }
    rt.shutdown().await;
}

#[test]
fn without_the_guest_the_copied_sidecar_stops_at_once_saying_where_it_looked() {
    nats_up();
    for configured in [false, true] {
        let root = image_dir(
            if configured {
                "missing-configured"
            } else {
                "missing"
            },
            false,
        );
        let namespace = format!("acv-image-missing-{}", std::process::id());
        let mut env = vec![("ACV_BUS_NAMESPACE", namespace)];
        let expected = if configured {
            let p = root.join("nowhere/acv-guest.wasm");
            env.push(("ACV_SANDBOX_GUEST", p.display().to_string()));
            p
        } else {
            root.join("app/acv-guest.wasm")
        };
        let admin = format!("127.0.0.1:{}", free_port());
        let args: Vec<String> = [
            "--component",
            "catalogue",
            "--bus",
            "nats",
            // Any address: the guest is looked for before the runtime is ever called.
            "--runtime-api",
            "127.0.0.1:9",
            "--admin-addr",
            &admin,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let child = spawn(&root, &args, &env);
        let status = wait_exit(child, Duration::from_secs(30));
        let stderr = std::fs::read_to_string(root.join("sidecar.log")).unwrap_or_default();
        assert!(!status.success(), "it must fail: {stderr}");
        assert!(
            stderr.contains(&expected.display().to_string()) && stderr.contains("ACV_SANDBOX_GUEST"),
            "the message names the path and the setting: {stderr}"
        );
        std::fs::remove_dir_all(&root).ok();
    }
}

/// Waits for `child` to exit (killing it after `limit` and failing).
fn wait_exit(mut child: Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().ok();
    child.wait().ok();
    panic!("the sidecar did not stop within {limit:?}");
}
