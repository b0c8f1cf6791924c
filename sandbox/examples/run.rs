//! Runs a Python program (file argument, or stdin) in the sandbox against an in-memory fake cluster and prints the
//! outcome as JSON: `cargo run -p acv-sandbox --example run -- prog.py [observe|approve|autonomous]`.

use std::io::Read;
use std::sync::Arc;

use acv_protocol::ComponentName;
use acv_sandbox::fake::FakeCluster;
use acv_sandbox::{Limits, SafetyMode, Sandbox};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let program = match args.next() {
        Some(path) if path != "-" => std::fs::read_to_string(path)?,
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let mode: SafetyMode = args
        .next()
        .as_deref()
        .unwrap_or("observe")
        .parse()
        .map_err(anyhow::Error::msg)?;
    let own = ComponentName::new("catalogue")?;
    let sandbox = Sandbox::new(acv_sandbox::dev::checkout_config()?)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let outcome = rt.block_on(sandbox.run(
        &program,
        &own,
        mode,
        Arc::new(FakeCluster::with_component(&own)),
        Limits::default(),
    ))?;
    println!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(())
}
