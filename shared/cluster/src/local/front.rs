//! The round-robin HTTP front of one service: it owns the service's stable port and forwards each request to the
//! next ready replica (like a Kubernetes Service). It also applies the added-latency fault.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

type Body = BoxBody<Bytes, hyper::Error>;

/// Routing state of one front, shared with the supervisor.
#[derive(Debug, Default)]
pub struct FrontState {
    backends: RwLock<Arc<Vec<SocketAddr>>>,
    next: AtomicUsize,
    extra_latency_ms: AtomicU64,
    forwarded: AtomicU64,
    unavailable: AtomicU64,
}

// === impl FrontState ===

impl FrontState {
    /// Replaces the set of ready replicas.
    pub fn set_backends(&self, mut addrs: Vec<SocketAddr>) {
        addrs.sort();
        if let Ok(mut b) = self.backends.write()
            && **b != addrs
        {
            *b = Arc::new(addrs);
        }
    }

    /// The ready replicas requests go to.
    pub fn backends(&self) -> Arc<Vec<SocketAddr>> {
        self.backends.read().map(|b| Arc::clone(&b)).unwrap_or_default()
    }

    /// Sets the latency added to every request (the added-latency fault).
    pub fn set_extra_latency(&self, d: Duration) {
        self.extra_latency_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// `(forwarded, answered 503 for lack of a ready replica)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.forwarded.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
        )
    }

    fn pick(&self) -> Option<SocketAddr> {
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

async fn forward(
    req: Request<Incoming>,
    state: Arc<FrontState>,
    client: Client<HttpConnector, Full<Bytes>>,
) -> Result<Response<Body>, hyper::Error> {
    let extra = state.extra_latency_ms.load(Ordering::Relaxed);
    if extra > 0 {
        tokio::time::sleep(Duration::from_millis(extra)).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, MAX_REQUEST_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
    else {
        return Ok(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large or broken\n",
        ));
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let attempts = state.backends().len().clamp(1, MAX_ATTEMPTS);
    for _ in 0..attempts {
        let Some(addr) = state.pick() else {
            state.unavailable.fetch_add(1, Ordering::Relaxed);
            return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "no ready replica\n"));
        };
        let mut out = Request::new(Full::new(body.clone()));
        let Ok(uri) = format!("http://{addr}{path}").parse() else {
            return Ok(plain(StatusCode::BAD_REQUEST, "bad request target\n"));
        };
        *out.uri_mut() = uri;
        *out.method_mut() = parts.method.clone();
        *out.headers_mut() = parts.headers.clone();
        state.forwarded.fetch_add(1, Ordering::Relaxed);
        match client.request(out).await {
            Ok(resp) => return Ok(resp.map(BodyExt::boxed)),
            // Nothing reached the replica: safe to try the next one.
            Err(e) if e.is_connect() => {
                tracing::debug!(%addr, error = %e, "Replica refused the connection; trying the next one.");
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "Replica did not answer.");
                return Ok(plain(StatusCode::BAD_GATEWAY, "replica did not answer\n"));
            }
        }
    }
    Ok(plain(
        StatusCode::BAD_GATEWAY,
        "no replica accepted the connection\n",
    ))
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
