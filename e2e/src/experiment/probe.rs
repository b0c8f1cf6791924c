//! The harness's own measurements: a sampler reading the runtime's control API every second during an episode,
//! snapshots of status and metrics, the SLO story told by the samples, and the changes seen between samples (the
//! actions, whoever took them).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_cluster::Cluster;
use acv_protocol::{Measurement, SloPolicy, measured_value};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::oracle::SloStory;

/// Sampling period.
pub const PERIOD: Duration = Duration::from_secs(1);
/// Metrics window of each sample, seconds.
pub const SAMPLE_WINDOW_SECS: f64 = 3.0;

/// One sample of the maintained component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the episode started.
    pub t: f64,
    /// P99 latency, ms.
    pub p99_ms: Option<f64>,
    /// CPU, % of limit.
    pub cpu_percent: Option<f64>,
    /// Memory, % of limit.
    pub memory_percent: Option<f64>,
    /// 5xx share, %.
    pub error_percent: Option<f64>,
    /// Requests/s.
    pub rps: Option<f64>,
    /// Desired replicas.
    pub desired: u32,
    /// Ready replicas.
    pub ready: u32,
    /// Revision.
    pub revision: u64,
    /// Image.
    pub image: String,
    /// Every objective of the health-check SLO policy met.
    pub slo_ok: bool,
}

/// A change seen between two samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Seconds since the episode started.
    pub t: f64,
    /// What changed.
    pub what: String,
}

/// Status and metrics of one component now, over `window_secs`.
pub async fn measure(cluster: &dyn Cluster, window_secs: f64) -> Measurement {
    Measurement {
        metrics: cluster.metrics(window_secs).await.ok(),
        status: cluster.status().await.ok(),
    }
}

/// Whether `m` meets the health-check SLO policy (a value that could not be measured does not).
pub fn healthy(m: &Measurement, policy: &SloPolicy) -> bool {
    let Some(c) = m.status.as_ref().map(|s| s.component.clone()) else {
        return false;
    };
    policy
        .objectives(&c)
        .iter()
        .all(|o| o.is_met_by(measured_value(o.metric, m)))
}

/// The health objectives that `m` breaks, by metric name.
pub fn broken(m: &Measurement, policy: &SloPolicy) -> Vec<String> {
    let Some(c) = m.status.as_ref().map(|s| s.component.clone()) else {
        return vec!["status".into()];
    };
    policy
        .objectives(&c)
        .iter()
        .filter(|o| !o.is_met_by(measured_value(o.metric, m)))
        .map(|o| acv_protocol::metric_name(o.metric).to_owned())
        .collect()
}

/// Samples `cluster` every [`PERIOD`] until `stop`, appending to `out`.
pub async fn sample(
    cluster: Arc<dyn Cluster>,
    t0: Instant,
    out: Arc<Mutex<Vec<Sample>>>,
    stop: CancellationToken,
) {
    let policy = SloPolicy::default();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let m = measure(cluster.as_ref(), SAMPLE_WINDOW_SECS).await;
        let Some(st) = m.status.as_ref() else { continue };
        let mx = m.metrics.as_ref();
        let s = Sample {
            t: t0.elapsed().as_secs_f64(),
            p99_ms: mx.and_then(|x| x.p99_ms),
            cpu_percent: mx.and_then(|x| x.cpu_percent_of_limit),
            memory_percent: mx.and_then(|x| x.memory_percent_of_limit),
            error_percent: mx.and_then(|x| x.error_rate_percent),
            rps: mx.and_then(|x| x.request_rate),
            desired: st.desired_replicas,
            ready: st.ready_replicas,
            revision: st.revision,
            image: st.image.clone(),
            slo_ok: healthy(&m, &policy),
        };
        out.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(s);
    }
}

/// The SLO story from `fault_at` on: broken at some point, and holding since when at the end.
pub fn story(samples: &[Sample], fault_at: f64) -> SloStory {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.t >= fault_at).collect();
    let broken = after.iter().any(|s| !s.slo_ok);
    let mut since = None;
    for s in &after {
        match (s.slo_ok, since) {
            (true, None) => since = Some(s.t),
            (false, _) => since = None,
            _ => {}
        }
    }
    let end = after.last().map_or(fault_at, |s| s.t);
    SloStory {
        broken,
        holding_since: since.map(|t| t - fault_at),
        held_secs: since.map_or(0.0, |t| end - t),
    }
}

/// Replica-count, revision and image changes between consecutive samples.
pub fn actions(samples: &[Sample]) -> Vec<Action> {
    let mut out = Vec::new();
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.desired != b.desired {
            out.push(Action {
                t: b.t,
                what: format!("replicas {} → {}", a.desired, b.desired),
            });
        }
        if a.revision != b.revision {
            let what = if a.image == b.image {
                format!("revision {} (restart or template change)", b.revision)
            } else {
                format!("revision {}: image {}", b.revision, b.image)
            };
            out.push(Action { t: b.t, what });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, ok: bool) -> Sample {
        Sample {
            t,
            p99_ms: Some(10.0),
            cpu_percent: None,
            memory_percent: None,
            error_percent: None,
            rps: None,
            desired: 1,
            ready: 1,
            revision: 1,
            image: "i".into(),
            slo_ok: ok,
        }
    }

    #[test]
    fn the_story_of_a_fault_and_its_repair() {
        let samples = [
            s(1.0, true),
            s(5.0, false),
            s(6.0, false),
            s(7.0, true),
            s(12.0, true),
        ];
        let st = story(&samples, 4.0);
        assert!(st.broken);
        assert_eq!(st.holding_since, Some(3.0));
        assert!((st.held_secs - 5.0).abs() < 1e-9);
        let never = story(&[s(5.0, true), s(6.0, true)], 4.0);
        assert!(!never.broken);
        let still = story(&[s(5.0, false)], 4.0);
        assert_eq!((still.holding_since, still.held_secs), (None, 0.0));
    }
}
