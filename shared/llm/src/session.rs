//! The multi-turn maintainer loop: ask the planner, run its steps, feed the outcomes back, until a final report or
//! the turn budget runs out. The sidecar plugs its sandbox in as the [`Executor`]; tests plug in fakes.

use acv_protocol::{Diagnosis, ReportStatus, RootCause, StepOutcome, StepRecord};
use acv_telemetry::metrics::{CounterName, HistogramName, count, observe};

use crate::{
    client::UsageTotals,
    planner::{FinalReport, MaintainerContext, Observation, PlanError, PlannedStep, Planner, TaskStep},
};

/// What running one step produced.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// How it ended.
    pub outcome: StepOutcome,
    /// Captured output (stdout, then the error text if any).
    pub output: String,
    /// The last `acv.report(...)` the program made, if any.
    pub report: Option<FinalReport>,
    /// Whether the step changed the cluster, by the executor's record of the host calls that ran (the sandbox's
    /// `RunOutcome::mutated`); observations taken before it are stale.
    pub mutated: bool,
}

/// Runs steps (the sidecar: in the sandbox) and, optionally, observes the component before each turn.
#[async_trait::async_trait]
pub trait Executor: Send {
    /// Runs one step. `index` is its 1-based position in the task.
    async fn execute(&mut self, index: u32, step: &PlannedStep) -> StepResult;

    /// Fresh observations before a turn (after any settle time). `None`: the planner observes by itself.
    async fn observe(&mut self) -> Option<Observation> {
        None
    }
}

/// A finished task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    /// The final report.
    pub report: FinalReport,
    /// Every step run, in order.
    pub steps: Vec<StepRecord>,
    /// Planner turns used.
    pub turns: u32,
    /// LLM use for this task.
    pub usage: UsageTotals,
    /// The planner's diagnosis: the last one that named a cause other than "healthy" (the cause of what was
    /// fixed), else the last one given.
    pub diagnosis: Option<Diagnosis>,
}

/// A task that ended without a final report, with everything done up to then.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {turns} turns and {} steps)", steps.len())]
pub struct TaskFailure {
    /// Why.
    #[source]
    pub error: PlanError,
    /// Steps run before the failure.
    pub steps: Vec<StepRecord>,
    /// Turns used.
    pub turns: u32,
    /// LLM use for this task.
    pub usage: UsageTotals,
    /// The planner's diagnosis so far (as in [`TaskOutcome::diagnosis`]).
    pub diagnosis: Option<Diagnosis>,
}

/// Keeps the diagnosis worth reporting: a cause beats "healthy", a later cause beats an earlier one.
fn keep_diagnosis(kept: &mut Option<Diagnosis>, new: Option<Diagnosis>) {
    if let Some(d) = new
        && (d.cause != RootCause::Healthy || kept.as_ref().is_none_or(|k| k.cause == RootCause::Healthy))
    {
        *kept = Some(d);
    }
}

/// Counts one planner turn by planner kind (`acv_planner_turns_total`) and the tokens it billed
/// (`acv_llm_tokens_total`); the model name is not a label, so the label set stays bounded.
fn count_turn(planner: &dyn Planner, usage: Option<&UsageTotals>) {
    let name = planner.name();
    let kind = match name.split(':').next().unwrap_or_default() {
        "rules" => "rules",
        "llm" => "llm",
        _ => "other",
    };
    count(CounterName::PlannerTurns, &[("planner", kind)], 1);
    if let Some(u) = usage {
        count(CounterName::LlmTokens, &[("kind", "prompt")], u.prompt_tokens);
        count(
            CounterName::LlmTokens,
            &[("kind", "completion")],
            u.completion_tokens,
        );
    }
}

/// Drives `planner` from `ctx` (normally turn 1 with no steps) to a final report. A session that called an LLM
/// records what it cost in `acv_llm_session_cost_usd`.
pub async fn drive(
    planner: &dyn Planner,
    ctx: MaintainerContext,
    exec: &mut dyn Executor,
) -> Result<TaskOutcome, TaskFailure> {
    let outcome = drive_turns(planner, ctx, exec).await;
    let usage = match &outcome {
        Ok(done) => &done.usage,
        Err(failure) => &failure.usage,
    };
    if usage.calls > 0 {
        observe(HistogramName::LlmCostUsd, &[], usage.cost_usd);
    }
    outcome
}

async fn drive_turns(
    planner: &dyn Planner,
    mut ctx: MaintainerContext,
    exec: &mut dyn Executor,
) -> Result<TaskOutcome, TaskFailure> {
    let mut usage = UsageTotals::default();
    let mut diagnosis: Option<Diagnosis> = None;
    let fail = |error, ctx: MaintainerContext, usage, diagnosis| TaskFailure {
        error,
        turns: ctx.turn.saturating_sub(1),
        steps: ctx.steps.into_iter().map(StepRecord::from).collect(),
        usage,
        diagnosis,
    };
    loop {
        if let Err(e) = ctx.check_budget() {
            return Err(fail(e, ctx, usage, diagnosis));
        }
        if let Some(obs) = exec.observe().await {
            ctx.observation = Some(obs);
        }
        let plan = planner.next(&ctx).await;
        count_turn(planner, plan.as_ref().ok().map(|p| &p.usage));
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                ctx.turn += 1;
                return Err(fail(e, ctx, usage, diagnosis));
            }
        };
        usage.add(&plan.usage);
        keep_diagnosis(&mut diagnosis, plan.diagnosis.clone());
        tracing::debug!(turn = ctx.turn, steps = plan.steps.len(), done = plan.done, thought = %plan.thought, "Plan received.");
        let mut all_ok = true;
        let mut step_report = None;
        for step in &plan.steps {
            let index = u32::try_from(ctx.steps.len() + 1).unwrap_or(u32::MAX);
            let res = exec.execute(index, step).await;
            if res.report.is_some() {
                step_report = res.report.clone();
            }
            let record = StepRecord {
                index,
                description: step.description.clone(),
                program: step.program.clone(),
                outcome: res.outcome,
                output: res.output,
                mutated: res.mutated,
            };
            ctx.steps.push(TaskStep::ran(record, step));
            if res.outcome != StepOutcome::Ok {
                all_ok = false;
                break;
            }
        }
        if plan.steps.is_empty() && !plan.done && plan.report.is_none() {
            ctx.turn += 1;
            return Err(fail(
                PlanError::Invalid("the planner returned an empty plan".into()),
                ctx,
                usage,
                diagnosis,
            ));
        }
        let finished = all_ok && (plan.done || plan.steps.is_empty());
        if finished {
            let report = plan.report.or(step_report).unwrap_or_else(|| FinalReport {
                status: ReportStatus::Response,
                message: format!("Done after {} steps.", ctx.steps.len()),
            });
            return Ok(TaskOutcome {
                report,
                turns: ctx.turn,
                steps: ctx.steps.into_iter().map(StepRecord::from).collect(),
                usage,
                diagnosis,
            });
        }
        ctx.turn += 1;
    }
}
