//! The sidecar's own health check (the monitor/analyse half of its MAPE-K loop): measure the component through
//! the cluster backend and compare with the SLO policy. It also remembers what "healthy" looked like (request
//! rate, CPU per request, CPU and memory use over the last healthy checks), the [`Baseline`] a diagnosis compares
//! the present with.

use std::{collections::VecDeque, sync::Arc};

use acv_cluster::Cluster;
use acv_llm::Baseline;
use acv_protocol::{Measurement, check_health};
use acv_protocol::{SloPolicy, Violation};

/// Healthy checks the baseline averages.
pub const BASELINE_CHECKS: usize = 10;

/// One health check's result.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// What was measured.
    pub measurement: Measurement,
    /// Objectives broken (unmeasurable ones included).
    pub violations: Vec<Violation>,
}

/// What one healthy check contributes to the baseline.
#[derive(Debug, Clone, Copy)]
struct HealthySample {
    rate: Option<f64>,
    cpu_ms_per_request: Option<f64>,
    cpu_percent: Option<f64>,
    memory_percent: Option<f64>,
}

/// Measures one component against its policy.
pub struct Watcher {
    cluster: Arc<dyn Cluster>,
    policy: SloPolicy,
    window_secs: f64,
    healthy: std::sync::Mutex<VecDeque<HealthySample>>,
}

fn mean(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = xs.flatten().fold((0.0, 0u32), |(s, n), x| (s + x, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

// === impl Watcher ===

impl Watcher {
    /// A watcher over `cluster` with `policy`, measuring metrics over `window_secs`.
    pub fn new(cluster: Arc<dyn Cluster>, policy: SloPolicy, window_secs: f64) -> Self {
        Self {
            cluster,
            policy,
            window_secs,
            healthy: std::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// The SLO policy it checks.
    pub fn policy(&self) -> &SloPolicy {
        &self.policy
    }

    /// The metrics window it measures over (seconds).
    pub fn window_secs(&self) -> f64 {
        self.window_secs
    }

    /// Measures and compares. A backend failure leaves that part unmeasured, which breaks its objectives: a
    /// component we cannot observe is not known to be healthy. A healthy check with traffic feeds the baseline.
    pub async fn check(&self) -> HealthCheck {
        self.check_over(self.window_secs).await
    }

    /// [`check`](Self::check) over a window of `window_secs` (at most the configured one), e.g. only the time since
    /// a mitigation.
    pub async fn check_over(&self, window_secs: f64) -> HealthCheck {
        let window_secs = window_secs.clamp(0.0, self.window_secs);
        let component = self.cluster.component().clone();
        let status = match self.cluster.status().await {
            Ok(s) => Some(s),
            Err(error) => {
                tracing::warn!(%component, %error, "Health check could not read status.");
                None
            }
        };
        let metrics = match self.cluster.metrics(window_secs).await {
            Ok(m) => Some(m),
            Err(error) => {
                tracing::warn!(%component, %error, "Health check could not read metrics.");
                None
            }
        };
        let measurement = Measurement { metrics, status };
        let objectives = self.policy.objectives(&component);
        let violations = check_health(&objectives, &[(component, measurement.clone())]);
        if violations.is_empty() {
            self.remember_healthy(&measurement);
        }
        HealthCheck {
            measurement,
            violations,
        }
    }

    fn remember_healthy(&self, m: &Measurement) {
        let Some(metrics) = &m.metrics else { return };
        let rate = metrics.request_rate;
        let cpu_ms_per_request = match (metrics.cpu_percent_of_limit, &m.status, rate) {
            (Some(pct), Some(st), Some(r)) if r >= acv_llm::planner::rules::diagnose::MIN_RATE => Some(
                pct / 100.0 * f64::from(st.limits.cpu_millis) * f64::from(st.desired_replicas.max(1)) / r,
            ),
            _ => None,
        };
        let mut q = self.healthy.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(HealthySample {
            rate,
            cpu_ms_per_request,
            cpu_percent: metrics.cpu_percent_of_limit,
            memory_percent: metrics.memory_percent_of_limit,
        });
        while q.len() > BASELINE_CHECKS {
            q.pop_front();
        }
    }

    /// The baseline from the last healthy checks (`None` before the first one). `replicas` and `limits` are the
    /// capacity before the current episode, which the agent knows.
    pub fn baseline(&self, replicas: u32, limits: Option<acv_protocol::ResourceLimits>) -> Option<Baseline> {
        let q = self.healthy.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() {
            return None;
        }
        Some(Baseline {
            request_rate: mean(q.iter().map(|s| s.rate)),
            cpu_ms_per_request: mean(q.iter().map(|s| s.cpu_ms_per_request)),
            cpu_percent: mean(q.iter().map(|s| s.cpu_percent)),
            memory_percent: mean(q.iter().map(|s| s.memory_percent)),
            replicas,
            limits,
            healthy_checks: u32::try_from(q.len()).unwrap_or(u32::MAX),
        })
    }
}
