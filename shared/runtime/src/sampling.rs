//! The sampler of one service: every sample interval it reads CPU time and resident memory of each replica (and
//! its stressors) from `/proc`, scrapes the replicas' request histogram when the service exports one, snapshots the
//! front's own request histogram, and enforces the memory limit. A metrics window is the difference between the
//! newest sample and the one taken `window` before it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use acv_protocol::{CallStats, ComponentName, MetricsSnapshot, ResourceLimits};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use tokio::time::Instant;

use crate::prom::HistogramSet;
use crate::supervisor::{Service, get, lock};
use crate::window::{CLIENT_REQUEST_DURATION, REQUEST_DURATION, cpu_percent_of_limit, stats};

/// One measurement of a service.
pub(crate) struct Sample {
    pub at: Instant,
    /// CPU seconds by pid (replicas and their stressors).
    pub cpu: BTreeMap<u32, f64>,
    /// Resident bytes per running replica (with its stressors).
    pub rss: Vec<u64>,
    /// The request histogram scraped from each replica, by replica pid.
    pub hist: BTreeMap<u32, HistogramSet>,
    /// The histogram of calls to other services scraped from each replica that exports one, by replica pid.
    pub calls: BTreeMap<u32, HistogramSet>,
    /// The front's own request histogram (every request it answered, by status code).
    pub front: HistogramSet,
    pub limits: ResourceLimits,
}

// === impl Sample ===

impl Sample {
    /// The sample of a service before any replica runs.
    pub fn empty(limits: ResourceLimits) -> Self {
        Sample {
            at: Instant::now(),
            cpu: BTreeMap::new(),
            rss: Vec::new(),
            hist: BTreeMap::new(),
            calls: BTreeMap::new(),
            front: HistogramSet::default(),
            limits,
        }
    }
}

// === impl Service ===

impl Service {
    /// Samples every sample interval until shutdown.
    pub async fn run_sampler(self: Arc<Self>) {
        let interval = Duration::from_millis(self.shared.settings.sample_interval_ms);
        loop {
            tokio::select! {
                _ = self.shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            self.sample().await;
        }
    }

    /// Samples CPU, memory and `/metrics` of every replica, enforces the memory limit, stores the sample.
    pub async fn sample(&self) -> Arc<Sample> {
        struct Target {
            pid: u32,
            addr: SocketAddr,
            stressors: Vec<u32>,
        }
        let (targets, limits) = {
            let st = lock(&self.state);
            let targets: Vec<Target> = st
                .slots
                .iter()
                .filter_map(|s| {
                    let p = s.proc.as_ref()?;
                    Some(Target {
                        pid: p.pid,
                        addr: p.addr,
                        stressors: s.stressors.iter().map(|s| s.pid).collect(),
                    })
                })
                .collect();
            (targets, st.current().limits)
        };
        let mut cpu = BTreeMap::new();
        let mut rss = Vec::new();
        let mut over_limit = Vec::new();
        for t in &targets {
            let mut bytes = 0;
            for pid in std::iter::once(t.pid).chain(t.stressors.iter().copied()) {
                if let Some(u) = crate::procfs::usage(pid) {
                    cpu.insert(pid, u.cpu_secs);
                    bytes += u.rss_bytes;
                }
            }
            rss.push(bytes);
            if bytes > u64::from(limits.memory_mib) << 20 {
                over_limit.push((t.pid, bytes));
            }
        }
        let mut hist = BTreeMap::new();
        let mut calls = BTreeMap::new();
        if let Some(path) = &self.spec.metrics_path {
            let timeout = Duration::from_millis(self.shared.settings.probe_timeout_ms);
            let scrapes = targets
                .iter()
                .map(|t| scrape(&self.shared.http, t.addr, path, timeout));
            for (t, h) in targets.iter().zip(futures::future::join_all(scrapes).await) {
                if let Some((h, c)) = h {
                    hist.insert(t.pid, h);
                    if !c.series.is_empty() {
                        calls.insert(t.pid, c);
                    }
                }
            }
        }
        if self.shared.settings.enforce_memory_limit && !over_limit.is_empty() {
            let st = &mut *lock(&self.state);
            for (pid, bytes) in over_limit {
                if let Some(p) = st
                    .slots
                    .iter_mut()
                    .filter_map(|s| s.proc.as_mut())
                    .find(|p| p.pid == pid)
                {
                    p.child.start_kill().ok();
                    self.event(format!(
                        "pid {pid} OOMKilled: {} MiB resident over the {} MiB limit",
                        bytes >> 20,
                        limits.memory_mib
                    ));
                }
            }
        }
        let sample = Arc::new(Sample {
            at: Instant::now(),
            cpu,
            rss,
            hist,
            calls,
            front: self.front.requests(),
            limits,
        });
        let retention = Duration::from_secs(self.shared.settings.retention_secs);
        let mut samples = lock(&self.samples);
        while samples
            .front()
            .is_some_and(|s| sample.at.duration_since(s.at) > retention)
        {
            samples.pop_front();
        }
        samples.push_back(Arc::clone(&sample));
        sample
    }

    /// The newest sample taken at least `window` before `latest`, else the oldest one before it.
    pub fn baseline(&self, latest: &Sample, window: Duration) -> Option<Arc<Sample>> {
        let samples = lock(&self.samples);
        let older = samples.iter().filter(|s| s.at < latest.at);
        let mut best = None;
        for s in older {
            if latest.at.duration_since(s.at) >= window {
                best = Some(Arc::clone(s));
            } else {
                return best.or_else(|| Some(Arc::clone(s)));
            }
        }
        best
    }

    /// CPU, memory, request rate, latency and errors over the last `window` (or as much of it as there is).
    ///
    /// The window covers at least one sample interval (or `window` if shorter): right after start the only earlier
    /// sample may be moments old, and a figure over a few milliseconds says nothing (a replica's own start-up would
    /// read as its load), so this waits for the next sample instead. Requests are counted from the replicas'
    /// `request_duration_seconds` histogram when the service exports one, else from the front's own.
    pub async fn metrics(&self, window: Duration) -> MetricsSnapshot {
        let mut latest = self.sample().await;
        let base = match self.baseline(&latest, window) {
            Some(b) => b,
            None => Arc::clone(&latest),
        };
        let least = Duration::from_millis(self.shared.settings.sample_interval_ms).min(window);
        let covered = latest.at.duration_since(base.at);
        if covered < least {
            tokio::time::sleep(least - covered).await;
            latest = self.sample().await;
        }
        let span = latest.at.duration_since(base.at).as_secs_f64();
        let cpu_secs: f64 = latest
            .cpu
            .iter()
            .map(|(pid, now)| match base.cpu.get(pid) {
                Some(before) if before <= now => now - before,
                // Started within the window: all its CPU time is.
                _ => *now,
            })
            .sum();
        let replicas = latest.rss.len();
        let limits = latest.limits;
        let memory = (replicas > 0).then(|| {
            #[allow(clippy::cast_precision_loss)]
            let avg = latest.rss.iter().sum::<u64>() as f64 / replicas as f64;
            100.0 * avg / (f64::from(limits.memory_mib) * 1024.0 * 1024.0)
        });
        let exports = latest.hist.values().any(|h| !h.series.is_empty());
        let added = if exports {
            let mut added = HistogramSet::default();
            for (pid, h) in &latest.hist {
                added.add(&h.delta(base.hist.get(pid)));
            }
            added
        } else {
            latest.front.delta(Some(&base.front))
        };
        let w = stats(&added, span);
        let mut calls_added = HistogramSet::default();
        for (pid, h) in &latest.calls {
            calls_added.add(&h.delta(base.calls.get(pid)));
        }
        MetricsSnapshot {
            component: self.name.clone(),
            window_secs: span,
            cpu_percent_of_limit: cpu_percent_of_limit(cpu_secs, span, replicas, limits.cpu_millis),
            memory_percent_of_limit: memory,
            request_rate: w.request_rate,
            p50_ms: w.p50_ms,
            p99_ms: w.p99_ms,
            error_rate_percent: w.error_rate_percent,
            calls: call_stats(&calls_added, span),
        }
    }
}

/// Per-callee stats of the calls added to a `client_request_duration_seconds` histogram during a window. A
/// failed call is one with a 5xx `status_code` (the shop records 502 for no answer and 504 for a timeout).
pub(crate) fn call_stats(added: &HistogramSet, span_secs: f64) -> Vec<CallStats> {
    let mut callees: Vec<&str> = added
        .series
        .keys()
        .filter_map(|labels| {
            labels
                .iter()
                .find(|(k, _)| k == "callee")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    callees.sort_unstable();
    callees.dedup();
    callees
        .into_iter()
        .filter_map(|callee| {
            let name = ComponentName::new(callee).ok()?;
            let mut mine = HistogramSet::default();
            for (labels, h) in &added.series {
                if labels.iter().any(|(k, v)| k == "callee" && v == callee) {
                    mine.series.insert(labels.clone(), h.clone());
                }
            }
            let w = stats(&mine, span_secs);
            Some(CallStats {
                callee: name,
                request_rate: w.request_rate,
                p50_ms: w.p50_ms,
                p99_ms: w.p99_ms,
                error_rate_percent: w.error_rate_percent,
            })
        })
        .collect()
}

async fn scrape(
    http: &Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Option<(HistogramSet, HistogramSet)> {
    let (status, body) = get(http, addr, path, timeout).await?;
    if !status.is_success() {
        return None;
    }
    let text = std::str::from_utf8(&body).ok()?;
    let samples = crate::prom::parse(text).ok()?;
    Some((
        HistogramSet::from_samples(&samples, REQUEST_DURATION),
        HistogramSet::from_samples(&samples, CLIENT_REQUEST_DURATION),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_stats_per_callee() {
        let text = "\
client_request_duration_seconds_bucket{name=\"front-end\",callee=\"catalogue\",status_code=\"500\",le=\"0.01\"} 9
client_request_duration_seconds_bucket{name=\"front-end\",callee=\"catalogue\",status_code=\"500\",le=\"+Inf\"} 9
client_request_duration_seconds_count{name=\"front-end\",callee=\"catalogue\",status_code=\"500\"} 9
client_request_duration_seconds_bucket{name=\"front-end\",callee=\"catalogue\",status_code=\"200\",le=\"0.01\"} 1
client_request_duration_seconds_bucket{name=\"front-end\",callee=\"catalogue\",status_code=\"200\",le=\"+Inf\"} 1
client_request_duration_seconds_count{name=\"front-end\",callee=\"catalogue\",status_code=\"200\"} 1
client_request_duration_seconds_bucket{name=\"front-end\",callee=\"user\",status_code=\"200\",le=\"0.4\"} 0
client_request_duration_seconds_bucket{name=\"front-end\",callee=\"user\",status_code=\"200\",le=\"0.5\"} 5
client_request_duration_seconds_bucket{name=\"front-end\",callee=\"user\",status_code=\"200\",le=\"+Inf\"} 5
client_request_duration_seconds_count{name=\"front-end\",callee=\"user\",status_code=\"200\"} 5
client_request_duration_seconds_bucket{name=\"front-end\",callee=\"Not A Name\",status_code=\"200\",le=\"+Inf\"} 5
";
        let set = HistogramSet::parse(text, CLIENT_REQUEST_DURATION).unwrap();
        let calls = call_stats(&set, 10.0);
        assert_eq!(calls.len(), 2, "an invalid component name is skipped: {calls:?}");
        assert_eq!(calls[0].callee.as_str(), "catalogue");
        assert_eq!(calls[0].error_rate_percent, Some(90.0));
        assert_eq!(calls[0].request_rate, Some(1.0));
        assert_eq!(calls[1].callee.as_str(), "user");
        assert!(calls[1].p99_ms.unwrap() > 400.0, "{calls:?}");
        assert_eq!(calls[1].error_rate_percent, Some(0.0));
    }
}
