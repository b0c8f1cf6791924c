//! Parses a manifest document into its typed object by `kind` and serialises it back: the JSON must be the same,
//! so a misspelt or misplaced field (which serde would otherwise ignore) fails. Kubernetes kinds use k8s-openapi;
//! the Goal uses acv's CRD type; cert-manager and Chaos Mesh kinds use the local types below, which describe only
//! the fields acv's manifests use (`deny_unknown_fields`).
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration,
    apps::v1::{Deployment, StatefulSet},
    batch::v1::Job,
    core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

/// Parses `doc` by kind and checks that it serialises back unchanged.
pub fn check(doc: &Value) -> Result<(), String> {
    let kind = doc["kind"].as_str().ok_or("no kind")?;
    let api = doc["apiVersion"].as_str().ok_or("no apiVersion")?;
    match (api, kind) {
        ("v1", "Namespace") => round_trip::<Namespace>(doc),
        ("v1", "Service") => round_trip::<Service>(doc),
        ("v1", "ServiceAccount") => round_trip::<ServiceAccount>(doc),
        ("v1", "ConfigMap") => round_trip::<ConfigMap>(doc),
        ("v1", "PersistentVolumeClaim") => round_trip::<PersistentVolumeClaim>(doc),
        ("apps/v1", "Deployment") => round_trip::<Deployment>(doc),
        ("apps/v1", "StatefulSet") => round_trip::<StatefulSet>(doc),
        ("batch/v1", "Job") => round_trip::<Job>(doc),
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<Role>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<ClusterRole>(doc),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<RoleBinding>(doc),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => round_trip::<ClusterRoleBinding>(doc),
        ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration") => {
            round_trip::<MutatingWebhookConfiguration>(doc)
        }
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            round_trip::<CustomResourceDefinition>(doc)
        }
        ("acv.dev/v1alpha1", "Goal") => {
            let goal: acv_kube::crd::Goal = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
            goal.to_resource().validate().map_err(|e| e.to_string())?;
            // Numbers: YAML `400` reads back as `400.0`; compare through the type both ways.
            let again: acv_kube::crd::Goal =
                serde_json::from_value(serde_json::to_value(&goal).unwrap()).map_err(|e| e.to_string())?;
            if again.spec != goal.spec || again.metadata != goal.metadata {
                return Err("the Goal does not survive a round trip".into());
            }
            let spec_keys: Vec<_> = doc["spec"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let known = serde_json::to_value(&goal.spec).unwrap();
            for k in spec_keys {
                if known.get(&k).is_none() {
                    return Err(format!("unknown field spec.{k}"));
                }
            }
            Ok(())
        }
        ("cert-manager.io/v1", "Issuer") => round_trip::<Issuer>(doc),
        ("cert-manager.io/v1", "Certificate") => round_trip::<Certificate>(doc),
        ("chaos-mesh.org/v1alpha1", "PodChaos") => round_trip::<PodChaos>(doc),
        ("chaos-mesh.org/v1alpha1", "StressChaos") => round_trip::<StressChaos>(doc),
        _ => Err(format!("no typed check for {api} {kind}")),
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    match first_difference(doc, &back, String::new()) {
        None => Ok(()),
        Some(path) => Err(format!(
            "{path} does not survive parsing (unknown or misplaced field?)"
        )),
    }
}

/// The first path where `a` and `b` differ (numbers compared by value).
fn first_difference(a: &Value, b: &Value, path: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                let p = format!("{path}.{k}");
                match y.get(k) {
                    None => return Some(p),
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, p) {
                            return Some(d);
                        }
                    }
                }
            }
            // k8s-openapi writes apiVersion/kind into embedded objects (volumeClaimTemplates) that omit them.
            y.keys()
                .find(|k| !x.contains_key(*k) && !matches!(k.as_str(), "apiVersion" | "kind"))
                .map(|k| format!("{path}.{k}"))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(path);
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (v, w))| first_difference(v, w, format!("{path}[{i}]")))
        }
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then_some(path),
        _ => (a != b).then_some(path),
    }
}

// cert-manager.io/v1 (the fields acv uses).

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Issuer {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: IssuerSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    self_signed: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca: Option<IssuerCa>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerCa {
    secret_name: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Certificate {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: CertificateSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CertificateSpec {
    secret_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renew_before: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key: Option<PrivateKey>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    usages: Vec<String>,
    issuer_ref: IssuerRef,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrivateKey {
    algorithm: String,
    size: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssuerRef {
    kind: String,
    name: String,
}

// chaos-mesh.org/v1alpha1 (the fields acv uses).

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodChaos {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: PodChaosSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodChaosSpec {
    action: PodChaosAction,
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
    selector: ChaosSelector,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PodChaosAction {
    PodFailure,
    PodKill,
    ContainerKill,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    One,
    All,
    Fixed,
    FixedPercent,
    RandomMaxPercent,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ChaosSelector {
    namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    label_selectors: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StressChaos {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: StressChaosSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct StressChaosSpec {
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    duration: Option<String>,
    selector: ChaosSelector,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    container_names: Vec<String>,
    stressors: Stressors,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Stressors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu: Option<CpuStressor>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CpuStressor {
    workers: u32,
    load: u32,
}
