//! `acv-sidecar`: thin binary around the [`acv_sidecar`] library.

use std::{process::ExitCode, sync::Arc};

use acv_bus::BusConfig;
use acv_core::{env::ProcessEnv, readiness::Readiness};
use acv_sidecar::{
    Agent, SidecarConfig,
    caps::{ClusterCaps, NoPeers, Peers},
    config::PlannerChoice,
    handler::{NoPlanner, PlanningHandler, TaskHandler},
    peer::{self, PeerClient, PeerDirectory, PeerService, SerialHandler},
    watch::Watcher,
};
use acv_telemetry::{LogFormat, admin};
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let config = SidecarConfig::parse();
    let format = if config.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    if let Err(e) = acv_telemetry::init_tracing(format) {
        eprintln!("warning: {e}");
    }
    let bus_config = match BusConfig::from_env(&ProcessEnv) {
        Ok(c) => c.with_transport(config.bus),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(acv_core::EX_USAGE);
        }
    };
    acv_core::block_on(async move {
        match run(config, bus_config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "Sidecar failed.");
                ExitCode::FAILURE
            }
        }
    })
}

async fn run(config: SidecarConfig, bus_config: BusConfig) -> anyhow::Result<()> {
    let readiness = Readiness::default();
    let metrics = acv_telemetry::metrics::install_prometheus().ok();
    let shutdown = CancellationToken::new();
    let admin_state = admin::AdminState {
        readiness: readiness.clone(),
        metrics,
    };
    let (_addr, admin_server) =
        admin::bind(config.admin_addr, admin_state, shutdown.clone().cancelled_owned())
            .await
            .context("starting the admin server")?;
    let admin_task = tokio::spawn(admin_server);

    let bus = acv_bus::connect(&bus_config)
        .await
        .with_context(|| format!("connecting the {} bus", bus_config.transport))?;
    // Mechanism 3: the peer client behind acv.ask_peer, and (below) the peer API server.
    let peer_tls = match config.peer_tls().map_err(anyhow::Error::msg)? {
        Some(files) => Some(files.load().context("loading the peer TLS files")?),
        None => None,
    };
    if let Some(tls) = &peer_tls {
        anyhow::ensure!(
            tls.identity.component == config.component,
            "the peer certificate belongs to {}, not to {}",
            tls.identity,
            config.component
        );
    }
    let directory = PeerDirectory::default();
    for (c, url) in &config.peers {
        directory.insert(c.clone(), url);
    }
    let peers: Arc<dyn Peers> = match &peer_tls {
        Some(tls) => Arc::new(PeerClient::new(
            config.component.clone(),
            acv_pki::client_config(tls).context("peer TLS client")?,
            directory.clone(),
        )),
        None => Arc::new(NoPeers),
    };
    let (handler, cluster) = build_handler(&config, peers).await?;
    let work = peer::WorkLock::default();
    let serial: Arc<dyn TaskHandler> = Arc::new(SerialHandler::new(handler.clone(), work.clone()));
    let mut agent = Agent::new(config.component.clone(), bus.clone(), serial, config.heartbeat);
    if let Some(tls) = &peer_tls {
        let addr = config
            .peer_addr
            .context("--peer-addr is needed with the peer TLS files")?;
        let maintainer = cluster.clone().map(|cluster| peer::Maintainer {
            cluster,
            handler: handler.clone(),
            slo: config.slo(),
            window_secs: config.watch_window_secs,
            mode: config.mode,
        });
        let service = PeerService::new(
            config.component.clone(),
            tls.identity.namespace.clone(),
            maintainer,
            work,
        )
        .with_limits(peer::PeerLimits {
            max_hops: config.peer_max_hops,
            ..Default::default()
        });
        let server_tls = acv_pki::server_config(tls).context("peer TLS server")?;
        let (bound, _stats, server) =
            peer::server::bind(addr, server_tls, Arc::new(service), shutdown.clone())
                .await
                .with_context(|| format!("binding the peer API on {addr}"))?;
        tokio::spawn(server);
        let url = config
            .peer_url
            .clone()
            .unwrap_or_else(|| format!("https://{bound}"));
        tracing::info!(%url, identity = %tls.identity, "Peer API listening (mutual TLS).");
        agent = agent.with_peer_url(url);
        let follow = directory
            .follow(bus.clone(), config.component.clone(), shutdown.clone())
            .await
            .context("subscribing to the broadcast for peer discovery")?;
        tokio::spawn(follow);
    }
    if let Some(cluster) = cluster
        && !config.watch_interval.is_zero()
    {
        let watcher = Watcher::new(cluster, config.slo(), config.watch_window_secs);
        agent = agent
            .with_watcher(watcher, config.watch_interval)
            .with_confirm_checks(config.watch_confirm);
    }
    let agent_loop = agent
        .start(shutdown.clone())
        .await
        .context("subscribing to the inbox")?;
    readiness.set(true);
    tracing::info!(component = %config.component, "Sidecar ready.");

    let mut agent_task = tokio::spawn(agent_loop);
    tokio::select! {
        _ = shutdown_signal() => tracing::info!("Shutting down."),
        res = &mut agent_task => {
            shutdown.cancel();
            return res.context("agent task")?.context("agent loop");
        }
    }
    readiness.set(false);
    shutdown.cancel();
    match tokio::time::timeout(config.grace, agent_task).await {
        Ok(res) => res.context("agent task")?.context("agent loop")?,
        Err(_) => tracing::warn!("Grace period over with a task still running."),
    }
    admin_task.await.context("admin server task")?;
    Ok(())
}

type Built = (Arc<dyn TaskHandler>, Option<Arc<dyn acv_cluster::Cluster>>);

/// Planner + sandbox + cluster backend, as configured.
async fn build_handler(config: &SidecarConfig, peers: Arc<dyn Peers>) -> anyhow::Result<Built> {
    let cluster: Arc<dyn acv_cluster::Cluster> = if config.kube {
        Arc::new(
            acv_kube::KubeCluster::from_env(config.component.clone(), &ProcessEnv)
                .await
                .context("Kubernetes backend")?,
        )
    } else if let Some(api) = config.runtime_api {
        Arc::new(acv_cluster::RemoteCluster::new(api, config.component.clone()).context("runtime API")?)
    } else {
        tracing::warn!(
            "No cluster backend configured (--runtime-api or --kube): tasks will be answered with an ISSUE."
        );
        return Ok((Arc::new(NoPlanner), None));
    };
    let planner: Arc<dyn acv_llm::Planner> = match config.planner {
        PlannerChoice::None => return Ok((Arc::new(NoPlanner), Some(cluster))),
        PlannerChoice::Rules => Arc::new(acv_llm::RulesPlanner::new()),
        PlannerChoice::Llm => {
            let llm = acv_llm::LlmConfig::from_env(&ProcessEnv)
                .context("LLM configuration")?
                .context("--planner llm needs ACV_LLM_CONFIG or ACV_LLM_BACKEND/ACV_LLM_MODEL (see docs/planners.md)")?;
            Arc::new(acv_llm::LlmPlanner::new(
                acv_llm::ChatClient::new(llm).context("LLM client")?,
            ))
        }
    };
    // Honours ACV_SANDBOX_GUEST and ACV_SANDBOX_CACHE_DIR; otherwise this checkout's guest, built if missing.
    let sandbox_config = acv_sandbox::dev::checkout_config().context("locating the sandbox guest")?;
    let sandbox = Arc::new(acv_sandbox::Sandbox::new(sandbox_config).context("loading the sandbox")?);
    let caps = Arc::new(ClusterCaps::new(cluster.clone(), peers));
    let handler = PlanningHandler {
        planner,
        sandbox,
        cluster: cluster.clone(),
        caps,
        mode: config.mode,
        limits: acv_sandbox::Limits::default(),
        slo: config.slo(),
        max_turns: config.max_turns,
        settle: config.settle,
    };
    Ok((Arc::new(handler), Some(cluster)))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                ctrl_c.await.ok();
                return;
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await.ok();
}
