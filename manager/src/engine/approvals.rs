//! Approvals at the manager: requests from sidecars are stored, people decide through the API (`acvctl approvals`,
//! the dashboard), decisions go back to the sidecar that asked, and its result closes the approval. A pending
//! approval past its expiry is marked expired here too, so the API says so even when the sidecar is gone.

use acv_protocol::{
    Address, ApprovalDecision, ApprovalRequest, ApprovalResult, ApprovalState, Body, Envelope,
};

use super::{Engine, EngineError, new_id};
use crate::store::Approval;

/// Longest `by` or `reason` accepted with a decision, in bytes.
pub const MAX_DECISION_TEXT: usize = 4096;

/// Why a decision could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No approval with this id.
    #[error("approval {0:?} not found")]
    NotFound(String),
    /// It was decided already, expired, or ran.
    #[error("approval {id:?} is already {state}{detail}")]
    Decided {
        /// The approval.
        id: String,
        /// Its state.
        state: ApprovalState,
        /// Who and when, for a person.
        detail: String,
    },
    /// The request is malformed (e.g. an overlong reason).
    #[error("{0}")]
    Invalid(String),
    /// Storage or bus failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn decided_detail(a: &Approval) -> String {
    let mut s = String::new();
    if let Some(by) = &a.decided_by {
        s.push_str(&format!(" (by {by}"));
        if let Some(ms) = a.decided_ms {
            s.push_str(&format!(" at {}", crate::store::rfc3339::format(ms)));
        }
        s.push(')');
    }
    s
}

// === impl Engine ===

impl Engine {
    /// Stores a sidecar's request (a redelivered one is left as stored).
    pub(super) async fn on_approval_request(&self, r: &ApprovalRequest) -> Result<(), EngineError> {
        let approval = Approval {
            id: r.id.clone(),
            component: r.component.clone(),
            episode: r.episode.clone(),
            task_id: r.task_id.clone(),
            call: r.call.clone(),
            args: r.args.clone(),
            program: r.program.clone(),
            state: ApprovalState::Pending,
            requested_ms: r.requested_at_ms,
            expires_ms: r.expires_at_ms,
            decided_ms: None,
            decided_by: None,
            reason: None,
            result: None,
        };
        if self.store.insert_approval(&approval).await? {
            tracing::info!(id = %r.id, component = %r.component, call = %r.describe(),
                "Approval requested.");
        }
        Ok(())
    }

    /// Records what the sidecar did with a decision.
    pub(super) async fn on_approval_result(&self, r: &ApprovalResult) -> Result<(), EngineError> {
        let Some(mut a) = self.store.approval(&r.id).await? else {
            tracing::warn!(id = %r.id, component = %r.component, "Result for an unknown approval ignored.");
            return Ok(());
        };
        if a.component != r.component {
            tracing::warn!(id = %r.id, from = %r.component, owner = %a.component,
                "Approval result from another component ignored.");
            return Ok(());
        }
        let before = a.state;
        match (before, r.state) {
            (ApprovalState::Approved, ApprovalState::Executed | ApprovalState::Failed) => {
                a.result = match (&r.result, &r.error) {
                    (_, Some(error)) => Some(serde_json::json!({ "error": error })),
                    (Some(v), None) => Some(v.clone()),
                    (None, None) => Some(serde_json::Value::Null),
                };
            }
            (ApprovalState::Pending | ApprovalState::Approved, ApprovalState::Expired) => {
                a.reason = r.error.clone().or(a.reason);
            }
            // A sidecar confirming a denial, or a duplicate of a result already recorded: nothing changes.
            _ => return Ok(()),
        }
        a.state = r.state;
        if a.decided_ms.is_none() {
            a.decided_ms = Some(r.at_ms);
            a.decided_by = Some("expiry".into());
        }
        if self.store.update_approval(&a, before).await? {
            tracing::info!(id = %a.id, component = %a.component, state = %a.state, "Approval closed.");
        }
        Ok(())
    }

    /// Marks pending approvals past their expiry as expired.
    pub(super) async fn expire_approvals(&self) -> Result<(), EngineError> {
        for a in self.store.expire_approvals(acv_core::now_ms()).await? {
            tracing::info!(id = %a.id, component = %a.component, call = %a.call, "Approval expired undecided.");
        }
        Ok(())
    }

    /// A person approves (`approve`) or denies an approval: it must be pending and not expired; the decision is
    /// stored (who, when, why) and sent to the sidecar that asked. Returns the approval as stored.
    pub async fn decide(
        &self,
        id: &str,
        approve: bool,
        by: Option<String>,
        reason: Option<String>,
    ) -> Result<Approval, DecideError> {
        for (what, text) in [("by", &by), ("reason", &reason)] {
            if text.as_ref().is_some_and(|t| t.len() > MAX_DECISION_TEXT) {
                return Err(DecideError::Invalid(format!(
                    "{what} is longer than {MAX_DECISION_TEXT} bytes"
                )));
            }
        }
        let now = acv_core::now_ms();
        let Some(mut a) = self.store.approval(id).await.map_err(EngineError::from)? else {
            return Err(DecideError::NotFound(id.to_owned()));
        };
        if a.state == ApprovalState::Pending && a.expires_ms < now {
            self.expire_approvals().await?;
            a = self
                .store
                .approval(id)
                .await
                .map_err(EngineError::from)?
                .ok_or_else(|| DecideError::NotFound(id.to_owned()))?;
        }
        if !a.state.is_open() {
            return Err(DecideError::Decided {
                id: a.id.clone(),
                state: a.state,
                detail: decided_detail(&a),
            });
        }
        a.state = if approve {
            ApprovalState::Approved
        } else {
            ApprovalState::Denied
        };
        a.decided_ms = Some(now);
        a.decided_by = Some(by.clone().unwrap_or_else(|| "anonymous".into()));
        a.reason = reason.clone();
        if !self
            .store
            .update_approval(&a, ApprovalState::Pending)
            .await
            .map_err(EngineError::from)?
        {
            // Someone else decided in between.
            let now_stored = self
                .store
                .approval(id)
                .await
                .map_err(EngineError::from)?
                .ok_or_else(|| DecideError::NotFound(id.to_owned()))?;
            return Err(DecideError::Decided {
                id: id.to_owned(),
                state: now_stored.state,
                detail: decided_detail(&now_stored),
            });
        }
        let env = Envelope::new(
            new_id(),
            Address::Manager,
            Address::Component(a.component.clone()),
            now,
            Body::ApprovalDecision(ApprovalDecision {
                id: a.id.clone(),
                component: a.component.clone(),
                approve,
                by: a.decided_by.clone(),
                reason,
                decided_at_ms: now,
            }),
        );
        if let Err(e) = self.bus.publish(&env).await {
            // Undo, so the approval can be decided again once the bus is back.
            let mut back = a.clone();
            back.state = ApprovalState::Pending;
            back.decided_ms = None;
            back.decided_by = None;
            back.reason = None;
            let _undone = self.store.update_approval(&back, a.state).await;
            return Err(EngineError::Bus(e).into());
        }
        tracing::info!(id = %a.id, component = %a.component, state = %a.state,
            by = a.decided_by.as_deref().unwrap_or_default(), "Approval decided.");
        Ok(a)
    }
}
