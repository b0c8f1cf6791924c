//! `acv-shop <service>` runs one testbed shop service (config from env, see `acv_e2e::shop`);
//! `acv-shop stress [--cpu-workers N --cpu-load P --mem-mib M --max-secs S]` runs the stressor.
//! Both exit when their parent process dies.

use std::process::ExitCode;

use acv_core::env::ProcessEnv;
use acv_e2e::{exit_with_parent, shop, stress};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(what) = args.first() else {
        eprintln!(
            "usage: acv-shop <{}> | acv-shop stress [flags]",
            shop::SERVICES.join("|")
        );
        return ExitCode::from(64);
    };
    exit_with_parent();
    if what == "stress" {
        return match stress::parse_args(&args[1..]) {
            Ok(a) => {
                stress::run(&a);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("acv-shop stress: {e}");
                ExitCode::from(64)
            }
        };
    }
    let cfg = match shop::Config::from_env(what, &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("acv-shop: {e}");
            return ExitCode::from(64);
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
