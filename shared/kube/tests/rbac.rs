//! Least privilege: every Role and ClusterRole in every rendering of `manifests/` is walked. None may use a
//! wildcard or touch Secrets; the manager may read, and write only `goals/status`; a sidecar's Role (bound to the
//! ServiceAccount a Deployment runs under) may write only that one Deployment (and its scale), by resourceNames, and
//! read pods, their logs, ReplicaSets and pod metrics. A Role bound to nobody we know is an error too.

#[path = "support/kustomize.rs"]
mod kustomize;

use std::path::Path;

use k8s_openapi::api::rbac::v1::PolicyRule;
use kustomize::{Object, render};

const READ: &[&str] = &["get", "list", "watch"];

/// Who a role is for.
#[derive(Debug, Clone, PartialEq)]
enum Holder {
    /// The manager (ServiceAccount acv-manager).
    Manager,
    /// The sidecar of this Deployment.
    Sidecar(String),
}

/// Every violation of least privilege in `objects`.
fn violations(objects: &[Object]) -> Vec<String> {
    let mut out = Vec::new();
    let roles = objects
        .iter()
        .filter(|o| matches!(o.kind(), "Role" | "ClusterRole"));
    for role in roles {
        let id = format!(
            "{} {}/{}",
            role.kind(),
            role.namespace().unwrap_or("-"),
            role.name()
        );
        let rules: Vec<PolicyRule> = match serde_json::from_value(role.value["rules"].clone()) {
            Ok(r) => r,
            Err(e) => {
                out.push(format!("{id}: unreadable rules: {e}"));
                continue;
            }
        };
        if role.value.get("aggregationRule").is_some() {
            out.push(format!("{id}: aggregated roles are not allowed"));
        }
        let holders = holders(objects, role);
        if holders.is_empty() {
            out.push(format!(
                "{id}: bound to no known ServiceAccount (manager or a sidecar's)"
            ));
        }
        for (i, rule) in rules.iter().enumerate() {
            let at = format!("{id} rule {i}");
            let groups = rule.api_groups.clone().unwrap_or_default();
            let resources = rule.resources.clone().unwrap_or_default();
            let names = rule.resource_names.clone().unwrap_or_default();
            if rule.non_resource_urls.is_some() {
                out.push(format!("{at}: non-resource URLs"));
            }
            for v in groups.iter().chain(&resources).chain(&rule.verbs).chain(&names) {
                if v.contains('*') {
                    out.push(format!("{at}: wildcard {v:?}"));
                }
            }
            if resources
                .iter()
                .any(|r| r == "secrets" || r.starts_with("secrets/"))
            {
                out.push(format!("{at}: access to secrets"));
            }
            let writes: Vec<&String> = rule
                .verbs
                .iter()
                .filter(|v| !READ.contains(&v.as_str()))
                .collect();
            for holder in &holders {
                match holder {
                    Holder::Manager => {
                        if !writes.is_empty() && (groups != ["acv.dev"] || resources != ["goals/status"]) {
                            out.push(format!("{at}: the manager may write only goals/status, not {writes:?} on {resources:?}"));
                        }
                    }
                    Holder::Sidecar(own) => {
                        let on_own_deployment = groups == ["apps"]
                            && resources
                                .iter()
                                .all(|r| r == "deployments" || r == "deployments/scale")
                            && names == [own.clone()];
                        if !writes.is_empty() && !on_own_deployment {
                            out.push(format!(
                                "{at}: the {own} sidecar may write only its own Deployment (resourceNames [{own}]), not {writes:?} on {groups:?} {resources:?} {names:?}"
                            ));
                        }
                        let readable = |g: &str, r: &str| match (g, r) {
                            ("apps", "deployments" | "deployments/scale") => names == [own.clone()],
                            ("apps", "replicasets")
                            | ("", "pods" | "pods/log")
                            | ("metrics.k8s.io", "pods") => true,
                            _ => false,
                        };
                        for g in &groups {
                            for r in &resources {
                                if !readable(g, r) {
                                    out.push(format!("{at}: the {own} sidecar may not touch {g:?}/{r}"));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The holders of `role`: through every binding that references it, the ServiceAccounts bound, mapped to the
/// manager or to the Deployments that run under them.
fn holders(objects: &[Object], role: &Object) -> Vec<Holder> {
    let mut out = Vec::new();
    for b in objects
        .iter()
        .filter(|o| matches!(o.kind(), "RoleBinding" | "ClusterRoleBinding"))
    {
        let r = &b.value["roleRef"];
        let same_ns = role.kind() == "ClusterRole" || b.namespace() == role.namespace();
        if r["kind"] != role.kind() || r["name"] != role.name() || !same_ns {
            continue;
        }
        for s in b.value["subjects"].as_array().into_iter().flatten() {
            let (name, ns) = (s["name"].as_str().unwrap_or_default(), s["namespace"].as_str());
            if s["kind"] != "ServiceAccount" {
                continue;
            }
            if name == "acv-manager" && ns == Some("acv-system") {
                out.push(Holder::Manager);
                continue;
            }
            for d in objects
                .iter()
                .filter(|o| o.kind() == "Deployment" && o.namespace() == ns)
            {
                if d.value["spec"]["template"]["spec"]["serviceAccountName"] == name {
                    out.push(Holder::Sidecar(d.name().to_owned()));
                }
            }
        }
    }
    out
}

fn rendered(dir: &str) -> Vec<Object> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../manifests")
        .join(dir);
    render(&path).unwrap_or_else(|e| panic!("{dir}: {e}"))
}

#[test]
fn every_role_is_least_privilege() {
    let mut roles = 0;
    for dir in ["overlays/nats", "overlays/rabbitmq", "shop", "chaos", "examples"] {
        let objects = rendered(dir);
        roles += objects
            .iter()
            .filter(|o| matches!(o.kind(), "Role" | "ClusterRole"))
            .count();
        let v = violations(&objects);
        assert!(v.is_empty(), "{dir}:\n{}", v.join("\n"));
    }
    assert!(
        roles >= 9,
        "expected the manager's and 7 sidecars' roles, walked {roles} in all renderings"
    );
}

#[test]
fn the_check_fails_on_broader_roles() {
    let mut objects = rendered("shop");
    let mut control = rendered("overlays/nats");
    let base = violations(&objects);
    assert!(base.is_empty(), "{base:?}");
    let i = objects
        .iter()
        .position(|o| o.kind() == "Role" && o.name() == "carts-acv")
        .unwrap();
    let original = objects[i].value["rules"].clone();
    let cases = [
        (
            serde_json::json!([{"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["orders"], "verbs": ["patch"]}]),
            "own Deployment",
        ),
        (
            serde_json::json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]}]),
            "own Deployment",
        ),
        (
            serde_json::json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
            "secrets",
        ),
        (
            serde_json::json!([{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}]),
            "wildcard",
        ),
        (
            serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]),
            "own Deployment",
        ),
        (
            serde_json::json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
            "may not touch",
        ),
    ];
    for (rules, expected) in cases {
        objects[i].value["rules"] = rules.clone();
        let v = violations(&objects);
        assert!(v.iter().any(|m| m.contains(expected)), "{rules} → {v:?}");
    }
    objects[i].value["rules"] = original;
    // A role nobody known holds.
    let mut orphan = objects[i].clone();
    orphan.value["metadata"]["name"] = "orphan".into();
    objects.push(orphan);
    assert!(
        violations(&objects)
            .iter()
            .any(|m| m.contains("bound to no known"))
    );
    // The manager writing goals themselves, or Deployments.
    let m = control
        .iter()
        .position(|o| o.kind() == "ClusterRole" && o.name() == "acv-manager")
        .unwrap();
    for rules in [
        serde_json::json!([{"apiGroups": ["acv.dev"], "resources": ["goals"], "verbs": ["patch"]}]),
        serde_json::json!([{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["update"]}]),
    ] {
        control[m].value["rules"] = rules.clone();
        assert!(
            violations(&control)
                .iter()
                .any(|v| v.contains("only goals/status")),
            "{rules}"
        );
    }
}
