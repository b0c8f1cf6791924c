//! `acv-manager`: runs the manager (`serve`) or acts as its command-line client (`task send`, `bus dead-letters`).

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use acv_bus::{BusConfig, Transport};
use acv_core::{env::ProcessEnv, readiness::Readiness};
use acv_manager::{
    client::{Client, ClientError},
    registry::Registry,
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
    /// Run the manager: registry of sidecars, reports and issues.
    Serve {
        /// Admin server (/live, /ready, /metrics) address.
        #[arg(long, env = "ACV_MANAGER_ADMIN_ADDR", default_value = "127.0.0.1:9990")]
        admin_addr: SocketAddr,
    },
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
        Command::Serve { admin_addr } => {
            let readiness = Readiness::default();
            let shutdown = CancellationToken::new();
            let metrics = acv_telemetry::metrics::install_prometheus().ok();
            let state = admin::AdminState {
                readiness: readiness.clone(),
                metrics,
            };
            let (_, admin_server) =
                admin::bind(admin_addr, state, shutdown.clone().cancelled_owned()).await?;
            let admin_task = tokio::spawn(admin_server);
            let registry = Arc::new(RwLock::new(Registry::default()));
            let server = tokio::spawn(acv_manager::server::run(bus, registry, shutdown.clone()));
            readiness.set(true);
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::warn!(%error, "Cannot wait for Ctrl-C; shutting down.");
            }
            tracing::info!("Shutting down.");
            shutdown.cancel();
            server.await.context("manager task")?.context("manager loop")?;
            admin_task.await.context("admin server task")?;
            Ok(ExitCode::SUCCESS)
        }
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

fn status_word(s: ReportStatus) -> &'static str {
    match s {
        ReportStatus::Response => "RESPONSE",
        ReportStatus::Issue => "ISSUE",
    }
}
