//! The outputs of a run: `results.json` (every episode, every measurement) and `summary.md` (success rate per level
//! and per case beside the paper's numbers, with time to mitigate).

use std::collections::{BTreeMap, BTreeSet};

/// Appends formatted text to the Markdown being built (writing to a `String` cannot fail).
macro_rules! out {
    ($md:expr, $($fmt:tt)*) => {
        $md.push_str(&format!($($fmt)*))
    };
}

/// [`out!`] with a line break.
macro_rules! outln {
    ($md:expr, $($fmt:tt)*) => {{
        $md.push_str(&format!($($fmt)*));
        $md.push('\n');
    }};
}

use serde::{Deserialize, Serialize};

use super::episode::Episode;

/// The paper's results (GPT-4 Turbo, scored by hand, 3 runs): (level, sidecar, manager).
pub const PAPER: [(u8, Option<f64>, Option<f64>); 5] = [
    (1, Some(1.0), None),
    (2, Some(0.87), Some(0.58)),
    (3, Some(0.74), Some(0.9)),
    (4, Some(0.5), Some(0.5)),
    (5, Some(0.25), Some(0.42)),
];

/// Everything a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    /// Run id (the folder name).
    pub run_id: String,
    /// The command line.
    pub command: String,
    /// The agent's planner.
    pub planner: String,
    /// Runs per case asked for.
    pub runs: u32,
    /// Cases.
    pub cases: Vec<String>,
    /// Episodes that finished.
    pub episodes: Vec<Episode>,
    /// Episodes that failed to run (harness errors), as `case/arm/run: error`.
    pub errors: Vec<String>,
    /// Stopped by Ctrl-C before the end.
    pub interrupted: bool,
    /// Wall time, s.
    pub secs: f64,
}

/// Passed and scored counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Passed.
    pub passed: u32,
    /// Scored (not-applicable episodes excluded).
    pub scored: u32,
    /// Not applicable.
    pub na: u32,
}

impl Tally {
    fn add(&mut self, p: Option<bool>) {
        match p {
            Some(true) => {
                self.passed += 1;
                self.scored += 1;
            }
            Some(false) => self.scored += 1,
            None => self.na += 1,
        }
    }

    /// The success rate, if anything was scored.
    pub fn rate(self) -> Option<f64> {
        (self.scored > 0).then(|| f64::from(self.passed) / f64::from(self.scored))
    }

    fn cell(self) -> String {
        match self.rate() {
            Some(r) => format!("{r:.2} ({}/{})", self.passed, self.scored),
            None if self.na > 0 => format!("n/a ({} n/a)", self.na),
            None => "—".into(),
        }
    }
}

/// The column an episode counts in: the agent by mechanism, or the baseline's name.
pub fn column(e: &Episode) -> String {
    if e.arm == "agent" {
        format!("agent m{} ({})", e.mechanism, e.planner)
    } else {
        e.arm.clone()
    }
}

/// Per (level, column) tallies.
pub fn by_level(eps: &[Episode]) -> BTreeMap<(u8, String), Tally> {
    let mut out: BTreeMap<(u8, String), Tally> = BTreeMap::new();
    for e in eps {
        for s in &e.scores {
            out.entry((s.level, column(e))).or_default().add(s.passed);
        }
    }
    out
}

/// Nearest-rank percentile of the values.
fn pct(mut v: Vec<f64>, q: f64) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    crate::load::percentile(&v, q)
}

fn secs(v: Option<f64>) -> String {
    v.map_or("—".into(), |s| format!("{s:.1} s"))
}

/// The Markdown summary.
pub fn markdown(r: &RunResults) -> String {
    let mut md = String::new();
    outln!(md, "# acv experiments — run `{}`\n", r.run_id);
    outln!(
        md,
        "Command: `{}`  \nPlanner: {} · runs per case: {} · cases: {} · episodes: {} · wall time: {:.1} min{}\n",
        r.command,
        r.planner,
        r.runs,
        r.cases.len(),
        r.episodes.len(),
        r.secs / 60.0,
        if r.interrupted {
            " · **interrupted (Ctrl-C): partial**"
        } else {
            ""
        }
    );
    let levels = by_level(&r.episodes);
    let cols: BTreeSet<String> = levels.keys().map(|(_, c)| c.clone()).collect();
    outln!(md, "## Success rate per level\n");
    out!(md, "| level | paper sidecar | paper manager |");
    for c in &cols {
        out!(md, " {c} |");
    }
    out!(md, "\n|---|---|---|");
    for _ in &cols {
        out!(md, "---|");
    }
    md.push('\n');
    for (l, side, man) in PAPER {
        let f = |v: Option<f64>| v.map_or("—".into(), |x| format!("{x:.2}"));
        out!(md, "| L{l} | {} | {} |", f(side), f(man));
        for c in &cols {
            out!(
                md,
                " {} |",
                levels.get(&(l, c.clone())).copied().unwrap_or_default().cell()
            );
        }
        md.push('\n');
    }
    outln!(
        md,
        "\nRates are passed/scored; \"n/a\" episodes (the fault never broke the SLOs, so there was nothing to \
         restore) are not counted. m1 = a sidecar alone, m2 = through the manager's goals.\n"
    );
    outln!(md, "## Per case\n");
    outln!(
        md,
        "| case | arm | levels passed | answer (median) | mitigated (median / p90) | detected (median) | steps | turns | tokens | regressions |"
    );
    outln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    let mut groups: BTreeMap<(String, String), Vec<&Episode>> = BTreeMap::new();
    for e in &r.episodes {
        groups.entry((e.case.clone(), column(e))).or_default().push(e);
    }
    for ((case, col), eps) in &groups {
        let mut per: BTreeMap<u8, Tally> = BTreeMap::new();
        for e in eps {
            for s in &e.scores {
                per.entry(s.level).or_default().add(s.passed);
            }
        }
        let passed: Vec<String> = per.iter().map(|(l, t)| format!("L{l} {}", t.cell())).collect();
        let answer: Vec<f64> = eps.iter().filter_map(|e| e.answered_after_s).collect();
        let mitig: Vec<f64> = eps.iter().filter_map(|e| e.mitigated_after_s).collect();
        let det: Vec<f64> = eps.iter().filter_map(|e| e.detected_after_s).collect();
        let steps: u32 = eps.iter().map(|e| e.steps).sum();
        let turns: u64 = eps.iter().map(|e| e.turns).sum();
        let tokens: u64 = eps.iter().map(|e| e.prompt_tokens + e.completion_tokens).sum();
        let regress = eps.iter().filter(|e| !e.regressions.is_empty()).count();
        let n = eps.len();
        outln!(
            md,
            "| {case} | {col} | {} | {} | {} / {} | {} | {steps} | {turns} | {tokens} | {regress}/{n} |",
            passed.join(", "),
            secs(pct(answer, 0.5)),
            secs(pct(mitig.clone(), 0.5)),
            secs(pct(mitig, 0.9)),
            secs(pct(det, 0.5)),
        );
    }
    outln!(
        md,
        "\nTimes are from the fault (or the task being sent). Steps, turns and tokens are totals over the runs; \
         regressions = episodes ending with a health objective broken that held before the fault."
    );
    if !r.errors.is_empty() {
        outln!(md, "\n## Episodes that could not run\n");
        for e in &r.errors {
            outln!(md, "- {e}");
        }
    }
    md
}
