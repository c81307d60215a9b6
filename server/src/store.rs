//! The SQLite store: the cluster's source of truth. All SQL lives here and only here.
//!
//! Why it looks like this:
//! * WAL mode with `synchronous=FULL` by default: a transaction that returned from `commit` is on
//!   disk, so a `qsub` that printed an id survives `kill -9` of the server (design principle 1).
//! * One connection, owned, not pooled: the server has one writer (the state lock in
//!   `state.rs` serialises every change, and the store lives inside it). A pool, even of one,
//!   pings its connection on every release from a task of its own: a round trip to SQLite's
//!   worker thread and a wake-up of another, paid by every qsub and every job's start and end.
//!   With no pool to reset it, a call must not be cancelled halfway: a [`StoreTx::commit`]
//!   dropped after SQLite's worker began its statements would leave the transaction open,
//!   the autocommitted writes after it (a qsub's) would not be durable, and the next
//!   transaction would fail and roll them back. Every caller runs on a task nothing
//!   cancels (`state::uncancelled`, the MOM session readers, the dispatcher, the node
//!   monitor); only the runtime's end at shutdown drops one, and the connection, closing with
//!   it, rolls the transaction back.
//! * Typed columns for what is looked up (`seq`, `state`, run ids), one JSON column for the rest
//!   of an object; row structs are private and become domain types before leaving the module.
//! * Changes go through [`StoreTx`]: callers build one transaction per logical change (a
//!   scheduling pass with all its runs, a run's end with its dependents) and commit it before
//!   they touch memory or answer anyone. A submit, the hottest write, is one statement and
//!   needs no explicit transaction ([`Store::insert_job`], or [`Store::set_next_job_number`]
//!   for a refused one).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Arguments, Connection, Row, Sqlite};

use crate::authz::ServerAttrs;
use crate::model::{member_of, Job, NodeFlags, Queue};

/// A database failure; the server logs it and answers PBSE_SYSTEM.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the database is closed")]
    Closed,
    #[error("the database answered for {answered} of {expected} statements")]
    Incomplete { answered: usize, expected: usize },
    #[error("corrupt {what} record {key}: {message}")]
    Corrupt {
        what: &'static str,
        key: String,
        message: String,
    },
}

/// Everything the server loads at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The stored number or one past the highest stored job, whichever is higher; `None` on
    /// a fresh database.
    pub next_job_number: Option<u64>,
    pub default_queue: Option<String>,
    /// `None` on a database written before server attributes existed.
    pub server_attrs: Option<ServerAttrs>,
    pub queues: Vec<Queue>,
    /// Jobs in sequence order, scripts attached.
    pub jobs: Vec<Job>,
    pub node_flags: HashMap<String, NodeFlags>,
    /// Learned-speed evidence, oldest first: (shape, node, walltime secs).
    pub speed_samples: Vec<(String, String, u64)>,
    /// Fair share: (user, decayed slot-seconds, epoch they are decayed to).
    pub fairshare: Vec<(String, f64, i64)>,
}

/// Samples kept per (node, shape) in `speed_samples`.
pub const SPEED_SAMPLES_KEPT: i64 = 20;

/// A run as recorded (for reconciliation and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    pub run_id: u64,
    pub job_seq: u64,
    pub mother_superior: String,
    pub exec_host: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub exit_status: Option<i32>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    seq: i64,
    data: String,
    script: Vec<u8>,
}

#[derive(sqlx::FromRow)]
struct RunRow {
    run_id: i64,
    job_seq: i64,
    mother_superior: String,
    exec_host: String,
    started_at: i64,
    ended_at: Option<i64>,
    exit_status: Option<i64>,
}

impl From<RunRow> for RunRecord {
    fn from(r: RunRow) -> RunRecord {
        RunRecord {
            run_id: r.run_id as u64,
            job_seq: r.job_seq as u64,
            mother_superior: r.mother_superior,
            exec_host: r.exec_host,
            started_at: r.started_at,
            ended_at: r.ended_at,
            exit_status: r.exit_status.map(|s| s as i32),
        }
    }
}

/// Handle on the database: its one connection, until [`Store::close`].
#[derive(Debug)]
pub struct Store {
    conn: Option<SqliteConnection>,
    /// The next run id to give out. Transactions are sent whole at commit, so a run's id is
    /// chosen here rather than by SQLite's AUTOINCREMENT: higher than any id ever committed
    /// (`sqlite_sequence` remembers those even after their rows are purged), and never
    /// handed out twice by this process. An id taken by a transaction that then failed may be
    /// taken again after a restart; nothing outside the database ever saw it.
    next_run_id: u64,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies the embedded migrations.
    /// `durable = false` lowers `synchronous` to NORMAL (still crash-safe for the database
    /// itself, but the last commits may be lost on power failure); only for tests.
    pub async fn open(path: &Path, durable: bool) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if durable {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // Migrated through a pool of one, whose connection is then kept: the migrator's
        // future over a bare connection is not `Send` (launchbadge/sqlx#2016).
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        let mut conn = pool.acquire().await?.detach();
        pool.close().await;
        let highest_run_id: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'runs'), 0), \
                        COALESCE((SELECT MAX(run_id) FROM runs), 0))",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok(Store {
            conn: Some(conn),
            next_run_id: highest_run_id.max(0) as u64 + 1,
        })
    }

    fn conn(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        self.conn.as_mut().ok_or(StoreError::Closed)
    }

    /// Reads the whole state.
    pub async fn load(&mut self) -> Result<Loaded, StoreError> {
        let mut loaded = Loaded::default();
        let conn = self.conn()?;
        let kv = sqlx::query("SELECT key, value FROM server_kv")
            .fetch_all(&mut *conn)
            .await?;
        for row in kv {
            let key: String = row.try_get("key")?;
            let value: String = row.try_get("value")?;
            match key.as_str() {
                "next_job_number" => {
                    loaded.next_job_number =
                        Some(value.parse().map_err(|_| StoreError::Corrupt {
                            what: "server",
                            key: key.clone(),
                            message: format!("not a number: {value}"),
                        })?)
                }
                "default_queue" => loaded.default_queue = Some(value),
                "server_attrs" => {
                    loaded.server_attrs =
                        Some(
                            serde_json::from_str(&value).map_err(|e| StoreError::Corrupt {
                                what: "server",
                                key: key.clone(),
                                message: e.to_string(),
                            })?,
                        )
                }
                _ => {}
            }
        }
        let queues = sqlx::query("SELECT name, data FROM queues ORDER BY rowid")
            .fetch_all(&mut *conn)
            .await?;
        for row in queues {
            let name: String = row.try_get("name")?;
            let data: String = row.try_get("data")?;
            let queue: Queue = serde_json::from_str(&data).map_err(|e| StoreError::Corrupt {
                what: "queue",
                key: name,
                message: e.to_string(),
            })?;
            loaded.queues.push(queue);
        }
        // An array's sub-jobs share its one script, in memory as on disk.
        let array_scripts: HashMap<u64, Arc<Vec<u8>>> =
            sqlx::query("SELECT array_number, script FROM array_scripts")
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|row| {
                    let number: i64 = row.try_get("array_number")?;
                    let script: Vec<u8> = row.try_get("script")?;
                    Ok((number as u64, Arc::new(script)))
                })
                .collect::<Result<_, sqlx::Error>>()?;
        let jobs: Vec<JobRow> = sqlx::query_as("SELECT seq, data, script FROM jobs ORDER BY seq")
            .fetch_all(&mut *conn)
            .await?;
        for row in jobs {
            let mut job: Job =
                serde_json::from_str(&row.data).map_err(|e| StoreError::Corrupt {
                    what: "job",
                    key: row.seq.to_string(),
                    message: e.to_string(),
                })?;
            job.script = match member_of(job.seq) {
                Some((array, _)) => {
                    array_scripts
                        .get(&array)
                        .cloned()
                        .ok_or_else(|| StoreError::Corrupt {
                            what: "job",
                            key: row.seq.to_string(),
                            message: format!("the script of array {array} is missing"),
                        })?
                }
                None => Arc::new(row.script),
            };
            loaded.jobs.push(job);
        }
        // A job row witnesses its number; `next_job_number` itself is written only when numbers
        // are used with no row left to show it (refused submissions, purges).
        if let Some(highest) = loaded.jobs.iter().map(Job::number).max() {
            loaded.next_job_number = Some(loaded.next_job_number.unwrap_or(0).max(highest + 1));
        }
        let nodes = sqlx::query("SELECT name, offline, note FROM nodes")
            .fetch_all(&mut *conn)
            .await?;
        for row in nodes {
            let name: String = row.try_get("name")?;
            let offline: i64 = row.try_get("offline")?;
            let note: Option<String> = row.try_get("note")?;
            loaded.node_flags.insert(
                name,
                NodeFlags {
                    offline: offline != 0,
                    note,
                },
            );
        }
        let samples =
            sqlx::query("SELECT shape, node, walltime_secs FROM speed_samples ORDER BY id")
                .fetch_all(&mut *conn)
                .await?;
        for row in samples {
            let walltime: i64 = row.try_get("walltime_secs")?;
            loaded.speed_samples.push((
                row.try_get("shape")?,
                row.try_get("node")?,
                walltime.max(0) as u64,
            ));
        }
        let usage = sqlx::query("SELECT username, usage, as_of FROM fairshare_usage")
            .fetch_all(&mut *conn)
            .await?;
        for row in usage {
            loaded.fairshare.push((
                row.try_get("username")?,
                row.try_get("usage")?,
                row.try_get("as_of")?,
            ));
        }
        Ok(loaded)
    }

    /// All runs of a job, oldest first.
    pub async fn runs_of_job(&mut self, seq: u64) -> Result<Vec<RunRecord>, StoreError> {
        let rows: Vec<RunRow> = sqlx::query_as(
            "SELECT run_id, job_seq, mother_superior, exec_host, started_at, ended_at, exit_status \
             FROM runs WHERE job_seq = ? ORDER BY run_id",
        )
        .bind(seq as i64)
        .fetch_all(self.conn()?)
        .await?;
        Ok(rows.into_iter().map(RunRecord::from).collect())
    }

    /// Starts a transaction (in memory: see [`StoreTx`]).
    pub fn begin(&mut self) -> Result<StoreTx<'_>, StoreError> {
        let Store { conn, next_run_id } = self;
        Ok(StoreTx {
            conn: conn.as_mut().ok_or(StoreError::Closed)?,
            next_run_id,
            statements: Vec::new(),
            params: Vec::new(),
        })
    }

    /// Stores a submitted job: one statement in SQLite's own (autocommit) transaction, so it
    /// is committed (with `durable`, synced) when this returns; a single statement needs no
    /// [`StoreTx`]. The next job number is not written: [`Store::load`] derives it from the
    /// highest stored sequence number.
    pub async fn insert_job(&mut self, job: &Job) -> Result<(), StoreError> {
        sqlx::query(INSERT_JOB)
            .bind(job.seq as i64)
            .bind(job.state.letter())
            .bind(&job.queue)
            .bind(job_json(job)?)
            .bind(job.script.as_slice())
            .execute(self.conn()?)
            .await?;
        Ok(())
    }

    /// Records that numbers below `next` are used although no job row shows it (a refused
    /// submission); one autocommitted statement, as [`Store::insert_job`].
    pub async fn set_next_job_number(&mut self, next: u64) -> Result<(), StoreError> {
        set_kv(self.conn()?, "next_job_number", &next.to_string()).await
    }

    /// Closes the connection (checkpointing the WAL); later calls fail with
    /// [`StoreError::Closed`].
    pub async fn close(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Err(e) = conn.close().await {
                tracing::warn!("closing the database: {e}");
            }
        }
    }
}

/// One transaction, built in memory and sent to SQLite at [`StoreTx::commit`] as few
/// multi-statement queries (`BEGIN; ...; COMMIT;`, the arguments bound in order across the
/// statements): a job's start or end is one round trip to SQLite's worker thread instead of
/// one per statement plus two for BEGIN and COMMIT, each round trip two thread wake-ups.
///
/// * Nothing reaches the database before `commit`, so a transaction dropped uncommitted
///   needs no rollback, and no statement may depend on reading the transaction's own writes
///   (none does: memory is the state, the database its durable copy).
/// * Up to [`CACHED_STATEMENTS`] statements go as one query that sqlx prepares once and
///   caches (the shapes of a start, an end, a qsub's neighbours recur). A bigger transaction
///   (a `qdel all`) goes in uncached chunks of [`CHUNK_STATEMENTS`]: SQLite copies the rest
///   of a query's text at each statement it prepares, so one huge query would cost the square
///   of its length, and it would crowd the cache out.
/// * sqlx-sqlite 0.8 runs multi-statement prepared queries; upstream calls that deprecated
///   (launchbadge/sqlx#3108). Should an upgrade drop it, every transaction test fails at
///   once, and the fallback is one query per statement inside BEGIN/COMMIT.
pub struct StoreTx<'c> {
    conn: &'c mut SqliteConnection,
    /// The store's next run id, taken by [`StoreTx::insert_run`].
    next_run_id: &'c mut u64,
    /// Each statement and how many of `params` it takes, in order.
    statements: Vec<(&'static str, usize)>,
    params: Vec<Param>,
}

/// At most this many statements go as one cached query.
const CACHED_STATEMENTS: usize = 8;

/// A bigger transaction goes in chunks of this many statements (fewer than sqlx's 50
/// buffered results, so SQLite's thread never waits for us mid-chunk).
const CHUNK_STATEMENTS: usize = 32;

/// A value bound to a buffered statement.
enum Param {
    Int(i64),
    Real(f64),
    Text(String),
    OptionalText(Option<String>),
    Blob(Vec<u8>),
}

impl Param {
    fn add_to(self, args: &mut SqliteArguments<'static>) -> Result<(), StoreError> {
        match self {
            Param::Int(v) => args.add(v),
            Param::Real(v) => args.add(v),
            Param::Text(v) => args.add(v),
            Param::OptionalText(v) => args.add(v),
            Param::Blob(v) => args.add(v),
        }
        .map_err(|e| StoreError::Sql(sqlx::Error::Encode(e)))
    }
}

/// A new job's row (an array's sub-job has an empty script: see [`StoreTx::insert_array`]).
const INSERT_JOB: &str =
    "INSERT INTO jobs (seq, state, queue, data, script) VALUES (?, ?, ?, ?, ?)";

fn job_json(job: &Job) -> Result<String, StoreError> {
    serde_json::to_string(job).map_err(|e| StoreError::Corrupt {
        what: "job",
        key: job.seq.to_string(),
        message: e.to_string(),
    })
}

/// Sets one `server_kv` entry (two values: key, value).
const SET_KV: &str = "INSERT INTO server_kv (key, value) VALUES (?, ?) \
                      ON CONFLICT(key) DO UPDATE SET value = excluded.value";

/// Sets one `server_kv` entry, autocommitted (in a transaction: [`StoreTx`]).
async fn set_kv<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
    key: &str,
    value: &str,
) -> Result<(), StoreError> {
    sqlx::query(SET_KV)
        .bind(key)
        .bind(value)
        .execute(executor)
        .await?;
    Ok(())
}

impl StoreTx<'_> {
    /// Appends one statement with the values of its `?`s, in order.
    fn push(&mut self, statement: &'static str, params: impl IntoIterator<Item = Param>) {
        let before = self.params.len();
        self.params.extend(params);
        let count = self.params.len() - before;
        debug_assert_eq!(statement.matches('?').count(), count, "{statement}");
        self.statements.push((statement, count));
    }

    fn set_kv(&mut self, key: &str, value: String) {
        self.push(SET_KV, [Param::Text(key.to_string()), Param::Text(value)]);
    }

    /// Stores a new job array: its script once (`array_scripts`), then its sub-jobs, whose
    /// rows hold none. `members` are the sub-jobs of array `number`, sharing one script.
    pub fn insert_array(&mut self, number: u64, members: &[Job]) -> Result<(), StoreError> {
        let script = members
            .first()
            .map(|j| j.script.to_vec())
            .unwrap_or_default();
        self.push(
            "INSERT INTO array_scripts (array_number, script) VALUES (?, ?)",
            [Param::Int(number as i64), Param::Blob(script)],
        );
        for job in members {
            debug_assert_eq!(member_of(job.seq).map(|(array, _)| array), Some(number));
            let data = job_json(job)?;
            self.push(
                INSERT_JOB,
                [
                    Param::Int(job.seq as i64),
                    Param::Text(job.state.letter().to_string()),
                    Param::Text(job.queue.clone()),
                    Param::Text(data),
                    Param::Blob(Vec::new()),
                ],
            );
        }
        Ok(())
    }

    /// Forgets the scripts of arrays whose last sub-jobs this transaction purges.
    pub fn forget_array_scripts(&mut self, numbers: &[u64]) {
        for &number in numbers {
            self.push(
                "DELETE FROM array_scripts WHERE array_number = ?",
                [Param::Int(number as i64)],
            );
        }
    }

    /// Rewrites an existing job's attributes (the script never changes).
    pub fn save_job(&mut self, job: &Job) -> Result<(), StoreError> {
        let data = job_json(job)?;
        self.push(
            "UPDATE jobs SET state = ?, queue = ?, data = ? WHERE seq = ?",
            [
                Param::Text(job.state.letter().to_string()),
                Param::Text(job.queue.clone()),
                Param::Text(data),
                Param::Int(job.seq as i64),
            ],
        );
        Ok(())
    }

    /// Forgets purged jobs and their runs (else the runs table grows by a row per start
    /// for as long as the server lives; run ids are not reused, see [`Store`]'s
    /// `next_run_id`). The jobs' rows were what showed their numbers used (see
    /// [`Store::load`]), so the server's `next_job_number` is recorded with them. One
    /// statement per table, whatever the number of jobs (the list goes as a JSON array).
    pub fn purge_jobs(&mut self, seqs: &[u64], next_job_number: u64) -> Result<(), StoreError> {
        let numbers: Vec<String> = seqs.iter().map(u64::to_string).collect();
        let list = format!("[{}]", numbers.join(","));
        self.push(
            "DELETE FROM runs WHERE job_seq IN (SELECT value FROM json_each(?))",
            [Param::Text(list.clone())],
        );
        self.push(
            "DELETE FROM jobs WHERE seq IN (SELECT value FROM json_each(?))",
            [Param::Text(list)],
        );
        self.set_next_job_number(next_job_number)
    }

    /// Records the next job number. Callers pass one no lower than any recorded or derived
    /// before ([`Store::load`]).
    pub fn set_next_job_number(&mut self, next: u64) -> Result<(), StoreError> {
        self.set_kv("next_job_number", next.to_string());
        Ok(())
    }

    pub fn set_default_queue(&mut self, queue: &str) -> Result<(), StoreError> {
        self.set_kv("default_queue", queue.to_string());
        Ok(())
    }

    pub fn save_server_attrs(&mut self, attrs: &ServerAttrs) -> Result<(), StoreError> {
        let json = serde_json::to_string(attrs).map_err(|e| StoreError::Corrupt {
            what: "server",
            key: "server_attrs".into(),
            message: e.to_string(),
        })?;
        self.set_kv("server_attrs", json);
        Ok(())
    }

    pub fn save_queue(&mut self, queue: &Queue) -> Result<(), StoreError> {
        let data = serde_json::to_string(queue).map_err(|e| StoreError::Corrupt {
            what: "queue",
            key: queue.name.clone(),
            message: e.to_string(),
        })?;
        self.push(
            "INSERT INTO queues (name, data) VALUES (?, ?) \
             ON CONFLICT(name) DO UPDATE SET data = excluded.data",
            [Param::Text(queue.name.clone()), Param::Text(data)],
        );
        Ok(())
    }

    pub fn delete_queue(&mut self, name: &str) -> Result<(), StoreError> {
        self.push(
            "DELETE FROM queues WHERE name = ?",
            [Param::Text(name.to_string())],
        );
        Ok(())
    }

    pub fn save_node_flags(&mut self, name: &str, flags: &NodeFlags) -> Result<(), StoreError> {
        self.push(
            "INSERT INTO nodes (name, offline, note) VALUES (?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET offline = excluded.offline, note = excluded.note",
            [
                Param::Text(name.to_string()),
                Param::Int(flags.offline as i64),
                Param::OptionalText(flags.note.clone()),
            ],
        );
        Ok(())
    }

    /// Records a new run and returns its id.
    pub fn insert_run(
        &mut self,
        job_seq: u64,
        mother_superior: &str,
        exec_host: &str,
        started_at: i64,
    ) -> Result<u64, StoreError> {
        let run_id = *self.next_run_id;
        *self.next_run_id += 1;
        self.push(
            "INSERT INTO runs (run_id, job_seq, mother_superior, exec_host, started_at) \
             VALUES (?, ?, ?, ?, ?)",
            [
                Param::Int(run_id as i64),
                Param::Int(job_seq as i64),
                Param::Text(mother_superior.to_string()),
                Param::Text(exec_host.to_string()),
                Param::Int(started_at),
            ],
        );
        Ok(run_id)
    }

    /// Records how a run ended (idempotent: a second end keeps the first).
    pub fn end_run(
        &mut self,
        run_id: u64,
        ended_at: i64,
        exit_status: i32,
    ) -> Result<(), StoreError> {
        self.push(
            "UPDATE runs SET ended_at = ?, exit_status = ? WHERE run_id = ? AND ended_at IS NULL",
            [
                Param::Int(ended_at),
                Param::Int(exit_status as i64),
                Param::Int(run_id as i64),
            ],
        );
        Ok(())
    }

    /// Records a learned-speed sample, keeping the newest [`SPEED_SAMPLES_KEPT`] per
    /// (node, shape).
    pub fn insert_speed_sample(
        &mut self,
        node: &str,
        shape: &str,
        walltime_secs: u64,
        ended_at: i64,
    ) -> Result<(), StoreError> {
        let (node, shape) = (node.to_string(), shape.to_string());
        self.push(
            "INSERT INTO speed_samples (node, shape, walltime_secs, ended_at) VALUES (?, ?, ?, ?)",
            [
                Param::Text(node.clone()),
                Param::Text(shape.clone()),
                Param::Int(walltime_secs as i64),
                Param::Int(ended_at),
            ],
        );
        self.push(
            "DELETE FROM speed_samples WHERE node = ? AND shape = ? AND id NOT IN \
             (SELECT id FROM speed_samples WHERE node = ? AND shape = ? ORDER BY id DESC LIMIT ?)",
            [
                Param::Text(node.clone()),
                Param::Text(shape.clone()),
                Param::Text(node),
                Param::Text(shape),
                Param::Int(SPEED_SAMPLES_KEPT),
            ],
        );
        Ok(())
    }

    /// Saves users' decayed fair-share usage as of `as_of`.
    pub fn save_fairshare(
        &mut self,
        usage: &[(String, f64)],
        as_of: i64,
    ) -> Result<(), StoreError> {
        for (user, value) in usage {
            self.push(
                "INSERT INTO fairshare_usage (username, usage, as_of) VALUES (?, ?, ?) \
                 ON CONFLICT(username) DO UPDATE SET usage = excluded.usage, as_of = excluded.as_of",
                [Param::Text(user.clone()), Param::Real(*value), Param::Int(as_of)],
            );
        }
        Ok(())
    }

    /// Sends the transaction and commits it (with `durable`, synced when this returns). A
    /// transaction with nothing in it costs nothing. On an error, what ran is rolled back.
    pub async fn commit(self) -> Result<(), StoreError> {
        let StoreTx {
            conn,
            statements,
            params,
            ..
        } = self;
        if statements.is_empty() {
            return Ok(());
        }
        let cached = statements.len() <= CACHED_STATEMENTS;
        let chunk_len = if cached {
            CACHED_STATEMENTS
        } else {
            CHUNK_STATEMENTS
        };
        let chunks = statements.len().div_ceil(chunk_len);
        let mut params = params.into_iter();
        for (i, chunk) in statements.chunks(chunk_len).enumerate() {
            let (first, last) = (i == 0, i + 1 == chunks);
            let mut sql = String::new();
            let mut args = SqliteArguments::default();
            if first {
                sql.push_str("BEGIN;\n");
            }
            for (statement, count) in chunk {
                sql.push_str(statement);
                sql.push_str(";\n");
                for param in params.by_ref().take(*count) {
                    param.add_to(&mut args)?;
                }
            }
            if last {
                sql.push_str("COMMIT;");
            }
            let expected = chunk.len() + usize::from(first) + usize::from(last);
            if let Err(e) = run_statements(&mut *conn, &sql, args, cached, expected).await {
                // The statements that ran stand in an open transaction (unless BEGIN was
                // what failed): left open, the next transaction's BEGIN would fail and the
                // autocommitted writes in between would not be durable.
                if let Err(rollback) = sqlx::query("ROLLBACK").execute(&mut *conn).await {
                    if !rollback.to_string().contains("no transaction is active") {
                        tracing::error!("cannot roll back a failed transaction: {rollback}");
                    }
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Runs one multi-statement query and checks that SQLite's thread answered for each of its
/// `expected` statements: a worker that died midway ends the results early, which sqlx
/// does not report as an error.
async fn run_statements<'q>(
    conn: &'q mut SqliteConnection,
    sql: &'q str,
    args: SqliteArguments<'q>,
    cached: bool,
    expected: usize,
) -> Result<(), StoreError> {
    use tokio_stream::StreamExt;
    let query = sqlx::query_with(sql, args).persistent(cached);
    let mut results = sqlx::Executor::execute_many(conn, query);
    let mut answered = 0;
    while let Some(result) = results.next().await {
        result?;
        answered += 1;
    }
    if answered != expected {
        return Err(StoreError::Incomplete { answered, expected });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{HoldTypes, JobState};

    pub(crate) fn sample_job(seq: u64) -> Job {
        Job {
            seq,
            name: "job.sh".into(),
            owner: "u@vm".into(),
            uid: 1000,
            euser: "u".into(),
            egroup: "u".into(),
            state: JobState::Queued,
            queue: "batch".into(),
            account: None,
            checkpoint: "u".into(),
            ctime: 1,
            mtime: 1,
            qtime: 1,
            queue_rank: 0,
            depend_hold: None,
            etime: Some(1),
            depend: vec![],
            output_path: "vm:/tmp/job.sh.o0".into(),
            error_path: "vm:/tmp/job.sh.e0".into(),
            exec_host: vec![],
            execution_time: None,
            hold_types: HoldTypes::default(),
            join_path: "n".into(),
            keep_files: "n".into(),
            mail_points: "a".into(),
            mail_users: None,
            priority: 0,
            rerunable: true,
            resources: vec![("walltime".into(), "01:00:00".into())],
            session_id: None,
            shell_path: None,
            variable_list: "PBS_O_WORKDIR=/tmp".into(),
            comment: None,
            exit_status: None,
            submit_args: None,
            start_time: None,
            start_count: 0,
            umask: None,
            job_arguments: None,
            kill_delay: None,
            fault_tolerant: false,
            group_list: None,
            user_list: None,
            node_exclusive: false,
            interactive: None,
            array: None,
            failed_starts: 0,
            suspended: false,
            defaulted: Vec::new(),
            comp_time: None,
            total_runtime: None,
            submit_host: "vm".into(),
            init_work_dir: "/tmp".into(),
            resources_used: None,
            current_run: None,
            pending: None,
            request: None,
            script: Arc::new(b"echo hi\n".to_vec()),
        }
    }

    #[tokio::test]
    async fn committed_job_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("capstan.db");
        {
            let mut store = Store::open(&path, true).await.unwrap();
            store.insert_job(&sample_job(0)).await.unwrap();
            // No close: simulate the process dying right after the acknowledgement.
            std::mem::forget(store);
        }
        let mut store = Store::open(&path, true).await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.next_job_number, Some(1));
        assert_eq!(loaded.jobs.len(), 1);
        assert_eq!(loaded.jobs[0].name, "job.sh");
        assert_eq!(loaded.jobs[0].script.as_slice(), b"echo hi\n");
    }

    /// An array's script is stored once, shared by its sub-jobs when loaded, and goes with
    /// the last of them; the array's number counts as used.
    #[tokio::test]
    async fn an_arrays_sub_jobs_share_one_stored_script() {
        use crate::model::member_key;
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        let members: Vec<Job> = [1, 2]
            .map(|index| sample_job(member_key(6, index)))
            .to_vec();
        let mut tx = store.begin().unwrap();
        tx.insert_array(6, &members).unwrap();
        tx.commit().await.unwrap();

        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.next_job_number, Some(7));
        assert_eq!(loaded.jobs.len(), 2);
        assert_eq!(loaded.jobs[0].script.as_slice(), b"echo hi\n");
        assert!(Arc::ptr_eq(&loaded.jobs[0].script, &loaded.jobs[1].script));
        let stored: i64 = sqlx::query_scalar("SELECT SUM(LENGTH(script)) FROM jobs")
            .fetch_one(store.conn().unwrap())
            .await
            .unwrap();
        assert_eq!(stored, 0, "the sub-jobs' rows hold no copy");

        let mut tx = store.begin().unwrap();
        tx.purge_jobs(&[member_key(6, 1), member_key(6, 2)], 7)
            .unwrap();
        tx.forget_array_scripts(&[6]);
        tx.commit().await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM array_scripts")
            .fetch_one(store.conn().unwrap())
            .await
            .unwrap();
        assert_eq!(left, 0);
        assert_eq!(store.load().await.unwrap().next_job_number, Some(7));
    }

    #[tokio::test]
    async fn a_second_job_with_a_used_number_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        store.insert_job(&sample_job(4)).await.unwrap();
        // The same sequence number again: the insert fails and changes nothing.
        let mut again = sample_job(4);
        again.name = "again".into();
        assert!(store.insert_job(&again).await.is_err());
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.next_job_number, Some(5));
        assert_eq!(loaded.jobs.len(), 1);
        assert_eq!(loaded.jobs[0].name, "job.sh");
    }

    #[tokio::test]
    async fn the_next_job_number_follows_the_highest_job_unless_more_were_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        assert_eq!(store.load().await.unwrap().next_job_number, None);
        store.insert_job(&sample_job(7)).await.unwrap();
        store.insert_job(&sample_job(2)).await.unwrap();
        assert_eq!(store.load().await.unwrap().next_job_number, Some(8));
        // A refused submission used 8 and 9.
        store.set_next_job_number(10).await.unwrap();
        assert_eq!(store.load().await.unwrap().next_job_number, Some(10));
        store.insert_job(&sample_job(10)).await.unwrap();
        assert_eq!(store.load().await.unwrap().next_job_number, Some(11));
    }

    #[tokio::test]
    async fn a_transaction_dropped_uncommitted_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        store.insert_job(&sample_job(3)).await.unwrap();
        {
            let mut tx = store.begin().unwrap();
            tx.purge_jobs(&[3], 99).unwrap();
        }
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.jobs.len(), 1);
        assert_eq!(loaded.next_job_number, Some(4));
    }

    #[tokio::test]
    async fn runs_get_increasing_ids_and_end_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        store.insert_job(&sample_job(0)).await.unwrap();
        let mut tx = store.begin().unwrap();
        let a = tx.insert_run(0, "n1", "n1/0", 10).unwrap();
        let b = tx.insert_run(0, "n1", "n1/0", 20).unwrap();
        tx.end_run(a, 15, 0).unwrap();
        tx.end_run(a, 99, 7).unwrap();
        tx.commit().await.unwrap();
        assert!(b > a);
        let runs = store.runs_of_job(0).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].ended_at, Some(15));
        assert_eq!(runs[0].exit_status, Some(0));
        assert_eq!(runs[1].ended_at, None);
    }

    #[tokio::test]
    async fn saves_queues_flags_and_updates() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        let mut job = sample_job(5);
        store.insert_job(&job).await.unwrap();
        let mut tx = store.begin().unwrap();
        tx.save_queue(&Queue {
            enabled: true,
            started: true,
            resources_default: vec![("nodes".into(), "1".into())],
            ..Queue::new("batch", 7)
        })
        .unwrap();
        tx.set_default_queue("batch").unwrap();
        tx.save_node_flags(
            "n1",
            &NodeFlags {
                offline: true,
                note: Some("maint".into()),
            },
        )
        .unwrap();
        tx.commit().await.unwrap();
        job.state = JobState::Completed;
        job.exit_status = Some(3);
        let mut tx = store.begin().unwrap();
        tx.save_job(&job).unwrap();
        tx.commit().await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.default_queue.as_deref(), Some("batch"));
        assert_eq!(loaded.queues[0].resources_default.len(), 1);
        assert_eq!(loaded.jobs[0].state, JobState::Completed);
        assert_eq!(loaded.jobs[0].exit_status, Some(3));
        assert!(loaded.node_flags["n1"].offline);
        let mut tx = store.begin().unwrap();
        tx.purge_jobs(&[5], 6).unwrap();
        tx.commit().await.unwrap();
        let loaded = store.load().await.unwrap();
        assert!(loaded.jobs.is_empty());
        assert_eq!(loaded.next_job_number, Some(6));
    }

    #[tokio::test]
    async fn runs_left_by_earlier_purges_go_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = Store::open(&path, false).await.unwrap();
        store.insert_job(&sample_job(2)).await.unwrap();
        let mut tx = store.begin().unwrap();
        tx.insert_run(1, "n1", "n1/0", 10).unwrap(); // job 1 was purged before
        tx.insert_run(2, "n1", "n1/0", 10).unwrap();
        tx.commit().await.unwrap();
        // As a database from before migration 3: not applied yet.
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 3")
            .execute(store.conn().unwrap())
            .await
            .unwrap();
        store.close().await;
        let mut store = Store::open(&path, false).await.unwrap();
        assert!(store.runs_of_job(1).await.unwrap().is_empty());
        assert_eq!(store.runs_of_job(2).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_purge_takes_the_jobs_runs_and_run_ids_are_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        for seq in [1, 2, 3] {
            store.insert_job(&sample_job(seq)).await.unwrap();
        }
        let mut tx = store.begin().unwrap();
        for seq in [1, 2, 3] {
            tx.insert_run(seq, "n1", "n1/0", 10).unwrap();
        }
        let last = tx.insert_run(3, "n1", "n1/0", 11).unwrap();
        tx.purge_jobs(&[1, 3], 4).unwrap();
        tx.commit().await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.jobs.iter().map(|j| j.seq).collect::<Vec<_>>(), [2]);
        assert!(store.runs_of_job(1).await.unwrap().is_empty());
        assert!(store.runs_of_job(3).await.unwrap().is_empty());
        assert_eq!(store.runs_of_job(2).await.unwrap().len(), 1);
        let mut tx = store.begin().unwrap();
        let next = tx.insert_run(2, "n1", "n1/0", 12).unwrap();
        tx.commit().await.unwrap();
        assert!(next > last, "run id {next} after {last}");
    }

    #[tokio::test]
    async fn run_ids_are_not_reused_after_a_purge_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let mut store = Store::open(&path, false).await.unwrap();
        store.insert_job(&sample_job(1)).await.unwrap();
        let mut tx = store.begin().unwrap();
        tx.insert_run(1, "n1", "n1/0", 10).unwrap();
        let last = tx.insert_run(1, "n1", "n1/0", 11).unwrap();
        tx.commit().await.unwrap();
        let mut tx = store.begin().unwrap();
        tx.purge_jobs(&[1], 2).unwrap();
        tx.commit().await.unwrap();
        store.close().await;
        // No run row is left: only SQLite's sequence remembers the ids given out.
        let mut store = Store::open(&path, false).await.unwrap();
        store.insert_job(&sample_job(2)).await.unwrap();
        let mut tx = store.begin().unwrap();
        let next = tx.insert_run(2, "n1", "n1/0", 12).unwrap();
        tx.commit().await.unwrap();
        assert_eq!(next, last + 1);
        assert_eq!(store.runs_of_job(2).await.unwrap()[0].run_id, next);
    }

    #[tokio::test]
    async fn a_transaction_that_fails_halfway_changes_nothing_and_the_next_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        store.insert_job(&sample_job(1)).await.unwrap();
        let mut tx = store.begin().unwrap();
        let taken = tx.insert_run(1, "n1", "n1/0", 10).unwrap();
        tx.commit().await.unwrap();
        // The queue is written, then the run's insert fails (its id is taken): the
        // queue must go with it, and the connection must not be left in a transaction.
        store.next_run_id = taken;
        let mut tx = store.begin().unwrap();
        tx.save_queue(&Queue::new("lost", 1)).unwrap();
        tx.insert_run(1, "n1", "n1/0", 20).unwrap();
        assert!(tx.commit().await.is_err());
        assert!(store.load().await.unwrap().queues.is_empty());
        let mut tx = store.begin().unwrap();
        tx.save_queue(&Queue::new("kept", 1)).unwrap();
        tx.commit().await.unwrap();
        store.close().await;
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        let names: Vec<String> = store
            .load()
            .await
            .unwrap()
            .queues
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(names, ["kept"]);
    }

    #[tokio::test]
    async fn a_large_transaction_goes_in_chunks_and_commits_or_fails_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("db"), false).await.unwrap();
        let count = 3 * CHUNK_STATEMENTS as u64 + 5;
        for seq in 0..count {
            store.insert_job(&sample_job(seq)).await.unwrap();
        }
        let taken = {
            let mut tx = store.begin().unwrap();
            let taken = tx.insert_run(0, "n1", "n1/0", 10).unwrap();
            tx.commit().await.unwrap();
            taken
        };
        // Every chunk but the last runs; the last one's run insert fails (its id is taken).
        store.next_run_id = taken;
        let mut tx = store.begin().unwrap();
        for seq in 0..count {
            let mut job = sample_job(seq);
            job.state = JobState::Completed;
            tx.save_job(&job).unwrap();
        }
        tx.insert_run(0, "n1", "n1/0", 20).unwrap();
        assert!(tx.commit().await.is_err());
        let loaded = store.load().await.unwrap();
        assert!(loaded.jobs.iter().all(|j| j.state == JobState::Queued));
        // The same without the failing insert: every job is saved.
        let mut tx = store.begin().unwrap();
        for seq in 0..count {
            let mut job = sample_job(seq);
            job.state = JobState::Completed;
            tx.save_job(&job).unwrap();
        }
        tx.commit().await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.jobs.len() as u64, count);
        assert!(loaded.jobs.iter().all(|j| j.state == JobState::Completed));
    }

    #[tokio::test]
    async fn learning_survives_reopen_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let mut store = Store::open(&path, false).await.unwrap();
            let mut tx = store.begin().unwrap();
            for w in 1..=(SPEED_SAMPLES_KEPT as u64 + 3) {
                tx.insert_speed_sample("n1", "s", w, 100).unwrap();
            }
            tx.insert_speed_sample("n2", "s", 7, 100).unwrap();
            tx.save_fairshare(&[("ann".into(), 10.0)], 50).unwrap();
            tx.save_fairshare(&[("ann".into(), 12.5), ("bob".into(), 1.0)], 60)
                .unwrap();
            tx.commit().await.unwrap();
            store.close().await;
        }
        let loaded = Store::open(&path, false)
            .await
            .unwrap()
            .load()
            .await
            .unwrap();
        let n1: Vec<u64> = loaded
            .speed_samples
            .iter()
            .filter(|s| s.1 == "n1")
            .map(|s| s.2)
            .collect();
        assert_eq!(n1.len(), SPEED_SAMPLES_KEPT as usize);
        assert_eq!(n1[0], 4);
        assert!(loaded.speed_samples.contains(&("s".into(), "n2".into(), 7)));
        let mut usage = loaded.fairshare;
        usage.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            usage,
            vec![("ann".to_string(), 12.5, 60), ("bob".to_string(), 1.0, 60)]
        );
    }
}
