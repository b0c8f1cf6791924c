//! SLO time series for the dashboard's plots: the manager samples every registered component through its own
//! [`Measurer`] every [`SeriesConfig::interval`] into a bounded ring per component (oldest samples dropped first),
//! and notes the faults the backend reports appearing and ending as marks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use acv_protocol::{ComponentName, Measurement};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;

/// How often and how much to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesConfig {
    /// Time between two samples of every registered component.
    pub interval: Duration,
    /// Samples kept per component (the oldest go first).
    pub capacity: usize,
}

impl Default for SeriesConfig {
    /// A sample every 3 s, an hour kept.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(3),
            capacity: 1200,
        }
    }
}

/// One measurement of one component, as plotted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// P99 latency over the measurer's window, ms (`None`: no request in the window, or not measured).
    pub p99_ms: Option<f64>,
    /// CPU, % of the per-replica limit.
    pub cpu_percent: Option<f64>,
    /// Memory, % of the per-replica limit.
    pub memory_percent: Option<f64>,
    /// Replicas passing readiness.
    pub ready_replicas: Option<u32>,
    /// Replicas asked for.
    pub desired_replicas: Option<u32>,
    /// Requests per second.
    pub request_rate: Option<f64>,
}

impl Sample {
    /// The plotted figures of a measurement taken at `at_ms`.
    pub fn from_measurement(at_ms: u64, m: &Measurement) -> Self {
        let metrics = m.metrics.as_ref();
        Self {
            at_ms,
            p99_ms: metrics.and_then(|x| x.p99_ms),
            cpu_percent: metrics.and_then(|x| x.cpu_percent_of_limit),
            memory_percent: metrics.and_then(|x| x.memory_percent_of_limit),
            ready_replicas: m.status.as_ref().map(|s| s.ready_replicas),
            desired_replicas: m.status.as_ref().map(|s| s.desired_replicas),
            request_rate: metrics.and_then(|x| x.request_rate),
        }
    }
}

/// What a mark on a plot stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// A fault appeared or ended (as the backend reports it).
    Fault,
    /// Something was found wrong: an episode started on an SLO violation, a goal needed work.
    Detection,
    /// Something was changed: a mutating step, an approved call.
    Action,
    /// A goal changed state.
    Goal,
}

/// A vertical mark on a component's plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// What kind.
    pub kind: MarkKind,
    /// For a person.
    pub text: String,
}

/// A new sample, as pushed to the dashboard's event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleEvent {
    /// The component.
    pub component: ComponentName,
    /// The sample.
    pub sample: Sample,
}

#[derive(Default)]
struct Ring {
    samples: VecDeque<Sample>,
    marks: VecDeque<Mark>,
    /// Faults seen at the last sample: id → description.
    faults: BTreeMap<String, String>,
}

/// Every component's ring.
pub struct Series {
    config: SeriesConfig,
    rings: Mutex<BTreeMap<ComponentName, Ring>>,
    live: broadcast::Sender<SampleEvent>,
}

// === impl Series ===

impl Series {
    /// Empty rings.
    pub fn new(config: SeriesConfig) -> Self {
        let (live, _) = broadcast::channel(256);
        Self {
            config: SeriesConfig {
                capacity: config.capacity.max(1),
                ..config
            },
            rings: Mutex::default(),
            live,
        }
    }

    /// The settings.
    pub fn config(&self) -> SeriesConfig {
        self.config
    }

    /// New samples as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<SampleEvent> {
        self.live.subscribe()
    }

    /// Components with at least one sample or mark.
    pub fn components(&self) -> Vec<ComponentName> {
        self.lock().keys().cloned().collect()
    }

    /// A component's samples and fault marks, oldest first; `None` when it was never sampled.
    pub fn get(&self, component: &ComponentName) -> Option<(Vec<Sample>, Vec<Mark>)> {
        self.lock().get(component).map(|r| {
            (
                r.samples.iter().cloned().collect(),
                r.marks.iter().cloned().collect(),
            )
        })
    }

    /// Records a sample and the faults active at it: a fault id not seen at the previous sample is marked as
    /// appearing, one gone since as ended.
    pub fn record(&self, component: &ComponentName, sample: Sample, faults: Vec<(String, String)>) {
        let at_ms = sample.at_ms;
        {
            let mut rings = self.lock();
            let ring = rings.entry(component.clone()).or_default();
            let now: BTreeMap<String, String> = faults.into_iter().collect();
            let mut marks = Vec::new();
            for (id, what) in &now {
                if !ring.faults.contains_key(id) {
                    marks.push(format!("fault {what} active"));
                }
            }
            for (id, what) in &ring.faults {
                if !now.contains_key(id) {
                    marks.push(format!("fault {what} ended"));
                }
            }
            for text in marks {
                if ring.marks.len() == self.config.capacity {
                    ring.marks.pop_front();
                }
                ring.marks.push_back(Mark {
                    at_ms,
                    kind: MarkKind::Fault,
                    text,
                });
            }
            ring.faults = now;
            if ring.samples.len() == self.config.capacity {
                ring.samples.pop_front();
            }
            ring.samples.push_back(sample.clone());
        }
        // Nobody listening is fine.
        self.live
            .send(SampleEvent {
                component: component.clone(),
                sample,
            })
            .ok();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ComponentName, Ring>> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.rings.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Samples every component the registry knows, every interval, until `stop`.
pub(crate) async fn run_sampler(engine: Arc<Engine>, series: Arc<Series>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(series.config().interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let components = engine.registry().read().await.known();
        if components.is_empty() {
            continue;
        }
        let sampled = tokio::select! {
            () = stop.cancelled() => return,
            s = sample_all(&engine, &components) => s,
        };
        for (c, sample, faults) in sampled {
            series.record(&c, sample, faults);
        }
    }
}

async fn sample_all(
    engine: &Engine,
    components: &[ComponentName],
) -> Vec<(ComponentName, Sample, Vec<(String, String)>)> {
    let measurer = engine.measurer();
    let measured = measurer.measure(components).await;
    let at_ms = acv_core::now_ms();
    let reached: BTreeSet<&ComponentName> = measured.iter().map(|(c, _)| c).collect();
    let mut out = Vec::with_capacity(components.len());
    for c in components {
        if !reached.contains(c) {
            // Not measured: a gap in the plot, not a zero.
            out.push((c.clone(), empty(at_ms), Vec::new()));
        }
    }
    for (c, m) in &measured {
        let faults = measurer
            .faults(c)
            .await
            .into_iter()
            .map(|f| (f.id, f.what))
            .collect();
        out.push((c.clone(), Sample::from_measurement(at_ms, m), faults));
    }
    out
}

fn empty(at_ms: u64) -> Sample {
    Sample {
        at_ms,
        p99_ms: None,
        cpu_percent: None,
        memory_percent: None,
        ready_replicas: None,
        desired_replicas: None,
        request_rate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: &str) -> ComponentName {
        ComponentName::new(n).unwrap()
    }

    fn s(at_ms: u64, cpu: f64) -> Sample {
        Sample {
            cpu_percent: Some(cpu),
            ..empty(at_ms)
        }
    }

    #[test]
    fn ring_is_bounded_and_keeps_the_newest() {
        let series = Series::new(SeriesConfig {
            interval: Duration::from_secs(1),
            capacity: 3,
        });
        for i in 0..5 {
            series.record(&c("catalogue"), s(i, i as f64), Vec::new());
        }
        let (samples, marks) = series.get(&c("catalogue")).unwrap();
        assert_eq!(samples.iter().map(|x| x.at_ms).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(marks.is_empty());
        assert!(series.get(&c("carts")).is_none());
        assert_eq!(series.components(), vec![c("catalogue")]);
    }

    #[test]
    fn faults_are_marked_when_they_appear_and_end() {
        let series = Series::new(SeriesConfig::default());
        let stress = || vec![("7".to_owned(), "cpu_stress".to_owned())];
        series.record(&c("catalogue"), s(1, 10.0), Vec::new());
        series.record(&c("catalogue"), s(2, 80.0), stress());
        series.record(&c("catalogue"), s(3, 80.0), stress());
        series.record(&c("catalogue"), s(4, 10.0), Vec::new());
        let (_, marks) = series.get(&c("catalogue")).unwrap();
        let got: Vec<(u64, &str)> = marks.iter().map(|m| (m.at_ms, m.text.as_str())).collect();
        assert_eq!(
            got,
            vec![(2, "fault cpu_stress active"), (4, "fault cpu_stress ended")]
        );
        assert!(marks.iter().all(|m| m.kind == MarkKind::Fault));
    }

    #[test]
    fn a_measurement_becomes_a_sample() {
        let m = Measurement {
            metrics: None,
            status: None,
        };
        assert_eq!(Sample::from_measurement(5, &m), empty(5));
    }
}
