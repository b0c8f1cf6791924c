//! Sidecar injection: a mutating admission webhook as a pure function from an `AdmissionReview` (JSON bytes) to
//! the review to answer, with a JSON patch that adds the acv sidecar to a pod. [`server`] serves it over rustls.
//!
//! Who is injected: the `MutatingWebhookConfiguration` (`manifests/base/webhook.yaml`) sends pods of namespaces
//! labelled `acv.dev/inject=enabled`, and pods labelled so themselves; here a pod is still skipped when it opts
//! out (label `acv.dev/inject=disabled` or annotation `acv.dev/inject: "false"`), already has the sidecar, or has no
//! component name (annotation `acv.dev/component`, else label `app.kubernetes.io/name`, `name` or `app`).
//!
//! The answer is always `allowed`: a pod this webhook cannot read is admitted unchanged with a warning, so a bug or
//! a malformed review never blocks a deployment (and `failurePolicy: Ignore` covers a webhook that is down).
//!
//! What the patch adds:
//! - the `acv-sidecar` container (image, env `ACV_SIDECAR_COMPONENT`, `ACV_SIDECAR_KUBE=true`, the namespace from
//!   the downward API, the configured bus/Prometheus env; non-root, read-only root, no privilege escalation);
//! - `serviceAccountName: <component>-acv` when the pod uses the namespace's `default` account (the account whose
//!   Role allows only its own Deployment, see `manifests/shop/`);
//! - when the pod does not mount a token itself (`automountServiceAccountToken: false`), a projected token volume
//!   mounted only into the sidecar, so the application container gets no API credentials;
//! - an `emptyDir` for the sandbox's compiled-code cache, and the annotation `acv.dev/injected`.

pub mod server;

use std::collections::BTreeMap;

use acv_protocol::ComponentName;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation, jsonptr::PointerBuf};
use k8s_openapi::api::core::v1::Pod;
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use serde_json::{Value, json};

/// Label (namespace or pod) and annotation (pod) that opt in or out.
pub const INJECT_KEY: &str = "acv.dev/inject";
/// Value of [`INJECT_KEY`] that opts in (label).
pub const INJECT_ENABLED: &str = "enabled";
/// Value of the [`INJECT_KEY`] label that opts a pod out in an opted-in namespace.
pub const INJECT_DISABLED: &str = "disabled";
/// Pod annotation naming the component (the Deployment the sidecar maintains).
pub const COMPONENT_ANNOTATION: &str = "acv.dev/component";
/// Annotation the patch sets: the sidecar image injected.
pub const INJECTED_ANNOTATION: &str = "acv.dev/injected";
/// Name of the injected container.
pub const SIDECAR_CONTAINER: &str = "acv-sidecar";
/// Suffix of the sidecar's ServiceAccount: `<component>-acv`.
pub const SERVICE_ACCOUNT_SUFFIX: &str = "-acv";
/// Where the sidecar's token is mounted (kube-rs's in-cluster config reads it there).
pub const TOKEN_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Where the sandbox's compiled-code cache lives in the sidecar container.
pub const CACHE_MOUNT: &str = "/var/cache/acv";
/// The webhook's path.
pub const MUTATE_PATH: &str = "/mutate";

const TOKEN_VOLUME: &str = "acv-sidecar-token";
const CACHE_VOLUME: &str = "acv-sandbox-cache";

/// What the injected sidecar looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectorConfig {
    /// Sidecar image, e.g. `acv/sidecar:0.1.0`.
    pub image: String,
    /// `imagePullPolicy` (none: the cluster's default).
    pub image_pull_policy: Option<String>,
    /// Extra env of the sidecar container (bus, Prometheus URL, planner...), in order.
    pub env: Vec<(String, String)>,
    /// CPU limit and request of the sidecar.
    pub cpu: String,
    /// Memory limit and request of the sidecar.
    pub memory: String,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        Self {
            image: "acv/sidecar:0.1.0".into(),
            image_pull_policy: None,
            env: Vec::new(),
            cpu: "200m".into(),
            memory: "256Mi".into(),
        }
    }
}

/// What the webhook decided for one review (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The sidecar was added for this component.
    Injected(ComponentName),
    /// Admitted unchanged, with the reason.
    Skipped(String),
    /// The review could not be read; admitted with a warning.
    Malformed(String),
}

/// Answers one `AdmissionReview` (the request body as the API server sends it). Never fails and never denies:
/// unreadable input is admitted unchanged with a warning.
pub fn review(body: &[u8], config: &InjectorConfig) -> (AdmissionReview<DynamicObject>, Decision) {
    let parsed: Result<AdmissionReview<Pod>, _> = serde_json::from_slice(body);
    let request: AdmissionRequest<Pod> = match parsed
        .map_err(|e| e.to_string())
        .and_then(|r| r.try_into().map_err(|_| "the review has no request".to_owned()))
    {
        Ok(r) => r,
        Err(why) => return malformed(body, why),
    };
    let response = AdmissionResponse::from(&request);
    let (response, decision) = match decide(&request, config) {
        Ok((component, patch)) => match response.clone().with_patch(patch) {
            Ok(r) => (r, Decision::Injected(component)),
            Err(e) => {
                let why = format!("acv: sidecar not injected: cannot serialise the patch: {e}");
                (warn(response, &why), Decision::Malformed(why))
            }
        },
        Err(Skip::Quiet(why)) => (response, Decision::Skipped(why)),
        Err(Skip::Warn(why)) => (warn(response, &why), Decision::Skipped(why)),
    };
    (response.into_review(), decision)
}

fn warn(mut response: AdmissionResponse, why: &str) -> AdmissionResponse {
    response
        .warnings
        .get_or_insert_with(Vec::new)
        .push(why.to_owned());
    response
}

/// An unreadable review: allowed, with the request's uid when it can be found, and a warning.
fn malformed(body: &[u8], why: String) -> (AdmissionReview<DynamicObject>, Decision) {
    let uid = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/request/uid")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let warning = format!("acv: sidecar not injected: unreadable admission review: {why}");
    let mut response = AdmissionResponse::invalid(&warning);
    response.allowed = true;
    response.uid = uid;
    response.result = Default::default();
    (
        warn(response, &warning).into_review(),
        Decision::Malformed(warning),
    )
}

enum Skip {
    /// Nothing to say (not a create, opted out, already injected).
    Quiet(String),
    /// The pod opted in but cannot be injected: tell the person deploying it.
    Warn(String),
}

fn decide(request: &AdmissionRequest<Pod>, config: &InjectorConfig) -> Result<(ComponentName, Patch), Skip> {
    if request.operation != Operation::Create {
        return Err(Skip::Quiet(format!(
            "operation {:?} is not a create",
            request.operation
        )));
    }
    if request.kind.kind != "Pod" || request.sub_resource.is_some() {
        return Err(Skip::Quiet(format!("{} is not a pod", request.kind.kind)));
    }
    let pod = request
        .object
        .as_ref()
        .ok_or_else(|| Skip::Warn("acv: sidecar not injected: the review carries no pod".into()))?;
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    if labels.get(INJECT_KEY).map(String::as_str) == Some(INJECT_DISABLED)
        || annotations.get(INJECT_KEY).map(String::as_str) == Some("false")
    {
        return Err(Skip::Quiet("the pod opted out".into()));
    }
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Skip::Warn("acv: sidecar not injected: the pod has no spec".into()))?;
    if spec.containers.iter().any(|c| c.name == SIDECAR_CONTAINER)
        || spec
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == SIDECAR_CONTAINER)
    {
        return Err(Skip::Quiet("the sidecar is already there".into()));
    }
    let component = component_of(&labels, &annotations)?;
    Ok((component.clone(), patch(pod, &component, config)))
}

/// The component a pod belongs to: annotation `acv.dev/component`, else label `app.kubernetes.io/name`, `name` or
/// `app`.
fn component_of(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Result<ComponentName, Skip> {
    let (key, value) = annotations
        .get(COMPONENT_ANNOTATION)
        .map(|v| (COMPONENT_ANNOTATION, v))
        .or_else(|| {
            ["app.kubernetes.io/name", "name", "app"]
                .into_iter()
                .find_map(|k| labels.get(k).map(|v| (k, v)))
        })
        .ok_or_else(|| {
            Skip::Warn(format!(
                "acv: sidecar not injected: no component name (set the annotation {COMPONENT_ANNOTATION} or the label app.kubernetes.io/name)"
            ))
        })?;
    ComponentName::new(value.clone())
        .map_err(|e| Skip::Warn(format!("acv: sidecar not injected: {key}: {e}")))
}

fn pointer(parts: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(parts.iter().copied())
}

fn add(parts: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(parts),
        value,
    })
}

/// The JSON patch adding the sidecar to `pod`.
fn patch(pod: &Pod, component: &ComponentName, config: &InjectorConfig) -> Patch {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut ops = Vec::new();
    // Only the sidecar gets a token when the pod itself mounts none.
    let token_only_for_sidecar = spec.automount_service_account_token == Some(false);
    let mut volumes = vec![json!({ "name": CACHE_VOLUME, "emptyDir": { "sizeLimit": "256Mi" } })];
    if token_only_for_sidecar {
        volumes.push(token_volume());
    }
    if spec.volumes.as_ref().is_none_or(Vec::is_empty) {
        ops.push(add(&["spec", "volumes"], Value::Array(volumes)));
    } else {
        ops.extend(volumes.into_iter().map(|v| add(&["spec", "volumes", "-"], v)));
    }
    ops.push(add(
        &["spec", "containers", "-"],
        sidecar_container(component, config, token_only_for_sidecar),
    ));
    let account = format!("{component}{SERVICE_ACCOUNT_SUFFIX}");
    match spec.service_account_name.as_deref() {
        None | Some("") => ops.push(add(&["spec", "serviceAccountName"], json!(account))),
        Some("default") => ops.push(PatchOperation::Replace(ReplaceOperation {
            path: pointer(&["spec", "serviceAccountName"]),
            value: json!(account),
        })),
        Some(_) => {} // the pod names its account (the shop's manifests name `<component>-acv`)
    }
    if spec.service_account.as_deref() == Some("default") {
        // The deprecated alias must agree with serviceAccountName.
        ops.push(PatchOperation::Replace(ReplaceOperation {
            path: pointer(&["spec", "serviceAccount"]),
            value: json!(account),
        }));
    }
    if pod.metadata.annotations.is_none() {
        ops.push(add(
            &["metadata", "annotations"],
            json!({ INJECTED_ANNOTATION: config.image }),
        ));
    } else {
        ops.push(add(
            &["metadata", "annotations", INJECTED_ANNOTATION],
            json!(config.image),
        ));
    }
    Patch(ops)
}

fn sidecar_container(component: &ComponentName, config: &InjectorConfig, mount_token: bool) -> Value {
    let mut env = vec![
        json!({ "name": "ACV_SIDECAR_COMPONENT", "value": component.as_str() }),
        json!({ "name": "ACV_SIDECAR_KUBE", "value": "true" }),
        json!({ "name": "ACV_KUBE_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } }),
        json!({ "name": "ACV_SIDECAR_ADMIN_ADDR", "value": "0.0.0.0:9991" }),
        json!({ "name": "ACV_SANDBOX_CACHE_DIR", "value": CACHE_MOUNT }),
    ];
    env.extend(config.env.iter().map(|(k, v)| json!({ "name": k, "value": v })));
    let mut mounts = vec![json!({ "name": CACHE_VOLUME, "mountPath": CACHE_MOUNT })];
    if mount_token {
        mounts.push(json!({ "name": TOKEN_VOLUME, "mountPath": TOKEN_MOUNT, "readOnly": true }));
    }
    let mut container = json!({
        "name": SIDECAR_CONTAINER,
        "image": config.image,
        "env": env,
        "ports": [{ "name": "acv-admin", "containerPort": 9991, "protocol": "TCP" }],
        "resources": {
            "limits": { "cpu": config.cpu, "memory": config.memory },
            "requests": { "cpu": config.cpu, "memory": config.memory },
        },
        "readinessProbe": { "httpGet": { "path": "/ready", "port": "acv-admin" }, "periodSeconds": 10 },
        "livenessProbe": { "httpGet": { "path": "/live", "port": "acv-admin" }, "periodSeconds": 20 },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": { "drop": ["ALL"] },
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "volumeMounts": mounts,
    });
    if let Some(policy) = &config.image_pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    container
}

/// What the ServiceAccount admission plugin would mount, but for the sidecar only.
fn token_volume() -> Value {
    json!({
        "name": TOKEN_VOLUME,
        "projected": { "sources": [
            { "serviceAccountToken": { "path": "token", "expirationSeconds": 3607 } },
            { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
            { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "fieldPath": "metadata.namespace" } }] } },
        ] },
    })
}

#[cfg(test)]
mod tests;
