//! What the sidecar does with one piece of work (a task, or SLO violations it found itself): plan with the
//! configured [`Planner`], run each step in the sandbox, and turn the outcome into a report.

use std::{sync::Arc, time::Duration};

use acv_cluster::Cluster;
use acv_llm::{Baseline, MaintainerContext, Planner, Trigger, drive};
use acv_protocol::{
    ApprovalRequest, ComponentName, Evidence, PENDING_APPROVAL_EVIDENCE, ReportBody, ReportStatus, SloPolicy,
    TaskBody, Violation,
};
use acv_sandbox::{Capabilities, HostCall, HostError, LazySandbox, Limits, SafetyMode};
use async_trait::async_trait;

use crate::{
    approvals::call_args,
    audit::AuditLog,
    exec::{Queued, SandboxExecutor},
    guard::{Guard, GuardConfig, GuardEvent},
};

/// Handles work and produces the report that answers it.
#[async_trait]
pub trait TaskHandler: Send + Sync {
    /// Handles a task for `component`.
    async fn handle(&self, component: &ComponentName, task: &TaskBody) -> ReportBody;
    /// Handles SLO violations the sidecar detected itself; `work_id` identifies this episode.
    async fn mitigate(
        &self,
        component: &ComponentName,
        work_id: &str,
        violations: &[Violation],
    ) -> ReportBody;
    /// A short name for the registry (`none`, `rules`, `llm:<model>`).
    fn planner_name(&self) -> String;
    /// The safety mode the handler's programs run in, for the registry (`None`: it runs none).
    fn safety(&self) -> Option<SafetyMode> {
        None
    }
    /// Runs a call an operator approved (approve mode) against the own component; its result as JSON. Handlers
    /// that cannot act say so.
    async fn execute_approved(
        &self,
        component: &ComponentName,
        call: &HostCall,
    ) -> Result<serde_json::Value, HostError> {
        let _ = call;
        Err(HostError::unavailable(format!(
            "the sidecar of {component} has no cluster backend to run the call on"
        )))
    }
    /// Handles SLO violations with what the watcher knows about the episode (the healthy baseline, its metrics
    /// window). The default ignores it and calls [`mitigate`](Self::mitigate).
    async fn mitigate_episode(
        &self,
        component: &ComponentName,
        work_id: &str,
        violations: &[Violation],
        episode: &Episode,
    ) -> ReportBody {
        let _ = episode;
        self.mitigate(component, work_id, violations).await
    }
}

/// What the watcher hands a mitigation besides the violations.
#[derive(Debug, Clone, Default)]
pub struct Episode {
    /// What the component looked like while healthy, and the capacity before the episode.
    pub baseline: Option<Baseline>,
    /// The watcher's metrics window (seconds); observations during the mitigation use it too, so a fix shows up
    /// as soon as the watcher would see it. 0: the default 60 s.
    pub window_secs: f64,
}

/// The id of the approval for call `seq` of step `step` in episode `work_id`: stable, so a redone episode asks
/// for the same approvals, and safe in a URL.
pub fn approval_id(work_id: &str, step: u32, seq: u32) -> String {
    let mut base: String = work_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':') {
                c
            } else {
                '_'
            }
        })
        .take(150)
        .collect();
    if base.is_empty() {
        base.push('_');
    }
    format!("{base}.s{step}.c{seq}")
}

/// The approval requests for the calls an episode queued, expiring `timeout` after now.
pub fn approval_requests(
    component: &ComponentName,
    work_id: &str,
    task_id: Option<&str>,
    queued: &[Queued],
    timeout: Duration,
) -> Vec<ApprovalRequest> {
    let now = acv_core::now_ms();
    let expires = now.saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
    queued
        .iter()
        .map(|q| ApprovalRequest {
            id: approval_id(work_id, q.step, q.pending.seq),
            component: component.clone(),
            episode: work_id.to_owned(),
            task_id: task_id.map(str::to_owned),
            call: q.pending.call.name().to_owned(),
            args: call_args(&q.pending.call),
            program: q.program.clone(),
            step: q.step,
            seq: q.pending.seq,
            requested_at_ms: now,
            expires_at_ms: expires,
        })
        .collect()
}

/// The handler used while no planner is configured: it does nothing and says so, as an ISSUE report.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPlanner;

#[async_trait]
impl TaskHandler for NoPlanner {
    async fn handle(&self, component: &ComponentName, task: &TaskBody) -> ReportBody {
        ReportBody {
            diagnosis: None,
            task_id: task.task_id.clone(),
            component: component.clone(),
            status: ReportStatus::Issue,
            message: format!(
                "no planner configured: the sidecar of {component} received the task but cannot plan or execute \
                 it, so nothing was done (task: {:?})",
                task.spec.text()
            ),
            evidence: vec![Evidence {
                name: "planner".into(),
                value: serde_json::json!("none"),
            }],
            steps: Vec::new(),
        }
    }

    async fn mitigate(
        &self,
        component: &ComponentName,
        work_id: &str,
        violations: &[Violation],
    ) -> ReportBody {
        ReportBody {
            diagnosis: None,
            task_id: work_id.to_owned(),
            component: component.clone(),
            status: ReportStatus::Issue,
            message: format!(
                "{} SLO violation(s) detected; no planner configured, so nothing was done",
                violations.len()
            ),
            evidence: vec![Evidence {
                name: "planner".into(),
                value: serde_json::json!("none"),
            }],
            steps: Vec::new(),
        }
    }

    fn planner_name(&self) -> String {
        "none".into()
    }
}

/// Plans with a [`Planner`] and executes in the sandbox against the cluster backend.
pub struct PlanningHandler {
    /// The brain.
    pub planner: Arc<dyn Planner>,
    /// The sandbox (one per process, loaded on demand; runs are independent).
    pub sandbox: Arc<LazySandbox>,
    /// The own component's backend.
    pub cluster: Arc<dyn Cluster>,
    /// What programs can reach.
    pub caps: Arc<dyn Capabilities>,
    /// Safety mode for mutating calls.
    pub mode: SafetyMode,
    /// Limits per program run.
    pub limits: Limits,
    /// The component's SLOs.
    pub slo: SloPolicy,
    /// Planner turns per task.
    pub max_turns: u32,
    /// Wait after a mutating step before observing again.
    pub settle: Duration,
    /// Where programs and host calls are recorded ([`AuditLog::disabled`] records nothing).
    pub audit: AuditLog,
    /// How long a call queued in approve mode waits for an operator before it expires.
    pub approval_timeout: Duration,
    /// The no-regression guard over mutating steps ([`GuardConfig::OFF`] to let every change stand).
    pub guard: GuardConfig,
}

/// Adds what the no-regression guard did to `report`: the `no_regression_guard` evidence, and when the last
/// change it judged was reverted, an ISSUE saying so (what was asked for does not stand).
fn apply_guard_events(report: &mut ReportBody, events: &[GuardEvent]) {
    if events.is_empty() {
        return;
    }
    report.evidence.push(Evidence {
        name: "no_regression_guard".into(),
        value: serde_json::to_value(events).unwrap_or_default(),
    });
    let reverted: Vec<&GuardEvent> = events.iter().filter(|e| e.reverted()).collect();
    if reverted.is_empty() {
        return;
    }
    // Planners that quote the failed step's output (the rules planner does) already carry the guard's words.
    if !report.message.contains("[no-regression guard]") {
        let steps: Vec<String> = reverted.iter().map(|e| e.step.to_string()).collect();
        report.message = format!(
            "{} [no-regression guard: step(s) {} made health worse and were reverted]",
            report.message,
            steps.join(", ")
        );
    }
    if events.last().is_some_and(GuardEvent::reverted) {
        report.status = ReportStatus::Issue;
    }
}

// === impl PlanningHandler ===

impl PlanningHandler {
    async fn run(
        &self,
        component: &ComponentName,
        work_id: &str,
        task_id: Option<&str>,
        mut ctx: MaintainerContext,
        episode: Option<&Episode>,
    ) -> ReportBody {
        ctx.slo = self.slo.clone();
        ctx.safety = self.mode;
        ctx.max_turns = self.max_turns;
        let mut exec = SandboxExecutor::new(
            self.sandbox.clone(),
            component.clone(),
            self.mode,
            self.caps.clone(),
            self.cluster.clone(),
            self.limits.clone(),
            self.settle,
        )
        .with_audit(self.audit.clone(), work_id)
        .with_guard(Guard::new(self.cluster.clone(), &self.slo, self.guard));
        if let Some(e) = episode {
            exec = exec.with_episode(e.baseline.clone(), e.window_secs);
        }
        let outcome = drive(self.planner.as_ref(), ctx, &mut exec).await;
        let mut evidence = vec![Evidence {
            name: "planner".into(),
            value: self.planner.name().into(),
        }];
        if !exec.pending.is_empty() {
            let requests =
                approval_requests(component, work_id, task_id, &exec.pending, self.approval_timeout);
            evidence.push(Evidence {
                name: PENDING_APPROVAL_EVIDENCE.into(),
                value: serde_json::to_value(requests).unwrap_or_default(),
            });
        }
        let mut report = match outcome {
            Ok(done) => {
                evidence.push(Evidence {
                    name: "turns".into(),
                    value: done.turns.into(),
                });
                evidence.push(Evidence {
                    name: "usage".into(),
                    value: serde_json::to_value(done.usage).unwrap_or_default(),
                });
                ReportBody {
                    diagnosis: done.diagnosis,
                    task_id: work_id.to_owned(),
                    component: component.clone(),
                    status: done.report.status,
                    message: done.report.message,
                    evidence,
                    steps: done.steps,
                }
            }
            Err(failure) => {
                evidence.push(Evidence {
                    name: "turns".into(),
                    value: failure.turns.into(),
                });
                ReportBody {
                    diagnosis: failure.diagnosis,
                    task_id: work_id.to_owned(),
                    component: component.clone(),
                    status: ReportStatus::Issue,
                    message: format!("could not complete: {}", failure.error),
                    evidence,
                    steps: failure.steps,
                }
            }
        };
        apply_guard_events(&mut report, &exec.guard_events);
        report
    }
}

#[async_trait]
impl TaskHandler for PlanningHandler {
    async fn handle(&self, component: &ComponentName, task: &TaskBody) -> ReportBody {
        let mut ctx = MaintainerContext::for_task(component.clone(), task.task_id.clone(), task.spec.clone());
        if let Trigger::Task { mechanism, .. } = &mut ctx.trigger {
            *mechanism = task.mechanism;
        }
        self.run(component, &task.task_id, Some(&task.task_id), ctx, None)
            .await
    }

    async fn mitigate(
        &self,
        component: &ComponentName,
        work_id: &str,
        violations: &[Violation],
    ) -> ReportBody {
        let ctx = MaintainerContext::for_violations(component.clone(), violations.to_vec());
        self.run(component, work_id, None, ctx, None).await
    }

    async fn mitigate_episode(
        &self,
        component: &ComponentName,
        work_id: &str,
        violations: &[Violation],
        episode: &Episode,
    ) -> ReportBody {
        let ctx = MaintainerContext::for_violations(component.clone(), violations.to_vec());
        self.run(component, work_id, None, ctx, Some(episode)).await
    }

    fn planner_name(&self) -> String {
        self.planner.name()
    }

    fn safety(&self) -> Option<SafetyMode> {
        Some(self.mode)
    }

    async fn execute_approved(
        &self,
        component: &ComponentName,
        call: &HostCall,
    ) -> Result<serde_json::Value, HostError> {
        call.execute(self.caps.as_ref(), component).await
    }
}
