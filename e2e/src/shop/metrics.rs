//! The `request_duration_seconds` histogram of a shop service, labelled `name`, `route` and `status_code` like
//! Sock Shop, rendered as Prometheus text. Buckets are finer than the Prometheus defaults so P99 read from them is
//! close to the true P99.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Bucket upper bounds in seconds.
pub const BUCKETS: [f64; 30] = [
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075,
    0.09, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Series {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The histogram of one service.
pub struct RequestMetrics {
    name: String,
    series: Mutex<BTreeMap<(&'static str, u16), Series>>,
}

impl RequestMetrics {
    /// A histogram for service `name`.
    pub fn new(name: &str) -> Self {
        RequestMetrics {
            name: name.to_owned(),
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one request.
    pub fn observe(&self, route: &'static str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = map.entry((route, status)).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
        s.count += 1;
        s.sum += secs;
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let map = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::from(
            "# HELP request_duration_seconds Time (in seconds) spent serving HTTP requests.\n\
             # TYPE request_duration_seconds histogram\n",
        );
        for ((route, status), s) in map.iter() {
            let labels = format!(
                "name=\"{}\",route=\"{route}\",status_code=\"{status}\"",
                self.name
            );
            for (i, le) in BUCKETS.iter().enumerate() {
                writeln!(
                    out,
                    "request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    s.buckets[i]
                )
                .ok();
            }
            writeln!(
                out,
                "request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            )
            .ok();
            writeln!(out, "request_duration_seconds_sum{{{labels}}} {}", s.sum).ok();
            writeln!(out, "request_duration_seconds_count{{{labels}}} {}", s.count).ok();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_buckets() {
        let m = RequestMetrics::new("catalogue");
        m.observe("/catalogue", 200, Duration::from_millis(3));
        m.observe("/catalogue", 200, Duration::from_millis(30));
        m.observe("/catalogue", 500, Duration::from_secs(20));
        let text = m.render();
        assert!(text.contains(
            "request_duration_seconds_bucket{name=\"catalogue\",route=\"/catalogue\",status_code=\"200\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("status_code=\"200\",le=\"0.03\"} 2"));
        assert!(text.contains(
            "request_duration_seconds_count{name=\"catalogue\",route=\"/catalogue\",status_code=\"500\"} 1"
        ));
        assert!(text.contains("status_code=\"500\",le=\"10\"} 0"));
    }
}
