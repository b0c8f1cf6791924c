//! The SLO playbooks: diagnose first ([`diagnose`]), then match the fix to the cause found for the most urgent
//! broken objective (ready → memory → CPU → P99 → errors):
//! - bad release (a recent image/env change): roll back, then restart, then ISSUE;
//! - bad replicas (some or all not ready, no recent change): replace them (rolling restart), then ISSUE;
//! - memory pressure / CPU saturation (a hog: CPU or memory the load does not explain): replace the replicas
//!   (new ones start clean); if it persists the limits are too tight: raise the limit (memory 2×, CPU 1.5×),
//!   then ISSUE;
//! - load increase: scale out in proportion to the measured CPU load so each replica sits at [`HEADROOM`] of the
//!   CPU objective (at least +1, never past [`MAX_REPLICAS`], up to [`MAX_SCALE_STEPS`] times), then raise the CPU
//!   limit, then ISSUE;
//! - unknown: CPU → proportional scale-out; P99 → +1 replica per turn; not ready / errors → restart.
//!
//! Every plan carries the [`Diagnosis`] (cause, summary, evidence, and the chosen action with its cost).
//! Every action is followed by a fresh observation (the caller's, or an observe step) before the next decision.
//! What was done on earlier turns is the [`PlaybookState`], read from the steps' typed purposes.

use acv_protocol::{
    Comparison, Diagnosis, Evidence, Goal, Measurement, Objective, ReportStatus, RootCause, SloMetric,
    Violation, check_health, describe_violation, measured_value, metric_name,
};
use serde_json::json;

use super::diagnose::{self, Findings, HEADROOM};
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
        let findings = Findings::of(&obs);
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
            let mut plan = finish(ReportStatus::Response, msg, "objectives hold");
            plan.diagnosis = Some(findings.diagnosis(RootCause::Healthy));
            return plan;
        };
        // Mechanism 3: a cause in a component this one calls is that component's to fix (see downstream.rs).
        if let Some(plan) = super::downstream::consider(ctx, &obs, &broken) {
            return plan;
        }
        let replaced = state.count(Remedy::Restart) > 0 || state.count(Remedy::Rollback) > 0;
        let cause = findings.cause(first, replaced);
        let mut diagnosis = findings.diagnosis(cause);
        let broken_text = broken
            .iter()
            .map(describe_violation)
            .collect::<Vec<_>>()
            .join("; ");
        let give_up = |why: &str, diagnosis: Diagnosis| {
            let done = if state.is_empty() {
                String::new()
            } else {
                format!(" Tried: {}.", state.described())
            };
            let mut plan = finish(
                ReportStatus::Issue,
                format!(
                    "{} still breaks its objectives ({broken_text}); {why}. Diagnosis: {} ({}){done}",
                    ctx.component, diagnosis.cause, diagnosis.summary
                ),
                "playbook exhausted",
            );
            plan.diagnosis = Some(diagnosis);
            plan
        };
        let Some(act) = choose(ctx, objectives, &state, &obs, &findings, cause, first) else {
            return give_up(
                "the playbook has nothing more to try; a person should look",
                diagnosis,
            );
        };
        diagnosis.evidence.push(Evidence {
            name: "action".into(),
            value: json!({"what": act.what, "cost": act.cost}),
        });
        if last_turn {
            return give_up("the turn budget is used up", diagnosis);
        }
        if ctx.safety == crate::SafetyMode::Observe {
            let mut plan = finish(
                ReportStatus::Issue,
                format!(
                    "{} breaks its objectives ({broken_text}). Diagnosis: {} ({}). Observe mode: would {}.",
                    ctx.component, diagnosis.cause, diagnosis.summary, act.what
                ),
                "observe mode forbids mutations",
            );
            plan.diagnosis = Some(diagnosis);
            return plan;
        }
        let mut plan = one_step(
            step(StepPurpose::Remedy { remedy: act.remedy }, &act.what, act.program),
            false,
            format!("{broken_text}: {cause}: {}", act.what),
        );
        plan.diagnosis = Some(diagnosis);
        plan
    }
}

/// One playbook action: what it is, in words, its program, and its cost as evidence.
pub(super) struct Action {
    remedy: Remedy,
    what: String,
    program: String,
    cost: serde_json::Value,
}

fn action(remedy: Remedy, what: String, program: String, cost: serde_json::Value) -> Option<Action> {
    Some(Action {
        remedy,
        what,
        program,
        cost,
    })
}

/// The fix for `cause` (found for `v`, the most urgent broken objective) given what was already tried, or `None`
/// when nothing is left to try. Scale-outs are proportional to the measured load with [`HEADROOM`]; they never jump
/// to the ceiling.
fn choose(
    ctx: &MaintainerContext,
    objectives: &[Objective],
    state: &PlaybookState,
    obs: &Observation,
    f: &Findings,
    cause: RootCause,
    v: &Violation,
) -> Option<Action> {
    let c = &ctx.component;
    let replicas = obs.status.as_ref().map_or(1, |s| s.desired_replicas.max(1));
    let limits = obs.status.as_ref().map(|s| s.limits);
    let restarted = state.count(Remedy::Restart) > 0;
    let restart = |why: &str| {
        action(
            Remedy::Restart,
            format!("replace the replicas of {c} (rolling restart): {why}"),
            programs::remediate_restart(),
            json!({"kind": "rolling_restart", "replicas_replaced": replicas, "extra_replicas": 1}),
        )
    };
    let scale_to = |target: u32, why: &str| {
        action(
            Remedy::ScaleOut,
            format!("scale {c} out from {replicas} to {target} replicas: {why}"),
            programs::remediate_scale_out(target),
            json!({"kind": "scale_out", "from": replicas, "to": target, "extra_replicas": target - replicas}),
        )
    };
    let raise_cpu = || {
        let from = limits.map_or(0, |l| l.cpu_millis);
        action(
            Remedy::RaiseCpu,
            format!("raise the CPU limit of {c} by 1.5x (temporary; given back when the load allows)"),
            programs::remediate_raise_limits(1.5, 1.0),
            json!({"kind": "raise_cpu_limit", "from_millis": from, "to_millis": from * 3 / 2}),
        )
    };
    let raise_memory = || {
        let from = limits.map_or(0, |l| l.memory_mib);
        action(
            Remedy::RaiseMemory,
            format!("double the memory limit of {c} (temporary; given back when use allows)"),
            programs::remediate_raise_limits(1.0, 2.0),
            json!({"kind": "raise_memory_limit", "from_mib": from, "to_mib": from * 2}),
        )
    };
    // Replicas for the measured CPU load at HEADROOM of the objective, at least one more, at most the ceiling.
    let proportional = || {
        let cpu_obj = diagnose::cpu_objective(objectives, ctx.slo.cpu_percent);
        let limit = limits.map_or(1, |l| l.cpu_millis);
        let needed = diagnose::replicas_for_load(f.cpu_percent, replicas, limit, limit, cpu_obj)
            .unwrap_or(replicas + 1);
        needed.clamp(replicas + 1, MAX_REPLICAS.max(replicas + 1))
    };
    let can_scale = replicas < MAX_REPLICAS && state.count(Remedy::ScaleOut) < MAX_SCALE_STEPS;
    match cause {
        RootCause::BadRelease => {
            if state.count(Remedy::Rollback) == 0 {
                let what = f.change.as_ref().map_or("?", |ch| ch.what.as_str());
                action(
                    Remedy::Rollback,
                    format!("roll {c} back: broken since the recent change ({what})"),
                    programs::remediate_rollback(),
                    json!({"kind": "rollback", "extra_replicas": 1}),
                )
            } else if !restarted {
                restart("still broken after the rollback")
            } else {
                None
            }
        }
        RootCause::BadReplicas | RootCause::Unknown
            if matches!(
                v.objective.metric,
                SloMetric::ReadyPercent | SloMetric::ErrorRatePercent
            ) =>
        {
            if restarted {
                None
            } else {
                let bad = if f.bad.is_empty() {
                    "errors".to_owned()
                } else {
                    f.bad.join(", ")
                };
                restart(&format!("bad replicas ({bad}), no recent change"))
            }
        }
        RootCause::BadReplicas => {
            if restarted {
                None
            } else {
                restart(&format!("bad replicas ({})", f.bad.join(", ")))
            }
        }
        RootCause::MemoryPressure | RootCause::CpuSaturation
            if !restarted && state.count(Remedy::Rollback) == 0 =>
        {
            restart("a hog in the replicas; new replicas start clean")
        }
        RootCause::MemoryPressure => (state.count(Remedy::RaiseMemory) == 0)
            .then(raise_memory)
            .flatten(),
        RootCause::TightLimits | RootCause::CpuSaturation => match v.objective.metric {
            SloMetric::MemoryPercentOfLimit if state.count(Remedy::RaiseMemory) == 0 => raise_memory(),
            SloMetric::CpuPercentOfLimit | SloMetric::P99LatencyMs if state.count(Remedy::RaiseCpu) == 0 => {
                raise_cpu()
            }
            _ => None,
        },
        RootCause::LoadIncrease => {
            if can_scale {
                let target = proportional();
                scale_to(
                    target,
                    &format!(
                        "load is up; enough replicas for the measured CPU at {:.0}% of the objective",
                        HEADROOM * 100.0
                    ),
                )
            } else if state.count(Remedy::RaiseCpu) == 0 && v.objective.metric == SloMetric::CpuPercentOfLimit
            {
                raise_cpu()
            } else {
                None
            }
        }
        RootCause::Unknown => match v.objective.metric {
            SloMetric::CpuPercentOfLimit if can_scale => scale_to(
                proportional(),
                "CPU over the objective, cause unclear; spread the load",
            ),
            SloMetric::CpuPercentOfLimit if state.count(Remedy::RaiseCpu) == 0 => raise_cpu(),
            SloMetric::P99LatencyMs if can_scale => {
                scale_to(replicas + 1, "P99 over the objective, cause unclear")
            }
            _ => None,
        },
        RootCause::Healthy | RootCause::Downstream => None,
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
