//! The goal engine: takes goals, decomposes them (the rules decomposer, or the LLM planner's manager prompt checked
//! by the rules), assigns subtasks to sidecars over the bus, handles silence (no heartbeat, no answer) with retries and deadlines, verifies by its own measurement and
//! re-plans up to a round limit.
//!
//! Every decision is taken from the stored state ([`Store`]) on a tick, so a manager killed at any point and started
//! again continues where the store says the goal is: `accepted → planning → assigned → verifying →
//! achieved | failed | partial | cancelled`, each transition an event.

use std::sync::Arc;
use std::time::Duration;

use acv_bus::{Bus, BusError};
use acv_llm::Planner;
use acv_llm::planner::rules::goal::{DecomposeError, resolve};
use acv_protocol::{
    Address, Body, ComponentName, Envelope, EventKind, GoalError, GoalEvent, GoalRecord, GoalResource,
    GoalSpec, GoalState, Mechanism, ReportBody, ReportStatus, SubtaskRecord, SubtaskState, TaskBody,
    TaskSpec,
};
use acv_telemetry::metrics::{GaugeName, HistogramName, observe, set};
use tokio::sync::{Mutex, Notify, RwLock, broadcast};
use tokio_util::sync::CancellationToken;

mod approvals;
mod lifecycle;

pub use approvals::{DecideError, MAX_DECISION_TEXT};

use crate::measure::Measurer;
use crate::registry::Registry;
use crate::store::{GoalFilter, NewEvent, Store, StoreError, TaskRecord, TaskState};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Deadline of a goal that gives none.
    pub default_deadline: Duration,
    /// Rounds of a goal that gives none.
    pub max_rounds: u32,
    /// How long one attempt of a subtask may take before it is retried.
    pub subtask_timeout: Duration,
    /// Attempts per subtask (first send included).
    pub max_attempts: u32,
    /// A sidecar is live when its last heartbeat is at most this old.
    pub liveness: Duration,
    /// Wait after the last answer before measuring, so the metrics window shows the change.
    pub settle: Duration,
    /// How often goals are stepped.
    pub tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_deadline: Duration::from_secs(600),
            max_rounds: 3,
            subtask_timeout: Duration::from_secs(180),
            max_attempts: 2,
            liveness: Duration::from_secs(35),
            settle: Duration::from_secs(5),
            tick: Duration::from_millis(250),
        }
    }
}

/// Why the engine refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The goal is malformed (kind, name, empty, impossible, contradictory).
    #[error("invalid goal: {0}")]
    Invalid(#[from] GoalError),
    /// The goal cannot be decomposed against the registry (unknown component, no objective).
    #[error("goal refused: {0}")]
    Refused(#[from] DecomposeError),
    /// A goal with this name exists with a different spec.
    #[error("goal {0:?} already exists with a different spec")]
    Conflict(String),
    /// The goal is already finished.
    #[error("goal {id:?} is already {state}")]
    Finished {
        /// Goal.
        id: String,
        /// Its state.
        state: GoalState,
    },
    /// No such goal.
    #[error("goal {0:?} not found")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The goal engine. Cheap to share: the API and the loops hold an `Arc`.
pub struct Engine {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    registry: Arc<RwLock<Registry>>,
    measurer: Arc<dyn Measurer>,
    /// The LLM planner whose manager prompt proposes each round's split (validated by the rules decomposer, which
    /// is used instead when the proposal fails); `None`: the rules decomposer alone.
    decomposer: Option<Arc<dyn Planner>>,
    config: EngineConfig,
    events: broadcast::Sender<GoalEvent>,
    wake: Notify,
    /// Goal steps and report handling run one at a time, so an answer is never overwritten by a resend.
    step_lock: Mutex<()>,
    started_ms: u64,
    /// When `acv_goals` was last set.
    gauge_at: Mutex<u64>,
}

/// How often the goals gauge is recomputed, ms.
const GOAL_GAUGE_EVERY_MS: u64 = 2_000;

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// === impl Engine ===

impl Engine {
    /// An engine over these parts with the rules decomposer; [`Engine::run`] starts it.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        registry: Arc<RwLock<Registry>>,
        measurer: Arc<dyn Measurer>,
        config: EngineConfig,
    ) -> Arc<Self> {
        Self::with_decomposer(store, bus, registry, measurer, config, None)
    }

    /// An engine whose rounds are split by `decomposer` (the LLM planner's manager prompt) when given: its proposal
    /// is checked by the rules decomposer ([`check_split`](acv_llm::planner::rules::goal::check_split)) and
    /// replaced by the rules' own split, with an event saying why, when it names other components, leaves one out
    /// or does not add up to the goal, or when the LLM fails.
    pub fn with_decomposer(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        registry: Arc<RwLock<Registry>>,
        measurer: Arc<dyn Measurer>,
        config: EngineConfig,
        decomposer: Option<Arc<dyn Planner>>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self {
            store,
            bus,
            registry,
            measurer,
            decomposer,
            config,
            events,
            wake: Notify::new(),
            step_lock: Mutex::new(()),
            started_ms: acv_core::now_ms(),
            gauge_at: Mutex::new(0),
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The registry of sidecars.
    pub fn registry(&self) -> &Arc<RwLock<Registry>> {
        &self.registry
    }

    /// How the engine measures components (the dashboard samples through it too).
    pub fn measurer(&self) -> &Arc<dyn Measurer> {
        &self.measurer
    }

    /// The liveness window.
    pub fn liveness(&self) -> Duration {
        self.config.liveness
    }

    /// Every event as it is recorded (for SSE).
    pub fn subscribe(&self) -> broadcast::Receiver<GoalEvent> {
        self.events.subscribe()
    }

    /// Still within the first liveness window after start: the registry may not have heard every sidecar yet.
    fn warming_up(&self, now: u64) -> bool {
        now.saturating_sub(self.started_ms) < ms(self.config.liveness)
    }

    /// Accepts a goal: validates it, checks it decomposes against the registry (unless the registry may still be
    /// filling after a start), stores it and wakes the loop. A resource whose name exists with the same spec
    /// returns the stored goal (idempotent apply).
    pub async fn create(&self, resource: GoalResource) -> Result<GoalRecord, EngineError> {
        resource.validate()?;
        let now = acv_core::now_ms();
        let known = self.registry.read().await.known();
        if let Err(e) = resolve(&resource.spec, &known)
            && !(self.warming_up(now)
                && matches!(
                    e,
                    DecomposeError::UnknownComponent { .. } | DecomposeError::NoComponent { .. }
                ))
        {
            return Err(e.into());
        }
        let id = resource
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| format!("goal-{}", &uuid::Uuid::now_v7().simple().to_string()[..20]));
        let deadline = resource
            .spec
            .deadline_seconds
            .map_or(self.config.default_deadline, Duration::from_secs);
        let goal = GoalRecord {
            id: id.clone(),
            spec: resource.spec,
            objectives: Vec::new(),
            state: GoalState::Accepted,
            round: 0,
            reason: "accepted".into(),
            created_ms: now,
            updated_ms: now,
            deadline_ms: now.saturating_add(ms(deadline)),
            results: Vec::new(),
        };
        match self.store.create_goal(&goal).await {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                let existing = self
                    .store
                    .goal(&id)
                    .await?
                    .ok_or_else(|| EngineError::NotFound(id.clone()))?;
                return if existing.spec == goal.spec {
                    Ok(existing)
                } else {
                    Err(EngineError::Conflict(id))
                };
            }
            Err(e) => return Err(e.into()),
        }
        let text = if goal.spec.text.is_empty() {
            format!("{} objective(s)", goal.spec.objectives.len())
        } else {
            format!("{:?}", goal.spec.text)
        };
        self.record(&goal, EventKind::State, &format!("accepted: {text}"))
            .await?;
        self.wake.notify_one();
        Ok(goal)
    }

    /// Cancels a goal that is not finished; its open subtasks are cancelled too.
    pub async fn cancel(&self, id: &str) -> Result<GoalRecord, EngineError> {
        let _one = self.step_lock.lock().await;
        let mut g = self
            .store
            .goal(id)
            .await?
            .ok_or_else(|| EngineError::NotFound(id.to_owned()))?;
        if g.state.is_terminal() {
            return Err(EngineError::Finished {
                id: g.id,
                state: g.state,
            });
        }
        let now = acv_core::now_ms();
        let mut closed = Vec::new();
        for mut s in self.store.subtasks(id).await? {
            if s.state.is_open() {
                s.state = SubtaskState::Cancelled;
                s.updated_ms = now;
                s.message = "goal cancelled".into();
                closed.push(s);
            }
        }
        self.commit(&g, &closed, Vec::new()).await?;
        self.transition(&mut g, GoalState::Cancelled, "cancelled on request".into())
            .await?;
        Ok(g)
    }

    /// Sends an imperative task to a component through the manager and records it; the report is recorded when it
    /// comes.
    pub async fn send_task(
        &self,
        component: ComponentName,
        text: String,
        timeout: Duration,
    ) -> Result<TaskRecord, EngineError> {
        let now = acv_core::now_ms();
        let task = TaskRecord {
            id: new_id(),
            component: component.clone(),
            text: text.clone(),
            state: TaskState::Sent,
            created_ms: now,
            updated_ms: now,
            report: None,
        };
        self.store.create_task(&task).await?;
        let env = Envelope::new(
            new_id(),
            Address::Manager,
            Address::Component(component.clone()),
            now,
            Body::Task(TaskBody {
                task_id: task.id.clone(),
                component,
                spec: TaskSpec::Imperative { text },
                mechanism: Mechanism::Solo,
            }),
        )
        .with_deadline_ms(now.saturating_add(ms(timeout)));
        self.bus.publish(&env).await?;
        Ok(task)
    }

    /// Runs the bus listener and the goal loop until `shutdown`. Goals left in flight by a previous process are
    /// picked up from the store on the first tick.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Result<(), BusError> {
        let mut inbox = self.bus.subscribe(&Address::Manager).await?;
        let mut broadcast = self.bus.subscribe(&Address::Broadcast).await?;
        let active = self
            .store
            .goals(GoalFilter::Active, u32::MAX >> 1)
            .await
            .map_or(0, |g| g.len());
        tracing::info!(transport = %self.bus.transport(), store = self.store.backend(), resumed = active,
            "Manager engine running.");
        // Both halves run in this one task (not spawned), so aborting it stops everything at once.
        let driver = async {
            let mut tick = tokio::time::interval(self.config.tick);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                    _ = self.wake.notified() => {}
                }
                if let Err(error) = self.step_all().await {
                    tracing::warn!(%error, "Goal step failed; retrying on the next tick.");
                }
                if let Err(error) = self.expire_approvals().await {
                    tracing::warn!(%error, "Expiring approvals failed; retrying on the next tick.");
                }
                self.publish_goal_gauge().await;
            }
        };
        let listener = async {
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break Ok::<(), BusError>(()),
                    next = broadcast.next() => match next {
                        None => break Err(BusError::Closed),
                        Some(Err(error)) => tracing::warn!(%error, "Broadcast error."),
                        Some(Ok(d)) => {
                            if self.registry.write().await.apply(&d.envelope)
                                && let Body::Register(r) = &d.envelope.body
                            {
                                tracing::info!(component = %r.component, planner = %r.planner, "Sidecar registered.");
                            }
                            if let Err(error) = d.ack().await {
                                tracing::debug!(%error, "Broadcast ack failed.");
                            }
                        }
                    },
                    next = inbox.next() => match next {
                        None => break Err(BusError::Closed),
                        Some(Err(error)) => tracing::warn!(%error, "Inbox error."),
                        Some(Ok(d)) => {
                            let handled = match &d.envelope.body {
                                Body::Report(r) => self.on_report(r).await,
                                Body::Issue(i) => {
                                    tracing::warn!(component = %i.component, message = %i.message, "Issue raised.");
                                    Ok(())
                                }
                                Body::ApprovalRequest(a) => self.on_approval_request(a).await,
                                Body::ApprovalResult(r) => self.on_approval_result(r).await,
                                Body::Audit(batch) => self
                                    .store
                                    .insert_audit(&batch.records)
                                    .await
                                    .map(|_new| ())
                                    .map_err(EngineError::from),
                                other => {
                                    tracing::debug!(kind = ?other.kind(), "Ignored message.");
                                    Ok(())
                                }
                            };
                            // Not acking on a store failure makes the broker deliver the report again.
                            let acked = match handled {
                                Ok(()) => d.ack().await,
                                Err(error) => {
                                    tracing::warn!(%error, "Recording a report failed; leaving it unacked.");
                                    d.nack().await
                                }
                            };
                            if let Err(error) = acked {
                                tracing::warn!(%error, "Ack failed.");
                            }
                        }
                    },
                }
            }
        };
        tokio::select! {
            r = listener => r,
            () = driver => Ok(()),
        }
    }

    async fn on_report(&self, r: &ReportBody) -> Result<(), EngineError> {
        let _one = self.step_lock.lock().await;
        let now = acv_core::now_ms();
        if let Some(mut s) = self.store.subtask(&r.task_id).await? {
            if !s.state.is_open() {
                tracing::debug!(id = %s.id, "Report for a closed subtask ignored (duplicate or late).");
                return Ok(());
            }
            if s.state == SubtaskState::Sent {
                // Sent at `updated_ms` (the latest attempt).
                observe(
                    HistogramName::TaskRoundTripSeconds,
                    &[],
                    now.saturating_sub(s.updated_ms) as f64 / 1000.0,
                );
            }
            s.state = match r.status {
                ReportStatus::Response => SubtaskState::Done,
                ReportStatus::Issue => SubtaskState::Issue,
            };
            s.report_status = Some(r.status);
            s.message = r.message.clone();
            s.updated_ms = now;
            let word = match r.status {
                ReportStatus::Response => "RESPONSE",
                ReportStatus::Issue => "ISSUE",
            };
            match self.store.goal(&s.goal_id).await? {
                // The answer and its event in one transaction.
                Some(g) => {
                    let event = (
                        EventKind::Report,
                        format!("{} answered {word}: {}", s.component, r.message),
                    );
                    self.commit(&g, std::slice::from_ref(&s), vec![event]).await?;
                }
                None => self.store.put_subtask(&s).await?,
            }
            self.wake.notify_one();
        } else if let Some(mut t) = self.store.task(&r.task_id).await? {
            if t.state == TaskState::Sent {
                observe(
                    HistogramName::TaskRoundTripSeconds,
                    &[],
                    now.saturating_sub(t.created_ms) as f64 / 1000.0,
                );
            }
            t.state = TaskState::Reported;
            t.report = Some(r.clone());
            t.updated_ms = now;
            self.store.update_task(&t).await?;
        } else {
            tracing::debug!(task_id = %r.task_id, component = %r.component, "Report for an unknown task ignored.");
        }
        Ok(())
    }

    /// Sets `acv_goals{state}` from the store, at most every few seconds (it is a count over every goal).
    async fn publish_goal_gauge(&self) {
        let now = acv_core::now_ms();
        {
            let mut last = self.gauge_at.lock().await;
            if now.saturating_sub(*last) < GOAL_GAUGE_EVERY_MS {
                return;
            }
            *last = now;
        }
        match self.store.goal_counts().await {
            Ok(counts) => {
                for state in GoalState::ALL {
                    let n = counts.iter().find(|(s, _)| *s == state).map_or(0, |(_, n)| *n);
                    set(GaugeName::Goals, &[("state", state.as_str())], n as f64);
                }
            }
            Err(error) => tracing::debug!(%error, "Counting goals for the gauge failed."),
        }
    }

    /// Steps every active goal once.
    pub async fn step_all(&self) -> Result<(), EngineError> {
        let goals = self.store.goals(GoalFilter::Active, 10_000).await?;
        for g in goals {
            let _one = self.step_lock.lock().await;
            // Re-read under the lock: a report or a cancel may have changed it.
            let Some(g) = self.store.goal(&g.id).await? else {
                continue;
            };
            let id = g.id.clone();
            if let Err(error) = self.step(g).await {
                tracing::warn!(goal = %id, %error, "Goal step failed.");
            }
        }
        Ok(())
    }

    async fn transition(
        &self,
        g: &mut GoalRecord,
        state: GoalState,
        reason: String,
    ) -> Result<(), EngineError> {
        g.state = state;
        g.reason = reason;
        g.updated_ms = acv_core::now_ms();
        self.store.update_goal(g).await?;
        let message = format!("{state}: {}", g.reason);
        if state.is_terminal() {
            tracing::info!(goal = %g.id, %state, reason = %g.reason, "Goal finished.");
        }
        self.record(g, EventKind::State, &message).await
    }

    /// Stores `subtasks` and appends `events` (kind, message; at the goal's current state) in one transaction.
    async fn commit(
        &self,
        g: &GoalRecord,
        subtasks: &[SubtaskRecord],
        events: Vec<(EventKind, String)>,
    ) -> Result<(), EngineError> {
        if subtasks.is_empty() && events.is_empty() {
            return Ok(());
        }
        let at_ms = acv_core::now_ms();
        let events: Vec<NewEvent> = events
            .into_iter()
            .map(|(kind, message)| NewEvent {
                at_ms,
                kind,
                state: g.state,
                message,
            })
            .collect();
        for e in self.store.put_batch(&g.id, subtasks, &events).await? {
            // Nobody listening is fine.
            let _receivers = self.events.send(e);
        }
        Ok(())
    }

    async fn record(&self, g: &GoalRecord, kind: EventKind, message: &str) -> Result<(), EngineError> {
        let e = self
            .store
            .append_event(&g.id, acv_core::now_ms(), kind, g.state, message)
            .await?;
        // Nobody listening is fine.
        let _receivers = self.events.send(e);
        Ok(())
    }
}

/// A goal resource from plain words (what `acvctl goal create TEXT` sends).
pub fn resource_from_text(text: &str) -> GoalResource {
    GoalResource::new(None, GoalSpec::from_text(text))
}
