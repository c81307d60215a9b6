-- Runs used to outlive their jobs' purge, one row per start for as long as the server lived.
-- Purges now take a job's runs with it (store.rs, purge_jobs); this drops those left before.
DELETE FROM runs WHERE job_seq NOT IN (SELECT seq FROM jobs);
