//! Runs planned steps in the wasmtime sandbox and feeds fresh observations to the planner: the sidecar's
//! [`Executor`] for [`acv_llm::drive`]. Every program and every host call of every program is written to the audit
//! trail ([`crate::audit`], which reaches the manager) and to the log (tracing target `acv::audit`).

use std::{sync::Arc, time::Duration};

use acv_cluster::Cluster;
use acv_llm::{Executor, Observation, PlannedStep, StepResult};
use acv_protocol::{AuditKind, ComponentName, HOST_CALLS, StepOutcome};
use acv_sandbox::{
    CallOutcome, Capabilities, HostCallRecord, LazySandbox, Limits, PendingCall, RunOutcome, SafetyMode,
    Verdict,
};
use acv_telemetry::metrics::{CounterName, HistogramName, count, observe};
use serde_json::{Value, json};

use crate::{
    audit::{AuditLog, Entry},
    guard::{Guard, GuardEvent, GuardOutcome, Snapshot},
};

/// Longest wait for replicas to converge after a change before observing anyway (a broken release never does).
pub const CONVERGE_MAX: Duration = Duration::from_secs(20);

/// Longest step output kept in a report, in bytes.
pub const MAX_STEP_OUTPUT: usize = 8 * 1024;

/// Executes steps for one task.
pub struct SandboxExecutor {
    sandbox: Arc<LazySandbox>,
    component: ComponentName,
    mode: SafetyMode,
    caps: Arc<dyn Capabilities>,
    cluster: Arc<dyn Cluster>,
    limits: Limits,
    /// Wait after a mutating step before observing again, so replicas have time to converge.
    settle: Duration,
    last_mutated: bool,
    /// The healthy baseline handed to the planner with every observation.
    baseline: Option<acv_llm::Baseline>,
    /// Metrics window of observations (seconds).
    window_secs: f64,
    /// Host calls queued for approval (approve mode), across the task, with the program that made them.
    pub pending: Vec<Queued>,
    /// Where programs and calls are recorded, and the episode they belong to.
    audit: AuditLog,
    episode: String,
    /// The no-regression guard (`None`: off).
    guard: Option<Guard>,
    /// What the guard did, step by step.
    pub guard_events: Vec<GuardEvent>,
    /// Set when the guard already waited for a change to settle: the next observation measures over this window
    /// (seconds) without waiting again.
    settled_window: Option<f64>,
}

/// A mutating call queued for approval by one step's program.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Queued {
    /// The step (1-based).
    pub step: u32,
    /// The program that made the call.
    pub program: String,
    /// The call, validated by the sandbox.
    #[serde(flatten)]
    pub pending: PendingCall,
}

/// Largest call result or argument kept whole in an audit record, in bytes of JSON; bigger ones keep a prefix.
pub const MAX_AUDIT_VALUE: usize = 16 * 1024;

/// `v`, or a note with its first bytes when its JSON is longer than [`MAX_AUDIT_VALUE`] (e.g. a long log tail).
pub fn bounded(v: &Value) -> Value {
    let text = v.to_string();
    if text.len() <= MAX_AUDIT_VALUE {
        return v.clone();
    }
    json!({"truncated": true, "bytes": text.len(), "head": truncate(text, 2048)})
}

/// The one-word result of a call, as in `acv_host_calls_total{result}`.
pub fn call_result(outcome: &CallOutcome) -> &'static str {
    match outcome {
        CallOutcome::Ok { .. } => "ok",
        CallOutcome::Error { .. } => "error",
        CallOutcome::Refused { .. } => "refused",
        CallOutcome::PendingApproval => "pending_approval",
    }
}

fn call_entry(step: u32, call: &HostCallRecord) -> Entry {
    let mut detail = json!({"step": step, "seq": call.seq, "elapsed_us": call.elapsed.as_micros() as u64});
    match &call.outcome {
        CallOutcome::Ok { result } => detail["result"] = bounded(result),
        CallOutcome::Error { error } => detail["error"] = json!(error.to_string()),
        CallOutcome::Refused { reason } => detail["error"] = json!(format!("refused: {reason}")),
        CallOutcome::PendingApproval => {}
    }
    Entry {
        name: Some(call.name.clone()),
        args: Some(bounded(&call.args)),
        outcome: Some(call_result(&call.outcome).into()),
        detail,
    }
}

// === impl SandboxExecutor ===

impl SandboxExecutor {
    /// An executor for `component`'s programs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sandbox: Arc<LazySandbox>,
        component: ComponentName,
        mode: SafetyMode,
        caps: Arc<dyn Capabilities>,
        cluster: Arc<dyn Cluster>,
        limits: Limits,
        settle: Duration,
    ) -> Self {
        Self {
            sandbox,
            component,
            mode,
            caps,
            cluster,
            limits,
            settle,
            last_mutated: false,
            baseline: None,
            window_secs: 60.0,
            pending: Vec::new(),
            audit: AuditLog::disabled(),
            episode: String::new(),
            guard: None,
            guard_events: Vec::new(),
            settled_window: None,
        }
    }

    /// Judges every step that changes the component with `guard` and reverts it when health got worse.
    pub fn with_guard(mut self, guard: Option<Guard>) -> Self {
        self.guard = guard;
        self
    }

    /// After a change, waits (bounded) until the replicas converged, as `kubectl rollout status` would, then the
    /// settle time. Returns the window to measure over: the settle time only, since a window reaching back before
    /// the change would show the fault the change just removed.
    async fn settle(&self) -> f64 {
        let deadline = tokio::time::Instant::now() + CONVERGE_MAX.max(self.settle);
        while tokio::time::Instant::now() < deadline {
            match self.cluster.status().await {
                Ok(st)
                    if st.ready_replicas == st.desired_replicas
                        && st.replicas.len() == st.desired_replicas as usize =>
                {
                    break;
                }
                Err(_) => break,
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        tokio::time::sleep(self.settle).await;
        self.settle_window()
    }

    /// The window health is measured over around a change: the settle time (at least 1 s, at most the configured
    /// window), the same before the step as after it.
    fn settle_window(&self) -> f64 {
        self.window_secs.min(self.settle.as_secs_f64().max(1.0))
    }

    /// The guard's verdict on step `index` that changed the component, from what was kept before it: keep the
    /// change, or put the kept revision and replicas back and re-check. Updates `result` accordingly.
    async fn guard_step(&mut self, index: u32, kept: Snapshot, result: &mut StepResult) {
        let Some(guard) = &self.guard else { return };
        let window = self.settle().await;
        self.settled_window = Some(window);
        let after = guard.check(window).await;
        let (Some(before), Some(after)) = (kept.violations.as_ref(), after) else {
            self.finish_guard(GuardEvent::new(index, GuardOutcome::Unmeasured), result);
            return;
        };
        let mut after = after;
        let mut regression = guard.judge(before, &after);
        if regression.is_some() {
            // Confirm over a second, later window of the same length: one short window can catch a transient (a
            // new replica's first slow requests). The later measurement decides.
            tokio::time::sleep(Duration::from_secs_f64(window)).await;
            if let Some(again) = guard.check(window).await {
                regression = guard.judge(before, &again);
                after = again;
            }
        }
        let mut event = GuardEvent {
            before: acv_protocol::describe_violations(before),
            after: acv_protocol::describe_violations(&after),
            regression,
            ..GuardEvent::new(index, GuardOutcome::Kept)
        };
        if event.regression.is_some() {
            tracing::warn!(component = %self.component, step = index, before = ?event.before, after = ?event.after,
                "Health got worse after the step; reverting it.");
            match guard.revert(&kept).await {
                Ok(restored) => {
                    event.outcome = GuardOutcome::Reverted;
                    event.restored = restored;
                    let window = self.settle().await;
                    self.settled_window = Some(window);
                    event.after_revert = guard
                        .check(window)
                        .await
                        .map(|v| acv_protocol::describe_violations(&v));
                }
                Err((error, restored)) => {
                    tracing::error!(component = %self.component, step = index, %error, "Reverting the step failed.");
                    event.outcome = GuardOutcome::RevertFailed;
                    event.restored = restored;
                    event.error = Some(error.to_string());
                }
            }
            result.outcome = StepOutcome::Reverted;
        }
        self.finish_guard(event, result);
    }

    fn finish_guard(&mut self, event: GuardEvent, result: &mut StepResult) {
        let outcome = event.outcome.as_str();
        count(CounterName::GuardChecks, &[("outcome", outcome)], 1);
        if !result.output.is_empty() && !result.output.ends_with('\n') {
            result.output.push('\n');
        }
        result.output.push_str(&event.describe());
        self.audit.record(
            &self.episode,
            AuditKind::Program,
            Entry {
                name: Some(format!("no-regression guard, step {}", event.step)),
                args: None,
                outcome: Some(outcome.into()),
                detail: serde_json::to_value(&event).unwrap_or_default(),
            },
        );
        tracing::info!(target: "acv::audit", component = %self.component, step = event.step, outcome,
            "No-regression guard.");
        self.guard_events.push(event);
    }

    /// Hands `baseline` to the planner with every observation and measures metrics over `window_secs` (the
    /// watcher's window; 0 keeps 60 s).
    pub fn with_episode(mut self, baseline: Option<acv_llm::Baseline>, window_secs: f64) -> Self {
        self.baseline = baseline;
        if window_secs > 0.0 {
            self.window_secs = window_secs;
        }
        self
    }

    /// Records every program and host call in `audit` as part of `episode`.
    pub fn with_audit(mut self, audit: AuditLog, episode: &str) -> Self {
        self.audit = audit;
        self.episode = episode.to_owned();
        self
    }

    fn audit_run(&self, index: u32, step: &PlannedStep, run: &RunOutcome, result: &StepResult) {
        if !self.audit.is_enabled() {
            return;
        }
        for call in &run.calls {
            let kind = if call.name == "ask_peer" {
                AuditKind::PeerCall
            } else {
                AuditKind::HostCall
            };
            self.audit.record(&self.episode, kind, call_entry(index, call));
        }
        self.audit.record(
            &self.episode,
            AuditKind::Program,
            Entry {
                name: Some(step.description.clone()),
                args: None,
                outcome: Some(run.verdict.label().into()),
                detail: json!({
                    "step": index,
                    "program": step.program,
                    "output": result.output,
                    "mutated": result.mutated,
                    "fuel": run.fuel_consumed,
                    "elapsed_ms": run.elapsed.as_millis() as u64,
                }),
            },
        );
    }
}

/// Maps a sandbox run to the step result the planner sees.
pub fn step_result(run: &RunOutcome) -> StepResult {
    let outcome = match &run.verdict {
        Verdict::Ok => StepOutcome::Ok,
        Verdict::GuestError { .. } | Verdict::Crashed { .. } => StepOutcome::Error,
        Verdict::OutOfFuel | Verdict::Timeout | Verdict::MemoryLimit => StepOutcome::LimitExceeded,
        Verdict::Refused { .. } => StepOutcome::Refused,
    };
    let mut output = run.stdout.clone();
    let detail = match &run.verdict {
        Verdict::Ok => String::new(),
        Verdict::GuestError { traceback } => traceback.clone(),
        Verdict::Refused { reason, traceback } => format!("refused: {reason}\n{traceback}"),
        Verdict::Crashed { message } => format!("guest crashed: {message}"),
        Verdict::OutOfFuel => "stopped: CPU budget exhausted".into(),
        Verdict::Timeout => "stopped: wall-clock deadline passed".into(),
        Verdict::MemoryLimit => "stopped: memory limit reached".into(),
    };
    if !run.stderr.is_empty() {
        output.push_str(&run.stderr);
    }
    if !detail.is_empty() {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&detail);
    }
    StepResult {
        outcome,
        output: truncate(output, MAX_STEP_OUTPUT),
        report: run.report.clone(),
        mutated: run.mutated(),
    }
}

/// Counts a run by verdict, its duration, and each host call by name and result (`acv_sandbox_runs_total`,
/// `acv_sandbox_run_duration_seconds`, `acv_host_calls_total`). Call names come from the fixed host API, so the
/// label set stays bounded whatever a program calls.
fn record_metrics(run: &RunOutcome) {
    let verdict = run.verdict.label();
    count(CounterName::SandboxRuns, &[("verdict", verdict)], 1);
    observe(
        HistogramName::SandboxRunSeconds,
        &[("verdict", verdict)],
        run.elapsed.as_secs_f64(),
    );
    for call in &run.calls {
        let name = HOST_CALLS
            .iter()
            .find(|n| **n == call.name)
            .copied()
            .unwrap_or("other");
        let result = call_result(&call.outcome);
        count(CounterName::HostCalls, &[("call", name), ("result", result)], 1);
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n[output truncated]");
    }
    s
}

#[async_trait::async_trait]
impl Executor for SandboxExecutor {
    async fn execute(&mut self, index: u32, step: &PlannedStep) -> StepResult {
        // Only autonomous mode changes anything while the step runs (approve mode queues, observe refuses).
        let kept = match &self.guard {
            Some(guard) if self.mode == SafetyMode::Autonomous => {
                Some(guard.snapshot(self.settle_window()).await)
            }
            _ => None,
        };
        let run = self
            .sandbox
            .run(
                &step.program,
                &self.component,
                self.mode,
                self.caps.clone(),
                self.limits.clone(),
            )
            .await;
        match run {
            Ok(run) => {
                record_metrics(&run);
                for call in &run.calls {
                    tracing::info!(target: "acv::audit", component = %self.component, step = index,
                        seq = call.seq, call = %call.name, args = %call.args,
                        outcome = %serde_json::to_string(&call.outcome).unwrap_or_default(),
                        micros = call.elapsed.as_micros() as u64, "Host call.");
                }
                tracing::info!(target: "acv::audit", component = %self.component, step = index,
                    verdict = run.verdict.label(), fuel = run.fuel_consumed,
                    ms = run.elapsed.as_millis() as u64, description = %step.description, "Step ran.");
                self.pending.extend(run.pending.iter().map(|p| Queued {
                    step: index,
                    program: step.program.clone(),
                    pending: p.clone(),
                }));
                let mut result = step_result(&run);
                self.audit_run(index, step, &run, &result);
                self.last_mutated = result.mutated;
                if result.mutated
                    && let Some(kept) = kept
                {
                    self.last_mutated = false;
                    self.guard_step(index, kept, &mut result).await;
                }
                result
            }
            Err(e) => {
                tracing::error!(component = %self.component, step = index, error = %e, "Sandbox could not run the step.");
                self.last_mutated = false;
                self.audit.record(
                    &self.episode,
                    AuditKind::Program,
                    Entry {
                        name: Some(step.description.clone()),
                        args: None,
                        outcome: Some("sandbox_error".into()),
                        detail: json!({"step": index, "program": step.program, "output": format!("sandbox error: {e}")}),
                    },
                );
                StepResult {
                    outcome: StepOutcome::Error,
                    output: format!("sandbox error: {e}"),
                    report: None,
                    mutated: false,
                }
            }
        }
    }

    async fn observe(&mut self) -> Option<Observation> {
        let mut window = self.window_secs;
        if let Some(settled) = self.settled_window.take() {
            window = settled;
        } else if std::mem::take(&mut self.last_mutated) && !self.settle.is_zero() {
            window = self.settle().await;
        }
        let status = self.cluster.status().await.ok();
        let metrics = self.cluster.metrics(window).await.ok();
        let history = self.cluster.history().await.unwrap_or_default();
        Some(Observation {
            status,
            metrics,
            history,
            baseline: self.baseline.clone(),
            at_ms: acv_core::now_ms(),
        })
    }
}
