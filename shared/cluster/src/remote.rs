//! [`RemoteCluster`]: the [`Cluster`] of one component of a local runtime running in another process, over the
//! runtime's control API (`acv_runtime::api`). A sidecar process uses it to reach the runtime that
//! `acv-local` runs, the way it would use the Kubernetes API server.

use std::net::SocketAddr;
use std::time::Duration;

use acv_protocol::{ComponentName, ComponentStatus, MetricsSnapshot, Revision};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::{Cluster, ClusterError, Fault, FaultId, FaultStatus, Selector, validate};

const MAX_ANSWER: usize = 16 << 20;

/// A component of a local runtime reached over its control API.
#[derive(Clone)]
pub struct RemoteCluster {
    api: SocketAddr,
    component: ComponentName,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

// === impl RemoteCluster ===

impl RemoteCluster {
    /// A handle on `component` of the runtime whose control API listens on `api` (loopback only).
    pub fn new(api: SocketAddr, component: ComponentName) -> Result<Self, ClusterError> {
        if !api.ip().is_loopback() {
            return Err(ClusterError::invalid(
                "api",
                format!("{api} is not a loopback address"),
            ));
        }
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        Ok(RemoteCluster {
            api,
            component,
            client,
            timeout: Duration::from_secs(30),
        })
    }

    /// Sets the per-call timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Injects a fault into every pod of this component (experiments only; not part of [`Cluster`]).
    pub async fn inject(&self, fault: Fault, duration: Option<Duration>) -> Result<FaultId, ClusterError> {
        Ok(self.inject_selected(fault, Selector::ALL, duration).await?.id)
    }

    /// Injects a fault into the pods `selector` picks among those that exist now; the answer names them.
    pub async fn inject_selected(
        &self,
        fault: Fault,
        selector: Selector,
        duration: Option<Duration>,
    ) -> Result<FaultStatus, ClusterError> {
        let encode =
            |v: Result<Value, serde_json::Error>| v.map_err(|e| ClusterError::Backend(e.to_string()));
        let mut body = encode(serde_json::to_value(fault))?;
        let sel = encode(serde_json::to_value(selector))?;
        if let (Value::Object(map), Value::Object(sel)) = (&mut body, sel) {
            map.extend(sel);
            if let Some(d) = duration {
                map.insert("duration_secs".into(), json!(d.as_secs_f64()));
            }
        }
        self.call(Method::POST, "faults", Some(body)).await
    }

    /// The active faults of this component.
    pub async fn faults(&self) -> Result<Vec<FaultStatus>, ClusterError> {
        self.call(Method::GET, "faults", None).await
    }

    /// Clears every fault of this component; how many were active.
    pub async fn clear_faults(&self) -> Result<usize, ClusterError> {
        let v: Value = self.call(Method::DELETE, "faults", None).await?;
        v["cleared"]
            .as_u64()
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            .ok_or_else(|| ClusterError::Backend("answer without 'cleared'".into()))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        action: &str,
        body: Option<Value>,
    ) -> Result<T, ClusterError> {
        let uri = format!("http://{}/v1/components/{}/{action}", self.api, self.component);
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes))
            .map_err(|e| ClusterError::Backend(e.to_string()))?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| {
                ClusterError::Backend(format!("control API at {} unreachable: {e}", self.api))
            })?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ClusterError::Backend(format!("reading the answer: {e}")))?
                .to_bytes();
            if !status.is_success() {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let kind = ClusterError::known_kind(v["kind"].as_str().unwrap_or("backend"));
                let message = v["message"]
                    .as_str()
                    .map_or_else(|| format!("control API answered {status}"), str::to_owned);
                return Err(ClusterError::Remote { kind, message });
            }
            serde_json::from_slice(&bytes).map_err(|e| ClusterError::Backend(format!("bad answer: {e}")))
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClusterError::Timeout {
                what: format!("{action} of {}", self.component),
                secs: self.timeout.as_secs_f64(),
            })?
    }
}

#[async_trait::async_trait]
impl Cluster for RemoteCluster {
    fn component(&self) -> &ComponentName {
        &self.component
    }

    async fn status(&self) -> Result<ComponentStatus, ClusterError> {
        self.call(Method::GET, "status", None).await
    }

    async fn metrics(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError> {
        let w = validate::window(window_secs)?;
        self.call(Method::GET, &format!("metrics?window_secs={w}"), None)
            .await
    }

    async fn logs(&self, tail: i64) -> Result<Vec<String>, ClusterError> {
        let n = validate::tail(tail)?;
        self.call(Method::GET, &format!("logs?tail={n}"), None).await
    }

    async fn scale(&self, replicas: i64) -> Result<ComponentStatus, ClusterError> {
        self.call(Method::POST, "scale", Some(json!({"replicas": replicas})))
            .await
    }

    async fn restart(&self) -> Result<(), ClusterError> {
        let _: Value = self.call(Method::POST, "restart", None).await?;
        Ok(())
    }

    async fn set_image(&self, image: &str) -> Result<Revision, ClusterError> {
        self.call(Method::POST, "image", Some(json!({"image": image})))
            .await
    }

    async fn set_env(&self, key: &str, value: &str) -> Result<Revision, ClusterError> {
        self.call(Method::POST, "env", Some(json!({"key": key, "value": value})))
            .await
    }

    async fn set_resources(&self, cpu_millis: i64, memory_mib: i64) -> Result<Revision, ClusterError> {
        self.call(
            Method::POST,
            "resources",
            Some(json!({"cpu_millis": cpu_millis, "memory_mib": memory_mib})),
        )
        .await
    }

    async fn rollback(&self) -> Result<Revision, ClusterError> {
        self.call(Method::POST, "rollback", None).await
    }

    async fn history(&self) -> Result<Vec<Revision>, ClusterError> {
        self.call(Method::GET, "history", None).await
    }
}
