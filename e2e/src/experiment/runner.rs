//! Runs every case N times with each of its arms, one episode after another, showing progress and writing
//! `results.json`, `summary.md` and the timelines into the run's folder after every episode, so a Ctrl-C (or a crash)
//! keeps everything that finished.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::case::Case;
use super::episode::{self, Arm, EpisodeEnv, Interrupted};
use super::summary::{self, RunResults};
use super::timeline;

/// What to run.
pub struct RunOptions {
    /// The cases.
    pub cases: Vec<Case>,
    /// Runs per case and arm.
    pub runs: u32,
    /// The run's folder (`results/<run>`).
    pub out_dir: PathBuf,
    /// Shared by every episode.
    pub env: EpisodeEnv,
    /// Only the agent arm (no baselines, no no-agent run).
    pub agent_only: bool,
    /// The command line, for the summary.
    pub command: String,
    /// Show a progress bar.
    pub progress: bool,
}

/// Runs everything; stops early (keeping what finished) when `cancel` fires.
pub async fn run_all(opts: &RunOptions, cancel: &CancellationToken) -> anyhow::Result<RunResults> {
    std::fs::create_dir_all(&opts.out_dir).with_context(|| format!("creating {}", opts.out_dir.display()))?;
    let started = std::time::Instant::now();
    let mut plan = Vec::new();
    for run in 1..=opts.runs {
        for case in &opts.cases {
            let arms = if opts.agent_only {
                vec![Arm::Agent]
            } else {
                Arm::for_case(case)
            };
            for arm in arms {
                plan.push((run, case, arm));
            }
        }
    }
    let bar = if opts.progress {
        ProgressBar::new(plan.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} episodes · {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut results = RunResults {
        run_id: opts
            .out_dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        command: opts.command.clone(),
        planner: opts.env.planners.name(),
        runs: opts.runs,
        cases: opts.cases.iter().map(|c| c.id.clone()).collect(),
        episodes: Vec::new(),
        errors: Vec::new(),
        interrupted: false,
        secs: 0.0,
    };
    for (run, case, arm) in plan {
        if cancel.is_cancelled() {
            results.interrupted = true;
            break;
        }
        bar.set_message(format!("{} / {} / run {run}", case.id, arm.name()));
        match episode::run(&opts.env, case, arm, run, cancel).await {
            Ok(ep) => {
                let line = ep
                    .scores
                    .iter()
                    .map(|s| {
                        format!(
                            "L{}:{}",
                            s.level,
                            match s.passed {
                                Some(true) => "pass",
                                Some(false) => "fail",
                                None => "n/a",
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                bar.println(format!(
                    "{} {} run {run}: {line} ({:.0} s)",
                    case.id,
                    arm.name(),
                    ep.secs
                ));
                if run == 1 {
                    let svg = opts
                        .out_dir
                        .join(format!("timeline-{}-{}.svg", case.id, arm.name()));
                    if let Err(e) = timeline::write_svg(&ep, &svg) {
                        bar.println(format!("warning: timeline {}: {e:#}", svg.display()));
                    }
                }
                results.episodes.push(ep);
            }
            Err(e) if e.is::<Interrupted>() => {
                results.interrupted = true;
                break;
            }
            Err(e) => {
                let msg = format!("{}/{}/{run}: {e:#}", case.id, arm.name());
                bar.println(format!("error: {msg}"));
                results.errors.push(msg);
            }
        }
        bar.inc(1);
        results.secs = started.elapsed().as_secs_f64();
        write(&opts.out_dir, &results)?;
    }
    bar.finish_and_clear();
    results.secs = started.elapsed().as_secs_f64();
    write(&opts.out_dir, &results)?;
    Ok(results)
}

/// Writes `results.json` and `summary.md` into `dir`.
pub fn write(dir: &Path, r: &RunResults) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(r)?;
    std::fs::write(dir.join("results.json"), json).context("writing results.json")?;
    std::fs::write(dir.join("summary.md"), summary::markdown(r)).context("writing summary.md")?;
    Ok(())
}
