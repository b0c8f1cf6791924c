//! `acv-manager`: runs the manager (`serve`: goal engine, store, HTTP API) or talks to sidecars directly over the
//! bus (`task send`, `bus dead-letters`). People use `acvctl`, the API's client.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use acv_bus::{BusConfig, Transport};
use acv_core::{env::ProcessEnv, readiness::Readiness};
use acv_manager::{
    client::{Client, ClientError},
    engine::{Engine, EngineConfig},
    measure::{Measurer, NoMeasurer, RuntimeMeasurer},
    registry::Registry,
    store::{SqlStore, Store},
};
use acv_protocol::{ComponentName, ReportStatus};
use acv_telemetry::{LogFormat, admin};
use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

/// Exit code when the component answered with an ISSUE.
const EXIT_ISSUE: u8 = 3;
/// Exit code when no report came in time.
const EXIT_TIMEOUT: u8 = 4;

/// acv manager and its command-line client.
#[derive(Debug, Parser)]
#[command(name = "acv-manager", version, about)]
struct Cli {
    /// Bus transport: amqp or nats (memory only works inside one process).
    #[arg(long, global = true, env = acv_bus::config::ENV_BUS, default_value = "amqp")]
    bus: Transport,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the manager: goal engine, store, HTTP API, registry of sidecars.
    Serve(Box<ServeArgs>),
    /// Tasks for sidecars.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Bus maintenance.
    Bus {
        #[command(subcommand)]
        command: BusCommand,
    },
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Admin server (/live, /ready, /metrics) address.
    #[arg(long, env = "ACV_MANAGER_ADMIN_ADDR", default_value = "127.0.0.1:9990")]
    admin_addr: SocketAddr,
    /// HTTP API address (acvctl talks to it). Beyond loopback a token is required.
    #[arg(long, env = "ACV_MANAGER_API_ADDR", default_value = "127.0.0.1:9080")]
    api_addr: SocketAddr,
    /// Bearer token the API requires (required when --api-addr is not loopback).
    #[arg(long, env = "ACV_MANAGER_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Directory of the embedded SQLite store (manager.db).
    #[arg(long, env = "ACV_MANAGER_STATE_DIR", default_value = "acv-manager-state")]
    state_dir: PathBuf,
    /// PostgreSQL URL (postgres://...) instead of the SQLite file, for a manager that must survive its node.
    #[arg(long, env = "ACV_MANAGER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Control API of the local runtime (acv-local) the manager measures components through.
    #[arg(long, env = "ACV_RUNTIME_API")]
    runtime_api: Option<SocketAddr>,
    /// Measure through Kubernetes (Deployment status) and Prometheus (ACV_KUBE_NAMESPACE, ACV_KUBE_PROMETHEUS_URL).
    #[arg(long, conflicts_with = "runtime_api")]
    kube: bool,
    /// Metrics window the manager verifies goals on, seconds.
    #[arg(long, default_value_t = 15.0)]
    metrics_window: f64,
    /// Deadline of goals that give none.
    #[arg(long, default_value = "10m", value_parser = acv_core::env::parse_duration)]
    default_deadline: Duration,
    /// Assign/verify rounds of goals that give none.
    #[arg(long, default_value_t = 3)]
    max_rounds: u32,
    /// How long one attempt of a subtask may take.
    #[arg(long, default_value = "3m", value_parser = acv_core::env::parse_duration)]
    subtask_timeout: Duration,
    /// Attempts per subtask.
    #[arg(long, default_value_t = 2)]
    max_attempts: u32,
    /// A sidecar is live when its last heartbeat is at most this old.
    #[arg(long, default_value = "35s", value_parser = acv_core::env::parse_duration)]
    liveness: Duration,
    /// Wait after the last answer before measuring.
    #[arg(long, default_value = "5s", value_parser = acv_core::env::parse_duration)]
    settle: Duration,
    /// Kubernetes: Goal controller and sidecar-injection webhook.
    #[command(flatten)]
    k8s: acv_manager::k8s::K8sArgs,
    /// Who splits goals into subtasks: `rules` (deterministic), or `llm`: the LLM planner's manager prompt, each
    /// proposal checked by the rules decomposer (which is used instead when it fails). The LLM is configured like
    /// the sidecar's: `ACV_LLM_CONFIG` or `ACV_LLM_*` (docs/planners.md).
    #[arg(long, env = "ACV_MANAGER_PLANNER", value_enum, default_value = "rules")]
    planner: DecomposerChoice,
    /// Audit records older than this (default 14 days) are deleted, checked every 10 minutes; 0 keeps them.
    #[arg(long, env = "ACV_MANAGER_AUDIT_RETENTION", default_value = "336h", value_parser = acv_core::env::parse_duration)]
    audit_retention: Duration,
}

/// The goal decomposer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DecomposerChoice {
    /// The deterministic rules decomposer.
    Rules,
    /// The LLM planner's manager prompt, checked by the rules.
    Llm,
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Send an imperative task to a component's sidecar and print its report.
    Send {
        /// The component, e.g. `catalogue`.
        #[arg(long)]
        to: ComponentName,
        /// How long to wait for the report.
        #[arg(long, default_value = "30s", value_parser = acv_core::env::parse_duration)]
        timeout: Duration,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The task, in plain words.
        text: String,
    },
}

#[derive(Debug, Subcommand)]
enum BusCommand {
    /// Remove and print dead letters (payloads that could not be decoded).
    DeadLetters {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = if cli.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    if let Err(e) = acv_telemetry::init_tracing(format) {
        eprintln!("warning: {e}");
    }
    let bus_config = match BusConfig::from_env(&ProcessEnv) {
        Ok(c) => c.with_transport(cli.bus),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(acv_core::EX_USAGE);
        }
    };
    acv_core::block_on(async move {
        run(cli.command, bus_config).await.unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        })
    })
}

async fn run(command: Command, bus_config: BusConfig) -> anyhow::Result<ExitCode> {
    let bus = acv_bus::connect(&bus_config)
        .await
        .with_context(|| format!("connecting the {} bus", bus_config.transport))?;
    match command {
        Command::Serve(args) => serve(*args, bus).await,
        Command::Task {
            command:
                TaskCommand::Send {
                    to,
                    timeout,
                    json,
                    text,
                },
        } => {
            let mut client = Client::connect(bus).await?;
            match client.ask(&to, &text, timeout).await {
                Ok(reply) => {
                    let r = &reply.report;
                    if json {
                        println!("{}", serde_json::to_string_pretty(r)?);
                    } else {
                        println!("{} from {}: {}", status_word(r.status), r.component, r.message);
                        for e in &r.evidence {
                            println!("  evidence {}: {}", e.name, e.value);
                        }
                        for s in &r.steps {
                            println!("  step {} [{:?}] {}", s.index, s.outcome, s.description);
                        }
                    }
                    Ok(match r.status {
                        ReportStatus::Response => ExitCode::SUCCESS,
                        ReportStatus::Issue => ExitCode::from(EXIT_ISSUE),
                    })
                }
                Err(e @ ClientError::Timeout { .. }) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(EXIT_TIMEOUT))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Bus {
            command: BusCommand::DeadLetters { max },
        } => {
            let letters = bus.take_dead_letters(max).await?;
            for l in &letters {
                println!(
                    "{}\t{}\t{}",
                    l.inbox,
                    l.reason,
                    String::from_utf8_lossy(&l.payload)
                );
            }
            eprintln!("{} dead letter(s)", letters.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(args: ServeArgs, bus: Arc<dyn acv_bus::Bus>) -> anyhow::Result<ExitCode> {
    if !args.api_addr.ip().is_loopback() && args.api_token.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!(
            "--api-addr {} is beyond loopback: set --api-token (or ACV_MANAGER_TOKEN) so the API requires it",
            args.api_addr
        );
    }
    let measurer: Arc<dyn Measurer> = match (args.runtime_api, args.kube) {
        (Some(api), _) => Arc::new(RuntimeMeasurer::new(api, args.metrics_window)),
        (None, true) => Arc::new(acv_manager::k8s::KubeMeasurer::connect(args.metrics_window).await?),
        (None, false) => {
            tracing::warn!(
                "No metrics backend (--runtime-api): goals cannot be verified and will end failed."
            );
            Arc::new(NoMeasurer)
        }
    };
    let store: Arc<dyn Store> = match &args.database_url {
        Some(url) => Arc::new(
            SqlStore::connect(url, None)
                .await
                .context("opening the PostgreSQL store")?,
        ),
        None => Arc::new(
            SqlStore::open_sqlite(&args.state_dir)
                .await
                .with_context(|| format!("opening the SQLite store under {}", args.state_dir.display()))?,
        ),
    };
    let config = EngineConfig {
        default_deadline: args.default_deadline,
        max_rounds: args.max_rounds.max(1),
        subtask_timeout: args.subtask_timeout,
        max_attempts: args.max_attempts.max(1),
        liveness: args.liveness,
        settle: args.settle,
        ..EngineConfig::default()
    };
    let decomposer: Option<Arc<dyn acv_llm::Planner>> = match args.planner {
        DecomposerChoice::Rules => None,
        DecomposerChoice::Llm => {
            let llm = acv_llm::LlmConfig::from_env(&ProcessEnv)
                .context("LLM configuration")?
                .context(
                    "--planner llm needs ACV_LLM_CONFIG or ACV_LLM_BACKEND/ACV_LLM_MODEL (see docs/planners.md)",
                )?;
            let client = acv_llm::ChatClient::new(llm).context("LLM client")?;
            Some(Arc::new(acv_llm::LlmPlanner::new(client)))
        }
    };
    let readiness = Readiness::default();
    let shutdown = CancellationToken::new();
    let metrics = acv_telemetry::metrics::install_prometheus().ok();
    let state = admin::AdminState {
        readiness: readiness.clone(),
        metrics,
    };
    let (_, admin_server) = admin::bind(args.admin_addr, state, shutdown.clone().cancelled_owned()).await?;
    let admin_task = tokio::spawn(admin_server);
    let registry = Arc::new(RwLock::new(Registry::default()));
    let store_for_pruning = store.clone();
    let engine = Engine::with_decomposer(store, bus, registry, measurer, config, decomposer);
    let listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("binding the API on {}", args.api_addr))?;
    let local = listener.local_addr()?;
    let router = acv_manager::api::router(engine.clone(), args.api_token.clone());
    let api_shutdown = shutdown.clone();
    let api_task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(api_shutdown.cancelled_owned())
            .await
    });
    let k8s_tasks = acv_manager::k8s::spawn(args.k8s.clone(), engine.clone(), shutdown.clone()).await?;
    let engine_task = tokio::spawn(engine.run(shutdown.clone()));
    if !args.audit_retention.is_zero() {
        tokio::spawn(prune_audit(
            store_for_pruning,
            args.audit_retention,
            shutdown.clone(),
        ));
    }
    readiness.set(true);
    tracing::info!(api = %local, "Manager API listening.");
    println!("acv-manager API on http://{local}");
    println!("acv-manager dashboard on http://{local}/dashboard/");
    wait_for_signal().await;
    tracing::info!("Shutting down.");
    shutdown.cancel();
    engine_task.await.context("engine task")?.context("engine loop")?;
    api_task.await.context("API task")?.context("API server")?;
    admin_task.await.context("admin server task")?;
    for task in k8s_tasks.tasks {
        task.await.context("Kubernetes task")??;
    }
    Ok(ExitCode::SUCCESS)
}

/// Deletes audit records older than `retention` now and every 10 minutes until `shutdown`.
async fn prune_audit(store: Arc<dyn Store>, retention: Duration, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let keep_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        match store
            .prune_audit(acv_core::now_ms().saturating_sub(keep_ms))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "Old audit records pruned."),
            Err(error) => tracing::warn!(%error, "Pruning audit records failed; retrying later."),
        }
    }
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "Cannot wait for SIGTERM.");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => if let Err(error) = r {
            tracing::warn!(%error, "Cannot wait for Ctrl-C.");
            std::future::pending::<()>().await;
        },
        () = term => {}
    }
}

fn status_word(s: ReportStatus) -> &'static str {
    match s {
        ReportStatus::Response => "RESPONSE",
        ReportStatus::Issue => "ISSUE",
    }
}
