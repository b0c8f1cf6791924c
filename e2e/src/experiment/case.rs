//! The case files (`e2e/cases/*.yaml`): one scenario each — what is set up, the workload, the fault, what the agent
//! is asked, what must be true afterwards and the level the paper assigns. The schema is ours; the facts are those
//! of the ACV-LLM dataset (see `docs/experiments.md`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use acv_protocol::{GoalObjective, RootCause, SloMetric};
use serde::{Deserialize, Serialize};

/// A problem with a case file or folder.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The file or folder could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not match the schema.
    #[error("{path}: {source}")]
    Parse {
        /// Where.
        path: PathBuf,
        /// Why.
        source: serde_yaml::Error,
    },
    /// The case parses but makes no sense.
    #[error("case {case}: {reason}")]
    Invalid {
        /// The case id.
        case: String,
        /// Why.
        reason: String,
    },
}

/// Who acts: a sidecar alone (mechanism 1) or the manager through goals (mechanism 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MechanismKind {
    /// A sidecar on its own task or its own SLO watcher.
    Sidecar,
    /// The manager turns a goal into subtasks and verifies by measurement.
    Manager,
}

/// The Locust presets of the paper (users ≈ requests/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresetName {
    /// 20 users.
    Light,
    /// 50 users.
    Moderate,
    /// 80 users.
    Heavy,
    /// 1 → 100 users, one more per second.
    Increase,
}

/// Where the workload goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LoadTarget {
    /// The case's component directly (its own API).
    #[default]
    Component,
    /// The shop's front-end (browsing, cart and order mix).
    FrontEnd,
}

/// The workload during an episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// The preset.
    pub preset: PresetName,
    /// Where it goes.
    #[serde(default)]
    pub target: LoadTarget,
    /// For `increase`: seconds the ramp 1 → 100 requests/s takes (the paper's one user per second is 100 s).
    #[serde(default)]
    pub ramp_secs: Option<f64>,
}

/// A change made before the episode starts (the dataset's `environment`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SetupStep {
    /// Scale the component to this many replicas (0 = the deployment is gone).
    Scale(u32),
    /// Switch the component to this image.
    Image(String),
    /// Set an environment variable.
    Env {
        /// Name.
        key: String,
        /// Value.
        value: String,
    },
}

/// The fault injected at the start of an episode (the dataset's `chaos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultSpec {
    /// Every existing pod stops working (Chaos Mesh PodChaos pod-failure).
    PodFailure,
    /// A CPU stressor in each existing pod (Chaos Mesh StressChaos).
    CpuStress {
        /// Burning threads.
        workers: u32,
        /// Duty cycle of each, percent.
        load_percent: u32,
    },
    /// The workload's ramp starts (the `increase` workload).
    RisingTraffic,
}

/// What the agent is asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Ask {
    /// A task in words for the component's sidecar.
    Task(String),
    /// The paper's health-check task (diagnose, fix, re-check, report), sent after the fault.
    HealthCheck,
    /// A goal in words for the manager.
    Goal(String),
}

/// A figure the agent must report, checked against the harness's own measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// The metric asked for.
    pub metric: SloMetric,
    /// Accepted absolute difference, in the metric's unit.
    pub abs_tolerance: f64,
    /// Accepted relative difference (0.3 = 30 %).
    pub rel_tolerance: f64,
}

/// What must be true afterwards. Each field belongs to a level (see [`Expect::levels_covered`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// L1: desired and ready replicas.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// L1: the image running.
    #[serde(default)]
    pub image: Option<String>,
    /// L1: environment variables of the running revision.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// L1: every pod replaced by a new one, all ready.
    #[serde(default)]
    pub restarted: bool,
    /// L1: at least one replica running and ready.
    #[serde(default)]
    pub running: bool,
    /// L1: a figure reported within tolerance of the harness's measurement.
    #[serde(default)]
    pub figure: Option<Figure>,
    /// L2: the agent's healthy/unhealthy verdict matches the harness's own health check.
    #[serde(default)]
    pub verdict_matches_measurement: bool,
    /// L2: objectives measured after the agent says done.
    #[serde(default)]
    pub objectives: Vec<GoalObjective>,
    /// L3: the injected ground truth: the SLOs are violated.
    #[serde(default)]
    pub violation: Option<bool>,
    /// L4: the root cause of the injected fault.
    #[serde(default)]
    pub root_cause: Option<RootCause>,
    /// L5: the health SLOs measured restored and holding for the hold window.
    #[serde(default)]
    pub slo_restored: bool,
}

/// Episode timings (seconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    /// Load before the fault or task.
    pub warmup_secs: f64,
    /// After the fault, before the health-check task is sent (the fault takes effect).
    pub fault_lead_secs: f64,
    /// Longest wait for the agent's report or the goal's end.
    pub answer_secs: f64,
    /// How long the SLOs must hold to count as restored.
    pub hold_secs: f64,
    /// Longest episode after the fault or task.
    pub max_secs: f64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            warmup_secs: 6.0,
            fault_lead_secs: 6.0,
            answer_secs: 60.0,
            hold_secs: 8.0,
            max_secs: 75.0,
        }
    }
}

/// A classic controller run instead of the agent, side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineKind {
    /// An HPA-style CPU autoscaler (target 50 % of limit, 1–10 replicas).
    Hpa,
    /// A Flagger-style automatic rollback after failed health checks.
    Flagger,
}

/// One scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Short id (file stem).
    pub id: String,
    /// One line for people.
    pub title: String,
    /// The ACV dataset file with the same facts, if any.
    #[serde(default)]
    pub acv_file: Option<String>,
    /// The paper's levels this case is scored at.
    pub levels: Vec<u8>,
    /// Who acts.
    pub mechanism: MechanismKind,
    /// The component maintained (and measured).
    pub component: String,
    /// Further components measured by the objectives (manager tasks over several components).
    #[serde(default)]
    pub also: Vec<String>,
    /// Shop services to run (default: the component alone).
    #[serde(default)]
    pub services: Vec<String>,
    /// The workload.
    pub workload: Workload,
    /// Changes before the episode (`- scale: 0`).
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    pub setup: Vec<SetupStep>,
    /// The fault.
    #[serde(default)]
    pub fault: Option<FaultSpec>,
    /// What the agent is asked (`{task: TEXT}`, `health_check`, `{goal: TEXT}`).
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub ask: Ask,
    /// What must hold afterwards.
    pub expect: Expect,
    /// Classic controllers run as baselines.
    #[serde(default)]
    pub baselines: Vec<BaselineKind>,
    /// Episode timings.
    #[serde(default)]
    pub timing: Timing,
}

// === impl Expect ===

impl Expect {
    /// The levels this expectation has an oracle for.
    pub fn levels_covered(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.replicas.is_some()
            || self.image.is_some()
            || !self.env.is_empty()
            || self.restarted
            || self.running
            || self.figure.is_some()
        {
            out.push(1);
        }
        if self.verdict_matches_measurement || !self.objectives.is_empty() {
            out.push(2);
        }
        if self.violation.is_some() {
            out.push(3);
        }
        if self.root_cause.is_some() {
            out.push(4);
        }
        if self.slo_restored {
            out.push(5);
        }
        out
    }
}

// === impl Case ===

impl Case {
    /// Parses one case from YAML and validates it.
    pub fn parse(text: &str, path: &Path) -> Result<Case, CaseError> {
        let case: Case = serde_yaml::from_str(text).map_err(|source| CaseError::Parse {
            path: path.to_owned(),
            source,
        })?;
        case.validate()?;
        Ok(case)
    }

    /// Every service the episode needs.
    pub fn services(&self) -> Vec<String> {
        let mut s = if self.services.is_empty() {
            vec![self.component.clone()]
        } else {
            self.services.clone()
        };
        for c in std::iter::once(&self.component).chain(&self.also) {
            if !s.contains(c) {
                s.push(c.clone());
            }
        }
        s
    }

    /// Every component measured: the component and `also`.
    pub fn measured(&self) -> Vec<String> {
        std::iter::once(self.component.clone())
            .chain(self.also.iter().cloned())
            .collect()
    }

    /// The text sent to the agent (the health-check task's for [`Ask::HealthCheck`]).
    pub fn ask_text(&self) -> &str {
        match &self.ask {
            Ask::Task(t) | Ask::Goal(t) => t,
            Ask::HealthCheck => HEALTH_CHECK_TASK,
        }
    }

    /// Checks what serde cannot: levels are 1–5 and each has an oracle, the mechanism fits the ask.
    pub fn validate(&self) -> Result<(), CaseError> {
        let bad = |reason: String| CaseError::Invalid {
            case: self.id.clone(),
            reason,
        };
        if self.id.is_empty()
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(format!(
                "id {:?} must be letters, digits, '_' or '-'",
                self.id
            )));
        }
        if self.levels.is_empty() || self.levels.iter().any(|l| !(1..=5).contains(l)) {
            return Err(bad(format!("levels {:?} must be 1 to 5", self.levels)));
        }
        let covered = self.expect.levels_covered();
        for l in &self.levels {
            if !covered.contains(l) {
                return Err(bad(format!("level {l} has no expectation to score it")));
            }
        }
        match (&self.ask, self.mechanism) {
            (Ask::Goal(_), MechanismKind::Sidecar) => {
                return Err(bad("a goal is for the manager (mechanism: manager)".into()));
            }
            (Ask::Task(_) | Ask::HealthCheck, MechanismKind::Manager) => {
                return Err(bad("the manager takes a goal (ask: {goal: ...})".into()));
            }
            _ => {}
        }
        if (self.fault == Some(FaultSpec::RisingTraffic)) != (self.workload.preset == PresetName::Increase) {
            return Err(bad(
                "rising_traffic goes with the increase workload, and only with it".into(),
            ));
        }
        let t = &self.timing;
        for (name, v) in [
            ("warmup_secs", t.warmup_secs),
            ("fault_lead_secs", t.fault_lead_secs),
            ("answer_secs", t.answer_secs),
            ("hold_secs", t.hold_secs),
            ("max_secs", t.max_secs),
        ] {
            if !v.is_finite() || !(0.0..=1800.0).contains(&v) {
                return Err(bad(format!("timing.{name} = {v} is not in [0, 1800]")));
            }
        }
        if t.hold_secs >= t.max_secs {
            return Err(bad("timing.hold_secs must be shorter than timing.max_secs".into()));
        }
        for c in self.services() {
            if !crate::testbed::ALL.contains(&c.as_str()) {
                return Err(bad(format!(
                    "{c} is not a shop service ({})",
                    crate::testbed::ALL.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// The paper's health-check task for L3–L5, in our words: the SLO policy's thresholds, then diagnose, fix, re-check.
pub const HEALTH_CHECK_TASK: &str = "Health check: all pods must be READY, CPU use below 50% of the limit, memory use \
below 50% of the limit and P99 latency below 200 ms. If any of this does not hold, find the cause, fix it, check \
again and report.";

/// Reads every `*.yaml` case of `dir`, sorted by file name; duplicate ids are an error.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, CaseError> {
    let read = |e| CaseError::Read {
        path: dir.to_owned(),
        source: e,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let mut out: Vec<Case> = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| CaseError::Read {
            path: f.clone(),
            source,
        })?;
        let case = Case::parse(&text, &f)?;
        if out.iter().any(|c| c.id == case.id) {
            return Err(CaseError::Invalid {
                case: case.id,
                reason: format!("duplicate id (again in {})", f.display()),
            });
        }
        out.push(case);
    }
    if out.is_empty() {
        return Err(CaseError::Invalid {
            case: dir.display().to_string(),
            reason: "no *.yaml case files in this folder".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_cases_load_and_cover_the_paper() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
        let cases = load_dir(&dir).unwrap();
        assert_eq!(cases.len(), 19, "15 dataset scenarios + 4 manager tasks");
        let at = |l: u8| cases.iter().filter(|c| c.levels == [l]).count();
        assert_eq!((at(1), at(2)), (7, 9), "7 L1 cases; 5 L2 cases + 4 manager tasks");
        assert_eq!(cases.iter().filter(|c| c.levels == [3, 4, 5]).count(), 3);
        assert_eq!(
            cases
                .iter()
                .filter(|c| c.mechanism == MechanismKind::Manager)
                .count(),
            4
        );
    }

    /// Our words for the dataset's tasks must reach the rules planner as the task they are: a parser slip (the
    /// "true" of "logger_flag is true" once read as a component's name) would otherwise show up only as an L1
    /// failure in a full run. auto_scaling is refused on purpose (the host API has no autoscaler).
    #[test]
    fn the_rules_planner_understands_every_case_task() {
        use acv_llm::planner::rules::parse::{Intent, parse_task};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
        for c in load_dir(&dir).unwrap() {
            if c.mechanism == MechanismKind::Manager {
                continue;
            }
            let own = acv_protocol::ComponentName::new(&c.component).unwrap();
            let intent = parse_task(c.ask_text(), &own);
            match (c.id.as_str(), &intent) {
                ("auto_scaling", Intent::CannotDo(_)) => {}
                (_, Intent::NotMine { .. } | Intent::CannotDo(_)) => {
                    panic!("{}: {:?} → {intent:?}", c.id, c.ask_text());
                }
                (_, Intent::Reach(objectives)) if c.ask == Ask::HealthCheck => {
                    let metrics: Vec<_> = objectives.iter().map(|o| o.0).collect();
                    assert_eq!(
                        metrics,
                        [
                            acv_protocol::SloMetric::CpuPercentOfLimit,
                            acv_protocol::SloMetric::MemoryPercentOfLimit,
                            acv_protocol::SloMetric::P99LatencyMs
                        ],
                        "{}: the health check's objectives, once each",
                        c.id
                    );
                }
                ("update_deployment", i) => assert_eq!(
                    i,
                    &Intent::SetEnv {
                        key: "logger_flag".into(),
                        value: "true".into()
                    }
                ),
                _ => {}
            }
        }
    }

    #[test]
    fn bad_cases_get_a_clear_error() {
        let p = Path::new("x.yaml");
        let base = "id: x\ntitle: t\nlevels: [1]\nmechanism: sidecar\ncomponent: catalogue\n\
                    workload: {preset: light}\nask: {task: restart}\n";
        assert!(Case::parse(&format!("{base}expect: {{restarted: true}}\n"), p).is_ok());
        let e = Case::parse(&format!("{base}expect: {{slo_restored: true}}\n"), p).unwrap_err();
        assert!(e.to_string().contains("level 1 has no expectation"), "{e}");
        let e = Case::parse(&format!("{base}expect: {{restarted: true}}\nbogus: 1\n"), p).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Case::parse(
            &format!(
                "{}expect: {{running: true}}\n",
                base.replace("catalogue", "warehouse")
            ),
            p,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a shop service"), "{e}");
    }
}
