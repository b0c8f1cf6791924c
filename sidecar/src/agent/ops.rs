//! The agent's operator-facing side: each episode's end (report in the audit trail, `acv_episodes_total`, approval
//! requests to the manager), operators' decisions on queued calls, their expiry, the follow-up report once an
//! episode's approvals are closed, and the watcher's time-to-detect / time-to-mitigate.

use acv_protocol::{
    Address, ApprovalDecision, ApprovalResult, AuditKind, Body, Envelope, ReportBody, ReportStatus,
};
use acv_telemetry::metrics::{CounterName, HistogramName, count, observe};
use serde_json::{Value, json};

use super::{Agent, new_id};
use crate::{
    approvals::{Step, call_args},
    audit::Entry,
    exec::bounded,
};

fn status_word(status: ReportStatus) -> &'static str {
    match status {
        ReportStatus::Response => "response",
        ReportStatus::Issue => "issue",
    }
}

// === impl Agent ===

impl Agent {
    /// An SLO episode starts at `now_ms`: returns its time to detect (first failing check → now) when it is the
    /// first episode of this unhealthy stretch, and remembers the start for time to mitigate.
    pub(super) fn episode_started(&mut self, now_ms: u64) -> Option<u64> {
        if self.mitigating.is_some() {
            return None;
        }
        self.mitigating = Some((String::new(), now_ms));
        let first = self.first_failing_ms?;
        let ttd = now_ms.saturating_sub(first);
        observe(HistogramName::TimeToDetectSeconds, &[], ttd as f64 / 1000.0);
        Some(ttd)
    }

    /// The SLOs were measured healthy at `now_ms`: closes the unhealthy stretch's time to mitigate.
    pub(super) fn recovered(&mut self, now_ms: u64) {
        let Some((episode, started)) = self.mitigating.take() else {
            return;
        };
        let ttm = now_ms.saturating_sub(started);
        observe(HistogramName::TimeToMitigateSeconds, &[], ttm as f64 / 1000.0);
        tracing::info!(component = %self.component, episode = %episode, ms = ttm, "SLOs healthy again.");
        if !episode.is_empty() {
            self.audit.record(
                &episode,
                AuditKind::Report,
                Entry {
                    name: Some("recovered".into()),
                    args: None,
                    outcome: Some("recovered".into()),
                    detail: json!({"trigger": "slo", "time_to_mitigate_ms": ttm}),
                },
            );
        }
    }

    /// An episode produced `report` (sent to `reply_to`, answering envelope `correlation`): counts it, records it,
    /// and sends its queued calls to the manager for approval.
    pub(super) async fn episode_done(
        &mut self,
        report: &ReportBody,
        trigger: &'static str,
        reply_to: &Address,
        correlation: &str,
        started_ms: u64,
        facts: Value,
    ) {
        if trigger == "slo"
            && let Some((id, _)) = &mut self.mitigating
            && id.is_empty()
        {
            // The stretch's first episode: its id carries the time to mitigate when the SLOs recover.
            *id = report.task_id.clone();
        }
        let requests = self
            .approvals
            .open(report, reply_to.clone(), correlation.to_owned());
        let outcome = if requests.is_empty() {
            status_word(report.status)
        } else {
            "awaiting_approval"
        };
        count(
            CounterName::Episodes,
            &[("trigger", trigger), ("outcome", outcome)],
            1,
        );
        let mut detail = json!({
            "trigger": trigger,
            "started_at_ms": started_ms,
            "report": report,
        });
        if let (Some(map), Value::Object(extra)) = (detail.as_object_mut(), facts) {
            map.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
        }
        self.audit.record(
            &report.task_id,
            AuditKind::Report,
            Entry {
                name: Some(trigger.into()),
                args: None,
                outcome: Some(status_word(report.status).into()),
                detail,
            },
        );
        for request in requests {
            let env = Envelope::new(
                new_id(),
                self.me(),
                Address::Manager,
                acv_core::now_ms(),
                Body::ApprovalRequest(request.clone()),
            );
            match self.bus.publish(&env).await {
                Ok(()) => tracing::info!(id = %request.id, call = %request.describe(),
                    "Call queued for approval; asked the manager."),
                Err(error) => tracing::warn!(%error, id = %request.id,
                    "Approval request not delivered; the call will expire unrun unless it is sent again."),
            }
        }
    }

    /// An operator's decision from the manager: run the approved call (once), or record why it does not run.
    pub(super) async fn on_decision(&mut self, d: &ApprovalDecision) {
        let result = match self.approvals.decide(d, acv_core::now_ms()) {
            Step::Answer(r) => r,
            Step::Run {
                request,
                call,
                decision,
            } => {
                tracing::info!(id = %request.id, call = %request.describe(),
                    by = decision.by.as_deref().unwrap_or_default(), "Running an approved call.");
                let outcome = self
                    .handler
                    .execute_approved(&self.component, &call)
                    .await
                    .map_err(|e| e.to_string());
                let mut detail = json!({
                    "step": request.step,
                    "seq": request.seq,
                    "approval": request.id,
                    "decided_by": decision.by,
                });
                match &outcome {
                    Ok(v) => detail["result"] = bounded(v),
                    Err(e) => detail["error"] = json!(e),
                }
                self.audit.record(
                    &request.episode,
                    AuditKind::HostCall,
                    Entry {
                        name: Some(call.name().into()),
                        args: Some(call_args(&call)),
                        outcome: Some(if outcome.is_ok() { "ok" } else { "error" }.into()),
                        detail,
                    },
                );
                match self.approvals.finish(&request.id, outcome, acv_core::now_ms()) {
                    Some(r) => r,
                    None => return,
                }
            }
        };
        self.send_result(result).await;
        self.send_finished_reports().await;
    }

    /// Closes queued calls past their expiry (they never run) and tells the manager.
    pub(super) async fn expire_approvals(&mut self) {
        let expired = self.approvals.expire(acv_core::now_ms());
        if expired.is_empty() {
            return;
        }
        for r in expired {
            tracing::info!(id = %r.id, "Queued call expired undecided; it will not run.");
            self.send_result(r).await;
        }
        self.send_finished_reports().await;
    }

    async fn send_result(&self, r: ApprovalResult) {
        if r.state.is_final() {
            count(CounterName::Approvals, &[("outcome", r.state.as_str())], 1);
        }
        let env = Envelope::new(
            new_id(),
            self.me(),
            Address::Manager,
            acv_core::now_ms(),
            Body::ApprovalResult(r),
        );
        if let Err(error) = self.bus.publish(&env).await {
            tracing::warn!(%error, "Approval result not delivered to the manager.");
        }
    }

    /// Sends the final report of every episode whose approvals are all closed.
    async fn send_finished_reports(&mut self) {
        for (episode, report) in self.approvals.finished_episodes() {
            self.audit.record(
                &report.task_id,
                AuditKind::Report,
                Entry {
                    name: Some("approvals closed".into()),
                    args: None,
                    outcome: Some(status_word(report.status).into()),
                    detail: json!({"report": report}),
                },
            );
            let env = Envelope::new(
                new_id(),
                self.me(),
                episode.reply_to.clone(),
                acv_core::now_ms(),
                Body::Report(report),
            )
            .with_correlation(episode.correlation.clone());
            if let Err(error) = self.bus.publish(&env).await {
                tracing::warn!(%error, "Final report after approvals not delivered.");
            }
        }
    }
}
