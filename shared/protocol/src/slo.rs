//! Service level objectives: what "healthy" means for a component, as the paper's health check defines it.

use serde::{Deserialize, Serialize};

use crate::ComponentName;

/// A measurable quantity of one component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
        vec![
            obj(SloMetric::ReadyPercent, Comparison::AtLeast, self.ready_percent),
            obj(SloMetric::CpuPercentOfLimit, Comparison::Below, self.cpu_percent),
            obj(
                SloMetric::MemoryPercentOfLimit,
                Comparison::Below,
                self.memory_percent,
            ),
            obj(SloMetric::P99LatencyMs, Comparison::Below, self.p99_ms),
        ]
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
}
