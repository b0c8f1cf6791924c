//! `acv-loadgen --target 127.0.0.1:PORT (--preset light|moderate|heavy|increase | --rps R | --ramp FROM:TO:SECS
//! | --steps R:S,R:S...) [--secs S] [--path /p ...] [--max-in-flight N]`: open-loop load on loopback; prints the
//! report as JSON. Without `--path` it sends the shop front-end mix. Exit codes: 2 bad arguments, 64 a load spec
//! out of bounds (non-loopback target, rates or length), 1 failure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use acv_e2e::load::{self, Call, LoadSpec, Preset, Profile};
use clap::{ArgGroup, CommandFactory, Parser, error::ErrorKind};

/// Open-loop HTTP load on loopback (127.0.0.0/8): requests leave on the profile's schedule whether or not earlier
/// ones have answered. Prints the report (rate sent, latencies, errors) as JSON.
#[derive(Debug, Parser)]
#[command(name = "acv-loadgen", version)]
#[command(group(ArgGroup::new("profile").required(true).args(["preset", "rps", "ramp", "steps"])))]
struct Cli {
    /// The service to load, e.g. the shop's front-end.
    #[arg(long, env = "ACV_LOADGEN_TARGET", value_name = "127.0.0.1:PORT")]
    target: SocketAddr,
    /// A named profile: light (20/s), moderate (50/s), heavy (80/s), increase (1 -> 100/s, +1/s).
    #[arg(long, value_parser = parse_preset)]
    preset: Option<Preset>,
    /// A constant rate, requests/s.
    #[arg(long)]
    rps: Option<f64>,
    /// A linear ramp FROM:TO:SECS (requests/s, requests/s, seconds).
    #[arg(long, value_name = "FROM:TO:SECS", value_parser = parse_ramp)]
    ramp: Option<Profile>,
    /// Fixed rates one after another, RPS:SECS,RPS:SECS,...
    #[arg(long, value_name = "R:S,R:S", value_parser = parse_steps)]
    steps: Option<Profile>,
    /// Length of --rps or --preset, seconds [default: 60].
    #[arg(long)]
    secs: Option<f64>,
    /// Paths to GET in turn (repeatable); without it the shop front-end mix.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// At most this many requests in flight; later ones are counted as dropped.
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
}

fn parse_ramp(s: &str) -> Result<Profile, String> {
    let parts: Vec<f64> = s
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{e} (expected FROM:TO:SECS)"))?;
    let [from_rps, to_rps, ramp_secs] = parts[..] else {
        return Err("expected FROM:TO:SECS".into());
    };
    Ok(Profile::Ramp {
        from_rps,
        to_rps,
        ramp_secs,
        hold_secs: 0.0,
    })
}

fn parse_steps(s: &str) -> Result<Profile, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let parsed = part
            .split_once(':')
            .and_then(|(r, d)| Some((r.parse().ok()?, d.parse().ok()?)));
        out.push(parsed.ok_or_else(|| format!("{part:?}: expected RPS:SECS"))?);
    }
    Ok(Profile::Steps(out))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let secs = cli.secs;
    let profile = (cli.preset.map(|p| p.profile(secs)))
        .or(cli.rps.map(|rps| Profile::Constant {
            rps,
            secs: secs.unwrap_or(60.0),
        }))
        .or(cli.ramp)
        .or(cli.steps);
    let Some(profile) = profile else {
        // clap's group already requires one; keep the same message and exit code regardless.
        Cli::command()
            .error(
                ErrorKind::MissingRequiredArgument,
                "one of --preset, --rps, --ramp or --steps is required",
            )
            .exit()
    };
    let calls = if cli.paths.is_empty() {
        load::shop_mix()
    } else {
        cli.paths.iter().map(|p| Call::get(p)).collect()
    };
    let spec = LoadSpec {
        target: cli.target,
        calls,
        profile,
        max_in_flight: cli.max_in_flight,
        timeout: Duration::from_secs(10),
    };
    acv_core::block_on(async move {
        match load::run(&spec).await {
            Ok(report) => match serde_json::to_string_pretty(&report) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            // Every LoadError is input out of bounds.
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(acv_core::EX_USAGE)
            }
        }
    })
}
