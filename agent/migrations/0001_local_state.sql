-- The agent's local state: what it started (so a restart re-adopts or fails it and never starts
-- the same attempt twice), the artifacts it holds, and the peers it knows.

CREATE TABLE tasks (
    uid         TEXT PRIMARY KEY,   -- the Task's metadata.uid: one row per attempt, ever
    namespace   TEXT NOT NULL,
    name        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    state       TEXT NOT NULL,      -- starting | running | finished | reported
    pid         INTEGER,            -- the shim, leader of the task's process group
    pid_start   INTEGER,            -- its start time (clock ticks), against pid reuse
    dir         TEXT NOT NULL,      -- the attempt's directory (log, exit file, input, output)
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT                -- JSON: the final status written (or to write)
);
CREATE INDEX tasks_by_name ON tasks (namespace, name);

CREATE TABLE artifacts (
    digest      TEXT PRIMARY KEY,   -- sha256:<hex>
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    path        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE peers (
    name        TEXT PRIMARY KEY,
    endpoint    TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
