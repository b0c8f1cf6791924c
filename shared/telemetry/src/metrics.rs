//! Metric names and the typed functions that emit them. Code elsewhere never names a metric by string, so names
//! and label sets stay consistent and bounded. Every metric has a help text and a unit in its name (Prometheus
//! conventions: `_total` for counters, `_seconds` for durations); `docs/metrics.md` lists them all and a test checks
//! the exposition with `promtool check metrics`.

use metrics::Unit;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::TelemetryError;

/// Counters exported by acv components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterName {
    /// Envelopes published, by transport and kind.
    BusPublished,
    /// Envelopes delivered to a consumer, by transport and kind.
    BusDelivered,
    /// Deliveries dropped as duplicates of an already handled envelope id.
    BusDuplicates,
    /// Payloads moved to the dead-letter place because they could not be decoded.
    BusDeadLettered,
    /// Connection re-establishments after a broker connection was lost.
    BusReconnects,
    /// Envelopes rejected (dead-lettered) because their `from` does not match the broker-verified sender.
    BusSenderRejected,
    /// Tasks handled by a sidecar, by outcome.
    TasksHandled,
    /// Peer API calls (mechanism 3), by side (`client`/`server`) and outcome.
    PeerCalls,
    /// Programs run in the sandbox, by verdict.
    SandboxRuns,
    /// Host calls made by sandboxed programs, by call name and result.
    HostCalls,
    /// Planner turns (one plan or re-plan), by planner.
    PlannerTurns,
    /// LLM tokens used, by kind (`prompt`/`completion`).
    LlmTokens,
    /// Episodes (a task or a violation handled from detection to report), by trigger and outcome.
    Episodes,
    /// Audit records a sidecar dropped because its buffer was full (the manager or bus unreachable too long).
    AuditDropped,
    /// Approvals closed at the sidecar, by outcome (`executed`, `failed`, `denied`, `expired`).
    Approvals,
    /// Mutating steps judged by the no-regression guard, by outcome (`kept`, `reverted`, `revert_failed`,
    /// `unmeasured`).
    GuardChecks,
}

/// Histograms exported by acv components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramName {
    /// Seconds from a task envelope's creation to its report's arrival.
    TaskRoundTripSeconds,
    /// Seconds of a peer call as seen by the asking sidecar (TLS handshake included).
    PeerRoundTripSeconds,
    /// Seconds a sandboxed program ran, by verdict.
    SandboxRunSeconds,
    /// Seconds from the first violating sample (failing SLO check) to the episode's start (the confirmed
    /// violation).
    TimeToDetectSeconds,
    /// Seconds from the episode's start to the SLOs measured healthy again.
    TimeToMitigateSeconds,
    /// US dollars one planning session (a task or an episode) spent on LLM calls, at the configured prices; the
    /// histogram's `_sum` is the total spend.
    LlmCostUsd,
}

/// Gauges exported by acv components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeName {
    /// Goals held by the manager, by state.
    Goals,
}

// === impl CounterName ===

impl CounterName {
    /// Every counter, for descriptions and checks.
    pub const ALL: [CounterName; 16] = [
        Self::BusPublished,
        Self::BusDelivered,
        Self::BusDuplicates,
        Self::BusDeadLettered,
        Self::BusReconnects,
        Self::BusSenderRejected,
        Self::TasksHandled,
        Self::PeerCalls,
        Self::SandboxRuns,
        Self::HostCalls,
        Self::PlannerTurns,
        Self::LlmTokens,
        Self::Episodes,
        Self::AuditDropped,
        Self::Approvals,
        Self::GuardChecks,
    ];

    /// The exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BusPublished => "acv_bus_published_total",
            Self::BusDelivered => "acv_bus_delivered_total",
            Self::BusDuplicates => "acv_bus_duplicates_total",
            Self::BusDeadLettered => "acv_bus_dead_lettered_total",
            Self::BusReconnects => "acv_bus_reconnects_total",
            Self::BusSenderRejected => "acv_bus_sender_rejected_total",
            Self::TasksHandled => "acv_tasks_handled_total",
            Self::PeerCalls => "acv_peer_calls_total",
            Self::SandboxRuns => "acv_sandbox_runs_total",
            Self::HostCalls => "acv_host_calls_total",
            Self::PlannerTurns => "acv_planner_turns_total",
            Self::LlmTokens => "acv_llm_tokens_total",
            Self::Episodes => "acv_episodes_total",
            Self::AuditDropped => "acv_audit_dropped_total",
            Self::Approvals => "acv_approvals_total",
            Self::GuardChecks => "acv_guard_checks_total",
        }
    }

    /// The help text.
    pub fn help(self) -> &'static str {
        match self {
            Self::BusPublished => "Envelopes published on the bus, by transport and kind.",
            Self::BusDelivered => "Envelopes delivered to a consumer, by transport and kind.",
            Self::BusDuplicates => "Deliveries dropped as duplicates of an envelope already handled.",
            Self::BusDeadLettered => {
                "Payloads dead-lettered because they could not be decoded or were rejected."
            }
            Self::BusReconnects => "Broker connections re-established after a loss.",
            Self::BusSenderRejected => {
                "Envelopes dead-lettered because their sender is not the broker-verified one."
            }
            Self::TasksHandled => "Tasks handled by a sidecar, by outcome.",
            Self::PeerCalls => "Peer API calls (mechanism 3), by side and outcome.",
            Self::SandboxRuns => "Programs run in the sandbox, by verdict.",
            Self::HostCalls => "Host calls made by sandboxed programs, by call and result.",
            Self::PlannerTurns => "Planner turns (a plan or a re-plan), by planner.",
            Self::LlmTokens => "LLM tokens used, by kind (prompt or completion).",
            Self::Episodes => "Episodes handled from trigger to report, by trigger and outcome.",
            Self::AuditDropped => {
                "Audit records dropped, oldest first, because the sidecar's buffer was full."
            }
            Self::Approvals => "Approvals closed at the sidecar, by outcome.",
            Self::GuardChecks => {
                "Mutating steps judged by the no-regression guard, by outcome (kept, reverted, ...)."
            }
        }
    }
}

impl HistogramName {
    /// Every histogram, for descriptions and checks.
    pub const ALL: [HistogramName; 6] = [
        Self::TaskRoundTripSeconds,
        Self::PeerRoundTripSeconds,
        Self::SandboxRunSeconds,
        Self::TimeToDetectSeconds,
        Self::TimeToMitigateSeconds,
        Self::LlmCostUsd,
    ];

    /// The exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskRoundTripSeconds => "acv_task_round_trip_seconds",
            Self::PeerRoundTripSeconds => "acv_peer_round_trip_seconds",
            Self::SandboxRunSeconds => "acv_sandbox_run_duration_seconds",
            Self::TimeToDetectSeconds => "acv_time_to_detect_seconds",
            Self::TimeToMitigateSeconds => "acv_time_to_mitigate_seconds",
            Self::LlmCostUsd => "acv_llm_session_cost_usd",
        }
    }

    /// The help text.
    pub fn help(self) -> &'static str {
        match self {
            Self::TaskRoundTripSeconds => "Seconds from a task's creation to its report's arrival.",
            Self::PeerRoundTripSeconds => {
                "Seconds of a peer call as seen by the asking sidecar, TLS handshake included."
            }
            Self::SandboxRunSeconds => "Seconds a sandboxed program ran, by verdict.",
            Self::TimeToDetectSeconds => {
                "Seconds from the first failing SLO check to the start of the episode that handles it."
            }
            Self::TimeToMitigateSeconds => {
                "Seconds from the start of an SLO episode to the SLOs measured healthy again."
            }
            Self::LlmCostUsd => {
                "US dollars one planning session spent on LLM calls at the configured prices (sum: total spend)."
            }
        }
    }

    /// Bucket upper bounds (seconds, or US dollars for the cost), chosen per metric so the quantiles that matter fall
    /// inside the range.
    fn buckets(self) -> &'static [f64] {
        match self {
            Self::SandboxRunSeconds | Self::PeerRoundTripSeconds => &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
            Self::TaskRoundTripSeconds => &[
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
            ],
            Self::TimeToDetectSeconds | Self::TimeToMitigateSeconds => {
                &[1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]
            }
            Self::LlmCostUsd => &[0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0],
        }
    }
}

impl GaugeName {
    /// Every gauge, for descriptions and checks.
    pub const ALL: [GaugeName; 1] = [Self::Goals];

    /// The exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Goals => "acv_goals",
        }
    }

    /// The help text.
    pub fn help(self) -> &'static str {
        match self {
            Self::Goals => "Goals held by the manager, by state.",
        }
    }
}

/// Adds `by` to a counter with the given static labels.
pub fn count(name: CounterName, labels: &[(&'static str, &'static str)], by: u64) {
    let labels: Vec<metrics::Label> = labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect();
    metrics::counter!(name.as_str(), labels).increment(by);
}

/// Records one observation in a histogram.
pub fn observe(name: HistogramName, labels: &[(&'static str, &'static str)], value: f64) {
    let labels: Vec<metrics::Label> = labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect();
    metrics::histogram!(name.as_str(), labels).record(value);
}

/// Sets a gauge.
pub fn set(name: GaugeName, labels: &[(&'static str, &'static str)], value: f64) {
    let labels: Vec<metrics::Label> = labels.iter().map(|(k, v)| metrics::Label::new(*k, *v)).collect();
    metrics::gauge!(name.as_str(), labels).set(value);
}

/// Registers the help text and unit of every metric with the current recorder, so the exposition carries `# HELP`.
pub fn describe_all() {
    for c in CounterName::ALL {
        metrics::describe_counter!(c.as_str(), Unit::Count, c.help());
    }
    for h in HistogramName::ALL {
        metrics::describe_histogram!(h.as_str(), Unit::Seconds, h.help());
    }
    for g in GaugeName::ALL {
        metrics::describe_gauge!(g.as_str(), Unit::Count, g.help());
    }
}

/// A Prometheus recorder with every acv histogram's buckets (rendered as real `_bucket` series, not summaries).
pub fn prometheus_builder() -> Result<PrometheusBuilder, TelemetryError> {
    let mut builder = PrometheusBuilder::new();
    for h in HistogramName::ALL {
        builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(h.as_str().to_string()),
                h.buckets(),
            )
            .map_err(|e| TelemetryError::AlreadyInitialised(format!("buckets of {}: {e}", h.as_str())))?;
    }
    Ok(builder)
}

/// Installs the global Prometheus recorder (with help texts and buckets) and returns the handle the admin server
/// renders from.
pub fn install_prometheus() -> Result<PrometheusHandle, TelemetryError> {
    let handle = prometheus_builder()?
        .install_recorder()
        .map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))?;
    describe_all();
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for c in CounterName::ALL {
            assert!(
                c.as_str().starts_with("acv_") && c.as_str().ends_with("_total"),
                "{}",
                c.as_str()
            );
            assert!(c.help().ends_with('.'), "{}", c.as_str());
        }
        for h in HistogramName::ALL {
            assert!(
                h.as_str().starts_with("acv_")
                    && ["_seconds", "_usd"].iter().any(|unit| h.as_str().ends_with(unit)),
                "{}",
                h.as_str()
            );
            assert!(h.buckets().windows(2).all(|w| w[0] < w[1]), "{}", h.as_str());
        }
        let mut names: Vec<&str> = CounterName::ALL.iter().map(|c| c.as_str()).collect();
        names.extend(HistogramName::ALL.iter().map(|h| h.as_str()));
        names.extend(GaugeName::ALL.iter().map(|g| g.as_str()));
        let total = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), total, "a metric name is used twice");
    }
}
