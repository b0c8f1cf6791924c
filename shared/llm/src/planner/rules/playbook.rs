//! The SLO playbooks, applied to the first broken objective in the order ready → memory → CPU → P99 → errors:
//! - not ready / crash loop: roll back when the current revision changed the image (restart when there is no
//!   previous revision), then restart, then give up with an ISSUE;
//! - memory over the objective: double the memory limit, then restart (leak), then ISSUE;
//! - CPU over the objective: scale out (enough replicas for the measured load, at least +1), then raise the CPU
//!   limit by 1.5×, then ISSUE;
//! - P99 over the objective: scale out one replica per turn up to [`MAX_SCALE_STEPS`] times, verifying each time;
//! - error rate: like not ready.
//!
//! Every action is followed by a fresh observation (the caller's, or an observe step) before the next decision.
//! What was done on earlier turns is the [`PlaybookState`], read from the steps' typed purposes.

use acv_protocol::{
    Comparison, Goal, Measurement, Objective, ReportStatus, SloMetric, Violation, check_health,
    describe_violation, measured_value, metric_name,
};

use super::{MAX_REPLICAS, MAX_SCALE_STEPS, RulesPlanner, finish, one_step, parse, programs, step};
use crate::planner::{MaintainerContext, Observation, Plan, Remedy, StepObservation, StepPurpose, TaskStep};

/// The playbooks' state between turns: the remedies already run in this task, in order, with their descriptions.
/// Derived from the typed [`StepPurpose`] of the context's steps, never from their text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PlaybookState {
    taken: Vec<(Remedy, String)>,
}

impl PlaybookState {
    pub(super) fn of(steps: &[TaskStep]) -> Self {
        Self {
            taken: steps
                .iter()
                .filter_map(|s| match s.purpose {
                    Some(StepPurpose::Remedy { remedy }) => Some((remedy, s.record.description.clone())),
                    _ => None,
                })
                .collect(),
        }
    }

    fn count(&self, r: Remedy) -> usize {
        self.taken.iter().filter(|(x, _)| *x == r).count()
    }

    fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }

    fn described(&self) -> String {
        self.taken
            .iter()
            .map(|(_, d)| d.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

// === impl RulesPlanner ===

impl RulesPlanner {
    /// A declarative task: the goal's objectives for the own component (or parsed from its text).
    pub(super) fn declarative(&self, ctx: &MaintainerContext, goal: &Goal) -> Plan {
        let mut objectives: Vec<Objective> = goal
            .objectives
            .iter()
            .filter(|o| o.component == ctx.component)
            .cloned()
            .collect();
        if objectives.is_empty() {
            objectives = parse::parse_goal_objectives(&goal.text, std::slice::from_ref(&ctx.component));
        }
        if objectives.is_empty() {
            return finish(
                ReportStatus::Issue,
                format!(
                    "Cannot do this: the goal {:?} has no measurable objective for {}.",
                    goal.text, ctx.component
                ),
                "no objectives",
            );
        }
        self.remediate(ctx, &objectives)
    }

    /// The SLO playbooks for `objectives` (all of the own component).
    pub(super) fn remediate(&self, ctx: &MaintainerContext, objectives: &[Objective]) -> Plan {
        let last_turn = ctx.turn >= ctx.max_turns;
        if ctx.observation.is_none()
            && let Some(last) = ctx.steps.last()
            && let Some(StepObservation::Unreadable { error }) = &last.observation
        {
            return finish(
                ReportStatus::Issue,
                format!(
                    "Cannot read the observation of step {} ({}): {error}.",
                    last.record.index, last.record.description
                ),
                "unreadable observation",
            );
        }
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
                    StepPurpose::Observe,
                    format!("observe status, metrics and history of {}", ctx.component),
                    programs::observe(),
                ),
                false,
                "need fresh observations",
            );
        };
        let state = PlaybookState::of(&ctx.steps);
        let measured = [(
            ctx.component.clone(),
            Measurement {
                metrics: obs.metrics.clone(),
                status: obs.status.clone(),
            },
        )];
        let mut broken = check_health(objectives, &measured);
        broken.sort_by_key(|v| priority(v.objective.metric));
        let facts = objectives
            .iter()
            .map(|o| match measured_value(o.metric, &measured[0].1) {
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
            })
            .collect::<Vec<_>>()
            .join("; ");
        let Some(first) = broken.first() else {
            let msg = if state.is_empty() {
                format!(
                    "All objectives of {} hold; nothing to do. {facts}.",
                    ctx.component
                )
            } else {
                format!(
                    "Objectives of {} hold again after: {}. {facts}.",
                    ctx.component,
                    state.described()
                )
            };
            return finish(ReportStatus::Response, msg, "objectives hold");
        };
        // Mechanism 3: a cause in a component this one calls is that component's to fix (see downstream.rs).
        if let Some(plan) = super::downstream::consider(ctx, &obs, &broken) {
            return plan;
        }
        let broken_text = broken
            .iter()
            .map(describe_violation)
            .collect::<Vec<_>>()
            .join("; ");
        let give_up = |why: &str| {
            let done = if state.is_empty() {
                String::new()
            } else {
                format!(" Tried: {}.", state.described())
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
        let Some((remedy, what, program)) = choose(ctx, &state, &obs, first) else {
            return give_up("the playbook has nothing more to try; a person should look");
        };
        if last_turn {
            return give_up("the turn budget is used up");
        }
        if ctx.safety == crate::SafetyMode::Observe {
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
            step(StepPurpose::Remedy { remedy }, &what, program),
            false,
            format!("{broken_text}: {what}"),
        )
    }
}

/// The next action for the most urgent broken objective, or `None` when the playbook is exhausted.
fn choose(
    ctx: &MaintainerContext,
    state: &PlaybookState,
    obs: &Observation,
    v: &Violation,
) -> Option<(Remedy, String, String)> {
    let c = &ctx.component;
    let replicas = obs.status.as_ref().map_or(1, |s| s.desired_replicas.max(1));
    match v.objective.metric {
        SloMetric::ReadyPercent | SloMetric::ErrorRatePercent => {
            let version_changed = match obs.history.as_slice() {
                [.., prev, cur] => prev.image != cur.image,
                _ => false,
            };
            if state.count(Remedy::Rollback) == 0 && state.count(Remedy::Restart) == 0 && version_changed {
                let cur = obs.history.last().map(|r| r.image.clone()).unwrap_or_default();
                Some((
                    Remedy::Rollback,
                    format!("roll {c} back: not healthy since the switch to {cur}"),
                    programs::remediate_rollback(),
                ))
            } else if state.count(Remedy::Restart) == 0 {
                Some((
                    Remedy::Restart,
                    format!("restart all replicas of {c}"),
                    programs::remediate_restart(),
                ))
            } else {
                None
            }
        }
        SloMetric::MemoryPercentOfLimit => {
            if state.count(Remedy::RaiseMemory) == 0 {
                Some((
                    Remedy::RaiseMemory,
                    format!("double the memory limit of {c}"),
                    programs::remediate_raise_limits(1.0, 2.0),
                ))
            } else if state.count(Remedy::Restart) == 0 {
                Some((
                    Remedy::Restart,
                    format!("restart {c} to release leaked memory"),
                    programs::remediate_restart(),
                ))
            } else {
                None
            }
        }
        SloMetric::CpuPercentOfLimit => {
            if state.count(Remedy::ScaleOut) == 0 && replicas < MAX_REPLICAS {
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
                    Remedy::ScaleOut,
                    format!("scale {c} out from {replicas} to {target} replicas to spread the CPU load"),
                    programs::remediate_scale_out(target),
                ))
            } else if state.count(Remedy::RaiseCpu) == 0 {
                Some((
                    Remedy::RaiseCpu,
                    format!("raise the CPU limit of {c} by 1.5x"),
                    programs::remediate_raise_limits(1.5, 1.0),
                ))
            } else {
                None
            }
        }
        SloMetric::P99LatencyMs => {
            if state.count(Remedy::ScaleOut) < MAX_SCALE_STEPS && replicas < MAX_REPLICAS {
                let target = replicas + 1;
                Some((
                    Remedy::ScaleOut,
                    format!("scale {c} out from {replicas} to {target} replicas to cut P99 latency"),
                    programs::remediate_scale_out(target),
                ))
            } else {
                None
            }
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
