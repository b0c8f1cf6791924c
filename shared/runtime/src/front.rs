//! The round-robin HTTP front of one service: it owns the service's stable port and forwards each request to the
//! next ready replica (like a Kubernetes Service). It also applies the added-latency fault, and times every request
//! it answers into a `request_duration_seconds`-shaped histogram by status code, so that a service without a
//! Prometheus `/metrics` of its own still has a request rate, latency and error rate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::prom::{Histogram, HistogramSet};

type Body = BoxBody<Bytes, hyper::Error>;

/// Bucket upper bounds (seconds) of the front's request histogram: the testbed shop's, finer than Prometheus'
/// defaults so that a P99 read from them is close to the true one.
pub const BUCKETS: [f64; 30] = [
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075,
    0.09, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
];

/// Routing state of one front, shared with the supervisor.
#[derive(Debug, Default)]
pub struct FrontState {
    /// Ready replicas and the latency added to requests sent to each (the added-latency fault).
    backends: RwLock<Arc<Vec<(SocketAddr, Duration)>>>,
    next: AtomicUsize,
    forwarded: AtomicU64,
    unavailable: AtomicU64,
    requests: Mutex<BTreeMap<u16, Series>>,
}

/// Requests answered with one status code: non-cumulative bucket counts, count and sum of seconds.
#[derive(Debug, Clone, Copy)]
struct Series {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

// === impl FrontState ===

impl FrontState {
    /// Replaces the set of ready replicas (no added latency).
    pub fn set_backends(&self, addrs: Vec<SocketAddr>) {
        self.set_routes(addrs.into_iter().map(|a| (a, Duration::ZERO)).collect());
    }

    /// Replaces the set of ready replicas, each with the latency added to the requests sent to it (the
    /// added-latency fault on that pod).
    pub fn set_routes(&self, mut routes: Vec<(SocketAddr, Duration)>) {
        routes.sort();
        if let Ok(mut b) = self.backends.write()
            && **b != routes
        {
            *b = Arc::new(routes);
        }
    }

    /// The ready replicas requests go to, with their added latency.
    pub fn backends(&self) -> Arc<Vec<(SocketAddr, Duration)>> {
        self.backends.read().map(|b| Arc::clone(&b)).unwrap_or_default()
    }

    /// `(forwarded, answered 503 for lack of a ready replica)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.forwarded.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
        )
    }

    /// Records one answered request: its status code and the time from its arrival to the answer's head.
    pub fn observe(&self, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let mut map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let s = map.entry(status).or_insert(Series {
            buckets: [0; BUCKETS.len()],
            count: 0,
            sum: 0.0,
        });
        if let Some(i) = BUCKETS.iter().position(|le| secs <= *le) {
            s.buckets[i] += 1;
        }
        s.count += 1;
        s.sum += secs;
    }

    /// Every request answered so far, as a histogram set with one series per `status_code` (cumulative buckets and
    /// a `+Inf` bucket, like a scraped `request_duration_seconds`).
    pub fn requests(&self) -> HistogramSet {
        let map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut set = HistogramSet::default();
        for (status, s) in map.iter() {
            let mut cumulative = 0;
            #[allow(clippy::cast_precision_loss)]
            let mut buckets: Vec<(f64, f64)> = BUCKETS
                .iter()
                .zip(s.buckets)
                .map(|(le, n)| {
                    cumulative += n;
                    (*le, cumulative as f64)
                })
                .collect();
            #[allow(clippy::cast_precision_loss)]
            let count = s.count as f64;
            buckets.push((f64::INFINITY, count));
            set.series.insert(
                vec![("status_code".to_owned(), status.to_string())],
                Histogram {
                    buckets,
                    sum: s.sum,
                    count,
                },
            );
        }
        set
    }

    fn pick(&self) -> Option<(SocketAddr, Duration)> {
        let list = self.backends();
        if list.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
        list.get(i).copied()
    }
}

/// Serves the front on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: Arc<FrontState>, shutdown: CancellationToken) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            // Accept errors (EMFILE, …) are transient; back off briefly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "Cannot set TCP_NODELAY.");
        }
        let state = Arc::clone(&state);
        let client = client.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| forward(req, Arc::clone(&state), client.clone()));
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = conn => {}
            }
        });
    }
}

/// Largest request body the front buffers (it buffers so a request can go to another replica if the first one
/// refuses the connection, e.g. because it just died).
const MAX_REQUEST_BODY: usize = 8 << 20;
/// Replicas tried per request when connections are refused.
const MAX_ATTEMPTS: usize = 3;

/// Answers one request and records it in the front's histogram.
async fn forward(
    req: Request<Incoming>,
    state: Arc<FrontState>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Body>, hyper::Error> {
    let start = Instant::now();
    let resp = answer(req, &state, client).await;
    state.observe(resp.status().as_u16(), start.elapsed());
    Ok(resp)
}

async fn answer(
    req: Request<Incoming>,
    state: &FrontState,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
    else {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large or broken\n",
        );
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let attempts = state.backends().len().clamp(1, MAX_ATTEMPTS);
    for _ in 0..attempts {
        let Some((addr, delay)) = state.pick() else {
            state.unavailable.fetch_add(1, Ordering::Relaxed);
            return plain(StatusCode::SERVICE_UNAVAILABLE, "no ready replica\n");
        };
        if delay > Duration::ZERO {
            tokio::time::sleep(delay).await;
        }
        let mut out = Request::new(Full::new(body.clone()));
        let Ok(uri) = format!("http://{addr}{path}").parse() else {
            return plain(StatusCode::BAD_REQUEST, "bad request target\n");
        };
        *out.uri_mut() = uri;
        *out.method_mut() = parts.method.clone();
        *out.headers_mut() = parts.headers.clone();
        state.forwarded.fetch_add(1, Ordering::Relaxed);
        match client.request(out).await {
            Ok(resp) => return resp.map(BodyExt::boxed),
            // Nothing reached the replica: safe to try the next one.
            Err(e) if e.is_connect() => {
                tracing::debug!(%addr, error = %e, "Replica refused the connection; trying the next one.");
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "Replica did not answer.");
                return plain(StatusCode::BAD_GATEWAY, "replica did not answer\n");
            }
        }
    }
    plain(StatusCode::BAD_GATEWAY, "no replica accepted the connection\n")
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|n| match n {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::stats;

    #[test]
    fn histogram_by_status_with_cumulative_buckets() {
        let front = FrontState::default();
        for ms in 1..=100 {
            front.observe(200, Duration::from_millis(ms));
        }
        front.observe(503, Duration::from_micros(100));
        front.observe(200, Duration::from_secs(20)); // past the last bound: only in +Inf
        let set = front.requests();
        assert_eq!(set.series.len(), 2);
        let ok = &set.series[&vec![("status_code".to_owned(), "200".to_owned())]];
        assert_eq!(ok.count, 101.0);
        assert_eq!(ok.buckets.len(), BUCKETS.len() + 1);
        assert_eq!(ok.buckets.last(), Some(&(f64::INFINITY, 101.0)));
        // 10 of the 1..=100 ms requests are at most 10 ms.
        assert_eq!(ok.buckets.iter().find(|(le, _)| *le == 0.01), Some(&(0.01, 10.0)));
        assert!(ok.buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");

        // Between two snapshots only the requests in between count, and 5xx are errors.
        let before = front.requests();
        for _ in 0..9 {
            front.observe(200, Duration::from_millis(30));
        }
        front.observe(502, Duration::from_millis(30));
        let w = stats(&front.requests().delta(Some(&before)), 2.0);
        assert_eq!(w.requests, 10.0);
        assert_eq!(w.request_rate, Some(5.0));
        assert_eq!(w.error_rate_percent, Some(10.0));
        let p50 = w.p50_ms.unwrap();
        assert!((25.0..=30.0).contains(&p50), "{p50}");
    }
}
