//! Test support: runs emitted programs with python3 against `fake_acv.py` (the host API contract over an in-memory
//! component) and models how metrics react to scaling and limits, so playbooks can be driven end to end.
#![allow(dead_code)]

use std::{io::Write, path::PathBuf, process::Stdio};

use acv_llm::{
    FinalReport, Observation, PlannedStep,
    session::{Executor, StepResult},
};
use acv_protocol::{ReportStatus, StepOutcome};
use serde_json::{Value, json};

/// What one fake run produced.
#[derive(Debug, Clone)]
pub struct FakeRun {
    pub stdout: String,
    pub calls: Vec<Value>,
    pub report: Option<FinalReport>,
    pub status: Value,
    pub history: Value,
    pub error: Option<String>,
}

/// How metrics follow the component's state.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// Total CPU demand in millicores, spread over replicas (None: keep the metric as set).
    pub cpu_demand_total: Option<f64>,
    /// CPU demand per replica in millicores (stress on every pod).
    pub cpu_demand_per_replica: Option<f64>,
    /// Memory use per replica in MiB.
    pub memory_per_replica: Option<f64>,
    /// P99 = base + per_replica_ms / replicas.
    pub p99: Option<(f64, f64)>,
}

pub fn fake_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake_acv.py")
}

/// Checks that `program` is valid Python 3 syntax.
pub fn assert_parses(program: &str) {
    let mut child = std::process::Command::new("python3")
        .args(["-c", "import ast,sys; ast.parse(sys.stdin.read())"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for these tests");
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid Python:\n{program}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A healthy catalogue: 2 ready replicas of 0.3.6 (previous revision 0.3.5), 500m / 512 MiB limits.
pub fn healthy_state() -> Value {
    json!({
        "mode": "autonomous",
        "status": {
            "component": "catalogue", "desired_replicas": 2, "ready_replicas": 2,
            "replicas": [
                {"name": "catalogue-0", "state": "ready", "restarts": 0},
                {"name": "catalogue-1", "state": "ready", "restarts": 0}
            ],
            "revision": 2, "image": "weaveworksdemos/catalogue:0.3.6", "env": {"ZIPKIN": "off"},
            "limits": {"cpu_millis": 500, "memory_mib": 512}
        },
        "metrics": {
            "component": "catalogue", "window_secs": 60.0, "cpu_percent_of_limit": 20.0,
            "memory_percent_of_limit": 30.0, "request_rate": 50.0, "p50_ms": 20.0, "p99_ms": 120.0,
            "error_rate_percent": 0.0
        },
        "history": [
            {"revision": 1, "image": "weaveworksdemos/catalogue:0.3.5", "env": {"ZIPKIN": "off"},
             "limits": {"cpu_millis": 500, "memory_mib": 512}, "created_at_ms": 1, "cause": "create"},
            {"revision": 2, "image": "weaveworksdemos/catalogue:0.3.6", "env": {"ZIPKIN": "off"},
             "limits": {"cpu_millis": 500, "memory_mib": 512}, "created_at_ms": 2, "cause": "set_image"}
        ],
        "logs": ["started"]
    })
}

/// Runs `program` against `state` with the fake host.
pub fn run_fake(program: &str, state: &Value) -> FakeRun {
    let path = std::env::temp_dir().join(format!("acv-llm-fake-{}.json", uuid::Uuid::new_v4()));
    let mut state = state.clone();
    state["mutating"] = json!(acv_protocol::MUTATING_CALLS);
    std::fs::write(&path, state.to_string()).unwrap();
    let mut child = std::process::Command::new("python3")
        .arg(fake_script())
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed for these tests");
    child.stdin.take().unwrap().write_all(program.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    std::fs::remove_file(&path).ok();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let result_line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("FAKE_RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "no result from fake host: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let r: Value = serde_json::from_str(result_line).unwrap();
    let report = r["report"].as_object().map(|o| FinalReport {
        status: if o["status"] == "RESPONSE" {
            ReportStatus::Response
        } else {
            ReportStatus::Issue
        },
        message: o["message"].as_str().unwrap().to_owned(),
    });
    FakeRun {
        stdout: stdout
            .lines()
            .filter(|l| !l.starts_with("FAKE_RESULT "))
            .collect::<Vec<_>>()
            .join("\n"),
        calls: r["calls"].as_array().cloned().unwrap_or_default(),
        report,
        status: r["status"].clone(),
        history: r["history"].clone(),
        error: r["error"].as_str().map(str::to_owned),
    }
}

/// An executor backed by the fake host, with a metrics model; optionally hands observations to the planner.
pub struct FakeHost {
    pub state: Value,
    pub model: Model,
    pub provide_observations: bool,
    pub runs: Vec<FakeRun>,
    /// The healthy baseline handed over with provided observations (as the sidecar's watcher does).
    pub baseline: Option<acv_llm::Baseline>,
    /// A hog lives in the replicas: a restart or rollback (new replicas) ends the per-replica CPU and memory demand
    /// and puts those metrics back to the healthy state's.
    pub hog_in_replicas: bool,
}

impl FakeHost {
    pub fn new(state: Value, model: Model) -> Self {
        let mut h = Self {
            state,
            model,
            provide_observations: false,
            runs: Vec::new(),
            baseline: None,
            hog_in_replicas: false,
        };
        h.recompute();
        h
    }

    pub fn recompute(&mut self) {
        let st = &self.state["status"];
        let replicas = st["desired_replicas"].as_f64().unwrap().max(1.0);
        let cpu_limit = st["limits"]["cpu_millis"].as_f64().unwrap();
        let mem_limit = st["limits"]["memory_mib"].as_f64().unwrap();
        let m = &mut self.state["metrics"];
        if let Some(d) = self.model.cpu_demand_total {
            m["cpu_percent_of_limit"] = json!(d / replicas / cpu_limit * 100.0);
        }
        if let Some(d) = self.model.cpu_demand_per_replica {
            m["cpu_percent_of_limit"] = json!(d / cpu_limit * 100.0);
        }
        if let Some(mem) = self.model.memory_per_replica {
            m["memory_percent_of_limit"] = json!(mem / mem_limit * 100.0);
        }
        if let Some((base, k)) = self.model.p99 {
            m["p99_ms"] = json!(base + k / replicas);
        }
    }

    pub fn mutating_calls(&self) -> Vec<String> {
        self.runs
            .iter()
            .flat_map(|r| r.calls.iter())
            .filter_map(|c| c["name"].as_str())
            .filter(|n| acv_protocol::is_mutating_call(n))
            .map(str::to_owned)
            .collect()
    }
}

impl FakeRun {
    /// Whether a mutating call ran (it was not refused and did not fail).
    pub fn mutated(&self) -> bool {
        self.calls.iter().any(|c| {
            c["name"].as_str().is_some_and(acv_protocol::is_mutating_call) && c.get("error").is_none()
        })
    }
}

#[async_trait::async_trait]
impl Executor for FakeHost {
    async fn execute(&mut self, _index: u32, step: &PlannedStep) -> StepResult {
        assert_parses(&step.program);
        let run = run_fake(&step.program, &self.state);
        self.state["status"] = run.status.clone();
        self.state["history"] = run.history.clone();
        let replaced = run
            .calls
            .iter()
            .any(|c| c.get("error").is_none() && matches!(c["name"].as_str(), Some("restart" | "rollback")));
        if self.hog_in_replicas && replaced {
            let healthy = healthy_state();
            if self.model.cpu_demand_per_replica.take().is_some() {
                self.state["metrics"]["cpu_percent_of_limit"] =
                    healthy["metrics"]["cpu_percent_of_limit"].clone();
            }
            if self.model.memory_per_replica.take().is_some() {
                self.state["metrics"]["memory_percent_of_limit"] =
                    healthy["metrics"]["memory_percent_of_limit"].clone();
            }
        }
        self.recompute();
        let mut output = run.stdout.clone();
        if let Some(e) = &run.error {
            output.push('\n');
            output.push_str(e);
        }
        let outcome = if run.error.is_some() {
            StepOutcome::Error
        } else {
            StepOutcome::Ok
        };
        let report = run.report.clone();
        let mutated = run.mutated();
        self.runs.push(run);
        StepResult {
            outcome,
            output,
            report,
            mutated,
        }
    }

    async fn observe(&mut self) -> Option<Observation> {
        if !self.provide_observations {
            return None;
        }
        Some(Observation {
            status: serde_json::from_value(self.state["status"].clone()).ok(),
            metrics: serde_json::from_value(self.state["metrics"].clone()).ok(),
            history: serde_json::from_value(self.state["history"].clone()).unwrap_or_default(),
            baseline: self.baseline.clone(),
            at_ms: 0,
        })
    }
}
