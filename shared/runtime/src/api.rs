//! The local runtime's control API: JSON over HTTP on loopback, so that processes other than the one running the
//! runtime (sidecars, `acvctl`, scripts) reach it, the way they would reach the Kubernetes API server.
//! [`RemoteCluster`](acv_cluster::RemoteCluster) is its client.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /v1/components` | | `[{"name", "addr"}]` |
//! | `GET /v1/components/{c}/status` | | `ComponentStatus` |
//! | `GET /v1/components/{c}/metrics?window_secs=60` | | `MetricsSnapshot` |
//! | `GET /v1/components/{c}/logs?tail=100` | | `[line]` |
//! | `GET /v1/components/{c}/history` | | `[Revision]` |
//! | `POST /v1/components/{c}/scale` | `{"replicas": 3}` | `ComponentStatus` |
//! | `POST /v1/components/{c}/restart` | | `{}` |
//! | `POST /v1/components/{c}/image` | `{"image": "0.3.4"}` | `Revision` |
//! | `POST /v1/components/{c}/env` | `{"key": "k", "value": "v"}` | `Revision` |
//! | `POST /v1/components/{c}/resources` | `{"cpu_millis": 500, "memory_mib": 256}` | `Revision` |
//! | `POST /v1/components/{c}/rollback` | | `Revision` |
//! | `GET /v1/components/{c}/faults` | | `[FaultStatus]` (active faults) |
//! | `POST /v1/components/{c}/faults` | `Fault` + optional `"mode"`, `"value"` (a `Selector`), `"duration_secs"` | `FaultStatus` (with `"id"` and the selected pods) |
//! | `DELETE /v1/components/{c}/faults` | | `{"cleared": n}` |
//!
//! Errors answer `{"kind": ClusterError::kind, "message": "..."}` with 400 (bad input), 404 (unknown component),
//! 409 (nothing to roll back), 503 (stopped), 504 (timeout) or 500.

use std::convert::Infallible;
use std::sync::Weak;
use std::time::Duration;

use acv_cluster::{Cluster, ClusterError, Fault, Mode, Selector};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::LocalRuntime;

const MAX_BODY: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    replicas: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageBody {
    image: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvBody {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesBody {
    cpu_millis: i64,
    memory_mib: i64,
}

#[derive(Deserialize)]
struct FaultBody {
    #[serde(flatten)]
    fault: Fault,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    value: Option<u32>,
    #[serde(default)]
    duration_secs: Option<f64>,
}

/// Serves the control API of `runtime` on `listener` until `shutdown` fires. Bind it to loopback only. Holds the
/// runtime weakly: once it is dropped, calls answer `stopped`.
pub async fn serve(listener: TcpListener, runtime: Weak<LocalRuntime>, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let runtime = Weak::clone(&runtime);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let runtime = runtime.upgrade();
                async move {
                    Ok::<_, Infallible>(match runtime {
                        Some(rt) => handle(req, &rt).await,
                        None => reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            &error_json(&ClusterError::Stopped),
                        ),
                    })
                }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "Control API connection failed."); }
            }
        });
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_status(e: &ClusterError) -> StatusCode {
    match e.kind() {
        "unknown_component" => StatusCode::NOT_FOUND,
        "no_previous_revision" => StatusCode::CONFLICT,
        "stopped" => StatusCode::SERVICE_UNAVAILABLE,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        _ if e.is_bad_input() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn handle(req: Request<Incoming>, rt: &LocalRuntime) -> Response<Full<Bytes>> {
    match route(req, rt).await {
        Ok(v) => reply(StatusCode::OK, &v),
        Err(e) => reply(error_status(&e), &error_json(&e)),
    }
}

fn error_json(e: &ClusterError) -> Value {
    json!({"kind": e.kind(), "message": e.to_string()})
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ClusterError> {
    serde_json::to_value(v).map_err(|e| ClusterError::Backend(format!("encoding the answer: {e}")))
}

async fn body<T: DeserializeOwned>(req: Request<Incoming>) -> Result<T, ClusterError> {
    let bytes = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ClusterError::invalid("body", format!("cannot read the request body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| ClusterError::invalid("body", e.to_string()))
}

fn query<'a>(req: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn number(req: &Request<Incoming>, key: &'static str, default: f64) -> Result<f64, ClusterError> {
    match query(req, key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| ClusterError::invalid(key, format!("{v:?} is not a number"))),
    }
}

async fn route(req: Request<Incoming>, rt: &LocalRuntime) -> Result<Value, ClusterError> {
    let path = req.uri().path().to_owned();
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (method, seg.as_slice()) {
        (Method::GET, ["v1", "components"]) => {
            let mut out = Vec::new();
            for name in rt.services() {
                out.push(json!({"name": name, "addr": rt.addr(name.as_str())?.to_string()}));
            }
            Ok(Value::Array(out))
        }
        (method, ["v1", "components", name, action]) => {
            let c = rt.cluster(name)?;
            match (method, *action) {
                (Method::GET, "status") => to_json(&c.status().await?),
                (Method::GET, "metrics") => to_json(&c.metrics(number(&req, "window_secs", 60.0)?).await?),
                (Method::GET, "logs") => {
                    #[allow(clippy::cast_possible_truncation)]
                    let tail = number(&req, "tail", 100.0)? as i64;
                    to_json(&c.logs(tail).await?)
                }
                (Method::GET, "history") => to_json(&c.history().await?),
                (Method::POST, "scale") => to_json(&c.scale(body::<ScaleBody>(req).await?.replicas).await?),
                (Method::POST, "restart") => {
                    c.restart().await?;
                    Ok(json!({}))
                }
                (Method::POST, "image") => to_json(&c.set_image(&body::<ImageBody>(req).await?.image).await?),
                (Method::POST, "env") => {
                    let b: EnvBody = body(req).await?;
                    to_json(&c.set_env(&b.key, &b.value).await?)
                }
                (Method::POST, "resources") => {
                    let b: ResourcesBody = body(req).await?;
                    to_json(&c.set_resources(b.cpu_millis, b.memory_mib).await?)
                }
                (Method::POST, "rollback") => to_json(&c.rollback().await?),
                (Method::POST, "faults") => {
                    let b: FaultBody = body(req).await?;
                    let duration = match b.duration_secs {
                        None => None,
                        Some(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => {
                            Some(Duration::from_secs_f64(s))
                        }
                        Some(s) => {
                            return Err(ClusterError::invalid(
                                "duration_secs",
                                format!("{s} is not in (0, 86400]"),
                            ));
                        }
                    };
                    let selector = Selector {
                        mode: b.mode,
                        value: b.value,
                    };
                    to_json(&rt.inject_selected(name, b.fault, selector, duration)?)
                }
                (Method::GET, "faults") => to_json(&rt.faults(name)?),
                (Method::DELETE, "faults") => Ok(json!({"cleared": rt.clear_faults(name)?})),
                (m, a) => Err(ClusterError::invalid("request", format!("no route {m} .../{a}"))),
            }
        }
        (m, _) => Err(ClusterError::invalid("request", format!("no route {m} {path}"))),
    }
}
