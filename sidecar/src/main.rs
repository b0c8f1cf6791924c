//! `acv-sidecar`: thin binary around the [`acv_sidecar`] library.

use std::{process::ExitCode, sync::Arc};

use acv_bus::BusConfig;
use acv_core::{env::ProcessEnv, readiness::Readiness};
use acv_sidecar::{
    SidecarConfig,
    caps::{NoPeers, Peers},
    config::PlannerChoice,
    handler::{NoPlanner, TaskHandler},
    peer::{self, PeerClient, PeerDirectory, PeerService, SerialHandler},
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
    // The sandbox guest is located before anything else starts or connects, so that an image without it fails at
    // once naming the path it looked at; it is loaded only at the first step (and released when idle). Only a
    // sidecar that plans steps and has a cluster to run them on needs it.
    let sandbox_config =
        if config.planner != PlannerChoice::None && (config.kube || config.runtime_api.is_some()) {
            Some(
                acv_sandbox::guest::installed_config(
                    config.guest.as_deref(),
                    config.sandbox_cache_dir.as_deref(),
                )
                .context("locating the sandbox guest")?,
            )
        } else {
            None
        };
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
    let audit = config.audit_log();
    let (handler, cluster) = build_handler(&config, sandbox_config, peers, audit.clone()).await?;
    // Tasks, the own watcher and peers' requests for action take turns on one work lock.
    let work = peer::WorkLock::default();
    let serial: Arc<dyn TaskHandler> = Arc::new(SerialHandler::new(handler.clone(), work.clone()));
    let stop = CancellationToken::new();
    let mut peer_url = None;
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
            audit: audit.clone(),
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
        peer_url = Some(url);
        let follow = directory
            .follow(bus.clone(), config.component.clone(), shutdown.clone())
            .await
            .context("subscribing to the broadcast for peer discovery")?;
        tokio::spawn(follow);
    }
    let sidecar = acv_sidecar::run::run(
        &config,
        bus,
        serial,
        cluster,
        peer_url,
        audit,
        readiness,
        stop.clone(),
    );
    tokio::pin!(sidecar);
    let res = tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("Shutting down.");
            stop.cancel();
            sidecar.await
        }
        res = &mut sidecar => res,
    };
    shutdown.cancel();
    admin_task.await.context("admin server task")?;
    res
}

type Built = (Arc<dyn TaskHandler>, Option<Arc<dyn acv_cluster::Cluster>>);

/// Planner + sandbox (`sandbox_config`, located at startup) + cluster backend, as configured.
async fn build_handler(
    config: &SidecarConfig,
    sandbox_config: Option<acv_sandbox::SandboxConfig>,
    peers: Arc<dyn Peers>,
    audit: acv_sidecar::audit::AuditLog,
) -> anyhow::Result<Built> {
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
    let handler = acv_sidecar::run::planning_handler(config, cluster.clone(), peers, audit, || {
        // Located at startup (see `run`); loaded at the first step and released when idle.
        let sandbox_config = sandbox_config.context("the sandbox guest was not located at startup")?;
        let idle = (!config.sandbox_idle.is_zero()).then_some(config.sandbox_idle);
        Ok(Arc::new(acv_sandbox::LazySandbox::new(sandbox_config, idle)))
    })?;
    Ok((handler, Some(cluster)))
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
