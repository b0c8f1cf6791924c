//! Task bodies: what one component asks another to do.

use serde::{Deserialize, Serialize};

use crate::{ComponentName, Objective};

/// Which of the paper's working mechanisms a task belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// 1: a sidecar works alone on a task given to it directly.
    #[default]
    Solo,
    /// 2: the manager decomposed a goal and assigned this part.
    ManagerLed,
    /// 3: another sidecar asked for help directly.
    PeerRequest,
}

/// A declarative goal: a set of objectives that must hold, plus the user's original words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// The goal as the user wrote it, e.g. "Reduce the P99 latency of catalogue to under 300 ms".
    pub text: String,
    /// The measurable objectives; completion is judged against these, not against agent claims.
    #[serde(default)]
    pub objectives: Vec<Objective>,
}

/// What the task asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaskSpec {
    /// An imperative instruction in plain language ("Scale to 3 replicas").
    Imperative {
        /// The instruction.
        text: String,
    },
    /// A declarative goal the receiver must reach and verify.
    Declarative {
        /// The goal.
        goal: Goal,
    },
}

/// A task sent to a component's inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskBody {
    /// Stable id of the task; reports refer to it. Retries of the same task keep the same id.
    pub task_id: String,
    /// The component that must carry out the task.
    pub component: ComponentName,
    /// What to do.
    pub spec: TaskSpec,
    /// Which mechanism this task is part of.
    #[serde(default)]
    pub mechanism: Mechanism,
}

// === impl TaskSpec ===

impl TaskSpec {
    /// The task in words, for prompts and logs.
    pub fn text(&self) -> &str {
        match self {
            TaskSpec::Imperative { text } => text,
            TaskSpec::Declarative { goal } => &goal.text,
        }
    }
}
