//! The agent arm of an episode: a sidecar per component on the episode's in-memory bus (with its own SLO watcher in
//! fault cases, mechanism 1), and for goals the manager's engine (mechanism 2) with a fresh SQLite store; the task
//! or goal is sent as `acvctl` would send it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use acv_bus::{Bus, Subscription};
use acv_cluster::Cluster;
use acv_llm::{LlmConfig, Planner};
use acv_manager::client::Client;
use acv_manager::engine::{Engine, EngineConfig, resource_from_text};
use acv_manager::measure::RuntimeMeasurer;
use acv_manager::store::{SqlStore, Store};
use acv_protocol::{Address, ComponentName, GoalRecord, ReportBody, SloPolicy};
use acv_runtime::LocalRuntime;
use acv_sandbox::{LazySandbox, Limits, SafetyMode};
use acv_sidecar::{
    Agent,
    caps::{ClusterCaps, NoPeers},
    handler::{NoPlanner, PlanningHandler, TaskHandler},
    watch::Watcher,
};
use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::case::{Case, MechanismKind};
use super::episode::EpisodeEnv;

/// Which planner the agents use.
#[derive(Clone)]
pub enum PlannerKind {
    /// The offline rules planner.
    Rules,
    /// An OpenAI-compatible LLM; its cache seed is the run's seed (`seed + run - 1`), so a run repeats from cache.
    Llm(Box<LlmConfig>),
    /// No planner: every task answered with an ISSUE, nothing done (the sanity check of the oracles).
    None,
}

/// The planner choice and the sandbox the steps run in.
#[derive(Clone)]
pub struct Planners {
    /// The planner.
    pub kind: PlannerKind,
    /// The sandbox (one for the whole run; `None` only with [`PlannerKind::None`]).
    pub sandbox: Option<Arc<LazySandbox>>,
    /// Base cache seed of the LLM.
    pub seed: u64,
}

impl Planners {
    /// `rules`, `llm:<model>` or `none`.
    pub fn name(&self) -> String {
        match &self.kind {
            PlannerKind::Rules => "rules".into(),
            PlannerKind::Llm(c) => format!("llm:{}", c.backend.model_id()),
            PlannerKind::None => "none".into(),
        }
    }

    fn handler(&self, cluster: Arc<dyn Cluster>, run: u32) -> anyhow::Result<Arc<dyn TaskHandler>> {
        let planner: Arc<dyn Planner> = match &self.kind {
            PlannerKind::None => return Ok(Arc::new(NoPlanner)),
            PlannerKind::Rules => Arc::new(acv_llm::RulesPlanner::new()),
            PlannerKind::Llm(c) => {
                let mut c = (**c).clone();
                c.cache_seed = Some(self.seed + u64::from(run.saturating_sub(1)));
                Arc::new(acv_llm::LlmPlanner::new(
                    acv_llm::ChatClient::new(c).context("LLM client")?,
                ))
            }
        };
        let sandbox = self.sandbox.clone().context("a planner needs the sandbox")?;
        Ok(Arc::new(PlanningHandler {
            planner,
            sandbox,
            cluster: cluster.clone(),
            caps: Arc::new(ClusterCaps::new(cluster.clone(), Arc::new(NoPeers))),
            mode: SafetyMode::Autonomous,
            limits: Limits::default(),
            slo: SloPolicy::default(),
            max_turns: 8,
            settle: Duration::from_secs(2),
            audit: acv_sidecar::audit::AuditLog::disabled(),
            approval_timeout: Duration::from_secs(900),
            guard: acv_sidecar::guard::GuardConfig::default(),
        }))
    }
}

/// How the episode talks to its agents.
pub struct AgentHandle {
    client: tokio::sync::Mutex<Client>,
    engine: Option<(Arc<Engine>, Arc<dyn Store>)>,
    state_dir: Option<PathBuf>,
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        if let Some(d) = &self.state_dir {
            std::fs::remove_dir_all(d).ok();
        }
    }
}

/// The started agents.
pub struct Started {
    /// Ask through this.
    pub handle: AgentHandle,
    /// The sidecars and the manager, ending when the episode's stop token fires.
    pub tasks: Vec<JoinHandle<()>>,
    /// The manager's inbox when no manager runs (mechanism 1 with a watcher): the watcher's issues and reports.
    pub watch_inbox: Option<Subscription>,
}

/// Starts the agents of `case`.
pub async fn start(
    env: &EpisodeEnv,
    case: &Case,
    run: u32,
    rt: &Arc<LocalRuntime>,
    api: std::net::SocketAddr,
    bus: &Arc<dyn Bus>,
    stop: &CancellationToken,
) -> anyhow::Result<Started> {
    let manager = case.mechanism == MechanismKind::Manager;
    let watch = !manager && case.fault.is_some();
    let watch_inbox = if watch {
        Some(bus.subscribe(&Address::Manager).await?)
    } else {
        None
    };
    let components: Vec<String> = if manager {
        case.measured()
    } else {
        vec![case.component.clone()]
    };
    let mut tasks = Vec::new();
    let mut names = Vec::new();
    for c in &components {
        let name = ComponentName::new(c).context("component name")?;
        let cluster: Arc<dyn Cluster> = Arc::new(rt.cluster(c)?);
        let handler = env.planners.handler(cluster.clone(), run)?;
        let mut agent = Agent::new(name.clone(), bus.clone(), handler, Duration::from_secs(1));
        if watch {
            agent = agent.with_watcher(
                Watcher::new(cluster, SloPolicy::default(), 5.0),
                env.watch_interval,
            );
        }
        let fut = agent.start(stop.clone()).await?;
        tasks.push(tokio::spawn(async move {
            if let Err(e) = fut.await {
                tracing::warn!(error = %e, "Sidecar loop ended with an error.");
            }
        }));
        names.push(name);
    }
    let mut engine = None;
    let mut state_dir = None;
    if manager {
        let dir = std::env::temp_dir().join(format!("acv-experiment-{}", uuid::Uuid::new_v4().simple()));
        let store: Arc<dyn Store> = Arc::new(SqlStore::open_sqlite(&dir).await?);
        state_dir = Some(dir);
        let e = Engine::new(
            store.clone(),
            bus.clone(),
            Arc::default(),
            Arc::new(RuntimeMeasurer::new(api, 5.0)),
            EngineConfig {
                default_deadline: Duration::from_secs_f64(case.timing.answer_secs),
                max_rounds: 3,
                subtask_timeout: Duration::from_secs(45),
                max_attempts: 2,
                liveness: Duration::from_secs(5),
                settle: Duration::from_secs(4),
                tick: Duration::from_millis(100),
            },
        );
        let (run_e, stop_e) = (e.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(err) = run_e.run(stop_e).await {
                tracing::warn!(error = %err, "Manager loop ended with an error.");
            }
        }));
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let known = e.registry().read().await.known();
                if names.iter().all(|n| known.contains(n)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .context("the sidecars did not register with the manager")?;
        engine = Some((e, store));
    }
    let client = Client::connect(bus.clone()).await?;
    Ok(Started {
        handle: AgentHandle {
            client: tokio::sync::Mutex::new(client),
            engine,
            state_dir,
        },
        tasks,
        watch_inbox,
    })
}

/// Sends a task and waits for its report (`None` on timeout or a bus failure).
pub async fn ask(h: &AgentHandle, component: &str, text: &str, secs: f64) -> Option<ReportBody> {
    let c = ComponentName::new(component).ok()?;
    let mut client = h.client.lock().await;
    match client.ask(&c, text, Duration::from_secs_f64(secs)).await {
        Ok(reply) => Some(reply.report),
        Err(e) => {
            tracing::info!(error = %e, "No report.");
            None
        }
    }
}

/// States a goal and waits for it to end (cancelled after `secs`); its last record.
pub async fn goal(h: &AgentHandle, text: &str, secs: f64) -> Option<GoalRecord> {
    let (engine, store) = h.engine.as_ref()?;
    let g = engine.create(resource_from_text(text)).await.ok()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let rec = store.goal(&g.id).await.ok().flatten()?;
        if rec.state.is_terminal() {
            return Some(rec);
        }
        if tokio::time::Instant::now() >= deadline {
            return engine.cancel(&g.id).await.ok().or(Some(rec));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Planner turns recorded in a report's evidence.
pub fn turns(r: &ReportBody) -> u64 {
    r.evidence
        .iter()
        .find(|e| e.name == "turns")
        .and_then(|e| e.value.as_u64())
        .unwrap_or(0)
}

/// (prompt tokens, completion tokens, cost USD) recorded in a report's evidence.
pub fn usage(r: &ReportBody) -> (u64, u64, f64) {
    r.evidence
        .iter()
        .find(|e| e.name == "usage")
        .map_or((0, 0, 0.0), |e| {
            let v = &e.value;
            (
                v["prompt_tokens"].as_u64().unwrap_or(0),
                v["completion_tokens"].as_u64().unwrap_or(0),
                v["cost_usd"].as_f64().unwrap_or(0.0),
            )
        })
}
