//! The peer API server: HTTPS (hyper + rustls) with a required client certificate. The caller's identity comes
//! from its verified certificate; connections without one from the CA never reach the service.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use acv_pki::Identity;
use acv_protocol::{
    PeerAnswer, PeerRequest,
    peer::{ASK_PATH, MAX_PEER_REQUEST_BYTES},
};
use acv_telemetry::metrics::{CounterName, count};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::service::PeerService;

/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of the server, for tests and logs (the same events go to Prometheus metrics).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// TLS handshakes refused (no certificate, other CA, expired, ...).
    pub tls_refused: AtomicU64,
    /// Requests that reached the service.
    pub requests: AtomicU64,
}

/// Binds the peer API on `addr`; returns the bound address, the stats and the server future (ends on `shutdown`).
pub async fn bind(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    service: Arc<PeerService>,
    shutdown: CancellationToken,
) -> std::io::Result<(
    SocketAddr,
    Arc<ServerStats>,
    impl Future<Output = ()> + Send + 'static,
)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let stats = Arc::new(ServerStats::default());
    let acceptor = TlsAcceptor::from(tls);
    let st = stats.clone();
    let fut = async move {
        loop {
            let (tcp, remote) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(error) => {
                        tracing::warn!(%error, "Peer API accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (acceptor, service, stats, shutdown) =
                (acceptor.clone(), service.clone(), st.clone(), shutdown.clone());
            tokio::spawn(async move { connection(tcp, remote, acceptor, service, stats, shutdown).await });
        }
    };
    Ok((local, stats, fut))
}

async fn connection(
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    acceptor: TlsAcceptor,
    service: Arc<PeerService>,
    stats: Arc<ServerStats>,
    shutdown: CancellationToken,
) {
    // Small request/answer exchanges: without this, Nagle's algorithm and delayed ACKs add ~40 ms to some calls.
    tcp.set_nodelay(true).ok();
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return refused_tls(&service, &stats, remote, &error.to_string()),
        Err(_) => return refused_tls(&service, &stats, remote, "handshake timed out"),
    };
    let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => Identity::from_cert_der(cert).map_err(|e| e.to_string()),
        None => Err("no client certificate".to_owned()),
    };
    let identity = Arc::new(identity);
    let svc = hyper::service::service_fn(move |req| {
        let (service, identity, stats) = (service.clone(), identity.clone(), stats.clone());
        async move { Ok::<_, Infallible>(route(req, &service, &identity, &stats).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => if let Err(error) = res { tracing::debug!(%error, %remote, "Peer connection ended."); },
        _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
    }
}

fn refused_tls(service: &PeerService, stats: &ServerStats, remote: SocketAddr, error: &str) {
    stats.tls_refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(target: "acv::audit", side = "server", component = %service.component(), %remote, error,
        outcome = "refused", "Peer connection refused at the TLS handshake.");
    count(
        CounterName::PeerCalls,
        &[("side", "server"), ("outcome", "refused_tls")],
        1,
    );
}

async fn route(
    req: Request<Incoming>,
    service: &Arc<PeerService>,
    identity: &Result<Identity, String>,
    stats: &ServerStats,
) -> Response<Full<Bytes>> {
    if req.method() != Method::POST || req.uri().path() != ASK_PATH {
        let body = serde_json::json!({"error": format!("not found: {} {} (the peer API serves POST {ASK_PATH})",
            req.method(), req.uri().path())});
        return json(StatusCode::NOT_FOUND, body.to_string().into());
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let caller = match identity {
        Ok(c) => c,
        Err(reason) => return reply(service.bad_identity(reason.clone())),
    };
    let bytes = match Limited::new(req.into_body(), MAX_PEER_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return reply(service.bad_request(Some(caller), format!("unreadable body: {e}"))),
    };
    let request: PeerRequest = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => return reply(service.bad_request(Some(caller), e.to_string())),
    };
    // Handled in its own task: a caller that hangs up (or times out) does not cut a peer's action in half; the
    // answer is still recorded under the request id, so a retry gets it.
    let (service, caller) = (Arc::clone(service), caller.clone());
    match tokio::spawn(async move { service.ask(&caller, request).await }).await {
        Ok(answered) => reply(answered),
        Err(error) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({"error": format!("the request handler failed: {error}")})
                .to_string()
                .into(),
        ),
    }
}

fn reply((status, answer): (u16, PeerAnswer)) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, serde_json::to_vec(&answer).unwrap_or_default().into())
}

fn json(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}
