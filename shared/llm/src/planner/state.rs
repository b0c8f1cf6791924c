//! The state planners carry between turns, as types: what each step was for ([`StepPurpose`], set by the planner
//! on the [`PlannedStep`](super::PlannedStep) and copied onto the [`TaskStep`]) and what it observed
//! ([`StepObservation`], read from the step's output once, when the step is recorded).
//!
//! A program in the sandbox can hand structured facts back only through its output, so observations travel as one
//! marker line (`ACV_OBSERVATION {json}`); [`read_observation`] is the one place that line is parsed.

use acv_protocol::StepRecord;
use serde::{Deserialize, Serialize};

use super::{Observation, PlannedStep};

/// Prefix of the line a program prints to hand structured observations back to the planner:
/// `ACV_OBSERVATION {"status": {...}, "metrics": {...}, "history": [...]}`.
pub const OBSERVATION_MARKER: &str = "ACV_OBSERVATION ";

/// What a step is for, as typed metadata a planner reads back on later turns. The LLM planner leaves it unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepPurpose {
    /// Reads status, metrics and history and prints them as an observation; changes nothing.
    Observe,
    /// The one program of an imperative task (acts and reports).
    Task,
    /// A playbook action against a broken objective.
    Remedy {
        /// Which action.
        remedy: Remedy,
    },
    /// Asks the component where the cause lies to check and fix itself (mechanism 3, `acv.ask_peer`).
    AskPeer,
}

/// The rules planner's playbook actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remedy {
    /// Roll back to the previous revision.
    Rollback,
    /// Restart every replica.
    Restart,
    /// Add replicas.
    ScaleOut,
    /// Raise the CPU limit.
    RaiseCpu,
    /// Raise the memory limit.
    RaiseMemory,
}

/// What a step's output said about the component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepObservation {
    /// The last observation line, parsed into protocol types.
    Read {
        /// What it saw.
        observation: Box<Observation>,
    },
    /// The step printed an observation line that is not valid.
    Unreadable {
        /// Why it could not be read.
        error: String,
    },
}

/// One step of the current task as planners see it: the record that goes into the report, plus typed metadata.
/// Serialised flat (the record's fields, then `purpose` and `observation` when set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStep {
    /// The step as reported (description, program, outcome, output).
    #[serde(flatten)]
    pub record: StepRecord,
    /// What the planner meant it for, when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<StepPurpose>,
    /// What its output observed, when it printed an observation line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<StepObservation>,
}

/// A malformed `ACV_OBSERVATION` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ACV_OBSERVATION line is not a valid observation: {0}")]
pub struct ObservationError(pub String);

/// Reads the last `ACV_OBSERVATION {...}` line of a program's output: `Ok(None)` when there is none, an error when
/// the last one is malformed.
pub fn read_observation(output: &str) -> Result<Option<Observation>, ObservationError> {
    match output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(OBSERVATION_MARKER))
    {
        None => Ok(None),
        Some(json) => serde_json::from_str(json)
            .map(Some)
            .map_err(|e| ObservationError(e.to_string())),
    }
}

/// The last valid observation in a program's output (`None` when there is none or it is malformed).
pub fn parse_observation(output: &str) -> Option<Observation> {
    read_observation(output).ok().flatten()
}

// === impl TaskStep ===

impl TaskStep {
    /// The record of `planned` having run, with its purpose and the observation its output carries.
    pub fn ran(record: StepRecord, planned: &PlannedStep) -> Self {
        Self {
            purpose: planned.purpose,
            ..Self::from(record)
        }
    }
}

impl From<StepRecord> for TaskStep {
    /// A step without a stated purpose; the observation is read from its output.
    fn from(record: StepRecord) -> Self {
        let observation = match read_observation(&record.output) {
            Ok(None) => None,
            Ok(Some(observation)) => Some(StepObservation::Read {
                observation: Box::new(observation),
            }),
            Err(e) => Some(StepObservation::Unreadable { error: e.0 }),
        };
        Self {
            record,
            purpose: None,
            observation,
        }
    }
}

impl From<TaskStep> for StepRecord {
    fn from(s: TaskStep) -> Self {
        s.record
    }
}
