//! Safety modes: how much a maintainer may change on its own. Shared by the sandbox (which enforces them on every
//! host call), the planners (which plan accordingly) and the sidecar's configuration.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every host call a sandboxed program can make and the sandbox records (`acv.<name>(...)`), in the order of the
/// host API. (`acv.component()` also exists; it only returns the own name and is not a host call.)
pub const HOST_CALLS: [&str; 12] = [
    "status",
    "metrics",
    "logs",
    "history",
    "scale",
    "restart",
    "set_image",
    "set_env",
    "set_resources",
    "rollback",
    "report",
    "ask_peer",
];

/// The host calls that change the cluster: refused in [`SafetyMode::Observe`], queued in [`SafetyMode::Approve`].
/// The one list the sandbox enforces, the prompt describes and the test fakes follow.
pub const MUTATING_CALLS: [&str; 6] = [
    "scale",
    "restart",
    "set_image",
    "set_env",
    "set_resources",
    "rollback",
];

/// Whether the host call `name` (as in [`HOST_CALLS`]) changes the cluster.
pub fn is_mutating_call(name: &str) -> bool {
    MUTATING_CALLS.contains(&name)
}

/// What a maintainer's programs may do to its component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SafetyMode {
    /// Read-only: mutating calls are refused and recorded as refused.
    Observe,
    /// Mutating calls are not executed but queued for an operator; reads run normally.
    Approve,
    /// Every call the component scope allows runs.
    #[default]
    Autonomous,
}

// === impl SafetyMode ===

impl SafetyMode {
    /// The mode's name as used in config and logs (`observe`, `approve`, `autonomous`).
    pub fn as_str(self) -> &'static str {
        match self {
            SafetyMode::Observe => "observe",
            SafetyMode::Approve => "approve",
            SafetyMode::Autonomous => "autonomous",
        }
    }
}

impl fmt::Display for SafetyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SafetyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "observe" => Ok(SafetyMode::Observe),
            "approve" => Ok(SafetyMode::Approve),
            "autonomous" => Ok(SafetyMode::Autonomous),
            other => Err(format!(
                "unknown safety mode {other:?} (expected observe, approve or autonomous)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutating_calls_are_host_calls() {
        for name in MUTATING_CALLS {
            assert!(HOST_CALLS.contains(&name), "{name}");
            assert!(is_mutating_call(name));
        }
        assert!(!is_mutating_call("status"));
        assert!(!is_mutating_call("report"));
        assert!(!is_mutating_call("acv.scale"));
    }

    #[test]
    fn parses_prints_and_serialises() {
        for m in [SafetyMode::Observe, SafetyMode::Approve, SafetyMode::Autonomous] {
            assert_eq!(m.as_str().parse::<SafetyMode>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert!(
            "yolo"
                .parse::<SafetyMode>()
                .unwrap_err()
                .contains("unknown safety mode")
        );
    }
}
