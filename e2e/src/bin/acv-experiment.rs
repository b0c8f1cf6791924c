//! `acv-experiment [--runs N] [--quick] [--only a,b] [--planner rules|llm|none] [--acv-dataset DIR] ...`: the paper's
//! L1–L5 evaluation on the local runtime shop. Each case of `e2e/cases` (or each file of an ACV dataset folder) runs
//! N times with the agent, with no agent, and with its classic baselines; oracles measure the system; the results go
//! to `results/<run>/` (results.json, summary.md, timeline-*.svg). Ctrl-C stops cleanly and keeps what finished.
//! Logs only when `RUST_LOG` is set. Exit codes: 2 bad arguments, 64 bad case files or configuration,
//! 130 interrupted (results kept), 1 failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use acv_e2e::experiment::{
    acv,
    agents::{PlannerKind, Planners},
    case::{self, Case},
    episode::EpisodeEnv,
    runner::{RunOptions, run_all},
};
use anyhow::Context;
use clap::{Parser, ValueEnum};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlannerArg {
    /// The offline rules planner.
    Rules,
    /// An OpenAI-compatible LLM (`--llm-config FILE`, or `ACV_LLM_CONFIG` / `ACV_LLM_*`).
    Llm,
    /// No planner: the oracles' sanity check (must score 0 on L1, L2 and L5).
    None,
}

/// Runs the paper's L1–L5 evaluation on the local runtime shop and writes results/<run>/.
#[derive(Debug, Parser)]
#[command(name = "acv-experiment", version)]
struct Cli {
    /// Folder of case files.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/cases"))]
    cases: PathBuf,
    /// Run the original ACV-LLM dataset files of this folder instead (`DIR`, `DIR/dataset` or `DIR/data/dataset`);
    /// each is matched with the case of ours that carries its oracle.
    #[arg(long, value_name = "DIR")]
    acv_dataset: Option<PathBuf>,
    /// Only these case ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Runs per case and arm.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// One run per case (the same as --runs 1).
    #[arg(long)]
    quick: bool,
    /// The agent's planner.
    #[arg(long, value_enum, default_value = "rules")]
    planner: PlannerArg,
    /// LLM configuration file (YAML, see docs/planners.md); environment variables override it.
    #[arg(long, env = "ACV_LLM_CONFIG")]
    llm_config: Option<PathBuf>,
    /// Base LLM cache seed: run r uses seed + r - 1, so a repeated run answers from the cache.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only the agent arm (no no-agent run, no baselines).
    #[arg(long)]
    agent_only: bool,
    /// Where run folders go.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// The run's folder name [default: UTC time and planner].
    #[arg(long)]
    run_id: Option<String>,
    /// The sandbox guest (`acv-guest.wasm`); default next to this binary or ACV_SANDBOX_GUEST.
    #[arg(long, env = acv_sandbox::guest::ENV_GUEST)]
    guest: Option<PathBuf>,
    /// The `acv-shop` binary [default: next to this binary].
    #[arg(long)]
    shop_bin: Option<PathBuf>,
    /// Interval of the sidecar's own health check in fault cases.
    #[arg(long, default_value = "2s", value_parser = acv_core::env::parse_duration)]
    watch_interval: Duration,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if std::env::var_os("RUST_LOG").is_some()
        && let Err(e) = acv_telemetry::init_tracing(acv_telemetry::LogFormat::Text)
    {
        eprintln!("warning: {e}");
    }
    let cases = match load_cases(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(acv_core::EX_USAGE);
        }
    };
    if cli.list {
        for c in &cases {
            println!(
                "{:<24} L{:<7} m{} {}",
                c.id,
                c.levels.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
                if c.mechanism == case::MechanismKind::Manager {
                    2
                } else {
                    1
                },
                c.title
            );
        }
        return ExitCode::SUCCESS;
    }
    let env = match environment(&cli) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(acv_core::EX_USAGE);
        }
    };
    let run_id = cli.run_id.clone().unwrap_or_else(|| {
        let now = time::OffsetDateTime::now_utc();
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}-{}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            env.planners.name().replace([':', '/'], "_")
        )
    });
    let opts = RunOptions {
        cases,
        runs: if cli.quick { 1 } else { cli.runs },
        out_dir: cli.out.join(&run_id),
        env,
        agent_only: cli.agent_only,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        progress: !cli.no_progress,
    };
    acv_core::block_on(async move {
        let cancel = CancellationToken::new();
        let on_signal = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\nCtrl-C: stopping after cleaning up the current episode; results so far are kept"
                );
                on_signal.cancel();
            }
        });
        match run_all(&opts, &cancel).await {
            Ok(r) => {
                println!("{}", acv_e2e::experiment::summary::markdown(&r));
                println!("results: {}", opts.out_dir.display());
                if r.interrupted {
                    ExitCode::from(130)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}

fn load_cases(cli: &Cli) -> anyhow::Result<Vec<Case>> {
    let ours = case::load_dir(&cli.cases)?;
    let mut cases = match &cli.acv_dataset {
        Some(dir) => acv::load(dir, &ours)?.into_iter().map(|i| i.case).collect(),
        None => ours,
    };
    if !cli.only.is_empty() {
        for id in &cli.only {
            anyhow::ensure!(
                cases.iter().any(|c| &c.id == id),
                "no case {id:?} (cases: {})",
                cases.iter().map(|c| c.id.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        cases.retain(|c| cli.only.contains(&c.id));
    }
    Ok(cases)
}

fn environment(cli: &Cli) -> anyhow::Result<EpisodeEnv> {
    let shop_bin = match &cli.shop_bin {
        Some(p) => p.clone(),
        None => acv_e2e::testbed::find_shop_bin().context(
            "cannot find acv-shop next to this binary; build it (cargo build -p acv-e2e) or pass --shop-bin",
        )?,
    };
    let kind = match cli.planner {
        PlannerArg::Rules => PlannerKind::Rules,
        PlannerArg::None => PlannerKind::None,
        PlannerArg::Llm => {
            let file = match &cli.llm_config {
                Some(p) => {
                    acv_llm::LlmConfig::read_file(p).with_context(|| format!("reading {}", p.display()))?
                }
                None => acv_llm::config::FileConfig::default(),
            };
            let cfg = acv_llm::LlmConfig::from_file_and_env(file, &acv_core::env::ProcessEnv)
                .context("LLM configuration")?
                .context("--planner llm needs --llm-config FILE or ACV_LLM_BACKEND/ACV_LLM_MODEL (docs/planners.md)")?;
            PlannerKind::Llm(Box::new(cfg))
        }
    };
    let sandbox = match kind {
        PlannerKind::None => None,
        _ => {
            let config = acv_sandbox::guest::installed_config(cli.guest.as_deref(), None)
                .context("locating the sandbox guest (make guest; --guest PATH)")?;
            Some(Arc::new(acv_sandbox::LazySandbox::new(config, None)))
        }
    };
    Ok(EpisodeEnv {
        shop_bin,
        planners: Planners {
            kind,
            sandbox,
            seed: cli.seed,
        },
        watch_interval: cli.watch_interval,
    })
}
