-- Every stored object, its JSON body and the revision that last wrote it.
CREATE TABLE objects (
    resource  TEXT    NOT NULL,  -- "<group>/<plural>", group empty for the core group
    namespace TEXT    NOT NULL,  -- empty for cluster-scoped objects
    name      TEXT    NOT NULL,
    revision  INTEGER NOT NULL,
    body      TEXT    NOT NULL,
    PRIMARY KEY (resource, namespace, name)
) WITHOUT ROWID;

-- The watch history: one row per write, bounded (the oldest rows are compacted away).
CREATE TABLE events (
    revision  INTEGER PRIMARY KEY,
    resource  TEXT    NOT NULL,
    namespace TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    type      TEXT    NOT NULL CHECK (type IN ('ADDED', 'MODIFIED', 'DELETED')),
    body      TEXT    NOT NULL,
    -- The object before this write (null for ADDED): watches with selectors need both to tell
    -- an object entering or leaving the selection from one changing inside it.
    prev_body TEXT
);
CREATE INDEX events_by_resource ON events (resource, revision);

-- The one global revision counter (resourceVersion), kept even when events are compacted.
CREATE TABLE revision (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    current INTEGER NOT NULL
);
INSERT INTO revision (id, current) VALUES (0, 0);
