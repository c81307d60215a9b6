-- Capstan's initial schema.
--
-- Typed columns for what the server looks up (sequence numbers, states, run ids);
-- one JSON column (`data`) for the rest of an object, so adding a Torque attribute
-- does not need a migration. Never edit this file once released: add 0002_*.sql.

-- Server-wide values: next_job_number, default_queue, ...
CREATE TABLE server_kv (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE queues (
    name TEXT PRIMARY KEY NOT NULL,
    data TEXT NOT NULL
);

-- Node definitions come from server_priv/nodes; only runtime flags live here.
CREATE TABLE nodes (
    name    TEXT PRIMARY KEY NOT NULL,
    offline INTEGER NOT NULL DEFAULT 0,
    note    TEXT
);

CREATE TABLE jobs (
    seq    INTEGER PRIMARY KEY NOT NULL,
    state  TEXT NOT NULL,
    queue  TEXT NOT NULL,
    data   TEXT NOT NULL,
    script BLOB NOT NULL
);

-- Every start of a job is a run; its id is what the MOM deduplicates on.
CREATE TABLE runs (
    run_id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job_seq         INTEGER NOT NULL,
    mother_superior TEXT NOT NULL,
    exec_host       TEXT NOT NULL,
    started_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    exit_status     INTEGER
);

CREATE INDEX runs_job ON runs (job_seq);
