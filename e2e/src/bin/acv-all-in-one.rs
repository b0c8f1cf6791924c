//! `acv-all-in-one [RUNTIME_FILE] [NAME=VALUE ...] [--components a,b] [--task TEXT --to COMPONENT ...] [--once]`:
//! the whole system in one process, with no broker: the local runtime running the services of a runtime file
//! (default `e2e/shop.yaml`, control API on `--api`), the manager's serve loop, and one sidecar per component (or
//! per `--components`), all on the in-memory bus. `--task` sends tasks through that bus, as `acv-manager task
//! send` does over a broker, and prints each report; `--once` exits after them, otherwise it runs until Ctrl-C /
//! SIGTERM and then stops every sidecar, the manager and every service process.
//! Exit codes: 2 bad arguments, 64 a bad runtime file or configuration, 3 a task answered with an ISSUE, 4 a task
//! without a report in time, 1 failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acv_bus::{Bus, BusConfig, Transport};
use acv_core::readiness::Readiness;
use acv_e2e::runfile::RuntimeFileArgs;
use acv_manager::client::{Client, ClientError};
use acv_protocol::{ComponentName, ReportStatus};
use acv_runtime::LocalRuntime;
use acv_sidecar::{SidecarConfig, config::PlannerChoice};
use anyhow::Context;
use clap::{CommandFactory, Parser, ValueEnum};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

/// Exit code when a component answered with an ISSUE (as `acv-manager task send`).
const EXIT_ISSUE: u8 = 3;
/// Exit code when no report came in time (as `acv-manager task send`).
const EXIT_TIMEOUT: u8 = 4;

/// acv in one process, without a broker: the local runtime, the manager and a sidecar per component on the
/// in-memory bus. For the distributed version run acv-local, acv-manager serve and acv-sidecar over RabbitMQ or
/// NATS (`make demo TRANSPORT=amqp|nats`).
#[derive(Debug, Parser)]
#[command(name = "acv-all-in-one", version)]
struct Cli {
    #[command(flatten)]
    runtime_file: RuntimeFileArgs,
    /// Address of the runtime's control API, for acv-chaos and curl (port 0 picks a free one; it is printed).
    #[arg(long, env = "ACV_RUNTIME_API", default_value = "127.0.0.1:7070")]
    api: SocketAddr,
    /// Components that get a sidecar [default: every service of the runtime file].
    #[arg(long, value_delimiter = ',')]
    components: Vec<ComponentName>,
    /// Planner of every sidecar.
    #[arg(long, env = "ACV_SIDECAR_PLANNER", value_enum, default_value = "rules")]
    planner: PlannerChoice,
    /// Interval of each sidecar's own SLO health check; 0 turns it off.
    #[arg(long, default_value = "30s", value_parser = acv_core::env::parse_duration)]
    watch_interval: Duration,
    /// Metrics window of the health check, in seconds.
    #[arg(long, default_value_t = 30.0)]
    watch_window_secs: f64,
    /// Wait after a mutating step before observing again.
    #[arg(long, default_value = "3s", value_parser = acv_core::env::parse_duration)]
    settle: Duration,
    /// A task to send once everything is ready (repeatable; sent in order, each waits for its report).
    #[arg(long = "task", value_name = "TEXT", requires = "to")]
    tasks: Vec<String>,
    /// The component the tasks go to, e.g. `catalogue`.
    #[arg(long)]
    to: Option<ComponentName>,
    /// How long to wait for each report.
    #[arg(long, default_value = "60s", value_parser = acv_core::env::parse_duration)]
    timeout: Duration,
    /// Exit after the tasks instead of running until Ctrl-C.
    #[arg(long, requires = "tasks")]
    once: bool,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// The sandbox's guest component (`acv-guest.wasm`, built by `make guest`). Default: `acv-guest.wasm` next to
    /// this binary.
    #[arg(long, env = acv_sandbox::guest::ENV_GUEST)]
    guest: Option<PathBuf>,
    /// Address of the manager's HTTP API (goals, tasks, agents) that `acvctl` talks to; the API only listens on
    /// loopback here (no token).
    #[arg(long, env = "ACV_MANAGER_API_ADDR", default_value = "127.0.0.1:9080", value_parser = loopback_addr)]
    manager_api: SocketAddr,
    /// Directory of the manager's SQLite store (goals, subtasks, events).
    #[arg(long, env = "ACV_MANAGER_STATE_DIR", default_value = ".acv-state")]
    state_dir: PathBuf,
    /// Directory of the guest's compiled-code cache. Default: `cache/` next to the guest.
    #[arg(long, env = acv_sandbox::guest::ENV_CACHE_DIR)]
    sandbox_cache_dir: Option<PathBuf>,
}

fn loopback_addr(s: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if a.ip().is_loopback() {
        Ok(a)
    } else {
        Err(format!(
            "{a} is beyond loopback: the all-in-one manager API has no token; use acv-manager serve"
        ))
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // `acv-all-in-one NAME=VALUE ...` without a file: the first assignment landed in the file's place.
    if let Err(e) = cli.runtime_file.fix_positionals() {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit()
    }
    let format = if cli.log_json {
        acv_telemetry::LogFormat::Json
    } else {
        acv_telemetry::LogFormat::Text
    };
    if let Err(e) = acv_telemetry::init_tracing(format) {
        eprintln!("warning: {e}");
    }
    let file = cli.runtime_file.path();
    let spec = match cli.runtime_file.load() {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(acv_core::EX_USAGE);
        }
    };
    acv_core::block_on(async move {
        let rt = match LocalRuntime::start(spec).await {
            Ok(rt) => Arc::new(rt),
            Err(e) => {
                eprintln!("error: starting {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        };
        let code = match run(&cli, &rt).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                e.downcast_ref::<Usage>()
                    .map_or(ExitCode::FAILURE, |_| ExitCode::from(acv_core::EX_USAGE))
            }
        };
        rt.shutdown().await;
        println!("stopped");
        code
    })
}

/// A configuration error found after parsing (exit code 64).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Usage(String);

/// One sidecar running in this process.
struct Sidecar {
    component: ComponentName,
    readiness: Readiness,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn run(cli: &Cli, rt: &Arc<LocalRuntime>) -> anyhow::Result<ExitCode> {
    let api = rt
        .serve_api(cli.api)
        .await
        .with_context(|| format!("serving the control API on {}", cli.api))?;
    println!("api        http://{api}");
    for name in rt.services() {
        println!("{name:<10} http://{}", rt.addr(name.as_str())?);
    }
    let components = if cli.components.is_empty() {
        rt.services()
    } else {
        cli.components.clone()
    };
    for c in components.iter().chain(cli.to.as_slice()) {
        if !rt.services().contains(c) {
            return Err(Usage(format!(
                "{c} is not a service of the runtime file (services: {})",
                rt.services()
                    .iter()
                    .map(ComponentName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
    }

    let bus = acv_bus::connect(&BusConfig::default().with_transport(Transport::Memory)).await?;
    let stop = CancellationToken::new();
    // The manager: goal engine (its store under --state-dir, measurements from this runtime's control API) and
    // its HTTP API, so `acvctl --manager http://<manager-api>` creates goals and sends tasks from another shell.
    let registry = Arc::new(RwLock::new(acv_manager::registry::Registry::default()));
    let store: Arc<dyn acv_manager::store::Store> = Arc::new(
        acv_manager::store::SqlStore::open_sqlite(&cli.state_dir)
            .await
            .with_context(|| format!("opening the manager's store under {}", cli.state_dir.display()))?,
    );
    let measurer = Arc::new(acv_manager::measure::RuntimeMeasurer::new(
        api,
        cli.watch_window_secs,
    ));
    let engine = acv_manager::engine::Engine::new(
        store,
        bus.clone(),
        registry,
        measurer,
        acv_manager::engine::EngineConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind(cli.manager_api)
        .await
        .with_context(|| format!("binding the manager API on {}", cli.manager_api))?;
    println!(
        "manager    http://{}   (acvctl --manager http://{0} ...; dashboard http://{0}/dashboard/)",
        listener.local_addr()?
    );
    let router = acv_manager::api::router(engine.clone(), None);
    let api_stop = stop.clone();
    let manager_api = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(api_stop.cancelled_owned())
            .await
    });
    let manager = tokio::spawn(engine.run(stop.clone()));

    // The services first: a sidecar whose first health check saw its replicas still starting would report its
    // component unhealthy (ready 0 %) until the next check.
    if let Err(e) = rt.wait_all_ready(Duration::from_secs(30)).await {
        eprintln!("warning: {e}");
    }
    let sidecars = match start_sidecars(cli, rt, &components, &bus, &stop).await {
        Ok(s) => s,
        Err(e) => {
            stop.cancel();
            return Err(e);
        }
    };
    wait_ready(&sidecars).await;
    println!(
        "all services ready; sidecars for {} on the in-memory bus",
        components
            .iter()
            .map(ComponentName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut code = ExitCode::SUCCESS;
    if let Some(to) = &cli.to {
        code = send_tasks(bus.clone(), to, &cli.tasks, cli.timeout).await?;
    }
    if !cli.once {
        println!("Ctrl-C to stop");
        shutdown_signal().await;
    }

    stop.cancel();
    for s in sidecars {
        match s.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(component = %s.component, error = format!("{e:#}"), "Sidecar failed.")
            }
            Err(e) => tracing::warn!(component = %s.component, error = %e, "Sidecar task failed."),
        }
    }
    manager.await.context("manager task")?.context("manager loop")?;
    manager_api
        .await
        .context("manager API task")?
        .context("manager API")?;
    Ok(code)
}

async fn start_sidecars(
    cli: &Cli,
    rt: &Arc<LocalRuntime>,
    components: &[ComponentName],
    bus: &Arc<dyn Bus>,
    stop: &CancellationToken,
) -> anyhow::Result<Vec<Sidecar>> {
    // One sandbox for every sidecar of the process (runs are independent), loaded only if a planner needs it.
    let sandbox = if cli.planner == PlannerChoice::None {
        None
    } else {
        // --guest / ACV_SANDBOX_GUEST, else acv-guest.wasm next to this binary; loaded at the first step.
        let config =
            acv_sandbox::guest::installed_config(cli.guest.as_deref(), cli.sandbox_cache_dir.as_deref())
                .context("locating the sandbox guest")?;
        Some(Arc::new(acv_sandbox::LazySandbox::new(config, None)))
    };
    let planner = cli
        .planner
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let mut out = Vec::new();
    for component in components {
        let config = SidecarConfig::try_parse_from([
            "acv-sidecar",
            "--component",
            component.as_str(),
            "--bus",
            "memory",
            "--planner",
            &planner,
            "--watch-interval",
            &format!("{}ms", cli.watch_interval.as_millis()),
            "--watch-window-secs",
            &cli.watch_window_secs.to_string(),
            "--settle",
            &format!("{}ms", cli.settle.as_millis()),
            "--heartbeat",
            "5s",
        ])
        .map_err(|e| Usage(format!("sidecar settings: {e}")))?;
        let cluster: Arc<dyn acv_cluster::Cluster> = Arc::new(rt.cluster(component.as_str())?);
        let audit = config.audit_log();
        let handler = acv_sidecar::run::planning_handler(
            &config,
            cluster.clone(),
            Arc::new(acv_sidecar::caps::NoPeers),
            audit.clone(),
            || sandbox.clone().context("no sandbox loaded"),
        )
        .map_err(|e| Usage(format!("{e:#}")))?;
        let readiness = Readiness::default();
        let task = tokio::spawn({
            let (bus, readiness, stop) = (bus.clone(), readiness.clone(), stop.clone());
            async move {
                acv_sidecar::run::run(&config, bus, handler, Some(cluster), None, audit, readiness, stop)
                    .await
            }
        });
        out.push(Sidecar {
            component: component.clone(),
            readiness,
            task,
        });
    }
    Ok(out)
}

/// Waits until every sidecar has subscribed its inbox (or ended, which the shutdown path reports).
async fn wait_ready(sidecars: &[Sidecar]) {
    while !sidecars
        .iter()
        .all(|s| s.readiness.is_ready() || s.task.is_finished())
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends each task in order through the in-process bus and prints its report; the exit code of the worst.
async fn send_tasks(
    bus: Arc<dyn Bus>,
    to: &ComponentName,
    tasks: &[String],
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let mut client = Client::connect(bus).await?;
    let mut worst = 0u8;
    for text in tasks {
        println!("\n==> task for {to}: {text}");
        match client.ask(to, text, timeout).await {
            Ok(reply) => {
                let r = &reply.report;
                let word = match r.status {
                    ReportStatus::Response => "RESPONSE",
                    ReportStatus::Issue => {
                        worst = worst.max(EXIT_ISSUE);
                        "ISSUE"
                    }
                };
                println!("{word} from {}: {}", r.component, r.message);
                for e in &r.evidence {
                    println!("  evidence {}: {}", e.name, e.value);
                }
                for s in &r.steps {
                    println!("  step {} [{:?}] {}", s.index, s.outcome, s.description);
                }
            }
            Err(e @ ClientError::Timeout { .. }) => {
                eprintln!("error: {e}");
                worst = worst.max(EXIT_TIMEOUT);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ExitCode::from(worst))
}

async fn shutdown_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        tokio::signal::ctrl_c().await.ok();
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
