//! Who may task this sidecar: a small policy, checked before any planning.
//!
//! The default lets the manager and operators' clients task any sidecar, and nobody else: a peer sidecar may only
//! ask (mechanism 3, read-only questions over the peer API), never send a task. A YAML file named by
//! [`ENV_POLICY`] replaces the default:
//!
//! ```yaml
//! tasks:
//!   - from: manager            # manager | client/* | client/NAME | component/NAME
//!   - from: client/*
//!     to: [catalogue, carts]   # optional: only these components (default: all)
//! ```
//!
//! The sender checked is the envelope's `from`, which the bus has already matched against the broker-verified
//! identity when sender verification is on (`ACV_BUS_VERIFY_SENDER`), so the policy cannot be fooled by a forged
//! `from`.

use std::path::Path;

use acv_protocol::{Address, ComponentName, ReportBody, ReportStatus, TaskBody};
use acv_telemetry::metrics::{CounterName, count};
use serde::Deserialize;

/// Env key: path of the task policy file (YAML). Unset: [`TaskPolicy::default`].
pub const ENV_POLICY: &str = "ACV_SIDECAR_POLICY";

/// Why a policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read the task policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("invalid task policy {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Which senders may send tasks to which components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskPolicy {
    rules: Vec<Rule>,
}

/// One allowance: senders matching `from` may task the components in `to` (all when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    from: Sender,
    to: Option<Vec<ComponentName>>,
}

/// A sender pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sender {
    Manager,
    AnyClient,
    Client(ComponentName),
    Component(ComponentName),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tasks: Vec<FileRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    from: String,
    #[serde(default)]
    to: Option<Vec<ComponentName>>,
}

// === impl TaskPolicy ===

impl Default for TaskPolicy {
    /// The manager and operators' clients may task anyone; peers may not.
    fn default() -> Self {
        Self {
            rules: vec![
                Rule {
                    from: Sender::Manager,
                    to: None,
                },
                Rule {
                    from: Sender::AnyClient,
                    to: None,
                },
            ],
        }
    }
}

impl TaskPolicy {
    /// Parses a policy document (YAML).
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let rules = file
            .tasks
            .into_iter()
            .map(|r| {
                Ok(Rule {
                    from: Sender::parse(&r.from)?,
                    to: r.to,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Self { rules })
    }

    /// Loads the policy file named by [`ENV_POLICY`], or the default when unset.
    pub fn from_env(env: &dyn acv_core::env::Strings) -> Result<Self, PolicyError> {
        match env.get(ENV_POLICY) {
            Some(path) => Self::load(Path::new(&path)),
            None => Ok(Self::default()),
        }
    }

    /// Loads a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|message| PolicyError::Invalid { path: shown, message })
    }

    /// `Ok` if `from` may task `component`, else the reason.
    pub fn permits(&self, from: &Address, component: &ComponentName) -> Result<(), String> {
        let allowed = self
            .rules
            .iter()
            .any(|r| r.from.matches(from) && r.to.as_ref().is_none_or(|to| to.contains(component)));
        if allowed {
            return Ok(());
        }
        let hint = match from {
            Address::Component(_) => {
                " (a peer sidecar may ask questions over the peer API but not send tasks)"
            }
            _ => "",
        };
        Err(format!(
            "{from} is not allowed to send tasks to {component} by the task policy{hint}"
        ))
    }
}

/// The report answering a task the policy refused. Nothing was planned or executed.
pub fn refusal(component: &ComponentName, task: &TaskBody, reason: &str) -> ReportBody {
    tracing::warn!(task_id = %task.task_id, %reason, "Task refused by the task policy.");
    count(CounterName::TasksHandled, &[("outcome", "refused_policy")], 1);
    ReportBody {
        task_id: task.task_id.clone(),
        component: component.clone(),
        status: ReportStatus::Issue,
        message: format!("task refused, nothing was done: {reason}"),
        evidence: Vec::new(),
        steps: Vec::new(),
        diagnosis: None,
    }
}

// === impl Sender ===

impl Sender {
    fn parse(s: &str) -> Result<Self, String> {
        let name = |n: &str| ComponentName::new(n).map_err(|e| format!("sender {s:?}: {e}"));
        match s.trim() {
            "manager" => Ok(Sender::Manager),
            "client/*" => Ok(Sender::AnyClient),
            other => match other.split_once('/') {
                Some(("client", n)) => Ok(Sender::Client(name(n)?)),
                Some(("component", n)) => Ok(Sender::Component(name(n)?)),
                _ => Err(format!(
                    "unknown sender {s:?}: expected manager, client/*, client/NAME or component/NAME"
                )),
            },
        }
    }

    fn matches(&self, from: &Address) -> bool {
        match (self, from) {
            (Sender::Manager, Address::Manager) => true,
            (Sender::AnyClient, Address::Client(_)) => true,
            (Sender::Client(a), Address::Client(b)) | (Sender::Component(a), Address::Component(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ComponentName {
        ComponentName::new(s).unwrap()
    }

    #[test]
    fn default_lets_manager_and_clients_task_but_not_peers() {
        let p = TaskPolicy::default();
        let cat = name("catalogue");
        assert!(p.permits(&Address::Manager, &cat).is_ok());
        assert!(p.permits(&Address::Client(name("cli-1")), &cat).is_ok());
        let err = p
            .permits(&Address::Component(name("front-end")), &cat)
            .unwrap_err();
        assert!(
            err.contains("component/front-end") && err.contains("peer"),
            "{err}"
        );
        assert!(p.permits(&Address::Broadcast, &cat).is_err());
    }

    #[test]
    fn a_file_narrows_or_widens() {
        let p = TaskPolicy::parse(
            "tasks:\n  - from: manager\n  - from: component/front-end\n    to: [catalogue]\n",
        )
        .unwrap();
        let fe = Address::Component(name("front-end"));
        assert!(p.permits(&fe, &name("catalogue")).is_ok());
        assert!(p.permits(&fe, &name("carts")).is_err());
        assert!(
            p.permits(&Address::Client(name("cli-1")), &name("catalogue"))
                .is_err()
        );
    }

    #[test]
    fn bad_files_are_typed_errors() {
        for bad in [
            "tasks:\n  - from: everyone\n",
            "tasks:\n  - from: component/Bad\n",
            "tasks: 3\n",
            "rules: []\n",
            "tasks:\n  - from: manager\n    to: [\"no way\"]\n",
        ] {
            assert!(TaskPolicy::parse(bad).is_err(), "{bad}");
        }
        let missing = TaskPolicy::load(Path::new("/nonexistent/acv-policy.yaml")).unwrap_err();
        assert!(
            missing.to_string().contains("/nonexistent/acv-policy.yaml"),
            "{missing}"
        );
    }

    #[test]
    fn refusal_reports_an_issue_and_does_nothing() {
        let task = TaskBody {
            task_id: "t1".into(),
            component: name("catalogue"),
            spec: acv_protocol::TaskSpec::Imperative {
                text: "scale to 5".into(),
            },
            mechanism: acv_protocol::Mechanism::Solo,
        };
        let r = refusal(&name("catalogue"), &task, "nope");
        assert_eq!(r.status, ReportStatus::Issue);
        assert!(r.steps.is_empty() && r.message.contains("nope"));
    }
}
