//! The manager's black-box rig: real processes only — `acv-local` running the shop, `acv-manager serve` (SQLite
//! under a temp `--state-dir`, measuring through the runtime's control API), one `acv-sidecar` per component (rules
//! planner, watcher off, so only the manager's subtasks act) — on a real broker, in a namespace of its own. Goals
//! are created with the real `acvctl`. The test reads the runtime itself (control API, its own load generator)
//! rather than taking the manager's word.
//!
//! [`Stack::start_restricted`] runs the same processes with broker identities (issue #11): every process gets its
//! own per-agent broker user (secrets handed over as `*_FILE`s) and `ACV_BUS_VERIFY_SENDER=true`, in a namespace of
//! its own — a fresh RabbitMQ vhost with users the test creates and deletes, or a private nats-server with the
//! generated authorization config.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use acv_bus::testing::{NatsServer, RabbitUsers};
use acv_bus::{BusConfig, Principal, Transport};
use acv_cluster::{Cluster, RemoteCluster};
use acv_protocol::ComponentName;

use crate::common;

/// `acv-manager`, `acvctl`, `acv-sidecar`: binaries of other packages.
pub fn bin(name: &str) -> PathBuf {
    common::workspace_bin(name)
}

/// The sandbox guest of this checkout (`make guest`).
fn guest() -> PathBuf {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sandbox/guest/build/acv-guest.wasm"
    ));
    assert!(p.is_file(), "{} missing: run `make guest` first", p.display());
    p
}

/// Reads lines from `rx` until one starts with `prefix`; returns the rest of it.
fn line_after(rx: &Receiver<String>, prefix: &str, secs: u64, what: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("{what} did not print {prefix:?} within {secs}s: {e}"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_owned();
        }
    }
}

fn spawn_lines(cmd: &mut Command) -> (Child, Receiver<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("process starts");
    let stdout = child.stdout.take().expect("piped stdout");
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

/// Timings of the manager under test.
#[derive(Debug, Clone)]
pub struct ManagerTimings {
    /// `--metrics-window`, s.
    pub metrics_window: f64,
    /// `--settle`.
    pub settle: &'static str,
    /// `--subtask-timeout`.
    pub subtask_timeout: &'static str,
    /// `--liveness`.
    pub liveness: &'static str,
    /// `--max-rounds`.
    pub max_rounds: u32,
}

impl Default for ManagerTimings {
    fn default() -> Self {
        Self {
            metrics_window: 5.0,
            settle: "6s",
            subtask_timeout: "60s",
            liveness: "4s",
            max_rounds: 4,
        }
    }
}

/// Per-agent broker users of a stack, made by the test and removed when dropped.
pub enum Restricted {
    /// A fresh vhost (= namespace) on the local RabbitMQ with one user per principal.
    Rabbit(RabbitUsers),
    /// A private nats-server with the generated `authorization` block.
    Nats(NatsServer),
}

impl Restricted {
    /// Users for the manager, operators and the sidecars of `components`.
    pub fn create(transport: Transport, components: &[&str]) -> Self {
        let mut principals = vec![Principal::Manager, Principal::Operator];
        principals.extend(
            components
                .iter()
                .map(|c| Principal::Component(ComponentName::new(*c).expect("component name"))),
        );
        match transport {
            Transport::Amqp => {
                Restricted::Rabbit(RabbitUsers::create(&principals).expect("rabbitmqctl must work"))
            }
            Transport::Nats => {
                Restricted::Nats(NatsServer::start(&principals, "").expect("nats-server must start"))
            }
            Transport::Memory => panic!("the in-memory bus has no broker users"),
        }
    }

    /// The bus namespace.
    pub fn namespace(&self) -> &str {
        match self {
            Restricted::Rabbit(u) => &u.namespace,
            Restricted::Nats(s) => &s.namespace,
        }
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        match self {
            Restricted::Rabbit(_) => Transport::Amqp,
            Restricted::Nats(_) => Transport::Nats,
        }
    }

    /// The bus config of `principal` (its own user, sender verification on), for the test's own clients.
    pub fn config(&self, principal: &Principal) -> BusConfig {
        match self {
            Restricted::Rabbit(u) => u.config(principal),
            Restricted::Nats(s) => s.config(principal),
        }
    }

    /// Sets the environment of a process that runs as `principal`: its URL/user, its secret in a file under
    /// `secrets` (as a Kubernetes Secret mount would hand it over), sender verification on.
    pub fn env(&self, principal: &Principal, secrets: &std::path::Path, cmd: &mut Command) {
        let file = |what: &str, value: &str| {
            std::fs::create_dir_all(secrets).expect("secrets directory");
            let path = secrets.join(format!("{}.{what}", principal.user(self.namespace())));
            std::fs::write(&path, value).expect("secret file");
            path
        };
        let config = self.config(principal);
        // The files are the only source: a value in the test's own environment would win over them.
        cmd.env_remove(acv_bus::config::ENV_AMQP_URL)
            .env_remove(acv_bus::config::ENV_NATS_PASSWORD);
        match self {
            Restricted::Rabbit(_) => {
                cmd.env(
                    format!("{}_FILE", acv_bus::config::ENV_AMQP_URL),
                    file("amqp-url", &config.amqp_url),
                );
            }
            Restricted::Nats(s) => {
                cmd.env(acv_bus::config::ENV_NATS_URL, &config.nats_url)
                    .env(
                        acv_bus::config::ENV_NATS_USER,
                        config.nats_user.as_deref().unwrap_or_default(),
                    )
                    .env(
                        format!("{}_FILE", acv_bus::config::ENV_NATS_PASSWORD),
                        file("password", &s.password(principal)),
                    );
            }
        }
        cmd.env(acv_bus::config::ENV_BUS_VERIFY_SENDER, "true");
    }
}

/// The running processes.
pub struct Stack {
    /// Broker.
    pub transport: Transport,
    namespace: String,
    local: Child,
    /// The runtime's control API.
    pub runtime_api: SocketAddr,
    /// Each shop service's front.
    pub addrs: BTreeMap<String, SocketAddr>,
    manager: Option<Child>,
    /// The manager's HTTP API (fixed for the life of the stack, so a restarted manager keeps its URL).
    pub manager_api: SocketAddr,
    timings: ManagerTimings,
    state_dir: PathBuf,
    sidecars: BTreeMap<String, Child>,
    /// Per-agent broker users (dropped after the processes, see [`Drop`]); `None`: one default user for all.
    restricted: Option<Restricted>,
    /// Each sidecar's admin address (port 0 unless the stack runs with restricted users).
    sidecar_admin: BTreeMap<String, SocketAddr>,
    /// The bearer token the manager's API requires (with restricted users), given to `acvctl` in its env.
    api_token: Option<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

// === impl Stack ===

impl Stack {
    /// The shop on `acv-local` (all services), then the manager; no sidecars yet.
    pub fn start(transport: Transport, timings: ManagerTimings) -> Self {
        Self::start_with(transport, timings, None)
    }

    /// The same with per-agent broker users and sender verification in every process.
    pub fn start_restricted(restricted: Restricted, timings: ManagerTimings) -> Self {
        Self::start_with(restricted.transport(), timings, Some(restricted))
    }

    fn start_with(transport: Transport, timings: ManagerTimings, restricted: Option<Restricted>) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_acv-local"));
        cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/shop.yaml"))
            .args(["--api", "127.0.0.1:0"])
            .arg(format!("SHOP_BIN={}", env!("CARGO_BIN_EXE_acv-shop")))
            .args(["PROBE_INTERVAL_MS=200", "STARTUP_GRACE_MS=3000"]);
        let (local, rx) = common::spawn_shop_binary(&mut cmd);
        let mut addrs = BTreeMap::new();
        let mut runtime_api = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("acv-local prints its addresses");
            if let Some(a) = line.strip_prefix("api        http://") {
                runtime_api = Some(a.parse().expect("api address"));
            } else if line.starts_with("all services ready") {
                break;
            } else if let Some((name, url)) = line.split_once(" http://")
                && let Ok(a) = url.trim().parse()
            {
                addrs.insert(name.trim().to_owned(), a);
            }
        }
        let namespace = match &restricted {
            Some(r) => r.namespace().to_owned(),
            None => format!("acv-mgr-{}", uuid::Uuid::new_v4().simple()),
        };
        let state_dir = std::env::temp_dir().join(format!("{namespace}-state"));
        let mut stack = Self {
            transport,
            namespace,
            local,
            runtime_api: runtime_api.expect("acv-local printed its API address"),
            addrs,
            manager: None,
            manager_api: SocketAddr::from(([127, 0, 0, 1], free_port())),
            timings,
            state_dir,
            sidecars: BTreeMap::new(),
            sidecar_admin: BTreeMap::new(),
            api_token: restricted
                .as_ref()
                .map(|_| uuid::Uuid::new_v4().simple().to_string()),
            restricted,
        };
        stack.start_manager();
        stack
    }

    /// The bus settings of a process that acts as `principal`.
    fn bus_env(&self, cmd: &mut Command, principal: &Principal) {
        cmd.env(acv_bus::config::ENV_BUS, self.transport.to_string())
            .env(acv_bus::config::ENV_BUS_NAMESPACE, &self.namespace)
            .env("RUST_LOG", "info");
        if let Some(r) = &self.restricted {
            r.env(principal, &self.secrets_dir(), cmd);
        }
    }

    fn secrets_dir(&self) -> PathBuf {
        self.state_dir.with_extension("secrets")
    }

    /// Per-agent broker users, when the stack runs with them.
    pub fn restricted(&self) -> Option<&Restricted> {
        self.restricted.as_ref()
    }

    /// Runs `acv-manager ARGS` as a bus client (`task send`, `bus dead-letters`) acting as `principal`.
    pub async fn manager_cli(&self, principal: &Principal, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("acv-manager"));
        self.bus_env(&mut cmd, principal);
        cmd.args(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("acv-manager runs"))
            .await
            .expect("acv-manager's thread")
    }

    /// Starts (or restarts) `acv-manager serve` on the same API address and state directory.
    pub fn start_manager(&mut self) {
        assert!(self.manager.is_none(), "the manager is already running");
        let t = &self.timings;
        let mut cmd = Command::new(bin("acv-manager"));
        self.bus_env(&mut cmd, &Principal::Manager);
        if let Some(token) = &self.api_token {
            cmd.env("ACV_MANAGER_TOKEN", token);
        }
        cmd.arg("serve")
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(["--api-addr", &self.manager_api.to_string()])
            .args(["--runtime-api", &self.runtime_api.to_string()])
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--metrics-window", &t.metrics_window.to_string()])
            .args(["--settle", t.settle])
            .args(["--subtask-timeout", t.subtask_timeout])
            .args(["--liveness", t.liveness])
            .args(["--max-rounds", &t.max_rounds.to_string()]);
        let (child, rx) = spawn_lines(&mut cmd);
        let api = line_after(&rx, "acv-manager API on http://", 30, "acv-manager");
        assert_eq!(api, self.manager_api.to_string());
        // Keep draining its stdout so it never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        self.manager = Some(child);
    }

    /// SIGKILLs the manager process (no shutdown of any kind).
    pub fn kill_manager(&mut self) {
        let mut child = self.manager.take().expect("the manager is running");
        common::kill9(child.id());
        let _status = child.wait();
    }

    /// Starts the sidecar of `component` (rules planner, watcher off, fast heartbeats).
    pub fn start_sidecar(&mut self, component: &str) {
        assert!(
            !self.sidecars.contains_key(component),
            "{component} already has a sidecar"
        );
        let mut cmd = Command::new(bin("acv-sidecar"));
        let principal = Principal::Component(ComponentName::new(component).expect("component name"));
        self.bus_env(&mut cmd, &principal);
        // With restricted users the test reads the sidecar's /metrics (sender rejections), so it needs the address.
        let admin = match self.restricted {
            Some(_) => SocketAddr::from(([127, 0, 0, 1], free_port())),
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        cmd.args(["--component", component])
            .args(["--runtime-api", &self.runtime_api.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .arg("--guest")
            .arg(guest())
            .args(["--watch-interval", "0", "--heartbeat", "1s", "--settle", "2s"])
            .args(["--sandbox-idle", "0"])
            .stdout(Stdio::null());
        let child = cmd.spawn().expect("acv-sidecar starts");
        self.sidecars.insert(component.to_owned(), child);
        self.sidecar_admin.insert(component.to_owned(), admin);
    }

    /// SIGKILLs the sidecar of `component`.
    pub fn kill_sidecar(&mut self, component: &str) {
        let mut child = self.sidecars.remove(component).expect("that sidecar runs");
        common::kill9(child.id());
        let _status = child.wait();
    }

    /// The manager's URL for `acvctl`.
    pub fn manager_url(&self) -> String {
        format!("http://{}", self.manager_api)
    }

    /// Runs `acvctl` against the manager (with the API token, when the manager requires one).
    pub async fn acvctl(&self, args: &[&str]) -> Output {
        self.acvctl_with_token(self.api_token.as_deref(), args).await
    }

    /// Runs `acvctl` with `token` (or none) in its environment.
    pub async fn acvctl_with_token(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin("acvctl"));
        cmd.env_remove("ACV_MANAGER_TOKEN");
        if let Some(t) = token {
            cmd.env("ACV_MANAGER_TOKEN", t);
        }
        cmd.args(["--manager", &self.manager_url()]).args(args);
        // `acvctl ... --wait` blocks for minutes: off the runtime's threads.
        tokio::task::spawn_blocking(move || cmd.output().expect("acvctl runs"))
            .await
            .expect("acvctl's thread")
    }

    /// The sum of the samples of `metric` on the admin server (`/metrics`) of `component`'s sidecar (started with
    /// restricted users); 0 when it has none.
    pub async fn sidecar_metric(&self, component: &str, metric: &str) -> f64 {
        let admin = self.sidecar_admin[component];
        assert_ne!(
            admin.port(),
            0,
            "sidecar admin addresses are known only with restricted users"
        );
        let (code, body) = common::get(admin, "/metrics").await;
        assert_eq!(code, 200, "GET /metrics of {component}'s sidecar: {body}");
        body.lines()
            .filter(|l| l.strip_prefix(metric).is_some_and(|r| r.starts_with(['{', ' '])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// GETs `path` from the manager's API (with its token): status and body.
    pub async fn api_get(&self, path: &str) -> (u16, String) {
        common::get_with_token(self.manager_api, path, self.api_token.as_deref()).await
    }

    /// Waits until the manager lists every one of `components` as live.
    pub async fn wait_agents_live(&self, components: &[&str], secs: u64) {
        common::eventually(secs, "sidecars live in the manager's registry", || async {
            let (code, body) = self.api_get("/v1/agents").await;
            if code != 200 {
                return None;
            }
            let agents: serde_json::Value = serde_json::from_str(&body).ok()?;
            let live = |c: &str| {
                agents.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|x| x["component"].as_str() == Some(c) && x["live"].as_bool() == Some(true))
                })
            };
            components.iter().all(|c| live(c)).then_some(())
        })
        .await;
    }

    /// `GET /v1/goals/{id}`: the goal, its subtasks and events.
    pub async fn goal(&self, id: &str) -> serde_json::Value {
        let (code, body) = self.api_get(&format!("/v1/goals/{id}")).await;
        assert_eq!(code, 200, "GET goal {id}: {body}");
        serde_json::from_str(&body).expect("goal JSON")
    }

    /// The goal's events as lines, for failure messages.
    pub async fn story(&self, id: &str) -> String {
        let g = self.goal(id).await;
        g["events"]
            .as_array()
            .map(|es| {
                es.iter()
                    .map(|e| {
                        format!(
                            "  {} {}",
                            e["state"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// A read-only view of `component` through the runtime's control API (what the test measures with).
    pub fn cluster(&self, component: &str) -> RemoteCluster {
        RemoteCluster::new(self.runtime_api, ComponentName::new(component).unwrap()).unwrap()
    }

    /// `component`'s CPU use in % of its limit over the last 4 s, by the test's own measurement (0 when unmeasured).
    pub async fn cpu(&self, component: &str) -> f64 {
        self.cluster(component)
            .metrics(4.0)
            .await
            .unwrap()
            .cpu_percent_of_limit
            .unwrap_or(0.0)
    }

    /// `component`'s desired replicas.
    pub async fn replicas(&self, component: &str) -> u32 {
        self.cluster(component).status().await.unwrap().desired_replicas
    }

    /// A stressor next to catalogue's pod (for 300 s), until its CPU is over 40% of the limit; returns that value.
    pub async fn stress_catalogue(&self) -> f64 {
        self.cluster("catalogue")
            .inject_selected(
                acv_cluster::Fault::CpuStress {
                    workers: 1,
                    load_percent: 20,
                },
                acv_cluster::Selector::ALL,
                Some(Duration::from_secs(300)),
            )
            .await
            .unwrap();
        common::eventually(60, "catalogue CPU over 40% of its limit", || async {
            let v = self.cpu("catalogue").await;
            (v > 40.0).then_some(v)
        })
        .await
    }

    /// The front of a shop service.
    pub fn addr(&self, service: &str) -> SocketAddr {
        self.addrs[service]
    }

    /// Stops every process, deletes the bus namespace and the state directory.
    pub async fn stop(mut self) {
        for (_, mut c) in std::mem::take(&mut self.sidecars) {
            common::kill_term(c.id());
            let _status = c.wait();
        }
        if let Some(mut m) = self.manager.take() {
            common::kill_term(m.id());
            let _status = m.wait();
        }
        common::kill_term(self.local.id());
        let _status = self.local.wait();
        let config = match &self.restricted {
            Some(r) => r.config(&Principal::Manager),
            None => {
                let mut config = BusConfig::default().with_transport(self.transport);
                config.namespace.clone_from(&self.namespace);
                config
            }
        };
        if let Ok(bus) = acv_bus::connect(&config).await {
            let _deleted = bus.delete_namespace().await;
        }
        let _removed = std::fs::remove_dir_all(&self.state_dir);
        let _removed = std::fs::remove_dir_all(self.secrets_dir());
        // Dropping `self` now deletes the per-agent users (vhost) or stops the private nats-server.
    }
}

impl Drop for Stack {
    /// A failed test still stops its processes (SIGKILL; the runtime's children follow their parent).
    fn drop(&mut self) {
        for c in self.sidecars.values_mut().chain(self.manager.as_mut()) {
            let _killed = c.kill();
            let _status = c.wait();
        }
        if self.local.try_wait().ok().flatten().is_none() {
            common::kill_term(self.local.id());
            let _status = self.local.wait();
        }
        let _removed = std::fs::remove_dir_all(self.secrets_dir());
        // `restricted` is dropped after this body: the users go only once no process uses them.
    }
}
