//! Downstream diagnosis (mechanism 3): when the own latency or error objective is broken while the own replicas are
//! fine, and the calls this component makes show one component it depends on as slow or failing, the cause lies
//! there. The rules then ask that component's agent to check and fix itself (`acv.ask_peer`, a request for action
//! the peer handles under its own safety mode and SLOs) instead of scaling, restarting or rolling back the own
//! component, and the report carries `Diagnosis { cause: Downstream, component: Some(peer) }`.
//!
//! The evidence is [`MetricsSnapshot::calls`](acv_protocol::MetricsSnapshot::calls): per-callee rate, P99 and
//! error rate over the same window as the own metrics, measured on the calling side. A callee is blamed when
//! - P99 is broken and the calls to it have a P99 of at least [`LATENCY_SHARE`] of the own P99 (the caller's tail
//!   is mostly time spent waiting for it), or
//! - the error rate is broken, the calls to it fail at least as often as the own objective allows, and its failed
//!   calls per second are at least [`ERROR_SHARE`] of the own failed requests per second.
//!
//! Never when the own replicas are not all ready or CPU or memory objectives are broken (then the own playbook
//! comes first), once the own playbook has acted in this task, or twice in one task. In observe mode the diagnosis
//! is reported without asking.

use acv_protocol::{
    CallStats, Diagnosis, Evidence, MetricsSnapshot, ReportStatus, RootCause, SloMetric, Violation,
    describe_violation,
};

use super::{finish, one_step, programs, step};
use crate::planner::{MaintainerContext, Observation, Plan, SafetyMode, StepPurpose};

/// A callee whose call P99 is at least this share of the own P99 explains the own latency.
pub const LATENCY_SHARE: f64 = 0.5;
/// A callee whose failed calls per second are at least this share of the own failed requests explains the errors.
pub const ERROR_SHARE: f64 = 0.5;

/// The component the symptoms come from, and why.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Culprit {
    /// The callee to blame.
    pub calls: CallStats,
    /// The own violation it explains.
    pub violation: Violation,
}

/// The downstream plan for this turn, or `None` when the own playbook should decide.
pub(super) fn consider(ctx: &MaintainerContext, obs: &Observation, broken: &[Violation]) -> Option<Plan> {
    let asked = ctx.steps.iter().any(|s| s.purpose == Some(StepPurpose::AskPeer));
    let acted = ctx
        .steps
        .iter()
        .any(|s| matches!(s.purpose, Some(StepPurpose::Remedy { .. })));
    if asked || acted {
        return None;
    }
    let culprit = find(obs, broken)?;
    let peer = culprit.calls.callee.clone();
    let symptom = describe_violation(&culprit.violation);
    let calls = describe_calls(&culprit.calls);
    let summary = format!(
        "{} is unhealthy because of {peer}: {symptom}, while its replicas are fine and its calls to {calls}",
        ctx.component
    );
    let mut diagnosis = Diagnosis::new(RootCause::Downstream, summary.clone());
    diagnosis.component = Some(peer.clone());
    diagnosis.evidence = vec![
        Evidence {
            name: "violation".into(),
            value: serde_json::to_value(&culprit.violation).unwrap_or_default(),
        },
        Evidence {
            name: "calls".into(),
            value: serde_json::to_value(&culprit.calls).unwrap_or_default(),
        },
    ];
    let mut plan = if ctx.safety == SafetyMode::Observe {
        finish(
            ReportStatus::Issue,
            format!("{summary}. Observe mode: would ask {peer}'s agent to check and fix itself."),
            "downstream cause; observe mode asks nobody to act",
        )
    } else {
        let question = format!(
            "{} here: your {} hurt mine ({symptom}; my calls to you: {calls}). Please check and fix.",
            ctx.component,
            match culprit.violation.objective.metric {
                SloMetric::ErrorRatePercent => "errors",
                _ => "latency",
            }
        );
        one_step(
            step(
                StepPurpose::AskPeer,
                format!(
                    "ask {peer}'s agent to check and fix itself: the cause lies there, not in {}",
                    ctx.component
                ),
                programs::ask_peer(peer.as_str(), &question),
            ),
            true,
            summary,
        )
    };
    plan.diagnosis = Some(diagnosis);
    Some(plan)
}

/// The callee that explains the most urgent broken traffic objective, if the own replicas are fine.
pub(super) fn find(obs: &Observation, broken: &[Violation]) -> Option<Culprit> {
    let traffic = |m: SloMetric| matches!(m, SloMetric::P99LatencyMs | SloMetric::ErrorRatePercent);
    if broken.is_empty() || !broken.iter().all(|v| traffic(v.objective.metric)) {
        return None;
    }
    let status = obs.status.as_ref()?;
    let all_ready = status.ready_replicas >= status.desired_replicas.max(1)
        && status
            .replicas
            .iter()
            .all(|r| r.state == acv_protocol::ReplicaState::Ready);
    if !all_ready {
        return None;
    }
    let metrics = obs.metrics.as_ref()?;
    // Errors first: a failing callee also makes latency look odd, not the other way round.
    let mut ordered: Vec<&Violation> = broken.iter().collect();
    ordered.sort_by_key(|v| u8::from(v.objective.metric != SloMetric::ErrorRatePercent));
    ordered.into_iter().find_map(|v| {
        let calls = match v.objective.metric {
            SloMetric::ErrorRatePercent => failing_callee(metrics, v),
            _ => slow_callee(metrics, v),
        }?;
        Some(Culprit {
            calls: calls.clone(),
            violation: v.clone(),
        })
    })
}

fn slow_callee<'a>(m: &'a MetricsSnapshot, v: &Violation) -> Option<&'a CallStats> {
    let own = v.measured.or(m.p99_ms)?;
    m.calls
        .iter()
        .filter(|c| c.p99_ms.is_some_and(|p| p >= LATENCY_SHARE * own))
        .max_by(|a, b| a.p99_ms.unwrap_or(0.0).total_cmp(&b.p99_ms.unwrap_or(0.0)))
}

fn failing_callee<'a>(m: &'a MetricsSnapshot, v: &Violation) -> Option<&'a CallStats> {
    let own_rate = v.measured.or(m.error_rate_percent)? / 100.0 * m.request_rate?;
    let failed = |c: &CallStats| c.error_rate_percent.unwrap_or(0.0) / 100.0 * c.request_rate.unwrap_or(0.0);
    m.calls
        .iter()
        .filter(|c| {
            c.error_rate_percent.is_some_and(|e| e >= v.objective.threshold)
                && failed(c) >= ERROR_SHARE * own_rate
        })
        .max_by(|a, b| failed(a).total_cmp(&failed(b)))
}

fn describe_calls(c: &CallStats) -> String {
    let f = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
    format!(
        "{} take P99 {} ms and fail {} % of the time ({} calls/s)",
        c.callee,
        f(c.p99_ms),
        f(c.error_rate_percent),
        f(c.request_rate)
    )
}

#[cfg(test)]
mod tests {
    use acv_protocol::{
        ComponentName, ComponentStatus, Objective, ReplicaState, ReplicaStatus, ResourceLimits, SloPolicy,
    };

    use super::*;

    fn name(s: &str) -> ComponentName {
        ComponentName::new(s).unwrap()
    }

    fn call(callee: &str, p99: f64, errors: f64, rate: f64) -> CallStats {
        CallStats {
            callee: name(callee),
            request_rate: Some(rate),
            p50_ms: Some(p99 / 2.0),
            p99_ms: Some(p99),
            error_rate_percent: Some(errors),
        }
    }

    fn obs(ready: bool, p99: f64, errors: f64, calls: Vec<CallStats>) -> Observation {
        Observation {
            status: Some(ComponentStatus {
                component: name("front-end"),
                desired_replicas: 1,
                ready_replicas: u32::from(ready),
                replicas: vec![ReplicaStatus {
                    name: "front-end-1".into(),
                    state: if ready {
                        ReplicaState::Ready
                    } else {
                        ReplicaState::CrashLoopBackOff
                    },
                    restarts: 0,
                }],
                revision: 1,
                image: "front-end:1".into(),
                env: Default::default(),
                limits: ResourceLimits {
                    cpu_millis: 500,
                    memory_mib: 256,
                },
            }),
            metrics: Some(MetricsSnapshot {
                component: name("front-end"),
                window_secs: 30.0,
                cpu_percent_of_limit: Some(10.0),
                memory_percent_of_limit: Some(10.0),
                request_rate: Some(20.0),
                p50_ms: Some(p99 / 2.0),
                p99_ms: Some(p99),
                error_rate_percent: Some(errors),
                calls,
            }),
            history: Vec::new(),
            baseline: None,
            at_ms: 0,
        }
    }

    fn violation(metric: SloMetric, threshold: f64, measured: f64) -> Violation {
        Violation {
            objective: Objective {
                component: name("front-end"),
                metric,
                comparison: acv_protocol::Comparison::Below,
                threshold,
            },
            measured: Some(measured),
        }
    }

    fn ctx(mode: SafetyMode, v: Vec<Violation>) -> MaintainerContext {
        let mut c = MaintainerContext::for_violations(name("front-end"), v);
        c.safety = mode;
        c.slo = SloPolicy::default();
        c
    }

    #[test]
    fn blames_the_slow_callee_and_asks_it() {
        let v = vec![violation(SloMetric::P99LatencyMs, 200.0, 320.0)];
        let o = obs(
            true,
            320.0,
            0.0,
            vec![call("carts", 20.0, 0.0, 5.0), call("catalogue", 305.0, 0.0, 10.0)],
        );
        let plan = consider(&ctx(SafetyMode::Autonomous, v.clone()), &o, &v).expect("downstream");
        let d = plan.diagnosis.as_ref().unwrap();
        assert_eq!(d.cause, RootCause::Downstream);
        assert_eq!(d.component, Some(name("catalogue")));
        assert!(plan.done && plan.steps.len() == 1, "{plan:?}");
        assert_eq!(plan.steps[0].purpose, Some(StepPurpose::AskPeer));
        assert!(
            plan.steps[0].program.contains("acv.ask_peer(peer, question)")
                && plan.steps[0].program.contains("\"catalogue\"")
                && plan.steps[0].program.contains("Please check and fix"),
            "{}",
            plan.steps[0].program
        );
    }

    #[test]
    fn blames_the_failing_callee() {
        let v = vec![violation(SloMetric::ErrorRatePercent, 5.0, 60.0)];
        // 20 rps with 60 % errors = 12 failed/s; catalogue fails 12 of 12 calls/s.
        let o = obs(
            true,
            20.0,
            60.0,
            vec![call("catalogue", 5.0, 100.0, 12.0), call("user", 5.0, 0.0, 8.0)],
        );
        let c = find(&o, &v).expect("culprit");
        assert_eq!(c.calls.callee, name("catalogue"));
    }

    #[test]
    fn own_problems_and_innocent_callees_are_not_downstream() {
        let p99 = vec![violation(SloMetric::P99LatencyMs, 200.0, 320.0)];
        let slow = vec![call("catalogue", 305.0, 0.0, 10.0)];
        // Own replica not ready: the own playbook first.
        assert_eq!(find(&obs(false, 320.0, 0.0, slow.clone()), &p99), None);
        // CPU broken too: the own playbook first.
        let mut cpu = p99.clone();
        cpu.push(violation(SloMetric::CpuPercentOfLimit, 50.0, 90.0));
        assert_eq!(find(&obs(true, 320.0, 0.0, slow.clone()), &cpu), None);
        // Callees are fast: the latency is the own.
        let fast = vec![call("catalogue", 20.0, 0.0, 10.0)];
        assert_eq!(find(&obs(true, 320.0, 0.0, fast), &p99), None);
        // No call figures at all: nothing to blame.
        assert_eq!(find(&obs(true, 320.0, 0.0, Vec::new()), &p99), None);
        // A callee failing a little explains few of many own errors.
        let errs = vec![violation(SloMetric::ErrorRatePercent, 5.0, 60.0)];
        let few = vec![call("catalogue", 5.0, 10.0, 10.0)];
        assert_eq!(find(&obs(true, 20.0, 60.0, few), &errs), None);
    }

    #[test]
    fn the_playbook_asks_the_peer_instead_of_scaling() {
        let v = vec![violation(SloMetric::P99LatencyMs, 200.0, 320.0)];
        let mut c = ctx(SafetyMode::Autonomous, v);
        c.observation = Some(obs(true, 320.0, 0.0, vec![call("catalogue", 305.0, 0.0, 10.0)]));
        let plan = super::super::RulesPlanner::new().plan(&c).unwrap();
        assert_eq!(plan.steps[0].purpose, Some(StepPurpose::AskPeer), "{plan:?}");
        assert_eq!(plan.diagnosis.unwrap().cause, RootCause::Downstream);
        // Without call figures the same violation gets the own playbook (scale out).
        c.observation = Some(obs(true, 320.0, 0.0, Vec::new()));
        let plan = super::super::RulesPlanner::new().plan(&c).unwrap();
        assert!(
            matches!(plan.steps[0].purpose, Some(StepPurpose::Remedy { .. })),
            "{plan:?}"
        );
        assert_ne!(plan.diagnosis.map(|d| d.cause), Some(RootCause::Downstream));
    }

    #[test]
    fn asks_once_and_observe_mode_only_reports() {
        let v = vec![violation(SloMetric::P99LatencyMs, 200.0, 320.0)];
        let o = obs(true, 320.0, 0.0, vec![call("catalogue", 305.0, 0.0, 10.0)]);
        let plan = consider(&ctx(SafetyMode::Observe, v.clone()), &o, &v).expect("a report");
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert_eq!(plan.report.as_ref().unwrap().status, ReportStatus::Issue);
        assert!(plan.report.unwrap().message.contains("Observe mode"));
        assert_eq!(plan.diagnosis.unwrap().component, Some(name("catalogue")));

        let mut c = ctx(SafetyMode::Autonomous, v.clone());
        let first = consider(&c, &o, &v).unwrap();
        c.steps.push(crate::planner::TaskStep::ran(
            acv_protocol::StepRecord {
                index: 1,
                description: first.steps[0].description.clone(),
                program: first.steps[0].program.clone(),
                outcome: acv_protocol::StepOutcome::Ok,
                output: String::new(),
                mutated: false,
            },
            &first.steps[0],
        ));
        assert_eq!(consider(&c, &o, &v), None, "one ask per task");
    }
}
