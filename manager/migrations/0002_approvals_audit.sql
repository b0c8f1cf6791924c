-- Approvals (approve mode) and the sidecars' audit trail. Portable SQL: runs on SQLite and PostgreSQL.
-- Times are ms since the Unix epoch; args, result and detail are JSON text.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,
    component TEXT NOT NULL,
    episode TEXT NOT NULL,
    task_id TEXT,
    call TEXT NOT NULL,
    args TEXT NOT NULL,
    program TEXT NOT NULL,
    state TEXT NOT NULL,
    requested_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
    decided_ms BIGINT,
    decided_by TEXT,
    reason TEXT,
    result TEXT,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX approvals_state ON approvals (state, expires_ms);
CREATE INDEX approvals_component ON approvals (component, requested_ms);

CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    component TEXT NOT NULL,
    episode TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    args TEXT,
    outcome TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_component_at ON audit (component, at_ms);
CREATE INDEX audit_episode ON audit (episode, at_ms);
CREATE INDEX audit_at ON audit (at_ms);
