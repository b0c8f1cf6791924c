//! The `request_duration_seconds` histogram of a shop service, labelled `name`, `route` and `status_code` like
//! Sock Shop, and the `client_request_duration_seconds` histogram of the calls it makes to other services, labelled
//! `name`, `callee` and `status_code` (a call that got no answer counts as 502, one that timed out as 504), rendered
//! as Prometheus text. Buckets are finer than the Prometheus defaults so P99 read from them is close to the true
//! P99.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Bucket upper bounds in seconds.
pub const BUCKETS: [f64; 30] = [
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075,
    0.09, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
];

#[derive(Default, Clone)]
struct Series {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Name of the histogram of calls to other services.
pub const CLIENT_REQUEST_DURATION: &str = "client_request_duration_seconds";

/// The histograms of one service.
pub struct RequestMetrics {
    name: String,
    series: Mutex<BTreeMap<(&'static str, u16), Series>>,
    calls: Mutex<BTreeMap<(&'static str, u16), Series>>,
}

impl Series {
    fn observe(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, metric: &str, labels: &str) {
        for (i, le) in BUCKETS.iter().enumerate() {
            writeln!(out, "{metric}_bucket{{{labels},le=\"{le}\"}} {}", self.buckets[i]).ok();
        }
        writeln!(out, "{metric}_bucket{{{labels},le=\"+Inf\"}} {}", self.count).ok();
        writeln!(out, "{metric}_sum{{{labels}}} {}", self.sum).ok();
        writeln!(out, "{metric}_count{{{labels}}} {}", self.count).ok();
    }
}

impl RequestMetrics {
    /// A histogram for service `name`.
    pub fn new(name: &str) -> Self {
        RequestMetrics {
            name: name.to_owned(),
            series: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one request.
    pub fn observe(&self, route: &'static str, status: u16, elapsed: Duration) {
        let mut map = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((route, status)).or_default().observe(elapsed);
    }

    /// Records one call to service `callee` and the status it ended with.
    pub fn observe_call(&self, callee: &'static str, status: u16, elapsed: Duration) {
        let mut map = self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry((callee, status)).or_default().observe(elapsed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP request_duration_seconds Time (in seconds) spent serving HTTP requests.\n\
             # TYPE request_duration_seconds histogram\n",
        );
        let lock = |m: &Mutex<BTreeMap<(&'static str, u16), Series>>| {
            m.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .map(|(k, s)| (*k, s.clone()))
                .collect::<Vec<_>>()
        };
        for ((route, status), s) in lock(&self.series) {
            let labels = format!(
                "name=\"{}\",route=\"{route}\",status_code=\"{status}\"",
                self.name
            );
            s.render(&mut out, "request_duration_seconds", &labels);
        }
        let calls = lock(&self.calls);
        if !calls.is_empty() {
            out.push_str(
                "# HELP client_request_duration_seconds Time (in seconds) spent waiting for calls to other services.\n\
                 # TYPE client_request_duration_seconds histogram\n",
            );
        }
        for ((callee, status), s) in calls {
            let labels = format!(
                "name=\"{}\",callee=\"{callee}\",status_code=\"{status}\"",
                self.name
            );
            s.render(&mut out, CLIENT_REQUEST_DURATION, &labels);
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
        assert!(
            !text.contains(CLIENT_REQUEST_DURATION),
            "no calls, no call histogram"
        );

        m.observe_call("catalogue", 200, Duration::from_millis(4));
        m.observe_call("catalogue", 504, Duration::from_secs(5));
        let text = m.render();
        assert!(text.contains(
            "client_request_duration_seconds_count{name=\"catalogue\",callee=\"catalogue\",status_code=\"504\"} 1"
        ));
        assert!(text.contains("callee=\"catalogue\",status_code=\"200\",le=\"0.005\"} 1"));
    }
}
