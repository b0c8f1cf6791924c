//! Sidecar configuration. Every flag has an env fallback (`ACV_SIDECAR_*`), which is how the injector configures
//! a sidecar in a pod; the bus is configured by the `ACV_BUS*` keys of [`acv_bus::config`].

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use acv_bus::Transport;
use acv_protocol::ComponentName;
use clap::Parser;

/// Env key: the component this sidecar maintains (required).
pub const ENV_COMPONENT: &str = "ACV_SIDECAR_COMPONENT";
/// Env key: admin server address, default `127.0.0.1:9991`.
pub const ENV_ADMIN_ADDR: &str = "ACV_SIDECAR_ADMIN_ADDR";
/// Env key: heartbeat interval, e.g. `10s`.
pub const ENV_HEARTBEAT: &str = "ACV_SIDECAR_HEARTBEAT";
/// Env key: control API address of the local runtime that runs the component (loopback), e.g. `127.0.0.1:7070`.
pub const ENV_RUNTIME_API: &str = "ACV_SIDECAR_RUNTIME_API";
/// Env key: `true` to use the Kubernetes backend.
pub const ENV_KUBE: &str = "ACV_SIDECAR_KUBE";
/// Env key: planner, `rules` (default), `llm` (configured by the `ACV_LLM_*` keys) or `none`.
pub const ENV_PLANNER: &str = "ACV_SIDECAR_PLANNER";
/// Env key: safety mode, `autonomous` (default), `approve` or `observe`.
pub const ENV_MODE: &str = "ACV_SIDECAR_MODE";
/// Env key: interval of the own SLO health check, e.g. `30s`; `0` turns it off.
pub const ENV_WATCH_INTERVAL: &str = "ACV_SIDECAR_WATCH_INTERVAL";

/// Env key: release the sandbox after this long without a step, e.g. `60s`; `0` keeps it loaded.
pub const ENV_SANDBOX_IDLE: &str = "ACV_SIDECAR_SANDBOX_IDLE";
/// Env key: address of the peer API (mutual TLS), e.g. `127.0.0.1:9443`; unset: no peer API.
pub const ENV_PEER_ADDR: &str = "ACV_SIDECAR_PEER_ADDR";
/// Env key: URL announced to peers (default `https://<bound address>`).
pub const ENV_PEER_URL: &str = "ACV_SIDECAR_PEER_URL";
/// Env key: directory with `ca.pem`, `<component>.pem`, `<component>.key` (as `acv-certs` writes them).
pub const ENV_PEER_TLS_DIR: &str = "ACV_SIDECAR_PEER_TLS_DIR";
/// Env key: CA certificate file (overrides the one in the TLS directory).
pub const ENV_PEER_CA: &str = "ACV_SIDECAR_PEER_CA";
/// Env key: own certificate file.
pub const ENV_PEER_CERT: &str = "ACV_SIDECAR_PEER_CERT";
/// Env key: own private key file.
pub const ENV_PEER_KEY: &str = "ACV_SIDECAR_PEER_KEY";

/// Env key: how long a call queued in approve mode waits for an operator, e.g. `15m`.
pub const ENV_APPROVAL_TIMEOUT: &str = "ACV_SIDECAR_APPROVAL_TIMEOUT";
/// Env key: most audit records kept while the manager cannot be reached (oldest dropped beyond).
pub const ENV_AUDIT_BUFFER: &str = "ACV_SIDECAR_AUDIT_BUFFER";
/// Env key: how often audit records are sent to the manager, e.g. `1s`.
pub const ENV_AUDIT_FLUSH: &str = "ACV_SIDECAR_AUDIT_FLUSH";
/// Env key: the no-regression guard on or off (`true`/`false`).
pub const ENV_GUARD: &str = "ACV_SIDECAR_GUARD";

fn parse_tolerance(s: &str) -> Result<f64, String> {
    let t: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (e.g. 0.2: a fifth of one objective's threshold)"))?;
    if !t.is_finite() || !(0.0..=10.0).contains(&t) {
        return Err(format!("{s} is out of range: the tolerance is between 0 and 10"));
    }
    Ok(t)
}

/// Which planner the sidecar runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlannerChoice {
    /// Deterministic playbooks, no LLM (the offline default).
    Rules,
    /// An OpenAI-compatible LLM configured by `ACV_LLM_CONFIG` / `ACV_LLM_*`.
    Llm,
    /// Do nothing; answer every task with an ISSUE saying so.
    None,
}

/// acv sidecar maintainer.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "acv-sidecar",
    version,
    about = "acv sidecar maintainer for one microservice"
)]
pub struct SidecarConfig {
    /// The component (microservice) this sidecar maintains, e.g. `catalogue`.
    #[arg(long, env = ENV_COMPONENT)]
    pub component: ComponentName,
    /// Bus transport: memory, amqp or nats (memory only makes sense inside one process).
    #[arg(long, env = acv_bus::config::ENV_BUS, default_value = "amqp")]
    pub bus: Transport,
    /// Admin server (/live, /ready, /metrics) address.
    #[arg(long, env = ENV_ADMIN_ADDR, default_value = "127.0.0.1:9991")]
    pub admin_addr: SocketAddr,
    /// Interval between heartbeats on the broadcast.
    #[arg(long, env = ENV_HEARTBEAT, default_value = "10s", value_parser = acv_core::env::parse_duration)]
    pub heartbeat: Duration,
    /// How long to wait for an in-flight task when shutting down.
    #[arg(long, default_value = "10s", value_parser = acv_core::env::parse_duration)]
    pub grace: Duration,
    /// Control API of the local runtime running the component (see `acv-local`). Without a cluster backend the
    /// sidecar can receive tasks but not act on them.
    #[arg(long, env = ENV_RUNTIME_API)]
    pub runtime_api: Option<SocketAddr>,
    /// Use the Kubernetes backend (in-cluster or kubeconfig credentials; `ACV_KUBE_*` settings, see
    /// docs/kubernetes.md) instead of a local runtime.
    #[arg(long, env = ENV_KUBE, conflicts_with = "runtime_api")]
    pub kube: bool,
    /// Planner.
    #[arg(long, env = ENV_PLANNER, value_enum, default_value = "rules")]
    pub planner: PlannerChoice,
    /// Safety mode: autonomous, approve (mutating calls wait for an operator) or observe (read-only).
    #[arg(long, env = ENV_MODE, default_value = "autonomous")]
    pub mode: acv_sandbox::SafetyMode,
    /// Interval of the own SLO health check (detect, diagnose, mitigate); 0 turns it off.
    #[arg(long, env = ENV_WATCH_INTERVAL, default_value = "30s", value_parser = acv_core::env::parse_duration)]
    pub watch_interval: Duration,
    /// Failing health checks in a row before the sidecar acts (transient states such as a rollout in progress
    /// should not be "fixed").
    #[arg(long, default_value_t = 2)]
    pub watch_confirm: u32,
    /// Metrics window of the health check, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub watch_window_secs: f64,
    /// After a mitigation that did not fix the problem: escalate once, then wait this long before trying the same
    /// situation again (doubling each time, up to --backoff-max).
    #[arg(long, default_value = "60s", value_parser = acv_core::env::parse_duration)]
    pub backoff_initial: Duration,
    /// Longest wait between tries of an unfixable situation.
    #[arg(long, default_value = "30m", value_parser = acv_core::env::parse_duration)]
    pub backoff_max: Duration,
    /// Healthy time needed before capacity added during an incident (replicas, limits) is given back.
    #[arg(long, default_value = "120s", value_parser = acv_core::env::parse_duration)]
    pub quiet_period: Duration,
    /// SLO: maximum P99 latency in ms.
    #[arg(long, default_value_t = 200.0)]
    pub slo_p99_ms: f64,
    /// SLO: maximum CPU use in % of the limit.
    #[arg(long, default_value_t = 50.0)]
    pub slo_cpu_percent: f64,
    /// SLO: maximum memory use in % of the limit.
    #[arg(long, default_value_t = 50.0)]
    pub slo_memory_percent: f64,
    /// SLO: maximum share of 5xx answers in %; not watched unless given.
    #[arg(long)]
    pub slo_error_rate_percent: Option<f64>,
    /// Planner turns allowed per task.
    #[arg(long, default_value_t = 8)]
    pub max_turns: u32,
    /// Wait after a mutating step before observing again.
    #[arg(long, default_value = "3s", value_parser = acv_core::env::parse_duration)]
    pub settle: Duration,
    /// No-regression guard: after a step that changed the component has settled, put the previous revision and
    /// replica count back when health is worse than before it by the SLO measure (`--guard false` lets every change
    /// stand).
    #[arg(long, env = ENV_GUARD, default_value_t = true, action = clap::ArgAction::Set)]
    pub guard: bool,
    /// How much worse counts as a regression: the sum over the objectives of how far each is past its threshold,
    /// relative to it (0.2 = a fifth of one threshold), must grow by more than this.
    #[arg(long, default_value_t = crate::guard::DEFAULT_TOLERANCE, value_parser = parse_tolerance)]
    pub guard_tolerance: f64,
    /// Wall-clock limit of one step (one program run in the sandbox), host calls included. A step that asks a peer
    /// to act waits for the peer's own planner, so give it room when peers help each other.
    #[arg(long, default_value = "10s", value_parser = acv_core::env::parse_duration)]
    pub step_timeout: Duration,
    /// The sandbox's guest component (`acv-guest.wasm`, built by `make guest`). Default: `acv-guest.wasm` next to
    /// this binary.
    #[arg(long, env = acv_sandbox::guest::ENV_GUEST)]
    pub guest: Option<PathBuf>,
    /// Directory of the guest's compiled-code cache. Default: `cache/` next to the guest.
    #[arg(long, env = acv_sandbox::guest::ENV_CACHE_DIR)]
    pub sandbox_cache_dir: Option<PathBuf>,
    /// The sandbox is loaded at the first step; release it after this long without one (keeps an idle sidecar
    /// small). 0 keeps it loaded.
    #[arg(long, env = ENV_SANDBOX_IDLE, default_value = "60s", value_parser = acv_core::env::parse_duration)]
    pub sandbox_idle: Duration,
    /// Serve the peer API (mechanism 3, mutual TLS) on this address; needs the TLS files below.
    #[arg(long, env = ENV_PEER_ADDR)]
    pub peer_addr: Option<SocketAddr>,
    /// URL announced to peers in registration and heartbeats (default `https://<bound peer address>`).
    #[arg(long, env = ENV_PEER_URL)]
    pub peer_url: Option<String>,
    /// Directory with `ca.pem`, `<component>.pem` and `<component>.key` (see `acv-certs`).
    #[arg(long, env = ENV_PEER_TLS_DIR)]
    pub peer_tls_dir: Option<std::path::PathBuf>,
    /// CA certificate (PEM) peers must chain to; overrides `--peer-tls-dir`.
    #[arg(long, env = ENV_PEER_CA)]
    pub peer_ca: Option<std::path::PathBuf>,
    /// Own certificate (PEM); overrides `--peer-tls-dir`.
    #[arg(long, env = ENV_PEER_CERT)]
    pub peer_cert: Option<std::path::PathBuf>,
    /// Own private key (PEM); overrides `--peer-tls-dir`.
    #[arg(long, env = ENV_PEER_KEY)]
    pub peer_key: Option<std::path::PathBuf>,
    /// A known peer, `component=https://host:port` (repeatable); others are learned from the bus broadcast.
    #[arg(long = "peer", value_parser = parse_peer)]
    pub peers: Vec<(ComponentName, String)>,
    /// Longest chain of peer calls this sidecar serves.
    #[arg(long, default_value_t = 3)]
    pub peer_max_hops: u32,
    /// Approve mode: how long a queued mutating call waits for an operator's decision; after that it never runs
    /// and the episode's report says so.
    #[arg(long, env = ENV_APPROVAL_TIMEOUT, default_value = "15m", value_parser = acv_core::env::parse_duration)]
    pub approval_timeout: Duration,
    /// Most audit records buffered while the manager or bus cannot be reached; beyond it the oldest are dropped
    /// (counted in acv_audit_dropped_total).
    #[arg(long, env = ENV_AUDIT_BUFFER, default_value_t = crate::audit::DEFAULT_CAPACITY)]
    pub audit_buffer: usize,
    /// How often buffered audit records are sent to the manager.
    #[arg(long, env = ENV_AUDIT_FLUSH, default_value = "1s", value_parser = acv_core::env::parse_duration)]
    pub audit_flush: Duration,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
}

fn parse_peer(s: &str) -> Result<(ComponentName, String), String> {
    let (c, url) = s.split_once('=').ok_or("expected component=https://host:port")?;
    let c = ComponentName::new(c).map_err(|e| e.to_string())?;
    crate::peer::directory::parse_peer_url(url).map_err(|e| e.to_string())?;
    Ok((c, url.to_owned()))
}

// === impl SidecarConfig ===

impl SidecarConfig {
    /// The peer TLS files, if configured (each file from its own flag, else from `--peer-tls-dir`).
    pub fn peer_tls(&self) -> Result<Option<acv_pki::TlsFiles>, String> {
        let from_dir = self
            .peer_tls_dir
            .as_deref()
            .map(|d| acv_pki::TlsFiles::in_dir(d, &self.component));
        let pick = |own: &Option<std::path::PathBuf>, dir: Option<std::path::PathBuf>, what: &str| {
            own.clone()
                .or(dir)
                .ok_or(format!("the peer API needs --peer-{what} or --peer-tls-dir"))
        };
        if from_dir.is_none() && self.peer_ca.is_none() && self.peer_cert.is_none() && self.peer_key.is_none()
        {
            return Ok(None);
        }
        Ok(Some(acv_pki::TlsFiles {
            ca: pick(&self.peer_ca, from_dir.as_ref().map(|f| f.ca.clone()), "ca")?,
            cert: pick(&self.peer_cert, from_dir.as_ref().map(|f| f.cert.clone()), "cert")?,
            key: pick(&self.peer_key, from_dir.as_ref().map(|f| f.key.clone()), "key")?,
        }))
    }

    /// The audit trail this configuration asks for (sent by [`crate::run::run`]).
    pub fn audit_log(&self) -> crate::audit::AuditLog {
        crate::audit::AuditLog::new(self.component.clone(), self.audit_buffer)
    }

    /// The no-regression guard's settings from the flags.
    pub fn guard(&self) -> crate::guard::GuardConfig {
        crate::guard::GuardConfig {
            enabled: self.guard,
            tolerance: self.guard_tolerance,
        }
    }

    /// The SLO policy from the flags.
    pub fn slo(&self) -> acv_protocol::SloPolicy {
        acv_protocol::SloPolicy {
            p99_ms: self.slo_p99_ms,
            cpu_percent: self.slo_cpu_percent,
            memory_percent: self.slo_memory_percent,
            error_rate_percent: self.slo_error_rate_percent,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_rejects_bad_names() {
        let c = SidecarConfig::try_parse_from(["acv-sidecar", "--component", "catalogue", "--bus", "nats"])
            .unwrap();
        assert_eq!(c.component.as_str(), "catalogue");
        assert_eq!(c.bus, Transport::Nats);
        let err = SidecarConfig::try_parse_from(["acv-sidecar", "--component", "Cata Logue"]).unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
        let err =
            SidecarConfig::try_parse_from(["acv-sidecar", "--component", "x", "--bus", "kafka"]).unwrap_err();
        assert!(err.to_string().contains("unknown bus transport"), "{err}");
        let err =
            SidecarConfig::try_parse_from(["acv-sidecar", "--component", "x", "--mode", "yolo"]).unwrap_err();
        assert!(err.to_string().contains("unknown safety mode"), "{err}");
        let c = SidecarConfig::try_parse_from(["acv-sidecar", "--component", "x", "--watch-interval", "0"])
            .unwrap();
        assert!(c.watch_interval.is_zero());
        assert_eq!(c.planner, PlannerChoice::Rules);
        assert_eq!(c.guest, None);
        assert_eq!(c.sandbox_idle, Duration::from_secs(60));
        let c = SidecarConfig::try_parse_from([
            "acv-sidecar",
            "--component",
            "x",
            "--guest",
            "/opt/acv/acv-guest.wasm",
            "--sandbox-idle",
            "0",
        ])
        .unwrap();
        assert_eq!(
            c.guest.as_deref(),
            Some(std::path::Path::new("/opt/acv/acv-guest.wasm"))
        );
        assert!(c.sandbox_idle.is_zero());
    }

    #[test]
    fn peer_flags() {
        let c = SidecarConfig::try_parse_from([
            "acv-sidecar",
            "--component",
            "front-end",
            "--peer-tls-dir",
            "/c",
            "--peer-key",
            "/k",
            "--peer",
            "catalogue=https://127.0.0.1:9443",
        ])
        .unwrap();
        let tls = c.peer_tls().unwrap().unwrap();
        assert_eq!(tls.cert, std::path::PathBuf::from("/c/front-end.pem"));
        assert_eq!(tls.key, std::path::PathBuf::from("/k"));
        assert_eq!(c.peers[0].0.as_str(), "catalogue");
        let none = SidecarConfig::try_parse_from(["acv-sidecar", "--component", "x"]).unwrap();
        assert!(none.peer_tls().unwrap().is_none());
        let partial =
            SidecarConfig::try_parse_from(["acv-sidecar", "--component", "x", "--peer-ca", "/ca"]).unwrap();
        assert!(partial.peer_tls().unwrap_err().contains("--peer-cert"));
        for bad in [
            "catalogue",
            "catalogue=http://h:1",
            "catalogue=https://h",
            "Bad=https://h:1",
        ] {
            assert!(
                SidecarConfig::try_parse_from(["acv-sidecar", "--component", "x", "--peer", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
