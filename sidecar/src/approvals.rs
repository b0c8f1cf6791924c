//! Approve mode at the sidecar: the mutating calls an episode queued wait here for an operator's decision.
//!
//! When an episode ends with queued calls (its report's `pending_approval` evidence), the agent sends one
//! [`ApprovalRequest`] per call to the manager and keeps the validated call. A decision from the manager runs
//! **exactly that call** (rebuilt from what this process validated, never from the decision) at most once; a decision
//! delivered again gets the recorded result again without running anything. A request not approved by its expiry
//! never runs. When every call of an episode is closed, the episode's report is sent again with each call's fate
//! (approved by whom and run, denied by whom and why, expired), so the report says what happened.
//!
//! State is in memory: a restarted sidecar answers a decision for a call it no longer knows with
//! [`ApprovalState::Failed`] ("unknown to this sidecar"), and the call does not run.

use std::collections::{HashMap, VecDeque};

use acv_protocol::{
    Address, ApprovalDecision, ApprovalRequest, ApprovalResult, ApprovalState, Evidence, ReportBody,
    ReportStatus,
};
use acv_sandbox::HostCall;
use serde_json::json;

/// How many closed approvals are remembered, to answer redelivered decisions without running anything.
pub const REMEMBERED: usize = 1_000;

/// A queued call and the request that announced it.
#[derive(Debug, Clone)]
struct Waiting {
    request: ApprovalRequest,
    call: HostCall,
}

/// An episode whose report waits for its approvals to close.
#[derive(Debug, Clone)]
pub struct OpenEpisode {
    /// The report as first sent.
    pub report: ReportBody,
    /// Where the report went.
    pub reply_to: Address,
    /// The envelope id it answered (task envelope or issue).
    pub correlation: String,
    /// Its approvals' ids.
    pub ids: Vec<String>,
    /// Closed so far: the request, the result and the decision that closed it (if a person decided).
    pub closed: Vec<(ApprovalRequest, ApprovalResult, Option<ApprovalDecision>)>,
}

/// What the agent must do after a decision or an expiry.
#[derive(Debug, Clone)]
pub enum Step {
    /// Run this call, then call [`Approvals::finish`] with its result.
    Run {
        /// The request approved.
        request: Box<ApprovalRequest>,
        /// The call to run.
        call: HostCall,
        /// The decision.
        decision: ApprovalDecision,
    },
    /// Send this result to the manager (nothing runs).
    Answer(ApprovalResult),
}

impl Step {
    /// Whether nothing runs.
    pub fn is_answer(&self) -> bool {
        matches!(self, Step::Answer(_))
    }
}

/// The sidecar's approvals.
#[derive(Debug, Default)]
pub struct Approvals {
    waiting: HashMap<String, Waiting>,
    /// Approved and running: the decision that approved it.
    running: HashMap<String, (Waiting, ApprovalDecision)>,
    closed: VecDeque<ApprovalResult>,
    episodes: HashMap<String, OpenEpisode>,
}

/// The call an approval request stands for, rebuilt from the request this sidecar made.
pub fn host_call(request: &ApprovalRequest) -> Result<HostCall, String> {
    let mut value = request.args.clone();
    let map = value
        .as_object_mut()
        .ok_or_else(|| format!("approval {} has no argument object", request.id))?;
    map.insert("call".into(), json!(request.call));
    serde_json::from_value(value)
        .map_err(|e| format!("approval {} does not describe a host call: {e}", request.id))
}

/// The arguments of `call` as a JSON object (without the `call` tag).
pub fn call_args(call: &HostCall) -> serde_json::Value {
    let mut v = serde_json::to_value(call).unwrap_or_else(|_| json!({}));
    if let Some(map) = v.as_object_mut() {
        map.remove("call");
    }
    v
}

// === impl Approvals ===

impl Approvals {
    /// Whether any call waits for a decision or is running.
    pub fn any_open(&self) -> bool {
        !self.waiting.is_empty() || !self.running.is_empty()
    }

    /// Takes the requests of a finished episode (its report's [`ReportBody::approval_requests`]) and returns the ones to send to the
    /// manager: requests already known (a redone episode) are sent again but tracked once.
    pub fn open(
        &mut self,
        report: &ReportBody,
        reply_to: Address,
        correlation: String,
    ) -> Vec<ApprovalRequest> {
        let mut send = Vec::new();
        let mut ids = Vec::new();
        for request in &report.approval_requests() {
            let call = match host_call(request) {
                Ok(call) => call,
                Err(error) => {
                    tracing::error!(%error, "Queued call not understood; it will not run.");
                    continue;
                }
            };
            send.push(request.clone());
            if self.closed.iter().any(|r| r.id == request.id) {
                // Already decided and closed (a redone episode): nothing more to wait for.
                continue;
            }
            ids.push(request.id.clone());
            if self.waiting.contains_key(&request.id) || self.running.contains_key(&request.id) {
                continue;
            }
            self.waiting.insert(
                request.id.clone(),
                Waiting {
                    request: request.clone(),
                    call,
                },
            );
        }
        if !ids.is_empty() {
            self.episodes
                .entry(report.task_id.clone())
                .or_insert_with(|| OpenEpisode {
                    report: report.clone(),
                    reply_to,
                    correlation,
                    ids,
                    closed: Vec::new(),
                });
        }
        send
    }

    /// What to do with a decision received at `now_ms`.
    pub fn decide(&mut self, d: &ApprovalDecision, now_ms: u64) -> Step {
        if let Some(done) = self.closed.iter().find(|r| r.id == d.id) {
            // Redelivered: answer the same, run nothing.
            return Step::Answer(done.clone());
        }
        if self.running.contains_key(&d.id) {
            // Decided again while it runs: the result goes out when it is done.
            return Step::Answer(ApprovalResult {
                id: d.id.clone(),
                component: d.component.clone(),
                state: ApprovalState::Approved,
                result: None,
                error: Some("already running".into()),
                at_ms: now_ms,
            });
        }
        let Some(w) = self.waiting.remove(&d.id) else {
            return Step::Answer(ApprovalResult {
                id: d.id.clone(),
                component: d.component.clone(),
                state: ApprovalState::Failed,
                result: None,
                error: Some(
                    "this approval is unknown to the sidecar (it restarted since, or never asked); nothing was run"
                        .into(),
                ),
                at_ms: now_ms,
            });
        };
        if now_ms > w.request.expires_at_ms {
            let result = ApprovalResult {
                id: d.id.clone(),
                component: w.request.component.clone(),
                state: ApprovalState::Expired,
                result: None,
                error: Some(format!(
                    "the decision arrived after the approval expired ({} ms late); nothing was run",
                    now_ms - w.request.expires_at_ms
                )),
                at_ms: now_ms,
            };
            self.close(w.request, result.clone(), Some(d.clone()));
            return Step::Answer(result);
        }
        if !d.approve {
            let result = ApprovalResult {
                id: d.id.clone(),
                component: w.request.component.clone(),
                state: ApprovalState::Denied,
                result: None,
                error: None,
                at_ms: now_ms,
            };
            self.close(w.request, result.clone(), Some(d.clone()));
            return Step::Answer(result);
        }
        let call = w.call.clone();
        let request = Box::new(w.request.clone());
        self.running.insert(d.id.clone(), (w, d.clone()));
        Step::Run {
            request,
            call,
            decision: d.clone(),
        }
    }

    /// Records the result of a call [`Step::Run`] asked for and returns what to send to the manager.
    pub fn finish(
        &mut self,
        id: &str,
        outcome: Result<serde_json::Value, String>,
        now_ms: u64,
    ) -> Option<ApprovalResult> {
        let (w, decision) = self.running.remove(id)?;
        let (state, result, error) = match outcome {
            Ok(v) => (ApprovalState::Executed, Some(v), None),
            Err(e) => (ApprovalState::Failed, None, Some(e)),
        };
        let result = ApprovalResult {
            id: id.to_owned(),
            component: w.request.component.clone(),
            state,
            result,
            error,
            at_ms: now_ms,
        };
        self.close(w.request, result.clone(), Some(decision));
        Some(result)
    }

    /// Closes every waiting approval past its expiry at `now_ms`; returns their results.
    pub fn expire(&mut self, now_ms: u64) -> Vec<ApprovalResult> {
        let late: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.request.expires_at_ms < now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in late {
            if let Some(w) = self.waiting.remove(&id) {
                let result = ApprovalResult {
                    id: id.clone(),
                    component: w.request.component.clone(),
                    state: ApprovalState::Expired,
                    result: None,
                    error: Some("nobody decided before the approval expired; nothing was run".into()),
                    at_ms: now_ms,
                };
                self.close(w.request, result.clone(), None);
                out.push(result);
            }
        }
        out
    }

    fn close(
        &mut self,
        request: ApprovalRequest,
        result: ApprovalResult,
        decision: Option<ApprovalDecision>,
    ) {
        if self.closed.len() >= REMEMBERED {
            self.closed.pop_front();
        }
        self.closed.push_back(result.clone());
        // Episodes are keyed by the report's task id, which is the request's episode.
        if let Some(e) = self.episodes.get_mut(&request.episode) {
            e.closed.push((request, result, decision));
        }
    }

    /// Episodes whose approvals are all closed, removed from the open set, with their final report.
    pub fn finished_episodes(&mut self) -> Vec<(OpenEpisode, ReportBody)> {
        let done: Vec<String> = self
            .episodes
            .iter()
            .filter(|(_, e)| e.closed.len() >= e.ids.len())
            .map(|(k, _)| k.clone())
            .collect();
        done.into_iter()
            .filter_map(|k| self.episodes.remove(&k))
            .map(|e| {
                let report = final_report(&e);
                (e, report)
            })
            .collect()
    }
}

/// One closed approval in words, e.g. `scale(replicas=3) [id] approved by alice and run: ok`.
pub fn describe(
    request: &ApprovalRequest,
    result: &ApprovalResult,
    decision: Option<&ApprovalDecision>,
) -> String {
    let who = decision
        .and_then(|d| d.by.clone())
        .unwrap_or_else(|| "someone".into());
    let why = decision
        .and_then(|d| d.reason.clone())
        .map(|r| format!(" ({r:?})"))
        .unwrap_or_default();
    let what = format!("{} [{}]", request.describe(), request.id);
    match result.state {
        ApprovalState::Executed => format!("{what} approved by {who}{why} and run: ok"),
        ApprovalState::Failed if decision.is_some_and(|d| d.approve) => format!(
            "{what} approved by {who}{why}, but the call failed: {}",
            result.error.as_deref().unwrap_or("unknown error")
        ),
        ApprovalState::Failed => format!(
            "{what} not run: {}",
            result.error.as_deref().unwrap_or("unknown error")
        ),
        ApprovalState::Denied => format!("{what} denied by {who}{why}; not run"),
        ApprovalState::Expired => format!(
            "{what} expired: {}",
            result
                .error
                .as_deref()
                .unwrap_or("nobody decided in time; not run")
        ),
        ApprovalState::Pending | ApprovalState::Approved => format!("{what} still open"),
    }
}

/// The episode's report once its approvals are closed: RESPONSE only when every queued call was approved and ran
/// (and the first report was not an ISSUE for another reason), each call's fate in the message and as evidence.
pub fn final_report(e: &OpenEpisode) -> ReportBody {
    let mut report = e.report.clone();
    let all_ran = e
        .closed
        .iter()
        .all(|(_, r, _)| r.state == ApprovalState::Executed);
    let lines: Vec<String> = e
        .closed
        .iter()
        .map(|(req, res, dec)| describe(req, res, dec.as_ref()))
        .collect();
    report.status = if all_ran {
        ReportStatus::Response
    } else {
        ReportStatus::Issue
    };
    report.message = format!("{} — approvals: {}", e.report.message, lines.join("; "));
    for (req, res, dec) in &e.closed {
        report.evidence.push(Evidence {
            name: "approval".into(),
            value: json!({
                "id": req.id,
                "call": req.call,
                "args": req.args,
                "state": res.state,
                "by": dec.as_ref().and_then(|d| d.by.clone()),
                "reason": dec.as_ref().and_then(|d| d.reason.clone()),
                "result": res.result,
                "error": res.error,
            }),
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use acv_protocol::ComponentName;

    use super::*;

    fn c() -> ComponentName {
        ComponentName::new("catalogue").unwrap()
    }

    fn request(id: &str, expires: u64) -> ApprovalRequest {
        ApprovalRequest {
            id: id.into(),
            component: c(),
            episode: "t1".into(),
            task_id: Some("t1".into()),
            call: "scale".into(),
            args: json!({"replicas": 3}),
            program: "acv.scale(3)".into(),
            step: 1,
            seq: 0,
            requested_at_ms: 0,
            expires_at_ms: expires,
        }
    }

    fn report(approvals: Vec<ApprovalRequest>) -> ReportBody {
        ReportBody {
            task_id: "t1".into(),
            component: c(),
            status: ReportStatus::Issue,
            message: "queued".into(),
            evidence: vec![Evidence {
                name: acv_protocol::PENDING_APPROVAL_EVIDENCE.into(),
                value: serde_json::to_value(approvals).unwrap(),
            }],
            steps: vec![],
            diagnosis: None,
        }
    }

    fn decision(id: &str, approve: bool) -> ApprovalDecision {
        ApprovalDecision {
            id: id.into(),
            component: c(),
            approve,
            by: Some("alice".into()),
            reason: Some("ok".into()),
            decided_at_ms: 5,
        }
    }

    #[test]
    fn an_approved_call_runs_once_and_redelivery_runs_nothing() {
        let mut a = Approvals::default();
        let sent = a.open(
            &report(vec![request("a1", 100), request("a2", 100)]),
            Address::Manager,
            "x".into(),
        );
        assert_eq!(sent.len(), 2);
        let Step::Run { call, .. } = a.decide(&decision("a1", true), 10) else {
            panic!("should run")
        };
        assert_eq!(call, HostCall::Scale { replicas: 3 });
        let r = a.finish("a1", Ok(json!({"ready": 3})), 11).unwrap();
        assert_eq!(r.state, ApprovalState::Executed);
        let Step::Answer(again) = a.decide(&decision("a1", true), 12) else {
            panic!("must not run twice")
        };
        assert_eq!(again.state, ApprovalState::Executed);
        // The episode redone (its task redelivered): a1 is asked again but, closed already, never runs again.
        let resent = a.open(&report(vec![request("a1", 100)]), Address::Manager, "x".into());
        assert_eq!(resent.len(), 1, "asked again, so the manager has it");
        assert!(a.decide(&decision("a1", true), 12).is_answer());
        assert!(a.finished_episodes().is_empty(), "a2 is still open");
        let Step::Answer(denied) = a.decide(&decision("a2", false), 13) else {
            panic!("denied runs nothing")
        };
        assert_eq!(denied.state, ApprovalState::Denied);
        let done = a.finished_episodes();
        assert_eq!(done.len(), 1);
        let (_, final_report) = &done[0];
        assert_eq!(final_report.status, ReportStatus::Issue);
        assert!(
            final_report.message.contains("approved by alice"),
            "{}",
            final_report.message
        );
        assert!(
            final_report.message.contains("denied by alice"),
            "{}",
            final_report.message
        );
        assert!(!a.any_open());
    }

    #[test]
    fn expired_and_unknown_calls_never_run() {
        let mut a = Approvals::default();
        a.open(
            &report(vec![request("a1", 100), request("a2", 100)]),
            Address::Manager,
            "x".into(),
        );
        let Step::Answer(late) = a.decide(&decision("a1", true), 101) else {
            panic!("late approval ran")
        };
        assert_eq!(late.state, ApprovalState::Expired);
        let expired = a.expire(200);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].id, "a2");
        let Step::Answer(unknown) = a.decide(&decision("zz", true), 201) else {
            panic!("unknown ran")
        };
        assert_eq!(unknown.state, ApprovalState::Failed);
        let done = a.finished_episodes();
        assert!(done[0].1.message.contains("expired"), "{}", done[0].1.message);
    }

    #[test]
    fn calls_round_trip_through_their_request() {
        for call in [
            HostCall::Scale { replicas: 2 },
            HostCall::Restart,
            HostCall::SetEnv {
                key: "A".into(),
                value: "b".into(),
            },
        ] {
            let mut r = request("a", 1);
            r.call = call.name().into();
            r.args = call_args(&call);
            assert_eq!(host_call(&r).unwrap(), call);
        }
    }
}
