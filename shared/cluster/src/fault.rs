//! Faults a local runtime can inject, as its control API carries them (the runtime applies them; see `acv-runtime`),
//! mirroring the Chaos Mesh experiments of the paper: pod failure, CPU and memory stress attributed to the service,
//! and added latency. Rising traffic is the load generator's job. A [`Selector`] picks which of the service's pods
//! a fault hits, as Chaos Mesh's `mode`/`value` do; [`FaultStatus`] is what the runtime answers about a fault.

use serde::{Deserialize, Serialize};

use crate::ClusterError;

/// A fault on one service. Serialises as `{"kind": "cpu_stress", "workers": 2, "load_percent": 50}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Replicas are replaced by non-functional ones (not ready, nothing listening), like Chaos Mesh `pod-failure`.
    PodFailure,
    /// Each replica gets a stressor process burning `workers` threads at `load_percent` % each, counted in the
    /// replica's CPU (like Chaos Mesh `StressChaos` inside the pod).
    CpuStress {
        /// Burning threads per replica (1..=8).
        workers: u32,
        /// Duty cycle of each thread in percent (1..=100).
        load_percent: u32,
    },
    /// Each replica gets a stressor holding `mib` MiB of resident memory, counted in the replica's memory.
    MemoryStress {
        /// MiB held (1..=4096).
        mib: u32,
    },
    /// Every request through the service's front waits this long first, like Chaos Mesh `NetworkChaos` delay.
    Latency {
        /// Added delay in ms (1..=60000).
        ms: u64,
    },
}

/// Identifies an injected fault, to clear it early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FaultId(pub u64);

/// How many of the service's pods a fault hits, as Chaos Mesh's `mode`: the pods are chosen at random among those
/// that exist at injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One pod.
    One,
    /// Every pod (the default).
    #[default]
    All,
    /// `value` pods (at most all of them).
    Fixed,
    /// `floor(pods × value / 100)` pods, `value` in 1..=100.
    FixedPercent,
}

/// Which pods a fault hits: `{"mode": "fixed-percent", "value": 50}`. `value` is required by `fixed` and
/// `fixed-percent` and refused by `one` and `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// The mode.
    #[serde(default)]
    pub mode: Mode,
    /// The mode's number, if it takes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u32>,
}

/// One pod a fault was injected into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultTarget {
    /// The pod's name when it was selected (`NAME-N`; a pod that replaces it later may get the same name).
    pub pod: String,
    /// Whether the pod is gone (replaced by a rollout or restart, or scaled away): its successor is not faulty.
    pub replaced: bool,
}

/// An active fault as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultStatus {
    /// Its id.
    pub id: FaultId,
    /// What it does.
    pub fault: Fault,
    /// How its pods were chosen.
    pub selector: Selector,
    /// The pods chosen at injection, by name.
    pub targets: Vec<FaultTarget>,
    /// Seconds until it ends by itself (`None`: until cleared).
    pub remaining_secs: Option<f64>,
}

// === impl Fault ===

impl Fault {
    /// Checks the bounds of the fault's parameters.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |reason: String| Err(ClusterError::invalid("fault", reason));
        match *self {
            Fault::PodFailure => Ok(()),
            Fault::CpuStress {
                workers,
                load_percent,
            } => {
                if !(1..=8).contains(&workers) || !(1..=100).contains(&load_percent) {
                    return bad(format!(
                        "cpu stress needs 1..=8 workers at 1..=100 %, got {workers} at {load_percent}"
                    ));
                }
                Ok(())
            }
            Fault::MemoryStress { mib } => {
                if !(1..=4096).contains(&mib) {
                    return bad(format!("memory stress needs 1..=4096 MiB, got {mib}"));
                }
                Ok(())
            }
            Fault::Latency { ms } => {
                if !(1..=60_000).contains(&ms) {
                    return bad(format!("latency needs 1..=60000 ms, got {ms}"));
                }
                Ok(())
            }
        }
    }

    /// Whether the fault needs a stressor process per replica.
    pub fn is_stress(&self) -> bool {
        matches!(self, Fault::CpuStress { .. } | Fault::MemoryStress { .. })
    }
}

// === impl Selector ===

impl Selector {
    /// Every pod.
    pub const ALL: Selector = Selector {
        mode: Mode::All,
        value: None,
    };
    /// One pod.
    pub const ONE: Selector = Selector {
        mode: Mode::One,
        value: None,
    };

    /// `value` pods.
    pub fn fixed(value: u32) -> Self {
        Selector {
            mode: Mode::Fixed,
            value: Some(value),
        }
    }

    /// `value` % of the pods, rounded down.
    pub fn fixed_percent(value: u32) -> Self {
        Selector {
            mode: Mode::FixedPercent,
            value: Some(value),
        }
    }

    /// Checks that the value fits the mode.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |reason: String| Err(ClusterError::invalid("selector", reason));
        match (self.mode, self.value) {
            (Mode::One | Mode::All, None) => Ok(()),
            (Mode::One | Mode::All, Some(v)) => bad(format!("mode {:?} takes no value, got {v}", self.mode)),
            (Mode::Fixed, Some(v)) if (1..=1000).contains(&v) => Ok(()),
            (Mode::Fixed, v) => bad(format!("mode fixed needs a value in 1..=1000 (pods), got {v:?}")),
            (Mode::FixedPercent, Some(v)) if (1..=100).contains(&v) => Ok(()),
            (Mode::FixedPercent, v) => bad(format!(
                "mode fixed-percent needs a value in 1..=100 (percent), got {v:?}"
            )),
        }
    }

    /// How many of `pods` pods it selects; an error if that is none (Chaos Mesh refuses an experiment that
    /// selects no pod).
    pub fn count(&self, pods: usize) -> Result<usize, ClusterError> {
        self.validate()?;
        let value = self.value.map_or(0, |v| v as usize);
        let n = match self.mode {
            Mode::One => pods.min(1),
            Mode::All => pods,
            Mode::Fixed => value.min(pods),
            Mode::FixedPercent => pods * value / 100,
        };
        if n == 0 {
            return Err(ClusterError::invalid(
                "selector",
                format!("{self:?} selects no pod out of {pods}"),
            ));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_and_bounds() {
        let f: Fault =
            serde_json::from_str(r#"{"kind":"cpu_stress","workers":2,"load_percent":50}"#).unwrap();
        assert_eq!(
            f,
            Fault::CpuStress {
                workers: 2,
                load_percent: 50
            }
        );
        assert!(f.validate().is_ok() && f.is_stress());
        assert!(serde_json::from_str::<Fault>(r#"{"kind":"latency","ms":5,"x":1}"#).is_err());
        assert!(Fault::Latency { ms: 0 }.validate().is_err());
        assert!(Fault::MemoryStress { mib: 5000 }.validate().is_err());
        assert!(!Fault::PodFailure.is_stress());
    }

    #[test]
    fn selector_wire_shape_counts_and_bounds() {
        let s: Selector = serde_json::from_str(r#"{"mode":"fixed-percent","value":50}"#).unwrap();
        assert_eq!(s, Selector::fixed_percent(50));
        assert_eq!(serde_json::from_str::<Selector>("{}").unwrap(), Selector::ALL);
        assert!(serde_json::from_str::<Selector>(r#"{"mode":"some"}"#).is_err());
        assert_eq!(Selector::ONE.count(3).unwrap(), 1);
        assert_eq!(Selector::ALL.count(3).unwrap(), 3);
        assert_eq!(Selector::fixed(5).count(3).unwrap(), 3);
        // Chaos Mesh rounds down: 50 % of 3 pods is 1, 100 % is all.
        assert_eq!(Selector::fixed_percent(50).count(3).unwrap(), 1);
        assert_eq!(Selector::fixed_percent(100).count(3).unwrap(), 3);
        assert_eq!(Selector::fixed_percent(67).count(3).unwrap(), 2);
        for bad in [
            Selector::fixed_percent(0),
            Selector::fixed_percent(101),
            Selector::fixed(0),
            Selector {
                mode: Mode::FixedPercent,
                value: None,
            },
            Selector {
                mode: Mode::One,
                value: Some(1),
            },
        ] {
            let e = bad.count(3).unwrap_err();
            assert!(e.is_bad_input(), "{bad:?}: {e}");
        }
        // 10 % of 3 pods is none: refused, not a fault that does nothing.
        assert!(Selector::fixed_percent(10).count(3).is_err());
        assert!(Selector::ALL.count(0).is_err());
    }
}
