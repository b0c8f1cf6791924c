//! Episodes, derived from the audit trail: one sidecar's work on one task, SLO violation or peer request, from its
//! first record to its report, with each step's program, host calls, output and verdict (`GET /v1/episodes`).
//!
//! The sidecar writes the facts into its records' `detail` (see `acv_sidecar::audit`): `step` and `program` on
//! program records, `step`, `seq`, `result`/`error` on calls, and `trigger`, `started_at_ms`,
//! `time_to_detect_ms`, `time_to_mitigate_ms` and `report` on report records. An episode still running has no
//! `ended_at`, `outcome` or `report` yet.

use acv_protocol::{AuditKind, ComponentName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{AuditEntry, AuditQuery, Store, StoreError, rfc3339};

/// Most audit records read for one episode.
pub const MAX_EPISODE_RECORDS: u32 = 5_000;

/// One host or peer call of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeCall {
    /// The call (`scale`, `ask_peer`, …).
    pub name: String,
    /// Its arguments.
    pub args: Value,
    /// `ok`, `error`, `refused`, `pending_approval`.
    pub outcome: String,
    /// What it returned (or `{"error": …}`).
    pub result: Value,
}

/// One step: a program and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeStep {
    /// The Python program.
    pub program: String,
    /// Its calls, in order (an approved call run later follows the call that queued it).
    pub calls: Vec<EpisodeCall>,
    /// What it printed (or its error).
    pub output: String,
    /// The sandbox's verdict (`ok`, `guest_error`, `refused`, …).
    pub verdict: String,
}

/// One episode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Episode {
    /// Id (task id, issue id or peer request id).
    pub id: String,
    /// The component.
    pub component: ComponentName,
    /// `task`, `slo` or `peer`.
    pub trigger: String,
    /// When the work started.
    #[serde(rename = "started_at", with = "rfc3339")]
    pub started_ms: u64,
    /// When the (last) report went out.
    #[serde(rename = "ended_at", with = "rfc3339::option")]
    pub ended_ms: Option<u64>,
    /// The report's outcome (`response`, `issue`).
    pub outcome: Option<String>,
    /// First failing SLO check → episode start (SLO episodes).
    pub time_to_detect_ms: Option<u64>,
    /// Episode start → SLOs measured healthy again (SLO episodes that recovered).
    pub time_to_mitigate_ms: Option<u64>,
    /// The steps, in order.
    pub steps: Vec<EpisodeStep>,
    /// The last report sent (a `ReportBody`).
    pub report: Option<Value>,
}

fn u64_of(v: &Value, key: &str) -> Option<u64> {
    v.get(key).and_then(Value::as_u64)
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The episode `records` (one component's, one episode's, oldest first) describe; `None` when there are none.
pub fn derive(records: &[AuditEntry]) -> Option<Episode> {
    let first = records.first()?;
    let mut episode = Episode {
        id: first.episode.clone(),
        component: first.component.clone(),
        trigger: "task".into(),
        started_ms: first.at_ms,
        ended_ms: None,
        outcome: None,
        time_to_detect_ms: None,
        time_to_mitigate_ms: None,
        steps: Vec::new(),
        report: None,
    };
    // Steps by their index; calls attach to the step with the same index.
    let mut steps: Vec<(u64, EpisodeStep)> = Vec::new();
    let mut calls: Vec<(u64, u64, u64, EpisodeCall)> = Vec::new();
    for r in records {
        let d = &r.detail;
        if let Some(t) = str_of(d, "trigger") {
            episode.trigger = t;
        }
        if let Some(s) = u64_of(d, "started_at_ms") {
            episode.started_ms = episode.started_ms.min(s);
        }
        if let Some(v) = u64_of(d, "time_to_detect_ms") {
            episode.time_to_detect_ms = Some(v);
        }
        if let Some(v) = u64_of(d, "time_to_mitigate_ms") {
            episode.time_to_mitigate_ms = Some(v);
        }
        match r.kind {
            AuditKind::Program => steps.push((
                u64_of(d, "step").unwrap_or(0),
                EpisodeStep {
                    program: str_of(d, "program").unwrap_or_default(),
                    calls: Vec::new(),
                    output: str_of(d, "output").unwrap_or_default(),
                    verdict: r.outcome.clone().unwrap_or_default(),
                },
            )),
            AuditKind::HostCall | AuditKind::PeerCall => {
                let result = match (d.get("result"), d.get("error")) {
                    (_, Some(e)) if !e.is_null() => serde_json::json!({ "error": e }),
                    (Some(v), _) => v.clone(),
                    _ => Value::Null,
                };
                calls.push((
                    u64_of(d, "step").unwrap_or(0),
                    u64_of(d, "seq").unwrap_or(0),
                    r.at_ms,
                    EpisodeCall {
                        name: r.name.clone().unwrap_or_default(),
                        args: r.args.clone().unwrap_or(Value::Null),
                        outcome: r.outcome.clone().unwrap_or_default(),
                        result,
                    },
                ));
            }
            AuditKind::Report => {
                episode.ended_ms = Some(r.at_ms);
                episode.outcome = r.outcome.clone();
                if let Some(report) = d.get("report") {
                    episode.report = Some(report.clone());
                }
            }
        }
    }
    // Stable sorts: calls by step, then position in the run, then time (an approved call run later follows the
    // pending one with the same position).
    steps.sort_by_key(|(i, _)| *i);
    calls.sort_by_key(|(step, seq, at, _)| (*step, *seq, *at));
    for (step, _, _, call) in calls {
        match steps.iter_mut().find(|(i, _)| *i == step) {
            Some((_, s)) => s.calls.push(call),
            None => steps.push((
                step,
                EpisodeStep {
                    program: String::new(),
                    calls: vec![call],
                    output: String::new(),
                    verdict: String::new(),
                },
            )),
        }
    }
    steps.sort_by_key(|(i, _)| *i);
    episode.steps = steps.into_iter().map(|(_, s)| s).collect();
    Some(episode)
}

/// The most recent episodes (of `component`, when given), newest first.
pub async fn recent(
    store: &dyn Store,
    component: Option<&ComponentName>,
    limit: u32,
) -> Result<Vec<Episode>, StoreError> {
    let mut out = Vec::new();
    for (component, id) in store.recent_episodes(component, limit).await? {
        if let Some(e) = one(store, &component, &id).await? {
            out.push(e);
        }
    }
    Ok(out)
}

/// One episode of `component`.
pub async fn one(
    store: &dyn Store,
    component: &ComponentName,
    id: &str,
) -> Result<Option<Episode>, StoreError> {
    let records = store
        .audit(&AuditQuery {
            component: Some(component.clone()),
            episode: Some(id.to_owned()),
            since_ms: None,
            limit: MAX_EPISODE_RECORDS,
        })
        .await?;
    Ok(derive(&records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(kind: AuditKind, at: u64, name: Option<&str>, outcome: &str, detail: Value) -> AuditEntry {
        AuditEntry {
            id: format!("r{at}"),
            component: ComponentName::new("catalogue").unwrap(),
            episode: "e1".into(),
            at_ms: at,
            kind,
            name: name.map(Into::into),
            args: Some(json!({})),
            outcome: Some(outcome.into()),
            detail,
        }
    }

    #[test]
    fn steps_calls_and_report_come_from_the_records() {
        let records = vec![
            rec(
                AuditKind::HostCall,
                10,
                Some("scale"),
                "pending_approval",
                json!({"step": 1, "seq": 0}),
            ),
            rec(
                AuditKind::Program,
                11,
                Some("scale up"),
                "refused",
                json!({"step": 1, "program": "acv.scale(3)",
                "output": "queued"}),
            ),
            rec(
                AuditKind::Report,
                12,
                None,
                "issue",
                json!({"trigger": "slo", "started_at_ms": 5,
                "time_to_detect_ms": 3000, "report": {"message": "awaiting approval"}}),
            ),
            rec(
                AuditKind::HostCall,
                20,
                Some("scale"),
                "ok",
                json!({"step": 1, "seq": 0, "approval": "a1",
                "result": {"ready_replicas": 3}}),
            ),
        ];
        let e = derive(&records).unwrap();
        assert_eq!(e.trigger, "slo");
        assert_eq!(e.started_ms, 5);
        assert_eq!(e.ended_ms, Some(12));
        assert_eq!(e.outcome.as_deref(), Some("issue"));
        assert_eq!(e.time_to_detect_ms, Some(3000));
        assert_eq!(e.time_to_mitigate_ms, None);
        assert_eq!(e.steps.len(), 1);
        let step = &e.steps[0];
        assert_eq!(step.program, "acv.scale(3)");
        assert_eq!(step.verdict, "refused");
        let outcomes: Vec<&str> = step.calls.iter().map(|c| c.outcome.as_str()).collect();
        assert_eq!(outcomes, ["pending_approval", "ok"]);
        assert_eq!(step.calls[1].result["ready_replicas"], 3);
        let json = serde_json::to_value(&e).unwrap();
        assert!(
            json["started_at"]
                .as_str()
                .unwrap()
                .starts_with("1970-01-01T00:00:00.005")
        );
        assert!(derive(&[]).is_none());
    }
}
