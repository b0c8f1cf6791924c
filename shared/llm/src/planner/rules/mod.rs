//! The offline rules planner: deterministic playbooks that need no LLM and emit the same kind of steps (Python
//! programs for the sandbox) and reports as the LLM planner. It is the default and the evaluation baseline.
//!
//! - [`parse`]: plain-English tasks to typed [`Intent`](parse::Intent)s, by grammar category; anything it cannot do
//!   gets a clear "cannot do this … I can: …", and a task naming another component is refused.
//! - `task`: one program per imperative task (act and report).
//! - `playbook`: the SLO playbooks (see there), verified by a fresh observation after every action.
//! - `downstream`: a broken latency or error objective caused by a component this one calls is that component's to
//!   fix: ask its agent (`acv.ask_peer`) instead of acting on the own component.
//! - `manager`: goal decomposition and judging from measurements.
//! - [`programs`]: the Python programs.
//!
//! The planner keeps no memory of its own: what it did on earlier turns is read back from the typed metadata of the
//! context's steps ([`StepPurpose`](super::StepPurpose) and [`StepObservation`](super::StepObservation)).

use acv_protocol::{ComponentName, Goal, Measurement, ReportStatus, StepOutcome, TaskSpec};

use super::{
    Judgement, MaintainerContext, Plan, PlanError, PlannedStep, Planner, StepPurpose, Subtask, Trigger,
};
use crate::client::UsageTotals;
use acv_protocol::FinalReport;

pub mod capacity;
pub mod diagnose;
mod downstream;
pub mod goal;
mod manager;
pub mod parse;
mod playbook;
pub mod programs;
mod task;

/// Most scale-out steps one task may take for latency.
pub const MAX_SCALE_STEPS: usize = 3;
/// Replica ceiling for any scale-out.
pub const MAX_REPLICAS: u32 = 10;

/// The rules planner. Stateless: every decision comes from the context.
#[derive(Debug, Clone, Default)]
pub struct RulesPlanner;

fn step(purpose: StepPurpose, what: impl Into<String>, program: String) -> PlannedStep {
    PlannedStep {
        description: what.into(),
        program,
        purpose: Some(purpose),
    }
}

fn finish(status: ReportStatus, message: impl Into<String>, thought: impl Into<String>) -> Plan {
    Plan {
        thought: thought.into(),
        steps: Vec::new(),
        done: true,
        report: Some(FinalReport {
            status,
            message: message.into(),
        }),
        usage: UsageTotals::default(),
        diagnosis: None,
    }
}

fn one_step(s: PlannedStep, done: bool, thought: impl Into<String>) -> Plan {
    Plan {
        thought: thought.into(),
        steps: vec![s],
        done,
        report: None,
        usage: UsageTotals::default(),
        diagnosis: None,
    }
}

fn tail(output: &str, lines: usize) -> String {
    let all: Vec<&str> = output.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// === impl RulesPlanner ===

impl RulesPlanner {
    /// A rules planner.
    pub fn new() -> Self {
        Self
    }

    /// The maintainer decision for one turn (synchronous; [`Planner::next`] wraps it).
    pub fn plan(&self, ctx: &MaintainerContext) -> Result<Plan, PlanError> {
        ctx.check_budget()?;
        // A failed step ends the task with an ISSUE naming it: the rules never retry blindly.
        if let Some(last) = ctx.steps.last().map(|s| &s.record)
            && last.outcome != StepOutcome::Ok
        {
            let why = match last.outcome {
                StepOutcome::Refused => "was refused by the host",
                StepOutcome::LimitExceeded => "hit a sandbox limit",
                StepOutcome::Skipped => "was not executed",
                StepOutcome::Reverted => "made things worse and was reverted",
                _ => "failed",
            };
            return Ok(finish(
                ReportStatus::Issue,
                format!(
                    "Step {} ({}) {why}: {}",
                    last.index,
                    last.description,
                    tail(&last.output, 5)
                ),
                "the last step did not succeed",
            ));
        }
        match &ctx.trigger {
            Trigger::Task {
                spec: TaskSpec::Declarative { goal },
                ..
            } => Ok(self.declarative(ctx, goal)),
            Trigger::Task {
                spec: TaskSpec::Imperative { text },
                ..
            } => Ok(self.imperative(ctx, text)),
            Trigger::Violations { violations } => {
                let mut objectives = ctx.slo.objectives(&ctx.component);
                for v in violations
                    .iter()
                    .filter(|v| v.objective.component == ctx.component)
                {
                    match objectives.iter_mut().find(|o| o.metric == v.objective.metric) {
                        Some(o) => *o = v.objective.clone(),
                        None => objectives.push(v.objective.clone()),
                    }
                }
                Ok(self.remediate(ctx, &objectives))
            }
        }
    }
}

#[async_trait::async_trait]
impl Planner for RulesPlanner {
    fn name(&self) -> String {
        "rules".to_owned()
    }

    async fn next(&self, ctx: &MaintainerContext) -> Result<Plan, PlanError> {
        self.plan(ctx)
    }

    async fn decompose(
        &self,
        goal: &Goal,
        components: &[ComponentName],
        _measured: &[(ComponentName, Measurement)],
    ) -> Result<Vec<Subtask>, PlanError> {
        self.split_goal(goal, components)
    }

    async fn judge(
        &self,
        goal: &Goal,
        measured: &[(ComponentName, Measurement)],
    ) -> Result<Judgement, PlanError> {
        Ok(self.judge_goal(goal, measured))
    }
}
