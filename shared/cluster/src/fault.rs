//! Faults a local runtime can inject, as its control API carries them (the runtime applies them; see `acv-runtime`),
//! mirroring the Chaos Mesh experiments of the paper: pod failure, CPU and memory stress attributed to the service,
//! and added latency. Rising traffic is the load generator's job.

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
}
