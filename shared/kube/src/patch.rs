//! Patch bodies for each mutating call, as pure functions (what `kubectl` would send):
//! - scale: a merge patch on the `scale` subresource;
//! - restart, set_image, set_env, set_resources: strategic merge patches on the Deployment, merging into the named
//!   container (containers and env are merged by `name`), each recording a `kubernetes.io/change-cause`;
//! - rollback: a JSON patch replacing the whole pod template, like `kubectl rollout undo`.

use k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use serde_json::{Value, json};

use crate::model::{CHANGE_CAUSE_ANNOTATION, RESTARTED_AT_ANNOTATION};
use crate::quantity::{format_cpu, format_memory};

/// `{"spec":{"replicas":n}}` for the scale subresource.
pub fn scale(replicas: u32) -> Value {
    json!({ "spec": { "replicas": replicas } })
}

/// Sets the restartedAt pod template annotation to `at` (RFC 3339), which rolls every pod.
pub fn restart(at: &str) -> Value {
    json!({
        "metadata": { "annotations": { CHANGE_CAUSE_ANNOTATION: "restart" } },
        "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT_ANNOTATION: at } } } },
    })
}

/// Sets one container field set (`{"image": ..}`, `{"env": [..]}`, …) on the named container, with a cause.
fn container_patch(container: &str, fields: Value, cause: &str) -> Value {
    let mut c = json!({ "name": container });
    if let (Some(obj), Value::Object(extra)) = (c.as_object_mut(), fields) {
        obj.extend(extra);
    }
    json!({
        "metadata": { "annotations": { CHANGE_CAUSE_ANNOTATION: cause } },
        "spec": { "template": { "spec": { "containers": [c] } } },
    })
}

/// The new image of the named container.
pub fn set_image(container: &str, image: &str) -> Value {
    container_patch(
        container,
        json!({ "image": image }),
        &format!("set_image {image}"),
    )
}

/// One env entry of the named container, merged by name. When the current entry uses `valueFrom`, the patch also
/// deletes it (`null`), since an entry may not have both.
pub fn set_env(current: &Container, key: &str, value: &str) -> Value {
    let had_value_from = current
        .env
        .iter()
        .flatten()
        .any(|e| e.name == key && e.value_from.is_some());
    let entry = if had_value_from {
        json!({ "name": key, "value": value, "valueFrom": null })
    } else {
        json!({ "name": key, "value": value })
    };
    container_patch(
        &current.name,
        json!({ "env": [entry] }),
        &format!("set_env {key}"),
    )
}

/// New CPU and memory limits of the named container. A request above its new limit is lowered to the limit, since
/// the API server refuses requests greater than limits.
pub fn set_resources(
    container: &str,
    cpu_millis: u32,
    memory_mib: u32,
    requests: (Option<u32>, Option<u32>),
) -> Value {
    let mut resources = json!({
        "limits": { "cpu": format_cpu(cpu_millis), "memory": format_memory(memory_mib) },
    });
    let mut lowered = serde_json::Map::new();
    if requests.0.is_some_and(|r| r > cpu_millis) {
        lowered.insert("cpu".into(), json!(format_cpu(cpu_millis)));
    }
    if requests.1.is_some_and(|r| r > memory_mib) {
        lowered.insert("memory".into(), json!(format_memory(memory_mib)));
    }
    if let (false, Some(obj)) = (lowered.is_empty(), resources.as_object_mut()) {
        obj.insert("requests".into(), Value::Object(lowered));
    }
    container_patch(
        container,
        json!({ "resources": resources }),
        &format!("set_resources cpu={cpu_millis}m memory={memory_mib}Mi"),
    )
}

/// A JSON patch that replaces the pod template with `template` and records the cause (`has_annotations`: whether
/// the Deployment already has an annotations map, which decides between adding one key and adding the map).
pub fn rollback(
    template: &PodTemplateSpec,
    to_revision: u64,
    has_annotations: bool,
) -> Result<Value, serde_json::Error> {
    let cause = format!("rollback to revision {to_revision}");
    let annotation_op = if has_annotations {
        // `/` inside a JSON pointer segment is written `~1`.
        json!({ "op": "add", "path": format!("/metadata/annotations/{}", CHANGE_CAUSE_ANNOTATION.replace('~', "~0").replace('/', "~1")), "value": cause })
    } else {
        json!({ "op": "add", "path": "/metadata/annotations", "value": { CHANGE_CAUSE_ANNOTATION: cause } })
    };
    Ok(json!([
        { "op": "replace", "path": "/spec/template", "value": serde_json::to_value(template)? },
        annotation_op,
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(v: Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn bodies() {
        assert_eq!(scale(3), json!({"spec": {"replicas": 3}}));
        assert_eq!(
            set_image("carts", "weaveworksdemos/carts:0.4.8"),
            json!({
                "metadata": {"annotations": {"kubernetes.io/change-cause": "set_image weaveworksdemos/carts:0.4.8"}},
                "spec": {"template": {"spec": {"containers": [{"name": "carts", "image": "weaveworksdemos/carts:0.4.8"}]}}}
            })
        );
        let r = restart("2026-01-01T00:00:00Z");
        assert_eq!(
            r["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn env_replaces_value_from() {
        let c = container(json!({"name": "carts", "env": [
            {"name": "A", "value": "1"},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
        ]}));
        let p = set_env(&c, "A", "2");
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "2"}])
        );
        let p = set_env(&c, "SECRET", "x");
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "SECRET", "value": "x", "valueFrom": null}])
        );
        assert_eq!(
            p["metadata"]["annotations"]["kubernetes.io/change-cause"],
            "set_env SECRET"
        );
    }

    #[test]
    fn resources_lower_requests_above_limits() {
        let p = set_resources("carts", 500, 1024, (Some(100), Some(2048)));
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"memory": "1Gi"}})
        );
        let p = set_resources("carts", 2000, 300, (None, None));
        assert_eq!(
            p["spec"]["template"]["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "2", "memory": "300Mi"}})
        );
    }

    #[test]
    fn rollback_replaces_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"name": "carts"}},
            "spec": {"containers": [{"name": "carts", "image": "carts:1"}]}
        }))
        .unwrap();
        let p = rollback(&t, 2, true).unwrap();
        assert_eq!(p[0]["op"], "replace");
        assert_eq!(p[0]["path"], "/spec/template");
        assert_eq!(p[0]["value"]["spec"]["containers"][0]["image"], "carts:1");
        assert_eq!(p[1]["path"], "/metadata/annotations/kubernetes.io~1change-cause");
        assert_eq!(p[1]["value"], "rollback to revision 2");
        let p = rollback(&t, 2, false).unwrap();
        assert_eq!(p[1]["path"], "/metadata/annotations");
    }
}
