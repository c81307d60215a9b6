//! capstan-mom: the node agent behind `pbs_mom`.
//!
//! The binary is a thin shell around this library so that every concern can be
//! tested on its own:
//!
//! * [`config`]: `mom_priv/config` (`$max_load`, `$ideal_load`, `$source_login_batch`,
//!   `$prologalarm`, `$tmpdir`, `$igncput`, `$ignmem`, `$ignvmem`, `$ignwalltime`,
//!   `$check_poll_time`, the health check's `$node_check_script`, `$node_check_interval` and
//!   `$status_update_time`).
//! * [`health`]: Torque's node health check: its verdict (pure) and running it, bounded.
//! * [`layout`]: where the MOM keeps things under its home directory.
//! * [`pbs_environment`]: `DIR/pbs_environment`, the base of every job's environment.
//! * [`paths`]: where a job's stdout/stderr go (pure; Torque's Keep_Files/Join_Path rules).
//! * [`exit`]: how a run's end becomes Torque's `exit_status` (pure).
//! * [`procfs`] and [`status`]: reading `/proc` for node status and per-job usage.
//! * [`job`] and [`store`]: a run's record, kept until the server acknowledges it; it outlives
//!   the MOM process (see `store` for reboots).
//! * [`launch`]: starting a job's shell as its user (through the spawner and the
//!   supervisor; the MOM itself forks only through std's `Command`, for the copy helper and
//!   the prologue and epilogue scripts, see [`pelog`]).
//! * [`supervisor`]: the per-run process that waits for the shell, records
//!   how it ended (so results survive a MOM restart) and copies the output.
//! * [`leftovers`]: what a job leaves behind, found and killed by its
//!   supervisor (a child subreaper) instead of by a `/proc` sweep.
//! * [`deliver`]: the output copied to its paths as the user.
//! * [`limits`]: a job's `-l` limits: rlimits for its shell, totals checked at each sample (pure).
//! * [`pelog`]: the site's prologue and epilogue scripts around each job.
//! * [`runner`]: the set of runs this MOM holds: start, watch, signal, end, forget.
//! * [`session`]: the stream to the server (dial, hello, reconnect with backoff).
//! * [`shutdown`]: graceful shutdown on SIGTERM/SIGINT.

pub mod config;
pub mod deliver;
pub mod exit;
pub mod health;
pub mod job;
pub mod launch;
pub mod layout;
pub mod leftovers;
pub mod limits;
pub mod paths;
pub mod pbs_environment;
pub mod pelog;
pub mod procfs;
pub mod runner;
pub mod session;
pub mod shutdown;
pub mod spawner;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod terminal;
pub mod tls;
