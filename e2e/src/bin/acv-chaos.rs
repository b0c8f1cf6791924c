//! `acv-chaos [--api 127.0.0.1:7070] COMPONENT FAULT [--secs S]`: injects a fault into a service of a running
//! local runtime (`acv-local`) through its control API, like applying a Chaos Mesh experiment. FAULT is one of
//! `pod-failure`, `cpu-stress [--workers N] [--load P]` (default the paper's 2 workers at 50 %),
//! `memory-stress --mib M`, `latency --ms N`, or `clear` (removes every fault of the component).

use std::net::SocketAddr;
use std::time::Duration;

use acv_cluster::{Fault, RemoteCluster};
use acv_protocol::ComponentName;
use anyhow::{Context, bail};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut api: SocketAddr = "127.0.0.1:7070".parse()?;
    let mut positional = Vec::new();
    let mut flags = std::collections::BTreeMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if let Some(flag) = a.strip_prefix("--") {
            let v = args.next().with_context(|| format!("--{flag} needs a value"))?;
            if flag == "api" {
                api = v.parse().context("--api")?;
            } else {
                flags.insert(flag.to_owned(), v);
            }
        } else {
            positional.push(a);
        }
    }
    let [component, fault] = positional.as_slice() else {
        bail!(
            "usage: acv-chaos [--api ADDR] COMPONENT pod-failure|cpu-stress|memory-stress|latency|clear [flags]"
        );
    };
    let num = |k: &str, default: Option<u64>| -> anyhow::Result<u64> {
        match flags.get(k) {
            Some(v) => v.parse().with_context(|| format!("--{k}")),
            None => default.with_context(|| format!("--{k} is required")),
        }
    };
    let cluster = RemoteCluster::new(api, ComponentName::new(component.as_str())?)?;
    if fault == "clear" {
        println!("cleared {} fault(s)", cluster.clear_faults().await?);
        return Ok(());
    }
    let small = |k: &str, d: Option<u64>| -> anyhow::Result<u32> { Ok(u32::try_from(num(k, d)?)?) };
    let f = match fault.as_str() {
        "pod-failure" => Fault::PodFailure,
        "cpu-stress" => Fault::CpuStress {
            workers: small("workers", Some(2))?,
            load_percent: small("load", Some(50))?,
        },
        "memory-stress" => Fault::MemoryStress {
            mib: small("mib", None)?,
        },
        "latency" => Fault::Latency { ms: num("ms", None)? },
        other => bail!("unknown fault {other:?}"),
    };
    let secs = flags
        .get("secs")
        .map(|s| s.parse::<f64>())
        .transpose()
        .context("--secs")?;
    let id = cluster.inject(f, secs.map(Duration::from_secs_f64)).await?;
    println!("injected fault {} into {component}: {f:?}", id.0);
    Ok(())
}
