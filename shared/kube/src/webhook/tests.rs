//! AdmissionReview fixtures: opted-in pod, opted-out pod, already injected pod, pods that cannot be injected, and
//! malformed reviews. Every answer must be `allowed`; patches are applied to the pod and the result read back.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;

fn config() -> InjectorConfig {
    InjectorConfig {
        image: "acv/sidecar:0.1.0".into(),
        image_pull_policy: Some("IfNotPresent".into()),
        env: vec![
            ("ACV_BUS".into(), "nats".into()),
            ("ACV_NATS_URL".into(), "nats://nats.acv-system:4222".into()),
        ],
        ..InjectorConfig::default()
    }
}

/// A pod of the carts Deployment as the API server shows it to a webhook (generateName, no name yet).
fn pod(labels: Value, annotations: Option<Value>, spec_extra: Value) -> Value {
    let mut spec = json!({
        "containers": [{ "name": "carts", "image": "acv/shop:0.1.0", "args": ["carts"] }],
        "serviceAccountName": "default",
        "volumes": [{ "name": "kube-api-access-abcde", "projected": { "sources": [] } }],
    });
    for (k, v) in spec_extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let mut metadata =
        json!({ "generateName": "carts-5d4f7b9c8-", "namespace": "acv-shop", "labels": labels });
    if let Some(a) = annotations {
        metadata["annotations"] = a;
    }
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec })
}

fn review_of(operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": { "group": "", "version": "v1", "kind": "Pod" },
            "resource": { "group": "", "version": "v1", "resource": "pods" },
            "requestKind": { "group": "", "version": "v1", "kind": "Pod" },
            "requestResource": { "group": "", "version": "v1", "resource": "pods" },
            "namespace": "acv-shop",
            "operation": operation,
            "userInfo": { "username": "system:serviceaccount:kube-system:replicaset-controller" },
            "object": object,
            "oldObject": null,
            "dryRun": false,
        }
    })
}

/// Runs the webhook on `review`; returns the response JSON and the decision.
fn run(review: &Value) -> (Value, Decision) {
    let body = serde_json::to_vec(review).unwrap();
    let (answer, decision) = super::review(&body, &config());
    let answer = serde_json::to_value(&answer).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(answer["response"]["allowed"], true, "never denies: {answer}");
    (answer["response"].clone(), decision)
}

/// Applies the response's patch to `object` (kube-rs sends the patch bytes as a JSON array of numbers, which the
/// API server's Go decoder reads into its `[]byte` like a base64 string).
fn patched(response: &Value, object: &Value) -> Value {
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes: Vec<u8> = serde_json::from_value(response["patch"].clone()).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut doc = object.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    doc
}

fn env_of(c: &k8s_openapi::api::core::v1::Container, key: &str) -> Option<String> {
    c.env
        .iter()
        .flatten()
        .find(|e| e.name == key)
        .and_then(|e| e.value.clone())
}

#[test]
fn an_opted_in_pod_gets_the_sidecar_its_account_and_env() {
    let object = pod(
        json!({ "name": "carts", "pod-template-hash": "5d4f7b9c8" }),
        None,
        json!({}),
    );
    let (response, decision) = run(&review_of("CREATE", object.clone()));
    assert_eq!(decision, Decision::Injected("carts".parse().unwrap()));
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    let out: Pod = serde_json::from_value(patched(&response, &object)).unwrap();
    let spec = out.spec.unwrap();
    assert_eq!(spec.containers.len(), 2);
    assert_eq!(spec.containers[0].name, "carts", "the application stays first");
    let sidecar = &spec.containers[1];
    assert_eq!(sidecar.name, SIDECAR_CONTAINER);
    assert_eq!(sidecar.image.as_deref(), Some("acv/sidecar:0.1.0"));
    assert_eq!(sidecar.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(env_of(sidecar, "ACV_SIDECAR_COMPONENT").as_deref(), Some("carts"));
    assert_eq!(env_of(sidecar, "ACV_SIDECAR_KUBE").as_deref(), Some("true"));
    assert_eq!(env_of(sidecar, "ACV_BUS").as_deref(), Some("nats"));
    assert_eq!(
        env_of(sidecar, "ACV_NATS_URL").as_deref(),
        Some("nats://nats.acv-system:4222")
    );
    let sc = sidecar.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(spec.service_account_name.as_deref(), Some("carts-acv"));
    let volumes: Vec<_> = spec.volumes.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(volumes, ["kube-api-access-abcde", "acv-sandbox-cache"]);
    assert_eq!(
        out.metadata
            .annotations
            .unwrap()
            .get(INJECTED_ANNOTATION)
            .map(String::as_str),
        Some("acv/sidecar:0.1.0")
    );
}

#[test]
fn injection_is_idempotent() {
    let object = pod(
        json!({ "app.kubernetes.io/name": "carts" }),
        Some(json!({ "x": "y" })),
        json!({}),
    );
    let (response, _) = run(&review_of("CREATE", object.clone()));
    let once = patched(&response, &object);
    let (again, decision) = run(&review_of("CREATE", once.clone()));
    assert!(
        matches!(decision, Decision::Skipped(ref why) if why.contains("already")),
        "{decision:?}"
    );
    assert!(again.get("patch").is_none(), "no second patch: {again}");
    // The existing annotation is kept next to the new one.
    let annotations = &once["metadata"]["annotations"];
    assert_eq!(annotations["x"], "y");
    assert_eq!(annotations[INJECTED_ANNOTATION], "acv/sidecar:0.1.0");
}

#[test]
fn a_pod_without_a_token_mount_gives_the_token_to_the_sidecar_only() {
    let object = pod(
        json!({ "name": "carts" }),
        Some(json!({ COMPONENT_ANNOTATION: "carts" })),
        json!({ "automountServiceAccountToken": false, "serviceAccountName": "carts-acv", "volumes": [] }),
    );
    let (response, _) = run(&review_of("CREATE", object.clone()));
    let out: Pod = serde_json::from_value(patched(&response, &object)).unwrap();
    let spec = out.spec.unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("carts-acv"), "kept");
    let app = &spec.containers[0];
    assert!(app.volume_mounts.is_none(), "the application gets no token");
    let mounts = spec.containers[1].volume_mounts.clone().unwrap();
    assert!(
        mounts
            .iter()
            .any(|m| m.mount_path == TOKEN_MOUNT && m.read_only == Some(true))
    );
    let token = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "acv-sidecar-token")
        .expect("token volume");
    assert!(
        token.projected.unwrap().sources.unwrap()[0]
            .service_account_token
            .is_some()
    );
}

#[test]
fn an_opted_out_pod_is_admitted_unchanged() {
    for (labels, annotations) in [
        (json!({ "name": "carts", INJECT_KEY: INJECT_DISABLED }), None),
        (json!({ "name": "carts" }), Some(json!({ INJECT_KEY: "false" }))),
    ] {
        let (response, decision) = run(&review_of("CREATE", pod(labels, annotations, json!({}))));
        assert_eq!(decision, Decision::Skipped("the pod opted out".into()));
        assert!(response.get("patch").is_none(), "{response}");
        assert!(response.get("warnings").is_none(), "{response}");
    }
}

#[test]
fn pods_that_cannot_be_injected_are_admitted_with_a_warning() {
    // No component name at all.
    let (response, decision) = run(&review_of(
        "CREATE",
        pod(json!({ "tier": "web" }), None, json!({})),
    ));
    assert!(matches!(decision, Decision::Skipped(_)));
    assert!(response.get("patch").is_none());
    let warning = response["warnings"][0].as_str().unwrap();
    assert!(warning.contains(COMPONENT_ANNOTATION), "{warning}");
    // A component name that is not a DNS label.
    let (response, _) = run(&review_of(
        "CREATE",
        pod(json!({ "app": "Carts_V2" }), None, json!({})),
    ));
    assert!(response.get("patch").is_none());
    assert!(
        response["warnings"][0].as_str().unwrap().contains("app"),
        "{response}"
    );
    // Updates are not touched.
    let (response, decision) = run(&review_of(
        "UPDATE",
        pod(json!({ "name": "carts" }), None, json!({})),
    ));
    assert!(matches!(decision, Decision::Skipped(_)));
    assert!(response.get("patch").is_none());
}

#[test]
fn malformed_reviews_are_allowed_with_a_warning_never_a_panic() {
    let mut no_operation = review_of("CREATE", pod(json!({ "name": "carts" }), None, json!({})));
    no_operation["request"]
        .as_object_mut()
        .unwrap()
        .remove("operation");
    let mut bad_pod = review_of("CREATE", json!({}));
    bad_pod["request"]["object"] = json!({ "spec": { "containers": "not a list" } });
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"".to_vec(), ""),
        (b"{not json".to_vec(), ""),
        (b"[1,2,3]".to_vec(), ""),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "",
        ),
        (
            serde_json::to_vec(&no_operation).unwrap(),
            "705ab4f5-6393-11e8-b7cc-42010a800002",
        ),
        (
            serde_json::to_vec(&bad_pod).unwrap(),
            "705ab4f5-6393-11e8-b7cc-42010a800002",
        ),
        (vec![0xff, 0xfe, 0x00], ""),
    ];
    for (body, uid) in cases {
        let (answer, decision) = super::review(&body, &config());
        let answer = serde_json::to_value(&answer).unwrap();
        let response = &answer["response"];
        assert_eq!(response["allowed"], true, "{answer}");
        assert_eq!(response["uid"], uid, "{answer}");
        assert!(response.get("patch").is_none());
        assert!(matches!(decision, Decision::Malformed(_)), "{decision:?}");
        let warning = response["warnings"][0].as_str().unwrap();
        assert!(warning.starts_with("acv: sidecar not injected"), "{warning}");
    }
}
