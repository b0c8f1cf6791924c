//! Safety modes: how much a maintainer may change on its own. Shared by the sandbox (which enforces them on every
//! host call), the planners (which plan accordingly) and the sidecar's configuration.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a maintainer's programs may do to its component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
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
