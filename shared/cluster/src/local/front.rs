//! The round-robin HTTP front of one service: it owns the service's stable port and forwards each request to the
//! next ready replica (like a Kubernetes Service). It also applies the added-latency fault.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
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
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
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

async fn forward(
    mut req: Request<Incoming>,
    state: Arc<FrontState>,
    client: Client<HttpConnector, Incoming>,
) -> Result<Response<Body>, hyper::Error> {
    let extra = state.extra_latency_ms.load(Ordering::Relaxed);
    if extra > 0 {
        tokio::time::sleep(Duration::from_millis(extra)).await;
    }
    let Some(addr) = state.pick() else {
        state.unavailable.fetch_add(1, Ordering::Relaxed);
        return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, "no ready replica\n"));
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{addr}{path}").parse() else {
        return Ok(plain(StatusCode::BAD_REQUEST, "bad request target\n"));
    };
    *req.uri_mut() = uri;
    state.forwarded.fetch_add(1, Ordering::Relaxed);
    match client.request(req).await {
        Ok(resp) => Ok(resp.map(BodyExt::boxed)),
        Err(e) => {
            tracing::debug!(%addr, error = %e, "Replica did not answer.");
            Ok(plain(StatusCode::BAD_GATEWAY, "replica did not answer\n"))
        }
    }
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
