//! Service level objectives: what "healthy" means for a component, as the paper's health check defines it, and the
//! pure functions that judge measurements against them (used by the sidecar's watcher, the planners, the manager's
//! verification and the experiments' oracles).

use serde::{Deserialize, Serialize};

use crate::{ComponentName, ComponentStatus, MetricsSnapshot};

/// A measurable quantity of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SloMetric {
    /// 99th percentile request latency in milliseconds over the measurement window.
    P99LatencyMs,
    /// Average CPU use as a percentage of the CPU limit.
    CpuPercentOfLimit,
    /// Memory use as a percentage of the memory limit.
    MemoryPercentOfLimit,
    /// Ready replicas as a percentage of desired replicas (100 = all READY).
    ReadyPercent,
    /// Share of requests answered with a 5xx status, in percent.
    ErrorRatePercent,
}

/// How a measured value must compare with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// The value must be strictly below the threshold.
    Below,
    /// The value must be at or above the threshold.
    AtLeast,
}

/// One objective: `metric` of `component` must be `comparison` `threshold`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    /// The component measured.
    pub component: ComponentName,
    /// What is measured.
    pub metric: SloMetric,
    /// How the value must relate to the threshold.
    pub comparison: Comparison,
    /// The threshold, in the metric's unit.
    pub threshold: f64,
}

/// A measured value that breaks an objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// The objective broken.
    pub objective: Objective,
    /// The value measured; `None` when the metric could not be measured at all (which also counts as broken).
    pub measured: Option<f64>,
}

/// The set of objectives a sidecar watches for its own component.
///
/// The default is the paper's health check: all replicas READY, CPU and memory under 50% of their limits and P99
/// under 200 ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloPolicy {
    /// Maximum P99 latency in milliseconds.
    pub p99_ms: f64,
    /// Maximum CPU use in percent of the limit.
    pub cpu_percent: f64,
    /// Maximum memory use in percent of the limit.
    pub memory_percent: f64,
    /// Minimum ready replicas in percent of desired.
    pub ready_percent: f64,
    /// Maximum share of 5xx answers in percent, when watched (not part of the paper's health check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate_percent: Option<f64>,
}

// === impl Objective ===

impl Objective {
    /// Whether `value` satisfies this objective. A missing value never does.
    pub fn is_met_by(&self, value: Option<f64>) -> bool {
        match (value, self.comparison) {
            (Some(v), Comparison::Below) => v < self.threshold,
            (Some(v), Comparison::AtLeast) => v >= self.threshold,
            (None, _) => false,
        }
    }

    /// Checks a value, returning the violation if it is not met.
    pub fn check(&self, value: Option<f64>) -> Option<Violation> {
        (!self.is_met_by(value)).then(|| Violation {
            objective: self.clone(),
            measured: value,
        })
    }
}

// === impl SloPolicy ===

impl Default for SloPolicy {
    fn default() -> Self {
        Self {
            p99_ms: 200.0,
            cpu_percent: 50.0,
            memory_percent: 50.0,
            ready_percent: 100.0,
            error_rate_percent: None,
        }
    }
}

impl SloPolicy {
    /// The policy as a list of objectives for `component`.
    pub fn objectives(&self, component: &ComponentName) -> Vec<Objective> {
        let obj = |metric, comparison, threshold| Objective {
            component: component.clone(),
            metric,
            comparison,
            threshold,
        };
        let mut all = vec![
            obj(SloMetric::ReadyPercent, Comparison::AtLeast, self.ready_percent),
            obj(SloMetric::CpuPercentOfLimit, Comparison::Below, self.cpu_percent),
            obj(
                SloMetric::MemoryPercentOfLimit,
                Comparison::Below,
                self.memory_percent,
            ),
            obj(SloMetric::P99LatencyMs, Comparison::Below, self.p99_ms),
        ];
        if let Some(errors) = self.error_rate_percent {
            all.push(obj(SloMetric::ErrorRatePercent, Comparison::Below, errors));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_compare_and_missing_values_fail() {
        let c = ComponentName::new("catalogue").unwrap();
        let objs = SloPolicy::default().objectives(&c);
        let p99 = objs.iter().find(|o| o.metric == SloMetric::P99LatencyMs).unwrap();
        assert!(p99.is_met_by(Some(199.9)));
        assert!(!p99.is_met_by(Some(200.0)));
        assert!(!p99.is_met_by(None));
        let ready = objs.iter().find(|o| o.metric == SloMetric::ReadyPercent).unwrap();
        assert!(ready.is_met_by(Some(100.0)));
        assert_eq!(ready.check(Some(66.0)).unwrap().measured, Some(66.0));
    }

    fn broken(metric: SloMetric, measured: Option<f64>) -> Violation {
        let c = ComponentName::new("catalogue").unwrap();
        let objective = SloPolicy::default()
            .objectives(&c)
            .into_iter()
            .find(|o| o.metric == metric)
            .unwrap();
        Violation { objective, measured }
    }

    #[test]
    fn excess_is_relative_to_the_threshold() {
        assert_eq!(broken(SloMetric::P99LatencyMs, Some(300.0)).excess(), Some(0.5));
        assert_eq!(broken(SloMetric::ReadyPercent, Some(0.0)).excess(), Some(1.0));
        assert_eq!(broken(SloMetric::ReadyPercent, Some(50.0)).excess(), Some(0.5));
        assert_eq!(broken(SloMetric::CpuPercentOfLimit, None).excess(), None);
    }

    #[test]
    fn regression_needs_a_real_worsening() {
        use SloMetric::*;
        // A newly broken objective, well past its threshold.
        let r = regression(&[], &[broken(P99LatencyMs, Some(412.0))], 0.2).unwrap();
        assert_eq!(r.worse, ["p99_latency_ms of catalogue below 200: met → 412.0"]);
        // A broken one further off.
        assert!(
            regression(
                &[broken(ReadyPercent, Some(50.0))],
                &[broken(ReadyPercent, Some(0.0))],
                0.2
            )
            .is_some()
        );
        // Readiness has no tolerance: one pod of ten not ready after the change is a regression.
        assert!(regression(&[], &[broken(ReadyPercent, Some(90.0))], 0.2).is_some());
        // Within the tolerance: noise, not a regression.
        assert!(regression(&[], &[broken(P99LatencyMs, Some(230.0))], 0.2).is_none());
        assert!(
            regression(
                &[broken(CpuPercentOfLimit, Some(60.0))],
                &[broken(CpuPercentOfLimit, Some(65.0))],
                0.2
            )
            .is_none()
        );
        // Better, or a trade that is better overall.
        assert!(regression(&[broken(P99LatencyMs, Some(412.0))], &[], 0.2).is_none());
        assert!(
            regression(
                &[broken(ReadyPercent, Some(0.0))],
                &[broken(CpuPercentOfLimit, Some(80.0))],
                0.2
            )
            .is_none()
        );
        // Missing data is never a regression.
        assert!(regression(&[], &[broken(CpuPercentOfLimit, None)], 0.2).is_none());
        assert!(
            regression(
                &[broken(P99LatencyMs, None)],
                &[broken(P99LatencyMs, Some(900.0))],
                0.2
            )
            .is_none()
        );
        // A bad tolerance is read as 0.
        assert!(regression(&[], &[broken(P99LatencyMs, Some(201.0))], f64::NAN).is_some());
    }
}

// --- evaluation: pure functions over measurements ------------------------------------------------------------

/// What was measured of one component: the metrics window and the status, as the watcher and the manager read
/// them from a cluster backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Metrics window.
    pub metrics: Option<MetricsSnapshot>,
    /// Status (for readiness objectives).
    pub status: Option<ComponentStatus>,
}

/// The value of `metric` in a measurement, in the metric's unit.
pub fn measured_value(metric: SloMetric, m: &Measurement) -> Option<f64> {
    match metric {
        SloMetric::P99LatencyMs => m.metrics.as_ref().and_then(|x| x.p99_ms),
        SloMetric::CpuPercentOfLimit => m.metrics.as_ref().and_then(|x| x.cpu_percent_of_limit),
        SloMetric::MemoryPercentOfLimit => m.metrics.as_ref().and_then(|x| x.memory_percent_of_limit),
        SloMetric::ErrorRatePercent => m.metrics.as_ref().and_then(|x| x.error_rate_percent),
        // Every pod counts, not just the desired number: during a stalled rollout the Deployment may report all
        // desired replicas ready while a surge pod crash-loops, and the paper's SLO is "all pods READY".
        SloMetric::ReadyPercent => m.status.as_ref().map(|s| {
            let pods = u32::try_from(s.replicas.len())
                .unwrap_or(u32::MAX)
                .max(s.desired_replicas);
            let ready = if s.replicas.is_empty() {
                s.ready_replicas
            } else {
                let n = s
                    .replicas
                    .iter()
                    .filter(|r| r.state == crate::ReplicaState::Ready)
                    .count();
                u32::try_from(n).unwrap_or(u32::MAX)
            };
            if pods == 0 {
                0.0
            } else {
                f64::from(ready.min(pods)) * 100.0 / f64::from(pods)
            }
        }),
    }
}

/// Checks every objective against the measurements; objectives of unmeasured components count as broken.
pub fn check_objectives(
    objectives: &[Objective],
    measured: &[(ComponentName, Measurement)],
) -> Vec<Violation> {
    objectives
        .iter()
        .filter_map(|o| {
            let value = measured
                .iter()
                .find(|(c, _)| c == &o.component)
                .and_then(|(_, m)| measured_value(o.metric, m));
            o.check(value)
        })
        .collect()
}

/// Like [`check_objectives`], for a component's own health check: latency and error-rate objectives of a component
/// that served no requests in the window are not judged (an idle service has no latency to be too high), while
/// every other missing value still counts as broken. Goals judged by the manager use the strict
/// [`check_objectives`].
pub fn check_health(objectives: &[Objective], measured: &[(ComponentName, Measurement)]) -> Vec<Violation> {
    let idle = |c: &ComponentName| {
        measured
            .iter()
            .find(|(m, _)| m == c)
            .and_then(|(_, m)| m.metrics.as_ref())
            .is_some_and(|x| x.request_rate.unwrap_or(0.0) <= 0.0 && x.p99_ms.is_none())
    };
    check_objectives(objectives, measured)
        .into_iter()
        .filter(|v| {
            let traffic_metric = matches!(
                v.objective.metric,
                SloMetric::P99LatencyMs | SloMetric::ErrorRatePercent
            );
            !(traffic_metric && v.measured.is_none() && idle(&v.objective.component))
        })
        .collect()
}

/// `p99_latency_ms of catalogue below 300`.
pub fn describe_objective(o: &Objective) -> String {
    let cmp = match o.comparison {
        Comparison::Below => "below",
        Comparison::AtLeast => "at least",
    };
    format!(
        "{} of {} {cmp} {}",
        metric_name(o.metric),
        o.component,
        o.threshold
    )
}

/// Each violation as [`describe_violation`] words it.
pub fn describe_violations(violations: &[Violation]) -> Vec<String> {
    violations.iter().map(describe_violation).collect()
}

// --- comparison: is the state after a change worse than before it? ----------------------------------------------

impl Violation {
    /// How far past its threshold the measurement is, relative to the threshold: 0.5 is half again a "below"
    /// limit, or half short of an "at least" one (a threshold of 0 compares the absolute value). `None` when the
    /// metric was not measured.
    pub fn excess(&self) -> Option<f64> {
        let m = self.measured?;
        let t = self.objective.threshold;
        let past = match self.objective.comparison {
            Comparison::Below => m - t,
            Comparison::AtLeast => t - m,
        };
        let rel = if t.abs() > f64::EPSILON {
            past / t.abs()
        } else {
            past
        };
        Some(if rel.is_finite() { rel.max(0.0) } else { 0.0 })
    }
}

/// Health got worse between two checks of the same objectives ([`regression`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    /// Sum of the relative excesses of the compared objectives before the change.
    pub before: f64,
    /// The same sum after it.
    pub after: f64,
    /// The objectives that got worse, in words (`p99_latency_ms of catalogue below 200: 12.0 → 412.5`).
    pub worse: Vec<String>,
}

/// Whether health after a change (`after`, the violations of a check) is worse than before it (`before`, the
/// violations of a check of the same objectives) by the SLO measure: the objectives broken, each weighed by how far
/// past its threshold it is ([`Violation::excess`]; a met objective weighs 0). It is worse when at least one
/// objective got worse by more than `tolerance` (0.2: a fifth of its threshold) — newly broken or further off — and
/// the total grew by more than that too. Readiness is not noisy, so it has no tolerance: once the replicas had the
/// time to converge, fewer ready pods is a regression (a stalled rollout of 1 bad pod among 9 good is 10 %).
/// Objectives not measured in either check are left out: missing data is never taken for a regression.
pub fn regression(before: &[Violation], after: &[Violation], tolerance: f64) -> Option<Regression> {
    let tolerance = if tolerance.is_finite() {
        tolerance.max(0.0)
    } else {
        0.0
    };
    let weight = |vs: &[Violation], o: &Objective| -> Option<(f64, Option<f64>)> {
        match vs.iter().find(|v| &v.objective == o) {
            None => Some((0.0, None)),
            Some(v) => v.excess().map(|e| (e, v.measured)),
        }
    };
    let mut objectives: Vec<&Objective> = Vec::new();
    for v in before.iter().chain(after) {
        if !objectives.contains(&&v.objective) {
            objectives.push(&v.objective);
        }
    }
    let tolerance_of = |o: &Objective| {
        if o.metric == SloMetric::ReadyPercent {
            0.0
        } else {
            tolerance
        }
    };
    let (mut sum_before, mut sum_after, mut worse) = (0.0, 0.0, Vec::new());
    let mut margin = f64::INFINITY;
    for o in objectives {
        let (Some((b, mb)), Some((a, ma))) = (weight(before, o), weight(after, o)) else {
            continue;
        };
        sum_before += b;
        sum_after += a;
        if a > b + tolerance_of(o) {
            margin = margin.min(tolerance_of(o));
            let show = |m: Option<f64>| m.map_or_else(|| "met".to_owned(), |x| format!("{x:.1}"));
            worse.push(format!("{}: {} → {}", describe_objective(o), show(mb), show(ma)));
        }
    }
    (!worse.is_empty() && sum_after > sum_before + margin).then_some(Regression {
        before: sum_before,
        after: sum_after,
        worse,
    })
}

/// The snake_case wire name of a metric.
pub fn metric_name(m: SloMetric) -> &'static str {
    match m {
        SloMetric::P99LatencyMs => "p99_latency_ms",
        SloMetric::CpuPercentOfLimit => "cpu_percent_of_limit",
        SloMetric::MemoryPercentOfLimit => "memory_percent_of_limit",
        SloMetric::ReadyPercent => "ready_percent",
        SloMetric::ErrorRatePercent => "error_rate_percent",
    }
}

/// `p99_latency_ms of catalogue below 300: measured 412.5`.
pub fn describe_violation(v: &Violation) -> String {
    match v.measured {
        Some(x) => format!("{}: measured {x:.1}", describe_objective(&v.objective)),
        None => format!("{}: not measured", describe_objective(&v.objective)),
    }
}
