//! Windows over scrapes: from the histogram added during a window, the request rate, P50/P99 and error rate, the
//! same numbers PromQL's `rate` and `histogram_quantile` give. Backend-neutral, so the Kubernetes backend's direct
//! pod scrape can reuse it.

use crate::prom::HistogramSet;

/// The histogram every testbed service (and Sock Shop) exports.
pub const REQUEST_DURATION: &str = "request_duration_seconds";

/// The histogram of calls to other services that the testbed shop's callers export (labels `name`, `callee`,
/// `status_code`), read into [`MetricsSnapshot::calls`](acv_protocol::MetricsSnapshot::calls).
pub const CLIENT_REQUEST_DURATION: &str = "client_request_duration_seconds";

/// What happened in one window.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowStats {
    /// Window length in seconds.
    pub span_secs: f64,
    /// Requests observed in the window.
    pub requests: f64,
    /// Requests per second.
    pub request_rate: Option<f64>,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// Share of answers with a 5xx `status_code` label, percent.
    pub error_rate_percent: Option<f64>,
}

/// Stats of the requests added to a histogram (in seconds) between two scrapes `span_secs` apart. `added` is
/// usually `later.delta(Some(&earlier))`, summed over replicas.
pub fn stats(added: &HistogramSet, span_secs: f64) -> WindowStats {
    let all = added.merged(|_| true);
    let errors = added.merged(|labels| {
        labels
            .iter()
            .any(|(k, v)| k == "status_code" && v.starts_with('5'))
    });
    let requests = all.count;
    let rate = (span_secs > 0.0).then(|| requests / span_secs);
    let has = requests > 0.0;
    WindowStats {
        span_secs,
        requests,
        request_rate: rate,
        p50_ms: if has {
            all.quantile(0.5).map(|s| s * 1000.0)
        } else {
            None
        },
        p99_ms: if has {
            all.quantile(0.99).map(|s| s * 1000.0)
        } else {
            None
        },
        error_rate_percent: has.then(|| 100.0 * errors.count / requests),
    }
}

/// CPU use as a percentage of a per-replica limit: `cpu_secs` of CPU time spent by `replicas` replicas during
/// `span_secs`, against `limit_millis` each. `None` without replicas or time.
pub fn cpu_percent_of_limit(
    cpu_secs: f64,
    span_secs: f64,
    replicas: usize,
    limit_millis: u32,
) -> Option<f64> {
    if replicas == 0 || span_secs <= 0.0 || limit_millis == 0 {
        return None;
    }
    let cores = f64::from(limit_millis) / 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let replicas = replicas as f64;
    Some(100.0 * cpu_secs / span_secs / (cores * replicas))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expo(ok: u64, fail: u64) -> String {
        format!(
            "request_duration_seconds_bucket{{route=\"/\",status_code=\"200\",le=\"0.05\"}} {ok}\n\
             request_duration_seconds_bucket{{route=\"/\",status_code=\"200\",le=\"+Inf\"}} {ok}\n\
             request_duration_seconds_count{{route=\"/\",status_code=\"200\"}} {ok}\n\
             request_duration_seconds_bucket{{route=\"/\",status_code=\"503\",le=\"0.05\"}} {fail}\n\
             request_duration_seconds_bucket{{route=\"/\",status_code=\"503\",le=\"+Inf\"}} {fail}\n\
             request_duration_seconds_count{{route=\"/\",status_code=\"503\"}} {fail}\n"
        )
    }

    #[test]
    fn rate_quantiles_and_errors() {
        let a = HistogramSet::parse(&expo(100, 0), REQUEST_DURATION).unwrap();
        let b = HistogramSet::parse(&expo(190, 10), REQUEST_DURATION).unwrap();
        let s = stats(&b.delta(Some(&a)), 10.0);
        assert_eq!(s.requests, 100.0);
        assert_eq!(s.request_rate, Some(10.0));
        assert_eq!(s.error_rate_percent, Some(10.0));
        let p99 = s.p99_ms.unwrap();
        assert!(p99 > 0.0 && p99 <= 50.0, "{p99}");
    }

    #[test]
    fn empty_window_has_no_latency() {
        let a = HistogramSet::parse(&expo(5, 0), REQUEST_DURATION).unwrap();
        let s = stats(&a.delta(Some(&a)), 10.0);
        assert_eq!(s.request_rate, Some(0.0));
        assert_eq!((s.p99_ms, s.error_rate_percent), (None, None));
    }

    #[test]
    fn cpu_share() {
        assert_eq!(cpu_percent_of_limit(1.0, 10.0, 1, 100), Some(100.0));
        assert_eq!(cpu_percent_of_limit(1.0, 10.0, 2, 500), Some(10.0));
        assert_eq!(cpu_percent_of_limit(1.0, 10.0, 0, 500), None);
    }
}
