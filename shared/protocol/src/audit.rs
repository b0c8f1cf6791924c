//! The audit trail: what every sidecar did, record by record (each program, host call, peer call and report),
//! sent to the manager in batches ([`AuditBatch`]) and stored there.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ComponentName;

/// Most records one [`AuditBatch`] may carry.
pub const MAX_AUDIT_BATCH: usize = 512;

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A program ran in the sandbox (name: the step's description; detail: step, program, verdict, output).
    Program,
    /// A host call a program made (name: the call; args; outcome: `ok`, `error`, `refused`, `pending_approval`),
    /// or an approved call the sidecar ran later (detail: `approval`).
    HostCall,
    /// A question to a peer (mechanism 3; name: the peer).
    PeerCall,
    /// A report the sidecar sent (outcome: `RESPONSE`/`ISSUE`; detail: the report and the episode's facts).
    Report,
}

impl AuditKind {
    /// Every kind.
    pub const ALL: [AuditKind; 4] = [Self::Program, Self::HostCall, Self::PeerCall, Self::Report];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Program => "program",
            Self::HostCall => "host_call",
            Self::PeerCall => "peer_call",
            Self::Report => "report",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AuditKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("unknown audit kind {s:?} (expected program, host_call, peer_call or report)")
        })
    }
}

/// One thing a sidecar did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Unique id (the receiver drops a record it already has, so resending a batch is harmless).
    pub id: String,
    /// The component whose sidecar did it.
    pub component: ComponentName,
    /// The episode it belongs to (task id, issue id or peer request id).
    pub episode: String,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// What it is about.
    pub kind: AuditKind,
    /// The call, peer or step description.
    #[serde(default)]
    pub name: Option<String>,
    /// The arguments, when it was a call.
    #[serde(default)]
    pub args: Option<serde_json::Value>,
    /// How it ended, one word.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Everything else, as JSON.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// Audit records of one sidecar, sent to the manager together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditBatch {
    /// The sidecar's component (every record must be about it).
    pub component: ComponentName,
    /// The records, oldest first.
    pub records: Vec<AuditRecord>,
}

impl AuditBatch {
    /// Checks the batch is one component's and not oversized.
    pub fn validate(&self) -> Result<(), String> {
        if self.records.len() > MAX_AUDIT_BATCH {
            return Err(format!(
                "audit batch of {} records is larger than the {MAX_AUDIT_BATCH} limit",
                self.records.len()
            ));
        }
        if let Some(r) = self.records.iter().find(|r| r.component != self.component) {
            return Err(format!(
                "audit batch of {} carries record {} about {}",
                self.component, r.id, r.component
            ));
        }
        if self
            .records
            .iter()
            .any(|r| r.id.is_empty() || r.episode.is_empty())
        {
            return Err("audit record without id or episode".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_one_components() {
        let c = ComponentName::new("catalogue").unwrap();
        let record = AuditRecord {
            id: "r1".into(),
            component: c.clone(),
            episode: "e1".into(),
            at_ms: 1,
            kind: AuditKind::HostCall,
            name: Some("scale".into()),
            args: Some(serde_json::json!({"replicas": 2})),
            outcome: Some("ok".into()),
            detail: serde_json::Value::Null,
        };
        let mut batch = AuditBatch {
            component: c,
            records: vec![record.clone()],
        };
        batch.validate().unwrap();
        let json = serde_json::to_value(&batch).unwrap();
        assert_eq!(json["records"][0]["kind"], "host_call");
        batch.records[0].component = ComponentName::new("orders").unwrap();
        assert!(batch.validate().is_err());
        for k in AuditKind::ALL {
            assert_eq!(k.as_str().parse::<AuditKind>().unwrap(), k);
        }
    }
}
