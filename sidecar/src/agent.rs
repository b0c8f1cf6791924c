//! The sidecar's bus loop: receive tasks for our component, handle them, report to the sender, then ack.
//! The ack comes after the report is published, so a crash in between redelivers the task rather than losing it.

use std::{sync::Arc, time::Duration};

use acv_bus::{Bus, BusError, Delivery};
use acv_protocol::{Address, Body, ComponentName, Envelope, Heartbeat, IssueBody, Registration};
use acv_telemetry::metrics::{CounterName, count};
use tokio_util::sync::CancellationToken;

use crate::{
    approvals::Approvals, audit::AuditLog, handler::TaskHandler, policy::TaskPolicy, watch::Watcher,
};

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
                                peer_url: self.peer_url.clone() }));
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
        let checked_ms = acv_core::now_ms();
        if check.violations.is_empty() {
            tracing::debug!(component = %self.component, "Health check passed.");
            self.failing_checks = 0;
            self.first_failing_ms = None;
            self.recovered(checked_ms);
            return true;
        }
        self.first_failing_ms.get_or_insert(checked_ms);
        self.failing_checks += 1;
        if self.failing_checks < self.confirm_checks {
            tracing::info!(component = %self.component, failing = self.failing_checks, needed = self.confirm_checks,
                "Health check failed; waiting for confirmation before acting.");
            return false;
        }
        self.failing_checks = 0;
        if self.approvals.any_open() {
            tracing::info!(component = %self.component,
                "SLO violation persists while queued calls await an operator; no new episode until they are decided.");
            return false;
        }
        let started_ms = acv_core::now_ms();
        let detected = self.episode_started(started_ms);
        let described: Vec<String> = check
            .violations
            .iter()
            .map(acv_protocol::describe_violation)
            .collect();
        tracing::warn!(component = %self.component, violations = ?described, "SLO violation detected.");
        let issue = Envelope::new(
            new_id(),
            self.me(),
            Address::Manager,
            acv_core::now_ms(),
            Body::Issue(IssueBody {
                diagnosis: None,
                component: self.component.clone(),
                message: format!("SLO violation detected: {}", described.join("; ")),
                violations: check.violations.clone(),
            }),
        );
        if let Err(error) = self.bus.publish(&issue).await {
            tracing::warn!(%error, "Issue publish failed.");
        }
        let mut report = self
            .handler
            .mitigate(&self.component, &issue.id, &check.violations)
            .await;
        // Judge by measurement, not by the planner's claim.
        let after = watcher.check().await;
        if !after.violations.is_empty() && report.status == acv_protocol::ReportStatus::Response {
            report.status = acv_protocol::ReportStatus::Issue;
            let still: Vec<String> = after
                .violations
                .iter()
                .map(acv_protocol::describe_violation)
                .collect();
            report.message = format!(
                "{} — but the re-check still fails: {}",
                report.message,
                still.join("; ")
            );
        }
        count(CounterName::TasksHandled, &[("outcome", "mitigated")], 1);
        let facts = serde_json::json!({"time_to_detect_ms": detected, "issue": issue.id});
        self.episode_done(&report, "slo", &Address::Manager, &issue.id, started_ms, facts)
            .await;
        let reply = Envelope::new(
            new_id(),
            self.me(),
            Address::Manager,
            acv_core::now_ms(),
            Body::Report(report),
        )
        .with_correlation(issue.id.clone());
        if let Err(error) = self.bus.publish(&reply).await {
            tracing::warn!(%error, "Mitigation report publish failed.");
        }
        if after.violations.is_empty() {
            self.first_failing_ms = None;
            self.recovered(acv_core::now_ms());
        }
        after.violations.is_empty()
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
