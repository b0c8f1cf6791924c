//! `acv-local [RUNTIME_FILE] [--api ADDR] [NAME=VALUE ...]`: starts the services of a runtime file (default
//! `e2e/shop.yaml`) on the local runtime, serves its control API (default 127.0.0.1:7070; port 0 = any), prints
//! every address, and runs until Ctrl-C / SIGTERM, then stops every process. `SHOP_BIN` defaults to the `acv-shop`
//! next to this binary. Exit codes: 2 bad arguments, 64 a runtime file that cannot be read or is invalid, 1 failure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acv_e2e::runfile::RuntimeFileArgs;
use acv_runtime::LocalRuntime;
use anyhow::Context;
use clap::{CommandFactory, Parser};

use tokio::signal::unix::{SignalKind, signal};

/// Runs the services of a runtime file as processes on loopback (the local runtime) and serves its control API.
#[derive(Debug, Parser)]
#[command(name = "acv-local", version)]
struct Cli {
    #[command(flatten)]
    runtime_file: RuntimeFileArgs,
    /// Address of the control API (port 0 picks a free one; the address is printed).
    #[arg(long, env = "ACV_RUNTIME_API", default_value = "127.0.0.1:7070")]
    api: SocketAddr,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // `acv-local NAME=VALUE ...` without a file: the first assignment landed in the file's place.
    if let Err(e) = cli.runtime_file.fix_positionals() {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, e)
            .exit()
    }
    let file = cli.runtime_file.path();
    acv_core::block_on(async move {
        let spec = match cli.runtime_file.load() {
            Ok(spec) => spec,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(acv_core::EX_USAGE);
            }
        };
        let rt = match LocalRuntime::start(spec).await {
            Ok(rt) => Arc::new(rt),
            Err(e) => {
                eprintln!("error: starting {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        };
        match serve(&rt, cli.api).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                rt.shutdown().await;
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn serve(rt: &Arc<LocalRuntime>, api: SocketAddr) -> anyhow::Result<()> {
    let api = rt
        .serve_api(api)
        .await
        .with_context(|| format!("serving the control API on {api}"))?;
    println!("api        http://{api}");
    for name in rt.services() {
        println!("{name:<10} http://{}", rt.addr(name.as_str())?);
    }
    match rt.wait_all_ready(Duration::from_secs(30)).await {
        Ok(()) => println!("all services ready; Ctrl-C to stop"),
        Err(e) => eprintln!("warning: {e}"),
    }
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    rt.shutdown().await;
    println!("stopped");
    Ok(())
}
