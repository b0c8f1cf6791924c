//! [`SqlStore`]: the [`Store`] on SQLite or PostgreSQL through sqlx's `Any` driver, with the migrations in
//! `manager/migrations/` (portable SQL, `$n` parameters, which both databases accept).

use std::path::Path;

use acv_protocol::{EventKind, GoalEvent, GoalRecord, GoalState, SubtaskRecord};
use serde::{Serialize, de::DeserializeOwned};
use sqlx::{
    AnyPool, Row,
    any::{AnyPoolOptions, AnyRow},
};
use tokio::sync::Mutex;

use super::{
    Approval, ApprovalFilter, AuditEntry, AuditQuery, GoalFilter, NewEvent, Store, StoreError, TaskRecord,
};
use acv_protocol::{ApprovalState, AuditRecord, ComponentName};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// File name of the SQLite database under the state dir.
pub const SQLITE_FILE: &str = "manager.db";

/// A goal store on SQLite or PostgreSQL.
pub struct SqlStore {
    pub(super) pool: AnyPool,
    pub(super) backend: &'static str,
    /// Event appends read the last sequence number and insert the next; one at a time per process.
    append: Mutex<()>,
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn json<T: Serialize>(v: &T) -> String {
    // Serialising our own plain data types cannot fail; an empty object keeps the row readable if it ever did.
    serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned())
}

pub(super) fn unjson<T: DeserializeOwned>(what: &'static str, id: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        what,
        id: id.to_owned(),
        why: e.to_string(),
    })
}

pub(super) fn unstr<T: DeserializeOwned>(what: &'static str, id: &str, s: String) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(s)).map_err(|e| StoreError::Corrupt {
        what,
        id: id.to_owned(),
        why: e.to_string(),
    })
}

pub(super) fn parse_enum<T: std::str::FromStr<Err = String>>(
    what: &'static str,
    id: &str,
    s: &str,
) -> Result<T, StoreError> {
    s.parse().map_err(|why| StoreError::Corrupt {
        what,
        id: id.to_owned(),
        why,
    })
}

pub(super) fn enum_str<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The error of an INSERT: a duplicate id is a [`StoreError::Conflict`] on `what` `id`, anything else a database
/// error.
fn insert_error(e: sqlx::Error, what: &'static str, id: &str) -> StoreError {
    if e.as_database_error().is_some_and(|d| d.is_unique_violation()) {
        StoreError::Conflict {
            what,
            id: id.to_owned(),
        }
    } else {
        e.into()
    }
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn upsert_subtask_sql() -> String {
    format!(
        "INSERT INTO subtasks ({SUBTASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (id) DO UPDATE SET goal_id = excluded.goal_id, round = excluded.round, \
         component = excluded.component, spec = excluded.spec, state = excluded.state, \
         attempts = excluded.attempts, deadline_ms = excluded.deadline_ms, updated_ms = excluded.updated_ms, \
         report_status = excluded.report_status, message = excluded.message"
    )
}

/// Inserts or replaces a subtask (`sql` from [`upsert_subtask_sql`]).
fn upsert_subtask<'q>(sql: &'q str, s: &SubtaskRecord) -> AnyQuery<'q> {
    sqlx::query(sql)
        .bind(s.id.clone())
        .bind(s.goal_id.clone())
        .bind(i64::from(s.round))
        .bind(s.component.to_string())
        .bind(json(&s.spec))
        .bind(s.state.as_str())
        .bind(i64::from(s.attempts))
        .bind(to_i64(s.deadline_ms))
        .bind(to_i64(s.updated_ms))
        .bind(s.report_status.as_ref().map(enum_str))
        .bind(s.message.clone())
}

fn insert_event(
    goal_id: &str,
    seq: u64,
    at_ms: u64,
    kind: EventKind,
    state: GoalState,
    message: &str,
) -> AnyQuery<'static> {
    sqlx::query(
        "INSERT INTO goal_events (goal_id, seq, at_ms, kind, state, message) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(goal_id.to_owned())
    .bind(to_i64(seq))
    .bind(to_i64(at_ms))
    .bind(enum_str(&kind))
    .bind(state.as_str())
    .bind(message.to_owned())
}

/// The goal's next event sequence number (callers hold the append lock).
async fn next_seq(conn: &mut sqlx::AnyConnection, goal_id: &str) -> Result<u64, StoreError> {
    let last: Option<i64> = sqlx::query("SELECT MAX(seq) AS m FROM goal_events WHERE goal_id = $1")
        .bind(goal_id.to_owned())
        .fetch_one(&mut *conn)
        .await?
        .try_get("m")?;
    Ok(to_u64(last.unwrap_or(0)) + 1)
}

// === impl SqlStore ===

impl SqlStore {
    /// Opens (creating if needed) the SQLite database `manager.db` under `state_dir` and migrates it.
    pub async fn open_sqlite(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir)
            .map_err(|e| StoreError::Config(format!("creating state dir {}: {e}", state_dir.display())))?;
        let path = state_dir.join(SQLITE_FILE);
        let path = path
            .to_str()
            .ok_or_else(|| StoreError::Config(format!("state dir {} is not UTF-8", state_dir.display())))?;
        Self::connect(&format!("sqlite://{path}?mode=rwc"), None).await
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`) and migrates. For PostgreSQL, `schema` (created if
    /// missing) isolates this store's tables, e.g. one schema per test run.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            "sqlite"
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            "postgres"
        } else {
            return Err(StoreError::Config(format!(
                "database URL must start with sqlite: or postgres:, got {:?}",
                url.split(':').next().unwrap_or_default()
            )));
        };
        let mut options = AnyPoolOptions::new();
        if backend == "sqlite" {
            // One writer: SQLite serialises writes anyway, and one connection never sees SQLITE_BUSY.
            options = options.max_connections(1);
        } else {
            options = options.max_connections(8);
        }
        if let Some(schema) = schema {
            if backend != "postgres" {
                return Err(StoreError::Config("a schema only applies to PostgreSQL".into()));
            }
            let ok = !schema.is_empty()
                && schema
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(StoreError::Config(format!(
                    "schema {schema:?} must be lowercase letters, digits and '_'"
                )));
            }
            let setup = AnyPoolOptions::new().max_connections(1).connect(url).await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&setup)
                .await?;
            setup.close().await;
            let set = format!("SET search_path TO {schema}");
            options = options.after_connect(move |conn, _| {
                let set = set.clone();
                Box::pin(async move {
                    sqlx::query(&set).execute(conn).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            pool,
            backend,
            append: Mutex::new(()),
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Drops a PostgreSQL schema and everything in it (test clean-up).
    pub async fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new().max_connections(1).connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&pool)
            .await?;
        pool.close().await;
        Ok(())
    }
}

const GOAL_COLUMNS: &str =
    "id, spec, objectives, state, round, reason, created_ms, updated_ms, deadline_ms, results";
const SUBTASK_COLUMNS: &str =
    "id, goal_id, round, component, spec, state, attempts, deadline_ms, updated_ms, report_status, message";
const TASK_COLUMNS: &str = "id, component, text, state, created_ms, updated_ms, report";

fn goal_from(row: &AnyRow) -> Result<GoalRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    Ok(GoalRecord {
        spec: unjson("goal", &id, &row.try_get::<String, _>("spec")?)?,
        objectives: unjson("goal", &id, &row.try_get::<String, _>("objectives")?)?,
        state: parse_enum("goal", &id, &state)?,
        round: u32::try_from(row.try_get::<i64, _>("round")?).unwrap_or(0),
        reason: row.try_get("reason")?,
        created_ms: to_u64(row.try_get("created_ms")?),
        updated_ms: to_u64(row.try_get("updated_ms")?),
        deadline_ms: to_u64(row.try_get("deadline_ms")?),
        results: unjson("goal", &id, &row.try_get::<String, _>("results")?)?,
        id,
    })
}

fn subtask_from(row: &AnyRow) -> Result<SubtaskRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let report_status: Option<String> = row.try_get("report_status")?;
    Ok(SubtaskRecord {
        goal_id: row.try_get("goal_id")?,
        round: u32::try_from(row.try_get::<i64, _>("round")?).unwrap_or(0),
        component: unstr("subtask", &id, row.try_get::<String, _>("component")?)?,
        spec: unjson("subtask", &id, &row.try_get::<String, _>("spec")?)?,
        state: parse_enum("subtask", &id, &state)?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
        deadline_ms: to_u64(row.try_get("deadline_ms")?),
        updated_ms: to_u64(row.try_get("updated_ms")?),
        report_status: match report_status {
            Some(s) => Some(unstr("subtask", &id, s)?),
            None => None,
        },
        message: row.try_get("message")?,
        id,
    })
}

fn task_from(row: &AnyRow) -> Result<TaskRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let report: Option<String> = row.try_get("report")?;
    Ok(TaskRecord {
        component: unstr("task", &id, row.try_get::<String, _>("component")?)?,
        text: row.try_get("text")?,
        state: unstr("task", &id, row.try_get::<String, _>("state")?)?,
        created_ms: to_u64(row.try_get("created_ms")?),
        updated_ms: to_u64(row.try_get("updated_ms")?),
        report: match report {
            Some(s) => Some(unjson("task", &id, &s)?),
            None => None,
        },
        id,
    })
}

fn event_from(row: &AnyRow) -> Result<GoalEvent, StoreError> {
    let goal_id: String = row.try_get("goal_id")?;
    let kind: String = row.try_get("kind")?;
    let state: String = row.try_get("state")?;
    Ok(GoalEvent {
        seq: to_u64(row.try_get("seq")?),
        at_ms: to_u64(row.try_get("at_ms")?),
        kind: unstr("event", &goal_id, kind)?,
        state: parse_enum("event", &goal_id, &state)?,
        message: row.try_get("message")?,
        goal_id,
    })
}

#[async_trait::async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    async fn create_goal(&self, g: &GoalRecord) -> Result<(), StoreError> {
        let sql =
            format!("INSERT INTO goals ({GOAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");
        sqlx::query(&sql)
            .bind(g.id.clone())
            .bind(json(&g.spec))
            .bind(json(&g.objectives))
            .bind(g.state.as_str())
            .bind(i64::from(g.round))
            .bind(g.reason.clone())
            .bind(to_i64(g.created_ms))
            .bind(to_i64(g.updated_ms))
            .bind(to_i64(g.deadline_ms))
            .bind(json(&g.results))
            .execute(&self.pool)
            .await
            .map_err(|e| insert_error(e, "goal", &g.id))?;
        Ok(())
    }

    async fn update_goal(&self, g: &GoalRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE goals SET spec = $2, objectives = $3, state = $4, round = $5, reason = $6, created_ms = $7, \
             updated_ms = $8, deadline_ms = $9, results = $10 WHERE id = $1",
        )
        .bind(g.id.clone())
        .bind(json(&g.spec))
        .bind(json(&g.objectives))
        .bind(g.state.as_str())
        .bind(i64::from(g.round))
        .bind(g.reason.clone())
        .bind(to_i64(g.created_ms))
        .bind(to_i64(g.updated_ms))
        .bind(to_i64(g.deadline_ms))
        .bind(json(&g.results))
        .execute(&self.pool)
        .await?;
        updated(done.rows_affected(), "goal", &g.id)
    }

    async fn goal(&self, id: &str) -> Result<Option<GoalRecord>, StoreError> {
        let sql = format!("SELECT {GOAL_COLUMNS} FROM goals WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(goal_from).transpose()
    }

    async fn goals(&self, filter: GoalFilter, limit: u32) -> Result<Vec<GoalRecord>, StoreError> {
        let base = format!("SELECT {GOAL_COLUMNS} FROM goals");
        let order = "ORDER BY created_ms DESC, id DESC LIMIT";
        let rows = match filter {
            GoalFilter::All => {
                sqlx::query(&format!("{base} {order} $1"))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
            GoalFilter::Active => {
                sqlx::query(&format!(
                    "{base} WHERE state NOT IN ('achieved', 'failed', 'partial', 'cancelled') {order} $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?
            }
            GoalFilter::State(s) => {
                sqlx::query(&format!("{base} WHERE state = $1 {order} $2"))
                    .bind(s.as_str())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(goal_from).collect()
    }

    async fn append_event(
        &self,
        goal_id: &str,
        at_ms: u64,
        kind: EventKind,
        state: GoalState,
        message: &str,
    ) -> Result<GoalEvent, StoreError> {
        let _one = self.append.lock().await;
        let mut conn = self.pool.acquire().await?;
        let seq = next_seq(&mut conn, goal_id).await?;
        insert_event(goal_id, seq, at_ms, kind, state, message)
            .execute(&mut *conn)
            .await?;
        Ok(GoalEvent {
            goal_id: goal_id.to_owned(),
            seq,
            at_ms,
            kind,
            state,
            message: message.to_owned(),
        })
    }

    async fn events(&self, goal_id: &str, after: u64) -> Result<Vec<GoalEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT goal_id, seq, at_ms, kind, state, message FROM goal_events WHERE goal_id = $1 AND seq > $2 \
             ORDER BY seq",
        )
        .bind(goal_id.to_owned())
        .bind(to_i64(after))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from).collect()
    }

    async fn put_subtask(&self, s: &SubtaskRecord) -> Result<(), StoreError> {
        let sql = upsert_subtask_sql();
        upsert_subtask(&sql, s).execute(&self.pool).await?;
        Ok(())
    }

    async fn put_batch(
        &self,
        goal_id: &str,
        subtasks: &[SubtaskRecord],
        events: &[NewEvent],
    ) -> Result<Vec<GoalEvent>, StoreError> {
        let _one = self.append.lock().await;
        let sql = upsert_subtask_sql();
        let mut tx = self.pool.begin().await?;
        for s in subtasks {
            upsert_subtask(&sql, s).execute(&mut *tx).await?;
        }
        let mut out = Vec::with_capacity(events.len());
        if !events.is_empty() {
            let mut seq = next_seq(&mut tx, goal_id).await?;
            for e in events {
                insert_event(goal_id, seq, e.at_ms, e.kind, e.state, &e.message)
                    .execute(&mut *tx)
                    .await?;
                out.push(GoalEvent {
                    goal_id: goal_id.to_owned(),
                    seq,
                    at_ms: e.at_ms,
                    kind: e.kind,
                    state: e.state,
                    message: e.message.clone(),
                });
                seq += 1;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn subtask(&self, id: &str) -> Result<Option<SubtaskRecord>, StoreError> {
        let sql = format!("SELECT {SUBTASK_COLUMNS} FROM subtasks WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subtask_from).transpose()
    }

    async fn subtasks(&self, goal_id: &str) -> Result<Vec<SubtaskRecord>, StoreError> {
        let sql =
            format!("SELECT {SUBTASK_COLUMNS} FROM subtasks WHERE goal_id = $1 ORDER BY round, component");
        let rows = sqlx::query(&sql)
            .bind(goal_id.to_owned())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(subtask_from).collect()
    }

    async fn create_task(&self, t: &TaskRecord) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        sqlx::query(&sql)
            .bind(t.id.clone())
            .bind(t.component.to_string())
            .bind(t.text.clone())
            .bind(enum_str(&t.state))
            .bind(to_i64(t.created_ms))
            .bind(to_i64(t.updated_ms))
            .bind(t.report.as_ref().map(json))
            .execute(&self.pool)
            .await
            .map_err(|e| insert_error(e, "task", &t.id))?;
        Ok(())
    }

    async fn update_task(&self, t: &TaskRecord) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE tasks SET state = $2, updated_ms = $3, report = $4 WHERE id = $1")
            .bind(t.id.clone())
            .bind(enum_str(&t.state))
            .bind(to_i64(t.updated_ms))
            .bind(t.report.as_ref().map(json))
            .execute(&self.pool)
            .await?;
        updated(done.rows_affected(), "task", &t.id)
    }

    async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(task_from).transpose()
    }

    async fn tasks(&self, limit: u32) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks ORDER BY created_ms DESC, id DESC LIMIT $1");
        let rows = sqlx::query(&sql)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(task_from).collect()
    }

    async fn goal_counts(&self) -> Result<Vec<(GoalState, u64)>, StoreError> {
        self.goal_counts_sql().await
    }

    async fn insert_approval(&self, a: &Approval) -> Result<bool, StoreError> {
        self.insert_approval_sql(a).await
    }

    async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        self.approval_sql(id).await
    }

    async fn approvals(&self, filter: &ApprovalFilter, limit: u32) -> Result<Vec<Approval>, StoreError> {
        self.approvals_sql(filter, limit).await
    }

    async fn update_approval(&self, a: &Approval, expected: ApprovalState) -> Result<bool, StoreError> {
        self.update_approval_sql(a, expected).await
    }

    async fn expire_approvals(&self, now_ms: u64) -> Result<Vec<Approval>, StoreError> {
        self.expire_approvals_sql(now_ms).await
    }

    async fn insert_audit(&self, records: &[AuditRecord]) -> Result<u64, StoreError> {
        self.insert_audit_sql(records).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit_sql(query).await
    }

    async fn prune_audit(&self, before_ms: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM audit WHERE at_ms < $1")
            .bind(to_i64(before_ms))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn recent_episodes(
        &self,
        component: Option<&ComponentName>,
        limit: u32,
    ) -> Result<Vec<(ComponentName, String)>, StoreError> {
        self.recent_episodes_sql(component, limit).await
    }
}

/// An UPDATE by id that touched no row means the record does not exist.
fn updated(rows: u64, what: &'static str, id: &str) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::NotFound {
            what,
            id: id.to_owned(),
        });
    }
    Ok(())
}
