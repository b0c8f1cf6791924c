//! Running a sidecar inside a process: the planning handler for a configured component and the agent loop until
//! shutdown. The `acv-sidecar` binary adds the admin server, the bus connection and signals around it; the
//! all-in-one binary (`acv-all-in-one` in acv-e2e) runs one of these per component on the in-memory bus.

use std::sync::Arc;

use acv_bus::Bus;
use acv_cluster::Cluster;
use acv_core::readiness::Readiness;
use acv_sandbox::LazySandbox;
use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{
    Agent, SidecarConfig,
    audit::AuditLog,
    caps::{ClusterCaps, Peers},
    config::PlannerChoice,
    handler::{NoPlanner, PlanningHandler, TaskHandler},
    watch::Watcher,
};

/// The handler for `config.planner` acting on `cluster`, running steps in the sandbox that `sandbox` makes (called
/// only when a planner needs one, so `--planner none` never even locates the guest; the [`LazySandbox`] itself
/// loads at the first step and lets go when idle). Programs and host calls are recorded in `audit`.
pub fn planning_handler(
    config: &SidecarConfig,
    cluster: Arc<dyn Cluster>,
    peers: Arc<dyn Peers>,
    audit: AuditLog,
    sandbox: impl FnOnce() -> anyhow::Result<Arc<LazySandbox>>,
) -> anyhow::Result<Arc<dyn TaskHandler>> {
    let planner: Arc<dyn acv_llm::Planner> = match config.planner {
        PlannerChoice::None => return Ok(Arc::new(NoPlanner)),
        PlannerChoice::Rules => Arc::new(acv_llm::RulesPlanner::new()),
        PlannerChoice::Llm => {
            let llm = acv_llm::LlmConfig::from_env(&acv_core::env::ProcessEnv)
                .context("LLM configuration")?
                .context("--planner llm needs ACV_LLM_CONFIG or ACV_LLM_BACKEND/ACV_LLM_MODEL (see docs/planners.md)")?;
            Arc::new(acv_llm::LlmPlanner::new(
                acv_llm::ChatClient::new(llm).context("LLM client")?,
            ))
        }
    };
    let limits = acv_sandbox::Limits {
        wall_clock: config.step_timeout,
        ..Default::default()
    };
    limits.validate().context("--step-timeout")?;
    let caps = Arc::new(ClusterCaps::new(cluster.clone(), peers));
    Ok(Arc::new(PlanningHandler {
        planner,
        sandbox: sandbox()?,
        cluster,
        caps,
        mode: config.mode,
        limits,
        slo: config.slo(),
        max_turns: config.max_turns,
        settle: config.settle,
        audit,
        approval_timeout: config.approval_timeout,
        guard: config.guard(),
    }))
}

/// Runs the sidecar for `config.component` on `bus` until `shutdown` fires (then waits up to `config.grace` for
/// the task in hand) or the agent loop ends with an error. With a `cluster` and a non-zero `--watch-interval`
/// the own SLO health check runs too; `peer_url` is announced when the peer API runs. `readiness` is set once the inbox is subscribed, and cleared on shutdown.
/// `audit` (the same log the handler records into) is sent to the manager every `--audit-flush` until the end.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: &SidecarConfig,
    bus: Arc<dyn Bus>,
    handler: Arc<dyn TaskHandler>,
    cluster: Option<Arc<dyn Cluster>>,
    peer_url: Option<String>,
    audit: AuditLog,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let flusher_stop = CancellationToken::new();
    let flusher = tokio::spawn(audit.clone().run_flusher(
        bus.clone(),
        config.audit_flush,
        flusher_stop.clone(),
    ));
    let res = run_agent(
        config, bus, handler, cluster, peer_url, audit, readiness, shutdown,
    )
    .await;
    // One last flush of what the agent recorded.
    flusher_stop.cancel();
    if let Err(error) = flusher.await {
        tracing::warn!(%error, "Audit flusher ended abnormally.");
    }
    res
}

#[allow(clippy::too_many_arguments)]
async fn run_agent(
    config: &SidecarConfig,
    bus: Arc<dyn Bus>,
    handler: Arc<dyn TaskHandler>,
    cluster: Option<Arc<dyn Cluster>>,
    peer_url: Option<String>,
    audit: AuditLog,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let policy = crate::policy::TaskPolicy::from_env(&acv_core::env::ProcessEnv)?;
    let mut agent = Agent::new(config.component.clone(), bus, handler, config.heartbeat)
        .with_policy(policy)
        .with_audit(audit);
    if let Some(url) = peer_url {
        // Announced in registration and heartbeats, so peers find this sidecar's peer API.
        agent = agent.with_peer_url(url);
    }
    if let Some(cluster) = cluster
        && !config.watch_interval.is_zero()
    {
        let watcher = Watcher::new(cluster, config.slo(), config.watch_window_secs);
        agent = agent
            .with_watcher(watcher, config.watch_interval)
            .with_confirm_checks(config.watch_confirm)
            .with_backoff(config.backoff_initial, config.backoff_max)
            .with_quiet_period(config.quiet_period);
    }
    // The agent loop has its own token so that a grace period can pass between "stop taking work" and giving up.
    let stop = CancellationToken::new();
    let agent_loop = agent
        .start(stop.clone())
        .await
        .context("subscribing to the inbox")?;
    readiness.set(true);
    tracing::info!(component = %config.component, "Sidecar ready.");

    let mut agent_task = tokio::spawn(agent_loop);
    tokio::select! {
        () = shutdown.cancelled() => {}
        res = &mut agent_task => {
            readiness.set(false);
            return res.context("agent task")?.context("agent loop");
        }
    }
    readiness.set(false);
    stop.cancel();
    match tokio::time::timeout(config.grace, agent_task).await {
        Ok(res) => res.context("agent task")?.context("agent loop")?,
        Err(_) => {
            tracing::warn!(component = %config.component, "Grace period over with a task still running.")
        }
    }
    Ok(())
}
