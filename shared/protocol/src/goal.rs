//! Goals as resources: what a person asks the manager for (a [`GoalSpec`], in words or as [`GoalObjective`]s), the
//! Kubernetes-style file that carries it ([`GoalResource`]: apiVersion/kind/metadata/spec, so the same YAML works
//! with `acvctl goal apply -f` and later with a CRD), and the status the manager keeps ([`GoalRecord`],
//! [`SubtaskRecord`], [`GoalEvent`]). Also the pure judgement of combined objectives ([`evaluate`]): no I/O here.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    Comparison, ComponentName, Measurement, ReportStatus, SafetyMode, SloMetric, TaskSpec, measured_value,
    metric_name,
};

/// `apiVersion` of a goal resource.
pub const GOAL_API_VERSION: &str = "acv.dev/v1alpha1";
/// `kind` of a goal resource.
pub const GOAL_KIND: &str = "Goal";

/// How the values of several components combine into the one value an objective judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// Every component on its own must meet the threshold.
    #[default]
    Each,
    /// The sum over the components must meet it ("total P99 of A and B under 400 ms").
    Total,
    /// The mean over the components must meet it.
    Average,
}

/// One measurable objective over one or more components.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GoalObjective {
    /// The components measured (at least one).
    pub components: Vec<ComponentName>,
    /// What is measured.
    pub metric: SloMetric,
    /// How the (combined) value must relate to the threshold.
    pub comparison: Comparison,
    /// The threshold, in the metric's unit.
    pub threshold: f64,
    /// How several components combine.
    #[serde(default)]
    pub combine: Combine,
}

/// What a person asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct GoalSpec {
    /// The goal in words as given ("Reduce the total P99 latency of Catalogue and Front-end to under 400 ms.").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Structured objectives; when empty the manager's decomposer derives them from `text`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<GoalObjective>,
    /// Seconds from creation until the goal must be decided (default: the manager's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_seconds: Option<u64>,
    /// Safety mode the sidecars should apply to this goal's subtasks (informational for sidecars that enforce
    /// their own; `observe` means the manager only measures and reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetyMode>,
    /// Assign/verify rounds before giving up (default: the manager's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rounds: Option<u32>,
}

/// `metadata` of a goal resource (the part acv reads).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GoalMetadata {
    /// Name; becomes the goal id when given (a DNS label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace (kept for Kubernetes; unused locally).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A goal file: `apiVersion: acv.dev/v1alpha1`, `kind: Goal`, `metadata`, `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalResource {
    /// Must be [`GOAL_API_VERSION`].
    pub api_version: String,
    /// Must be [`GOAL_KIND`].
    pub kind: String,
    /// Name and labels.
    #[serde(default)]
    pub metadata: GoalMetadata,
    /// The goal.
    pub spec: GoalSpec,
}

/// Why a goal is refused before any work starts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GoalError {
    /// The resource is not a goal of a version we read.
    #[error(
        "not an acv goal: expected apiVersion {GOAL_API_VERSION:?} and kind {GOAL_KIND:?}, got {api_version:?} / {kind:?}"
    )]
    WrongKind {
        /// Given apiVersion.
        api_version: String,
        /// Given kind.
        kind: String,
    },
    /// Neither text nor objectives.
    #[error("the goal is empty: give its text or at least one objective")]
    Empty,
    /// The metadata name is not usable as an id.
    #[error("goal name {0:?} must be 1-63 lowercase letters, digits and '-'")]
    BadName(String),
    /// An objective names no component.
    #[error("objective {index} names no component")]
    NoComponent {
        /// 0-based position.
        index: usize,
    },
    /// A threshold no measurement can ever meet, or not a number.
    #[error("objective {index} is impossible: {why}")]
    Impossible {
        /// 0-based position.
        index: usize,
        /// Why.
        why: String,
    },
    /// Two objectives that cannot both hold.
    #[error("objectives {a} and {b} contradict each other: {why}")]
    Contradictory {
        /// First objective.
        a: usize,
        /// Second objective.
        b: usize,
        /// Why.
        why: String,
    },
    /// Deadline or rounds out of range.
    #[error("{field} must be between {min} and {max}, got {got}")]
    OutOfRange {
        /// Field.
        field: &'static str,
        /// Minimum.
        min: u64,
        /// Maximum.
        max: u64,
        /// Given.
        got: u64,
    },
}

/// Where a goal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum GoalState {
    /// Stored, not yet looked at.
    Accepted,
    /// Being decomposed into subtasks.
    Planning,
    /// Subtasks sent; waiting for the sidecars.
    Assigned,
    /// The manager is measuring.
    Verifying,
    /// Measured and every objective holds.
    Achieved,
    /// Not reached; nothing holds or nobody could work on it.
    Failed,
    /// Not reached; some objectives hold or some components could not be worked on.
    Partial,
    /// Cancelled by a person.
    Cancelled,
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The goal changed state.
    State,
    /// A subtask was sent, retried or timed out.
    Subtask,
    /// A sidecar reported.
    Report,
    /// The manager measured.
    Measurement,
}

/// One thing that happened to a goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalEvent {
    /// The goal.
    pub goal_id: String,
    /// 1-based, increasing per goal.
    pub seq: u64,
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// What kind of event.
    pub kind: EventKind,
    /// The goal's state after the event.
    pub state: GoalState,
    /// For a person.
    pub message: String,
}

/// Where a subtask is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubtaskState {
    /// Not sent yet (or to be re-sent after a restart).
    Pending,
    /// Sent; waiting for the report.
    Sent,
    /// Answered with RESPONSE.
    Done,
    /// Answered with ISSUE.
    Issue,
    /// No answer after every attempt, or the sidecar is not live.
    TimedOut,
    /// The goal was cancelled or ended before an answer.
    Cancelled,
}

/// One component's part of a goal in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubtaskRecord {
    /// Idempotent id: `<goal>-r<round>-<component>`; retries keep it, so a sidecar that sees it twice can tell.
    pub id: String,
    /// The goal.
    pub goal_id: String,
    /// 1-based round.
    pub round: u32,
    /// Who does it.
    pub component: ComponentName,
    /// What was asked.
    pub spec: TaskSpec,
    /// Where it is.
    pub state: SubtaskState,
    /// Times sent.
    pub attempts: u32,
    /// When the current attempt times out, ms since the epoch.
    pub deadline_ms: u64,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
    /// The report's status, when one came.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_status: Option<ReportStatus>,
    /// The report's message or why it timed out.
    #[serde(default)]
    pub message: String,
}

/// A goal as the manager keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoalRecord {
    /// Id (from `metadata.name`, or generated).
    pub id: String,
    /// What was asked, as given.
    pub spec: GoalSpec,
    /// The objectives the manager judges (resolved from the text when the spec had none; empty until planned).
    #[serde(default)]
    pub objectives: Vec<GoalObjective>,
    /// Current state.
    pub state: GoalState,
    /// Current round (0 before the first assignment).
    pub round: u32,
    /// Why it is in this state, for a person.
    pub reason: String,
    /// Created, ms since the epoch.
    pub created_ms: u64,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
    /// The goal must be decided by then, ms since the epoch.
    pub deadline_ms: u64,
    /// The last verification, when there was one.
    #[serde(default)]
    pub results: Vec<ObjectiveResult>,
}

/// The judgement of one objective from measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectiveResult {
    /// The objective.
    pub objective: GoalObjective,
    /// Each component's value (`None`: not measured).
    pub per_component: Vec<(ComponentName, Option<f64>)>,
    /// The combined value judged (`None` when any component was not measured).
    pub value: Option<f64>,
    /// Whether it holds.
    pub met: bool,
    /// Components left out because they served no request in the window (see [`evaluate`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idle: Vec<ComponentName>,
}

// === impl GoalState ===

impl GoalState {
    /// Every state, in lifecycle order.
    pub const ALL: [GoalState; 8] = [
        GoalState::Accepted,
        GoalState::Planning,
        GoalState::Assigned,
        GoalState::Verifying,
        GoalState::Achieved,
        GoalState::Failed,
        GoalState::Partial,
        GoalState::Cancelled,
    ];

    /// Achieved, failed, partial or cancelled: nothing more happens.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            GoalState::Achieved | GoalState::Failed | GoalState::Partial | GoalState::Cancelled
        )
    }

    /// The state's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            GoalState::Accepted => "accepted",
            GoalState::Planning => "planning",
            GoalState::Assigned => "assigned",
            GoalState::Verifying => "verifying",
            GoalState::Achieved => "achieved",
            GoalState::Failed => "failed",
            GoalState::Partial => "partial",
            GoalState::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for GoalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for GoalState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown goal state {s:?}"))
    }
}

// === impl SubtaskState ===

impl SubtaskState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SubtaskState::Pending => "pending",
            SubtaskState::Sent => "sent",
            SubtaskState::Done => "done",
            SubtaskState::Issue => "issue",
            SubtaskState::TimedOut => "timed_out",
            SubtaskState::Cancelled => "cancelled",
        }
    }

    /// Whether the subtask still waits for something.
    pub fn is_open(self) -> bool {
        matches!(self, SubtaskState::Pending | SubtaskState::Sent)
    }
}

impl std::str::FromStr for SubtaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|_| format!("unknown subtask state {s:?}"))
    }
}

// === impl GoalResource ===

impl GoalResource {
    /// A resource wrapping `spec`.
    pub fn new(name: Option<String>, spec: GoalSpec) -> Self {
        Self {
            api_version: GOAL_API_VERSION.to_owned(),
            kind: GOAL_KIND.to_owned(),
            metadata: GoalMetadata {
                name,
                ..GoalMetadata::default()
            },
            spec,
        }
    }

    /// Checks kind, name and spec.
    pub fn validate(&self) -> Result<(), GoalError> {
        if self.api_version != GOAL_API_VERSION || self.kind != GOAL_KIND {
            return Err(GoalError::WrongKind {
                api_version: self.api_version.clone(),
                kind: self.kind.clone(),
            });
        }
        if let Some(name) = &self.metadata.name
            && ComponentName::new(name.clone()).is_err()
        {
            return Err(GoalError::BadName(name.clone()));
        }
        self.spec.validate()
    }
}

// === impl GoalSpec ===

/// Longest deadline a goal may ask for (one day).
pub const MAX_DEADLINE_SECS: u64 = 86_400;
/// Most rounds a goal may ask for.
pub const MAX_ROUNDS: u32 = 20;

impl GoalSpec {
    /// A goal in words only.
    pub fn from_text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ..Self::default()
        }
    }

    /// Checks the spec on its own (components are resolved against the registry later): not empty, thresholds
    /// possible, objectives not contradicting each other, deadline and rounds in range.
    pub fn validate(&self) -> Result<(), GoalError> {
        if self.text.trim().is_empty() && self.objectives.is_empty() {
            return Err(GoalError::Empty);
        }
        if let Some(d) = self.deadline_seconds
            && !(1..=MAX_DEADLINE_SECS).contains(&d)
        {
            return Err(GoalError::OutOfRange {
                field: "deadlineSeconds",
                min: 1,
                max: MAX_DEADLINE_SECS,
                got: d,
            });
        }
        if let Some(r) = self.max_rounds
            && !(1..=MAX_ROUNDS).contains(&r)
        {
            return Err(GoalError::OutOfRange {
                field: "maxRounds",
                min: 1,
                max: u64::from(MAX_ROUNDS),
                got: u64::from(r),
            });
        }
        validate_objectives(&self.objectives)
    }
}

/// The largest value a metric can take (percentages), if bounded.
fn metric_max(m: SloMetric) -> Option<f64> {
    match m {
        SloMetric::P99LatencyMs => None,
        SloMetric::CpuPercentOfLimit => None, // can exceed 100 when a replica bursts past its limit
        SloMetric::MemoryPercentOfLimit | SloMetric::ReadyPercent | SloMetric::ErrorRatePercent => {
            Some(100.0)
        }
    }
}

/// Checks objectives on their own: a component each, finite thresholds that some measurement could meet, and no
/// two objectives on the same value that cannot both hold.
pub fn validate_objectives(objectives: &[GoalObjective]) -> Result<(), GoalError> {
    for (index, o) in objectives.iter().enumerate() {
        if o.components.is_empty() {
            return Err(GoalError::NoComponent { index });
        }
        let impossible = |why: String| GoalError::Impossible { index, why };
        if !o.threshold.is_finite() {
            return Err(impossible(format!("threshold {} is not a number", o.threshold)));
        }
        let name = metric_name(o.metric);
        match o.comparison {
            Comparison::Below if o.threshold <= 0.0 => {
                return Err(impossible(format!(
                    "{name} cannot be below {} (it is never negative)",
                    o.threshold
                )));
            }
            Comparison::AtLeast => {
                let max = metric_max(o.metric).map(|m| match o.combine {
                    Combine::Total => m * o.components.len() as f64,
                    Combine::Each | Combine::Average => m,
                });
                if let Some(max) = max
                    && o.threshold > max
                {
                    return Err(impossible(format!(
                        "{name} cannot reach {} (at most {max})",
                        o.threshold
                    )));
                }
            }
            Comparison::Below => {}
        }
    }
    for (a, x) in objectives.iter().enumerate() {
        for (b, y) in objectives.iter().enumerate().skip(a + 1) {
            let same_value = x.metric == y.metric
                && x.combine == y.combine
                && sorted(&x.components) == sorted(&y.components);
            if !same_value {
                continue;
            }
            let (below, at_least) = match (x.comparison, y.comparison) {
                (Comparison::Below, Comparison::AtLeast) => (x.threshold, y.threshold),
                (Comparison::AtLeast, Comparison::Below) => (y.threshold, x.threshold),
                _ => continue,
            };
            if at_least >= below {
                return Err(GoalError::Contradictory {
                    a,
                    b,
                    why: format!(
                        "{} must be below {below} and at least {at_least}",
                        metric_name(x.metric)
                    ),
                });
            }
        }
    }
    Ok(())
}

fn sorted(c: &[ComponentName]) -> Vec<&ComponentName> {
    let mut v: Vec<&ComponentName> = c.iter().collect();
    v.sort();
    v
}

// === impl GoalObjective ===

impl GoalObjective {
    /// `total p99_latency_ms of catalogue, front-end below 400`.
    pub fn describe(&self) -> String {
        let cmp = match self.comparison {
            Comparison::Below => "below",
            Comparison::AtLeast => "at least",
        };
        let names = self
            .components
            .iter()
            .map(ComponentName::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let combine = match (self.combine, self.components.len()) {
            (_, 1) | (Combine::Each, _) => "",
            (Combine::Total, _) => "total ",
            (Combine::Average, _) => "average ",
        };
        let each = if self.combine == Combine::Each && self.components.len() > 1 {
            " each"
        } else {
            ""
        };
        format!(
            "{combine}{} of {names}{each} {cmp} {}",
            metric_name(self.metric),
            self.threshold
        )
    }
}

/// Whether `m` is a reachable component that served no request in the window: its metrics came back with a
/// request rate of 0 and (when its status is known) it has a ready pod. Its latency and error rate are then
/// undefined rather than unknown.
fn idle(m: &Measurement) -> bool {
    let no_requests = m
        .metrics
        .as_ref()
        .is_some_and(|x| x.request_rate == Some(0.0) && x.p99_ms.is_none());
    let serving = m.status.as_ref().is_none_or(|s| s.ready_replicas > 0);
    no_requests && serving
}

/// Judges each objective from measurements: each / total / average over its components. A component not measured
/// (or whose metric is missing) makes its objective unmet — the manager never assumes.
///
/// One exception, so a goal over a quiet service means what a person expects: an upper bound (`below`) on P99
/// latency or error rate is not broken by a component that is up but served no request in the window (no request
/// was slow or failed). Such a component is left out of the combination and listed in `idle`; when every component
/// is idle the objective holds with no value. A lower bound (`at_least`) on those metrics is never met without
/// requests, and a component that cannot be reached, or has no ready pod, still counts as not measured.
pub fn evaluate(
    objectives: &[GoalObjective],
    measured: &[(ComponentName, Measurement)],
) -> Vec<ObjectiveResult> {
    objectives
        .iter()
        .map(|o| {
            let per_component: Vec<(ComponentName, Option<f64>)> = o
                .components
                .iter()
                .map(|c| {
                    let v = measured
                        .iter()
                        .find(|(m, _)| m == c)
                        .and_then(|(_, m)| measured_value(o.metric, m));
                    (c.clone(), v)
                })
                .collect();
            let holds = |v: f64| match o.comparison {
                Comparison::Below => v < o.threshold,
                Comparison::AtLeast => v >= o.threshold,
            };
            let vacuous = o.comparison == Comparison::Below
                && matches!(o.metric, SloMetric::P99LatencyMs | SloMetric::ErrorRatePercent);
            let idle_components: Vec<ComponentName> = if vacuous {
                per_component
                    .iter()
                    .filter(|(c, v)| v.is_none() && measured.iter().any(|(m, x)| m == c && idle(x)))
                    .map(|(c, _)| c.clone())
                    .collect()
            } else {
                Vec::new()
            };
            let values: Option<Vec<f64>> = per_component
                .iter()
                .filter(|(c, _)| !idle_components.contains(c))
                .map(|(_, v)| *v)
                .collect();
            let (value, met) = match (&values, o.combine) {
                (None, _) => (None, false),
                // Every component idle: nothing broke the upper bound.
                (Some(vs), _) if vs.is_empty() => (None, true),
                (Some(vs), Combine::Each) => {
                    // The worst value is the one that decides.
                    let worst = match o.comparison {
                        Comparison::Below => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                        Comparison::AtLeast => vs.iter().copied().fold(f64::INFINITY, f64::min),
                    };
                    (Some(worst), vs.iter().all(|v| holds(*v)))
                }
                (Some(vs), Combine::Total) => {
                    let sum: f64 = vs.iter().sum();
                    (Some(sum), holds(sum))
                }
                (Some(vs), Combine::Average) => {
                    let mean = vs.iter().sum::<f64>() / vs.len().max(1) as f64;
                    (Some(mean), holds(mean))
                }
            };
            ObjectiveResult {
                objective: o.clone(),
                per_component,
                value,
                met,
                idle: idle_components,
            }
        })
        .collect()
}

/// `total p99_latency_ms of catalogue, front-end below 400: measured 512.0 (catalogue 300.0, front-end 212.0)`.
pub fn describe_result(r: &ObjectiveResult) -> String {
    let parts = r
        .per_component
        .iter()
        .map(|(c, v)| match v {
            Some(x) => format!("{c} {x:.1}"),
            None if r.idle.contains(c) => format!("{c} no requests in the window"),
            None => format!("{c} not measured"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let value = match r.value {
        Some(v) => format!("measured {v:.1}"),
        None if r.met => "no requests in the window, so nothing was slow or failed".to_owned(),
        None => "not measured".to_owned(),
    };
    let verdict = if r.met { "holds" } else { "does not hold" };
    format!("{}: {value} ({parts}) — {verdict}", r.objective.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetricsSnapshot;

    fn c(n: &str) -> ComponentName {
        ComponentName::new(n).unwrap()
    }

    fn obj(
        cs: &[&str],
        metric: SloMetric,
        comparison: Comparison,
        threshold: f64,
        combine: Combine,
    ) -> GoalObjective {
        GoalObjective {
            components: cs.iter().map(|n| c(n)).collect(),
            metric,
            comparison,
            threshold,
            combine,
        }
    }

    fn p99(v: Option<f64>) -> Measurement {
        Measurement {
            metrics: Some(MetricsSnapshot {
                component: c("a"),
                window_secs: 10.0,
                cpu_percent_of_limit: None,
                memory_percent_of_limit: None,
                request_rate: Some(1.0),
                p50_ms: None,
                p99_ms: v,
                error_rate_percent: None,
                calls: Vec::new(),
            }),
            status: None,
        }
    }

    #[test]
    fn resource_round_trips_and_validates() {
        // The field names a goal file uses (acvctl reads the same shape from YAML).
        let v = serde_json::json!({
            "apiVersion": "acv.dev/v1alpha1",
            "kind": "Goal",
            "metadata": {"name": "total-latency"},
            "spec": {
                "text": "Reduce the total P99 latency of Catalogue and Front-end to under 400 ms.",
                "objectives": [{"components": ["catalogue", "front-end"], "metric": "p99_latency_ms",
                                "comparison": "below", "threshold": 400.0, "combine": "total"}],
                "deadlineSeconds": 600
            }
        });
        let r: GoalResource = serde_json::from_value(v.clone()).unwrap();
        r.validate().unwrap();
        assert_eq!(r.spec.objectives[0].combine, Combine::Total);
        assert_eq!(r.spec.deadline_seconds, Some(600));
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
        let mut wrong = r.clone();
        wrong.kind = "Deployment".into();
        assert!(matches!(wrong.validate(), Err(GoalError::WrongKind { .. })));
        let mut bad_name = r;
        bad_name.metadata.name = Some("Bad Name".into());
        assert!(matches!(bad_name.validate(), Err(GoalError::BadName(_))));
    }

    #[test]
    fn impossible_and_contradictory_objectives_are_refused() {
        let below_zero = GoalSpec {
            objectives: vec![obj(
                &["a"],
                SloMetric::P99LatencyMs,
                Comparison::Below,
                0.0,
                Combine::Each,
            )],
            ..GoalSpec::default()
        };
        assert!(matches!(
            below_zero.validate(),
            Err(GoalError::Impossible { index: 0, .. })
        ));
        let over_100 = GoalSpec {
            objectives: vec![obj(
                &["a"],
                SloMetric::ReadyPercent,
                Comparison::AtLeast,
                120.0,
                Combine::Each,
            )],
            ..GoalSpec::default()
        };
        assert!(matches!(over_100.validate(), Err(GoalError::Impossible { .. })));
        let contradictory = GoalSpec {
            objectives: vec![
                obj(
                    &["a"],
                    SloMetric::CpuPercentOfLimit,
                    Comparison::Below,
                    30.0,
                    Combine::Each,
                ),
                obj(
                    &["a"],
                    SloMetric::CpuPercentOfLimit,
                    Comparison::AtLeast,
                    40.0,
                    Combine::Each,
                ),
            ],
            ..GoalSpec::default()
        };
        let err = contradictory.validate().unwrap_err();
        assert!(
            matches!(err, GoalError::Contradictory { a: 0, b: 1, .. }),
            "{err}"
        );
        let compatible = GoalSpec {
            objectives: vec![
                obj(
                    &["a"],
                    SloMetric::CpuPercentOfLimit,
                    Comparison::Below,
                    30.0,
                    Combine::Each,
                ),
                obj(
                    &["a"],
                    SloMetric::CpuPercentOfLimit,
                    Comparison::AtLeast,
                    10.0,
                    Combine::Each,
                ),
            ],
            ..GoalSpec::default()
        };
        compatible.validate().unwrap();
        assert_eq!(GoalSpec::default().validate(), Err(GoalError::Empty));
        let nan = GoalSpec {
            objectives: vec![obj(
                &["a"],
                SloMetric::P99LatencyMs,
                Comparison::Below,
                f64::NAN,
                Combine::Each,
            )],
            ..GoalSpec::default()
        };
        assert!(matches!(nan.validate(), Err(GoalError::Impossible { .. })));
    }

    #[test]
    fn evaluate_combines_each_total_average() {
        let m = vec![(c("a"), p99(Some(300.0))), (c("b"), p99(Some(150.0)))];
        let total = obj(
            &["a", "b"],
            SloMetric::P99LatencyMs,
            Comparison::Below,
            400.0,
            Combine::Total,
        );
        let r = &evaluate(std::slice::from_ref(&total), &m)[0];
        assert_eq!(r.value, Some(450.0));
        assert!(!r.met);
        let avg = GoalObjective {
            combine: Combine::Average,
            ..total.clone()
        };
        let r = &evaluate(&[avg], &m)[0];
        assert_eq!(r.value, Some(225.0));
        assert!(r.met);
        let each = GoalObjective {
            combine: Combine::Each,
            threshold: 200.0,
            ..total.clone()
        };
        let r = &evaluate(&[each], &m)[0];
        assert_eq!(r.value, Some(300.0));
        assert!(!r.met);
        let missing = vec![(c("a"), p99(Some(10.0))), (c("b"), p99(None))];
        let r = &evaluate(&[total], &missing)[0];
        assert_eq!(r.value, None);
        assert!(!r.met);
        assert!(
            describe_result(r).contains("b not measured"),
            "{}",
            describe_result(r)
        );
    }

    #[test]
    fn no_traffic_does_not_break_an_upper_bound_on_latency() {
        let quiet = |ready: u32| {
            let mut m = p99(None);
            if let Some(x) = m.metrics.as_mut() {
                x.request_rate = Some(0.0);
            }
            m.status = Some(crate::ComponentStatus {
                component: c("b"),
                desired_replicas: 1,
                ready_replicas: ready,
                replicas: Vec::new(),
                revision: 1,
                image: "x".into(),
                env: std::collections::BTreeMap::new(),
                limits: crate::ResourceLimits {
                    cpu_millis: 100,
                    memory_mib: 64,
                },
            });
            m
        };
        let one = obj(
            &["b"],
            SloMetric::P99LatencyMs,
            Comparison::Below,
            300.0,
            Combine::Each,
        );
        let r = &evaluate(std::slice::from_ref(&one), &[(c("b"), quiet(1))])[0];
        assert!(r.met && r.value.is_none() && r.idle == vec![c("b")], "{r:?}");
        assert!(
            describe_result(r).contains("no requests in the window"),
            "{}",
            describe_result(r)
        );
        // Down (no ready pod), or unreachable: not measured, not met.
        assert!(!evaluate(std::slice::from_ref(&one), &[(c("b"), quiet(0))])[0].met);
        assert!(!evaluate(std::slice::from_ref(&one), &[])[0].met);
        // A total over a busy and a quiet component judges the busy one alone.
        let total = obj(
            &["a", "b"],
            SloMetric::P99LatencyMs,
            Comparison::Below,
            400.0,
            Combine::Total,
        );
        let r = &evaluate(
            std::slice::from_ref(&total),
            &[(c("a"), p99(Some(350.0))), (c("b"), quiet(1))],
        )[0];
        assert_eq!((r.value, r.met), (Some(350.0), true));
        let r = &evaluate(&[total], &[(c("a"), p99(Some(450.0))), (c("b"), quiet(1))])[0];
        assert!(!r.met);
        // A lower bound, or another metric, is not met by silence.
        let at_least = obj(
            &["b"],
            SloMetric::P99LatencyMs,
            Comparison::AtLeast,
            1.0,
            Combine::Each,
        );
        assert!(!evaluate(&[at_least], &[(c("b"), quiet(1))])[0].met);
        let cpu = obj(
            &["b"],
            SloMetric::CpuPercentOfLimit,
            Comparison::Below,
            30.0,
            Combine::Each,
        );
        assert!(!evaluate(&[cpu], &[(c("b"), quiet(1))])[0].met);
    }

    #[test]
    fn states_parse_and_terminal() {
        assert_eq!("partial".parse::<GoalState>(), Ok(GoalState::Partial));
        assert!("done".parse::<GoalState>().is_err());
        assert!(GoalState::Cancelled.is_terminal());
        assert!(!GoalState::Verifying.is_terminal());
        assert_eq!("timed_out".parse::<SubtaskState>(), Ok(SubtaskState::TimedOut));
    }
}
