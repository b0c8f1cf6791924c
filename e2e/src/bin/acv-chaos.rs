//! `acv-chaos [--api 127.0.0.1:7070] COMPONENT FAULT [--secs S] [--mode M [--value N]]`: injects a fault into a
//! service of a running local runtime (`acv-local`) through its control API, like applying a Chaos Mesh experiment:
//! `--mode` one | all (default) | fixed | fixed-percent picks the pods at injection, as Chaos Mesh's `mode`/`value`
//! (pods created later are clean). FAULT is one of
//! `pod-failure`, `cpu-stress [--workers N] [--load P]` (default the paper's 2 workers at 50 %),
//! `memory-stress --mib M`, `latency --ms N`, or `clear` (removes every fault of the component).
//! Exit codes: 2 bad arguments, 64 a fault or component the runtime refuses, 1 failure (e.g. no runtime answers).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use acv_cluster::{ClusterError, Fault, Mode, RemoteCluster, Selector};
use acv_protocol::ComponentName;
use clap::{Parser, Subcommand};

/// Injects a fault into a service of a running local runtime (acv-local) through its control API, like applying a
/// Chaos Mesh experiment; or clears them.
#[derive(Debug, Parser)]
#[command(name = "acv-chaos", version)]
struct Cli {
    /// Control API of the local runtime.
    #[arg(
        long,
        global = true,
        env = "ACV_RUNTIME_API",
        default_value = "127.0.0.1:7070"
    )]
    api: SocketAddr,
    /// How long the fault lasts, seconds (without it, until cleared).
    #[arg(long, global = true, value_parser = parse_secs)]
    secs: Option<Duration>,
    /// Which pods, chosen at injection among those that exist (Chaos Mesh's `mode`).
    #[arg(long, global = true, value_enum, default_value = "all")]
    mode: ModeArg,
    /// The mode's number: pods for `fixed`, percent (1-100, rounded down) for `fixed-percent`.
    #[arg(long, global = true)]
    value: Option<u32>,
    /// The service, e.g. `catalogue`.
    component: ComponentName,
    #[command(subcommand)]
    fault: FaultCommand,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    One,
    All,
    Fixed,
    FixedPercent,
}

#[derive(Debug, Subcommand)]
enum FaultCommand {
    /// The selected pods stop and stay down (Chaos Mesh PodChaos pod-failure).
    PodFailure,
    /// A stressor burning CPU next to each replica, counted as the replica's (StressChaos).
    CpuStress {
        /// Burning threads.
        #[arg(long, default_value_t = 2)]
        workers: u32,
        /// Duty cycle of each thread, percent.
        #[arg(long, default_value_t = 50)]
        load: u32,
    },
    /// A stressor holding memory next to each replica, counted as the replica's (StressChaos).
    MemoryStress {
        /// Resident memory to hold, MiB.
        #[arg(long)]
        mib: u32,
    },
    /// Added latency on every request through the service's front (NetworkChaos delay).
    Latency {
        /// Milliseconds added.
        #[arg(long)]
        ms: u64,
    },
    /// Remove every fault of the component.
    Clear,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s} is not a positive number of seconds"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    acv_core::block_on(async move {
        match run(cli).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                match e.kind() {
                    "invalid_argument" | "invalid_replicas" | "unknown_component" => {
                        ExitCode::from(acv_core::EX_USAGE)
                    }
                    _ => ExitCode::FAILURE,
                }
            }
        }
    })
}

async fn run(cli: Cli) -> Result<(), ClusterError> {
    let cluster = RemoteCluster::new(cli.api, cli.component.clone())?;
    let fault = match cli.fault {
        FaultCommand::Clear => {
            println!("cleared {} fault(s)", cluster.clear_faults().await?);
            return Ok(());
        }
        FaultCommand::PodFailure => Fault::PodFailure,
        FaultCommand::CpuStress { workers, load } => Fault::CpuStress {
            workers,
            load_percent: load,
        },
        FaultCommand::MemoryStress { mib } => Fault::MemoryStress { mib },
        FaultCommand::Latency { ms } => Fault::Latency { ms },
    };
    let selector = Selector {
        mode: match cli.mode {
            ModeArg::One => Mode::One,
            ModeArg::All => Mode::All,
            ModeArg::Fixed => Mode::Fixed,
            ModeArg::FixedPercent => Mode::FixedPercent,
        },
        value: cli.value,
    };
    // The runtime checks the selector (a value where none belongs, a percent out of range, no pod selected).
    let status = cluster.inject_selected(fault, selector, cli.secs).await?;
    let pods: Vec<&str> = status.targets.iter().map(|t| t.pod.as_str()).collect();
    println!(
        "injected fault {} into {} ({}): {fault:?}",
        status.id.0,
        cli.component,
        pods.join(", ")
    );
    Ok(())
}
