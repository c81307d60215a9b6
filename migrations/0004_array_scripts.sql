-- A job array's script, kept once for all its sub-jobs (their own rows hold an empty one):
-- an array of 10,000 sub-jobs would otherwise store it 10,000 times. Written with the
-- sub-jobs, deleted when the last of them is purged (store.rs).
CREATE TABLE array_scripts (
    array_number INTEGER PRIMARY KEY NOT NULL,
    script       BLOB NOT NULL
);
