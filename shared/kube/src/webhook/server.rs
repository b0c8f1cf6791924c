//! Serves the injection webhook over HTTPS (rustls): `POST /mutate` answers an `AdmissionReview`, `GET /healthz`
//! answers `ok`. The certificate and key are `tls.crt` and `tls.key` in a directory (a Kubernetes TLS Secret as
//! cert-manager writes it, mounted as a volume).

use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    routing::{get, post},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::{Decision, InjectorConfig, MUTATE_PATH};

/// File name of the certificate chain in the TLS directory.
pub const CERT_FILE: &str = "tls.crt";
/// File name of the private key in the TLS directory.
pub const KEY_FILE: &str = "tls.key";
/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the webhook server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A TLS file is missing or unreadable.
    #[error(
        "webhook TLS: cannot read {path}: {reason} (expected {CERT_FILE} and {KEY_FILE}, e.g. a mounted cert-manager Secret)"
    )]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The files do not make a usable certificate and key.
    #[error("webhook TLS: {0}")]
    Tls(String),
    /// The address cannot be bound.
    #[error("webhook: cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The webhook's routes.
pub fn router(config: Arc<InjectorConfig>) -> Router {
    Router::new()
        .route(MUTATE_PATH, post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(config)
}

async fn mutate(
    State(config): State<Arc<InjectorConfig>>,
    body: Bytes,
) -> Json<kube::core::admission::AdmissionReview<kube::core::DynamicObject>> {
    let (review, decision) = super::review(&body, &config);
    match &decision {
        Decision::Injected(component) => tracing::info!(%component, "Sidecar injected."),
        Decision::Skipped(why) => tracing::debug!(%why, "Pod admitted without a sidecar."),
        Decision::Malformed(why) => tracing::warn!(%why, "Unreadable admission review admitted."),
    }
    Json(review)
}

/// Loads `tls.crt` (chain) and `tls.key` from `dir` into a server configuration (HTTP/1.1; no client
/// certificates: the API server authenticates the webhook, not the other way round).
pub fn load_tls(dir: &Path) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    crate::install_crypto_provider();
    let cert_path = dir.join(CERT_FILE);
    let key_path = dir.join(KEY_FILE);
    let read_err = |path: &Path, reason: String| WebhookError::Read {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| read_err(&cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(read_err(&cert_path, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| read_err(&key_path, e.to_string()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| WebhookError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds `addr` and returns the bound address and the server future (ends on `shutdown`).
pub async fn bind(
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send + 'static), WebhookError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| WebhookError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| WebhookError::Bind { addr, source })?;
    let acceptor = TlsAcceptor::from(tls);
    let fut = async move {
        loop {
            let (tcp, remote) = tokio::select! {
                () = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(error) => {
                        tracing::warn!(%error, "Webhook accept failed.");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => {
                        return tracing::debug!(%error, %remote, "Webhook TLS handshake failed.");
                    }
                    Err(_) => return tracing::debug!(%remote, "Webhook TLS handshake timed out."),
                };
                let service = hyper_util::service::TowerToHyperService::new(router);
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                tokio::pin!(conn);
                tokio::select! {
                    res = conn.as_mut() => if let Err(error) = res {
                        tracing::debug!(%error, %remote, "Webhook connection ended.");
                    },
                    () = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    };
    Ok((local, fut))
}
