//! What a sidecar does with a verified peer request: policy (identity, hop limit, duplicate ids, rate limit per
//! peer), read-only answers from its own backend, and requests for action handed to its own planner under its own
//! safety mode. Transport-free, so every rule is testable without TLS.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use acv_cluster::Cluster;
use acv_pki::Identity;
use acv_protocol::{
    ComponentName, PeerAnswer, PeerIntent, PeerOutcome, PeerRequest, ReportBody, SloPolicy, TaskBody,
    Violation, describe_violation,
};
use acv_sandbox::SafetyMode;
use acv_telemetry::metrics::{CounterName, count};
use async_trait::async_trait;

use crate::{handler::TaskHandler, watch::Watcher};

tokio::task_local! {
    static CHAIN: Chain;
}

/// The chain of peer calls the current work belongs to; outgoing peer calls continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The first request id of the chain.
    pub origin: String,
    /// Hops so far (the request being handled included).
    pub hops: u32,
}

/// The chain of the work in hand, when it was started by a peer request.
pub fn current_chain() -> Option<Chain> {
    CHAIN.try_with(Chain::clone).ok()
}

/// One maintenance action at a time per sidecar: shared by the agent's own work and peer requests.
pub type WorkLock = Arc<tokio::sync::Mutex<()>>;

/// Limits of the peer API.
#[derive(Debug, Clone)]
pub struct PeerLimits {
    /// Longest chain of peer calls served (a request with more hops is refused).
    pub max_hops: u32,
    /// Requests per caller per minute (token bucket refill).
    pub per_minute: u32,
    /// Burst per caller.
    pub burst: u32,
    /// Request ids remembered for deduplication.
    pub remember: usize,
}

impl Default for PeerLimits {
    fn default() -> Self {
        Self {
            max_hops: 3,
            per_minute: 30,
            burst: 10,
            remember: 1024,
        }
    }
}

/// The sidecar's own planner and backend, for requests for action.
pub struct Maintainer {
    /// The own backend (read-only answers and the health check).
    pub cluster: Arc<dyn Cluster>,
    /// The own planner, *not* wrapped in [`SerialHandler`]: the service takes the [`WorkLock`] itself (without
    /// waiting: a busy sidecar declines), so wrapping would deadlock.
    pub handler: Arc<dyn TaskHandler>,
    /// The own SLOs.
    pub slo: SloPolicy,
    /// Metrics window of the health check, seconds.
    pub window_secs: f64,
    /// The own safety mode, reported in answers (the handler enforces it).
    pub mode: SafetyMode,
    /// Where a peer-requested episode's report is recorded (the handler records its programs and calls).
    pub audit: crate::audit::AuditLog,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct State {
    /// Request id → its answer (`None` while in flight).
    answers: HashMap<String, Option<(u16, PeerAnswer)>>,
    order: VecDeque<String>,
    buckets: HashMap<ComponentName, Bucket>,
}

/// Answers peer requests for one component.
pub struct PeerService {
    me: ComponentName,
    namespace: String,
    maintainer: Option<Maintainer>,
    work: WorkLock,
    limits: PeerLimits,
    state: Mutex<State>,
}

fn answer(
    req_id: &str,
    me: &ComponentName,
    intent: Option<PeerIntent>,
    outcome: PeerOutcome,
    msg: String,
) -> PeerAnswer {
    PeerAnswer {
        request_id: req_id.to_owned(),
        component: me.clone(),
        intent,
        outcome,
        message: msg,
        data: serde_json::Value::Null,
        report: None,
    }
}

/// Static label of an outcome, for metrics.
pub fn outcome_label(o: PeerOutcome) -> &'static str {
    match o {
        PeerOutcome::Answered => "answered",
        PeerOutcome::Acted => "acted",
        PeerOutcome::Declined => "declined",
        PeerOutcome::Refused => "refused",
    }
}

// === impl PeerService ===

impl PeerService {
    /// A service for `me` in `namespace`; without a maintainer it can only refuse.
    pub fn new(me: ComponentName, namespace: String, maintainer: Option<Maintainer>, work: WorkLock) -> Self {
        Self {
            me,
            namespace,
            maintainer,
            work,
            limits: PeerLimits::default(),
            state: Mutex::default(),
        }
    }

    /// Other limits.
    pub fn with_limits(mut self, limits: PeerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The component served.
    pub fn component(&self) -> &ComponentName {
        &self.me
    }

    /// Refusal for a request that could not be read (bad JSON, too large): no id, no action.
    pub fn bad_request(&self, caller: Option<&Identity>, reason: String) -> (u16, PeerAnswer) {
        let a = answer(
            "",
            &self.me,
            None,
            PeerOutcome::Refused,
            format!("bad request: {reason}"),
        );
        self.audit(caller.map(|c| c.component.as_str()).unwrap_or("?"), None, &a);
        (400, a)
    }

    /// Refusal for a connection whose certificate carries no usable identity.
    pub fn bad_identity(&self, reason: String) -> (u16, PeerAnswer) {
        let a = answer(
            "",
            &self.me,
            None,
            PeerOutcome::Refused,
            format!("refused: {reason}"),
        );
        self.audit("?", None, &a);
        (403, a)
    }

    /// Handles a request from `caller` (identity from its verified certificate). Returns the HTTP status and the
    /// answer; every call is audited (tracing target `acv::audit`) and counted.
    pub async fn ask(&self, caller: &Identity, req: PeerRequest) -> (u16, PeerAnswer) {
        let (status, a) = self.decide(caller, &req).await;
        self.audit(caller.component.as_str(), Some(&req), &a);
        (status, a)
    }

    fn audit(&self, caller: &str, req: Option<&PeerRequest>, a: &PeerAnswer) {
        tracing::info!(target: "acv::audit", side = "server", component = %self.me, caller,
            request_id = req.map(|r| r.request_id.as_str()).unwrap_or(""),
            origin = req.map(|r| r.origin.as_str()).unwrap_or(""),
            hops = req.map(|r| r.hops).unwrap_or(0),
            question = req.map(|r| r.question.as_str()).unwrap_or(""),
            intent = ?a.intent, outcome = outcome_label(a.outcome), message = %a.message, "Peer call served.");
        count(
            CounterName::PeerCalls,
            &[("side", "server"), ("outcome", outcome_label(a.outcome))],
            1,
        );
    }

    async fn decide(&self, caller: &Identity, req: &PeerRequest) -> (u16, PeerAnswer) {
        let refuse = |status: u16, msg: String| {
            (
                status,
                answer(
                    &req.request_id,
                    &self.me,
                    None,
                    PeerOutcome::Refused,
                    format!("refused: {msg}"),
                ),
            )
        };
        if caller.namespace != self.namespace {
            return refuse(
                403,
                format!("caller {caller} is not in namespace {}", self.namespace),
            );
        }
        if caller.component != req.from {
            return refuse(
                403,
                format!(
                    "the request says it is from {}, but the certificate belongs to {}",
                    req.from, caller.component
                ),
            );
        }
        if req.to != self.me {
            return refuse(421, format!("this sidecar maintains {}, not {}", self.me, req.to));
        }
        if req.request_id.is_empty() || req.request_id.len() > 128 {
            return refuse(400, "request_id must be 1..=128 characters".into());
        }
        if req.hops == 0 || req.hops > self.limits.max_hops {
            return refuse(
                508,
                format!(
                    "hop limit: this request is hop {} of a chain (origin {}), the limit is {}",
                    req.hops, req.origin, self.limits.max_hops
                ),
            );
        }
        // Duplicate ids and rate limit, under one short lock.
        {
            let Ok(mut st) = self.state.lock() else {
                return refuse(500, "internal state poisoned".into());
            };
            match st.answers.get(&req.request_id) {
                Some(Some(done)) => return done.clone(),
                Some(None) => {
                    return refuse(
                        409,
                        format!("request {} is already being handled", req.request_id),
                    );
                }
                None => {}
            }
            if !self.take_token(&mut st, &req.from) {
                return refuse(
                    429,
                    format!(
                        "rate limit: {} asks more than {} times per minute",
                        req.from, self.limits.per_minute
                    ),
                );
            }
            st.answers.insert(req.request_id.clone(), None);
            st.order.push_back(req.request_id.clone());
            while st.order.len() > self.limits.remember {
                if let Some(old) = st.order.pop_front() {
                    st.answers.remove(&old);
                }
            }
        }
        let intent = PeerIntent::of(&req.question);
        let done = match &self.maintainer {
            None => (
                503,
                answer(
                    &req.request_id,
                    &self.me,
                    Some(intent),
                    PeerOutcome::Declined,
                    "this sidecar has no cluster backend, so it can neither observe nor act".into(),
                ),
            ),
            Some(m) if intent.is_read_only() => (200, self.read_only(m, req, intent).await),
            Some(m) => (200, self.act(m, req).await),
        };
        if let Ok(mut st) = self.state.lock()
            && let Some(slot) = st.answers.get_mut(&req.request_id)
        {
            *slot = Some(done.clone());
        }
        done
    }

    fn take_token(&self, st: &mut State, from: &ComponentName) -> bool {
        let now = Instant::now();
        let burst = f64::from(self.limits.burst.max(1));
        let b = st.buckets.entry(from.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * f64::from(self.limits.per_minute) / 60.0;
        b.tokens = (b.tokens + refill).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Read-only answers: no mutating call is reachable from here.
    async fn read_only(&self, m: &Maintainer, req: &PeerRequest, intent: PeerIntent) -> PeerAnswer {
        let mut data = serde_json::Map::new();
        let mut lines = Vec::new();
        let want = |i: PeerIntent| intent == i || intent == PeerIntent::Summary;
        if want(PeerIntent::Status) {
            match m.cluster.status().await {
                Ok(s) => {
                    lines.push(format!(
                        "{}/{} replicas ready, revision {}, image {}",
                        s.ready_replicas, s.desired_replicas, s.revision, s.image
                    ));
                    data.insert("status".into(), serde_json::to_value(&s).unwrap_or_default());
                }
                Err(e) => lines.push(format!("status unavailable: {e}")),
            }
        }
        if want(PeerIntent::Metrics) {
            match m.cluster.metrics(m.window_secs).await {
                Ok(s) => {
                    let f = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
                    lines.push(format!(
                        "p99 {} ms, error rate {} %, cpu {} % of limit over {} s",
                        f(s.p99_ms),
                        f(s.error_rate_percent),
                        f(s.cpu_percent_of_limit),
                        m.window_secs
                    ));
                    data.insert("metrics".into(), serde_json::to_value(&s).unwrap_or_default());
                }
                Err(e) => lines.push(format!("metrics unavailable: {e}")),
            }
        }
        if want(PeerIntent::Health) {
            let check = Watcher::new(m.cluster.clone(), m.slo.clone(), m.window_secs)
                .check()
                .await;
            lines.push(describe_health(&check.violations));
            data.insert(
                "violations".into(),
                serde_json::to_value(&check.violations).unwrap_or_default(),
            );
        }
        if want(PeerIntent::Changes) {
            match m.cluster.history().await {
                Ok(h) => {
                    let recent: Vec<_> = h.iter().rev().take(5).collect();
                    lines.push(format!(
                        "{} revision(s); latest: {}",
                        h.len(),
                        recent.first().map_or("none".to_owned(), |r| format!("{r:?}"))
                    ));
                    data.insert(
                        "changes".into(),
                        serde_json::to_value(&recent).unwrap_or_default(),
                    );
                }
                Err(e) => lines.push(format!("history unavailable: {e}")),
            }
        }
        let mut a = answer(
            &req.request_id,
            &self.me,
            Some(intent),
            PeerOutcome::Answered,
            lines.join("; "),
        );
        a.data = serde_json::Value::Object(data);
        a
    }

    /// A request for action: measure the own SLOs; act only on own violations, with the own planner under the own
    /// safety mode, one action at a time; judge the result by a re-check.
    async fn act(&self, m: &Maintainer, req: &PeerRequest) -> PeerAnswer {
        let declined = |msg: String| {
            answer(
                &req.request_id,
                &self.me,
                Some(PeerIntent::Action),
                PeerOutcome::Declined,
                msg,
            )
        };
        let Ok(_work) = self.work.try_lock() else {
            return declined("busy with other maintenance work; nothing done, ask again later".into());
        };
        let watcher = Watcher::new(m.cluster.clone(), m.slo.clone(), m.window_secs);
        let before = watcher.check().await;
        if before.violations.is_empty() {
            return declined(format!(
                "my own SLOs are met ({}), so I changed nothing; the cause is probably elsewhere",
                describe_health(&before.violations)
            ));
        }
        let chain = Chain {
            origin: req.origin.clone(),
            hops: req.hops,
        };
        let started_ms = acv_core::now_ms();
        let report: ReportBody = CHAIN
            .scope(
                chain,
                m.handler.mitigate(&self.me, &req.request_id, &before.violations),
            )
            .await;
        let after = watcher.check().await;
        let outcome = match report.status {
            acv_protocol::ReportStatus::Response => "response",
            acv_protocol::ReportStatus::Issue => "issue",
        };
        count(
            CounterName::Episodes,
            &[("trigger", "peer"), ("outcome", outcome)],
            1,
        );
        m.audit.record(
            &req.request_id,
            acv_protocol::AuditKind::Report,
            crate::audit::Entry {
                name: Some("peer".into()),
                args: None,
                outcome: Some(outcome.into()),
                detail: serde_json::json!({
                    "trigger": "peer",
                    "started_at_ms": started_ms,
                    "asked_by": req.from,
                    "origin": req.origin,
                    "report": report,
                    "healthy_after": after.violations.is_empty(),
                }),
            },
        );
        let mode = match m.mode {
            SafetyMode::Autonomous => "autonomous",
            SafetyMode::Approve => "approve",
            SafetyMode::Observe => "observe (read-only)",
        };
        let mut a = answer(
            &req.request_id,
            &self.me,
            Some(PeerIntent::Action),
            PeerOutcome::Acted,
            format!(
                "found {} own violation(s) ({}); my planner ran in {mode} mode: {:?}: {}; re-check: {}",
                before.violations.len(),
                describe_list(&before.violations),
                report.status,
                report.message,
                describe_health(&after.violations)
            ),
        );
        a.data = serde_json::json!({
            "mode": mode,
            "before": before.violations,
            "after": after.violations,
        });
        a.report = Some(report);
        a
    }
}

fn describe_list(v: &[Violation]) -> String {
    v.iter().map(describe_violation).collect::<Vec<_>>().join("; ")
}

fn describe_health(v: &[Violation]) -> String {
    if v.is_empty() {
        "all SLOs met".into()
    } else {
        format!("SLOs broken: {}", describe_list(v))
    }
}

/// A [`TaskHandler`] that takes the sidecar's [`WorkLock`] for each piece of work, so the agent's own tasks and
/// mitigations never run at the same time as a peer-requested action.
pub struct SerialHandler {
    inner: Arc<dyn TaskHandler>,
    work: WorkLock,
}

impl SerialHandler {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn TaskHandler>, work: WorkLock) -> Self {
        Self { inner, work }
    }
}

#[async_trait]
impl TaskHandler for SerialHandler {
    async fn handle(&self, component: &ComponentName, task: &TaskBody) -> ReportBody {
        let _work = self.work.lock().await;
        self.inner.handle(component, task).await
    }

    async fn mitigate(
        &self,
        component: &ComponentName,
        work_id: &str,
        violations: &[Violation],
    ) -> ReportBody {
        let _work = self.work.lock().await;
        self.inner.mitigate(component, work_id, violations).await
    }

    async fn execute_approved(
        &self,
        component: &ComponentName,
        call: &acv_sandbox::HostCall,
    ) -> Result<serde_json::Value, acv_sandbox::HostError> {
        let _work = self.work.lock().await;
        self.inner.execute_approved(component, call).await
    }

    fn planner_name(&self) -> String {
        self.inner.planner_name()
    }
}

/// How long a peer waits for an answer by default (an action runs a planner).
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(120);
