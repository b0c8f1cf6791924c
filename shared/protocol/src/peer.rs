//! Wire types of the peer API (mechanism 3): one sidecar asking another directly, over mutual TLS.
//!
//! `POST /v1/ask` carries a [`PeerRequest`] and answers with a [`PeerAnswer`] (also on refusals, with an HTTP error
//! status). The caller's identity is its client certificate; `from` must name the same component.

use serde::{Deserialize, Serialize};

use crate::{ComponentName, ReportBody};

/// The path of the ask endpoint.
pub const ASK_PATH: &str = "/v1/ask";

/// Largest request body accepted, in bytes.
pub const MAX_PEER_REQUEST_BYTES: usize = 64 * 1024;

/// A question from one sidecar to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerRequest {
    /// Unique per request; a repeated id (a retry) gets the first answer again instead of a second action.
    pub request_id: String,
    /// The first request id of a chain of peer calls (the same as `request_id` on the first hop).
    pub origin: String,
    /// The asking component; must be the component in the caller's certificate.
    pub from: ComponentName,
    /// The component asked; must be the server's own component.
    pub to: ComponentName,
    /// The question in plain words, e.g. "status" or "your latency hurts mine, please check and fix".
    pub question: String,
    /// How many peer calls led here, this one included (1 on the first hop).
    pub hops: u32,
}

/// What a question asks for, decided by [`PeerIntent::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerIntent {
    /// Replicas, revision, image (read-only).
    Status,
    /// The metrics snapshot (read-only).
    Metrics,
    /// The own SLO check (read-only).
    Health,
    /// Recent revisions (read-only).
    Changes,
    /// Everything read-only at once: the answer to a question not recognised as anything narrower.
    Summary,
    /// A request for action: the peer runs its own health check and, if its own SLOs are broken, its own planner
    /// under its own safety mode.
    Action,
}

/// The outcome of a peer call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerOutcome {
    /// A read-only question was answered; nothing changed.
    Answered,
    /// The peer's planner ran on its own violations; the report says what it did.
    Acted,
    /// The peer looked and did nothing (its SLOs are met, or it is busy with other maintenance).
    Declined,
    /// The request was refused by policy (identity, hop limit, rate limit, bad request).
    Refused,
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerAnswer {
    /// The request answered.
    pub request_id: String,
    /// The component that answered.
    pub component: ComponentName,
    /// How the question was understood.
    pub intent: Option<PeerIntent>,
    /// What happened.
    pub outcome: PeerOutcome,
    /// One line for people and planners.
    pub message: String,
    /// Read-only data (status, metrics, health, changes), when asked.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
    /// The peer planner's report, when it acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<ReportBody>,
}

// === impl PeerIntent ===

const ACTION_WORDS: &[&str] = &[
    "fix",
    "mitigate",
    "roll back",
    "rollback",
    "restart",
    "scale",
    "please check",
    "help",
    "repair",
    "act",
];

impl PeerIntent {
    /// Reads the intent of a question. Action words win ("your latency hurts mine, please check and fix" is an
    /// action); anything not recognised is a read-only [`PeerIntent::Summary`], so a vague question never
    /// triggers a change.
    pub fn of(question: &str) -> Self {
        let q = question.to_lowercase();
        let words: Vec<&str> = q
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let joined = words.join(" ");
        let has = |w: &str| {
            if w.contains(' ') {
                joined.contains(w)
            } else {
                words.contains(&w)
            }
        };
        if ACTION_WORDS.iter().any(|w| has(w)) {
            return PeerIntent::Action;
        }
        let any = |ws: &[&str]| ws.iter().any(|w| words.iter().any(|x| x.starts_with(w)));
        if any(&["health", "slo", "ok", "healthy"]) {
            PeerIntent::Health
        } else if any(&["change", "history", "revision", "deploy", "rollout", "version"]) {
            PeerIntent::Changes
        } else if any(&[
            "metric", "latency", "p99", "p50", "cpu", "memory", "error", "rate",
        ]) {
            PeerIntent::Metrics
        } else if any(&["status", "replica", "image", "ready"]) {
            PeerIntent::Status
        } else {
            PeerIntent::Summary
        }
    }

    /// Whether answering may change anything.
    pub fn is_read_only(self) -> bool {
        self != PeerIntent::Action
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents() {
        assert_eq!(
            PeerIntent::of("Your latency hurts mine, please check and fix"),
            PeerIntent::Action
        );
        assert_eq!(PeerIntent::of("please roll back"), PeerIntent::Action);
        assert_eq!(PeerIntent::of("status"), PeerIntent::Status);
        assert_eq!(PeerIntent::of("What is your P99 latency?"), PeerIntent::Metrics);
        assert_eq!(PeerIntent::of("are you healthy?"), PeerIntent::Health);
        assert_eq!(PeerIntent::of("recent changes"), PeerIntent::Changes);
        assert_eq!(PeerIntent::of("hello there"), PeerIntent::Summary);
        // "act" is a word, not a prefix: "actual" does not make a question an action.
        assert_eq!(PeerIntent::of("actual cpu"), PeerIntent::Metrics);
        assert!(PeerIntent::Summary.is_read_only() && !PeerIntent::Action.is_read_only());
    }

    #[test]
    fn answer_round_trips() {
        let a = PeerAnswer {
            request_id: "r1".into(),
            component: ComponentName::new("catalogue").unwrap(),
            intent: Some(PeerIntent::Status),
            outcome: PeerOutcome::Answered,
            message: "ok".into(),
            data: serde_json::json!({"ready": 1}),
            report: None,
        };
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<PeerAnswer>(&s).unwrap(), a);
        assert!(serde_json::from_str::<PeerRequest>(r#"{"request_id":"x"}"#).is_err());
    }
}
