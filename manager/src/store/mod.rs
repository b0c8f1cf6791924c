//! Durable state of the manager behind one trait: goals, their events and subtasks, and tasks sent through the
//! manager. [`sql::SqlStore`] implements it for SQLite (the embedded default, a file under `--state-dir`) and
//! PostgreSQL (`--database-url`), with the same migrations; the same test suite runs against both.

use acv_protocol::{ComponentName, EventKind, GoalEvent, GoalRecord, GoalState, ReportBody, SubtaskRecord};
use serde::{Deserialize, Serialize};

pub mod sql;

pub use sql::SqlStore;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row does not decode (written by another version, or edited by hand).
    #[error("stored {what} {id:?} is corrupt: {why}")]
    Corrupt {
        /// Table.
        what: &'static str,
        /// Row id.
        id: String,
        /// Why.
        why: String,
    },
    /// A goal or task with this id exists already.
    #[error("{what} {id:?} already exists")]
    Conflict {
        /// Goal or task.
        what: &'static str,
        /// Id.
        id: String,
    },
    /// Updating something that is not stored.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// Goal or task.
        what: &'static str,
        /// Id.
        id: String,
    },
    /// The configuration is unusable (bad URL, state dir not writable).
    #[error("store configuration: {0}")]
    Config(String),
}

/// Where a task sent through the manager is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Published; no report yet.
    Sent,
    /// Reported (RESPONSE or ISSUE; see the report).
    Reported,
}

/// A task a person sent to a component through the manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The task id (also the envelope's task id; the report carries it).
    pub id: String,
    /// Receiver.
    pub component: ComponentName,
    /// The task in words.
    pub text: String,
    /// Where it is.
    pub state: TaskState,
    /// Created, ms since the epoch.
    pub created_ms: u64,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
    /// The report, once it came.
    #[serde(default)]
    pub report: Option<ReportBody>,
}

/// Which goals to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GoalFilter {
    /// Every goal.
    #[default]
    All,
    /// Goals not yet achieved, failed, partial or cancelled (what a restarted manager resumes).
    Active,
    /// Goals in one state.
    State(GoalState),
}

/// An event to append; the store gives it its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// What kind of event.
    pub kind: EventKind,
    /// The goal's state at the time.
    pub state: GoalState,
    /// For a person.
    pub message: String,
}

/// The manager's durable state.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend (`sqlite`, `postgres`), for logs.
    fn backend(&self) -> &'static str;

    /// Stores a new goal; [`StoreError::Conflict`] when its id exists.
    async fn create_goal(&self, goal: &GoalRecord) -> Result<(), StoreError>;
    /// Replaces a stored goal; [`StoreError::NotFound`] when it is not stored.
    async fn update_goal(&self, goal: &GoalRecord) -> Result<(), StoreError>;
    /// One goal.
    async fn goal(&self, id: &str) -> Result<Option<GoalRecord>, StoreError>;
    /// Goals, newest first, at most `limit`.
    async fn goals(&self, filter: GoalFilter, limit: u32) -> Result<Vec<GoalRecord>, StoreError>;

    /// Appends an event with the next sequence number of its goal and returns it.
    async fn append_event(
        &self,
        goal_id: &str,
        at_ms: u64,
        kind: EventKind,
        state: GoalState,
        message: &str,
    ) -> Result<GoalEvent, StoreError>;
    /// A goal's events with `seq > after`, in order.
    async fn events(&self, goal_id: &str, after: u64) -> Result<Vec<GoalEvent>, StoreError>;

    /// Inserts or replaces a subtask (by id).
    async fn put_subtask(&self, subtask: &SubtaskRecord) -> Result<(), StoreError>;
    /// Inserts or replaces `subtasks` and appends `events` to goal `goal_id`, in one transaction: all or none are
    /// stored, and a round over a thousand components is one write to disk rather than thousands. Returns the
    /// events with their sequence numbers.
    async fn put_batch(
        &self,
        goal_id: &str,
        subtasks: &[SubtaskRecord],
        events: &[NewEvent],
    ) -> Result<Vec<GoalEvent>, StoreError>;
    /// One subtask.
    async fn subtask(&self, id: &str) -> Result<Option<SubtaskRecord>, StoreError>;
    /// A goal's subtasks, by round then component.
    async fn subtasks(&self, goal_id: &str) -> Result<Vec<SubtaskRecord>, StoreError>;

    /// Stores a new task; [`StoreError::Conflict`] when its id exists.
    async fn create_task(&self, task: &TaskRecord) -> Result<(), StoreError>;
    /// Replaces a task.
    async fn update_task(&self, task: &TaskRecord) -> Result<(), StoreError>;
    /// One task.
    async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// Tasks, newest first, at most `limit`.
    async fn tasks(&self, limit: u32) -> Result<Vec<TaskRecord>, StoreError>;
}
