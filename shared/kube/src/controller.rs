//! The Goal controller (kube-rs runtime `Controller`): every `Goal` resource becomes a manager goal through a
//! [`GoalSink`] (the manager's engine, in its process), and the manager's view of it is written back to the
//! resource's `.status` with server-side apply on the status subresource (the only write the manager's Role allows).
//!
//! Goals are immutable in the manager: a spec changed after acceptance is reported in `.status.refused`, and
//! deleting a `Goal` does not cancel the manager's goal (that would need a finalizer, i.e. write access to goals;
//! use `acvctl goal cancel`).

use std::{sync::Arc, time::Duration};

use acv_protocol::{GoalRecord, GoalResource};
use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::{Action, Controller},
        watcher,
    },
};
use tokio_util::sync::CancellationToken;

use crate::crd::{GROUP, Goal, GoalStatus, VERSION};

/// The manager's view of one goal.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalView {
    /// The goal as stored.
    pub record: GoalRecord,
    /// Number of events recorded.
    pub events: u64,
    /// The last event's message.
    pub last_event: Option<String>,
}

/// Why a goal did not reach the manager.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// The manager refused the goal (invalid, unknown component, changed spec): retrying will not help until the
    /// resource changes.
    #[error("refused: {0}")]
    Refused(String),
    /// The manager could not take it now (store, bus): retry.
    #[error("manager unavailable: {0}")]
    Unavailable(String),
}

/// Where the controller sends goals: the manager's engine.
#[async_trait::async_trait]
pub trait GoalSink: Send + Sync + 'static {
    /// Creates the goal, or returns the goal with this name when its spec is the same (idempotent); in both cases
    /// with its current state.
    async fn apply(&self, goal: GoalResource) -> Result<GoalView, SinkError>;
}

/// Why one reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The manager could not take the goal now.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// Writing the status failed.
    #[error("writing the status of goal {name} in {namespace}: {source}")]
    Status {
        /// Namespace.
        namespace: String,
        /// Goal.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// A Goal without a namespace (the CRD is namespaced; only a malformed object lacks one).
    #[error("goal {0} has no namespace")]
    NoNamespace(String),
}

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Watch goals in this namespace only (`None`: all namespaces).
    pub namespace: Option<String>,
    /// Field manager of the status writes.
    pub field_manager: String,
    /// How often a goal that is not finished is looked at again.
    pub poll: Duration,
    /// Wait before retrying a failed reconcile.
    pub retry: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            field_manager: "acv-manager".into(),
            poll: Duration::from_secs(5),
            retry: Duration::from_secs(10),
        }
    }
}

/// What each reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The manager.
    pub sink: Arc<dyn GoalSink>,
    /// Options.
    pub options: ControllerOptions,
}

/// One reconcile: hand the goal to the manager, write its state to `.status` when it changed, and look again
/// after `poll` until the goal is finished or refused.
pub async fn reconcile(goal: Arc<Goal>, ctx: Arc<Context>) -> Result<Action, ControllerError> {
    let name = goal.name_any();
    let namespace = goal
        .namespace()
        .ok_or_else(|| ControllerError::NoNamespace(name.clone()))?;
    let generation = goal.metadata.generation;
    let status = match goal.goal_id() {
        None => GoalStatus::refused(None, "the goal has no usable name or uid".into(), generation),
        Some(id) => match ctx.sink.apply(goal.to_resource()).await {
            Ok(view) => GoalStatus::from_view(&view, generation),
            Err(SinkError::Refused(why)) => GoalStatus::refused(Some(id), why, generation),
            Err(e @ SinkError::Unavailable(_)) => return Err(e.into()),
        },
    };
    if goal.status.as_ref() != Some(&status) {
        let api: Api<Goal> = Api::namespaced(ctx.client.clone(), &namespace);
        let body = serde_json::json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "Goal",
            "status": status,
        });
        let params = PatchParams::apply(&ctx.options.field_manager).force();
        api.patch_status(&name, &params, &Patch::Apply(&body))
            .await
            .map_err(|source| ControllerError::Status {
                namespace: namespace.clone(),
                name: name.clone(),
                source,
            })?;
        tracing::info!(%namespace, goal = %name, state = ?status.state, refused = ?status.refused,
            "Goal status written.");
    }
    Ok(if status.is_final() {
        Action::await_change()
    } else {
        Action::requeue(ctx.options.poll)
    })
}

/// A failed reconcile is retried after [`ControllerOptions::retry`].
pub fn error_policy(goal: Arc<Goal>, error: &ControllerError, ctx: Arc<Context>) -> Action {
    tracing::warn!(goal = %goal.name_any(), namespace = ?goal.namespace(), %error, "Goal reconcile failed; retrying.");
    Action::requeue(ctx.options.retry)
}

/// Why the controller cannot start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot list goals.acv.dev{scope}: is the Goal CRD installed (manifests/base/crd) and may the manager's \
     ServiceAccount list goals? {source}",
    scope = .namespace.as_deref().map(|ns| format!(" in namespace {ns}")).unwrap_or_default()
)]
pub struct StartError {
    /// The namespace watched (`None`: all).
    pub namespace: Option<String>,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

fn goals_api(client: &Client, options: &ControllerOptions) -> Api<Goal> {
    match &options.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Checks that the controller can work: goals can be listed where it watches (the CRD is installed and the RBAC
/// allows it). Call it before [`run`] so that a manager without them stops at startup with a clear message
/// instead of running without its controller.
pub async fn check(client: &Client, options: &ControllerOptions) -> Result<(), StartError> {
    goals_api(client, options)
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map(drop)
        .map_err(|source| StartError {
            namespace: options.namespace.clone(),
            source,
        })
}

/// Runs the controller until `shutdown` (see [`check`] for the check to make first).
pub async fn run(
    client: Client,
    sink: Arc<dyn GoalSink>,
    options: ControllerOptions,
    shutdown: CancellationToken,
) {
    let goals = goals_api(&client, &options);
    let ctx = Arc::new(Context {
        client,
        sink,
        options,
    });
    tracing::info!("Goal controller running.");
    Controller::new(goals, watcher::Config::default().any_semantic())
        .graceful_shutdown_on(async move { shutdown.cancelled_owned().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((goal, _)) => tracing::debug!(goal = %goal.name, "Goal reconciled."),
                Err(error) => tracing::debug!(%error, "Goal reconcile error."),
            }
        })
        .await;
}

// === impl GoalStatus ===

impl GoalStatus {
    /// The status of a goal the manager holds.
    pub fn from_view(view: &GoalView, generation: Option<i64>) -> Self {
        Self::from_record(&view.record, view.events, view.last_event.clone(), generation)
    }
}

#[cfg(test)]
mod tests;
