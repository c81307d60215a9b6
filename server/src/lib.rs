//! `pbs_server`: Capstan's server. State in SQLite, scheduling, the client API and MOM sessions.
//!
//! # Layout
//!
//! * [`server`]: start-up (nodes file, database, default queue), the Unix-socket and MOM
//!   listeners, orderly shutdown.
//! * [`config`]: settings resolved at start.
//! * [`model`]: the domain types (jobs, queues, nodes, runs); nothing below `api` and
//!   `mom_session` sees a proto type.
//! * [`state`]: the in-memory cache of the database and the one lock that serialises changes
//!   ("commit to SQLite, then apply to memory, then answer").
//! * [`store`]: all SQL.
//! * [`api`]: the Batch service for the commands (proto ↔ domain, caller identity).
//! * [`mom_session`]: the MomSession service (node identity, reconciliation, status, run
//!   results) and the node watchdog.
//! * [`jobs`]: the job lifecycle rules.
//! * [`accounting`]: Torque's accounting log (`Q`/`S`/`E`/`R`/`D`/`A` records).
//! * [`mail`]: job mail (`qsub -m abe`): which changes call for it, the message, sendmail.
//! * [`manage`]: qmgr's create/delete/set/unset on the server, queues and nodes, and
//!   pbsnodes' node changes (`-o`, `-c`, `-r`, `-N`).
//! * [`authz`]: managers/operators, `submit_hosts`, `query_other_jobs` and Torque's ACL matching.
//! * [`dispatch`]: the event-driven scheduling loop around [`scheduler::schedule`], and qrun.
//! * [`attrs`]: domain objects → Torque attribute lists in Torque's order.
//! * [`nodes_file`]: `server_priv/nodes`: the parser, and the line editing qmgr's node
//!   changes write it back with.
//! * [`resources`], [`scheduler`]: Torque resource grammar and placement, pure functions.
//! * [`shutdown`]: SIGTERM/SIGINT and the shutdown broadcast.
//!
//! # Invariants
//!
//! * Only `store` knows SQL; only `api` and `mom_session` know proto types.
//! * Every change is committed before it is applied in memory, acknowledged, or sent to a MOM.
//! * A run is recorded (with its id) before its StartRun leaves the server.
//! * Heartbeats never write to the database.

pub mod accounting;
pub mod api;
pub mod attrs;
pub mod authz;
pub mod config;
pub mod dispatch;
pub mod interactive;
pub mod jobs;
pub mod mail;
pub mod manage;
pub mod model;
pub mod mom_session;
pub mod nodes_file;
pub mod resources;
pub mod scheduler;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod tls;
