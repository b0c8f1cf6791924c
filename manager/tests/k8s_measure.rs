//! The manager measuring through Kubernetes and Prometheus (`acv-manager serve --kube`): `KubeMeasurer` over a
//! mocked API server and a Prometheus stand-in.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use acv_protocol::SloMetric;
use common::c;
use common::kube::{json_response, mocked_client, not_found};
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn catalogue_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "catalogue", "namespace": "acv-shop", "uid": "uid-dep", "resourceVersion": "7",
                      "annotations": { "deployment.kubernetes.io/revision": "3" } },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "name": "catalogue" } },
            "template": {
                "metadata": { "labels": { "name": "catalogue" } },
                "spec": { "containers": [
                    { "name": "acv-sidecar", "image": "acv/sidecar:0.1.0" },
                    { "name": "catalogue", "image": "acv/shop:0.1.0",
                      "resources": { "limits": { "cpu": "500m", "memory": "512Mi" } } },
                ] },
            },
        },
        "status": { "replicas": 2, "readyReplicas": 1, "observedGeneration": 3 },
    })
}

fn catalogue_pod(suffix: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": format!("catalogue-5d4f7b9c8-{suffix}"), "namespace": "acv-shop",
                      "labels": { "name": "catalogue" } },
        "spec": { "containers": [{ "name": "catalogue", "image": "acv/shop:0.1.0" }] },
        "status": {
            "phase": "Running",
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            "containerStatuses": [{ "name": "catalogue", "ready": ready, "restartCount": 1, "image": "acv/shop:0.1.0",
                                    "imageID": "", "started": true, "state": { "running": {} } }],
        },
    })
}

/// A Prometheus stand-in: answers each instant query with a value chosen by what it asks for; records the queries.
async fn prometheus() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    use axum::extract::{Query, State};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app =
        axum::Router::new()
            .route(
                "/api/v1/query",
                axum::routing::get(
                    |State(seen): State<Arc<Mutex<Vec<String>>>>,
                     Query(q): Query<BTreeMap<String, String>>| async move {
                        let query = q.get("query").cloned().unwrap_or_default();
                        let value = if query.contains("container_cpu_usage_seconds_total") {
                            "0.25"
                        } else if query.contains("container_memory_working_set_bytes") {
                            "268435456"
                        } else if query.contains("histogram_quantile(0.99") {
                            "0.18"
                        } else if query.contains("histogram_quantile(0.5") {
                            "0.05"
                        } else if query.contains("status_code=~\"5..\"") {
                            "0.6"
                        } else {
                            "12"
                        };
                        seen.lock().unwrap().push(query);
                        axum::Json(json!({ "status": "success", "data": { "resultType": "vector",
                        "result": [{ "metric": {}, "value": [1_700_000_000.0, value] }] } }))
                    },
                ),
            )
            .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

#[tokio::test]
async fn the_kube_measurer_reads_deployments_and_prometheus_and_leaves_out_what_it_cannot_read() {
    use acv_manager::measure::Measurer;
    let (prom, queries) = prometheus().await;
    let (client, mut handle) = mocked_client();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            assert_eq!(request.method(), Method::GET, "the measurer only reads: {path}");
            seen.lock().unwrap().push(path.clone());
            let (code, body) = match path.as_str() {
                "/apis/apps/v1/namespaces/acv-shop/deployments/catalogue" => {
                    (StatusCode::OK, catalogue_deployment())
                }
                "/api/v1/namespaces/acv-shop/pods" => {
                    assert!(query.contains("labelSelector=name%3Dcatalogue"), "{query}");
                    let items = vec![catalogue_pod("aaaaa", true), catalogue_pod("bbbbb", false)];
                    (
                        StatusCode::OK,
                        json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items }),
                    )
                }
                _ => (StatusCode::NOT_FOUND, not_found(&path)),
            };
            send.send_response(json_response(code, &body));
        }
    });
    let options = acv_kube::KubeOptions {
        prometheus_url: Some(format!("http://{prom}")),
        ..acv_kube::KubeOptions::default()
    };
    let measurer = acv_manager::k8s::KubeMeasurer::new(client, "acv-shop".into(), options, 30.0);
    let measured = measurer.measure(&[c("catalogue"), c("payment")]).await;

    assert_eq!(measured.len(), 1, "payment has no Deployment: not measured");
    let (component, m) = &measured[0];
    assert_eq!(component, &c("catalogue"));
    let metrics = m.metrics.as_ref().expect("metrics from Prometheus");
    assert_eq!(metrics.window_secs, 30.0);
    assert_eq!(metrics.cpu_percent_of_limit, Some(50.0), "0.25 cores of 500m");
    assert_eq!(metrics.memory_percent_of_limit, Some(50.0), "256 MiB of 512Mi");
    assert_eq!(metrics.request_rate, Some(12.0));
    assert_eq!(metrics.p99_ms, Some(180.0));
    assert_eq!(metrics.p50_ms, Some(50.0));
    assert_eq!(metrics.error_rate_percent, Some(5.0), "0.6 of 12 requests/s");
    let status = m.status.as_ref().expect("status from the Deployment");
    assert_eq!((status.desired_replicas, status.ready_replicas), (2, 1));
    assert_eq!(status.replicas.len(), 2);
    assert_eq!(
        status.image, "acv/shop:0.1.0",
        "the component's container, not the sidecar"
    );
    // The window and the component reach the queries; a goal's p99 objective reads the same value.
    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 6, "{queries:?}");
    assert!(queries.iter().all(|q| q.contains("[30s]")), "{queries:?}");
    assert!(
        queries
            .iter()
            .any(|q| q.contains("namespace=\"acv-shop\"") && q.contains("container=\"catalogue\"")),
        "{queries:?}"
    );
    assert_eq!(
        acv_protocol::measured_value(SloMetric::P99LatencyMs, m),
        Some(180.0)
    );
    let requests = requests.lock().unwrap().clone();
    assert!(
        requests.contains(&"/apis/apps/v1/namespaces/acv-shop/deployments/payment".to_owned()),
        "{requests:?}"
    );
}
