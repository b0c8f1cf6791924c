//! The admin HTTP server every acv binary runs.
//!
//! Endpoints:
//! - `GET /live`: 200 while the process serves requests.
//! - `GET /ready`: 200 once the component is ready (connected to the bus, etc.), 503 before.
//! - `GET /metrics`: Prometheus text exposition.
//!
//! Anything else is 404; non-GET methods are 405.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc};

use acv_core::readiness::Readiness;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::TelemetryError;

/// What the admin server reports.
#[derive(Clone)]
pub struct AdminState {
    /// The readiness flag behind `/ready`.
    pub readiness: Readiness,
    /// The recorder behind `/metrics`; `None` serves an empty exposition.
    pub metrics: Option<PrometheusHandle>,
}

/// Binds `addr`; returns the bound address (useful with port 0) and a future that serves until `shutdown`.
pub async fn bind(
    addr: SocketAddr,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, impl Future<Output = ()> + Send), TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    tracing::info!(addr = %local, "Admin server listening.");
    Ok((local, serve(listener, Arc::new(state), shutdown)))
}

async fn serve(listener: TcpListener, state: Arc<AdminState>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "Admin accept failed.");
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req)) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%error, "Admin connection ended with an error.");
            }
        });
    }
}

fn handle(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n".into());
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n".into()),
        "/ready" if state.readiness.is_ready() => text(StatusCode::OK, "ready\n".into()),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        "/metrics" => {
            let body = state
                .metrics
                .as_ref()
                .map(PrometheusHandle::render)
                .unwrap_or_default();
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[tokio::test]
    async fn serves_live_ready_metrics() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            crate::metrics::count(
                crate::metrics::CounterName::BusPublished,
                &[("transport", "memory")],
                3,
            );
        });
        let readiness = Readiness::default();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = AdminState {
            readiness: readiness.clone(),
            metrics: Some(handle),
        };
        let (addr, server) = bind("127.0.0.1:0".parse().unwrap(), state, async {
            rx.await.ok();
        })
        .await
        .unwrap();
        let task = tokio::spawn(server);
        let base = format!("http://{addr}");
        let get = |p: &str| reqwest::get(format!("{base}{p}"));
        assert_eq!(get("/live").await.unwrap().status(), 200);
        assert_eq!(get("/ready").await.unwrap().status(), 503);
        readiness.set(true);
        assert_eq!(get("/ready").await.unwrap().status(), 200);
        let metrics = get("/metrics").await.unwrap().text().await.unwrap();
        assert!(
            metrics.contains("acv_bus_published_total{transport=\"memory\"} 3"),
            "{metrics}"
        );
        assert_eq!(get("/nope").await.unwrap().status(), 404);
        let post = reqwest::Client::new()
            .post(format!("{base}/live"))
            .send()
            .await
            .unwrap();
        assert_eq!(post.status(), 405);
        tx.send(()).unwrap();
        task.await.unwrap();
    }
}
