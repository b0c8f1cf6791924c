//! [`SqlStore`]'s approvals, audit trail and goal counts (the operator surface), in the same portable SQL as the
//! goals in [`super::sql`]. Called from `impl Store for SqlStore` there.

use acv_protocol::{ApprovalState, AuditRecord, ComponentName, GoalState};
use sqlx::{Row, any::AnyRow};

use super::sql::{enum_str, json, parse_enum, to_i64, to_u64, unjson, unstr};
use super::{Approval, ApprovalFilter, AuditEntry, AuditQuery, SqlStore, StoreError};

const APPROVAL_COLUMNS: &str = "id, component, episode, task_id, call, args, program, state, requested_ms, \
     expires_ms, decided_ms, decided_by, reason, result, updated_ms";
const AUDIT_COLUMNS: &str = "id, component, episode, at_ms, kind, name, args, outcome, detail";

fn approval_from(row: &AnyRow) -> Result<Approval, StoreError> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let result: Option<String> = row.try_get("result")?;
    let decided: Option<i64> = row.try_get("decided_ms")?;
    Ok(Approval {
        component: unstr("approval", &id, row.try_get::<String, _>("component")?)?,
        episode: row.try_get("episode")?,
        task_id: row.try_get("task_id")?,
        call: row.try_get("call")?,
        args: unjson("approval", &id, &row.try_get::<String, _>("args")?)?,
        program: row.try_get("program")?,
        state: parse_enum("approval", &id, &state)?,
        requested_ms: to_u64(row.try_get("requested_ms")?),
        expires_ms: to_u64(row.try_get("expires_ms")?),
        decided_ms: decided.map(to_u64),
        decided_by: row.try_get("decided_by")?,
        reason: row.try_get("reason")?,
        result: match result {
            Some(s) => Some(unjson("approval", &id, &s)?),
            None => None,
        },
        id,
    })
}

fn audit_from(row: &AnyRow) -> Result<AuditEntry, StoreError> {
    let id: String = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let args: Option<String> = row.try_get("args")?;
    Ok(AuditEntry {
        component: unstr("audit", &id, row.try_get::<String, _>("component")?)?,
        episode: row.try_get("episode")?,
        at_ms: to_u64(row.try_get("at_ms")?),
        kind: parse_enum("audit", &id, &kind)?,
        name: row.try_get("name")?,
        args: match args {
            Some(s) => Some(unjson("audit", &id, &s)?),
            None => None,
        },
        outcome: row.try_get("outcome")?,
        detail: unjson("audit", &id, &row.try_get::<String, _>("detail")?)?,
        id,
    })
}

/// `WHERE a = $1 AND b = $2 …` over the given (column, value) pairs, numbering from 1.
fn conditions(clauses: &[(&str, String)]) -> String {
    if clauses.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = clauses
        .iter()
        .enumerate()
        .map(|(i, (cond, _))| cond.replace('?', &format!("${}", i + 1)))
        .collect();
    format!("WHERE {}", parts.join(" AND "))
}

// === impl SqlStore ===

impl SqlStore {
    pub(super) async fn goal_counts_sql(&self) -> Result<Vec<(GoalState, u64)>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM goals GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| -> Result<(GoalState, u64), StoreError> {
                let state: String = row.try_get("state")?;
                let n: i64 = row.try_get("n")?;
                Ok((parse_enum("goal", "(count)", &state)?, to_u64(n)))
            })
            .collect()
    }

    pub(super) async fn insert_approval_sql(&self, a: &Approval) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15) ON CONFLICT (id) DO NOTHING"
        );
        let done = sqlx::query(&sql)
            .bind(a.id.clone())
            .bind(a.component.to_string())
            .bind(a.episode.clone())
            .bind(a.task_id.clone())
            .bind(a.call.clone())
            .bind(json(&a.args))
            .bind(a.program.clone())
            .bind(a.state.as_str())
            .bind(to_i64(a.requested_ms))
            .bind(to_i64(a.expires_ms))
            .bind(a.decided_ms.map(to_i64))
            .bind(a.decided_by.clone())
            .bind(a.reason.clone())
            .bind(a.result.as_ref().map(json))
            .bind(to_i64(acv_core::now_ms()))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn approval_sql(&self, id: &str) -> Result<Option<Approval>, StoreError> {
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(approval_from).transpose()
    }

    pub(super) async fn approvals_sql(
        &self,
        f: &ApprovalFilter,
        limit: u32,
    ) -> Result<Vec<Approval>, StoreError> {
        let mut clauses: Vec<(&str, String)> = Vec::new();
        if let Some(s) = f.state {
            clauses.push(("state = ?", s.as_str().to_owned()));
        }
        if let Some(c) = &f.component {
            clauses.push(("component = ?", c.to_string()));
        }
        if let Some(e) = &f.episode {
            clauses.push(("episode = ?", e.clone()));
        }
        let sql = format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals {} ORDER BY requested_ms DESC, id DESC LIMIT ${}",
            conditions(&clauses),
            clauses.len() + 1
        );
        let mut q = sqlx::query(&sql);
        for (_, v) in &clauses {
            q = q.bind(v.clone());
        }
        let rows = q.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(approval_from).collect()
    }

    pub(super) async fn update_approval_sql(
        &self,
        a: &Approval,
        expected: ApprovalState,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE approvals SET state = $2, decided_ms = $3, decided_by = $4, reason = $5, result = $6, \
             updated_ms = $7 WHERE id = $1 AND state = $8",
        )
        .bind(a.id.clone())
        .bind(a.state.as_str())
        .bind(a.decided_ms.map(to_i64))
        .bind(a.decided_by.clone())
        .bind(a.reason.clone())
        .bind(a.result.as_ref().map(json))
        .bind(to_i64(acv_core::now_ms()))
        .bind(expected.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn expire_approvals_sql(&self, now_ms: u64) -> Result<Vec<Approval>, StoreError> {
        let sql = format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE state = $1 AND expires_ms < $2");
        let rows = sqlx::query(&sql)
            .bind(ApprovalState::Pending.as_str())
            .bind(to_i64(now_ms))
            .fetch_all(&self.pool)
            .await?;
        let mut expired = Vec::new();
        for row in &rows {
            let mut a = approval_from(row)?;
            a.state = ApprovalState::Expired;
            a.decided_ms = Some(now_ms);
            a.decided_by = Some("expiry".into());
            a.reason = Some("nobody decided before it expired; it was not run".into());
            if self.update_approval_sql(&a, ApprovalState::Pending).await? {
                expired.push(a);
            }
        }
        Ok(expired)
    }

    pub(super) async fn insert_audit_sql(&self, records: &[AuditRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "INSERT INTO audit ({AUDIT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (id) DO NOTHING"
        );
        let mut tx = self.pool.begin().await?;
        let mut new = 0;
        for r in records {
            let done = sqlx::query(&sql)
                .bind(r.id.clone())
                .bind(r.component.to_string())
                .bind(r.episode.clone())
                .bind(to_i64(r.at_ms))
                .bind(enum_str(&r.kind))
                .bind(r.name.clone())
                .bind(r.args.as_ref().map(json))
                .bind(r.outcome.clone())
                .bind(json(&r.detail))
                .execute(&mut *tx)
                .await?;
            new += done.rows_affected();
        }
        tx.commit().await?;
        Ok(new)
    }

    pub(super) async fn audit_sql(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let mut clauses: Vec<(&str, String)> = Vec::new();
        if let Some(c) = &q.component {
            clauses.push(("component = ?", c.to_string()));
        }
        if let Some(e) = &q.episode {
            clauses.push(("episode = ?", e.clone()));
        }
        let since = q.since_ms.map(to_i64);
        let mut sql = format!("SELECT {AUDIT_COLUMNS} FROM audit {}", conditions(&clauses));
        let mut n = clauses.len();
        if since.is_some() {
            n += 1;
            sql.push_str(if clauses.is_empty() { " WHERE" } else { " AND" });
            sql.push_str(&format!(" at_ms >= ${n}"));
        }
        // The newest `limit`, then oldest first.
        sql.push_str(&format!(" ORDER BY at_ms DESC, id DESC LIMIT ${}", n + 1));
        let mut query = sqlx::query(&sql);
        for (_, v) in &clauses {
            query = query.bind(v.clone());
        }
        if let Some(since) = since {
            query = query.bind(since);
        }
        let rows = query.bind(i64::from(q.limit)).fetch_all(&self.pool).await?;
        let mut out = rows.iter().map(audit_from).collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    pub(super) async fn recent_episodes_sql(
        &self,
        component: Option<&ComponentName>,
        limit: u32,
    ) -> Result<Vec<(ComponentName, String)>, StoreError> {
        let rows =
            match component {
                Some(c) => {
                    sqlx::query(
                        "SELECT component, episode, MAX(at_ms) AS last FROM audit WHERE component = $1 \
                     GROUP BY component, episode ORDER BY last DESC, episode DESC LIMIT $2",
                    )
                    .bind(c.to_string())
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?
                }
                None => sqlx::query(
                    "SELECT component, episode, MAX(at_ms) AS last FROM audit GROUP BY component, episode \
                     ORDER BY last DESC, episode DESC LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?,
            };
        rows.iter()
            .map(|row| -> Result<(ComponentName, String), StoreError> {
                let episode: String = row.try_get("episode")?;
                let component = unstr("audit", &episode, row.try_get::<String, _>("component")?)?;
                Ok((component, episode))
            })
            .collect()
    }
}
