//! The sidecar as its container image holds it (manifests/images/Containerfile.sidecar): the built `acv-sidecar`
//! binary and the sandbox guest copied into an empty directory (`app/` standing for the image's `/app`), run from
//! there with a cleared environment holding only what the image and the injector set, configured by env as the
//! injector configures it. It must answer a task whose steps run in the sandbox (against the shop's catalogue on
//! the local runtime, over NATS): with the image's own settings, with the guest found next to the binary, and with
//! the guest somewhere else named by `ACV_SANDBOX_GUEST`. Without the guest it must stop at once — before it even
//! connects to the bus — with a message naming the path it looked at.
//!
//! Needs: `acv-sidecar` built in this target directory (`cargo test --workspace --locked --no-run` builds it), the
//! guest (`make guest`), and NATS on 127.0.0.1:4222 (`make brokers`). A missing one fails the test with that
//! instruction.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acv_bus::{BusConfig, Transport};
use acv_protocol::{ComponentName, ReportStatus};
use common::{shop_spec, start};

const CONTAINERFILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../manifests/images/Containerfile.sidecar"
);

/// The environment of distroless' `nonroot` images (the base of the final stage).
const BASE_IMAGE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),
];

/// What the final stage of Containerfile.sidecar puts in the image.
#[derive(Debug)]
struct Image {
    /// Files the build stage copies to `/out/`, which the final stage copies to `/app/`.
    files: Vec<String>,
    /// `ENV` lines of the final stage.
    env: BTreeMap<String, String>,
    /// `ENTRYPOINT`.
    entrypoint: String,
}

/// Reads the parts of Containerfile.sidecar this test mirrors, failing when its shape is not the one mirrored.
fn image() -> Image {
    let text = std::fs::read_to_string(CONTAINERFILE).expect("Containerfile.sidecar is readable");
    // Continuation lines joined, comments dropped.
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let last_from = lines
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM line");
    let build = &lines[..last_from];
    let last = &lines[last_from..];
    assert!(
        last.contains(&"COPY --from=build /out/ /app/"),
        "the final stage copies /out/ to /app/: {last:?}"
    );
    // The build stage's `cp <files> /out/`.
    let cp = build
        .iter()
        .flat_map(|l| l.split("&&"))
        .map(str::trim)
        .find(|c| c.starts_with("cp ") && c.ends_with(" /out/"))
        .expect("the build stage copies the binary and the guest with `cp ... /out/`");
    let files = cp
        .trim_start_matches("cp ")
        .trim_end_matches(" /out/")
        .split_whitespace()
        .map(|f| Path::new(f).file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let env = last
        .iter()
        .filter_map(|l| l.strip_prefix("ENV "))
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("ENV KEY=VALUE");
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let entrypoint = last
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .map(|e| {
            let list: Vec<String> = serde_json::from_str(e).expect("ENTRYPOINT in exec form");
            assert_eq!(list.len(), 1, "the entrypoint takes no arguments: {list:?}");
            list[0].clone()
        })
        .expect("an ENTRYPOINT");
    Image {
        files,
        env,
        entrypoint,
    }
}

/// `/app/...` of the image, inside `root`.
fn in_root(root: &Path, image_path: &str) -> PathBuf {
    root.join(image_path.trim_start_matches('/'))
}

#[test]
fn this_test_copies_what_the_image_holds() {
    let image = image();
    assert_eq!(image.files, ["acv-sidecar", "acv-guest.wasm"]);
    assert_eq!(image.entrypoint, "/app/acv-sidecar");
    assert_eq!(
        image.env,
        BTreeMap::from([("ACV_SANDBOX_GUEST".to_owned(), "/app/acv-guest.wasm".to_owned())])
    );
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

/// A fresh directory holding the image's files under `app/` (the guest only when `with_guest`).
fn image_dir(tag: &str, with_guest: bool) -> PathBuf {
    let image = image();
    let root = std::env::temp_dir().join(format!("acv-image-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&root).ok();
    let app = in_root(&root, "/app");
    std::fs::create_dir_all(&app).unwrap();
    for file in &image.files {
        let from = match file.as_str() {
            "acv-sidecar" => common::workspace_bin("acv-sidecar"),
            "acv-guest.wasm" if with_guest => guest(),
            "acv-guest.wasm" => continue,
            other => panic!("the image holds {other}, which this test does not know"),
        };
        std::fs::copy(from, app.join(file)).unwrap();
    }
    root
}

/// The image's environment with `/app/...` paths moved under `root`.
fn image_env(root: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = BASE_IMAGE_ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for (k, v) in image().env {
        let v = if v.starts_with("/app/") {
            in_root(root, &v).display().to_string()
        } else {
            v
        };
        env.push((k, v));
    }
    env
}

/// Runs the copied entrypoint from `root` with only `env` (no source tree, no cargo env, no arguments: a pod's
/// sidecar is configured by env).
fn spawn(root: &Path, env: &[(String, String)]) -> Child {
    let mut cmd = Command::new(in_root(root, &image().entrypoint));
    cmd.current_dir(root)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // Logs go to a file: an unread pipe would fill up and block the sidecar.
        .stderr(std::fs::File::create(root.join("sidecar.log")).unwrap());
    cmd.spawn().unwrap()
}

/// The env the injector gives a sidecar (docs/kubernetes.md), with the local runtime instead of Kubernetes.
fn sidecar_env(namespace: &str, runtime_api: &str, nats_url: &str) -> Vec<(String, String)> {
    let admin = format!("127.0.0.1:{}", free_port());
    [
        ("ACV_SIDECAR_COMPONENT", "catalogue"),
        ("ACV_SIDECAR_RUNTIME_API", runtime_api),
        ("ACV_SIDECAR_ADMIN_ADDR", &admin),
        ("ACV_SIDECAR_WATCH_INTERVAL", "0"),
        ("ACV_BUS", "nats"),
        ("ACV_NATS_URL", nats_url),
        ("ACV_BUS_NAMESPACE", namespace),
        ("RUST_LOG", "info"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
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

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// How each run places the guest.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// The image's env (`ACV_SANDBOX_GUEST=/app/acv-guest.wasm`) and the injector's writable cache directory.
    AsInjected,
    /// No `ACV_SANDBOX_GUEST`: the guest next to the binary, its compiled code in `app/cache`.
    NextToBinary,
    /// The guest only elsewhere (as a pod could mount it), named by `ACV_SANDBOX_GUEST`.
    Configured,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copied_sidecar_runs_tasks_with_the_guest_next_to_it_or_configured() {
    nats_up();
    let rt = Arc::new(start(shop_spec(&["catalogue"])).await);
    let api = rt.serve_api("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let catalogue: ComponentName = "catalogue".parse().unwrap();

    for placement in [
        Placement::AsInjected,
        Placement::NextToBinary,
        Placement::Configured,
    ] {
        let tag = format!("{placement:?}").to_lowercase();
        let namespace = format!("acv-image-{tag}-{}", std::process::id());
        let with_guest = !matches!(placement, Placement::Configured);
        let root = image_dir(&tag, with_guest);
        let mut env = sidecar_env(&namespace, &api.to_string(), "nats://127.0.0.1:4222");
        let cache = match placement {
            Placement::AsInjected => {
                env.extend(image_env(&root));
                // The injector's emptyDir at /var/cache/acv.
                let cache = in_root(&root, "/var/cache/acv");
                std::fs::create_dir_all(&cache).unwrap();
                env.push(("ACV_SANDBOX_CACHE_DIR".into(), cache.display().to_string()));
                cache
            }
            Placement::NextToBinary => {
                // Not the image's env: only the base image's.
                env.extend(
                    BASE_IMAGE_ENV
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                );
                in_root(&root, "/app/cache")
            }
            Placement::Configured => {
                env.extend(
                    image_env(&root)
                        .into_iter()
                        .filter(|(k, _)| k != "ACV_SANDBOX_GUEST"),
                );
                let elsewhere = root.join("guest");
                std::fs::create_dir_all(&elsewhere).unwrap();
                std::fs::copy(guest(), elsewhere.join("g.wasm")).unwrap();
                env.push((
                    "ACV_SANDBOX_GUEST".into(),
                    elsewhere.join("g.wasm").display().to_string(),
                ));
                elsewhere.join("cache")
            }
        };
        assert!(
            !in_root(&root, "/app/acv-guest.wasm").exists() || with_guest,
            "{tag}: no guest next to the binary"
        );
        assert_eq!(entries(&cache), 0, "{tag}: the cache starts empty");
        let child = Killed(spawn(&root, &env));

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
                Duration::from_secs(300),
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
        let cached = entries(&cache);
        eprintln!(
            "{tag}: RESPONSE with {} step(s) after {:.1} s; compiled-code cache {} has {cached} entr(y/ies)",
            r.steps.len(),
            started.elapsed().as_secs_f64(),
            cache.display()
        );
        assert!(
            cached > 0,
            "{tag}: the compiled code was cached in {}",
            cache.display()
        );
        drop(child);
        std::fs::remove_dir_all(&root).ok();
    }
    rt.shutdown().await;
}

#[test]
fn without_the_guest_the_copied_sidecar_stops_at_once_saying_where_it_looked() {
    for configured in [false, true] {
        let tag = if configured {
            "missing-configured"
        } else {
            "missing"
        };
        let root = image_dir(tag, false);
        let namespace = format!("acv-image-{tag}-{}", std::process::id());
        // Nothing listens on either address: the guest is looked for before the bus or the runtime is ever
        // called, so the failure must be about the guest.
        let mut env = sidecar_env(&namespace, "127.0.0.1:9", "nats://127.0.0.1:9");
        if configured {
            // The image's own setting, ACV_SANDBOX_GUEST=/app/acv-guest.wasm, which this copy lacks.
            env.extend(image_env(&root));
        } else {
            // Looked for next to the binary: the same place.
            env.extend(
                BASE_IMAGE_ENV
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
        }
        let expected = in_root(&root, "/app/acv-guest.wasm");
        let child = spawn(&root, &env);
        let status = wait_exit(child, Duration::from_secs(60));
        let stderr = std::fs::read_to_string(root.join("sidecar.log")).unwrap_or_default();
        assert!(!status.success(), "{tag}: it must fail: {stderr}");
        assert!(
            stderr.contains(&expected.display().to_string()) && stderr.contains("ACV_SANDBOX_GUEST"),
            "{tag}: the message names the path and the setting: {stderr}"
        );
        assert!(
            !stderr.contains("connecting the"),
            "{tag}: it stopped before connecting the bus: {stderr}"
        );
        eprintln!("{tag}: {}", stderr.trim());
        std::fs::remove_dir_all(&root).ok();
    }
}

/// Waits for `child` to exit (killing it after `limit` and failing: a sidecar that cannot work must not hang).
fn wait_exit(mut child: Child, limit: Duration) -> ExitStatus {
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
