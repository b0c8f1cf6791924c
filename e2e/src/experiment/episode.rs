//! One episode: a fresh shop on the local runtime, the case's setup, the workload, the fault, one arm (the agent, no
//! agent, or a classic controller), the ask, the measurements, and the scores. Everything runs in this process on
//! the in-memory bus; the runtime, bus, sidecars and manager are new for every episode.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acv_bus::{Bus, memory::MemoryBus};
use acv_cluster::{Cluster, Fault, RemoteCluster};
use acv_protocol::{Body, ComponentName, Diagnosis, GoalState, ReportBody, ReportStatus, SloPolicy};
use acv_runtime::LocalRuntime;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::agents::{self, Planners};
use super::case::{Ask, BaselineKind, Case, FaultSpec, LoadTarget, MechanismKind, PresetName, SetupStep};
use super::oracle::{self, Claim, LevelScore, Observation, SloStory};
use super::probe::{self, Action, Sample};
use crate::load::{self, Call, LoadSpec, Profile};

/// Who acts in an episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arm {
    /// The agent with the run's planner.
    Agent,
    /// Nothing acts.
    NoAgent,
    /// A classic controller.
    Baseline(BaselineKind),
}

impl Arm {
    /// The arm's name in results (`agent`, `no-agent`, `hpa`, `flagger`).
    pub fn name(self) -> &'static str {
        match self {
            Arm::Agent => "agent",
            Arm::NoAgent => "no-agent",
            Arm::Baseline(BaselineKind::Hpa) => "hpa",
            Arm::Baseline(BaselineKind::Flagger) => "flagger",
        }
    }

    /// The arms a case runs: the agent, no agent, and its baselines.
    pub fn for_case(case: &Case) -> Vec<Arm> {
        let mut arms = vec![Arm::Agent, Arm::NoAgent];
        arms.extend(case.baselines.iter().map(|b| Arm::Baseline(*b)));
        arms
    }
}

/// Everything measured in one episode (one line of results.json).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Episode {
    /// Case id.
    pub case: String,
    /// Arm name.
    pub arm: String,
    /// Planner of the agent arm (`rules`, `llm:<model>`, `none`); empty for other arms.
    pub planner: String,
    /// 1-based run.
    pub run: u32,
    /// Mechanism (1 sidecar, 2 manager) for the agent arm.
    pub mechanism: u8,
    /// Scores per level.
    pub scores: Vec<LevelScore>,
    /// Fault injected (or task sent), seconds after the episode started.
    pub fault_at_s: f64,
    /// Fault → first detection (watcher issue, a "violated" verdict, or a baseline's first action), s.
    pub detected_after_s: Option<f64>,
    /// Fault → the agent's answer (report, or the goal's end), s.
    pub answered_after_s: Option<f64>,
    /// Fault → SLOs holding again until the end, s (only when the fault broke them).
    pub mitigated_after_s: Option<f64>,
    /// Steps the agent executed (all reports of the episode).
    pub steps: u32,
    /// Planner turns (sidecar) or goal rounds (manager).
    pub turns: u64,
    /// LLM prompt tokens.
    pub prompt_tokens: u64,
    /// LLM completion tokens.
    pub completion_tokens: u64,
    /// LLM cost, USD.
    pub cost_usd: f64,
    /// Health objectives met before the fault and broken at the end.
    pub regressions: Vec<String>,
    /// What the agent said.
    pub claim: Option<Claim>,
    /// The report's message or the goal's reason.
    pub answer: Option<String>,
    /// The goal's final state (manager).
    pub goal_state: Option<GoalState>,
    /// The diagnosis scored for L4.
    pub diagnosis: Option<Diagnosis>,
    /// The harness's figure for L1 metric tasks.
    pub harness_figure: Option<f64>,
    /// The harness's health verdict when the answer came.
    pub harness_healthy: Option<bool>,
    /// The SLO story.
    pub slo: SloStory,
    /// Changes seen on the runtime and baseline actions.
    pub actions: Vec<Action>,
    /// Every sample of the maintained component.
    pub samples: Vec<Sample>,
    /// Wall time of the episode, s.
    pub secs: f64,
}

/// The episode was stopped by Ctrl-C.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// What every episode of a run shares.
#[derive(Clone)]
pub struct EpisodeEnv {
    /// The `acv-shop` binary.
    pub shop_bin: PathBuf,
    /// The agent's planner.
    pub planners: Planners,
    /// Interval of the sidecar's own health check in fault cases.
    pub watch_interval: Duration,
}

/// The episode's background tasks; dropping it (an early error) stops them all.
struct Running {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    loads: Vec<tokio::task::AbortHandle>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
        for t in &self.tasks {
            t.abort();
        }
        for l in &self.loads {
            l.abort();
        }
    }
}

/// Runs one episode of `case` with `arm`; `run` is 1-based. `cancel` (Ctrl-C) ends it early with [`Interrupted`].
pub async fn run(
    env: &EpisodeEnv,
    case: &Case,
    arm: Arm,
    run: u32,
    cancel: &CancellationToken,
) -> anyhow::Result<Episode> {
    let started = std::time::Instant::now();
    let spec = crate::testbed::ShopOptions {
        shop_bin: env.shop_bin.clone(),
        ephemeral_ports: true,
        fast: true,
        services: case.services(),
    }
    .spec()?;
    let rt = Arc::new(LocalRuntime::start(spec).await.context("starting the shop")?);
    let result = tokio::select! {
        r = body(env, case, arm, run, &rt) => r,
        () = cancel.cancelled() => Err(Interrupted.into()),
    };
    rt.shutdown().await;
    let mut ep = result?;
    ep.secs = started.elapsed().as_secs_f64();
    Ok(ep)
}

async fn body(
    env: &EpisodeEnv,
    case: &Case,
    arm: Arm,
    run: u32,
    rt: &Arc<LocalRuntime>,
) -> anyhow::Result<Episode> {
    rt.wait_all_ready(Duration::from_secs(60))
        .await
        .context("the shop did not become ready")?;
    let api = rt.serve_api("127.0.0.1:0".parse()?).await?;
    let component = ComponentName::new(&case.component).context("component name")?;
    let cluster: Arc<dyn Cluster> = Arc::new(RemoteCluster::new(api, component.clone())?);
    let measured: Vec<(String, Arc<dyn Cluster>)> = case
        .measured()
        .into_iter()
        .map(|c| -> anyhow::Result<_> {
            let name = ComponentName::new(&c).context("component name")?;
            Ok((c, Arc::new(RemoteCluster::new(api, name)?) as Arc<dyn Cluster>))
        })
        .collect::<anyhow::Result<_>>()?;
    for step in &case.setup {
        match step {
            SetupStep::Scale(n) => {
                cluster.scale(i64::from(*n)).await?;
            }
            SetupStep::Image(i) => {
                cluster.set_image(i).await?;
            }
            SetupStep::Env { key, value } => {
                cluster.set_env(key, value).await?;
            }
        }
    }
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let running = Running {
        stop: CancellationToken::new(),
        tasks: Vec::new(),
        loads: Vec::new(),
    };
    drive(
        env,
        case,
        arm,
        run,
        rt,
        api,
        &cluster,
        &measured,
        &bus,
        running,
        Instant::now(),
    )
    .await
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
async fn drive(
    env: &EpisodeEnv,
    case: &Case,
    arm: Arm,
    run: u32,
    rt: &Arc<LocalRuntime>,
    api: std::net::SocketAddr,
    cluster: &Arc<dyn Cluster>,
    measured: &[(String, Arc<dyn Cluster>)],
    bus: &Arc<dyn Bus>,
    mut running: Running,
    t0: Instant,
) -> anyhow::Result<Episode> {
    let timing = case.timing.clone();
    let since = |t: Instant| t.duration_since(t0).as_secs_f64();
    let samples = Arc::new(Mutex::new(Vec::new()));
    running.tasks.push(tokio::spawn(probe::sample(
        cluster.clone(),
        t0,
        samples.clone(),
        running.stop.clone(),
    )));
    let acted: super::baseline::Acted = Arc::default();

    // The arm.
    let mut agent = None;
    let mut watched = None;
    match arm {
        Arm::Agent => {
            let a = agents::start(env, case, run, rt, api, bus, &running.stop).await?;
            watched = a.watch_inbox;
            agent = Some(a.handle);
            running.tasks.extend(a.tasks);
        }
        Arm::NoAgent => {}
        Arm::Baseline(kind) => running.tasks.push(tokio::spawn(super::baseline::run(
            kind,
            cluster.clone(),
            t0,
            acted.clone(),
            running.stop.clone(),
        ))),
    }
    let watcher_msgs: Arc<Mutex<Vec<(f64, Body)>>> = Arc::default();
    if let Some(mut inbox) = watched {
        let (msgs, stop) = (watcher_msgs.clone(), running.stop.clone());
        running.tasks.push(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = stop.cancelled() => return,
                    n = inbox.next() => n,
                };
                let Some(Ok(d)) = next else { return };
                msgs.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push((t0.elapsed().as_secs_f64(), d.envelope.body.clone()));
                d.ack().await.ok();
            }
        }));
    }

    // The workload.
    let target = match case.workload.target {
        LoadTarget::Component => rt.addr(&case.component)?,
        LoadTarget::FrontEnd => rt.addr("front-end")?,
    };
    let calls = match case.workload.target {
        LoadTarget::Component if case.component == "catalogue" => vec![
            Call::get("/catalogue"),
            Call::get("/catalogue"),
            Call::get("/catalogue/sock-01"),
            Call::get("/tags"),
            Call::get("/catalogue/size"),
        ],
        LoadTarget::Component => vec![Call::get("/health")],
        LoadTarget::FrontEnd => load::shop_mix(),
    };
    let total = timing.warmup_secs + timing.max_secs + timing.answer_secs + 10.0;
    let load_spec = |profile| LoadSpec {
        target,
        calls: calls.clone(),
        profile,
        max_in_flight: 500,
        timeout: Duration::from_secs(5),
    };
    let (preset_profile, ramp) = match case.workload.preset {
        PresetName::Light => (
            Profile::Constant {
                rps: 20.0,
                secs: total,
            },
            None,
        ),
        PresetName::Moderate => (
            Profile::Constant {
                rps: 50.0,
                secs: total,
            },
            None,
        ),
        PresetName::Heavy => (
            Profile::Constant {
                rps: 80.0,
                secs: total,
            },
            None,
        ),
        PresetName::Increase => (
            // One user until the traffic starts rising at the fault.
            Profile::Constant {
                rps: 1.0,
                secs: timing.warmup_secs,
            },
            Some(Profile::Ramp {
                from_rps: 1.0,
                to_rps: 100.0,
                ramp_secs: case.workload.ramp_secs.unwrap_or(100.0),
                hold_secs: total,
            }),
        ),
    };
    let first_load = {
        let spec = load_spec(preset_profile);
        tokio::spawn(async move { load::run(&spec).await })
    };
    running.loads.push(first_load.abort_handle());
    tokio::time::sleep(Duration::from_secs_f64(timing.warmup_secs)).await;

    // Before: the state the task or fault starts from.
    let before = probe::measure(cluster.as_ref(), timing.warmup_secs.max(2.0)).await;
    let uids_before: Vec<u64> = rt.replicas(&case.component)?.iter().map(|r| r.uid).collect();
    let policy = SloPolicy::default();
    let broken_before = probe::broken(&before, &policy);

    // The fault (or, for a task, the moment it is sent).
    let fault_at = Instant::now();
    let mut ramp_load = None;
    match case.fault {
        Some(FaultSpec::PodFailure) => {
            rt.inject(&case.component, Fault::PodFailure, None)?;
        }
        Some(FaultSpec::CpuStress {
            workers,
            load_percent,
        }) => {
            rt.inject(
                &case.component,
                Fault::CpuStress {
                    workers,
                    load_percent,
                },
                None,
            )?;
        }
        Some(FaultSpec::RisingTraffic) | None => {}
    }
    if let Some(profile) = ramp {
        let spec = load_spec(profile);
        let l = tokio::spawn(async move { load::run(&spec).await });
        running.loads.push(l.abort_handle());
        ramp_load = Some(l);
    }
    if case.fault.is_some() {
        tokio::time::sleep(Duration::from_secs_f64(timing.fault_lead_secs)).await;
    }

    // The ask.
    let mut report: Option<ReportBody> = None;
    let mut claim = None;
    let mut goal_state = None;
    let mut goal_reason = None;
    let mut turns = 0u64;
    let mut answered_at = None;
    let mut harness_figure = None;
    let mut harness_healthy = None;
    if let Some(handle) = &agent {
        match &case.ask {
            Ask::Task(_) | Ask::HealthCheck => {
                let r = agents::ask(handle, &case.component, case.ask_text(), timing.answer_secs).await;
                answered_at = Some(Instant::now());
                if let Some(r) = r {
                    claim = Some(if r.status == ReportStatus::Response {
                        Claim::Done
                    } else {
                        Claim::NotDone
                    });
                    report = Some(r);
                } else {
                    claim = Some(Claim::NoAnswer);
                }
            }
            Ask::Goal(text) => {
                let g = agents::goal(handle, text, timing.answer_secs).await;
                answered_at = Some(Instant::now());
                match g {
                    Some(g) => {
                        claim = Some(if g.state == GoalState::Achieved {
                            Claim::Done
                        } else {
                            Claim::NotDone
                        });
                        goal_state = Some(g.state);
                        goal_reason = Some(g.reason.clone());
                        turns = u64::from(g.round);
                    }
                    None => claim = Some(Claim::NoAnswer),
                }
            }
        }
    }
    let answer_time = answered_at.unwrap_or_else(Instant::now);
    if let Some(f) = &case.expect.figure {
        let m = probe::measure(cluster.as_ref(), 60.0).await;
        harness_figure = acv_protocol::measured_value(f.metric, &m);
    }
    if case.expect.verdict_matches_measurement {
        harness_healthy = Some(probe::healthy(
            &probe::measure(cluster.as_ref(), 60.0).await,
            &policy,
        ));
    }

    // After: for tasks, the state a hold window after the answer; for faults, until the SLOs hold or time is up.
    let deadline = fault_at + Duration::from_secs_f64(timing.max_secs);
    if case.fault.is_none() {
        let wait = if agent.is_some() {
            timing.hold_secs
        } else {
            timing.hold_secs * 2.0
        };
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    } else {
        loop {
            let story = probe::story(&lock(&samples), since(fault_at));
            if (story.broken && story.held_secs >= timing.hold_secs) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let window = if case.fault.is_none() {
        timing.hold_secs
    } else {
        probe::SAMPLE_WINDOW_SECS
    };
    let mut after = BTreeMap::new();
    for (name, c) in measured {
        after.insert(name.clone(), probe::measure(c.as_ref(), window).await);
    }
    let pods_after: Vec<(u64, bool)> = rt
        .replicas(&case.component)?
        .iter()
        .map(|r| (r.uid, r.ready))
        .collect();

    running.stop.cancel();
    first_load.abort();
    if let Some(l) = &ramp_load {
        l.abort();
    }
    for t in std::mem::take(&mut running.tasks) {
        if tokio::time::timeout(Duration::from_secs(15), t).await.is_err() {
            tracing::warn!("An episode task did not stop within 15 s.");
        }
    }

    let samples = std::mem::take(&mut *lock(&samples));
    let story = probe::story(&samples, since(fault_at));
    let msgs = std::mem::take(
        &mut *watcher_msgs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    // The agent's first diagnosis after the fault counts, as its first verdict does for L3: its watcher's (issue or
    // mitigation report), which may have fixed things before the task came (the task then rightly finds them
    // healthy), else the report's.
    let mut diagnosis: Option<Diagnosis> = None;
    let mut detected = None;
    let mut steps = report.as_ref().map_or(0, |r| r.steps.len());
    let mut usage = report.as_ref().map(agents::usage).unwrap_or_default();
    turns += report.as_ref().map_or(0, agents::turns);
    for (at, body) in &msgs {
        match body {
            Body::Issue(i) => {
                if *at >= since(fault_at) && detected.is_none() {
                    detected = Some(*at - since(fault_at));
                }
                if diagnosis.is_none() && *at >= since(fault_at) {
                    diagnosis.clone_from(&i.diagnosis);
                }
            }
            Body::Report(r) => {
                steps += r.steps.len();
                turns += agents::turns(r);
                let u = agents::usage(r);
                usage.0 += u.0;
                usage.1 += u.1;
                usage.2 += u.2;
                if diagnosis.is_none() && *at >= since(fault_at) {
                    diagnosis.clone_from(&r.diagnosis);
                }
            }
            _ => {}
        }
    }
    if diagnosis.is_none() {
        diagnosis = report.as_ref().and_then(|r| r.diagnosis.clone());
    }
    if detected.is_none()
        && case.fault.is_some()
        && oracle::verdict(report.as_ref(), diagnosis.as_ref()) == Some(oracle::Verdict::Violated)
    {
        detected = Some(since(answer_time) - since(fault_at));
    }
    let mut actions = probe::actions(&samples);
    for (at, what) in lock(&acted).iter() {
        if detected.is_none() && *at >= since(fault_at) && case.fault.is_some() {
            detected = Some(*at - since(fault_at));
        }
        actions.push(Action {
            t: *at,
            what: what.clone(),
        });
    }
    actions.sort_by(|a, b| a.t.total_cmp(&b.t));

    let end = after
        .get(&case.component)
        .cloned()
        .unwrap_or_else(|| before.clone());
    let end_broken = samples.last().map_or_else(
        || probe::broken(&end, &policy),
        |s| {
            if s.slo_ok {
                Vec::new()
            } else {
                probe::broken(&end, &policy)
            }
        },
    );
    let regressions: Vec<String> = end_broken
        .into_iter()
        .filter(|b| !broken_before.contains(b))
        .collect();

    let flagged = msgs
        .iter()
        .any(|(at, b)| matches!(b, Body::Issue(_)) && *at >= since(fault_at));
    let obs = Observation {
        flagged,
        agent: matches!(arm, Arm::Agent),
        claim,
        report: report.clone(),
        diagnosis: diagnosis.clone(),
        uids_before,
        pods_after,
        after,
        harness_figure,
        harness_healthy,
        slo: story,
        hold_secs: timing.hold_secs,
    };
    let scores = oracle::score_case(case, &obs);
    Ok(Episode {
        case: case.id.clone(),
        arm: arm.name().into(),
        planner: if arm == Arm::Agent {
            env.planners.name()
        } else {
            String::new()
        },
        run,
        mechanism: match case.mechanism {
            MechanismKind::Sidecar => 1,
            MechanismKind::Manager => 2,
        },
        scores,
        fault_at_s: since(fault_at),
        detected_after_s: detected,
        answered_after_s: answered_at.map(|a| since(a) - since(fault_at)),
        mitigated_after_s: if story.broken { story.holding_since } else { None },
        steps: u32::try_from(steps).unwrap_or(u32::MAX),
        turns,
        prompt_tokens: usage.0,
        completion_tokens: usage.1,
        cost_usd: usage.2,
        regressions,
        claim,
        answer: report.map(|r| r.message).or(goal_reason),
        goal_state,
        diagnosis,
        harness_figure,
        harness_healthy,
        slo: story,
        actions,
        samples,
        secs: 0.0,
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
