//! Scenario tests against a mocked API server (tower-test) and a tiny Prometheus on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_protocol::ReplicaState;
use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::fixtures::{self, ApiServerVerifier, NS, query_pairs, testcontext};

const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/sock-shop/deployments/carts";
const PODS: &str = "/api/v1/namespaces/sock-shop/pods";
const REPLICASETS: &str = "/apis/apps/v1/namespaces/sock-shop/replicasets";
const IMAGE: &str = "weaveworksdemos/carts:0.4.8";

/// Runs `scenario` as the API server while `call` runs against the cluster; then checks no request was left over.
async fn run<T, F, S, Fut>(call: F, scenario: S) -> T
where
    F: AsyncFnOnce(&KubeCluster) -> T,
    S: FnOnce(ApiServerVerifier) -> Fut,
    Fut: Future<Output = ApiServerVerifier> + Send + 'static,
{
    let (cluster, verifier) = testcontext(KubeOptions::default());
    let server = tokio::spawn(scenario(verifier));
    let out = tokio::time::timeout(Duration::from_secs(10), call(&cluster))
        .await
        .expect("call timed out");
    let verifier = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("scenario timed out")
        .expect("scenario panicked");
    drop(cluster);
    verifier.done().await;
    out
}

async fn get_deployment(v: &mut ApiServerVerifier, body: serde_json::Value) {
    let seen = v.answer(Method::GET, DEPLOYMENT, StatusCode::OK, body).await;
    assert_eq!(seen.query, "");
}

async fn list_pods(v: &mut ApiServerVerifier, pods: Vec<serde_json::Value>) {
    let seen = v
        .answer(Method::GET, PODS, StatusCode::OK, fixtures::list("PodList", pods))
        .await;
    assert_eq!(
        query_pairs(&seen.query),
        [("labelSelector".to_owned(), "name=carts".to_owned())]
    );
}

fn field_manager(query: &str) -> bool {
    query_pairs(query).contains(&("fieldManager".to_owned(), "acv-sidecar".to_owned()))
}

#[tokio::test]
async fn status_reports_replicas_image_env_limits_and_crash_loops() {
    let status = run(
        async |c: &KubeCluster| c.status().await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(3, IMAGE, 2, 1)).await;
            list_pods(
                &mut v,
                vec![
                    fixtures::pod("carts-7d4b9c-bbbbb", "crash", 5),
                    fixtures::pod("carts-7d4b9c-aaaaa", "ready", 0),
                ],
            )
            .await;
            v
        },
    )
    .await
    .unwrap();
    assert_eq!(status.component.as_str(), "carts");
    assert_eq!((status.desired_replicas, status.ready_replicas), (2, 1));
    assert_eq!(status.revision, 3);
    assert_eq!(status.image, IMAGE);
    assert_eq!(status.env.get("ZIPKIN").map(String::as_str), Some("zipkin"));
    assert_eq!((status.limits.cpu_millis, status.limits.memory_mib), (500, 512));
    let replicas: Vec<_> = status
        .replicas
        .iter()
        .map(|r| (r.name.as_str(), r.state, r.restarts))
        .collect();
    assert_eq!(
        replicas,
        [
            ("carts-7d4b9c-aaaaa", ReplicaState::Ready, 0),
            ("carts-7d4b9c-bbbbb", ReplicaState::CrashLoopBackOff, 5)
        ]
    );
}

#[tokio::test]
async fn scale_patches_the_scale_subresource() {
    let status = run(
        async |c: &KubeCluster| c.scale(3).await,
        |mut v: ApiServerVerifier| async move {
            let scale = json!({
                "apiVersion": "autoscaling/v1", "kind": "Scale",
                "metadata": {"name": "carts", "namespace": NS},
                "spec": {"replicas": 3}, "status": {"replicas": 2}
            });
            let seen = v
                .answer(
                    Method::PATCH,
                    &format!("{DEPLOYMENT}/scale"),
                    StatusCode::OK,
                    scale,
                )
                .await;
            assert_eq!(seen.content_type.as_deref(), Some("application/merge-patch+json"));
            assert_eq!(seen.body, json!({"spec": {"replicas": 3}}));
            assert!(field_manager(&seen.query), "{}", seen.query);
            get_deployment(&mut v, fixtures::deployment(3, IMAGE, 3, 2)).await;
            list_pods(&mut v, vec![fixtures::pod("carts-7d4b9c-aaaaa", "ready", 0)]).await;
            v
        },
    )
    .await
    .unwrap();
    assert_eq!(status.desired_replicas, 3);
}

#[tokio::test]
async fn bad_replica_counts_are_rejected_before_any_request() {
    let (cluster, verifier) = testcontext(KubeOptions {
        max_replicas: 10,
        ..KubeOptions::default()
    });
    for bad in [-1, 11, i64::MAX] {
        let err = cluster.scale(bad).await.unwrap_err();
        assert!(
            matches!(err, ClusterError::InvalidReplicas { requested, max: 10 } if requested == bad),
            "{err:?}"
        );
    }
    // The other inputs are checked the same way as the local runtime.
    assert_eq!(
        cluster.set_image("bad image").await.unwrap_err().kind(),
        "invalid_argument"
    );
    assert_eq!(
        cluster.set_env("1BAD", "x").await.unwrap_err().kind(),
        "invalid_argument"
    );
    assert_eq!(
        cluster.set_resources(0, 100).await.unwrap_err().kind(),
        "invalid_argument"
    );
    assert_eq!(cluster.logs(-5).await.unwrap_err().kind(), "invalid_argument");
    assert_eq!(
        cluster.metrics(f64::NAN).await.unwrap_err().kind(),
        "invalid_argument"
    );
    assert!(cluster.logs(0).await.unwrap().is_empty());
    drop(cluster);
    verifier.done().await;
}

#[tokio::test]
async fn set_image_sends_a_strategic_merge_patch_on_the_named_container() {
    let revision = run(
        async |c: &KubeCluster| c.set_image("weaveworksdemos/carts:0.4.9").await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(3, IMAGE, 2, 2)).await;
            let (seen, send) = v.expect(Method::PATCH, DEPLOYMENT).await;
            assert_eq!(seen.content_type.as_deref(), Some("application/strategic-merge-patch+json"));
            assert!(field_manager(&seen.query), "{}", seen.query);
            assert_eq!(
                seen.body,
                json!({
                    "metadata": {"annotations": {"kubernetes.io/change-cause": "set_image weaveworksdemos/carts:0.4.9"}},
                    "spec": {"template": {"spec": {"containers": [
                        {"name": "carts", "image": "weaveworksdemos/carts:0.4.9"}
                    ]}}}
                })
            );
            send.send_response(fixtures::json_response(
                StatusCode::OK,
                &fixtures::deployment(3, "weaveworksdemos/carts:0.4.9", 2, 2),
            ));
            v
        },
    )
    .await
    .unwrap();
    assert_eq!(revision.revision, 4);
    assert_eq!(revision.image, "weaveworksdemos/carts:0.4.9");
    assert_eq!(revision.cause, "set_image weaveworksdemos/carts:0.4.9");
    assert_eq!(revision.limits.cpu_millis, 500);
}

#[tokio::test]
async fn set_env_and_set_resources_patch_the_container() {
    let revision = run(
        async |c: &KubeCluster| c.set_env("LOGGER_FLAG", "true").await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(3, IMAGE, 2, 2)).await;
            let seen = v
                .answer(
                    Method::PATCH,
                    DEPLOYMENT,
                    StatusCode::OK,
                    fixtures::deployment(3, IMAGE, 2, 2),
                )
                .await;
            assert_eq!(
                seen.content_type.as_deref(),
                Some("application/strategic-merge-patch+json")
            );
            assert_eq!(
                seen.body["spec"]["template"]["spec"]["containers"],
                json!([{"name": "carts", "env": [{"name": "LOGGER_FLAG", "value": "true"}]}])
            );
            v
        },
    )
    .await
    .unwrap();
    // The mocked server answered with an unchanged template: no new revision.
    assert_eq!(revision.revision, 3);

    let revision = run(
        async |c: &KubeCluster| c.set_resources(1000, 150).await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(3, IMAGE, 2, 2)).await;
            let mut after = fixtures::deployment(3, IMAGE, 2, 2);
            after["spec"]["template"]["spec"]["containers"][1]["resources"] =
                json!({"limits": {"cpu": "1", "memory": "150Mi"}, "requests": {"cpu": "100m", "memory": "150Mi"}});
            let seen = v.answer(Method::PATCH, DEPLOYMENT, StatusCode::OK, after).await;
            // The memory request (200Mi) is above the new limit, so it comes down with it.
            assert_eq!(
                seen.body["spec"]["template"]["spec"]["containers"],
                json!([{"name": "carts", "resources": {
                    "limits": {"cpu": "1", "memory": "150Mi"}, "requests": {"memory": "150Mi"}
                }}])
            );
            v
        },
    )
    .await
    .unwrap();
    assert_eq!(revision.revision, 4);
    assert_eq!(
        (revision.limits.cpu_millis, revision.limits.memory_mib),
        (1000, 150)
    );
    assert_eq!(revision.cause, "set_resources cpu=1000m memory=150Mi");
}

#[tokio::test]
async fn restart_sets_the_restarted_at_annotation() {
    run(
        async |c: &KubeCluster| c.restart().await,
        |mut v: ApiServerVerifier| async move {
            let seen = v
                .answer(
                    Method::PATCH,
                    DEPLOYMENT,
                    StatusCode::OK,
                    fixtures::deployment(3, IMAGE, 2, 2),
                )
                .await;
            assert_eq!(
                seen.content_type.as_deref(),
                Some("application/strategic-merge-patch+json")
            );
            let at =
                seen.body["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                    .as_str()
                    .expect("restartedAt annotation");
            let ts: Timestamp = at.parse().expect("RFC 3339 timestamp");
            assert!(ts.as_second() > 1_700_000_000, "{at}");
            assert!(
                at.ends_with('Z') && !at.contains('.'),
                "whole seconds like kubectl: {at}"
            );
            assert_eq!(
                seen.body["metadata"]["annotations"]["kubernetes.io/change-cause"],
                "restart"
            );
            v
        },
    )
    .await
    .unwrap();
}

fn replica_sets() -> serde_json::Value {
    fixtures::list(
        "ReplicaSetList",
        vec![
            fixtures::replica_set(
                "ccc",
                3,
                "carts:0.4.8",
                "2026-01-03T00:00:00Z",
                Some("set_image carts:0.4.8"),
            ),
            fixtures::replica_set("aaa", 1, "carts:0.4.6", "2026-01-01T00:00:00Z", None),
            fixtures::replica_set(
                "bbb",
                2,
                "carts:0.4.7",
                "2026-01-02T00:00:00Z",
                Some("set_image carts:0.4.7"),
            ),
        ],
    )
}

async fn list_replica_sets(v: &mut ApiServerVerifier, body: serde_json::Value) {
    let seen = v.answer(Method::GET, REPLICASETS, StatusCode::OK, body).await;
    assert_eq!(
        query_pairs(&seen.query),
        [("labelSelector".to_owned(), "name=carts".to_owned())]
    );
}

#[tokio::test]
async fn history_lists_replica_sets_by_revision() {
    let history = run(
        async |c: &KubeCluster| c.history().await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(3, "carts:0.4.8", 2, 2)).await;
            list_replica_sets(&mut v, replica_sets()).await;
            v
        },
    )
    .await
    .unwrap();
    let got: Vec<_> = history
        .iter()
        .map(|r| (r.revision, r.image.as_str(), r.cause.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "carts:0.4.6", "rollout"),
            (2, "carts:0.4.7", "set_image carts:0.4.7"),
            (3, "carts:0.4.8", "set_image carts:0.4.8")
        ]
    );
    assert!(
        history
            .windows(2)
            .all(|w| w[0].created_at_ms < w[1].created_at_ms)
    );
}

#[tokio::test]
async fn rollback_reapplies_the_previous_template() {
    let revision = run(
        async |c: &KubeCluster| c.rollback().await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(3, "carts:0.4.8", 2, 2)).await;
            list_replica_sets(&mut v, replica_sets()).await;
            let (seen, send) = v.expect(Method::PATCH, DEPLOYMENT).await;
            assert_eq!(seen.content_type.as_deref(), Some("application/json-patch+json"));
            assert!(field_manager(&seen.query), "{}", seen.query);
            let ops = seen.body.as_array().expect("a JSON patch is an array");
            assert_eq!(ops[0]["op"], "replace");
            assert_eq!(ops[0]["path"], "/spec/template");
            let template = &ops[0]["value"];
            assert_eq!(template["spec"]["containers"][1]["image"], "carts:0.4.7");
            assert_eq!(
                template["metadata"]["labels"],
                json!({"name": "carts"}),
                "pod-template-hash dropped"
            );
            assert_eq!(
                ops[1]["path"],
                "/metadata/annotations/kubernetes.io~1change-cause"
            );
            assert_eq!(ops[1]["value"], "rollback to revision 2");
            let mut after = fixtures::deployment(3, "carts:0.4.7", 2, 2);
            after["spec"]["template"]["spec"]["containers"][1]["env"] =
                json!([{"name": "JAVA_OPTS", "value": "-Xms64m"}]);
            send.send_response(fixtures::json_response(StatusCode::OK, &after));
            v
        },
    )
    .await
    .unwrap();
    assert_eq!(revision.revision, 4);
    assert_eq!(revision.image, "carts:0.4.7");
    assert_eq!(revision.cause, "rollback to revision 2");
    assert_eq!(revision.env.len(), 1);
}

#[tokio::test]
async fn rollback_without_a_previous_revision_is_typed() {
    let err = run(
        async |c: &KubeCluster| c.rollback().await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(1, "carts:0.4.6", 2, 2)).await;
            let only = fixtures::replica_set("aaa", 1, "carts:0.4.6", "2026-01-01T00:00:00Z", None);
            list_replica_sets(&mut v, fixtures::list("ReplicaSetList", vec![only])).await;
            v
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClusterError::NoPreviousRevision { current: 1 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_deployment_is_an_unknown_component() {
    let err = run(
        async |c: &KubeCluster| c.status().await,
        |mut v: ApiServerVerifier| async move {
            let body = fixtures::status_failure(404, "NotFound", "deployments.apps \"carts\" not found");
            v.answer(Method::GET, DEPLOYMENT, StatusCode::NOT_FOUND, body)
                .await;
            v
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "unknown_component");
    assert!(
        matches!(&err, ClusterError::UnknownComponent(m) if m.contains("sock-shop")),
        "{err}"
    );
    assert!(err.is_bad_input());
}

#[tokio::test]
async fn forbidden_patch_is_a_permission_error() {
    let err = run(
        async |c: &KubeCluster| c.set_image("carts:0.4.9").await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(3, IMAGE, 2, 2)).await;
            let body = fixtures::status_failure(
                403,
                "Forbidden",
                "deployments.apps \"carts\" is forbidden: User \"system:serviceaccount:sock-shop:carts-acv\" cannot patch resource \"deployments\"",
            );
            v.answer(Method::PATCH, DEPLOYMENT, StatusCode::FORBIDDEN, body).await;
            v
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), "permission_denied");
    let msg = err.to_string();
    assert!(
        msg.contains("permission denied to patch deployments/carts"),
        "{msg}"
    );
    assert!(msg.contains("cannot patch resource"), "{msg}");
    assert!(!err.is_bad_input());
}

#[tokio::test]
async fn logs_are_merged_oldest_first_and_prefixed() {
    let lines = run(
        async |c: &KubeCluster| c.logs(3).await,
        |mut v: ApiServerVerifier| async move {
            get_deployment(&mut v, fixtures::deployment(3, IMAGE, 2, 2)).await;
            list_pods(
                &mut v,
                vec![
                    fixtures::pod("carts-1-aaaaa", "ready", 0),
                    fixtures::pod("carts-1-bbbbb", "ready", 0),
                ],
            )
            .await;
            // join_all issues both log requests; answer them in whichever order they arrive.
            for _ in 0..2 {
                let (seen, send) = v.expect_any(Method::GET).await;
                let pairs = query_pairs(&seen.query);
                assert!(pairs.contains(&("container".into(), "carts".into())), "{pairs:?}");
                assert!(pairs.contains(&("tailLines".into(), "3".into())), "{pairs:?}");
                assert!(pairs.contains(&("timestamps".into(), "true".into())), "{pairs:?}");
                let text = match seen.path.as_str() {
                    "/api/v1/namespaces/sock-shop/pods/carts-1-aaaaa/log" => {
                        "2026-01-01T00:00:01.000000000Z a1\n2026-01-01T00:00:03.000000000Z a3\n"
                    }
                    "/api/v1/namespaces/sock-shop/pods/carts-1-bbbbb/log" => {
                        "2026-01-01T00:00:02.000000000Z b2\n2026-01-01T00:00:04.000000000Z b4\ncontinued\n"
                    }
                    other => panic!("unexpected path {other}"),
                };
                send.send_response(http::Response::new(kube::client::Body::from(
                    text.as_bytes().to_vec(),
                )));
            }
            v
        },
    )
    .await
    .unwrap();
    assert_eq!(
        lines,
        [
            "[carts-1-aaaaa] a3",
            "[carts-1-bbbbb] b4",
            "[carts-1-bbbbb] continued"
        ]
    );
}

#[test]
fn log_merge_keeps_order_without_timestamps() {
    let a = parse_log_lines("a", "plain one\nplain two\n");
    assert_eq!(a[0].text, "[a] plain one");
    assert_eq!(merge_logs(vec![a], 10), ["[a] plain one", "[a] plain two"]);
    assert!(merge_logs(vec![], 10).is_empty());
}

// --- metrics ---

/// A Prometheus stand-in on 127.0.0.1:0: answers `/api/v1/query` by matching the query text, records queries.
struct FakePrometheus {
    url: String,
    queries: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakePrometheus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_prometheus(answer: fn(&str) -> (u16, serde_json::Value)) -> FakePrometheus {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let queries = Arc::new(Mutex::new(Vec::new()));
    let seen = queries.clone();
    let task = tokio::spawn(async move {
        // Bounded: the test makes a handful of queries.
        for _ in 0..64 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (path, query) = target.split_once('?').unwrap_or((&target, ""));
                let promql = query_pairs(query)
                    .into_iter()
                    .find(|(k, _)| k == "query")
                    .map(|(_, v)| v);
                let (code, body) = match (path, promql) {
                    ("/api/v1/query", Some(q)) => {
                        seen.lock().unwrap().push(q.clone());
                        answer(&q)
                    }
                    _ => (
                        404,
                        json!({"status": "error", "errorType": "not_found", "error": path}),
                    ),
                };
                let body = body.to_string();
                let resp = format!(
                    "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                // The client may already have gone; nothing to do about a failed write here.
                if sock.write_all(resp.as_bytes()).await.is_ok() {
                    sock.shutdown().await.ok();
                }
            });
        }
    });
    FakePrometheus { url, queries, task }
}

fn vector(v: &str) -> (u16, serde_json::Value) {
    (
        200,
        json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {}, "value": [1_767_225_600.0, v]}
        ]}}),
    )
}

fn shop_answers(q: &str) -> (u16, serde_json::Value) {
    if q.contains("container_cpu_usage_seconds_total") {
        vector("0.25") // 250m of a 500m limit
    } else if q.contains("container_memory_working_set_bytes") {
        vector("134217728") // 128 MiB of 512 MiB
    } else if q.starts_with("histogram_quantile(0.5,") {
        vector("0.02")
    } else if q.starts_with("histogram_quantile(0.99,") {
        vector("0.15")
    } else if q.contains("status_code=~") {
        vector("0.5")
    } else if q.contains("_count") {
        vector("10")
    } else {
        (
            400,
            json!({"status": "error", "errorType": "bad_data", "error": "unexpected query"}),
        )
    }
}

async fn metrics_with(
    prom: &FakePrometheus,
    deployment: serde_json::Value,
) -> Result<MetricsSnapshot, ClusterError> {
    metrics_with_options(prom, deployment, KubeOptions::default()).await
}

async fn metrics_with_options(
    prom: &FakePrometheus,
    deployment: serde_json::Value,
    options: KubeOptions,
) -> Result<MetricsSnapshot, ClusterError> {
    let options = KubeOptions {
        prometheus_url: Some(prom.url.clone()),
        ..options
    };
    let (cluster, mut verifier) = testcontext(options);
    let server = tokio::spawn(async move {
        get_deployment(&mut verifier, deployment).await;
        verifier
    });
    let out = tokio::time::timeout(Duration::from_secs(10), cluster.metrics(60.0))
        .await
        .expect("metrics timed out");
    let verifier = server.await.unwrap();
    drop(cluster);
    verifier.done().await;
    out
}

#[tokio::test]
async fn metrics_come_from_promql_against_the_limits() {
    let prom = fake_prometheus(shop_answers).await;
    let m = metrics_with(&prom, fixtures::deployment(3, IMAGE, 2, 2))
        .await
        .unwrap();
    assert_eq!(m.component.as_str(), "carts");
    assert_eq!(m.window_secs, 60.0);
    assert_eq!(m.cpu_percent_of_limit, Some(50.0));
    assert_eq!(m.memory_percent_of_limit, Some(25.0));
    assert_eq!(m.request_rate, Some(10.0));
    assert_eq!(m.p50_ms, Some(20.0));
    assert_eq!(m.p99_ms, Some(150.0));
    assert_eq!(m.error_rate_percent, Some(5.0));
    let queries = prom.queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 6);
    let cpu = queries
        .iter()
        .find(|q| q.contains("container_cpu_usage_seconds_total"))
        .unwrap();
    assert!(
        cpu.contains(r#"namespace="sock-shop""#) && cpu.contains(r#"container="carts""#),
        "{cpu}"
    );
    assert!(
        cpu.contains(r#"pod=~"carts-[a-z0-9]+-[a-z0-9]+""#) && cpu.contains("[60s]"),
        "{cpu}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.contains(r#"request_duration_seconds_bucket{name="carts"}"#))
    );
}

#[tokio::test]
async fn metrics_of_another_histogram_in_milliseconds_by_pod() {
    fn answers(q: &str) -> (u16, serde_json::Value) {
        if q.contains("request_duration_seconds") || q.contains("name=") {
            return (
                400,
                json!({"status": "error", "errorType": "bad_data", "error": "Sock Shop names used"}),
            );
        }
        if q.starts_with("histogram_quantile(0.5,") {
            return vector("20");
        }
        if q.starts_with("histogram_quantile(0.99,") {
            return vector("150");
        }
        shop_answers(q)
    }
    let prom = fake_prometheus(answers).await;
    let options = KubeOptions {
        latency_metric: "http_server_duration_milliseconds".into(),
        status_label: "http_status_code".into(),
        latency_unit: crate::LatencyUnit::Milliseconds,
        request_match: crate::RequestMatch::Pods,
        ..KubeOptions::default()
    };
    let m = metrics_with_options(&prom, fixtures::deployment(3, IMAGE, 2, 2), options)
        .await
        .unwrap();
    assert_eq!((m.p50_ms, m.p99_ms), (Some(20.0), Some(150.0)));
    assert_eq!((m.request_rate, m.error_rate_percent), (Some(10.0), Some(5.0)));
    let queries = prom.queries.lock().unwrap().clone();
    let bucket =
        r#"http_server_duration_milliseconds_bucket{namespace="sock-shop",pod=~"carts-[a-z0-9]+-[a-z0-9]+"}"#;
    assert!(queries.iter().any(|q| q.contains(bucket)), "{queries:?}");
    assert!(
        queries.iter().any(|q| q.contains(r#"http_status_code=~"5..""#)),
        "{queries:?}"
    );
}

#[tokio::test]
async fn metrics_without_data_or_limits_are_none() {
    fn empty(_: &str) -> (u16, serde_json::Value) {
        (
            200,
            json!({"status": "success", "data": {"resultType": "vector", "result": []}}),
        )
    }
    let prom = fake_prometheus(empty).await;
    let mut d = fixtures::deployment(3, IMAGE, 2, 2);
    d["spec"]["template"]["spec"]["containers"][1]["resources"] = json!({});
    let m = metrics_with(&prom, d).await.unwrap();
    assert_eq!(
        (
            m.cpu_percent_of_limit,
            m.memory_percent_of_limit,
            m.request_rate,
            m.p99_ms,
            m.error_rate_percent
        ),
        (None, None, None, None, None)
    );
}

#[tokio::test]
async fn prometheus_errors_are_backend_errors() {
    fn failing(_: &str) -> (u16, serde_json::Value) {
        (
            400,
            json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 5"}),
        )
    }
    let prom = fake_prometheus(failing).await;
    let err = metrics_with(&prom, fixtures::deployment(3, IMAGE, 2, 2))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "backend");
    assert!(
        err.to_string().contains("bad_data: parse error at char 5"),
        "{err}"
    );
}

#[tokio::test]
async fn metrics_without_prometheus_say_so_before_any_request() {
    let (cluster, verifier) = testcontext(KubeOptions::default());
    let err = cluster.metrics(60.0).await.unwrap_err();
    assert_eq!(err.kind(), "backend");
    assert!(
        err.to_string().contains("no Prometheus URL is configured"),
        "{err}"
    );
    assert!(err.to_string().contains(crate::ENV_PROMETHEUS_URL), "{err}");
    drop(cluster);
    verifier.done().await;
}

#[test]
fn snapshot_math() {
    let limits = acv_protocol::ResourceLimits {
        cpu_millis: 1000,
        memory_mib: 1024,
    };
    let m = snapshot(
        "carts".parse().unwrap(),
        30.0,
        limits,
        Measured {
            cpu_cores: Some(0.5),
            memory_bytes: Some(512.0 * 1024.0 * 1024.0),
            rate: Some(0.0),
            ..Measured::default()
        },
    );
    assert_eq!(
        (m.cpu_percent_of_limit, m.memory_percent_of_limit),
        (Some(50.0), Some(50.0))
    );
    assert_eq!(m.error_rate_percent, None, "no requests, no error rate");
}

#[tokio::test]
async fn unreachable_api_server_is_a_backend_error() {
    // A real (TLS-capable) client against a closed loopback port: building it must not panic, and the refused
    // connection must come back as a typed backend error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    crate::install_crypto_provider();
    let config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let cluster = KubeCluster::new(client, NS, "carts".parse().unwrap(), KubeOptions::default()).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), cluster.status())
        .await
        .expect("status timed out");
    let err = err.unwrap_err();
    assert_eq!(err.kind(), "backend");
    assert!(err.to_string().contains("get deployments/carts"), "{err}");
}

#[tokio::test]
async fn from_env_reports_bad_configuration_before_connecting() {
    let env = std::collections::HashMap::from([(crate::ENV_MAX_REPLICAS, "0")]);
    match KubeCluster::from_env("carts".parse().unwrap(), &env).await {
        Err(KubeError::Env(e)) => assert!(e.to_string().contains(crate::ENV_MAX_REPLICAS), "{e}"),
        Err(other) => panic!("expected an env error, got {other}"),
        Ok(_) => panic!("expected an env error, got a cluster"),
    }
}
