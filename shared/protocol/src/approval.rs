//! Approvals (approve mode): a sidecar's mutating host call that waits for an operator.
//!
//! The flow on the bus: the sidecar sends an [`ApprovalRequest`] (the call, its arguments and the program that wanted
//! it) to the manager; the manager stores it and, when a person decides, sends an [`ApprovalDecision`] back; the
//! sidecar runs exactly the call it queued (never arguments coming back over the wire), at most once, and answers
//! with an [`ApprovalResult`]. A request not decided by its `expires_at_ms` never runs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{ComponentName, is_mutating_call};

/// Longest approval id accepted, in bytes (ids appear in URLs).
pub const MAX_APPROVAL_ID: usize = 200;

/// Where an approval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a person.
    Pending,
    /// A person approved it; the sidecar has not answered yet.
    Approved,
    /// A person denied it; it never runs.
    Denied,
    /// Nobody decided in time (or the approval reached the sidecar too late); it never runs.
    Expired,
    /// Approved and run by the sidecar; the call succeeded.
    Executed,
    /// Approved and run by the sidecar; the call failed (or the sidecar no longer knew it).
    Failed,
}

impl ApprovalState {
    /// Every state, in lifecycle order.
    pub const ALL: [ApprovalState; 6] = [
        Self::Pending,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Executed,
        Self::Failed,
    ];

    /// The wire name (`pending`, `approved`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Executed => "executed",
            Self::Failed => "failed",
        }
    }

    /// Whether a person can still decide (only [`ApprovalState::Pending`]).
    pub fn is_open(self) -> bool {
        self == Self::Pending
    }

    /// Whether nothing more happens to it (denied, expired, executed, failed).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Denied | Self::Expired | Self::Executed | Self::Failed)
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ApprovalState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown approval state {s:?} (expected pending, approved, denied, expired, executed or failed)"
                )
            })
    }
}

/// A mutating host call queued in approve mode, sent by the sidecar to the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// Stable id: the same queued call gets the same id when its episode is redone after a redelivery.
    pub id: String,
    /// The component whose sidecar queued it (and will run it).
    pub component: ComponentName,
    /// The episode (task id, or the id of the issue a violation raised) that wanted it.
    pub episode: String,
    /// The task, when the episode answers one.
    #[serde(default)]
    pub task_id: Option<String>,
    /// The host call's name (one of [`crate::MUTATING_CALLS`]).
    pub call: String,
    /// Its validated arguments, as a JSON object (e.g. `{"replicas": 3}`).
    pub args: serde_json::Value,
    /// The Python program that made the call.
    pub program: String,
    /// The program's step in the episode (1-based; 0 when unknown).
    #[serde(default)]
    pub step: u32,
    /// The call's position in the program's run (from 0).
    #[serde(default)]
    pub seq: u32,
    /// When it was queued, ms since the Unix epoch.
    pub requested_at_ms: u64,
    /// After this time (ms since the Unix epoch) it never runs.
    pub expires_at_ms: u64,
}

/// Why an approval message is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid approval: {0}")]
pub struct ApprovalError(pub String);

/// Whether `id` can be an approval id: 1..=[`MAX_APPROVAL_ID`] bytes of letters, digits, `-`, `_`, `.`, `:`.
pub fn valid_approval_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_APPROVAL_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl ApprovalRequest {
    /// Checks what a receiver relies on: a usable id, a mutating call, object arguments, a sane expiry.
    pub fn validate(&self) -> Result<(), ApprovalError> {
        if !valid_approval_id(&self.id) {
            return Err(ApprovalError(format!(
                "id {:?} must be 1 to {MAX_APPROVAL_ID} letters, digits, '-', '_', '.' or ':'",
                self.id
            )));
        }
        if self.episode.is_empty() {
            return Err(ApprovalError(format!("approval {} names no episode", self.id)));
        }
        if !is_mutating_call(&self.call) {
            return Err(ApprovalError(format!(
                "approval {} is for {:?}, which is not a mutating host call",
                self.id, self.call
            )));
        }
        if !self.args.is_object() {
            return Err(ApprovalError(format!(
                "approval {} has arguments that are not a JSON object",
                self.id
            )));
        }
        if self.expires_at_ms < self.requested_at_ms {
            return Err(ApprovalError(format!(
                "approval {} expires before it was requested",
                self.id
            )));
        }
        Ok(())
    }

    /// The call in words, e.g. `scale(replicas=3)`.
    pub fn describe(&self) -> String {
        describe_call(&self.call, &self.args)
    }
}

/// A host call and its arguments in words, e.g. `scale(replicas=3)`.
pub fn describe_call(call: &str, args: &serde_json::Value) -> String {
    let args = match args.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => String::new(),
    };
    format!("{call}({args})")
}

/// A person's decision, sent by the manager to the sidecar that asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// The approval decided.
    pub id: String,
    /// The component whose sidecar asked.
    pub component: ComponentName,
    /// Run it (`true`) or not.
    pub approve: bool,
    /// Who decided.
    #[serde(default)]
    pub by: Option<String>,
    /// Why, in their words.
    #[serde(default)]
    pub reason: Option<String>,
    /// When, ms since the Unix epoch.
    pub decided_at_ms: u64,
}

/// What became of an approval at the sidecar, sent to the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalResult {
    /// The approval.
    pub id: String,
    /// The component whose sidecar ran (or did not run) it.
    pub component: ComponentName,
    /// [`ApprovalState::Executed`], [`ApprovalState::Failed`], [`ApprovalState::Expired`] or
    /// [`ApprovalState::Denied`] (the sidecar confirming a denial).
    pub state: ApprovalState,
    /// The call's result (JSON as the program would have received it), when it ran.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
    /// Why it failed or did not run.
    #[serde(default)]
    pub error: Option<String>,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            id: "task-1:s1:c2".into(),
            component: ComponentName::new("catalogue").unwrap(),
            episode: "task-1".into(),
            task_id: Some("task-1".into()),
            call: "scale".into(),
            args: serde_json::json!({"replicas": 3}),
            program: "acv.scale(3)".into(),
            step: 1,
            seq: 2,
            requested_at_ms: 10,
            expires_at_ms: 20,
        }
    }

    #[test]
    fn validates_what_receivers_rely_on() {
        request().validate().unwrap();
        assert_eq!(request().describe(), "scale(replicas=3)");
        let mut r = request();
        r.call = "status".into();
        assert!(r.validate().unwrap_err().0.contains("not a mutating"));
        let mut r = request();
        r.id = "a/b".into();
        assert!(r.validate().is_err());
        let mut r = request();
        r.args = serde_json::json!([3]);
        assert!(r.validate().is_err());
        let mut r = request();
        r.expires_at_ms = 5;
        assert!(r.validate().is_err());
    }

    #[test]
    fn states_parse_and_print() {
        for s in ApprovalState::ALL {
            assert_eq!(s.as_str().parse::<ApprovalState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("maybe".parse::<ApprovalState>().is_err());
        assert!(ApprovalState::Pending.is_open() && !ApprovalState::Pending.is_final());
        assert!(!ApprovalState::Approved.is_final());
    }
}
