//! The sidecar-injection webhook served by `acv_manager::k8s::spawn_with` over HTTPS, with a certificate from the
//! repo's own PKI (`acv_pki`, what `acv-certs --server-name` writes), answering AdmissionReview fixtures to a
//! client that trusts only that CA and dials the Service's name.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use acv_manager::k8s::spawn_with;
use common::kube::{flags, manager};
use serde_json::{Value, json};

/// The name the API server dials (the Service in manifests/base/webhook.yaml, as in the cert-manager Certificate).
const WEBHOOK_HOST: &str = "acv-manager.acv-system.svc";

fn review(uid: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "acv-shop",
            "operation": "CREATE",
            "userInfo": { "username": "system:serviceaccount:kube-system:replicaset-controller" },
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": { "generateName": "carts-5d4f7b9c8-", "namespace": "acv-shop", "labels": labels,
                              "annotations": annotations },
                "spec": {
                    "containers": [{ "name": "carts", "image": "acv/shop:0.1.0" }],
                    "serviceAccountName": "default",
                },
            },
            "dryRun": false,
        }
    })
}

#[tokio::test]
async fn the_webhook_answers_admission_reviews_over_https_with_a_certificate_from_the_pki() {
    let m = manager().await;
    // The CA and the webhook's serving certificate, as `acv-certs --server-name` writes them.
    let dir = common::temp_dir();
    let ca = acv_pki::DevCa::generate("acv test CA", Duration::from_secs(3600)).unwrap();
    let validity = acv_pki::Validity::from_now(Duration::from_secs(3600));
    ca.issue_server(
        &[WEBHOOK_HOST, "acv-manager.acv-system.svc.cluster.local"],
        validity,
    )
    .unwrap()
    .write_tls(&dir)
    .unwrap();
    let args = flags(&[
        "--webhook-addr",
        "127.0.0.1:0",
        "--webhook-tls-dir",
        dir.to_str().unwrap(),
        "--inject-image",
        "acv/sidecar:test",
        "--inject-env",
        "ACV_BUS=nats,ACV_NATS_URL=nats://nats.acv-system:4222",
    ])
    .unwrap();
    let started = spawn_with(args, m.engine.clone(), None, m.shutdown.clone())
        .await
        .expect("the webhook starts");
    let addr = started.webhook_addr.expect("the webhook's address");

    // A client that trusts only the test CA and dials the Service's name (resolved to the test's address).
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .resolve(WEBHOOK_HOST, addr)
        .build()
        .unwrap();
    let url = format!("https://{WEBHOOK_HOST}:{}/mutate", addr.port());
    let post = |body: Vec<u8>| {
        let (client, url) = (trusting.clone(), url.clone());
        async move {
            let res = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("HTTPS to the webhook");
            assert_eq!(res.status(), reqwest::StatusCode::OK);
            let review: Value = res.json().await.unwrap();
            assert_eq!(review["kind"], "AdmissionReview");
            assert_eq!(review["response"]["allowed"], true, "never denies: {review}");
            review["response"].clone()
        }
    };
    let health = trusting
        .get(format!("https://{WEBHOOK_HOST}:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");

    // Opted in (the pod's label): patched, with the sidecar configured by the flags.
    let opted_in = review(
        "uid-in",
        json!({ "name": "carts", "acv.dev/inject": "enabled" }),
        json!({}),
    );
    let response = post(serde_json::to_vec(&opted_in).unwrap()).await;
    assert_eq!(response["uid"], "uid-in");
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut pod = opted_in["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).unwrap();
    let containers = pod["spec"]["containers"].as_array().unwrap();
    let sidecar = containers
        .iter()
        .find(|c| c["name"] == "acv-sidecar")
        .expect("the sidecar container");
    assert_eq!(sidecar["image"], "acv/sidecar:test");
    let env: BTreeMap<&str, &str> = sidecar["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?, e["value"].as_str()?)))
        .collect();
    assert_eq!(env.get("ACV_SIDECAR_COMPONENT"), Some(&"carts"));
    assert_eq!(env.get("ACV_BUS"), Some(&"nats"));
    assert_eq!(env.get("ACV_NATS_URL"), Some(&"nats://nats.acv-system:4222"));
    assert_eq!(pod["spec"]["serviceAccountName"], "carts-acv");
    assert_eq!(
        containers[0]["name"], "carts",
        "the application container is untouched"
    );

    // Opted out (annotation): admitted unchanged.
    let opted_out = review(
        "uid-out",
        json!({ "name": "carts" }),
        json!({ "acv.dev/inject": "false" }),
    );
    let response = post(serde_json::to_vec(&opted_out).unwrap()).await;
    assert_eq!(response["uid"], "uid-out");
    assert!(response.get("patch").is_none(), "{response}");

    // Malformed: allowed, with a warning (and the uid, when it can be read).
    for (body, uid) in [
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"uid-bad","object":7}}"#.to_vec(), "uid-bad"),
        (b"not json at all".to_vec(), ""),
    ] {
        let response = post(body).await;
        assert_eq!(response["uid"], uid, "{response}");
        assert!(response.get("patch").is_none(), "{response}");
        let warnings = response["warnings"].as_array().expect("a warning");
        assert!(
            warnings[0].as_str().unwrap().contains("sidecar not injected"),
            "{warnings:?}"
        );
    }

    // A client that does not trust the CA gets no answer: the TLS is real.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .resolve(WEBHOOK_HOST, addr)
        .build()
        .unwrap();
    let err = untrusting
        .post(&url)
        .body(serde_json::to_vec(&opted_in).unwrap())
        .send()
        .await
        .expect_err("an untrusted certificate is refused");
    assert!(err.is_connect(), "{err:?}");
    // Nor does one dialling a name the certificate does not carry.
    let wrong_name = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap())
        .resolve("elsewhere.acv-system.svc", addr)
        .build()
        .unwrap();
    assert!(
        wrong_name
            .get(format!(
                "https://elsewhere.acv-system.svc:{}/healthz",
                addr.port()
            ))
            .send()
            .await
            .is_err()
    );

    m.shutdown.cancel();
    for task in started.tasks {
        task.await.unwrap().unwrap();
    }
    m.engine_task.await.unwrap().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn the_webhook_does_not_start_without_its_tls_files() {
    let m = manager().await;
    let dir = common::temp_dir();
    let err = spawn_with(
        flags(&[
            "--webhook-addr",
            "127.0.0.1:0",
            "--webhook-tls-dir",
            dir.to_str().unwrap(),
        ])
        .unwrap(),
        m.engine.clone(),
        None,
        m.shutdown.clone(),
    )
    .await
    .expect_err("no TLS files");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("tls.crt") && msg.contains(dir.to_str().unwrap()),
        "{msg}"
    );
    m.shutdown.cancel();
    m.engine_task.await.unwrap().unwrap();
}
