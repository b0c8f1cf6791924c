//! The runtime file: services, commands, ports, replicas, versions, env and limits, in YAML.
//!
//! ```yaml
//! settings: { probe_interval_ms: 250, backoff_initial_ms: 500 }
//! stressor: ["${SHOP_BIN}", "stress"]          # optional: command used for CPU/memory stress faults
//! services:
//!   - name: catalogue
//!     command: ["${SHOP_BIN}", "catalogue"]    # gets PORT in its env; ${PORT} in args is replaced too
//!     port: ${CATALOGUE_PORT:-0}               # the front's stable port; 0 = any free port
//!     replicas: 1
//!     version: "0.3.5"
//!     versions: { "0.3.5": {}, "0.3.6-crash": { SHOP_MODE: crash } }
//!     env: { WORK_US: "300" }
//!     limits: { cpu_millis: 500, memory_mib: 256 }
//! ```
//! `${NAME}` and `${NAME:-default}` are replaced in the whole text from the variables given when loading, before
//! YAML parsing; `${PORT}`, `${REPLICA}` and `${VERSION}` are left for spawn time.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use acv_protocol::{ComponentName, ResourceLimits};
use serde::Deserialize;

use acv_cluster::{ClusterError, validate};

/// Placeholders filled when a replica is spawned, not when the file is loaded.
pub const SPAWN_VARS: [&str; 3] = ["PORT", "REPLICA", "VERSION"];

/// A whole runtime file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// Supervisor timings and bounds.
    #[serde(default)]
    pub settings: Settings,
    /// Command (program and leading args) that burns CPU / holds memory for stress faults. It is called with
    /// `--cpu-workers N --cpu-load P --mem-mib M` and must exit when its parent dies.
    #[serde(default)]
    pub stressor: Option<Vec<String>>,
    /// The services.
    pub services: Vec<ServiceSpec>,
}

/// Supervisor timings and bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// How often replicas are health-checked and reconciled.
    pub probe_interval_ms: u64,
    /// Timeout of one health check.
    pub probe_timeout_ms: u64,
    /// How long a started replica may take to pass its first health check before it counts as not ready.
    pub startup_grace_ms: u64,
    /// How often CPU, memory and `/metrics` are sampled.
    pub sample_interval_ms: u64,
    /// How long samples are kept (the largest useful metrics window).
    pub retention_secs: u64,
    /// First restart delay after a crash; doubles on each consecutive crash.
    pub backoff_initial_ms: u64,
    /// Largest restart delay.
    pub backoff_max_ms: u64,
    /// Largest replica count `scale` accepts.
    pub max_replicas: u32,
    /// Log lines kept per service.
    pub log_lines: usize,
    /// Kill a replica whose resident memory (with its stressors) exceeds its limit, like an OOM kill.
    pub enforce_memory_limit: bool,
    /// How a new template replaces the pods.
    pub strategy: Strategy,
    /// How long a stopped replica gets between SIGTERM and SIGKILL (like `terminationGracePeriodSeconds`).
    pub termination_grace_ms: u64,
}

/// How pods move to a new template (image, env, limits, restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Like a Kubernetes Deployment's default (maxSurge 1, maxUnavailable 0): one new pod at a time starts next to
    /// the old one, which goes once the new one is ready. A broken template never takes the service down; the
    /// rollout stalls with the new pod crash-looping or not ready.
    #[default]
    RollingUpdate,
    /// Every old pod is killed at once, then new ones start (downtime in between).
    Recreate,
}

/// One service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Name (a DNS label).
    pub name: ComponentName,
    /// Program and args.
    pub command: Vec<String>,
    /// The front's port on 127.0.0.1 (0 = any free port).
    #[serde(default)]
    pub port: u16,
    /// Initial replicas.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Health check path (200 = ready).
    #[serde(default = "health_path")]
    pub health_path: String,
    /// Prometheus metrics path; `null` if the service has none.
    #[serde(default = "metrics_path")]
    pub metrics_path: Option<String>,
    /// Initial version.
    #[serde(default = "latest")]
    pub version: String,
    /// Known versions and the env each one adds (its "build"). Empty = any version string is accepted.
    #[serde(default)]
    pub versions: BTreeMap<String, BTreeMap<String, String>>,
    /// Initial environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Initial per-replica limits.
    #[serde(default = "default_limits")]
    pub limits: ResourceLimits,
}

fn one() -> u32 {
    1
}
fn health_path() -> String {
    "/health".into()
}
fn metrics_path() -> Option<String> {
    Some("/metrics".into())
}
fn latest() -> String {
    "latest".into()
}
fn default_limits() -> ResourceLimits {
    ResourceLimits {
        cpu_millis: 1000,
        memory_mib: 512,
    }
}

// === impl Settings ===

impl Default for Settings {
    fn default() -> Self {
        Settings {
            probe_interval_ms: 250,
            probe_timeout_ms: 1000,
            startup_grace_ms: 5000,
            sample_interval_ms: 1000,
            retention_secs: 900,
            backoff_initial_ms: 500,
            backoff_max_ms: 10_000,
            max_replicas: 20,
            log_lines: 2000,
            enforce_memory_limit: true,
            strategy: Strategy::RollingUpdate,
            termination_grace_ms: 5000,
        }
    }
}

// === impl RuntimeSpec ===

impl RuntimeSpec {
    /// Reads and parses a runtime file; see [`RuntimeSpec::parse`].
    pub fn from_file(path: &Path, vars: &BTreeMap<String, String>) -> Result<Self, ClusterError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ClusterError::RuntimeFile(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, vars)
    }

    /// Expands `${NAME}` / `${NAME:-default}` from `vars`, parses the YAML and validates it.
    pub fn parse(text: &str, vars: &BTreeMap<String, String>) -> Result<Self, ClusterError> {
        let expanded = expand(text, &|name| {
            if SPAWN_VARS.contains(&name) {
                Some(format!("${{{name}}}"))
            } else {
                vars.get(name).cloned()
            }
        })
        .map_err(ClusterError::RuntimeFile)?;
        let spec: RuntimeSpec =
            serde_yaml::from_str(&expanded).map_err(|e| ClusterError::RuntimeFile(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what serde cannot: unique names and ports, non-empty commands, known versions, sane settings.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |msg: String| Err(ClusterError::RuntimeFile(msg));
        let s = &self.settings;
        if s.probe_interval_ms == 0 || s.sample_interval_ms == 0 || s.probe_timeout_ms == 0 {
            return bad("settings: intervals and timeouts must be above 0".into());
        }
        if s.backoff_initial_ms == 0 || s.backoff_max_ms < s.backoff_initial_ms {
            return bad("settings: need 0 < backoff_initial_ms <= backoff_max_ms".into());
        }
        if s.max_replicas == 0 || s.max_replicas > 256 {
            return bad("settings: max_replicas must be in 1..=256".into());
        }
        if s.retention_secs == 0 || s.log_lines == 0 {
            return bad("settings: retention_secs and log_lines must be above 0".into());
        }
        if self.stressor.as_ref().is_some_and(Vec::is_empty) {
            return bad("stressor: the command is empty".into());
        }
        if self.services.is_empty() {
            return bad("services: at least one service is needed".into());
        }
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        for svc in &self.services {
            let n = svc.name.as_str();
            if !names.insert(n) {
                return bad(format!("services: duplicate name {n:?}"));
            }
            if svc.port != 0 && !ports.insert(svc.port) {
                return bad(format!("service {n}: port {} is used twice", svc.port));
            }
            if svc.command.first().is_none_or(|c| c.trim().is_empty()) {
                return bad(format!("service {n}: command is empty"));
            }
            if svc.replicas > s.max_replicas {
                return bad(format!(
                    "service {n}: replicas {} above max_replicas {}",
                    svc.replicas, s.max_replicas
                ));
            }
            if !svc.health_path.starts_with('/')
                || svc.metrics_path.as_ref().is_some_and(|p| !p.starts_with('/'))
            {
                return bad(format!(
                    "service {n}: health_path and metrics_path must start with '/'"
                ));
            }
            validate::image(&svc.version)
                .map_err(|e| ClusterError::RuntimeFile(format!("service {n}: {e}")))?;
            if !svc.versions.is_empty() && !svc.versions.contains_key(&svc.version) {
                return bad(format!(
                    "service {n}: version {:?} is not in versions",
                    svc.version
                ));
            }
            validate::resources(i64::from(svc.limits.cpu_millis), i64::from(svc.limits.memory_mib))
                .map_err(|e| ClusterError::RuntimeFile(format!("service {n}: {e}")))?;
            let all_env = svc.env.iter().chain(svc.versions.values().flatten());
            for (k, v) in all_env {
                validate::env_var(k, v)
                    .map_err(|e| ClusterError::RuntimeFile(format!("service {n}: {e}")))?;
            }
        }
        Ok(())
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }
}

/// Replaces `${NAME}` and `${NAME:-default}`; an unknown name without a default is an error.
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${ in runtime file".to_owned())?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad variable name {name:?} in runtime file"));
        }
        match lookup(name).or_else(|| default.map(str::to_owned)) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("variable ${{{name}}} is not set and has no default")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
settings: { probe_interval_ms: 100 }
stressor: ["${BIN}", "stress"]
services:
  - name: catalogue
    command: ["${BIN}", "catalogue", "--port", "${PORT}"]
    port: ${CAT_PORT:-0}
    replicas: 2
    version: "0.3.5"
    versions: { "0.3.5": {}, "0.3.6-crash": { SHOP_MODE: crash } }
    env: { WORK_US: "300" }
    limits: { cpu_millis: 500, memory_mib: 256 }
  - name: front-end
    command: ["${BIN}", "front-end"]
"#;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([("BIN".to_owned(), "/bin/shop".to_owned())])
    }

    #[test]
    fn parses_and_expands() {
        let spec = RuntimeSpec::parse(GOOD, &vars()).unwrap();
        assert_eq!(spec.settings.probe_interval_ms, 100);
        assert_eq!(spec.settings.backoff_initial_ms, 500);
        let cat = spec.service("catalogue").unwrap();
        assert_eq!(cat.command, ["/bin/shop", "catalogue", "--port", "${PORT}"]);
        assert_eq!(cat.port, 0);
        assert_eq!(cat.limits.cpu_millis, 500);
        let fe = spec.service("front-end").unwrap();
        assert_eq!(
            (fe.replicas, fe.version.as_str(), fe.health_path.as_str()),
            (1, "latest", "/health")
        );
        let with_port = BTreeMap::from([("BIN".into(), "b".into()), ("CAT_PORT".into(), "9000".into())]);
        assert_eq!(
            RuntimeSpec::parse(GOOD, &with_port).unwrap().services[0].port,
            9000
        );
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let cases: Vec<(String, &str)> = vec![
            (GOOD.replace("${BIN}", "${NOPE}"), "NOPE"),
            ("services: [".into(), "line 2"),
            ("services: []".into(), "at least one"),
            (GOOD.replace("replicas: 2", "replicas: -2"), "replicas"),
            (GOOD.replace("replicas: 2", "replicas: 2000"), "max_replicas"),
            (GOOD.replace("name: front-end", "name: catalogue"), "duplicate"),
            (GOOD.replace("name: front-end", "name: Front End"), "lowercase"),
            (
                GOOD.replace("version: \"0.3.5\"", "version: \"9.9\""),
                "not in versions",
            ),
            (GOOD.replace("cpu_millis: 500", "cpu_millis: 0"), "cpu_millis"),
            (
                GOOD.replace("command: [\"${BIN}\", \"front-end\"]", "command: []"),
                "command is empty",
            ),
            (
                GOOD.replace("probe_interval_ms: 100", "probe_interval_ms: 100, bogus: 1"),
                "bogus",
            ),
            (GOOD.replace("WORK_US", "WORK-US"), "env key"),
            (GOOD.replace("${CAT_PORT:-0}", "70000"), "port"),
        ];
        for (text, needle) in cases {
            let err = RuntimeSpec::parse(&text, &vars()).unwrap_err();
            assert!(matches!(err, ClusterError::RuntimeFile(_)), "{err}");
            assert!(err.to_string().contains(needle), "expected {needle:?} in: {err}");
        }
    }

    #[test]
    fn expand_rules() {
        let look = |n: &str| (n == "A").then(|| "x".to_owned());
        assert_eq!(expand("a${A}b${B:-y}", &look).unwrap(), "axby");
        assert!(expand("${B}", &look).is_err());
        assert!(expand("${A", &look).is_err());
        assert!(expand("${a b}", &look).is_err());
    }
}
