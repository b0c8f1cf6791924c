//! Durable state of the manager behind one trait: goals, their events and subtasks, tasks sent through the
//! manager, approvals (approve mode) and the sidecars' audit trail. [`sql::SqlStore`] implements it for SQLite (the embedded default, a file under `--state-dir`) and
//! PostgreSQL (`--database-url`), with the same migrations; the same test suite runs against both.

use acv_protocol::{
    ApprovalState, AuditKind, ComponentName, EventKind, GoalEvent, GoalRecord, GoalState, ReportBody,
    SubtaskRecord,
};
use serde::{Deserialize, Serialize};

pub mod rfc3339;
pub mod sql;
mod sql_ops;

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

/// A mutating call waiting for (or decided by) an operator, as stored and as the API shows it
/// (`GET /v1/approvals`); times are RFC 3339 on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Id (chosen by the sidecar, stable across redeliveries).
    pub id: String,
    /// The component whose sidecar asked.
    pub component: ComponentName,
    /// The episode that wanted the call.
    pub episode: String,
    /// The task, when the episode answers one.
    pub task_id: Option<String>,
    /// Host call name, e.g. `scale`.
    pub call: String,
    /// Its arguments (JSON object).
    pub args: serde_json::Value,
    /// The Python program that made the call.
    pub program: String,
    /// Where it is.
    pub state: ApprovalState,
    /// When it was queued.
    #[serde(rename = "requested_at", with = "rfc3339")]
    pub requested_ms: u64,
    /// When it stops being approvable.
    #[serde(rename = "expires_at", with = "rfc3339")]
    pub expires_ms: u64,
    /// When a person (or the expiry) decided.
    #[serde(rename = "decided_at", with = "rfc3339::option")]
    pub decided_ms: Option<u64>,
    /// Who decided (`expiry` when nobody did in time).
    pub decided_by: Option<String>,
    /// Why, in their words (or the sidecar's reason it did not run).
    pub reason: Option<String>,
    /// What running it returned (`{"error": …}` when it failed).
    pub result: Option<serde_json::Value>,
}

/// Which approvals to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApprovalFilter {
    /// Only in this state.
    pub state: Option<ApprovalState>,
    /// Only of this component.
    pub component: Option<ComponentName>,
    /// Only of this episode.
    pub episode: Option<String>,
}

/// One audit record as stored and as the API shows it (`GET /v1/audit`; `at` is RFC 3339).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Id (the sidecar's).
    pub id: String,
    /// The component whose sidecar did it.
    pub component: ComponentName,
    /// The episode.
    pub episode: String,
    /// When.
    #[serde(rename = "at", with = "rfc3339")]
    pub at_ms: u64,
    /// What about.
    pub kind: AuditKind,
    /// The call, peer or step.
    pub name: Option<String>,
    /// Arguments of a call.
    pub args: Option<serde_json::Value>,
    /// How it ended.
    pub outcome: Option<String>,
    /// Everything else.
    pub detail: serde_json::Value,
}

impl From<acv_protocol::AuditRecord> for AuditEntry {
    fn from(r: acv_protocol::AuditRecord) -> Self {
        Self {
            id: r.id,
            component: r.component,
            episode: r.episode,
            at_ms: r.at_ms,
            kind: r.kind,
            name: r.name,
            args: r.args,
            outcome: r.outcome,
            detail: r.detail,
        }
    }
}

/// Which audit records to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only of this component.
    pub component: Option<ComponentName>,
    /// Only of this episode.
    pub episode: Option<String>,
    /// Only at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// At most this many (the newest ones, returned oldest first).
    pub limit: u32,
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

    /// How many goals are in each state (states without goals are left out).
    async fn goal_counts(&self) -> Result<Vec<(GoalState, u64)>, StoreError>;

    /// Stores a new approval; an id already stored is left as it is (a redelivered request). Returns whether it
    /// was new.
    async fn insert_approval(&self, approval: &Approval) -> Result<bool, StoreError>;
    /// One approval.
    async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError>;
    /// Approvals, newest first, at most `limit`.
    async fn approvals(&self, filter: &ApprovalFilter, limit: u32) -> Result<Vec<Approval>, StoreError>;
    /// Replaces an approval if it is still in state `expected` (compare and set, so two people deciding at once
    /// cannot both win). Returns whether it was replaced.
    async fn update_approval(&self, approval: &Approval, expected: ApprovalState)
    -> Result<bool, StoreError>;
    /// Marks every pending approval whose expiry is before `now_ms` expired and returns them.
    async fn expire_approvals(&self, now_ms: u64) -> Result<Vec<Approval>, StoreError>;

    /// Stores audit records; ids already stored are skipped. Returns how many were new.
    async fn insert_audit(&self, records: &[acv_protocol::AuditRecord]) -> Result<u64, StoreError>;
    /// Audit records matching `query`, oldest first (the newest `query.limit`).
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Deletes audit records older than `before_ms`; returns how many.
    async fn prune_audit(&self, before_ms: u64) -> Result<u64, StoreError>;
    /// The most recent episodes (by their latest record), newest first: (component, episode).
    async fn recent_episodes(
        &self,
        component: Option<&ComponentName>,
        limit: u32,
    ) -> Result<Vec<(ComponentName, String)>, StoreError>;
}
