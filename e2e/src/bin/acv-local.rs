//! `acv-local [RUNTIME_FILE] [--api ADDR] [NAME=VALUE ...]`: starts the services of a runtime file (default
//! `e2e/shop.yaml`) on the local runtime, serves its control API (default 127.0.0.1:7070; port 0 = any), prints
//! every address, and runs until Ctrl-C / SIGTERM, then stops every process. `SHOP_BIN` defaults to the `acv-shop`
//! next to this binary.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use acv_runtime::LocalRuntime;
use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut file = PathBuf::from("e2e/shop.yaml");
    let mut api: SocketAddr = "127.0.0.1:7070".parse()?;
    let mut vars = BTreeMap::new();
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("acv-shop")))
    {
        vars.insert("SHOP_BIN".to_owned(), sibling.display().to_string());
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--api" {
            api = args
                .next()
                .context("--api needs an address")?
                .parse()
                .context("--api")?;
            continue;
        }
        match arg.split_once('=') {
            Some((k, v)) => {
                vars.insert(k.to_owned(), v.to_owned());
            }
            None => file = PathBuf::from(arg),
        }
    }
    let rt = Arc::new(
        LocalRuntime::start_file(&file, &vars)
            .await
            .with_context(|| format!("starting {}", file.display()))?,
    );
    let api = rt.serve_api(api).await?;
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
