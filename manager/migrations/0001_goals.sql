-- Goals, their events and subtasks, and tasks sent through the manager. Portable SQL: runs on SQLite and PostgreSQL.
-- Structured fields (spec, objectives, results) are JSON text; times are ms since the Unix epoch.
CREATE TABLE goals (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    objectives TEXT NOT NULL,
    state TEXT NOT NULL,
    round BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    results TEXT NOT NULL
);
CREATE INDEX goals_state ON goals (state);

CREATE TABLE goal_events (
    goal_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (goal_id, seq)
);

CREATE TABLE subtasks (
    id TEXT PRIMARY KEY,
    goal_id TEXT NOT NULL,
    round BIGINT NOT NULL,
    component TEXT NOT NULL,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    deadline_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    report_status TEXT,
    message TEXT NOT NULL
);
CREATE INDEX subtasks_goal ON subtasks (goal_id);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    component TEXT NOT NULL,
    text TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    report TEXT
);
