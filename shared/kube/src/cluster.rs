//! [`KubeCluster`]: the [`Cluster`] of one Deployment, talking to the API server with kube-rs and to Prometheus
//! for metrics. Inputs are checked with [`acv_cluster::validate`] before any request, exactly like the local
//! runtime, so a bad call fails the same way on both backends.

use std::cmp::Ordering;

use acv_cluster::{Cluster, ClusterError, validate};
use acv_protocol::{ComponentName, ComponentStatus, MetricsSnapshot, Revision};
use futures::future::{join_all, try_join};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Container, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams};
use serde_json::Value;

use crate::model::{self, revision_of};
use crate::prometheus::Prometheus;
use crate::promql::{self, ContainerSelector, RequestScope, RequestSelector};
use crate::{KubeError, KubeOptions, RequestMatch, patch};

/// The Kubernetes backend scoped to one component: one Deployment (named like the component unless
/// [`KubeOptions::deployment`] says otherwise) in one namespace.
#[derive(Clone)]
pub struct KubeCluster {
    component: ComponentName,
    namespace: String,
    deployment: String,
    container: String,
    options: KubeOptions,
    deployments: Api<Deployment>,
    pods: Api<Pod>,
    replica_sets: Api<ReplicaSet>,
    prometheus: Option<Prometheus>,
}

// === impl KubeCluster ===

impl KubeCluster {
    /// A backend for `component` in `namespace` over `client` (a real client, or a mocked service in tests).
    /// Fails only on a malformed Prometheus URL; the Deployment is first looked up on the first call.
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        component: ComponentName,
        options: KubeOptions,
    ) -> Result<Self, KubeError> {
        let namespace = namespace.into();
        let prometheus = options
            .prometheus_url
            .as_deref()
            .map(|url| Prometheus::new(url, options.prometheus_timeout))
            .transpose()?;
        let deployment = options
            .deployment
            .clone()
            .unwrap_or_else(|| component.as_str().to_owned());
        let container = options
            .container
            .clone()
            .unwrap_or_else(|| component.as_str().to_owned());
        Ok(Self {
            deployments: Api::namespaced(client.clone(), &namespace),
            pods: Api::namespaced(client.clone(), &namespace),
            replica_sets: Api::namespaced(client, &namespace),
            component,
            namespace,
            deployment,
            container,
            options,
            prometheus,
        })
    }

    /// A backend using the ambient configuration (in-cluster ServiceAccount, else `KUBECONFIG`), in `namespace`
    /// or, when `None`, the configuration's default namespace (the pod's own namespace in a cluster).
    pub async fn connect(
        component: ComponentName,
        namespace: Option<String>,
        options: KubeOptions,
    ) -> Result<Self, KubeError> {
        crate::install_crypto_provider();
        let client = Client::try_default()
            .await
            .map_err(|e| KubeError::from_kube(e, "load the kubernetes client configuration", None))?;
        let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        Self::new(client, namespace, component, options)
    }

    /// [`connect`](Self::connect) configured from the `ACV_KUBE_*` keys (namespace from `ACV_KUBE_NAMESPACE`):
    /// what a sidecar in a pod calls.
    pub async fn from_env(
        component: ComponentName,
        env: &dyn acv_core::env::Strings,
    ) -> Result<Self, KubeError> {
        let options = KubeOptions::from_env(env)?;
        Self::connect(component, env.get(crate::ENV_NAMESPACE), options).await
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Deployment's name.
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    fn deployment_ref(&self) -> Option<(&str, &str)> {
        Some((self.namespace.as_str(), self.deployment.as_str()))
    }

    async fn get_deployment(&self) -> Result<Deployment, KubeError> {
        self.deployments.get(&self.deployment).await.map_err(|e| {
            KubeError::from_kube(
                e,
                format!("get deployments/{}", self.deployment),
                self.deployment_ref(),
            )
        })
    }

    async fn list_pods(&self, selector: &str) -> Result<Vec<Pod>, KubeError> {
        let mut pods = self
            .pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| KubeError::from_kube(e, "list pods", None))?
            .items;
        pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(pods)
    }

    async fn list_replica_sets(&self, deployment: &Deployment) -> Result<Vec<ReplicaSet>, KubeError> {
        let selector = model::deployment_selector(deployment, &self.deployment)?;
        Ok(self
            .replica_sets
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| KubeError::from_kube(e, "list replicasets", None))?
            .items)
    }

    fn container_of<'a>(&self, template: &'a PodTemplateSpec) -> Result<&'a Container, KubeError> {
        model::pick_container(template, &self.container, &self.deployment)
    }

    fn status_from(&self, deployment: &Deployment, pods: &[Pod]) -> Result<ComponentStatus, KubeError> {
        let container = self.container_of(&deployment.spec.template)?;
        let clamp = |n: Option<i32>| u32::try_from(n.unwrap_or(0).max(0)).unwrap_or(0);
        Ok(ComponentStatus {
            component: self.component.clone(),
            desired_replicas: clamp(Some(deployment.spec.replicas.unwrap_or(1))),
            ready_replicas: clamp(deployment.status.as_ref().and_then(|s| s.ready_replicas)),
            replicas: pods
                .iter()
                .map(|p| model::replica_status(p, &container.name))
                .collect(),
            revision: revision_of(&deployment.metadata),
            image: container.image.clone().unwrap_or_default(),
            env: model::env_of(container),
            limits: model::limits_of(container)?,
        })
    }

    async fn status_now(&self) -> Result<ComponentStatus, KubeError> {
        let deployment = self.get_deployment().await?;
        let selector = model::deployment_selector(&deployment, &self.deployment)?;
        let pods = self.list_pods(&selector).await?;
        self.status_from(&deployment, &pods)
    }

    fn patch_params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.options.field_manager.clone()),
            ..PatchParams::default()
        }
    }

    async fn patch_deployment<P: serde::Serialize + std::fmt::Debug>(
        &self,
        patch: &Patch<P>,
    ) -> Result<Deployment, KubeError> {
        self.deployments
            .patch(&self.deployment, &self.patch_params(), patch)
            .await
            .map_err(|e| {
                KubeError::from_kube(
                    e,
                    format!("patch deployments/{}", self.deployment),
                    self.deployment_ref(),
                )
            })
    }

    /// The revision a template patch made: from the patched template, numbered as the controller will number it.
    fn revision_after(
        &self,
        before: &Deployment,
        after: &Deployment,
        cause: String,
    ) -> Result<Revision, KubeError> {
        let (t_before, t_after) = (&before.spec.template, &after.spec.template);
        let container = self.container_of(t_after)?;
        Ok(Revision {
            revision: model::predicted_revision(revision_of(&before.metadata), t_before, t_after),
            image: container.image.clone().unwrap_or_default(),
            env: model::env_of(container),
            limits: model::limits_of(container)?,
            created_at_ms: acv_core::now_ms(),
            cause,
        })
    }

    /// Applies a strategic merge patch on the Deployment and returns the revision it made.
    async fn change_template(
        &self,
        before: &Deployment,
        body: Value,
        cause: String,
    ) -> Result<Revision, KubeError> {
        let after = self.patch_deployment(&Patch::Strategic(body)).await?;
        let revision = self.revision_after(before, &after, cause)?;
        tracing::info!(
            deployment = %self.deployment,
            namespace = %self.namespace,
            revision = revision.revision,
            cause = %revision.cause,
            "Patched the pod template."
        );
        Ok(revision)
    }

    async fn pod_logs(&self, pod: &str, container: &str, tail: usize) -> Result<Vec<LogLine>, KubeError> {
        let params = LogParams {
            container: Some(container.to_owned()),
            tail_lines: Some(i64::try_from(tail).unwrap_or(i64::MAX)),
            timestamps: true,
            ..LogParams::default()
        };
        match self.pods.logs(pod, &params).await {
            Ok(text) => Ok(parse_log_lines(pod, &text)),
            Err(e) => {
                let e = KubeError::from_kube(e, format!("get pods/{pod}/log"), None);
                // A pod that just went away (404) or whose container has not started yet (400) has no logs.
                if e.is_status(404) || matches!(e, KubeError::Rejected { .. }) {
                    tracing::debug!(pod, error = %e, "No logs for pod.");
                    Ok(Vec::new())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn metrics_now(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError> {
        let window_secs = validate::window(window_secs)?;
        let prometheus = self
            .prometheus
            .as_ref()
            .ok_or(KubeError::PrometheusNotConfigured)?;
        let deployment = self.get_deployment().await?;
        let container = self.container_of(&deployment.spec.template)?;
        let limits = model::limits_of(container)?;
        let csel = ContainerSelector {
            namespace: &self.namespace,
            deployment: &self.deployment,
            container: &container.name,
        };
        let service = self
            .options
            .service_value
            .as_deref()
            .unwrap_or(self.component.as_str());
        let scope = match self.options.request_match {
            RequestMatch::Label => RequestScope::Label {
                label: &self.options.service_label,
                value: service,
            },
            RequestMatch::Pods => RequestScope::Pods {
                namespace: &self.namespace,
                deployment: &self.deployment,
            },
        };
        let rsel = RequestSelector {
            metric: &self.options.latency_metric,
            scope,
            status_label: &self.options.status_label,
        };
        let queries = [
            promql::cpu_cores_per_pod(&csel, window_secs),
            promql::memory_bytes_per_pod(&csel, window_secs),
            promql::request_rate(&rsel, window_secs),
            promql::latency_quantile(&rsel, 0.5, window_secs),
            promql::latency_quantile(&rsel, 0.99, window_secs),
            promql::error_rate(&rsel, window_secs),
        ];
        let (first, second) = try_join(
            try_join(prometheus.query(&queries[0]), prometheus.query(&queries[1])),
            try_join(
                try_join(prometheus.query(&queries[2]), prometheus.query(&queries[3])),
                try_join(prometheus.query(&queries[4]), prometheus.query(&queries[5])),
            ),
        )
        .await?;
        let (cpu_cores, memory_bytes) = first;
        let ((rate, p50), (p99, errors)) = second;
        let to_secs = |v: Option<f64>| v.map(|v| v * self.options.latency_unit.millis() / 1000.0);
        let (p50, p99) = (to_secs(p50), to_secs(p99));
        Ok(snapshot(
            self.component.clone(),
            window_secs,
            limits,
            Measured {
                cpu_cores,
                memory_bytes,
                rate,
                p50_secs: p50,
                p99_secs: p99,
                errors_per_sec: errors,
            },
        ))
    }
}

/// What Prometheus returned for one window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    /// CPU cores per pod.
    pub cpu_cores: Option<f64>,
    /// Working-set bytes per pod.
    pub memory_bytes: Option<f64>,
    /// Requests per second.
    pub rate: Option<f64>,
    /// Median latency in seconds.
    pub p50_secs: Option<f64>,
    /// 99th percentile latency in seconds.
    pub p99_secs: Option<f64>,
    /// 5xx answers per second.
    pub errors_per_sec: Option<f64>,
}

/// Turns raw measurements into a snapshot: CPU and memory as % of the limits (none without a limit), latencies in
/// ms, and the 5xx share in % (none without requests, like the local runtime).
pub fn snapshot(
    component: ComponentName,
    window_secs: f64,
    limits: acv_protocol::ResourceLimits,
    m: Measured,
) -> MetricsSnapshot {
    let pct = |used: Option<f64>, limit: f64| used.filter(|_| limit > 0.0).map(|u| 100.0 * u / limit);
    let has_requests = m.rate.is_some_and(|r| r > 0.0);
    MetricsSnapshot {
        component,
        window_secs,
        cpu_percent_of_limit: pct(m.cpu_cores.map(|c| c * 1000.0), f64::from(limits.cpu_millis)),
        memory_percent_of_limit: pct(m.memory_bytes, f64::from(limits.memory_mib) * 1024.0 * 1024.0),
        request_rate: m.rate,
        p50_ms: m.p50_secs.map(|s| s * 1000.0),
        p99_ms: m.p99_secs.map(|s| s * 1000.0),
        error_rate_percent: match (has_requests, m.rate) {
            (true, Some(rate)) => Some(100.0 * m.errors_per_sec.unwrap_or(0.0) / rate),
            _ => None,
        },
        calls: Vec::new(),
    }
}

/// One log line of one pod, with the timestamp the kubelet added.
#[derive(Debug, Clone, PartialEq)]
struct LogLine {
    at: Option<Timestamp>,
    text: String,
}

/// Splits `timestamps=true` log output into lines prefixed `[pod] `; a line without a readable timestamp keeps the
/// previous line's.
fn parse_log_lines(pod: &str, text: &str) -> Vec<LogLine> {
    let mut last = None;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (at, rest) = match line.split_once(' ') {
                Some((ts, rest)) => match ts.parse::<Timestamp>() {
                    Ok(t) => (Some(t), rest),
                    Err(_) => (last, line),
                },
                None => match line.parse::<Timestamp>() {
                    Ok(t) => (Some(t), ""),
                    Err(_) => (last, line),
                },
            };
            last = at;
            LogLine {
                at,
                text: format!("[{pod}] {rest}"),
            }
        })
        .collect()
}

/// Merges per-pod logs oldest first (stable: equal times keep pod order) and keeps the last `tail` lines.
fn merge_logs(per_pod: Vec<Vec<LogLine>>, tail: usize) -> Vec<String> {
    let mut all: Vec<LogLine> = per_pod.into_iter().flatten().collect();
    all.sort_by(|a, b| match (a.at, b.at) {
        (Some(x), Some(y)) => x.cmp(&y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
    let skip = all.len().saturating_sub(tail);
    all.into_iter().skip(skip).map(|l| l.text).collect()
}

#[async_trait::async_trait]
impl Cluster for KubeCluster {
    fn component(&self) -> &ComponentName {
        &self.component
    }

    async fn status(&self) -> Result<ComponentStatus, ClusterError> {
        Ok(self.status_now().await?)
    }

    async fn metrics(&self, window_secs: f64) -> Result<MetricsSnapshot, ClusterError> {
        self.metrics_now(window_secs).await
    }

    async fn logs(&self, tail: i64) -> Result<Vec<String>, ClusterError> {
        let tail = validate::tail(tail)?;
        if tail == 0 {
            return Ok(Vec::new());
        }
        let deployment = self.get_deployment().await?;
        let container = self.container_of(&deployment.spec.template)?.name.clone();
        let selector = model::deployment_selector(&deployment, &self.deployment)?;
        let pods = self.list_pods(&selector).await?;
        let names: Vec<String> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
        let per_pod = join_all(names.iter().map(|pod| self.pod_logs(pod, &container, tail)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        Ok(merge_logs(per_pod, tail))
    }

    async fn scale(&self, replicas: i64) -> Result<ComponentStatus, ClusterError> {
        let n = validate::replicas(replicas, self.options.max_replicas)?;
        self.deployments
            .patch_scale(
                &self.deployment,
                &self.patch_params(),
                &Patch::Merge(patch::scale(n)),
            )
            .await
            .map_err(|e| {
                KubeError::from_kube(
                    e,
                    format!("patch deployments/{}/scale", self.deployment),
                    self.deployment_ref(),
                )
            })?;
        tracing::info!(deployment = %self.deployment, namespace = %self.namespace, replicas = n, "Scaled.");
        Ok(self.status_now().await?)
    }

    async fn restart(&self) -> Result<(), ClusterError> {
        // `kubectl rollout restart` stamps the template with the current time in whole seconds (RFC 3339).
        let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
        self.patch_deployment(&Patch::Strategic(patch::restart(&now.to_string())))
            .await?;
        tracing::info!(deployment = %self.deployment, namespace = %self.namespace, "Restart requested.");
        Ok(())
    }

    async fn set_image(&self, image: &str) -> Result<Revision, ClusterError> {
        validate::image(image)?;
        let before = self.get_deployment().await?;
        let container = self.container_of(&before.spec.template)?;
        let body = patch::set_image(&container.name, image);
        Ok(self
            .change_template(&before, body, format!("set_image {image}"))
            .await?)
    }

    async fn set_env(&self, key: &str, value: &str) -> Result<Revision, ClusterError> {
        validate::env_var(key, value)?;
        let before = self.get_deployment().await?;
        let container = self.container_of(&before.spec.template)?;
        let body = patch::set_env(container, key, value);
        Ok(self
            .change_template(&before, body, format!("set_env {key}"))
            .await?)
    }

    async fn set_resources(&self, cpu_millis: i64, memory_mib: i64) -> Result<Revision, ClusterError> {
        let limits = validate::resources(cpu_millis, memory_mib)?;
        let before = self.get_deployment().await?;
        let container = self.container_of(&before.spec.template)?;
        let requests = model::requests_of(container)?;
        let body = patch::set_resources(&container.name, limits.cpu_millis, limits.memory_mib, requests);
        let cause = format!("set_resources cpu={cpu_millis}m memory={memory_mib}Mi");
        Ok(self.change_template(&before, body, cause).await?)
    }

    async fn rollback(&self) -> Result<Revision, ClusterError> {
        let deployment = self.get_deployment().await?;
        let current = revision_of(&deployment.metadata);
        let replica_sets = self.list_replica_sets(&deployment).await?;
        let previous = model::previous_replica_set(&replica_sets, &deployment, current)
            .ok_or(ClusterError::NoPreviousRevision { current })?;
        let to = revision_of(&previous.metadata);
        let template = model::template_for_rollback(previous).ok_or_else(|| KubeError::MissingField {
            deployment: self.deployment.clone(),
            field: "replicaset template",
        })?;
        let has_annotations = deployment.metadata.annotations.is_some();
        let body = patch::rollback(&template, to, has_annotations)
            .and_then(serde_json::from_value)
            .map_err(|e| ClusterError::Backend(format!("encoding the rollback patch: {e}")))?;
        let after = self.patch_deployment(&Patch::<()>::Json(body)).await?;
        let mut revision = self.revision_after(&deployment, &after, format!("rollback to revision {to}"))?;
        // Going back is always a new revision, even when the template equals one seen before.
        revision.revision = current + 1;
        tracing::info!(deployment = %self.deployment, namespace = %self.namespace, to, "Rolled back.");
        Ok(revision)
    }

    async fn history(&self) -> Result<Vec<Revision>, ClusterError> {
        let deployment = self.get_deployment().await?;
        let container = self.container_of(&deployment.spec.template)?.name.clone();
        let replica_sets = self.list_replica_sets(&deployment).await?;
        Ok(model::history(
            &replica_sets,
            &deployment,
            &container,
            &self.deployment,
        )?)
    }
}

#[cfg(test)]
mod tests;
