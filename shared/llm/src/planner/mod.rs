//! The [`Planner`] abstraction shared by the sidecar (maintainer) and the manager, and the types it speaks.
//!
//! Maintainer protocol (multi-turn): the sidecar calls [`Planner::next`] with a [`MaintainerContext`] holding the
//! task or SLO violations, its SLO policy, the safety mode, fresh observations if it has them, and the steps already
//! run with their outputs. The planner answers with a [`Plan`]: zero or more [`PlannedStep`]s (a description and a
//! Python program using `import acv`) and whether the task is finished after them. The sidecar runs the steps in the
//! sandbox (stopping at the first failure), appends the [`StepRecord`]s and asks again, up to `max_turns` times.
//! [`drive`](crate::session::drive) implements that loop for any [`Executor`](crate::session::Executor).
//!
//! The task's final report is, in this order: the plan's explicit `report`; otherwise the last `acv.report(...)`
//! made by the steps of a plan marked `done`.
//!
//! Manager protocol: [`Planner::decompose`] splits a declarative [`Goal`] over components into [`Subtask`]s, and
//! [`Planner::judge`] decides from measured [`MetricsSnapshot`]s whether the goal is reached.

use acv_protocol::{
    ComponentName, ComponentStatus, Diagnosis, Goal, Measurement, Mechanism, MetricsSnapshot, ReportStatus,
    Revision, SloPolicy, TaskSpec, Violation,
};
use serde::{Deserialize, Serialize};

use crate::client::{LlmError, UsageTotals};

pub mod llm;
pub mod rules;
pub mod state;

pub use state::{
    OBSERVATION_MARKER, ObservationError, Remedy, StepObservation, StepPurpose, TaskStep, parse_observation,
    read_observation,
};

pub use acv_protocol::SafetyMode;

/// What started the maintainer's work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    /// A task from the manager, a person or a peer.
    Task {
        /// The task id (for logs).
        task_id: String,
        /// What to do.
        spec: TaskSpec,
        /// Which mechanism sent it.
        #[serde(default)]
        mechanism: Mechanism,
    },
    /// The sidecar's own health check found broken objectives (L3–L5).
    Violations {
        /// What is broken.
        violations: Vec<Violation>,
    },
}

/// Fresh facts about the own component, when the caller has them (the sidecar reads them from its cluster backend
/// before each turn). Planners that get none ask for them with an observe step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Observation {
    /// Current status.
    #[serde(default)]
    pub status: Option<ComponentStatus>,
    /// Current metrics window.
    #[serde(default)]
    pub metrics: Option<MetricsSnapshot>,
    /// Revision history, oldest first.
    #[serde(default)]
    pub history: Vec<Revision>,
    /// What the agent saw while the component was last healthy (load, cost per request, capacity), so a planner
    /// can tell "more load" from "something is eating the CPU". `None` when the caller keeps no such record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    /// When this observation was taken, ms since the Unix epoch (0: unknown). Ages of revisions are measured
    /// from it.
    #[serde(default)]
    pub at_ms: u64,
}

/// The component as it was while healthy: the reference a diagnosis compares the present with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Baseline {
    /// Mean request rate (req/s) over the recent healthy checks.
    #[serde(default)]
    pub request_rate: Option<f64>,
    /// Mean CPU time per request (ms of CPU per request, all replicas together) over the recent healthy checks
    /// with traffic; what one request normally costs.
    #[serde(default)]
    pub cpu_ms_per_request: Option<f64>,
    /// Mean CPU use (% of the per-replica limit) over the recent healthy checks.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
    /// Mean memory use (% of the per-replica limit) over the recent healthy checks.
    #[serde(default)]
    pub memory_percent: Option<f64>,
    /// Replicas desired before the current episode's first mitigation (the capacity to give back to).
    pub replicas: u32,
    /// Limits before the current episode's first mitigation.
    pub limits: Option<acv_protocol::ResourceLimits>,
    /// How many healthy checks the figures average.
    #[serde(default)]
    pub healthy_checks: u32,
}

/// Everything a maintainer planner gets each turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintainerContext {
    /// The own component.
    pub component: ComponentName,
    /// Why we are working.
    pub trigger: Trigger,
    /// The SLO policy of the component.
    pub slo: SloPolicy,
    /// Safety mode of the host.
    pub safety: SafetyMode,
    /// Observations taken just before this turn (`None`: the planner must observe by itself).
    #[serde(default)]
    pub observation: Option<Observation>,
    /// Steps run so far for this task, in order, with the typed metadata planners carry between turns.
    #[serde(default)]
    pub steps: Vec<TaskStep>,
    /// This turn, 1-based.
    pub turn: u32,
    /// Turns allowed for this task.
    pub max_turns: u32,
}

/// One step: a Python program for the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    /// What it is for, in words.
    pub description: String,
    /// Python source using `import acv`.
    pub program: String,
    /// What the step is for, for the planner's later turns (the rules planner sets it; the LLM planner does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<StepPurpose>,
}

pub use acv_protocol::FinalReport;

/// A planner's answer for one turn.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Reasoning in a sentence or two (logged, not executed).
    #[serde(default)]
    pub thought: String,
    /// Steps to run now, in order.
    #[serde(default)]
    pub steps: Vec<PlannedStep>,
    /// The task is finished once these steps ran successfully.
    #[serde(default)]
    pub done: bool,
    /// The final report, if the planner already knows it (otherwise the steps' last `acv.report`).
    #[serde(default)]
    pub report: Option<FinalReport>,
    /// LLM use for this turn (zero for the rules planner).
    #[serde(default)]
    pub usage: UsageTotals,
    /// What the planner concluded is behind the symptoms, when it diagnosed (the report carries the last one that
    /// is not "healthy").
    #[serde(default)]
    pub diagnosis: Option<Diagnosis>,
}

/// Part of a goal for one component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subtask {
    /// Who does it.
    pub component: ComponentName,
    /// What to ask (declarative with the component's objectives, or imperative text).
    pub spec: TaskSpec,
}

/// The verdict on a goal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// Whether every objective holds.
    pub met: bool,
    /// RESPONSE when met, ISSUE when not.
    pub status: ReportStatus,
    /// For a person, with the measured values.
    pub message: String,
    /// Objectives broken (empty when met).
    pub violations: Vec<Violation>,
    /// LLM use (zero for the rules planner).
    #[serde(default)]
    pub usage: UsageTotals,
}

/// Why a planner could not plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The task's turn budget is used up without a final report.
    #[error("turn budget exhausted: {turns} turns used of {max_turns} without a final report")]
    TurnBudgetExhausted {
        /// Turns used.
        turns: u32,
        /// Turns allowed.
        max_turns: u32,
    },
    /// The model kept answering with plans that fail validation.
    #[error("the model returned no valid plan after {attempts} attempts; last problem: {last}")]
    Malformed {
        /// Attempts made (first try plus repairs).
        attempts: u32,
        /// The last validation error.
        last: String,
    },
    /// The LLM call failed.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The input cannot be planned for (unknown component, empty goal, …).
    #[error("cannot plan: {0}")]
    Invalid(String),
}

/// The brain of an agent: the rules planner or the LLM planner.
#[async_trait::async_trait]
pub trait Planner: Send + Sync {
    /// A label for reports and registration: `rules` or `llm:<model>`.
    fn name(&self) -> String;

    /// Maintainer: the next step(s) for this turn, or the final report.
    async fn next(&self, ctx: &MaintainerContext) -> Result<Plan, PlanError>;

    /// Manager: splits a goal over components. `components` are those registered; `measured` is the latest
    /// measurement per component when known.
    async fn decompose(
        &self,
        goal: &Goal,
        components: &[ComponentName],
        measured: &[(ComponentName, Measurement)],
    ) -> Result<Vec<Subtask>, PlanError>;

    /// Manager: whether the goal holds according to the measurements.
    async fn judge(
        &self,
        goal: &Goal,
        measured: &[(ComponentName, Measurement)],
    ) -> Result<Judgement, PlanError>;
}

// === impl MaintainerContext ===

impl MaintainerContext {
    /// A first-turn context for a task.
    pub fn for_task(component: ComponentName, task_id: impl Into<String>, spec: TaskSpec) -> Self {
        Self {
            component,
            trigger: Trigger::Task {
                task_id: task_id.into(),
                spec,
                mechanism: Mechanism::Solo,
            },
            slo: SloPolicy::default(),
            safety: SafetyMode::Autonomous,
            observation: None,
            steps: Vec::new(),
            turn: 1,
            max_turns: 8,
        }
    }

    /// A first-turn context for SLO violations.
    pub fn for_violations(component: ComponentName, violations: Vec<Violation>) -> Self {
        Self {
            trigger: Trigger::Violations { violations },
            ..Self::for_task(component, "health", TaskSpec::Imperative { text: String::new() })
        }
    }

    /// Fails with [`PlanError::TurnBudgetExhausted`] when this turn is beyond the budget.
    pub fn check_budget(&self) -> Result<(), PlanError> {
        if self.turn > self.max_turns {
            return Err(PlanError::TurnBudgetExhausted {
                turns: self.turn - 1,
                max_turns: self.max_turns,
            });
        }
        Ok(())
    }

    /// The freshest observation: the caller's, else the last `ACV_OBSERVATION` printed after the last step that
    /// changed something (by the executor's record, [`StepRecord::mutated`]).
    pub fn latest_observation(&self) -> Option<Observation> {
        if let Some(o) = &self.observation {
            return Some(o.clone());
        }
        for step in self.steps.iter().rev() {
            if let Some(StepObservation::Read { observation }) = &step.observation {
                return Some(observation.as_ref().clone());
            }
            if step.record.mutated {
                // Anything observed before a mutation is stale.
                return None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
