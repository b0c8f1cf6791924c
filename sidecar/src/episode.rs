//! What the agent remembers between health checks about one incident: the backoff after a mitigation that did
//! not work (so it says so once and does not repeat itself every interval), and the capacity it borrowed (so it
//! can give it back, and say what it cost).

use std::time::{Duration, Instant};

use acv_llm::{Observation, planner::rules::diagnose::Findings};
use acv_protocol::{ComponentStatus, Evidence, Measurement, ResourceLimits, RootCause, SloMetric, Violation};
use serde_json::json;

/// What makes two failing situations "the same": which objectives are broken, the diagnosed cause and the
/// revision running. A different one is worth another try at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Broken objectives' metrics, sorted.
    pub metrics: Vec<SloMetric>,
    /// The cause the facts point to.
    pub cause: RootCause,
    /// The revision running.
    pub revision: Option<u64>,
}

fn urgency(m: SloMetric) -> u8 {
    match m {
        SloMetric::ReadyPercent => 0,
        SloMetric::MemoryPercentOfLimit => 1,
        SloMetric::CpuPercentOfLimit => 2,
        SloMetric::P99LatencyMs => 3,
        SloMetric::ErrorRatePercent => 4,
    }
}

/// The observation a diagnosis needs, from a health check's measurement.
pub fn observation(m: &Measurement, baseline: Option<acv_llm::Baseline>) -> Observation {
    Observation {
        status: m.status.clone(),
        metrics: m.metrics.clone(),
        history: Vec::new(),
        baseline,
        at_ms: acv_core::now_ms(),
    }
}

// === impl Signature ===

impl Signature {
    /// The signature of `violations` seen with `obs`.
    pub fn of(violations: &[Violation], obs: &Observation) -> Self {
        let mut metrics: Vec<SloMetric> = violations.iter().map(|v| v.objective.metric).collect();
        metrics.sort_by_key(|m| urgency(*m));
        metrics.dedup();
        let first = violations.iter().min_by_key(|v| urgency(v.objective.metric));
        let cause = first.map_or(RootCause::Healthy, |v| Findings::of(obs).cause(v, false));
        Self {
            metrics,
            cause,
            revision: obs.status.as_ref().map(|s| s.revision),
        }
    }
}

/// Backing off after a mitigation that left the objectives broken.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The situation it could not fix.
    pub signature: Signature,
    /// The current cooldown (doubles after each further failed try, up to the maximum).
    pub cooldown: Duration,
    /// No new try before this, unless the situation changes.
    pub until: Instant,
    /// Tries so far.
    pub attempts: u32,
}

// === impl Backoff ===

impl Backoff {
    /// After the first failed try.
    pub fn start(signature: Signature, initial: Duration, now: Instant) -> Self {
        Self {
            signature,
            cooldown: initial,
            until: now + initial,
            attempts: 1,
        }
    }

    /// After a further failed try: double the cooldown (at most `max`).
    pub fn again(&mut self, signature: Signature, max: Duration, now: Instant) {
        self.signature = signature;
        self.attempts += 1;
        self.cooldown = (self.cooldown * 2).min(max);
        self.until = now + self.cooldown;
    }

    /// Whether `signature` at `now` is still to be left alone.
    pub fn holds(&self, signature: &Signature, now: Instant) -> bool {
        self.signature == *signature && now < self.until
    }
}

/// Capacity above what the component had before the episode, and what it has cost so far.
#[derive(Debug, Clone)]
pub struct Borrowed {
    /// Replicas before the episode.
    pub replicas: u32,
    /// Limits before the episode.
    pub limits: ResourceLimits,
    /// When the episode began.
    pub since: Instant,
    /// Last time the cost was accounted.
    last: Instant,
    /// Healthy without a break since then (the quiet period before giving back).
    pub healthy_since: Option<Instant>,
    /// Replica-seconds above the baseline.
    pub extra_replica_secs: f64,
    /// Millicore-seconds of CPU limit above the baseline (over all replicas).
    pub extra_cpu_millicore_secs: f64,
    /// MiB-seconds of memory limit above the baseline (over all replicas).
    pub extra_memory_mib_secs: f64,
    /// Highest replica count seen.
    pub peak_replicas: u32,
    /// Highest limits seen.
    pub peak_limits: ResourceLimits,
}

// === impl Borrowed ===

impl Borrowed {
    /// The capacity in `status` as the baseline of a new episode.
    pub fn new(status: &ComponentStatus, now: Instant) -> Self {
        Self {
            replicas: status.desired_replicas,
            limits: status.limits,
            since: now,
            last: now,
            healthy_since: None,
            extra_replica_secs: 0.0,
            extra_cpu_millicore_secs: 0.0,
            extra_memory_mib_secs: 0.0,
            peak_replicas: status.desired_replicas,
            peak_limits: status.limits,
        }
    }

    /// Adds the cost of `status` held since the last call.
    pub fn account(&mut self, status: &ComponentStatus, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let n = f64::from(status.desired_replicas);
        let extra = f64::from(status.desired_replicas.saturating_sub(self.replicas));
        self.extra_replica_secs += extra * dt;
        let cpu = f64::from(status.limits.cpu_millis.saturating_sub(self.limits.cpu_millis));
        let mem = f64::from(status.limits.memory_mib.saturating_sub(self.limits.memory_mib));
        self.extra_cpu_millicore_secs += cpu * n * dt;
        self.extra_memory_mib_secs += mem * n * dt;
        self.peak_replicas = self.peak_replicas.max(status.desired_replicas);
        self.peak_limits.cpu_millis = self.peak_limits.cpu_millis.max(status.limits.cpu_millis);
        self.peak_limits.memory_mib = self.peak_limits.memory_mib.max(status.limits.memory_mib);
    }

    /// Whether `status` has nothing above the baseline.
    pub fn returned(&self, status: &ComponentStatus) -> bool {
        status.desired_replicas <= self.replicas
            && status.limits.cpu_millis <= self.limits.cpu_millis
            && status.limits.memory_mib <= self.limits.memory_mib
    }

    /// Whether anything was ever borrowed.
    pub fn borrowed_any(&self) -> bool {
        self.peak_replicas > self.replicas || self.peak_limits != self.limits
    }

    /// The cost so far, as evidence.
    pub fn evidence(&self, now: Instant) -> Evidence {
        Evidence {
            name: "mitigation_cost".into(),
            value: json!({
                "baseline_replicas": self.replicas,
                "baseline_limits": self.limits,
                "peak_replicas": self.peak_replicas,
                "peak_limits": self.peak_limits,
                "extra_replica_seconds": (self.extra_replica_secs * 10.0).round() / 10.0,
                "extra_cpu_millicore_seconds": self.extra_cpu_millicore_secs.round(),
                "extra_memory_mib_seconds": self.extra_memory_mib_secs.round(),
                "episode_secs": (now.saturating_duration_since(self.since).as_secs_f64() * 10.0).round() / 10.0,
            }),
        }
    }
}
