//! The versioned envelope every bus message travels in, and its addresses.
//!
//! On the wire an envelope is one JSON object:
//! `{"v":1,"id":"…","correlation_id":"…","from":"component/catalogue","to":"manager","sent_at_ms":…,
//!   "deadline_ms":…,"kind":"report","body":{…}}`. The `kind` tag selects the shape of `body`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    ApprovalDecision, ApprovalRequest, ApprovalResult, AuditBatch, ComponentName, IssueBody, NameError,
    ReportBody, TaskBody,
};

/// The protocol version this crate writes. Readers accept exactly the versions in [`SUPPORTED_VERSIONS`].
pub const PROTOCOL_VERSION: u16 = 1;

/// The versions this crate can read.
pub const SUPPORTED_VERSIONS: &[u16] = &[1];

/// Largest encoded envelope accepted, in bytes. Larger payloads are rejected before parsing.
pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;

/// Where a message goes or comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    /// The manager's inbox.
    Manager,
    /// A component's sidecar inbox.
    Component(ComponentName),
    /// A short-lived client (CLI, API caller, test) with its own reply inbox.
    Client(ComponentName),
    /// Everyone listening to broadcasts (registry, heartbeats). Not durable.
    Broadcast,
}

/// Why bytes could not be decoded into an [`Envelope`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload is larger than [`MAX_ENVELOPE_BYTES`].
    #[error("payload of {0} bytes is larger than the {MAX_ENVELOPE_BYTES} byte limit")]
    TooLarge(usize),
    /// The payload is not JSON, or not an envelope of a supported shape.
    #[error("malformed envelope: {0}")]
    Malformed(#[source] serde_json::Error),
    /// The envelope was written by a protocol version this build cannot read.
    #[error("unsupported protocol version {found} (supported: {SUPPORTED_VERSIONS:?})")]
    UnsupportedVersion {
        /// The version found in the payload.
        found: u64,
    },
    /// The envelope parsed but is inconsistent (e.g. a task addressed to one component about another).
    #[error("invalid envelope: {0}")]
    Invalid(String),
}

/// Why an address string could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// Not one of `manager`, `broadcast`, `component/NAME`, `client/NAME`.
    #[error("unknown address {0:?}: expected manager, broadcast, component/NAME or client/NAME")]
    Unknown(String),
    /// The name part is not a valid name.
    #[error("bad name in address: {0}")]
    Name(#[from] NameError),
}

/// A component announcing itself to the registry (manager and peers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The component the sidecar maintains.
    pub component: ComponentName,
    /// HTTPS base URL of the sidecar's peer endpoint, when it serves one (mechanism 3).
    #[serde(default)]
    pub peer_url: Option<String>,
    /// Which planner the sidecar runs (`rules`, `llm:<model>`, `none`).
    pub planner: String,
    /// Build version of the sidecar.
    pub version: String,
    /// What the sidecar's programs may do to its component (absent from sidecars that do not say, or plan nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<crate::SafetyMode>,
}

/// A periodic liveness and health summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The component the sidecar maintains.
    pub component: ComponentName,
    /// Monotonic counter per sidecar process.
    pub seq: u64,
    /// Whether the component met all its SLOs at the last check (`None`: not checked yet).
    #[serde(default)]
    pub healthy: Option<bool>,
    /// HTTPS base URL of the sidecar's peer endpoint, repeated from the registration so peers that started later
    /// learn it too (mechanism 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_url: Option<String>,
    /// The planner, repeated from the registration so a manager that started later knows it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planner: Option<String>,
    /// The safety mode, repeated from the registration for the same reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<crate::SafetyMode>,
}

/// The typed body, tagged by kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Body {
    /// Work to do.
    Task(TaskBody),
    /// The answer to a task.
    Report(ReportBody),
    /// An unsolicited problem report.
    Issue(IssueBody),
    /// Liveness.
    Heartbeat(Heartbeat),
    /// Registry announcement.
    Register(Registration),
    /// A sidecar's mutating call waiting for an operator (sidecar → manager).
    ApprovalRequest(ApprovalRequest),
    /// An operator's decision on it (manager → sidecar).
    ApprovalDecision(ApprovalDecision),
    /// What the sidecar did with the decision (sidecar → manager).
    ApprovalResult(ApprovalResult),
    /// Audit records (sidecar → manager).
    Audit(AuditBatch),
}

/// The kind of a message, without its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// See [`Body::Task`].
    Task,
    /// See [`Body::Report`].
    Report,
    /// See [`Body::Issue`].
    Issue,
    /// See [`Body::Heartbeat`].
    Heartbeat,
    /// See [`Body::Register`].
    Register,
    /// See [`Body::ApprovalRequest`].
    ApprovalRequest,
    /// See [`Body::ApprovalDecision`].
    ApprovalDecision,
    /// See [`Body::ApprovalResult`].
    ApprovalResult,
    /// See [`Body::Audit`].
    Audit,
}

/// A bus message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Protocol version that wrote this envelope.
    pub v: u16,
    /// Unique id of this message; receivers use it to drop duplicate deliveries.
    pub id: String,
    /// Groups messages of one conversation: a report carries the id of the task envelope it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Sender.
    pub from: Address,
    /// Receiver.
    pub to: Address,
    /// When the sender created it, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// After this time (ms since the Unix epoch) the message is stale and receivers should drop it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// The payload, tagged by kind.
    #[serde(flatten)]
    pub body: Body,
}

// === impl Address ===

impl Address {
    /// A component inbox address from a validated name.
    pub fn component(name: &ComponentName) -> Self {
        Address::Component(name.clone())
    }

    /// Whether messages to this address must survive the receiver being down (tasks, reports, issues do;
    /// broadcasts do not).
    pub fn is_durable(&self) -> bool {
        !matches!(self, Address::Broadcast)
    }

    /// A stable token for this inbox usable in queue names and subjects: `manager`, `component.NAME`,
    /// `client.NAME`, `broadcast`.
    pub fn inbox_token(&self) -> String {
        match self {
            Address::Manager => "manager".to_owned(),
            Address::Component(n) => format!("component.{n}"),
            Address::Client(n) => format!("client.{n}"),
            Address::Broadcast => "broadcast".to_owned(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Manager => f.write_str("manager"),
            Address::Broadcast => f.write_str("broadcast"),
            Address::Component(n) => write!(f, "component/{n}"),
            Address::Client(n) => write!(f, "client/{n}"),
        }
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manager" => Ok(Address::Manager),
            "broadcast" => Ok(Address::Broadcast),
            _ => match s.split_once('/') {
                Some(("component", n)) => Ok(Address::Component(ComponentName::new(n)?)),
                Some(("client", n)) => Ok(Address::Client(ComponentName::new(n)?)),
                _ => Err(AddressError::Unknown(s.to_owned())),
            },
        }
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

// === impl Body ===

impl Body {
    /// The kind tag of this body.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Task(_) => Kind::Task,
            Body::Report(_) => Kind::Report,
            Body::Issue(_) => Kind::Issue,
            Body::Heartbeat(_) => Kind::Heartbeat,
            Body::Register(_) => Kind::Register,
            Body::ApprovalRequest(_) => Kind::ApprovalRequest,
            Body::ApprovalDecision(_) => Kind::ApprovalDecision,
            Body::ApprovalResult(_) => Kind::ApprovalResult,
            Body::Audit(_) => Kind::Audit,
        }
    }

    /// The component a sidecar-written body is about (its sender must be that component's sidecar).
    pub fn sidecar_component(&self) -> Option<&ComponentName> {
        match self {
            Body::Report(r) => Some(&r.component),
            Body::Issue(i) => Some(&i.component),
            Body::Heartbeat(h) => Some(&h.component),
            Body::Register(r) => Some(&r.component),
            Body::ApprovalRequest(a) => Some(&a.component),
            Body::ApprovalResult(a) => Some(&a.component),
            Body::Audit(a) => Some(&a.component),
            Body::Task(_) | Body::ApprovalDecision(_) => None,
        }
    }
}

// === impl Envelope ===

impl Envelope {
    /// A new envelope at protocol version [`PROTOCOL_VERSION`]. The caller supplies a unique `id` (e.g. a UUID)
    /// and the current time, so this crate stays free of clocks and randomness.
    pub fn new(id: impl Into<String>, from: Address, to: Address, sent_at_ms: u64, body: Body) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id: id.into(),
            correlation_id: None,
            from,
            to,
            sent_at_ms,
            deadline_ms: None,
            body,
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Sets the deadline.
    pub fn with_deadline_ms(mut self, deadline_ms: u64) -> Self {
        self.deadline_ms = Some(deadline_ms);
        self
    }

    /// The kind of the body.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// Whether the deadline has passed at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.deadline_ms.is_some_and(|d| now_ms > d)
    }

    /// Encodes to JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising these types cannot fail: all map keys are strings and there are no non-finite floats
        // produced by our own constructors; fall back to an error-free empty object would lose data, so we
        // surface the impossible case loudly in debug builds only.
        match serde_json::to_vec(self) {
            Ok(bytes) => bytes,
            Err(e) => {
                debug_assert!(false, "envelope serialisation failed: {e}");
                Vec::new()
            }
        }
    }

    /// Decodes and validates JSON bytes. Garbage, unknown versions and inconsistent envelopes are typed errors.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        // Check the version before the full shape so that a future version with new fields gets the right error.
        #[derive(Deserialize)]
        struct Version {
            v: u64,
        }
        let version: Version = serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        if !SUPPORTED_VERSIONS.iter().any(|&s| u64::from(s) == version.v) {
            return Err(DecodeError::UnsupportedVersion { found: version.v });
        }
        let env: Envelope = serde_json::from_slice(bytes).map_err(DecodeError::Malformed)?;
        env.validate()?;
        Ok(env)
    }

    fn validate(&self) -> Result<(), DecodeError> {
        if self.id.is_empty() {
            return Err(DecodeError::Invalid("empty message id".into()));
        }
        if let Body::Task(task) = &self.body
            && let Address::Component(to) = &self.to
            && to != &task.component
        {
            return Err(DecodeError::Invalid(format!(
                "task for component {} sent to the inbox of {to}",
                task.component
            )));
        }
        match &self.body {
            Body::ApprovalRequest(a) => a.validate().map_err(|e| DecodeError::Invalid(e.to_string()))?,
            Body::Audit(batch) => batch.validate().map_err(DecodeError::Invalid)?,
            Body::ApprovalDecision(d) => {
                if let Address::Component(to) = &self.to
                    && to != &d.component
                {
                    return Err(DecodeError::Invalid(format!(
                        "approval decision for {} sent to the inbox of {to}",
                        d.component
                    )));
                }
            }
            _ => {}
        }
        // Approvals and audit records speak for a component: only its own sidecar may send them; decisions come
        // from the manager only.
        match &self.body {
            Body::ApprovalRequest(_) | Body::ApprovalResult(_) | Body::Audit(_) => {
                let own = matches!(&self.from, Address::Component(from) if self.body.sidecar_component() == Some(from));
                if !own {
                    return Err(DecodeError::Invalid(format!(
                        "{:?} about {} sent by {}: only that component's sidecar may send it",
                        self.kind(),
                        self.body
                            .sidecar_component()
                            .map_or_else(String::new, ToString::to_string),
                        self.from
                    )));
                }
            }
            Body::ApprovalDecision(_) if self.from != Address::Manager => {
                return Err(DecodeError::Invalid(format!(
                    "approval decision sent by {}: only the manager decides",
                    self.from
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
