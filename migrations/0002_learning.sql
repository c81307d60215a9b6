-- What the scheduler learns and must not forget on restart (issue 4).

-- Walltimes of successful single-node jobs, by job shape (name + normalised request) and
-- node: the evidence for learned node speeds. The store keeps the newest 20 per
-- (node, shape).
CREATE TABLE speed_samples (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    node          TEXT NOT NULL,
    shape         TEXT NOT NULL,
    walltime_secs INTEGER NOT NULL,
    ended_at      INTEGER NOT NULL
);

CREATE INDEX speed_samples_node_shape ON speed_samples (node, shape);

-- Fair share: each user's decayed usage (slot-seconds) as of `as_of` (epoch seconds),
-- written when a job completes.
CREATE TABLE fairshare_usage (
    username TEXT PRIMARY KEY NOT NULL,
    usage    REAL NOT NULL,
    as_of    INTEGER NOT NULL
);
