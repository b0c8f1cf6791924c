//! One step of a goal's lifecycle, decided from its stored state: plan (resolve, measure, split into subtasks),
//! assign (send to live sidecars, retry, time out), verify (measure and decide, or re-plan).

use acv_llm::Subtask;
use acv_llm::planner::rules::goal::{DecomposeError, check_split, resolve, split, subtasks};
use acv_protocol::{
    Address, Body, ComponentName, Envelope, EventKind, Goal, GoalObjective, GoalRecord, GoalState,
    Measurement, Mechanism, Objective, SafetyMode, SubtaskRecord, SubtaskState, TaskBody, TaskSpec,
    goal::{describe_result, evaluate},
};

use super::{Engine, EngineError, ms, new_id};

impl Engine {
    pub(super) async fn step(&self, mut g: GoalRecord) -> Result<(), EngineError> {
        let now = acv_core::now_ms();
        match g.state {
            GoalState::Accepted => {
                self.transition(&mut g, GoalState::Planning, "decomposing".into())
                    .await
            }
            GoalState::Planning => self.plan(g, now).await,
            GoalState::Assigned => self.assign(g, now).await,
            GoalState::Verifying => self.verify(g, now).await,
            GoalState::Achieved | GoalState::Failed | GoalState::Partial | GoalState::Cancelled => Ok(()),
        }
    }

    async fn plan(&self, mut g: GoalRecord, now: u64) -> Result<(), EngineError> {
        let known = self.registry.read().await.known();
        let objectives = match resolve(&g.spec, &known) {
            Ok(o) => o,
            Err(e @ (DecomposeError::UnknownComponent { .. } | DecomposeError::NoComponent { .. }))
                if self.warming_up(now) =>
            {
                tracing::debug!(goal = %g.id, error = %e, "Waiting for the registry to fill after start.");
                return Ok(());
            }
            Err(e) => {
                return self
                    .transition(&mut g, GoalState::Failed, format!("refused: {e}"))
                    .await;
            }
        };
        let components = components_of(&objectives);
        let measured = self.measurer.measure(&components).await;
        let results = evaluate(&objectives, &measured);
        g.objectives = objectives.clone();
        g.results = results.clone();
        let facts = results.iter().map(describe_result).collect::<Vec<_>>().join("; ");
        self.record(
            &g,
            EventKind::Measurement,
            &format!("measured before round {}: {facts}", g.round + 1),
        )
        .await?;
        if g.spec.safety == Some(SafetyMode::Observe) {
            let met = results.iter().all(|r| r.met);
            let state = if met {
                GoalState::Achieved
            } else {
                GoalState::Failed
            };
            return self
                .transition(&mut g, state, format!("observe mode, nothing assigned: {facts}"))
                .await;
        }
        let unmet: Vec<_> = objectives
            .iter()
            .zip(&results)
            .filter(|(_, r)| !r.met)
            .map(|(o, _)| o.clone())
            .collect();
        if unmet.is_empty() {
            return self
                .transition(&mut g, GoalState::Achieved, format!("already holds: {facts}"))
                .await;
        }
        g.round += 1;
        let tasks = self.split_round(&g, &unmet, &known, &measured).await?;
        let mut names = Vec::new();
        let mut records = Vec::with_capacity(tasks.len());
        let mut events = Vec::with_capacity(tasks.len());
        for t in tasks {
            let s = SubtaskRecord {
                id: format!("{}-r{}-{}", g.id, g.round, t.component),
                goal_id: g.id.clone(),
                round: g.round,
                component: t.component.clone(),
                spec: t.spec.clone(),
                state: SubtaskState::Pending,
                attempts: 0,
                deadline_ms: now
                    .saturating_add(ms(self.config.subtask_timeout))
                    .min(g.deadline_ms),
                updated_ms: now,
                report_status: None,
                message: String::new(),
            };
            events.push((
                EventKind::Subtask,
                format!("subtask {} for {}: {}", s.id, s.component, s.spec.text()),
            ));
            names.push(t.component.to_string());
            records.push(s);
        }
        // One transaction for the whole round (a goal over 1,000 components is one write, not 2,000).
        self.commit(&g, &records, events).await?;
        let reason = format!(
            "round {}: {} subtask(s) for {}",
            g.round,
            names.len(),
            names.join(", ")
        );
        self.transition(&mut g, GoalState::Assigned, reason).await
    }

    /// This round's subtasks: the rules' split by measured share, or the LLM planner's proposal when one is
    /// configured and it passes the rules' check (an event records which, and why a proposal was refused).
    async fn split_round(
        &self,
        g: &GoalRecord,
        unmet: &[GoalObjective],
        known: &[ComponentName],
        measured: &[(ComponentName, Measurement)],
    ) -> Result<Vec<Subtask>, EngineError> {
        let rules = || subtasks(&g.spec.text, &split(unmet, measured));
        let Some(planner) = &self.decomposer else {
            return Ok(rules());
        };
        let wanted = unmet
            .iter()
            .map(GoalObjective::describe)
            .collect::<Vec<_>>()
            .join("; ");
        let text = if g.spec.text.trim().is_empty() {
            format!("Reach: {wanted}.")
        } else {
            format!("{} (objectives: {wanted})", g.spec.text.trim())
        };
        let goal = Goal {
            text,
            objectives: Vec::new(),
        };
        let proposal = match planner.decompose(&goal, known, measured).await {
            Ok(p) => p,
            Err(e) => {
                self.record(
                    g,
                    EventKind::Subtask,
                    &format!(
                        "{} could not decompose ({e}); using the rules decomposer",
                        planner.name()
                    ),
                )
                .await?;
                return Ok(rules());
            }
        };
        let parts: Vec<(ComponentName, Vec<Objective>)> = proposal
            .iter()
            .map(|s| {
                let objectives = match &s.spec {
                    TaskSpec::Declarative { goal } => goal.objectives.clone(),
                    TaskSpec::Imperative { .. } => Vec::new(),
                };
                (s.component.clone(), objectives)
            })
            .collect();
        match check_split(unmet, &parts) {
            Ok(()) => {
                self.record(
                    g,
                    EventKind::Subtask,
                    &format!(
                        "{} decomposed round {} (checked by the rules)",
                        planner.name(),
                        g.round
                    ),
                )
                .await?;
                Ok(proposal)
            }
            Err(why) => {
                self.record(
                    g,
                    EventKind::Subtask,
                    &format!(
                        "{} proposed a split the rules refuse ({why}); using the rules decomposer",
                        planner.name()
                    ),
                )
                .await?;
                Ok(rules())
            }
        }
    }

    async fn assign(&self, mut g: GoalRecord, now: u64) -> Result<(), EngineError> {
        let goal_over = now >= g.deadline_ms;
        let liveness = ms(self.config.liveness);
        let mut open = 0;
        let mut changed = Vec::new();
        let mut events = Vec::new();
        for mut s in self.store.subtasks(&g.id).await? {
            if s.round != g.round || !s.state.is_open() {
                continue;
            }
            let live = self.registry.read().await.is_live(&s.component, now, liveness);
            let expired = now >= s.deadline_ms;
            if goal_over {
                s.state = SubtaskState::TimedOut;
                s.message = if live {
                    "the goal's deadline passed before an answer".into()
                } else {
                    format!(
                        "the goal's deadline passed before an answer, and the sidecar of {} is not live (no \
                         heartbeat within {}s)",
                        s.component,
                        self.config.liveness.as_secs()
                    )
                };
            } else {
                match s.state {
                    SubtaskState::Pending if live => events.push(self.send(&g, &mut s, now).await?),
                    SubtaskState::Pending if expired => {
                        s.state = SubtaskState::TimedOut;
                        s.message = format!(
                            "the sidecar of {} is not live (no heartbeat within {}s)",
                            s.component,
                            self.config.liveness.as_secs()
                        );
                    }
                    SubtaskState::Sent if expired && s.attempts < self.config.max_attempts && live => {
                        events.push(self.send(&g, &mut s, now).await?);
                    }
                    SubtaskState::Sent if expired => {
                        s.state = SubtaskState::TimedOut;
                        s.message = if live {
                            format!("no answer from {} after {} attempt(s)", s.component, s.attempts)
                        } else {
                            format!(
                                "no answer from {} after {} attempt(s), and its sidecar is not live",
                                s.component, s.attempts
                            )
                        };
                    }
                    _ => {
                        open += 1;
                        continue;
                    }
                }
            }
            s.updated_ms = now;
            if s.state == SubtaskState::TimedOut {
                events.push((
                    EventKind::Subtask,
                    format!("subtask {} timed out: {}", s.id, s.message),
                ));
            } else {
                open += 1;
            }
            changed.push(s);
        }
        // Every send and time-out of this tick in one transaction. A crash between a send and this write leaves
        // the subtask as it was, so it is sent again with the same id (sidecars and the report path are
        // idempotent on it).
        self.commit(&g, &changed, events).await?;
        if open == 0 {
            let reason = if goal_over {
                "deadline reached; measuring".to_owned()
            } else {
                format!("round {} answered; measuring", g.round)
            };
            self.transition(&mut g, GoalState::Verifying, reason).await?;
        }
        Ok(())
    }

    /// Publishes one attempt of `s` and updates it (the caller stores it); returns the event to record.
    async fn send(
        &self,
        g: &GoalRecord,
        s: &mut SubtaskRecord,
        now: u64,
    ) -> Result<(EventKind, String), EngineError> {
        s.attempts += 1;
        s.state = SubtaskState::Sent;
        s.deadline_ms = now
            .saturating_add(ms(self.config.subtask_timeout))
            .min(g.deadline_ms);
        // A fresh envelope id per attempt (the bus drops duplicate envelope ids); the task id stays the subtask's
        // id, so the answer is matched whichever attempt it answers.
        let env = Envelope::new(
            new_id(),
            Address::Manager,
            Address::Component(s.component.clone()),
            now,
            Body::Task(TaskBody {
                task_id: s.id.clone(),
                component: s.component.clone(),
                spec: s.spec.clone(),
                mechanism: Mechanism::ManagerLed,
            }),
        )
        .with_deadline_ms(s.deadline_ms);
        self.bus.publish(&env).await?;
        Ok((
            EventKind::Subtask,
            format!("sent {} to {} (attempt {})", s.id, s.component, s.attempts),
        ))
    }

    async fn verify(&self, mut g: GoalRecord, now: u64) -> Result<(), EngineError> {
        let deadline_passed = now >= g.deadline_ms;
        if now < g.updated_ms.saturating_add(ms(self.config.settle)) && !deadline_passed {
            return Ok(());
        }
        let measured = self.measurer.measure(&components_of(&g.objectives)).await;
        let results = evaluate(&g.objectives, &measured);
        g.results = results.clone();
        let facts = results.iter().map(describe_result).collect::<Vec<_>>().join("; ");
        self.record(
            &g,
            EventKind::Measurement,
            &format!("verified after round {}: {facts}", g.round),
        )
        .await?;
        if results.iter().all(|r| r.met) {
            return self
                .transition(&mut g, GoalState::Achieved, format!("achieved: {facts}"))
                .await;
        }
        let some_met = results.iter().any(|r| r.met);
        let subs = self.store.subtasks(&g.id).await?;
        let silent: Vec<String> = subs
            .iter()
            .filter(|s| s.round == g.round && s.state == SubtaskState::TimedOut)
            .map(|s| format!("{} ({})", s.component, s.message))
            .collect();
        let end = if some_met {
            GoalState::Partial
        } else {
            GoalState::Failed
        };
        if !silent.is_empty() {
            let reason = format!("no answer from {}; measured: {facts}", silent.join(", "));
            return self.transition(&mut g, end, reason).await;
        }
        let max_rounds = g.spec.max_rounds.unwrap_or(self.config.max_rounds);
        if deadline_passed || g.round >= max_rounds {
            let why = if deadline_passed {
                "deadline passed".to_owned()
            } else {
                format!("not reached after {} round(s)", g.round)
            };
            return self.transition(&mut g, end, format!("{why}: {facts}")).await;
        }
        self.transition(
            &mut g,
            GoalState::Planning,
            format!("not reached yet, re-planning: {facts}"),
        )
        .await
    }
}

fn components_of(objectives: &[GoalObjective]) -> Vec<ComponentName> {
    let mut out: Vec<ComponentName> = Vec::new();
    for o in objectives {
        for c in &o.components {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
    }
    out
}
