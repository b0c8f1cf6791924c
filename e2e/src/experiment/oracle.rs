//! The oracles: each level scored from what the harness measured of the system, never from the agent's words.
//! The agent's answer enters only through structured fields (report status, executed steps, `diagnosis`, evidence)
//! and, for the one task that asks for a figure, the figure itself, which is checked against the harness's own
//! measurement. Pure functions over an [`Observation`], so each oracle is unit-tested to reject a wrong answer.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use acv_protocol::{
    Combine, Comparison, Diagnosis, GoalObjective, Measurement, ReportBody, ReportStatus, RootCause,
    SloMetric, StepOutcome, measured_value,
};
use serde::{Deserialize, Serialize};

use super::case::{Case, Expect, Figure};

/// What the agent concluded about the SLOs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every objective holds.
    Healthy,
    /// Some objective is broken.
    Violated,
}

/// Whether the agent said it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// A RESPONSE report, or a goal the manager declared achieved.
    Done,
    /// An ISSUE report, or a goal that ended otherwise.
    NotDone,
    /// No answer (timeout), or no agent at all (baselines).
    NoAnswer,
}

/// The SLO story of an episode, from the harness's samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct SloStory {
    /// The health SLOs were broken at some sample after the fault (the fault took effect).
    pub broken: bool,
    /// Seconds after the fault from which they held without a break until the end, if they did at the end.
    pub holding_since: Option<f64>,
    /// Seconds they held at the end of the episode.
    pub held_secs: f64,
}

/// Everything the oracles look at.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// An agent (sidecar or manager) was asked; false for the baselines, which cannot claim anything.
    pub agent: bool,
    /// What the agent said.
    pub claim: Option<Claim>,
    /// The sidecar's report, if one came.
    pub report: Option<ReportBody>,
    /// The agent's first diagnosis after the fault: its watcher's (issue or mitigation report), else the report's.
    pub diagnosis: Option<Diagnosis>,
    /// The sidecar's own watcher raised an SLO-violation issue (structured, with the violations) after the fault.
    pub flagged: bool,
    /// Pod uids before the task.
    pub uids_before: Vec<u64>,
    /// Pods after: (uid, ready).
    pub pods_after: Vec<(u64, bool)>,
    /// Measurements after the answer (after the episode for baselines), per component.
    pub after: BTreeMap<String, Measurement>,
    /// The harness's own value of the figure asked for, measured when the answer came.
    pub harness_figure: Option<f64>,
    /// The harness's own health check when the answer came.
    pub harness_healthy: Option<bool>,
    /// The SLO story.
    pub slo: SloStory,
    /// How long the SLOs must hold.
    pub hold_secs: f64,
}

/// One level's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelScore {
    /// 1–5.
    pub level: u8,
    /// `None`: not applicable in this episode (e.g. the fault never broke the SLOs, so there was nothing to restore).
    pub passed: Option<bool>,
    /// Why, for a person.
    pub why: String,
}

fn score(level: u8, passed: bool, why: impl Into<String>) -> LevelScore {
    LevelScore {
        level,
        passed: Some(passed),
        why: why.into(),
    }
}

/// Scores every level of `case` on `obs`.
pub fn score_case(case: &Case, obs: &Observation) -> Vec<LevelScore> {
    case.levels
        .iter()
        .map(|&l| match l {
            1 => l1_state(&case.expect, obs),
            2 => l2_objective(&case.expect, obs),
            3 => l3_verdict(&case.expect, obs),
            4 => l4_root_cause(&case.expect, obs),
            _ => l5_restored(obs),
        })
        .collect()
}

/// L1: the state asked for, read from the runtime (replicas, image, env, a real restart, running), or the figure
/// reported within tolerance of the harness's measurement.
pub fn l1_state(e: &Expect, obs: &Observation) -> LevelScore {
    let mut fails = Vec::new();
    let m = obs.after.values().next();
    let status = m.and_then(|m| m.status.as_ref());
    if let Some(n) = e.replicas {
        match status {
            Some(s) if s.desired_replicas == n && s.ready_replicas == n => {}
            Some(s) => fails.push(format!(
                "{}/{} replicas ready, want {n}",
                s.ready_replicas, s.desired_replicas
            )),
            None => fails.push("no status".into()),
        }
    }
    if let Some(img) = &e.image {
        match status {
            Some(s) if &s.image == img => {}
            Some(s) => fails.push(format!("image {} ≠ {img}", s.image)),
            None => fails.push("no status".into()),
        }
    }
    for (k, v) in &e.env {
        match status.map(|s| s.env.get(k)) {
            Some(Some(got)) if got == v => {}
            Some(got) => fails.push(format!("env {k}={got:?}, want {v:?}")),
            None => fails.push("no status".into()),
        }
    }
    if e.running {
        match status {
            Some(s) if s.ready_replicas >= 1 => {}
            Some(s) => fails.push(format!("{} replicas ready", s.ready_replicas)),
            None => fails.push("no status".into()),
        }
    }
    if e.restarted {
        let replaced = !obs.pods_after.is_empty()
            && obs
                .pods_after
                .iter()
                .all(|(uid, ready)| *ready && !obs.uids_before.contains(uid));
        if !replaced {
            fails.push(format!(
                "pods not all replaced and ready (before {:?}, after {:?})",
                obs.uids_before, obs.pods_after
            ));
        }
    }
    if let Some(f) = &e.figure
        && let Err(why) = figure_ok(f, obs)
    {
        fails.push(why);
    }
    if fails.is_empty() {
        score(1, true, "state as asked, measured on the runtime")
    } else {
        score(1, false, fails.join("; "))
    }
}

static NUM_PERCENT: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"(\d+(?:\.\d+)?)\s*%").ok());
static NUM_MS: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"(\d+(?:\.\d+)?)\s*ms\b").ok());

/// The figure the agent reported for `metric`: a numeric evidence entry named after the metric, else the first
/// number with the metric's unit in the message (`%` for CPU/memory, `ms` for latency).
pub fn reported_figure(report: &ReportBody, metric: SloMetric) -> Option<f64> {
    let keys: &[&str] = match metric {
        SloMetric::CpuPercentOfLimit => &["cpu_percent_of_limit", "cpu_percent", "cpu"],
        SloMetric::MemoryPercentOfLimit => &["memory_percent_of_limit", "memory_percent", "memory"],
        SloMetric::P99LatencyMs => &["p99_ms", "p99_latency_ms", "p99"],
        SloMetric::ReadyPercent => &["ready_percent"],
        SloMetric::ErrorRatePercent => &["error_rate_percent"],
    };
    if let Some(v) = report
        .evidence
        .iter()
        .find(|e| keys.contains(&e.name.as_str()))
        .and_then(|e| e.value.as_f64())
    {
        return Some(v);
    }
    if report.status != ReportStatus::Response {
        return None;
    }
    let re = match metric {
        SloMetric::P99LatencyMs => &NUM_MS,
        _ => &NUM_PERCENT,
    };
    re.as_ref()?
        .captures(&report.message)
        .and_then(|c| c[1].parse().ok())
}

fn figure_ok(f: &Figure, obs: &Observation) -> Result<(), String> {
    let report = obs.report.as_ref().ok_or("no report")?;
    let got = reported_figure(report, f.metric).ok_or("no figure in the report")?;
    let truth = obs
        .harness_figure
        .ok_or("the harness could not measure the figure")?;
    let diff = (got - truth).abs();
    if diff <= f.abs_tolerance || diff <= f.rel_tolerance * truth.abs() {
        Ok(())
    } else {
        Err(format!("reported {got:.1}, measured {truth:.1}"))
    }
}

/// The agent's verdict from structured fields: the diagnosis if any (healthy or not); else, if it observed
/// anything (a step that ran), a step that changed something or an ISSUE means "violated", a RESPONSE without
/// changes "healthy". No step and no diagnosis: no verdict (a guess is not a check).
pub fn verdict(report: Option<&ReportBody>, diagnosis: Option<&Diagnosis>) -> Option<Verdict> {
    if let Some(d) = diagnosis.or_else(|| report.and_then(|r| r.diagnosis.as_ref())) {
        return match d.cause {
            RootCause::Healthy => Some(Verdict::Healthy),
            RootCause::Unknown => None,
            _ => Some(Verdict::Violated),
        };
    }
    let r = report?;
    if !r.steps.iter().any(|s| s.outcome == StepOutcome::Ok) {
        return None;
    }
    if r.steps.iter().any(|s| s.mutated) || r.status == ReportStatus::Issue {
        Some(Verdict::Violated)
    } else {
        Some(Verdict::Healthy)
    }
}

/// L2: objectives measured after the agent says done (baselines: at the end of the episode), or a health verdict
/// that matches the harness's own check.
pub fn l2_objective(e: &Expect, obs: &Observation) -> LevelScore {
    if obs.agent && obs.claim != Some(Claim::Done) {
        return score(2, false, format!("the agent did not say done ({:?})", obs.claim));
    }
    let mut fails = Vec::new();
    for o in &e.objectives {
        let (value, met) = objective_value(o, &obs.after);
        if !met {
            fails.push(format!(
                "{:?} {:?} {} measured {}",
                o.metric,
                o.comparison,
                o.threshold,
                value.map_or("nothing".into(), |v| format!("{v:.1}"))
            ));
        }
    }
    if e.verdict_matches_measurement {
        let said = verdict(obs.report.as_ref(), obs.diagnosis.as_ref());
        let truth = obs
            .harness_healthy
            .map(|h| if h { Verdict::Healthy } else { Verdict::Violated });
        match (said, truth) {
            (Some(s), Some(t)) if s == t => {}
            (s, t) => fails.push(format!("verdict {s:?}, measured {t:?}")),
        }
    }
    if fails.is_empty() {
        score(2, true, "objectives measured as met")
    } else {
        score(2, false, fails.join("; "))
    }
}

/// The combined value of an objective over its components and whether it is met (a component not measured fails).
pub fn objective_value(o: &GoalObjective, after: &BTreeMap<String, Measurement>) -> (Option<f64>, bool) {
    let values: Vec<Option<f64>> = o
        .components
        .iter()
        .map(|c| after.get(c.as_str()).and_then(|m| measured_value(o.metric, m)))
        .collect();
    let check = |v: Option<f64>| match (v, o.comparison) {
        (Some(v), Comparison::Below) => v < o.threshold,
        (Some(v), Comparison::AtLeast) => v >= o.threshold,
        (None, _) => false,
    };
    if values.iter().any(Option::is_none) || values.is_empty() {
        return (None, false);
    }
    let vs: Vec<f64> = values.into_iter().flatten().collect();
    match o.combine {
        Combine::Each => {
            let worst = vs
                .iter()
                .copied()
                .find(|v| !check(Some(*v)))
                .or(vs.first().copied());
            (worst, vs.iter().all(|v| check(Some(*v))))
        }
        Combine::Total => {
            let total: f64 = vs.iter().sum();
            (Some(total), check(Some(total)))
        }
        Combine::Average => {
            #[allow(clippy::cast_precision_loss)]
            let avg = vs.iter().sum::<f64>() / vs.len() as f64;
            (Some(avg), check(Some(avg)))
        }
    }
}

/// L3: the agent's verdict against the injected ground truth. Its first verdict counts: the watcher's issue when it
/// raised one after the fault (it may have mitigated before the health-check task even arrived), else the report's.
pub fn l3_verdict(e: &Expect, obs: &Observation) -> LevelScore {
    let truth = if e.violation == Some(true) {
        Verdict::Violated
    } else {
        Verdict::Healthy
    };
    let said = if obs.flagged {
        Some(Verdict::Violated)
    } else {
        verdict(obs.report.as_ref(), obs.diagnosis.as_ref())
    };
    match said {
        Some(v) if v == truth => score(3, true, format!("said {v:?}, injected {truth:?}")),
        v => score(3, false, format!("said {v:?}, injected {truth:?}")),
    }
}

/// L4: the structured root cause (the agent's first diagnosis after the fault) against the injected fault's.
pub fn l4_root_cause(e: &Expect, obs: &Observation) -> LevelScore {
    let want = e.root_cause.unwrap_or(RootCause::Unknown);
    match &obs.diagnosis {
        Some(d) if d.cause == want => score(4, true, format!("named {want}")),
        Some(d) => score(4, false, format!("named {}, injected {want}", d.cause)),
        None => score(4, false, format!("no diagnosis, injected {want}")),
    }
}

/// L5: the health SLOs measured broken after the fault, then restored and holding for the hold window.
pub fn l5_restored(obs: &Observation) -> LevelScore {
    if !obs.slo.broken {
        return LevelScore {
            level: 5,
            passed: None,
            why: "the fault never broke the SLOs: nothing to restore (not counted)".into(),
        };
    }
    if obs.slo.held_secs >= obs.hold_secs && obs.slo.holding_since.is_some() {
        score(
            5,
            true,
            format!("SLOs held for the last {:.0} s", obs.slo.held_secs),
        )
    } else {
        score(
            5,
            false,
            format!(
                "SLOs held {:.0} s at the end, {:.0} s needed",
                obs.slo.held_secs, obs.hold_secs
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acv_protocol::{ComponentStatus, Evidence, MetricsSnapshot, ResourceLimits, StepRecord};

    use acv_protocol::ComponentName;

    use crate::experiment::case::{SetupStep, load_dir};

    fn c() -> ComponentName {
        ComponentName::new("catalogue").unwrap()
    }

    fn measurement(replicas: u32, image: &str, p99: f64, cpu: f64) -> Measurement {
        Measurement {
            metrics: Some(MetricsSnapshot {
                component: c(),
                window_secs: 5.0,
                cpu_percent_of_limit: Some(cpu),
                memory_percent_of_limit: Some(10.0),
                request_rate: Some(50.0),
                p50_ms: Some(5.0),
                p99_ms: Some(p99),
                error_rate_percent: Some(0.0),
                calls: Vec::new(),
            }),
            status: Some(ComponentStatus {
                component: c(),
                desired_replicas: replicas,
                ready_replicas: replicas,
                replicas: Vec::new(),
                revision: 2,
                image: image.into(),
                env: BTreeMap::new(),
                limits: ResourceLimits {
                    cpu_millis: 200,
                    memory_mib: 128,
                },
            }),
        }
    }

    fn report(status: ReportStatus, message: &str, mutated: bool) -> ReportBody {
        ReportBody {
            task_id: "t".into(),
            component: c(),
            status,
            message: message.into(),
            evidence: Vec::new(),
            steps: vec![StepRecord {
                index: 1,
                description: "step".into(),
                program: String::new(),
                outcome: StepOutcome::Ok,
                output: String::new(),
                mutated,
            }],
            diagnosis: None,
        }
    }

    fn obs_after(m: Measurement) -> Observation {
        Observation {
            agent: true,
            claim: Some(Claim::Done),
            after: [("catalogue".to_owned(), m)].into(),
            hold_secs: 8.0,
            ..Observation::default()
        }
    }

    #[test]
    fn l1_rejects_the_wrong_image_replicas_restart_and_figure() {
        let e = Expect {
            image: Some("weaveworksdemos/catalogue:0.3.4".into()),
            ..Expect::default()
        };
        assert_eq!(
            l1_state(
                &e,
                &obs_after(measurement(1, "weaveworksdemos/catalogue:0.3.4", 10.0, 10.0))
            )
            .passed,
            Some(true)
        );
        assert_eq!(
            l1_state(
                &e,
                &obs_after(measurement(1, "weaveworksdemos/catalogue:0.3.5", 10.0, 10.0))
            )
            .passed,
            Some(false)
        );

        let e = Expect {
            replicas: Some(3),
            ..Expect::default()
        };
        assert_eq!(
            l1_state(&e, &obs_after(measurement(2, "x", 1.0, 1.0))).passed,
            Some(false)
        );

        let e = Expect {
            restarted: true,
            ..Expect::default()
        };
        let mut o = obs_after(measurement(1, "x", 1.0, 1.0));
        o.uids_before = vec![1, 2];
        o.pods_after = vec![(3, true), (2, true)];
        assert_eq!(l1_state(&e, &o).passed, Some(false), "pod 2 was never replaced");
        o.pods_after = vec![(3, true), (4, true)];
        assert_eq!(l1_state(&e, &o).passed, Some(true));

        let e = Expect {
            figure: Some(Figure {
                metric: SloMetric::CpuPercentOfLimit,
                abs_tolerance: 10.0,
                rel_tolerance: 0.35,
            }),
            ..Expect::default()
        };
        let mut o = obs_after(measurement(1, "x", 1.0, 1.0));
        o.harness_figure = Some(40.0);
        o.report = Some(report(
            ReportStatus::Response,
            "catalogue CPU 90.0% of the 200 millicore limit",
            false,
        ));
        assert_eq!(l1_state(&e, &o).passed, Some(false), "90 % is not 40 %");
        o.report = Some(report(
            ReportStatus::Response,
            "catalogue CPU 43.5% of the 200 millicore limit",
            false,
        ));
        assert_eq!(l1_state(&e, &o).passed, Some(true));
        let mut r = report(ReportStatus::Response, "no number here", false);
        r.evidence.push(Evidence {
            name: "cpu_percent_of_limit".into(),
            value: serde_json::json!(39.0),
        });
        o.report = Some(r);
        assert_eq!(l1_state(&e, &o).passed, Some(true), "structured evidence counts");
    }

    #[test]
    fn l2_rejects_an_objective_not_met_or_not_claimed() {
        let e = Expect {
            objectives: vec![GoalObjective {
                components: vec![c()],
                metric: SloMetric::P99LatencyMs,
                comparison: acv_protocol::Comparison::Below,
                threshold: 300.0,
                combine: Combine::Each,
            }],
            ..Expect::default()
        };
        assert_eq!(
            l2_objective(&e, &obs_after(measurement(1, "x", 250.0, 1.0))).passed,
            Some(true)
        );
        assert_eq!(
            l2_objective(&e, &obs_after(measurement(1, "x", 350.0, 1.0))).passed,
            Some(false)
        );
        let mut o = obs_after(measurement(1, "x", 250.0, 1.0));
        o.claim = Some(Claim::NotDone);
        assert_eq!(
            l2_objective(&e, &o).passed,
            Some(false),
            "met, but the agent never said done"
        );
        o.agent = false;
        o.claim = None;
        assert_eq!(
            l2_objective(&e, &o).passed,
            Some(true),
            "a baseline is measured at the end"
        );

        let e = Expect {
            verdict_matches_measurement: true,
            ..Expect::default()
        };
        let mut o = obs_after(measurement(1, "x", 250.0, 1.0));
        o.harness_healthy = Some(false);
        o.report = Some(report(ReportStatus::Response, "healthy", false));
        assert_eq!(
            l2_objective(&e, &o).passed,
            Some(false),
            "said healthy, measured unhealthy"
        );
        o.report = Some(report(ReportStatus::Issue, "unhealthy", false));
        o.claim = Some(Claim::Done);
        assert_eq!(l2_objective(&e, &o).passed, Some(true));
    }

    #[test]
    fn l3_rejects_a_wrong_or_unfounded_verdict() {
        let e = Expect {
            violation: Some(true),
            ..Expect::default()
        };
        let mut o = obs_after(measurement(1, "x", 1.0, 1.0));
        o.report = Some(report(ReportStatus::Response, "all good", false));
        assert_eq!(l3_verdict(&e, &o).passed, Some(false));
        let mut r = report(ReportStatus::Issue, "broken", false);
        r.steps.clear();
        o.report = Some(r);
        assert_eq!(
            l3_verdict(&e, &o).passed,
            Some(false),
            "no step ran: not a verdict"
        );
        o.report = Some(report(ReportStatus::Response, "fixed it", true));
        assert_eq!(l3_verdict(&e, &o).passed, Some(true));
        o.report = Some(report(ReportStatus::Response, "all good", false));
        o.flagged = true;
        assert_eq!(
            l3_verdict(&e, &o).passed,
            Some(true),
            "the watcher's issue came first"
        );
    }

    #[test]
    fn l4_rejects_the_wrong_root_cause() {
        let e = Expect {
            root_cause: Some(RootCause::BadReplicas),
            ..Expect::default()
        };
        let mut o = obs_after(measurement(1, "x", 1.0, 1.0));
        assert_eq!(l4_root_cause(&e, &o).passed, Some(false));
        o.diagnosis = Some(Diagnosis::new(RootCause::CpuSaturation, "cpu"));
        assert_eq!(l4_root_cause(&e, &o).passed, Some(false));
        o.diagnosis = Some(Diagnosis::new(RootCause::BadReplicas, "pods down"));
        assert_eq!(l4_root_cause(&e, &o).passed, Some(true));
    }

    /// The state a case's setup leaves when nothing acts: one ready replica of the stock image (or what the setup
    /// set), the same pods before and after, and SLOs broken by a fault that never held again.
    fn untouched(case: &Case) -> Observation {
        let mut m = measurement(1, "weaveworksdemos/catalogue:0.3.5", 80.0, 40.0);
        let s = m.status.as_mut().unwrap();
        for step in &case.setup {
            match step {
                SetupStep::Scale(n) => {
                    s.desired_replicas = *n;
                    s.ready_replicas = *n;
                }
                SetupStep::Image(i) => s.image.clone_from(i),
                SetupStep::Env { key, value } => {
                    s.env.insert(key.clone(), value.clone());
                }
            }
        }
        let pods: Vec<(u64, bool)> = (1..=u64::from(s.ready_replicas)).map(|u| (u, true)).collect();
        let mut o = obs_after(m);
        o.uids_before = pods.iter().map(|p| p.0).collect();
        o.pods_after = pods;
        o.harness_figure = Some(40.0);
        o.harness_healthy = Some(true);
        if case.fault.is_some() {
            o.slo = SloStory {
                broken: true,
                holding_since: None,
                held_secs: 0.0,
            };
        }
        o
    }

    /// The sanity check on every case file: with nothing done, no-agent (a silent baseline) and the `none` planner
    /// (an ISSUE with no step, as `NoPlanner` answers) score 0 on L1 (the state is the setup's), L3 and L4 (no
    /// verdict, no diagnosis) and L5 (the fault's break never mended); the `none` planner also on L2 (never done).
    /// L2 for no-agent is measured, not claimed, so it passes when the load alone meets the objective — the tables
    /// show that rather than hide it.
    #[test]
    fn doing_nothing_scores_zero_on_every_case() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("cases");
        let cases = load_dir(&dir).unwrap();
        assert_eq!(cases.len(), 19, "15 dataset cases and 4 manager tasks");
        let mut levels_seen = std::collections::BTreeSet::new();
        for case in &cases {
            let mut silent = untouched(case);
            silent.agent = false;
            silent.claim = None;
            let mut none = untouched(case);
            none.claim = Some(Claim::NotDone);
            let mut r = report(
                ReportStatus::Issue,
                "no planner configured: nothing was done",
                false,
            );
            r.steps.clear();
            none.report = Some(r);
            for (arm, o) in [("no-agent", &silent), ("none", &none)] {
                for s in score_case(case, o) {
                    levels_seen.insert(s.level);
                    let must_fail = match s.level {
                        2 => arm == "none",
                        _ => true,
                    };
                    if must_fail {
                        assert_eq!(
                            s.passed,
                            Some(false),
                            "{} L{} with {arm}: {}",
                            case.id,
                            s.level,
                            s.why
                        );
                    }
                }
            }
        }
        assert_eq!(levels_seen.len(), 5, "every level was scored: {levels_seen:?}");
    }

    #[test]
    fn l5_rejects_slos_not_holding_long_enough() {
        let mut o = obs_after(measurement(1, "x", 1.0, 1.0));
        o.slo = SloStory {
            broken: true,
            holding_since: Some(50.0),
            held_secs: 3.0,
        };
        assert_eq!(l5_restored(&o).passed, Some(false));
        o.slo.held_secs = 9.0;
        assert_eq!(l5_restored(&o).passed, Some(true));
        o.slo.broken = false;
        assert_eq!(l5_restored(&o).passed, None, "never broken: not applicable");
    }
}
