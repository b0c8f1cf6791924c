//! Pure conversions from Kubernetes objects to the acv wire types: the component's container, its env and limits,
//! revisions, replica states and label selectors. No I/O, so every rule here is unit-tested on plain objects.

use std::collections::BTreeMap;

use acv_protocol::{ReplicaState, ReplicaStatus, ResourceLimits, Revision};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::KubeError;
use crate::quantity;

/// The annotation the Deployment controller keeps the revision number in (on Deployments and ReplicaSets).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The annotation recording why a revision was made (copied from the Deployment to its new ReplicaSet).
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The pod template annotation `kubectl rollout restart` sets.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The label the Deployment controller adds to each ReplicaSet's template; dropped on rollback.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The cause recorded for a revision whose ReplicaSet has no change-cause annotation.
pub const UNRECORDED_CAUSE: &str = "rollout";

/// The component's container in a pod template: the one named `preferred`, else the first.
pub fn pick_container<'a>(
    template: &'a PodTemplateSpec,
    preferred: &str,
    deployment: &str,
) -> Result<&'a Container, KubeError> {
    let containers = template
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    containers
        .iter()
        .find(|c| c.name == preferred)
        .or_else(|| containers.first())
        .ok_or_else(|| KubeError::NoContainer(deployment.to_owned()))
}

/// Literal environment variables (`valueFrom` entries are skipped: their values live in Secrets/ConfigMaps).
pub fn env_of(container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .filter(|e| e.value_from.is_none())
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

/// CPU and memory limits; a missing limit reads as 0 ("unlimited").
pub fn limits_of(container: &Container) -> Result<ResourceLimits, KubeError> {
    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let read = |key: &str, field: &'static str, parse: fn(&str) -> Result<u32, quantity::QuantityError>| {
        limits
            .and_then(|l| l.get(key))
            .map(|q| parse(&q.0))
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(|source| KubeError::Quantity {
                field,
                container: container.name.clone(),
                source,
            })
    };
    Ok(ResourceLimits {
        cpu_millis: read("cpu", "limits.cpu", quantity::cpu_millis)?,
        memory_mib: read("memory", "limits.memory", quantity::memory_mib)?,
    })
}

/// A container's requests in millicores and MiB (missing ones are `None`).
pub fn requests_of(container: &Container) -> Result<(Option<u32>, Option<u32>), KubeError> {
    let requests = container.resources.as_ref().and_then(|r| r.requests.as_ref());
    let cpu = requests
        .and_then(|r| r.get("cpu"))
        .map(|q| quantity::cpu_millis(&q.0))
        .transpose()
        .map_err(|source| KubeError::Quantity {
            field: "requests.cpu",
            container: container.name.clone(),
            source,
        })?;
    let memory = requests
        .and_then(|r| r.get("memory"))
        .map(|q| quantity::memory_mib(&q.0))
        .transpose()
        .map_err(|source| KubeError::Quantity {
            field: "requests.memory",
            container: container.name.clone(),
            source,
        })?;
    Ok((cpu, memory))
}

/// The revision number in an object's annotations, 0 when absent or unreadable.
pub fn revision_of(meta: &ObjectMeta) -> u64 {
    annotation(meta, REVISION_ANNOTATION)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One annotation's value.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Milliseconds since the epoch of an object's creation, 0 when unknown.
pub fn created_ms(meta: &ObjectMeta) -> u64 {
    meta.creation_timestamp
        .as_ref()
        .map(|t| u64::try_from(t.0.as_millisecond()).unwrap_or(0))
        .unwrap_or(0)
}

/// A label selector as the `labelSelector` query string (`app=carts,tier in (a,b),!legacy`), keys sorted.
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.as_deref().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            _ => format!("!{}", expr.key),
        });
    }
    parts.join(",")
}

/// The Deployment's pod selector as a `labelSelector` string; an empty selector is refused, since it would select
/// every pod in the namespace.
pub fn deployment_selector(deployment: &Deployment, name: &str) -> Result<String, KubeError> {
    let selector = Some(selector_string(&deployment.spec.selector))
        .filter(|s| !s.is_empty())
        .ok_or_else(|| KubeError::MissingField {
            deployment: name.to_owned(),
            field: "spec.selector",
        })?;
    Ok(selector)
}

/// Whether a ReplicaSet is controlled by the Deployment (owner reference by uid, or by name when uids are absent).
pub fn owned_by(rs: &ReplicaSet, deployment: &Deployment) -> bool {
    let uid = deployment.metadata.uid.as_deref();
    let name = deployment.metadata.name.as_deref();
    rs.metadata.owner_references.iter().flatten().any(|o| {
        o.kind == "Deployment"
            && (uid.is_some_and(|u| u == o.uid) || (uid.is_none() && Some(o.name.as_str()) == name))
    })
}

/// A ReplicaSet as a [`Revision`] of the component's container.
pub fn revision_from_replica_set(
    rs: &ReplicaSet,
    container: &str,
    deployment: &str,
) -> Result<Revision, KubeError> {
    let template = rs.spec.template.as_ref().ok_or_else(|| KubeError::MissingField {
        deployment: deployment.to_owned(),
        field: "replicaset template",
    })?;
    let c = pick_container(template, container, deployment)?;
    Ok(Revision {
        revision: revision_of(&rs.metadata),
        image: c.image.clone().unwrap_or_default(),
        env: env_of(c),
        limits: limits_of(c)?,
        created_at_ms: created_ms(&rs.metadata),
        cause: annotation(&rs.metadata, CHANGE_CAUSE_ANNOTATION)
            .unwrap_or(UNRECORDED_CAUSE)
            .to_owned(),
    })
}

/// Every ReplicaSet of the Deployment as revisions, oldest (lowest revision) first.
pub fn history(
    replica_sets: &[ReplicaSet],
    deployment: &Deployment,
    container: &str,
    name: &str,
) -> Result<Vec<Revision>, KubeError> {
    let mut revisions = replica_sets
        .iter()
        .filter(|rs| owned_by(rs, deployment))
        .map(|rs| revision_from_replica_set(rs, container, name))
        .collect::<Result<Vec<_>, _>>()?;
    revisions.sort_by_key(|r| (r.revision, r.created_at_ms));
    Ok(revisions)
}

/// The ReplicaSet `kubectl rollout undo` goes back to: the highest revision below `current`.
pub fn previous_replica_set<'a>(
    replica_sets: &'a [ReplicaSet],
    deployment: &Deployment,
    current: u64,
) -> Option<&'a ReplicaSet> {
    replica_sets
        .iter()
        .filter(|rs| owned_by(rs, deployment))
        .filter(|rs| {
            let r = revision_of(&rs.metadata);
            r > 0 && r < current
        })
        .max_by_key(|rs| revision_of(&rs.metadata))
}

/// A ReplicaSet's pod template as the Deployment's new template: the controller's `pod-template-hash` label dropped.
pub fn template_for_rollback(rs: &ReplicaSet) -> Option<PodTemplateSpec> {
    let mut template = rs.spec.template.clone()?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    Some(template)
}

/// Waiting reasons that mean the container cannot start until someone changes the template or the cluster.
const IMAGE_OR_CONFIG_ERRORS: [&str; 5] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// A pod's state and restarts, judged on the component's container (the pod may also hold the acv sidecar).
pub fn replica_status(pod: &Pod, container: &str) -> ReplicaStatus {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.as_ref();
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let own = statuses.iter().find(|c| c.name == container);
    let restarts = match own {
        Some(c) => c.restart_count,
        None => statuses.iter().map(|c| c.restart_count).sum(),
    };
    let restarts = u32::try_from(restarts.max(0)).unwrap_or(0);
    let judged: Vec<_> = own
        .into_iter()
        .chain(statuses.iter().filter(|_| own.is_none()))
        .collect();
    let waiting = |reason: &str| {
        judged.iter().any(|c| {
            c.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref())
                == Some(reason)
        })
    };
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let state = if pod.metadata.deletion_timestamp.is_some() || matches!(phase, "Succeeded" | "Failed") {
        ReplicaState::Terminated
    } else if waiting("CrashLoopBackOff") {
        ReplicaState::CrashLoopBackOff
    } else if judged
        .iter()
        .any(|c| c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
    {
        ReplicaState::Terminated
    } else if ready {
        ReplicaState::Ready
    } else if IMAGE_OR_CONFIG_ERRORS.iter().any(|r| waiting(r)) {
        // Will not start by itself: report it as not ready rather than as starting.
        ReplicaState::NotReady
    } else if phase == "Pending"
        || waiting("ContainerCreating")
        || waiting("PodInitializing")
        || judged
            .iter()
            .any(|c| c.started == Some(false) && c.state.as_ref().is_some_and(|s| s.running.is_some()))
    {
        ReplicaState::Starting
    } else {
        ReplicaState::NotReady
    };
    ReplicaStatus {
        name,
        state,
        restarts,
    }
}

/// The revision a template change will become: `current + 1` when the template changed, else `current` (the
/// Deployment controller only rolls out, and numbers a revision, on a template change).
pub fn predicted_revision(current: u64, before: &PodTemplateSpec, after: &PodTemplateSpec) -> u64 {
    if before == after { current } else { current + 1 }
}

#[cfg(test)]
mod tests;
