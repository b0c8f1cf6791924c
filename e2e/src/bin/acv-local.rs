//! `acv-local [RUNTIME_FILE] [NAME=VALUE ...]`: starts the services of a runtime file (default `e2e/shop.yaml`) on
//! the local runtime, prints each service's address, and runs until Ctrl-C, then stops every process.
//! `SHOP_BIN` defaults to the `acv-shop` next to this binary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use acv_cluster::LocalRuntime;
use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut file = PathBuf::from("e2e/shop.yaml");
    let mut vars = BTreeMap::new();
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("acv-shop")))
    {
        vars.insert("SHOP_BIN".to_owned(), sibling.display().to_string());
    }
    for arg in std::env::args().skip(1) {
        match arg.split_once('=') {
            Some((k, v)) => {
                vars.insert(k.to_owned(), v.to_owned());
            }
            None => file = PathBuf::from(arg),
        }
    }
    let rt = LocalRuntime::start_file(&file, &vars)
        .await
        .with_context(|| format!("starting {}", file.display()))?;
    for name in rt.services() {
        println!("{name:<10} http://{}", rt.addr(name.as_str())?);
    }
    match rt.wait_all_ready(Duration::from_secs(30)).await {
        Ok(()) => println!("all services ready; Ctrl-C to stop"),
        Err(e) => eprintln!("warning: {e}"),
    }
    tokio::signal::ctrl_c().await?;
    rt.shutdown().await;
    Ok(())
}
