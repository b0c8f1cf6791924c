//! The sidecar's bus loop: receive tasks for our component, handle them, report to the sender, then ack.
//! The ack comes after the report is published, so a crash in between redelivers the task rather than losing it.

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, BusError, Delivery};
use acv_protocol::{
    Address, Body, ComponentName, Envelope, Evidence, Heartbeat, IssueBody, Mechanism, Registration,
    ReportBody, ReportStatus, TaskBody, TaskSpec,
};
use acv_telemetry::metrics::{CounterName, count};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{
    approvals::Approvals,
    audit::AuditLog,
    episode::{Backoff, Borrowed, Signature, observation},
    handler::{Episode, TaskHandler},
    policy::TaskPolicy,
    watch::{HealthCheck, Watcher},
};

/// Default first cooldown after a mitigation that did not fix the problem.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_secs(60);
/// Default longest cooldown.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);
/// Default wait before the re-check after a mitigation, which measures over that time only.
pub const VERIFY_WINDOW: Duration = Duration::from_secs(2);
/// Default quiet period (healthy without a break) before temporary capacity is given back.
pub const DEFAULT_QUIET_PERIOD: Duration = Duration::from_secs(120);

mod ops;

/// A running sidecar agent.
pub struct Agent {
    component: ComponentName,
    bus: Arc<dyn Bus>,
    handler: Arc<dyn TaskHandler>,
    heartbeat: Duration,
    watch: Option<(Watcher, Duration)>,
    healthy: Option<bool>,
    /// Consecutive failing health checks so far.
    failing_checks: u32,
    /// Failing checks in a row needed before acting, so a rollout in progress is not "fixed".
    confirm_checks: u32,
    /// The peer API's URL announced in registration and heartbeats (mechanism 3).
    peer_url: Option<String>,
    /// Who may send tasks (checked before planning).
    policy: TaskPolicy,
    /// Backing off after a mitigation that did not work.
    backoff: Option<Backoff>,
    /// Capacity borrowed in the current episode.
    borrowed: Option<Borrowed>,
    backoff_initial: Duration,
    backoff_max: Duration,
    quiet: Duration,
    verify: Duration,
    /// Where reports and approved calls are recorded.
    audit: AuditLog,
    /// Calls queued in approve mode, waiting for an operator.
    approvals: Approvals,
    /// The first failing health check of the current unhealthy stretch (ms), for time-to-detect.
    first_failing_ms: Option<u64>,
    /// The first SLO episode of the current unhealthy stretch (id, start ms), for time-to-mitigate.
    mitigating: Option<(String, u64)>,
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// === impl Agent ===

impl Agent {
    /// An agent for `component` on `bus`.
    pub fn new(
        component: ComponentName,
        bus: Arc<dyn Bus>,
        handler: Arc<dyn TaskHandler>,
        heartbeat: Duration,
    ) -> Self {
        Self {
            component,
            bus,
            handler,
            heartbeat,
            watch: None,
            healthy: None,
            failing_checks: 0,
            confirm_checks: 2,
            peer_url: None,
            policy: TaskPolicy::default(),
            backoff: None,
            borrowed: None,
            backoff_initial: DEFAULT_BACKOFF_INITIAL,
            backoff_max: DEFAULT_BACKOFF_MAX,
            quiet: DEFAULT_QUIET_PERIOD,
            verify: VERIFY_WINDOW,
            audit: AuditLog::disabled(),
            approvals: Approvals::default(),
            first_failing_ms: None,
            mitigating: None,
        }
    }

    /// Records reports and approved calls in `audit` (the handler records programs and host calls itself).
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// Replaces the default task policy (manager and operators' clients may task; peers may not).
    pub fn with_policy(mut self, policy: TaskPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// After a mitigation that leaves the objectives broken the agent escalates once and then waits `initial`
    /// before trying again, doubling the wait after each further failure up to `max`, unless the situation changes
    /// (other objectives broken, another cause, another revision). Defaults: 60 s, 30 min.
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// How long the re-check after a mitigation waits and measures over (default [`VERIFY_WINDOW`], at most the
    /// watcher's window).
    pub fn with_verify_window(mut self, verify: Duration) -> Self {
        self.verify = verify;
        self
    }

    /// How long the component must stay healthy before capacity added during an episode is given back (default
    /// 120 s).
    pub fn with_quiet_period(mut self, quiet: Duration) -> Self {
        self.quiet = quiet;
        self
    }

    /// Also checks the component's SLOs every `interval` and mitigates violations by itself (MAPE-K), reporting
    /// each episode to the manager.
    pub fn with_watcher(mut self, watcher: Watcher, interval: Duration) -> Self {
        self.watch = Some((watcher, interval));
        self
    }

    /// How many failing health checks in a row trigger mitigation (default 2; at least 1). Like an alert's `for:`
    /// duration, this keeps a transient state — a pod still starting during a rolling update — from being "fixed".
    pub fn with_confirm_checks(mut self, checks: u32) -> Self {
        self.confirm_checks = checks.max(1);
        self
    }

    /// Announces `url` as this sidecar's peer API in the registration and every heartbeat.
    pub fn with_peer_url(mut self, url: String) -> Self {
        self.peer_url = Some(url);
        self
    }

    fn me(&self) -> Address {
        Address::Component(self.component.clone())
    }

    /// Subscribes to the inbox and announces the sidecar. Returns the running loop, which ends when `shutdown`
    /// fires (after finishing the task in hand) or the bus closes.
    pub async fn start(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<impl std::future::Future<Output = Result<(), BusError>>, BusError> {
        let mut inbox = self.bus.subscribe(&self.me()).await?;
        let register = Envelope::new(
            new_id(),
            self.me(),
            Address::Broadcast,
            acv_core::now_ms(),
            Body::Register(Registration {
                component: self.component.clone(),
                peer_url: self.peer_url.clone(),
                planner: self.handler.planner_name(),
                version: acv_core::VERSION.into(),
                safety: self.handler.safety(),
            }),
        );
        self.bus.publish(&register).await?;
        tracing::info!(component = %self.component, transport = %self.bus.transport(), "Sidecar registered.");
        Ok(async move {
            let mut ticker = tokio::time::interval(self.heartbeat);
            let watch_every = self.watch.as_ref().map_or(Duration::from_secs(3600), |(_, i)| *i);
            let mut watch_ticker = tokio::time::interval(watch_every);
            watch_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut approval_ticker = tokio::time::interval(Duration::from_secs(1));
            approval_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seq = 0u64;
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = watch_ticker.tick(), if self.watch.is_some() => self.health_check().await,
                    _ = approval_ticker.tick(), if self.approvals.any_open() => self.expire_approvals().await,
                    _ = ticker.tick() => {
                        seq += 1;
                        let hb = Envelope::new(new_id(), self.me(), Address::Broadcast, acv_core::now_ms(),
                            Body::Heartbeat(Heartbeat { component: self.component.clone(), seq, healthy: self.healthy,
                                peer_url: self.peer_url.clone(), planner: Some(self.handler.planner_name()),
                                safety: self.handler.safety() }));
                        if let Err(error) = self.bus.publish(&hb).await {
                            tracing::warn!(%error, "Heartbeat publish failed.");
                        }
                    }
                    next = inbox.next() => match next {
                        None => return Err(BusError::Closed),
                        Some(Err(error)) => tracing::warn!(%error, "Inbox error."),
                        Some(Ok(delivery)) => self.on_delivery(delivery).await,
                    },
                }
            }
        })
    }

    /// Detect → diagnose → mitigate → verify, reporting to the manager: an ISSUE envelope when violations are found,
    /// then the mitigation's report (RESPONSE only if a re-check finds every SLO met).
    async fn health_check(&mut self) {
        let Some(watch) = self.watch.take() else { return };
        let healthy = self.check_and_mitigate(&watch.0).await;
        self.healthy = Some(healthy);
        self.watch = Some(watch);
    }

    /// Returns whether the component is healthy at the end.
    async fn check_and_mitigate(&mut self, watcher: &Watcher) -> bool {
        let check = watcher.check().await;
        let now = Instant::now();
        let checked_ms = acv_core::now_ms();
        if let (Some(b), Some(st)) = (&mut self.borrowed, &check.measurement.status) {
            b.account(st, now);
        }
        if check.violations.is_empty() {
            tracing::debug!(component = %self.component, "Health check passed.");
            self.failing_checks = 0;
            if self.backoff.take().is_some() {
                tracing::info!(component = %self.component, "Healthy again; backoff cleared.");
            }
            self.first_failing_ms = None;
            self.recovered(checked_ms);
            self.after_healthy(watcher, &check, now).await;
            return true;
        }
        if let Some(b) = &mut self.borrowed {
            b.healthy_since = None;
        }
        self.first_failing_ms.get_or_insert(checked_ms);
        self.failing_checks += 1;
        if self.failing_checks < self.confirm_checks {
            let violations = acv_protocol::describe_violations(&check.violations);
            tracing::info!(component = %self.component, failing = self.failing_checks, needed = self.confirm_checks,
                ?violations, "Health check failed; waiting for confirmation before acting.");
            return false;
        }
        let capacity = self.borrowed.as_ref().map_or_else(
            || {
                check
                    .measurement
                    .status
                    .as_ref()
                    .map(|s| (s.desired_replicas, Some(s.limits)))
            },
            |b| Some((b.replicas, Some(b.limits))),
        );
        let baseline = capacity.and_then(|(r, l)| watcher.baseline(r, l));
        let signature = Signature::of(
            &check.violations,
            &observation(&check.measurement, baseline.clone()),
        );
        if let Some(b) = &self.backoff {
            if b.holds(&signature, now) {
                tracing::debug!(component = %self.component, until_secs = b.until.saturating_duration_since(now).as_secs(),
                    "Still broken as before; backing off.");
                count(CounterName::TasksHandled, &[("outcome", "backed_off")], 1);
                return false;
            }
            if b.signature != signature {
                tracing::info!(component = %self.component, before = ?b.signature, now = ?signature,
                    "The situation changed; trying again.");
                self.backoff = None;
            }
        }
        self.failing_checks = 0;
        if self.approvals.any_open() {
            tracing::info!(component = %self.component,
                "SLO violation persists while queued calls await an operator; no new episode until they are decided.");
            return false;
        }
        if self.borrowed.is_none()
            && let Some(st) = &check.measurement.status
        {
            self.borrowed = Some(Borrowed::new(st, now));
        }
        let retry = self.backoff.is_some();
        let started_ms = acv_core::now_ms();
        let detected = self.episode_started(started_ms);
        let broken = acv_protocol::describe_violations(&check.violations);
        tracing::warn!(component = %self.component, violations = ?broken, retry, "SLO violation detected.");
        let issue_id = new_id();
        if !retry {
            let findings = acv_llm::planner::rules::diagnose::Findings::of(&observation(
                &check.measurement,
                baseline.clone(),
            ));
            let issue = Envelope::new(
                issue_id.clone(),
                self.me(),
                Address::Manager,
                acv_core::now_ms(),
                Body::Issue(IssueBody {
                    diagnosis: Some(findings.diagnosis(signature.cause)),
                    component: self.component.clone(),
                    message: format!("SLO violation detected: {}", broken.join("; ")),
                    violations: check.violations.clone(),
                }),
            );
            if let Err(error) = self.bus.publish(&issue).await {
                tracing::warn!(%error, "Issue publish failed.");
            }
        }
        let episode = Episode {
            baseline,
            window_secs: watcher.window_secs(),
        };
        let mut report = self
            .handler
            .mitigate_episode(&self.component, &issue_id, &check.violations, &episode)
            .await;
        // Judge by measurement, not by the planner's claim, over a short window after the mitigation only.
        let verify = self
            .verify
            .min(Duration::from_secs_f64(watcher.window_secs().max(0.0)));
        tokio::time::sleep(verify).await;
        let after = watcher.check_over(verify.as_secs_f64()).await;
        let now = Instant::now();
        if let (Some(b), Some(st)) = (&mut self.borrowed, &after.measurement.status) {
            b.account(st, now);
            report.evidence.push(b.evidence(now));
        }
        if !after.violations.is_empty() && report.status == ReportStatus::Response {
            report.status = ReportStatus::Issue;
            let still = acv_protocol::describe_violations(&after.violations);
            report.message = format!(
                "{} — but the re-check still fails: {}",
                report.message,
                still.join("; ")
            );
        }
        count(CounterName::TasksHandled, &[("outcome", "mitigated")], 1);
        let diagnosis = report.diagnosis.clone();
        let facts = serde_json::json!({"time_to_detect_ms": detected, "issue": issue_id});
        self.episode_done(&report, "slo", &Address::Manager, &issue_id, started_ms, facts)
            .await;
        let reply = Envelope::new(
            new_id(),
            self.me(),
            Address::Manager,
            acv_core::now_ms(),
            Body::Report(report),
        )
        .with_correlation(issue_id.clone());
        if let Err(error) = self.bus.publish(&reply).await {
            tracing::warn!(%error, "Mitigation report publish failed.");
        }
        if after.violations.is_empty() {
            self.first_failing_ms = None;
            self.recovered(acv_core::now_ms());
            self.backoff = None;
            return true;
        }
        // Not fixed. Escalate once, then back off; the signature is taken after our own actions, so a revision we
        // made ourselves (a raised limit) does not count as "the situation changed".
        let after_sig = Signature::of(
            &after.violations,
            &observation(&after.measurement, episode.baseline.clone()),
        );
        match &mut self.backoff {
            Some(b) => {
                b.again(after_sig, self.backoff_max, now);
                tracing::warn!(component = %self.component, attempts = b.attempts, cooldown_secs = b.cooldown.as_secs_f64(),
                    "Mitigation failed again; backing off longer.");
            }
            None => {
                let b = Backoff::start(after_sig, self.backoff_initial, now);
                let still = acv_protocol::describe_violations(&after.violations);
                let escalation = Envelope::new(
                    new_id(),
                    self.me(),
                    Address::Manager,
                    acv_core::now_ms(),
                    Body::Issue(IssueBody {
                        component: self.component.clone(),
                        message: format!(
                            "Cannot fix {} alone: still {} after mitigating. Escalating; I will not repeat the \
                             same action for {:.0} s (doubling each time) unless the situation changes.",
                            self.component,
                            still.join("; "),
                            b.cooldown.as_secs_f64()
                        ),
                        violations: after.violations.clone(),
                        diagnosis,
                    }),
                )
                .with_correlation(issue_id);
                count(CounterName::TasksHandled, &[("outcome", "escalated")], 1);
                if let Err(error) = self.bus.publish(&escalation).await {
                    tracing::warn!(%error, "Escalation publish failed.");
                }
                tracing::warn!(component = %self.component, cooldown_secs = b.cooldown.as_secs_f64(),
                    "Mitigation did not fix it; escalated and backing off.");
                self.backoff = Some(b);
            }
        }
        false
    }

    /// While healthy: close an episode whose capacity is back to baseline, or after the quiet period give back
    /// what the load no longer needs (by the headroom rule of `acv_llm::planner::rules::capacity`).
    async fn after_healthy(&mut self, watcher: &Watcher, check: &HealthCheck, now: Instant) {
        let (Some(st), Some(m)) = (&check.measurement.status, &check.measurement.metrics) else {
            return;
        };
        let Some(b) = self.borrowed.as_mut() else {
            return;
        };
        if b.returned(st) {
            let closing = b.borrowed_any().then(|| {
                (
                    format!(
                        "{} is back to its capacity before the episode ({} replicas, {}m / {} MiB).",
                        self.component, b.replicas, b.limits.cpu_millis, b.limits.memory_mib
                    ),
                    b.evidence(now),
                )
            });
            self.borrowed = None;
            if let Some((message, cost)) = closing {
                self.publish_report("capacity", ReportStatus::Response, message, vec![cost])
                    .await;
            }
            return;
        }
        let since = *b.healthy_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.quiet {
            return;
        }
        let Some(g) =
            acv_llm::planner::rules::capacity::give_back(st, m, b.replicas, b.limits, watcher.policy())
        else {
            return;
        };
        b.healthy_since = Some(now);
        let cost = b.evidence(now);
        let mut texts = Vec::new();
        if let Some(l) = g.limits {
            if l.cpu_millis != st.limits.cpu_millis {
                texts.push(format!("Set the CPU limit to {}m", l.cpu_millis));
            }
            if l.memory_mib != st.limits.memory_mib {
                texts.push(format!("Set the memory limit to {}Mi", l.memory_mib));
            }
        }
        if let Some(n) = g.replicas {
            texts.push(format!("Scale to {n} replicas"));
        }
        let mut evidence = vec![
            Evidence {
                name: "give_back".into(),
                value: g.reason.clone().into(),
            },
            cost,
        ];
        let mut status = ReportStatus::Response;
        let mut messages = Vec::new();
        for text in texts {
            let task = TaskBody {
                task_id: new_id(),
                component: self.component.clone(),
                spec: TaskSpec::Imperative { text: text.clone() },
                mechanism: Mechanism::Solo,
            };
            tracing::info!(component = %self.component, task = %text, reason = %g.reason, "Giving capacity back.");
            let r = self.handler.handle(&self.component, &task).await;
            if r.status == ReportStatus::Issue {
                status = ReportStatus::Issue;
            }
            messages.push(r.message);
            evidence.extend(r.evidence);
        }
        self.publish_report(
            "capacity",
            status,
            format!(
                "Quiet for {:.0} s: giving back {} — {}",
                self.quiet.as_secs_f64(),
                g.reason,
                messages.join(" ")
            ),
            evidence,
        )
        .await;
    }

    async fn publish_report(
        &self,
        task_id: &str,
        status: ReportStatus,
        message: String,
        evidence: Vec<Evidence>,
    ) {
        let report = ReportBody {
            task_id: format!("{task_id}-{}", new_id()),
            component: self.component.clone(),
            status,
            message,
            evidence,
            steps: Vec::new(),
            diagnosis: None,
        };
        let env = Envelope::new(
            new_id(),
            self.me(),
            Address::Manager,
            acv_core::now_ms(),
            Body::Report(report),
        );
        if let Err(error) = self.bus.publish(&env).await {
            tracing::warn!(%error, "Report publish failed.");
        }
    }

    async fn on_delivery(&mut self, delivery: Delivery) {
        let env = &delivery.envelope;
        let now = acv_core::now_ms();
        let task = match &env.body {
            Body::Task(task) if env.is_expired(now) => {
                tracing::warn!(id = %env.id, task_id = %task.task_id, "Dropped task past its deadline.");
                count(CounterName::TasksHandled, &[("outcome", "expired")], 1);
                None
            }
            Body::Task(task) => Some(task.clone()),
            Body::ApprovalDecision(d) if env.from == Address::Manager => {
                let d = d.clone();
                self.on_decision(&d).await;
                None
            }
            other => {
                tracing::warn!(id = %env.id, kind = ?other.kind(), "Ignored a non-task message in the inbox.");
                None
            }
        };
        if let Some(task) = task {
            tracing::info!(task_id = %task.task_id, from = %env.from, text = task.spec.text(), "Task received.");
            let started_ms = acv_core::now_ms();
            let report = match self.policy.permits(&env.from, &self.component) {
                Ok(()) => self.handler.handle(&self.component, &task).await,
                Err(reason) => crate::policy::refusal(&self.component, &task, &reason),
            };
            let trigger = match task.mechanism {
                acv_protocol::Mechanism::PeerRequest => "peer",
                _ => "task",
            };
            let facts = serde_json::json!({"from": env.from.to_string()});
            self.episode_done(&report, trigger, &env.from, &env.id, started_ms, facts)
                .await;
            let reply = Envelope::new(
                new_id(),
                self.me(),
                env.from.clone(),
                acv_core::now_ms(),
                Body::Report(report),
            )
            .with_correlation(env.id.clone());
            if let Err(error) = self.bus.publish(&reply).await {
                // Not acking makes the broker redeliver the task, so the report is retried rather than lost.
                tracing::error!(%error, task_id = %task.task_id, "Report publish failed; task left unacked.");
                count(CounterName::TasksHandled, &[("outcome", "report_failed")], 1);
                if let Err(error) = delivery.nack().await {
                    tracing::warn!(%error, "Nack failed.");
                }
                return;
            }
            count(CounterName::TasksHandled, &[("outcome", "reported")], 1);
        }
        if let Err(error) = delivery.ack().await {
            tracing::warn!(%error, "Ack failed; the message may be redelivered and will be deduplicated.");
        }
    }
}
