//! One step of a goal's lifecycle, decided from its stored state: plan (resolve, measure, split into subtasks),
//! assign (send to live sidecars, retry, time out), verify (measure and decide, or re-plan).

use acv_llm::planner::rules::goal::{DecomposeError, resolve, split, subtasks};
use acv_protocol::{
    Address, Body, ComponentName, Envelope, EventKind, GoalObjective, GoalRecord, GoalState, Mechanism,
    SafetyMode, SubtaskRecord, SubtaskState, TaskBody,
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
        let parts = split(&unmet, &measured);
        g.round += 1;
        let tasks = subtasks(&g.spec.text, &parts);
        let mut names = Vec::new();
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
            self.store.put_subtask(&s).await?;
            self.record(
                &g,
                EventKind::Subtask,
                &format!("subtask {} for {}: {}", s.id, s.component, s.spec.text()),
            )
            .await?;
            names.push(t.component.to_string());
        }
        let reason = format!(
            "round {}: {} subtask(s) for {}",
            g.round,
            names.len(),
            names.join(", ")
        );
        self.transition(&mut g, GoalState::Assigned, reason).await
    }

    async fn assign(&self, mut g: GoalRecord, now: u64) -> Result<(), EngineError> {
        let goal_over = now >= g.deadline_ms;
        let liveness = ms(self.config.liveness);
        let mut open = 0;
        for mut s in self.store.subtasks(&g.id).await? {
            if s.round != g.round || !s.state.is_open() {
                continue;
            }
            let live = self.registry.read().await.is_live(&s.component, now, liveness);
            let expired = now >= s.deadline_ms;
            if goal_over {
                s.state = SubtaskState::TimedOut;
                s.message = "the goal's deadline passed before an answer".into();
            } else {
                match s.state {
                    SubtaskState::Pending if live => self.send(&g, &mut s, now).await?,
                    SubtaskState::Pending if expired => {
                        s.state = SubtaskState::TimedOut;
                        s.message = format!(
                            "the sidecar of {} is not live (no heartbeat within {}s)",
                            s.component,
                            self.config.liveness.as_secs()
                        );
                    }
                    SubtaskState::Sent if expired && s.attempts < self.config.max_attempts && live => {
                        self.send(&g, &mut s, now).await?;
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
            self.store.put_subtask(&s).await?;
            if s.state == SubtaskState::TimedOut {
                self.record(
                    &g,
                    EventKind::Subtask,
                    &format!("subtask {} timed out: {}", s.id, s.message),
                )
                .await?;
            } else {
                open += 1;
            }
        }
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

    async fn send(&self, g: &GoalRecord, s: &mut SubtaskRecord, now: u64) -> Result<(), EngineError> {
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
        self.record(
            g,
            EventKind::Subtask,
            &format!("sent {} to {} (attempt {})", s.id, s.component, s.attempts),
        )
        .await?;
        Ok(())
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
