//! The offline rules planner: deterministic playbooks that need no LLM and emit the same kind of steps (Python
//! programs for the sandbox) and reports as the LLM planner. It is the default and the evaluation baseline.
//!
//! Maintainer playbooks, applied to the first broken objective in the order ready → memory → CPU → P99 → errors:
//! - not ready / crash loop: roll back when the current revision changed the image (restart when there is no
//!   previous revision), then restart, then give up with an ISSUE;
//! - memory over the objective: double the memory limit, then restart (leak), then ISSUE;
//! - CPU over the objective: scale out (enough replicas for the measured load, at least +1), then raise the CPU
//!   limit by 1.5×, then ISSUE;
//! - P99 over the objective: scale out one replica per turn up to [`MAX_SCALE_STEPS`] times, verifying each time;
//! - error rate: like not ready.
//!
//! Every action is followed by a fresh observation (the caller's, or an observe step) before the next decision.
//! Imperative L1 tasks are parsed from plain English ([`parse`]); anything else gets a clear "cannot do this".
//! Manager rules split a goal over the components it names and judge it from measurements.

use acv_protocol::{
    Comparison, ComponentName, Goal, Measurement, Objective, ReportStatus, SloMetric, StepOutcome, StepRecord,
    TaskSpec, Violation, check_health, check_objectives, describe_objective, describe_violation, measured_value,
    metric_name,
};

use super::{
    FinalReport, Judgement, MaintainerContext, Observation, Plan, PlanError, PlannedStep, Planner, SafetyMode,
    Subtask, Trigger,
};
use crate::client::UsageTotals;

pub mod goal;
pub mod parse;
pub mod programs;

use parse::Intent;

/// Most scale-out steps one task may take for latency.
pub const MAX_SCALE_STEPS: usize = 3;
/// Replica ceiling for any scale-out.
pub const MAX_REPLICAS: u32 = 10;

/// The rules planner. Stateless: every decision comes from the context.
#[derive(Debug, Clone, Default)]
pub struct RulesPlanner;

/// Tags in step descriptions that let later turns see which actions were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Observe,
    Rollback,
    Restart,
    ScaleOut,
    RaiseCpu,
    RaiseMemory,
    Task,
}

// === impl Action ===

impl Action {
    fn tag(self) -> &'static str {
        match self {
            Action::Observe => "[rules:observe]",
            Action::Rollback => "[rules:rollback]",
            Action::Restart => "[rules:restart]",
            Action::ScaleOut => "[rules:scale-out]",
            Action::RaiseCpu => "[rules:raise-cpu]",
            Action::RaiseMemory => "[rules:raise-memory]",
            Action::Task => "[rules:task]",
        }
    }

    fn taken(self, steps: &[StepRecord]) -> usize {
        steps
            .iter()
            .filter(|s| s.description.starts_with(self.tag()))
            .count()
    }
}

fn step(action: Action, what: impl AsRef<str>, program: String) -> PlannedStep {
    PlannedStep {
        description: format!("{} {}", action.tag(), what.as_ref()),
        program,
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
    }
}

fn one_step(s: PlannedStep, done: bool, thought: impl Into<String>) -> Plan {
    Plan {
        thought: thought.into(),
        steps: vec![s],
        done,
        report: None,
        usage: UsageTotals::default(),
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
        if let Some(last) = ctx.steps.last()
            && last.outcome != StepOutcome::Ok
        {
            let why = match last.outcome {
                StepOutcome::Refused => "was refused by the host",
                StepOutcome::LimitExceeded => "hit a sandbox limit",
                StepOutcome::Skipped => "was not executed",
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
            } => {
                let mut objectives: Vec<Objective> = goal
                    .objectives
                    .iter()
                    .filter(|o| o.component == ctx.component)
                    .cloned()
                    .collect();
                if objectives.is_empty() {
                    objectives =
                        parse::parse_goal_objectives(&goal.text, std::slice::from_ref(&ctx.component));
                }
                if objectives.is_empty() {
                    return Ok(finish(
                        ReportStatus::Issue,
                        format!(
                            "Cannot do this: the goal {:?} has no measurable objective for {}.",
                            goal.text, ctx.component
                        ),
                        "no objectives",
                    ));
                }
                Ok(self.remediate(ctx, &objectives))
            }
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

    fn imperative(&self, ctx: &MaintainerContext, text: &str) -> Plan {
        // One-shot tasks: one program that acts and reports, then done. A second turn only happens when the step
        // failed, which is handled above.
        if Action::Task.taken(&ctx.steps) > 0 {
            return finish(
                ReportStatus::Response,
                "Task carried out.",
                "task step already ran",
            );
        }
        let observe_only = ctx.safety == SafetyMode::Observe;
        let (what, program, mutating) = match parse::parse_intent(text) {
            Intent::Scale(n) if n > MAX_REPLICAS * 10 => {
                return finish(
                    ReportStatus::Issue,
                    format!(
                        "Cannot do this: {n} replicas is more than the {} allowed.",
                        MAX_REPLICAS * 10
                    ),
                    "absurd replica count",
                );
            }
            Intent::Scale(n) => (
                format!("scale {} to {n} replicas", ctx.component),
                programs::scale(n),
                true,
            ),
            Intent::ScaleBy(d) => (
                format!("scale {} by {d:+} replicas", ctx.component),
                programs::scale_relative(d),
                true,
            ),
            Intent::Restart => (
                format!("restart all replicas of {}", ctx.component),
                programs::restart(),
                true,
            ),
            Intent::SetEnv { key, value } => (
                format!("set env {key}={value} on {}", ctx.component),
                programs::set_env(&key, &value),
                true,
            ),
            Intent::SetImage(v) => (
                format!("switch {} to image {v}", ctx.component),
                programs::set_image(&v, "Updated"),
                true,
            ),
            Intent::RollbackTo(v) => (
                format!("roll {} back to version {v}", ctx.component),
                programs::set_image(&v, "Rolled back"),
                true,
            ),
            Intent::Rollback => (
                format!("roll {} back one revision", ctx.component),
                programs::rollback(),
                true,
            ),
            Intent::Create => (
                format!("make sure {} is deployed", ctx.component),
                programs::create(),
                true,
            ),
            Intent::Report(metrics) => {
                let names: Vec<&str> = metrics.iter().map(|m| m.parts().1).collect();
                (
                    format!("report {} of {}", names.join(", "), ctx.component),
                    programs::report_metrics(&metrics),
                    false,
                )
            }
            Intent::HealthCheck => (
                format!("check the health of {}", ctx.component),
                programs::health_check(&ctx.slo),
                false,
            ),
            Intent::Reach(targets) => {
                let objectives: Vec<Objective> = targets
                    .into_iter()
                    .map(|(metric, comparison, threshold)| Objective {
                        component: ctx.component.clone(),
                        metric,
                        comparison,
                        threshold,
                    })
                    .collect();
                return self.remediate(ctx, &objectives);
            }
            Intent::CannotDo(why) => {
                return finish(
                    ReportStatus::Issue,
                    format!("Cannot do this: {why}"),
                    "task not understood",
                );
            }
        };
        if mutating && observe_only {
            return finish(
                ReportStatus::Issue,
                format!("Observe mode: would {what}, but changes are not allowed."),
                "observe mode forbids mutations",
            );
        }
        one_step(step(Action::Task, &what, program), true, what)
    }

    /// The SLO playbooks for `objectives` (all of the own component).
    fn remediate(&self, ctx: &MaintainerContext, objectives: &[Objective]) -> Plan {
        let last_turn = ctx.turn >= ctx.max_turns;
        let Some(obs) = ctx.latest_observation() else {
            if last_turn {
                return finish(
                    ReportStatus::Issue,
                    format!(
                        "The turn budget ran out before {} could be re-checked.",
                        ctx.component
                    ),
                    "no turns left",
                );
            }
            return one_step(
                step(
                    Action::Observe,
                    format!("observe status, metrics and history of {}", ctx.component),
                    programs::observe(),
                ),
                false,
                "need fresh observations",
            );
        };
        let measured = [(
            ctx.component.clone(),
            Measurement {
                metrics: obs.metrics.clone(),
                status: obs.status.clone(),
            },
        )];
        let mut broken = check_health(objectives, &measured);
        broken.sort_by_key(|v| priority(v.objective.metric));
        let taken: Vec<&str> = ctx
            .steps
            .iter()
            .filter(|s| {
                s.description.starts_with("[rules:") && !s.description.starts_with(Action::Observe.tag())
            })
            .map(|s| s.description.as_str())
            .collect();
        let facts = objectives
            .iter()
            .map(|o| {
                let v = measured_value(o.metric, &measured[0].1);
                match v {
                    Some(x) => format!(
                        "{} {x:.1} (objective {})",
                        metric_name(o.metric),
                        threshold_text(o)
                    ),
                    None => format!(
                        "{} not measured (objective {})",
                        metric_name(o.metric),
                        threshold_text(o)
                    ),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let Some(first) = broken.first() else {
            let msg = if taken.is_empty() {
                format!(
                    "All objectives of {} hold; nothing to do. {facts}.",
                    ctx.component
                )
            } else {
                format!(
                    "Objectives of {} hold again after: {}. {facts}.",
                    ctx.component,
                    taken.iter().map(|d| strip_tag(d)).collect::<Vec<_>>().join("; ")
                )
            };
            return finish(ReportStatus::Response, msg, "objectives hold");
        };
        let broken_text = broken
            .iter()
            .map(describe_violation)
            .collect::<Vec<_>>()
            .join("; ");
        let give_up = |why: &str| {
            let done = if taken.is_empty() {
                String::new()
            } else {
                format!(
                    " Tried: {}.",
                    taken.iter().map(|d| strip_tag(d)).collect::<Vec<_>>().join("; ")
                )
            };
            finish(
                ReportStatus::Issue,
                format!(
                    "{} still breaks its objectives ({broken_text}); {why}.{done}",
                    ctx.component
                ),
                "playbook exhausted",
            )
        };
        let Some((action, what, program)) = self.choose(ctx, &obs, first) else {
            return give_up("the playbook has nothing more to try; a person should look");
        };
        if last_turn {
            return give_up("the turn budget is used up");
        }
        if ctx.safety == SafetyMode::Observe {
            return finish(
                ReportStatus::Issue,
                format!(
                    "{} breaks its objectives ({broken_text}). Observe mode: would {what}.",
                    ctx.component
                ),
                "observe mode forbids mutations",
            );
        }
        one_step(
            step(action, &what, program),
            false,
            format!("{broken_text}: {what}"),
        )
    }

    /// The next action for the most urgent broken objective, or `None` when the playbook is exhausted.
    fn choose(
        &self,
        ctx: &MaintainerContext,
        obs: &Observation,
        v: &Violation,
    ) -> Option<(Action, String, String)> {
        let steps = &ctx.steps;
        let c = &ctx.component;
        let replicas = obs.status.as_ref().map_or(1, |s| s.desired_replicas.max(1));
        match v.objective.metric {
            SloMetric::ReadyPercent | SloMetric::ErrorRatePercent => {
                let version_changed = match obs.history.as_slice() {
                    [.., prev, cur] => prev.image != cur.image,
                    _ => false,
                };
                if Action::Rollback.taken(steps) == 0 && Action::Restart.taken(steps) == 0 && version_changed
                {
                    let cur = obs.history.last().map(|r| r.image.clone()).unwrap_or_default();
                    Some((
                        Action::Rollback,
                        format!("roll {c} back: not healthy since the switch to {cur}"),
                        programs::remediate_rollback(),
                    ))
                } else if Action::Restart.taken(steps) == 0 {
                    Some((
                        Action::Restart,
                        format!("restart all replicas of {c}"),
                        programs::remediate_restart(),
                    ))
                } else {
                    None
                }
            }
            SloMetric::MemoryPercentOfLimit => {
                if Action::RaiseMemory.taken(steps) == 0 {
                    Some((
                        Action::RaiseMemory,
                        format!("double the memory limit of {c}"),
                        programs::remediate_raise_limits(1.0, 2.0),
                    ))
                } else if Action::Restart.taken(steps) == 0 {
                    Some((
                        Action::Restart,
                        format!("restart {c} to release leaked memory"),
                        programs::remediate_restart(),
                    ))
                } else {
                    None
                }
            }
            SloMetric::CpuPercentOfLimit => {
                if Action::ScaleOut.taken(steps) == 0 && replicas < MAX_REPLICAS {
                    // Enough replicas for the measured load to sit at 80% of the objective.
                    let load = v.measured.unwrap_or(v.objective.threshold) * f64::from(replicas);
                    let needed = (load / (v.objective.threshold * 0.8)).ceil();
                    let target = if needed.is_finite() && needed > 0.0 {
                        needed as u32
                    } else {
                        replicas + 1
                    };
                    let target = target.clamp(replicas + 1, (replicas + 3).min(MAX_REPLICAS));
                    Some((
                        Action::ScaleOut,
                        format!("scale {c} out from {replicas} to {target} replicas to spread the CPU load"),
                        programs::remediate_scale_out(target),
                    ))
                } else if Action::RaiseCpu.taken(steps) == 0 {
                    Some((
                        Action::RaiseCpu,
                        format!("raise the CPU limit of {c} by 1.5x"),
                        programs::remediate_raise_limits(1.5, 1.0),
                    ))
                } else {
                    None
                }
            }
            SloMetric::P99LatencyMs => {
                if Action::ScaleOut.taken(steps) < MAX_SCALE_STEPS && replicas < MAX_REPLICAS {
                    let target = replicas + 1;
                    Some((
                        Action::ScaleOut,
                        format!("scale {c} out from {replicas} to {target} replicas to cut P99 latency"),
                        programs::remediate_scale_out(target),
                    ))
                } else {
                    None
                }
            }
        }
    }

    /// Manager rules: one subtask per component named by the goal (or by its objectives).
    pub fn split_goal(&self, goal: &Goal, components: &[ComponentName]) -> Result<Vec<Subtask>, PlanError> {
        let mut named = parse::components_in(&goal.text, components);
        for o in &goal.objectives {
            if !named.contains(&o.component) {
                named.push(o.component.clone());
            }
        }
        if named.is_empty() {
            match components {
                [only] => named.push(only.clone()),
                _ => {
                    return Err(PlanError::Invalid(format!(
                        "the goal {:?} names none of the known components ({})",
                        goal.text,
                        components
                            .iter()
                            .map(ComponentName::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        let objectives = if goal.objectives.is_empty() {
            parse::parse_goal_objectives(&goal.text, &named)
        } else {
            goal.objectives.clone()
        };
        Ok(named
            .into_iter()
            .map(|c| {
                let mine: Vec<Objective> = objectives.iter().filter(|o| o.component == c).cloned().collect();
                let spec = if mine.is_empty() {
                    TaskSpec::Imperative {
                        text: goal.text.clone(),
                    }
                } else {
                    let parts = mine
                        .iter()
                        .map(describe_objective)
                        .collect::<Vec<_>>()
                        .join(" and ");
                    TaskSpec::Declarative {
                        goal: Goal {
                            text: format!("{} (your part: {parts})", goal.text),
                            objectives: mine,
                        },
                    }
                };
                Subtask { component: c, spec }
            })
            .collect())
    }

    /// Manager rules: the goal holds when every objective holds in the measurements.
    pub fn judge_goal(&self, goal: &Goal, measured: &[(ComponentName, Measurement)]) -> Judgement {
        let objectives = if goal.objectives.is_empty() {
            let known: Vec<ComponentName> = measured.iter().map(|(c, _)| c.clone()).collect();
            let named = parse::components_in(&goal.text, &known);
            parse::parse_goal_objectives(&goal.text, if named.is_empty() { &known } else { &named })
        } else {
            goal.objectives.clone()
        };
        if objectives.is_empty() {
            return Judgement {
                met: false,
                status: ReportStatus::Issue,
                message: format!("Cannot judge {:?}: it has no measurable objective.", goal.text),
                violations: Vec::new(),
                usage: UsageTotals::default(),
            };
        }
        let violations = check_objectives(&objectives, measured);
        let facts = objectives
            .iter()
            .map(|o| {
                let v = measured
                    .iter()
                    .find(|(c, _)| c == &o.component)
                    .and_then(|(_, m)| measured_value(o.metric, m));
                match v {
                    Some(x) => format!("{}: {x:.1}", describe_objective(o)),
                    None => format!("{}: not measured", describe_objective(o)),
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let met = violations.is_empty();
        Judgement {
            met,
            status: if met {
                ReportStatus::Response
            } else {
                ReportStatus::Issue
            },
            message: if met {
                format!("Goal reached: {facts}.")
            } else {
                format!(
                    "Goal not reached: {}.",
                    violations
                        .iter()
                        .map(describe_violation)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            },
            violations,
            usage: UsageTotals::default(),
        }
    }
}

fn priority(m: SloMetric) -> u8 {
    match m {
        SloMetric::ReadyPercent => 0,
        SloMetric::MemoryPercentOfLimit => 1,
        SloMetric::CpuPercentOfLimit => 2,
        SloMetric::P99LatencyMs => 3,
        SloMetric::ErrorRatePercent => 4,
    }
}

fn threshold_text(o: &Objective) -> String {
    match o.comparison {
        Comparison::Below => format!("< {}", o.threshold),
        Comparison::AtLeast => format!(">= {}", o.threshold),
    }
}

fn strip_tag(d: &str) -> &str {
    d.split_once("] ").map_or(d, |(_, rest)| rest)
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
