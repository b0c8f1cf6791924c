//! `acv-loadgen --target 127.0.0.1:PORT (--preset light|moderate|heavy|increase | --rps R | --ramp FROM:TO:SECS
//! | --steps R:S,R:S...) [--secs S] [--path /p ...] [--max-in-flight N]`: open-loop load on loopback; prints the
//! report as JSON. Without `--path` it sends the shop front-end mix.

use std::time::Duration;

use acv_e2e::load::{self, Call, LoadSpec, Preset, Profile};
use anyhow::{Context, bail};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut target, mut preset, mut rps, mut ramp, mut steps, mut secs) =
        (None, None, None, None, None, None);
    let mut paths = Vec::new();
    let mut max_in_flight = 512;
    while let Some(flag) = args.next() {
        let v = args.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--target" => target = Some(v.parse::<std::net::SocketAddr>().context("--target")?),
            "--preset" => preset = Some(v.parse::<Preset>().map_err(anyhow::Error::msg)?),
            "--rps" => rps = Some(v.parse::<f64>().context("--rps")?),
            "--secs" => secs = Some(v.parse::<f64>().context("--secs")?),
            "--ramp" => ramp = Some(v),
            "--steps" => steps = Some(v),
            "--path" => paths.push(Call::get(&v)),
            "--max-in-flight" => max_in_flight = v.parse().context("--max-in-flight")?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    let target = target.context("--target 127.0.0.1:PORT is required")?;
    let profile = if let Some(p) = preset {
        p.profile(secs)
    } else if let Some(r) = rps {
        Profile::Constant {
            rps: r,
            secs: secs.unwrap_or(60.0),
        }
    } else if let Some(r) = ramp {
        let parts: Vec<f64> = r
            .split(':')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .context("--ramp FROM:TO:SECS")?;
        let [from_rps, to_rps, ramp_secs] = parts[..] else {
            bail!("--ramp FROM:TO:SECS")
        };
        Profile::Ramp {
            from_rps,
            to_rps,
            ramp_secs,
            hold_secs: 0.0,
        }
    } else if let Some(s) = steps {
        let mut out = Vec::new();
        for part in s.split(',') {
            let (r, d) = part.split_once(':').context("--steps R:S,R:S")?;
            out.push((r.parse()?, d.parse()?));
        }
        Profile::Steps(out)
    } else {
        bail!("one of --preset, --rps, --ramp or --steps is required");
    };
    let calls = if paths.is_empty() { load::shop_mix() } else { paths };
    let spec = LoadSpec {
        target,
        calls,
        profile,
        max_in_flight,
        timeout: Duration::from_secs(10),
    };
    let report = load::run(&spec).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
