//! Metric names and the typed functions that emit them. Code elsewhere never names a metric by string, so names
//! and label sets stay consistent and bounded.

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
}

/// Histograms exported by acv components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramName {
    /// Seconds from a task envelope's creation to its report's arrival.
    TaskRoundTripSeconds,
    /// Seconds of a peer call as seen by the asking sidecar (TLS handshake included).
    PeerRoundTripSeconds,
}

// === impl CounterName ===

impl CounterName {
    /// The exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            CounterName::BusPublished => "acv_bus_published_total",
            CounterName::BusDelivered => "acv_bus_delivered_total",
            CounterName::BusDuplicates => "acv_bus_duplicates_total",
            CounterName::BusDeadLettered => "acv_bus_dead_lettered_total",
            CounterName::BusReconnects => "acv_bus_reconnects_total",
            CounterName::BusSenderRejected => "acv_bus_sender_rejected_total",
            CounterName::TasksHandled => "acv_tasks_handled_total",
            CounterName::PeerCalls => "acv_peer_calls_total",
        }
    }
}

impl HistogramName {
    /// The exported name.
    pub fn as_str(self) -> &'static str {
        match self {
            HistogramName::TaskRoundTripSeconds => "acv_task_round_trip_seconds",
            HistogramName::PeerRoundTripSeconds => "acv_peer_round_trip_seconds",
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

/// Installs the global Prometheus recorder and returns the handle the admin server renders from.
pub fn install_prometheus() -> Result<PrometheusHandle, TelemetryError> {
    PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}
