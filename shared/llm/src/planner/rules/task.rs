//! Imperative tasks: one program that acts and reports, then done. Objectives ("reduce P99 below 300 ms", "reduce
//! the latency") go to the SLO playbooks instead.

use acv_protocol::{Comparison, Objective, ReportStatus};

use super::{MAX_REPLICAS, RulesPlanner, finish, one_step, parse, programs, step};
use crate::planner::{MaintainerContext, Plan, SafetyMode, StepPurpose};
use parse::{Intent, LimitChange};

fn limit_text(what: &str, change: Option<LimitChange>, unit: &str) -> Option<String> {
    change.map(|c| match c {
        LimitChange::To(v) => format!("the {what} limit to {v}{unit}"),
        LimitChange::Times(f) => format!("the {what} limit {f}x"),
    })
}

// === impl RulesPlanner ===

impl RulesPlanner {
    pub(super) fn imperative(&self, ctx: &MaintainerContext, text: &str) -> Plan {
        // A second turn only happens when the task's step failed, which `plan` handles before coming here.
        if ctx.steps.iter().any(|s| s.purpose == Some(StepPurpose::Task)) {
            return finish(
                ReportStatus::Response,
                "Task carried out.",
                "task step already ran",
            );
        }
        let c = &ctx.component;
        let (what, program, mutating) = match parse::parse_task(text, c) {
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
            Intent::Scale(n) => (format!("scale {c} to {n} replicas"), programs::scale(n), true),
            Intent::ScaleBy(d) if d.unsigned_abs() > MAX_REPLICAS * 10 => {
                return finish(
                    ReportStatus::Issue,
                    format!("Cannot do this: a change of {d:+} replicas is more than allowed."),
                    "absurd replica count",
                );
            }
            Intent::ScaleBy(d) => (
                format!("scale {c} by {d:+} replicas"),
                programs::scale_relative(d),
                true,
            ),
            Intent::Restart => (format!("restart all replicas of {c}"), programs::restart(), true),
            Intent::SetEnv { key, value } => (
                format!("set env {key}={value} on {c}"),
                programs::set_env(&key, &value),
                true,
            ),
            Intent::SetLimits(limits) => {
                let parts: Vec<String> = [
                    limit_text("CPU", limits.cpu_millis, "m"),
                    limit_text("memory", limits.memory_mib, "Mi"),
                ]
                .into_iter()
                .flatten()
                .collect();
                (
                    format!("set {} of {c}", parts.join(" and ")),
                    programs::set_limits(limits.cpu_millis, limits.memory_mib),
                    true,
                )
            }
            Intent::SetImage(v) => (
                format!("switch {c} to image {v}"),
                programs::set_image(&v, "Updated"),
                true,
            ),
            Intent::RollbackTo(v) => (
                format!("roll {c} back to version {v}"),
                programs::set_image(&v, "Rolled back"),
                true,
            ),
            Intent::Rollback => (format!("roll {c} back one revision"), programs::rollback(), true),
            Intent::Create => (format!("make sure {c} is deployed"), programs::create(), true),
            Intent::Report(metrics) => {
                let names: Vec<&str> = metrics.iter().map(|m| m.parts().1).collect();
                (
                    format!("report {} of {c}", names.join(", ")),
                    programs::report_metrics(&metrics),
                    false,
                )
            }
            Intent::Status => (
                format!("report the deployment status of {c}"),
                programs::report_status(),
                false,
            ),
            Intent::HealthCheck => (
                format!("check the health of {c}"),
                programs::health_check(&ctx.slo),
                false,
            ),
            Intent::Reach(targets) => {
                let objectives: Vec<Objective> = targets
                    .into_iter()
                    .map(|(metric, comparison, threshold)| Objective {
                        component: c.clone(),
                        metric,
                        comparison,
                        threshold,
                    })
                    .collect();
                return self.remediate(ctx, &objectives);
            }
            Intent::Improve(metrics) => {
                let objectives: Vec<Objective> = ctx
                    .slo
                    .objectives(c)
                    .into_iter()
                    .filter(|o| metrics.contains(&o.metric) && o.comparison == Comparison::Below)
                    .collect();
                if objectives.is_empty() {
                    return finish(
                        ReportStatus::Issue,
                        format!(
                            "Cannot do this: the SLO policy of {c} has no objective for that; give a figure \
                             (\"reduce P99 latency below 300ms\")."
                        ),
                        "no objective to improve towards",
                    );
                }
                return self.remediate(ctx, &objectives);
            }
            Intent::NotMine { named } => {
                return finish(
                    ReportStatus::Issue,
                    format!(
                        "Not mine: this task is for {}, but I maintain {c} only and act on nothing else. Send it \
                         to that component's agent (or to the manager).",
                        named.join(" and ")
                    ),
                    "task names another component",
                );
            }
            Intent::CannotDo(why) => {
                return finish(
                    ReportStatus::Issue,
                    format!("Cannot do this: {why}"),
                    "task not understood",
                );
            }
        };
        if mutating && ctx.safety == SafetyMode::Observe {
            return finish(
                ReportStatus::Issue,
                format!("Observe mode: would {what}, but changes are not allowed."),
                "observe mode forbids mutations",
            );
        }
        one_step(step(StepPurpose::Task, &what, program), true, what)
    }
}
