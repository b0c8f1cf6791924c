//! Test fixtures: JSON builders for Deployments, ReplicaSets and Pods as the API server returns them, and an
//! [`ApiServerVerifier`] over a `tower_test` mock service that answers expected requests one by one (the
//! controller-rs `fixtures.rs` pattern).

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

use crate::{KubeCluster, KubeOptions};

pub const NS: &str = "sock-shop";
pub const UID: &str = "8d1c6c38-0000-4000-8000-000000000001";

/// A `carts` Deployment at `revision` with `replicas` desired and `ready` ready, with the acv sidecar as a second
/// container (listed first, so that picking by name matters).
pub fn deployment(revision: u64, image: &str, replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "carts",
            "namespace": NS,
            "uid": UID,
            "resourceVersion": "1000",
            "annotations": { "deployment.kubernetes.io/revision": revision.to_string() },
            "labels": { "name": "carts" },
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "name": "carts" } },
            "template": template(image, &[("JAVA_OPTS", "-Xms64m"), ("ZIPKIN", "zipkin")], "500m", "512Mi", None),
        },
        "status": { "replicas": replicas, "readyReplicas": ready, "observedGeneration": 3 },
    })
}

/// A pod template with the acv sidecar first and the `carts` container second.
pub fn template(image: &str, env: &[(&str, &str)], cpu: &str, memory: &str, hash: Option<&str>) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    let mut labels = json!({ "name": "carts" });
    if let Some(h) = hash {
        labels["pod-template-hash"] = json!(h);
    }
    json!({
        "metadata": { "labels": labels },
        "spec": {
            "containers": [
                { "name": "acv-sidecar", "image": "acv/sidecar:0.1.0" },
                {
                    "name": "carts",
                    "image": image,
                    "env": env,
                    "resources": { "limits": { "cpu": cpu, "memory": memory }, "requests": { "cpu": "100m", "memory": "200Mi" } },
                },
            ],
        },
    })
}

/// A ReplicaSet of the `carts` Deployment.
pub fn replica_set(hash: &str, revision: u64, image: &str, created: &str, cause: Option<&str>) -> Value {
    let mut annotations = json!({ "deployment.kubernetes.io/revision": revision.to_string() });
    if let Some(c) = cause {
        annotations["kubernetes.io/change-cause"] = json!(c);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("carts-{hash}"),
            "namespace": NS,
            "creationTimestamp": created,
            "annotations": annotations,
            "labels": { "name": "carts", "pod-template-hash": hash },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": "carts", "uid": UID, "controller": true
            }],
        },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "name": "carts", "pod-template-hash": hash } },
            "template": template(image, &[("JAVA_OPTS", "-Xms64m")], "500m", "512Mi", Some(hash)),
        },
    })
}

/// A pod whose `carts` container is in `state` (`ready`, `crash`, `starting`, `not_ready`, `image_pull`), with the
/// sidecar ready.
pub fn pod(name: &str, state: &str, restarts: i32) -> Value {
    let (phase, ready, carts_state, started) = match state {
        "ready" => (
            "Running",
            true,
            json!({ "running": { "startedAt": "2026-01-01T00:00:00Z" } }),
            true,
        ),
        "crash" => (
            "Running",
            false,
            json!({ "waiting": { "reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container" } }),
            false,
        ),
        "starting" => (
            "Pending",
            false,
            json!({ "waiting": { "reason": "ContainerCreating" } }),
            false,
        ),
        "image_pull" => (
            "Pending",
            false,
            json!({ "waiting": { "reason": "ImagePullBackOff" } }),
            false,
        ),
        _ => (
            "Running",
            false,
            json!({ "running": { "startedAt": "2026-01-01T00:00:00Z" } }),
            true,
        ),
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": NS, "labels": { "name": "carts" } },
        "spec": { "containers": [{ "name": "acv-sidecar" }, { "name": "carts" }] },
        "status": {
            "phase": phase,
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            "containerStatuses": [
                { "name": "acv-sidecar", "image": "acv/sidecar:0.1.0", "imageID": "", "ready": true, "restartCount": 7,
                  "state": { "running": {} } },
                { "name": "carts", "image": "carts", "imageID": "", "ready": ready, "restartCount": restarts,
                  "started": started, "state": carts_state },
            ],
        },
    })
}

/// A list object.
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items })
}

/// A `Status` failure body as the API server sends it.
pub fn status_failure(code: u16, reason: &str, message: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Status", "status": "Failure", "message": message, "reason": reason, "code": code })
}

/// A captured request.
pub struct Seen {
    pub method: http::Method,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Value,
}

/// Answers the requests a [`KubeCluster`] makes to a mocked API server.
pub struct ApiServerVerifier(Handle<Request<Body>, Response<Body>>);

/// A cluster over a mocked API server, plus the verifier that plays the server.
pub fn testcontext(options: KubeOptions) -> (KubeCluster, ApiServerVerifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let cluster = KubeCluster::new(client, NS, "carts".parse().unwrap(), options).unwrap();
    (cluster, ApiServerVerifier(handle))
}

/// A bare client over a mocked API server, plus the verifier that plays the server.
pub fn mock_client() -> (kube::Client, ApiServerVerifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), ApiServerVerifier(handle))
}

// === impl ApiServerVerifier ===

impl ApiServerVerifier {
    /// Waits for the next request, asserts its method and path, and returns it with the responder.
    pub async fn expect(&mut self, method: http::Method, path: &str) -> (Seen, SendResponse<Response<Body>>) {
        let (request, send) = self
            .0
            .next_request()
            .await
            .expect("the client made no further request");
        let seen = seen(request).await;
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request (query {})",
            seen.query
        );
        (seen, send)
    }

    /// Waits for the next request with `method`, whatever its path, and returns it with the responder.
    pub async fn expect_any(&mut self, method: http::Method) -> (Seen, SendResponse<Response<Body>>) {
        let (request, send) = self
            .0
            .next_request()
            .await
            .expect("the client made no further request");
        let seen = seen(request).await;
        assert_eq!(seen.method, method, "unexpected request to {}", seen.path);
        (seen, send)
    }

    /// Expects a request and answers it with `status` and a JSON body.
    pub async fn answer(
        &mut self,
        method: http::Method,
        path: &str,
        status: StatusCode,
        body: Value,
    ) -> Seen {
        let (seen, send) = self.expect(method, path).await;
        send.send_response(json_response(status, &body));
        seen
    }

    /// Asserts that the client sent no further request: call after dropping the cluster, when the handle reports
    /// the end of the request stream (the timeout only guards against a hung test).
    pub async fn done(mut self) {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), self.0.next_request()).await;
        assert!(
            matches!(next, Ok(None)),
            "the client made an unexpected extra request"
        );
    }
}

async fn seen(request: Request<Body>) -> Seen {
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Seen {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned()),
        body,
    }
}

pub fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

/// Parses a query string into decoded pairs.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
