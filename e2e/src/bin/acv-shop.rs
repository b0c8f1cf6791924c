//! `acv-shop <service>` runs one testbed shop service (config from env, see `acv_e2e::shop`);
//! `acv-shop stress [--cpu-workers N --cpu-load P --mem-mib M --max-secs S]` runs the stressor.
//! Both exit when their parent process dies. Exit codes: 2 bad arguments, 64 bad env configuration, 1 failure.

use std::process::ExitCode;

use acv_core::env::ProcessEnv;
use acv_e2e::{exit_with_parent, shop, stress};
use clap::{Parser, Subcommand, builder::PossibleValuesParser};

/// One service of the acv testbed shop, or the stressor behind the local runtime's stress faults.
///
/// A service reads its port, version and downstream addresses from the environment (the local runtime sets them
/// from e2e/shop.yaml).
#[derive(Debug, Parser)]
#[command(
    name = "acv-shop",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    /// The shop service to run.
    #[arg(value_parser = PossibleValuesParser::new(shop::SERVICES), required = true)]
    service: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Burn CPU and/or hold memory (what a CPU or memory stress fault runs next to each replica).
    Stress(stress::StressArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    exit_with_parent();
    let what = match (cli.command, cli.service) {
        (Some(Command::Stress(a)), _) => {
            stress::run(&a);
            return ExitCode::SUCCESS;
        }
        (None, Some(service)) => service,
        // clap requires one of the two.
        (None, None) => return ExitCode::from(2),
    };
    let cfg = match shop::Config::from_env(&what, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("acv-shop: {e}");
            return ExitCode::from(acv_core::EX_USAGE);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("acv-shop: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(shop::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("acv-shop {what}: {e}");
            ExitCode::FAILURE
        }
    }
}
