-- Data sync: the chunk digests of every held artifact (so a puller verifies each chunk as it
-- arrives), when it was last used (retention drops the least recently used first), and the
-- transfers in progress (so a pull interrupted by a restart resumes where it stopped).

ALTER TABLE artifacts ADD COLUMN chunk_size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE artifacts ADD COLUMN chunks     TEXT    NOT NULL DEFAULT '';   -- hex digests, concatenated
ALTER TABLE artifacts ADD COLUMN last_used  TEXT;

CREATE TABLE transfers (
    digest      TEXT PRIMARY KEY,   -- sha256:<hex> of the whole artifact
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    chunk_size  INTEGER NOT NULL,
    chunks      TEXT NOT NULL,      -- the manifest's chunk digests, hex, concatenated
    done        TEXT NOT NULL,      -- one character per chunk: '1' verified and written, '0' not
    class       TEXT NOT NULL,      -- model | gauntlet | training | background
    started_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

ALTER TABLE peers ADD COLUMN gossip_addr TEXT NOT NULL DEFAULT '';
