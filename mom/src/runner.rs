//! The runs this MOM holds: start them, watch them, signal them, end them,
//! and forget them once the server has their result.
//!
//! State lives in one map guarded by a std mutex (critical sections are short
//! and never await). Every phase change is written to the run's record on disk
//! *before* it is reported, so a result reported once can always be reported
//! again after a MOM crash (the server acknowledges with AckRunEnded). A job's
//! shell execs only once its run is recorded as running (its supervisor holds
//! it until the MOM's release), so a run found still "starting" after a MOM
//! crash never ran. Records are written, not synced (see `store`): a result the
//! server has not acknowledged within [`RESULT_SYNC_DELAY`] is synced then
//! ([`Runner::keep_results_durable`], woken by the result's deadline), and a record from
//! before a reboot is read as what it is, possibly short of its last versions
//! ([`Runner::recover`]): a run it held is reported lost (-4).
//!
//! A start has two halves: [`Runner::start`] launches (spool, node file, `TMPDIR`,
//! the supervisor and its held shell); `release` runs the site's and the job's
//! prologues (see `pelog`; on a blocking thread of its own when there may be any, or when
//! the run is interactive), then records the run as running, has an interactive run's
//! terminal paired at the server (`open_terminal`), and releases the shell, unless a
//! prologue failed or a qdel or cancel came meanwhile. At the end, `finish` runs the epilogues (at most once, marked on
//! disk first) before the output is copied.
//!
//! Each running job has:
//! * a supervisor process (see `supervisor`) that waits for the shell, clears
//!   what the job left behind, writes `RUNID.exit` and copies the output, and
//!   a waiter on a blocking thread that holds the pipes to it (the `Link`,
//!   never in the map: reading it blocks until the job ends), runs `finish`
//!   when the supervisor says `exited`, and waits for it to close the pipe
//!   (its parent, the spawner, reaps it; see `spawner`);
//! * a walltime timer (a tokio sleep, so the limit is enforced promptly rather
//!   than on a poll): SIGTERM to the process group, SIGKILL after a grace;
//! * a `done` flag the timers watch so they stop when the job ends.
//!
//! Runs found running at MOM start (started by an earlier MOM process) are
//! adopted, and their supervisors told so (SIGUSR1): a supervisor whose MOM is
//! gone kills the job once [`orphan_timeout`] has passed without that word, a
//! margin before the server counts the run lost and may start the job again
//! elsewhere. An adopted run: a once-a-second check looks for the supervisor's exit file (the
//! real exit status) or for both the shell and the supervisor being gone
//! (status unknown: -1 unless the MOM killed the job). What the MOM did to a
//! run (qsig, qdel, walltime) is persisted in its record, so the exit status
//! rules still apply after a restart. An adopted run has no pipes to its
//! supervisor, so its output is copied by the exec'd helper (see `deliver`);
//! what is left of its session is swept by the MOM only when the supervisor's
//! exit file does not say it cleared everything, as for any run.
//!
//! The MOM does not set PR_SET_PDEATHSIG: it fires when the forking *thread*
//! exits, which in a thread pool would kill jobs at random, and jobs are meant
//! to survive a MOM restart.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use crate::config::MomConfig;
use crate::deliver;
use crate::exit::{self, Termination};
use crate::job::{Event, Held, Phase, RunRecord, RunResult, RunSpec, Usage};
use crate::launch;
use crate::layout::Layout;
use crate::leftovers;
use crate::limits;
use crate::paths::Delivery;
use crate::pelog::{self, PelogJob};
use crate::procfs::{self, Proc};
use crate::shutdown::Shutdown;
use crate::spawner::Spawner;
use crate::status::now_secs;
use crate::store::Store;
use crate::supervisor::{self, ExitRecord, Link};
use capstan_proto::job_exec;

/// Time between SIGTERM and SIGKILL when the walltime limit, or another `-l` limit, is hit.
const WALLTIME_GRACE: Duration = Duration::from_secs(2);
/// Torque's default kill_delay, used when the server sends 0.
const DEFAULT_KILL_DELAY: u32 = 2;

/// How long a job has after the SIGTERM that stands for a qsig SIGKILL (Torque's kill_task
/// polls 20 times a quarter of a second).
const SIGKILL_GRACE: Duration = Duration::from_secs(5);
/// The message of a run its MOM died launching (it never ran).
const RESTARTED_WHILE_STARTING: &str = "pbs_mom restarted while starting the job";
/// How often an adopted run (no waiter) is checked for its shell.
const ORPHAN_POLL: Duration = Duration::from_secs(1);
/// How long a result may wait for the server's acknowledgement unsynced. A connected server
/// commits it within milliseconds,
/// after which the MOM's copy no longer matters; one that waits longer (the server is away
/// or slow) may have to outlive a power loss.
pub const RESULT_SYNC_DELAY: Duration = Duration::from_secs(1);
/// The message of a run whose record is from before the node rebooted.
const REBOOTED: &str = "the node rebooted while the job was starting or running";

/// Live state of a running run (not persisted).
struct Live {
    pgid: i32,
    done: watch::Sender<bool>,
    cancelled: bool,
    peak: Usage,
    /// Told when the run's clock stops or goes on (a suspend or resume), so its walltime
    /// timer looks again.
    clock: watch::Sender<()>,
}

impl Live {
    /// Raises the usage peaks to what one `/proc` scan of the session saw.
    fn record_peak(&mut self, t: &procfs::SessionTotals, clock_ticks: u64) {
        let peak = &mut self.peak;
        peak.cput_secs = peak.cput_secs.max(t.cpu_ticks / clock_ticks.max(1));
        peak.mem_kb = peak.mem_kb.max(t.rss_kb);
        peak.vmem_kb = peak.vmem_kb.max(t.vsize_kb);
    }

    fn new(pgid: i32, done: watch::Sender<bool>) -> Live {
        Live {
            pgid,
            done,
            cancelled: false,
            peak: Usage::default(),
            clock: watch::Sender::new(()),
        }
    }
}

struct Entry {
    record: RunRecord,
    live: Option<Live>,
    /// Taken while this run's record is written (see [`Runner::save_latest`]).
    saving: Arc<Mutex<()>>,
    /// When its result was written, while that is not yet synced (see
    /// [`Runner::sync_results`]).
    unsynced_result: Option<Instant>,
}

impl Entry {
    fn new(record: RunRecord, live: Option<Live>) -> Entry {
        Entry {
            // A result read from disk may be one an earlier MOM had not synced yet.
            unsynced_result: record.is_ended().then(Instant::now),
            record,
            live,
            saving: Arc::default(),
        }
    }
}

pub struct Runner {
    layout: Layout,
    node_name: String,
    store: Store,
    rt: Handle,
    events: mpsc::UnboundedSender<Event>,
    runs: Mutex<HashMap<u64, Entry>>,
    page_kb: u64,
    clock_ticks: u64,
    /// Starts each run's supervisor; its program is also the copy helper
    /// (`supervisor::program`).
    spawner: Spawner,
    /// Whether job shells start as login shells (`$source_login_batch`; the
    /// config can change on SIGHUP, and only runs started after apply it).
    login_shells: AtomicBool,
    /// How long a run's supervisor waits for a new MOM once this one is gone
    /// before it kills the job (ms; 0: never), from the server's lost grace
    /// (see [`orphan_timeout`]).
    orphan_timeout_ms: AtomicU64,
    /// `$prologalarm`, ms: how long a prologue or epilogue may run.
    prolog_alarm_ms: AtomicU64,
    /// `$tmpdir`, for the runs started from now on.
    tmpdir: Mutex<Option<PathBuf>>,
    /// `$igncput`, `$ignmem`, `$ignvmem`, `$ignwalltime`, for the runs started from now on.
    ignored_limits: Mutex<limits::Ignored>,
    /// `$check_poll_time`, ms: how often the runs' limits are checked apart from the status
    /// reports (see [`Runner::police_limits`]), and the wake-up when it changes (so a new
    /// value need not wait for the old one's sleep to end).
    limit_poll_ms: AtomicU64,
    limit_poll_changed: tokio::sync::Notify,
    /// `pbs_environment`'s variables (read once, at start; `None`: no file).
    base_env: Mutex<Option<Vec<(String, String)>>>,
    /// This boot's id, written into every record (see [`RunRecord::boot_id`]).
    boot_id: String,
    /// [`Runner::keep_results_durable`] waits for a result with nothing to sync before it
    /// (`sync_idle`): the next result written wakes it (`result_written`).
    sync_idle: AtomicBool,
    result_written: tokio::sync::Notify,
    /// Where interactive runs' terminals dial (set by the session when it connects).
    terminal_endpoint: Mutex<Option<tonic::transport::Endpoint>>,
}

/// How long a supervisor whose MOM is gone lets the job run before killing it: a margin
/// (a quarter of the grace, at least a second) before the server, after `lost_grace`
/// without the MOM, counts the run lost and may start the job again elsewhere.
pub fn orphan_timeout(lost_grace: Duration) -> Duration {
    let margin = (lost_grace / 4).max(Duration::from_secs(1));
    lost_grace.saturating_sub(margin)
}

impl Runner {
    /// Must be called inside the tokio runtime (timers are spawned on it).
    pub fn new(
        layout: Layout,
        node_name: String,
        events: mpsc::UnboundedSender<Event>,
        supervisor: PathBuf,
    ) -> Arc<Runner> {
        let boot_id = procfs::boot_id();
        let mut store = Store::new(layout.clone()).booted_at(procfs::boot_time());
        if boot_id.is_empty() {
            // Records could not say which boot they are from, so none may lack a version.
            tracing::warn!("the kernel gives no boot id: run records are synced at every change");
            store = store.syncing_each_version();
        }
        Arc::new(Runner {
            store,
            layout,
            node_name,
            rt: Handle::current(),
            events,
            runs: Mutex::new(HashMap::new()),
            page_kb: procfs::page_kb(),
            clock_ticks: procfs::clock_ticks(),
            spawner: Spawner::new(supervisor),
            login_shells: AtomicBool::new(MomConfig::default().source_login_batch),
            orphan_timeout_ms: AtomicU64::new(0),
            prolog_alarm_ms: AtomicU64::new(
                MomConfig::default().prolog_alarm_secs.saturating_mul(1000),
            ),
            tmpdir: Mutex::new(None),
            ignored_limits: Mutex::new(MomConfig::default().ignored),
            limit_poll_ms: AtomicU64::new(
                MomConfig::default().check_poll_secs.saturating_mul(1000),
            ),
            limit_poll_changed: tokio::sync::Notify::new(),
            base_env: Mutex::new(None),
            boot_id,
            sync_idle: AtomicBool::new(false),
            result_written: tokio::sync::Notify::new(),
            terminal_endpoint: Mutex::new(None),
        })
    }

    /// How interactive runs' terminals dial the server: as the session does (see `session`).
    pub fn set_terminal_endpoint(&self, endpoint: tonic::transport::Endpoint) {
        *self
            .terminal_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(endpoint);
    }

    /// The server's lost grace (Welcome): runs started from now on are killed by their
    /// supervisor if their MOM is gone for [`orphan_timeout`] of it. 0 (an older server):
    /// never.
    pub fn set_lost_grace(&self, grace: Duration) {
        let ms = u64::try_from(orphan_timeout(grace).as_millis()).unwrap_or(u64::MAX);
        self.orphan_timeout_ms.store(ms, Ordering::Relaxed);
    }

    /// Sets `$prologalarm` for the scripts started from now on.
    pub fn set_prolog_alarm(&self, alarm: Duration) {
        let ms = u64::try_from(alarm.as_millis()).unwrap_or(u64::MAX);
        self.prolog_alarm_ms.store(ms, Ordering::Relaxed);
    }

    /// Sets `$tmpdir` for the runs started from now on.
    pub fn set_tmpdir(&self, dir: Option<PathBuf>) {
        *self.tmpdir.lock().unwrap_or_else(|p| p.into_inner()) = dir;
    }

    /// Sets `pbs_environment`'s variables, which every job's environment starts from.
    pub fn set_base_environment(&self, vars: Option<Vec<(String, String)>>) {
        *self.base_env.lock().unwrap_or_else(|p| p.into_inner()) = vars;
    }

    /// Sets `$check_poll_time`, from the next check on.
    pub fn set_limit_poll(&self, every: Duration) {
        let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        let old = self.limit_poll_ms.swap(ms.max(1000), Ordering::Relaxed);
        if old != ms.max(1000) {
            self.limit_poll_changed.notify_one();
        }
    }

    /// Sets which `-l` limits the runs started from now on are spared (`$ign*`).
    pub fn set_ignored_limits(&self, ignored: limits::Ignored) {
        *self
            .ignored_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = ignored;
    }

    /// Runs `f` with the site's prologue and epilogue scripts (`mom_priv`, see `pelog`).
    fn with_scripts<T>(&self, f: impl FnOnce(&pelog::Scripts<'_>) -> T) -> T {
        let dir = self.layout.mom_priv();
        f(&pelog::Scripts {
            dir: &dir,
            owner: nix::unistd::geteuid().as_raw(),
            alarm: Duration::from_millis(self.prolog_alarm_ms.load(Ordering::Relaxed)),
        })
    }

    /// Runs the prologues of a launched run (its shell held) while the run is wanted (held,
    /// not deleted), recording each script's session (on disk too) so that a qdel, a cancel
    /// or the next MOM can kill it.
    fn run_prologues(&self, run_id: u64, job: &PelogJob) -> Result<(), pelog::Stop> {
        self.with_scripts(|scripts| {
            scripts.prologues(job, |session| {
                let session = session.map(|pid| {
                    let started = procfs::proc_of(pid).map_or(0, |p| p.stat.start_ticks);
                    (pid, started)
                });
                let wanted = match self.runs().get_mut(&run_id) {
                    Some(entry) => {
                        entry.record.prologue_session = session;
                        !entry.record.interventions.deleted
                    }
                    None => false,
                };
                if let (true, Some((pid, _))) = (wanted, session) {
                    if self.save_latest(run_id) {
                        tracing::info!(run = run_id, session = pid, "prologue running (recorded)");
                    }
                }
                wanted
            })
        })
    }

    /// Whether the run is held and not deleted.
    fn wanted(&self, run_id: u64) -> bool {
        self.runs()
            .get(&run_id)
            .is_some_and(|e| !e.record.interventions.deleted)
    }

    /// Runs the epilogues of an ended run, at most once: they are marked started on disk
    /// first, so a MOM that adopts the run after a restart meanwhile does not run them again.
    /// Their failures are only logged, as in Torque.
    fn run_epilogues(
        &self,
        run_id: u64,
        job: &PelogJob,
        session_id: i32,
        used: &Usage,
        exit_status: i32,
    ) {
        // Empty in a record of an older MOM.
        if job.job_id.is_empty() || !self.with_scripts(|s| s.any_epilogue(job)) {
            return;
        }
        let first = match self.runs().get_mut(&run_id) {
            Some(entry) if !entry.record.epilogues_started => {
                entry.record.epilogues_started = true;
                true
            }
            _ => false,
        };
        if !first || !self.save_latest(run_id) {
            return;
        }
        for failed in self.with_scripts(|s| s.epilogues(job, session_id, used, exit_status)) {
            tracing::warn!(job = %job.job_id, rc = failed.rc, "{}", failed.message);
        }
    }

    /// Ends a launched run whose prologue failed (its shell was never released): Torque
    /// still runs the epilogues, and an aborted job's files (the prologue's output) are
    /// delivered; a job sent back to the queue writes them anew when it runs.
    fn end_failed_prologue(
        &self,
        run_id: u64,
        job: &PelogJob,
        delivery: &deliver::DeliveryPlan,
        failed: pelog::Failure,
    ) {
        let exit_status = pelog::prologue_exit_status(failed.rc);
        tracing::warn!(run = run_id, job = %job.job_id, rc = failed.rc, exit_status, "{}", failed.message);
        // On disk first: a MOM restarted from here on reports this end, not a run to retry.
        if let Some(entry) = self.runs().get_mut(&run_id) {
            entry.record.prologue_failed = Some(exit_status);
        }
        self.save_latest(run_id);
        self.run_epilogues(run_id, job, 0, &Usage::default(), exit_status);
        let copy_errors = if exit_status == job_exec::FAIL2 {
            deliver::deliver(delivery, &self.layout, |files| {
                deliver::copy_with_helper(delivery, files, self.spawner.program())
            })
        } else {
            Vec::new()
        };
        let mut result = unstarted(exit_status, &failed.message);
        result.copy_errors = copy_errors;
        self.end(run_id, result);
    }

    /// Sets whether runs started from now on get a login shell.
    pub fn set_login_shells(&self, on: bool) {
        self.login_shells.store(on, Ordering::Relaxed);
    }

    fn runs(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends the run's record as the map holds it now. The record is changed under the
    /// runs lock and written after it is released, so two changes of one run can reach the
    /// disk in either order; each write takes the run's own lock and writes the newest
    /// version, so the file's last version is the map's. A run already forgotten is not
    /// written again. Whether the record is on disk.
    fn save_latest(&self, run_id: u64) -> bool {
        let Some(saving) = self.runs().get(&run_id).map(|e| Arc::clone(&e.saving)) else {
            return false;
        };
        let _turn = saving.lock().unwrap_or_else(|p| p.into_inner());
        let Some(record) = self.runs().get(&run_id).map(|e| e.record.clone()) else {
            return false;
        };
        let saved = self.save(&record);
        if saved && record.is_ended() {
            // Whichever write put the result there (the end, or a late signal's version
            // after it), it waits for the server from now (see `sync_results`).
            if let Some(entry) = self.runs().get_mut(&run_id) {
                entry.unsynced_result = Some(Instant::now());
            }
            if self.sync_idle.load(Ordering::SeqCst) {
                self.result_written.notify_one();
            }
        }
        saved
    }

    /// Whether the record is on disk (a failure is logged).
    fn save(&self, record: &RunRecord) -> bool {
        let saved = self.store.save(record);
        if let Err(e) = &saved {
            tracing::error!(run = record.run_id, job = %record.job_id, "cannot persist run record: {e}");
        }
        saved.is_ok()
    }

    fn emit(&self, event: Event) {
        // The receiver only goes away at shutdown; the record on disk is what counts.
        let _ = self.events.send(event);
    }

    /// Loads the records left by an earlier MOM process (blocking). Runs
    /// that were running are adopted (see the module comment).
    pub fn recover(self: &Arc<Self>) {
        let mut adopted = Vec::new();
        for mut record in self.store.load_all() {
            let run_id = record.run_id;
            let mut live = None;
            let rebooted = from_an_earlier_boot(&record.boot_id, &self.boot_id);
            if record.boot_id.is_empty() {
                // An older MOM's record, synced: its next versions say this boot.
                record.boot_id = self.boot_id.clone();
            }
            match record.phase {
                Phase::Ended(_) => {}
                Phase::Starting | Phase::Running if rebooted => {
                    // Written before the node rebooted: nothing of the run is left (its
                    // pids and process groups may now be others'), and the record may lack
                    // its last versions, so "starting" no longer proves the script never
                    // ran. The run is reported lost (-4), as the server counts a node's
                    // runs it lost: requeued when rerunnable.
                    tracing::warn!(run = run_id, job = %record.job_id, "run record from before a reboot");
                    let result = match record.prologue_failed {
                        Some(status) => unstarted(status, "prologue failed"),
                        None => unstarted(job_exec::INITABT, REBOOTED),
                    };
                    record.phase = Phase::Ended(result);
                    self.save(&record);
                }
                Phase::Starting => {
                    // The last MOM died mid-launch, before the release: a supervisor it
                    // started may still hold the job's shell, which never exec'd the
                    // script (see `launch::HeldShell`). It is stopped, and the run is
                    // reported as never run, so the server requeues it. A record of an
                    // older MOM, whose shells ran at once, proves nothing: -1 as before.
                    stop_unrecorded_launch(&self.layout.exit_file(run_id));
                    // A prologue it was running would otherwise run on beside the retry's.
                    kill_prologue(record.prologue_session);
                    let result = if let Some(status) = record.prologue_failed {
                        unstarted(status, "prologue failed")
                    } else if record.gated {
                        unstarted(job_exec::RETRY, RESTARTED_WHILE_STARTING)
                    } else {
                        unstarted(job_exec::FAIL1, RESTARTED_WHILE_STARTING)
                    };
                    record.phase = Phase::Ended(result);
                    self.save(&record);
                }
                Phase::Running => {
                    tracing::info!(run = run_id, job = %record.job_id, session = record.session_id, "adopting running job");
                    let (done, _) = watch::channel(false);
                    adopted.push((run_id, record.clone(), done.subscribe(), done.subscribe()));
                    live = Some(Live::new(record.session_id, done));
                }
            }
            tracing::info!(run = run_id, job = %record.job_id, ended = record.is_ended(), "holding run from disk");
            self.runs().insert(run_id, Entry::new(record, live));
        }
        // Watchers start once every entry is in the map (they may finish a run at once).
        for (run_id, record, done1, done2) in adopted {
            let supervisor = Recorded {
                pid: record.supervisor_pid,
                started: record.supervisor_started,
            };
            if record.orphan_timeout_ms > 0 && supervisor.alive(&self.layout.exit_file(run_id)) {
                // It kills the job once its MOM is gone too long, unless told it is adopted.
                let pid = nix::unistd::Pid::from_raw(supervisor.pid);
                if let Err(e) = nix::sys::signal::kill(pid, Signal::SIGUSR1) {
                    tracing::warn!(
                        run = run_id,
                        supervisor = supervisor.pid,
                        "cannot tell the supervisor it is adopted: {e}"
                    );
                }
            }
            self.spawn_orphan_watch(run_id, record.session_id, supervisor, done1);
            if record.interventions.over_limit.is_some() {
                // Found over a limit by the MOM before this one, which may have died before
                // its SIGTERM: sent again, then the SIGKILL after the grace.
                if session_alive(record.session_id) {
                    procfs::kill_session(record.session_id, Signal::SIGTERM, false);
                }
                self.rt
                    .spawn(escalate(record.session_id, WALLTIME_GRACE, done2));
                continue;
            }
            if record.walltime_limit_secs > 0 {
                self.spawn_walltime(run_id, record.session_id, record.walltime_limit_secs, done2);
            }
        }
    }

    /// Runs held, for Hello.
    pub fn held(&self) -> Vec<Held> {
        let mut v: Vec<Held> = self
            .runs()
            .values()
            .map(|e| Held {
                run_id: e.record.run_id,
                job_id: e.record.job_id.clone(),
                finished: e.record.is_ended(),
                suspended: e.record.suspended_at.is_some(),
                session_id: e.record.session_id,
            })
            .collect();
        v.sort_by_key(|h| h.run_id);
        v
    }

    /// Results not yet acknowledged, to re-send after (re)connecting.
    pub fn finished(&self) -> Vec<(u64, RunResult)> {
        let mut v: Vec<(u64, RunResult)> = self
            .runs()
            .values()
            .filter_map(|e| match &e.record.phase {
                Phase::Ended(r) => Some((e.record.run_id, r.clone())),
                _ => None,
            })
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    /// Ends a run whose shell was never released (so its script never ran):
    /// forgotten if the server cancelled it, else reported JOB_EXEC_RETRY (-3), for
    /// the server to requeue.
    fn end_unreleased(&self, run_id: u64, live: Live, message: &str) {
        live.done.send_replace(true);
        if live.cancelled {
            self.forget(run_id);
        } else {
            self.end(run_id, unstarted(job_exec::RETRY, message));
        }
    }

    /// Ends a held run with `result`, then reports it.
    fn end(&self, run_id: u64, result: RunResult) {
        {
            let mut runs = self.runs();
            let Some(entry) = runs.get_mut(&run_id) else {
                return;
            };
            entry.record.phase = Phase::Ended(result.clone());
        }
        self.save_latest(run_id);
        self.emit(Event::Ended { run_id, result });
    }

    /// Turns a StartRun away before anything of it runs (the node's health check failed):
    /// recorded and reported JOB_EXEC_RETRY (-3), for the server to requeue the job. A
    /// repeated StartRun is ignored, as by [`Runner::start`].
    pub fn refuse(&self, spec: &RunSpec, why: &str) {
        let run_id = spec.run_id;
        {
            let mut runs = self.runs();
            if runs.contains_key(&run_id) {
                return;
            }
            let record = RunRecord {
                boot_id: self.boot_id.clone(),
                ..RunRecord::starting(spec, now_secs())
            };
            runs.insert(run_id, Entry::new(record, None));
        }
        self.save_latest(run_id);
        tracing::warn!(run = run_id, job = %spec.job_id, "job turned away: {why}");
        self.end(run_id, unstarted(job_exec::RETRY, why));
    }

    /// Syncs the records of the results that have waited `waited` or longer for the
    /// server's acknowledgement (blocking; see `store`).
    pub fn sync_results(&self, waited: Duration) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .runs()
            .iter()
            .filter(|(_, e)| {
                e.unsynced_result
                    .is_some_and(|t| now.saturating_duration_since(t) >= waited)
            })
            .map(|(run_id, _)| *run_id)
            .collect();
        if due.is_empty() {
            return;
        }
        // What fails is tried again a delay later; the others are not held up by it.
        let (synced, failed): (Vec<u64>, Vec<u64>) =
            due.into_iter()
                .partition(|&run_id| match self.store.sync_record(run_id) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(run = run_id, "cannot sync run record: {e}");
                        false
                    }
                });
        let (synced, failed) = match self.store.sync_dir() {
            Ok(()) => (synced, failed),
            Err(e) => {
                tracing::error!("cannot sync run records: {e}");
                (Vec::new(), synced.into_iter().chain(failed).collect())
            }
        };
        let mut runs = self.runs();
        for run_id in synced {
            if let Some(entry) = runs.get_mut(&run_id) {
                // A result written again since `now` waits for its own deadline.
                entry.unsynced_result = entry.unsynced_result.filter(|t| *t > now);
            }
        }
        for run_id in failed {
            if let Some(entry) = runs.get_mut(&run_id) {
                entry.unsynced_result = Some(now);
            }
        }
    }

    /// Until shutdown, syncs each result not acknowledged within [`RESULT_SYNC_DELAY`], at
    /// its deadline: it sleeps until the earliest unsynced result's, or, with none, until a
    /// result is written (the last round, of every result, is `main`'s, once the session
    /// has ended). Results written meanwhile have later deadlines, seen at the next wake.
    pub async fn keep_results_durable(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            // Idle first, then look: a result written after the look finds us idle and
            // leaves a wake-up (Notify keeps one), so none is missed.
            self.sync_idle.store(true, Ordering::SeqCst);
            let earliest = self.runs().values().filter_map(|e| e.unsynced_result).min();
            if earliest.is_some() {
                self.sync_idle.store(false, Ordering::SeqCst);
            }
            let due = async {
                match earliest {
                    Some(written) => {
                        tokio::time::sleep_until((written + RESULT_SYNC_DELAY).into()).await
                    }
                    None => self.result_written.notified().await,
                }
            };
            tokio::select! {
                _ = due => {}
                _ = shutdown.recv() => return,
            }
            if earliest.is_some() {
                let runner = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || runner.sync_results(RESULT_SYNC_DELAY))
                    .await;
            }
        }
    }

    /// Starts a run (blocking: forks and writes files). A run id already held is ignored.
    pub fn start(self: &Arc<Self>, spec: RunSpec) {
        let run_id = spec.run_id;
        let orphan_timeout_ms = self.orphan_timeout_ms.load(Ordering::Relaxed);
        let tmpdir = self
            .tmpdir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let ignored = *self
            .ignored_limits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let job_limits = job_limits(&spec, ignored);
        let mut record = RunRecord {
            boot_id: self.boot_id.clone(),
            limits: job_limits.watch,
            ..RunRecord::starting(&spec, now_secs())
        };
        if ignored.walltime {
            record.walltime_limit_secs = 0;
        }
        let conflict = {
            let mut runs = self.runs();
            if runs.contains_key(&run_id) {
                tracing::info!(run = run_id, job = %spec.job_id, "ignoring repeated StartRun");
                return;
            }
            // A run the server cancelled is being killed and no longer counts: the server
            // may restart the same job here right after cancelling its old run.
            let busy = runs.values().any(|e| {
                e.record.job_id == spec.job_id
                    && !e.record.is_ended()
                    && !e.live.as_ref().is_some_and(|live| live.cancelled)
            });
            runs.insert(run_id, Entry::new(record.clone(), None));
            busy
        };
        self.save_latest(run_id);
        let launched = if conflict {
            Err(launch::LaunchError(format!(
                "job {} already runs on this node",
                spec.job_id
            )))
        } else {
            let options = launch::StartOptions {
                login: self.login_shells.load(Ordering::Relaxed),
                orphan_timeout_ms,
                tmpdir,
                limits: job_limits.process,
                base_env: self
                    .base_env
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            };
            launch::launch(
                &spec,
                &self.layout,
                &self.node_name,
                &self.spawner,
                &options,
            )
        };
        let l = match launched {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(run = run_id, job = %spec.job_id, "cannot start job: {e}");
                self.end(run_id, unstarted(job_exec::FAIL1, &e.0));
                return;
            }
        };
        // The job's TMPDIR exists from here on: whichever way the run ends, it goes with
        // the run's files (saved at once).
        record.tmpdir = l.tmpdir.clone();
        if l.tmpdir.is_some() {
            if let Some(entry) = self.runs().get_mut(&run_id) {
                entry.record.tmpdir = l.tmpdir.clone();
            }
            self.save_latest(run_id);
        }
        // Decided once: a prologue may run for minutes, so a run that may have one is
        // released from a blocking thread of its own, never the session's, which must go on
        // reporting status and taking a qdel for this very run meanwhile. The job's own
        // script is not even looked for here (its path is the user's, maybe on a slow mount).
        let prologues = pelog::names_own_prologue(&l.pelog)
            || self.with_scripts(|scripts| scripts.any_site_prologue());
        // So is an interactive run: its release waits for its terminal to be paired at the
        // server (see `open_terminal`), a network round trip the session must not wait on.
        if prologues || l.terminal.is_some() {
            let runner = Arc::clone(self);
            self.rt.spawn_blocking(move || {
                runner.release(&spec, record, l, orphan_timeout_ms, prologues)
            });
        } else {
            self.release(&spec, record, l, orphan_timeout_ms, false);
        }
    }

    /// The second half of [`Runner::start`], once the job's shell is held: the prologues
    /// (when `prologues`), then the run recorded as running and the shell released, unless a
    /// prologue failed or a qdel or cancel came meanwhile (blocking).
    fn release(
        self: &Arc<Self>,
        spec: &RunSpec,
        mut record: RunRecord,
        l: launch::Launched,
        orphan_timeout_ms: u64,
        prologues: bool,
    ) {
        let run_id = spec.run_id;
        let ran = if prologues {
            self.run_prologues(run_id, &l.pelog)
        } else {
            Ok(())
        };
        match ran {
            Err(pelog::Stop::Failed(failed)) if self.wanted(run_id) => {
                // Never released: the held shell exits without exec'ing.
                l.link.close();
                l.supervisor.reap();
                self.end_failed_prologue(run_id, &l.pelog, &l.delivery, failed);
                return;
            }
            // A qdel or a cancel meanwhile: the checks below leave the shell unreleased.
            Err(_) | Ok(()) => {}
        }
        // The job's clock (walltime, start time) starts after its prologues, as Torque's.
        let start_time = now_secs();
        record.uid = l.uid;
        record.session_id = l.pid;
        record.start_time = start_time;
        // An interactive job's stdout and stderr are its terminal (`record.terminal`), which
        // qmsg and kill notices are written to instead of a file.
        record.terminal = l.terminal.as_ref().map(|pty| pty.slave_path.clone());
        record.stderr_target = record
            .terminal
            .is_none()
            .then(|| l.streams.stderr_target().to_path_buf());
        record.supervisor_pid = l.supervisor.pid;
        // Only a supervisor that said it watches its MOM is told of an adoption (SIGUSR1
        // would end an older one).
        record.orphan_timeout_ms = if l.watches_mom { orphan_timeout_ms } else { 0 };
        record.supervisor_started = l.supervisor.started;
        record.delivery = l.delivery;
        record.pelog = l.pelog;
        record.phase = Phase::Running;
        let (done, _) = watch::channel(false);
        let done_rx = done.subscribe();
        let terminal_done = done.subscribe();
        // False when the run was cancelled and forgotten while it launched; `deleted`: a
        // qdel came meanwhile (in its prologue, say), so it is not released.
        let mut deleted = false;
        let tracked = match self.runs().get_mut(&run_id) {
            Some(entry) => {
                deleted = entry.record.interventions.deleted;
                // What came meanwhile (a qdel) stays with the run.
                record.interventions = entry.record.interventions;
                entry.record = record.clone();
                entry.live = Some(Live::new(l.pid, done));
                true
            }
            None => false,
        };
        let mut link = l.link;
        // Only once the record says Running may the script run: a MOM that dies
        // from then on is followed by one that adopts the run.
        let recorded = tracked && !deleted && self.save_latest(run_id);
        if !recorded {
            // Never released, so the shell exits without exec'ing (see
            // `launch::HeldShell`) and the supervisor after it.
            link.close();
            l.supervisor.reap();
            let live = self.runs().get_mut(&run_id).and_then(|e| e.live.take());
            match live {
                None => {
                    tracing::info!(run = run_id, job = %spec.job_id, "run cancelled while starting: not released");
                    self.remove_files(run_id, &spec.job_id, record.tmpdir.as_deref());
                }
                // Reported as never run: with the qdel pending, the server makes it 271.
                Some(live) if deleted => {
                    tracing::info!(run = run_id, job = %spec.job_id, "run deleted while starting: not released");
                    self.end_unreleased(run_id, live, "job deleted before its script ran");
                }
                Some(live) => {
                    tracing::warn!(run = run_id, job = %spec.job_id, "run not released: its start could not be recorded");
                    self.end_unreleased(run_id, live, "pbs_mom could not record the job's start");
                }
            }
            return;
        }
        // An interactive job's terminal is open at the server before its shell runs, as
        // Torque's MOM reaches qsub first: its qsub hears `ready` before any output, and a
        // shell that is over at once still has its output relayed, not lost to the race.
        if let Some(pty) = l.terminal {
            self.open_terminal(run_id, pty.master, terminal_done);
        }
        tracing::info!(run = run_id, job = %spec.job_id, user = %spec.euser, session = l.pid, "job started");
        if let Err(e) = link.go() {
            tracing::warn!(run = run_id, job = %spec.job_id, "supervisor gone before the release: {e}");
        }
        self.emit(Event::Started {
            run_id,
            session_id: l.pid,
            start_time,
        });
        self.spawn_waiter(run_id, link, l.supervisor);
        if record.walltime_limit_secs > 0 {
            self.spawn_walltime(run_id, l.pid, record.walltime_limit_secs, done_rx);
        }
    }

    /// Starts the relay of run `run_id`'s terminal (see `terminal`) and waits until the
    /// server has paired it with the job's qsub, or the relay gave up (its master closed,
    /// the held shell, whose controlling terminal it is, gets SIGHUP and dies before it
    /// execs: the run ends as killed). Blocking, and bounded by the relay's patience: called
    /// where the run is released, on a thread of its own.
    fn open_terminal(&self, run_id: u64, master: OwnedFd, ended: watch::Receiver<bool>) {
        let endpoint = self
            .terminal_endpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(endpoint) = endpoint else {
            tracing::warn!(
                run = run_id,
                "no server to relay the job's terminal to; it hangs up"
            );
            return;
        };
        let (opened, open) = std::sync::mpsc::sync_channel(1);
        let node = self.node_name.clone();
        self.rt.spawn(crate::terminal::relay(
            endpoint, node, run_id, master, ended, opened,
        ));
        // Bounded by the relay's patience for the pairing (`terminal::PAIRING_PATIENCE`); a
        // relay that gave up drops its sender, which ends the wait at once.
        let _ = open.recv();
    }

    /// The released run's waiter, on a blocking thread: holds the pipes to its supervisor
    /// until the job ends, then finishes the run.
    fn spawn_waiter(
        self: &Arc<Self>,
        run_id: u64,
        mut link: Link,
        supervisor_process: crate::spawner::SupervisorProcess,
    ) {
        let runner = Arc::clone(self);
        let exit_file = self.layout.exit_file(run_id);
        self.rt.spawn_blocking(move || {
            if link.exited() {
                // The exit file is written; the supervisor waits for its go-ahead to copy.
                runner.finish(
                    run_id,
                    supervisor::read_exit_file(&exit_file),
                    Some(&mut link),
                );
                // EOF tells a supervisor that was given nothing to copy to exit.
                link.close();
                supervisor_process.reap();
            } else {
                // Gone without a word (killed?): what it wrote is final once it is gone.
                link.close();
                supervisor_process.reap();
                runner.finish(run_id, supervisor::read_exit_file(&exit_file), None);
            }
        });
    }

    /// Ends a run whose shell is gone (blocking): sweeps what is left of its
    /// session unless the supervisor cleared it, works out the exit status,
    /// delivers the output (through the supervisor when `link` is given, else
    /// with the exec'd helper), persists and reports the result.
    fn finish(&self, run_id: u64, waited: Option<ExitRecord>, link: Option<&mut Link>) {
        let (record, live) = {
            let mut runs = self.runs();
            let Some(entry) = runs.get_mut(&run_id) else {
                return;
            };
            let Some(live) = entry.live.take() else {
                return;
            };
            (entry.record.clone(), live)
        };
        if waited.is_some_and(|w| w.held_back) {
            // Recorded as running by a MOM that died before the release: the shell
            // exited without exec'ing, so nothing ran and there is nothing to copy.
            tracing::warn!(run = run_id, job = %record.job_id, "the job's shell was held back: its MOM went away before letting it run");
            self.end_unreleased(run_id, live, RESTARTED_WHILE_STARTING);
            return;
        }
        live.done.send_replace(true);
        // A supervisor that recorded finding nothing left, or killing and
        // reaping what was, leaves nothing to sweep (adopted runs included):
        // no /proc scan, and no signal to a process group whose id may already
        // be reused. Lost supervisors and `Unknown`/`Stuck` records are swept
        // as before.
        let cleared = waited.is_some_and(|w| w.leftovers.all_gone());
        if !cleared {
            procfs::kill_session(live.pgid, Signal::SIGKILL, true);
        }
        let by_mom = record.interventions;
        let exit_status = match waited {
            // The server requeues it if it is rerunnable, as a run it counted lost.
            Some(w)
                if w.orphaned
                    && !by_mom.deleted
                    && !by_mom.walltime
                    && by_mom.over_limit.is_none() =>
            {
                job_exec::INITABT
            }
            Some(w) => exit::exit_status(Termination::from_wait_status(w.status), &by_mom),
            None => exit::exit_status_unwaited(&by_mom),
        };
        let mut message = String::new();
        let notice = if by_mom.walltime {
            Some(exit::walltime_message(
                record.walltime_elapsed,
                record.walltime_limit_secs,
            ))
        } else if by_mom.over_limit.is_some() {
            Some(exit::kill_notice(&record.limit_notice))
        } else {
            None
        };
        if let Some(text) = notice {
            message = text.trim_start_matches("=>> PBS: ").trim_end().to_string();
            // A terminal has none: it was told at the kill (see `spawn_walltime`).
            if let Some(path) = &record.stderr_target {
                if let Err(e) = launch::append_to_user_file(path, record.uid, &text) {
                    tracing::warn!(
                        run = run_id,
                        "cannot append the kill notice to {}: {e}",
                        path.display()
                    );
                }
            }
        } else if by_mom.deleted {
            message = "job deleted".into();
        } else if waited.is_none() {
            message = "job's exit status was lost (its supervisor died)".into();
        } else if waited.is_some_and(|w| w.orphaned) {
            message =
                "job killed: its pbs_mom was gone too long (the server counts such runs lost)"
                    .into();
        }
        // When the shell ended, as its supervisor saw it: a run that ended while no MOM ran
        // is not charged the time until the next MOM looked (older exit files: now).
        let now = waited
            .map(|w| w.ended_at)
            .filter(|t| *t > 0)
            .unwrap_or_else(now_secs);
        let used = Usage {
            cput_secs: live.peak.cput_secs.max(waited.map_or(0, |w| w.cput_secs)),
            mem_kb: live.peak.mem_kb.max(waited.map_or(0, |w| w.maxrss_kb)),
            vmem_kb: live.peak.vmem_kb,
            walltime_secs: record.walltime(now),
        };
        // The site's epilogues, before the copy: their output is appended to the job's files.
        self.run_epilogues(run_id, &record.pelog, live.pgid, &used, exit_status);
        // Torque's post-job file processing: the spooled output to its paths,
        // as the user; what cannot be copied is kept and reported. After the
        // walltime notice, which must be in the copy.
        let helper = |files: &[Delivery]| {
            deliver::copy_with_helper(&record.delivery, files, self.spawner.program())
        };
        let copy_errors = deliver::deliver(&record.delivery, &self.layout, |files| {
            let Some(link) = link else {
                return helper(files);
            };
            link.deliver(files).or_else(|e| {
                tracing::warn!(run = run_id, job = %record.job_id, "cannot deliver through the supervisor: {e}; using the copy helper");
                helper(files)
            })
        });
        tracing::info!(run = run_id, job = %record.job_id, exit_status, ?used, "job ended");
        if live.cancelled {
            self.forget(run_id);
            return;
        }
        let result = RunResult {
            exit_status,
            used,
            end_time: now,
            session_id: live.pgid,
            message,
            copy_errors,
        };
        self.end(run_id, result);
    }

    /// Drops a run and its files (files only if no other held run uses the job's id).
    fn forget(&self, run_id: u64) {
        let Some(entry) = self.runs().remove(&run_id) else {
            return;
        };
        let job_id = entry.record.job_id;
        // Under the run's save lock: a write already past its check of the map
        // lands before the delete, not after it (which would recreate the file).
        let _turn = entry.saving.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.store.delete(run_id) {
            tracing::error!(run = run_id, "cannot delete run record: {e}");
        }
        self.remove_files(run_id, &job_id, entry.record.tmpdir.as_deref());
        tracing::info!(run = run_id, job = %job_id, "run forgotten");
    }

    /// Removes the files of a run no longer held: its exit file, and the job's
    /// files unless another held run uses them.
    fn remove_files(&self, run_id: u64, job_id: &str, tmpdir: Option<&Path>) {
        let _ = std::fs::remove_file(self.layout.exit_file(run_id));
        // Set aside under the runs lock, so a new run of the job here cannot slip in between
        // the check and the move and lose its files; removed on a thread of its own.
        let aside = {
            let runs = self.runs();
            if runs.values().any(|e| e.record.job_id == job_id) {
                return;
            }
            launch::set_aside_job_files(&self.layout, job_id, tmpdir)
        };
        if !aside.is_empty() {
            self.rt
                .spawn_blocking(move || launch::remove_set_aside(&aside));
        }
    }

    /// SignalRun: `signal` to the run's process group, or qdel's
    /// SIGTERM-then-SIGKILL when `delete`.
    pub fn signal(self: &Arc<Self>, run_id: u64, sig: i32, delete: bool, kill_delay_secs: u32) {
        let signal = if delete {
            Signal::SIGTERM
        } else {
            match Signal::try_from(sig) {
                Ok(s) => s,
                Err(_) => {
                    tracing::warn!(run = run_id, sig, "invalid signal number; ignored");
                    return;
                }
            }
        };
        // Torque's MOM softens a qsig SIGKILL (kill_task): SIGTERM first, and the SIGKILL only
        // if the job is still there SIGKILL_GRACE later, so a job's TERM trap gets to clean up.
        let soften = !delete && signal == Signal::SIGKILL;
        let signal = if soften { Signal::SIGTERM } else { signal };
        let (pgid, done, was_suspended, continue_first) = {
            let mut runs = self.runs();
            let Some(entry) = runs.get_mut(&run_id) else {
                tracing::warn!(
                    run = run_id,
                    sig,
                    delete,
                    "signal for a run not held; ignored"
                );
                return;
            };
            let Some(live) = entry.live.as_ref() else {
                if delete && entry.record.phase == Phase::Starting {
                    // Still starting (in its prologue, say): it will not be released, and
                    // a prologue running for it is killed.
                    entry.record.interventions.deleted = true;
                    let prologue = entry.record.prologue_session;
                    drop(runs);
                    tracing::info!(
                        run = run_id,
                        ?prologue,
                        "qdel of a starting run: it will not run"
                    );
                    kill_prologue(prologue);
                    return;
                }
                tracing::warn!(
                    run = run_id,
                    sig,
                    delete,
                    "signal for a run that is not running; ignored"
                );
                return;
            };
            let (pgid, done) = (live.pgid, live.done.subscribe());
            if delete {
                entry.record.interventions.deleted = true;
            } else {
                // (A softened SIGKILL is recorded when it is sent, if ever: see kill_after_grace.)
                entry.record.interventions.record_signal(signal as i32);
            }
            // A stopped job would only see SIGTERM once continued: Torque's MOM continues
            // a suspended job it is told to end. Continued (so, or by a plain SIGCONT), it
            // is no longer suspended: its clock goes on, and its walltime limit with it.
            let continues = matches!(signal, Signal::SIGTERM | Signal::SIGCONT);
            let was_suspended = entry.record.suspended_at.is_some() && continues;
            if was_suspended {
                resume_clock(&mut entry.record, now_secs());
                live.clock.send_replace(());
            }
            // A SIGCONT needs no other before it.
            let continue_first = was_suspended && signal != Signal::SIGCONT;
            (pgid, done, was_suspended, continue_first)
        };
        // Persist first: after a MOM restart the exit status must still say
        // "the MOM delivered this".
        self.save_latest(run_id);
        tracing::info!(run = run_id, pgid, %signal, delete, "signalling job");
        if continue_first {
            procfs::kill_session(pgid, Signal::SIGCONT, true);
        }
        // A SIGCONT that resumes a suspended job reaches all of its session, as the suspend's
        // SIGSTOP did (`set_suspended`), not only its process group.
        let sweep = was_suspended && signal == Signal::SIGCONT;
        procfs::kill_session(pgid, signal, sweep);
        if soften {
            let runner = Arc::clone(self);
            self.rt.spawn(async move {
                if outlived(SIGKILL_GRACE, done).await {
                    let _ =
                        tokio::task::spawn_blocking(move || runner.kill_after_grace(run_id, pgid))
                            .await;
                }
            });
        } else if delete {
            let delay = if kill_delay_secs == 0 {
                DEFAULT_KILL_DELAY
            } else {
                kill_delay_secs
            };
            self.rt
                .spawn(escalate(pgid, Duration::from_secs(delay.into()), done));
        }
    }

    /// The SIGKILL of a qsig KILL whose SIGTERM the job outlived (blocking): recorded as
    /// delivered (on disk first) only now, so the exit status says SIGKILL (265) only when
    /// the MOM sent one.
    fn kill_after_grace(&self, run_id: u64, pgid: i32) {
        {
            let mut runs = self.runs();
            let Some(entry) = runs.get_mut(&run_id) else {
                return;
            };
            if entry.live.is_none() {
                return;
            }
            entry.record.interventions.record_signal(libc::SIGKILL);
        }
        self.save_latest(run_id);
        tracing::info!(
            run = run_id,
            pgid,
            "job still alive after the SIGTERM's grace: SIGKILL"
        );
        procfs::kill_session(pgid, Signal::SIGKILL, false);
    }

    /// qsig -s suspend (`suspend`) or resume: the job's processes stopped (SIGSTOP) or
    /// continued (SIGCONT), and its clock with them, as Torque's MOM does. The time suspended
    /// is recorded (on disk first, for a MOM that restarts meanwhile) and, at the resume,
    /// moves the run's start on, so neither its walltime limit nor its `resources_used`
    /// count it. Resuming a job that is not suspended only continues its processes (Torque
    /// proceeds too).
    pub fn set_suspended(&self, run_id: u64, suspend: bool) {
        let now = now_secs();
        let pgid = {
            let mut runs = self.runs();
            let Some(entry) = runs.get_mut(&run_id) else {
                tracing::warn!(
                    run = run_id,
                    suspend,
                    "suspend or resume of a run not held; ignored"
                );
                return;
            };
            let Some(live) = entry.live.as_ref() else {
                tracing::warn!(
                    run = run_id,
                    suspend,
                    "suspend or resume of a run not running; ignored"
                );
                return;
            };
            let pgid = live.pgid;
            let record = &mut entry.record;
            match (suspend, record.suspended_at) {
                (true, None) => record.suspended_at = Some(now),
                (true, Some(_)) => {
                    tracing::info!(run = run_id, "already suspended");
                    return;
                }
                (false, Some(_)) => resume_clock(record, now),
                (false, None) => {}
            }
            live.clock.send_replace(());
            pgid
        };
        self.save_latest(run_id);
        let signal = if suspend {
            Signal::SIGSTOP
        } else {
            Signal::SIGCONT
        };
        tracing::info!(run = run_id, pgid, %signal, "suspending or resuming job");
        // Every process of the job's session, also those in process groups of their own.
        procfs::kill_session(pgid, signal, true);
    }

    /// qmsg: `text` and a newline into the running job's stdout and/or stderr file (once if
    /// they are one file), appended as Torque's MOM writes it, to a file still the user's.
    pub fn message(&self, run_id: u64, text: &str, stdout: bool, stderr: bool) {
        // A newline after it, unless it ends with one (Torque's MOM).
        let line = if text.ends_with('\n') {
            text.to_string()
        } else {
            format!("{text}\n")
        };
        let (uid, files) = {
            let runs = self.runs();
            let Some(entry) = runs.get(&run_id).filter(|e| e.live.is_some()) else {
                tracing::warn!(run = run_id, "message for a run not running; ignored");
                return;
            };
            let record = &entry.record;
            // An interactive job's stdout and stderr are both its terminal.
            if let Some(tty) = record.terminal.clone() {
                let uid = record.uid;
                drop(runs);
                if let Err(e) = crate::terminal::tell(&tty, uid, &line) {
                    tracing::warn!(
                        run = run_id,
                        "cannot write the message to the job's terminal: {e}"
                    );
                }
                return;
            }
            // The stdout file is the launch's (kept for the epilogue); the stderr one is in
            // every record, also those of MOMs from before epilogues.
            let stdout_target = record
                .pelog
                .streams
                .as_ref()
                .map(|s| s.stdout_target().to_path_buf());
            let mut files: Vec<PathBuf> = Vec::new();
            for (wanted, file) in [
                (stdout, stdout_target),
                (stderr, record.stderr_target.clone()),
            ] {
                match file {
                    Some(file) if wanted && !files.contains(&file) => files.push(file),
                    None if wanted => {
                        tracing::warn!(run = run_id, "no output file known for the message")
                    }
                    _ => {}
                }
            }
            (record.uid, files)
        };
        for file in files {
            if let Err(e) = launch::append_to_user_file(&file, uid, &line) {
                tracing::warn!(
                    run = run_id,
                    "cannot write the message to {}: {e}",
                    file.display()
                );
            }
        }
    }

    /// CancelRuns: kill what still runs, forget everything named.
    pub fn cancel(&self, run_ids: &[u64]) {
        for &run_id in run_ids {
            let mut prologue = None;
            let running = {
                let mut runs = self.runs();
                match runs.get_mut(&run_id) {
                    None => continue,
                    Some(Entry {
                        live: Some(live), ..
                    }) => {
                        live.cancelled = true;
                        Some(live.pgid)
                    }
                    Some(entry) => {
                        prologue = entry.record.prologue_session;
                        None
                    }
                }
            };
            kill_prologue(prologue);
            match running {
                Some(pgid) => {
                    tracing::info!(
                        run = run_id,
                        pgid,
                        "server cancelled running run: killing it"
                    );
                    procfs::kill_session(pgid, Signal::SIGKILL, true);
                }
                None => self.forget(run_id),
            }
        }
    }

    /// AckRunEnded: the server committed these results; forget them.
    pub fn ack(&self, run_ids: &[u64]) {
        for &run_id in run_ids {
            let ended = self.runs().get(&run_id).map(|e| e.record.is_ended());
            match ended {
                Some(true) => self.forget(run_id),
                Some(false) => {
                    tracing::warn!(run = run_id, "ack for a run that has not ended; ignored")
                }
                None => tracing::debug!(run = run_id, "ack for a run not held"),
            }
        }
    }

    /// Samples usage of every running run from one `/proc` scan; returns the
    /// running job ids and per-run usage (peaks so far) for the status report.
    pub fn sample(&self, procs: &[Proc]) -> (Vec<String>, Vec<(u64, Usage)>) {
        let now = now_secs();
        let mut jobs = Vec::new();
        let mut usage = Vec::new();
        for entry in self.runs().values_mut() {
            let Some(live) = entry.live.as_mut() else {
                continue;
            };
            let t = procfs::session_totals(procs, live.pgid, self.page_kb);
            live.record_peak(&t, self.clock_ticks);
            live.peak.walltime_secs = entry.record.walltime(now);
            jobs.push(entry.record.job_id.clone());
            usage.push((entry.record.run_id, live.peak));
        }
        jobs.sort();
        jobs.dedup();
        usage.sort_by_key(|(id, _)| *id);
        (jobs, usage)
    }

    /// Checks every running run against its `-l` limits (see [`over_limit`]) in one `/proc`
    /// scan, and kills those over one: SIGTERM, then SIGKILL after the walltime grace
    /// (blocking: writes the records).
    fn enforce_limits(&self, procs: &[Proc]) {
        let mut over = Vec::new();
        for entry in self.runs().values_mut() {
            let Some(live) = entry.live.as_mut() else {
                continue;
            };
            if entry.record.limits.is_empty() {
                continue;
            }
            let t = procfs::session_totals(procs, live.pgid, self.page_kb);
            // What a kill is judged on is in `resources_used` too (the job's processes may
            // die with the CPU they used unreaped by its shell).
            live.record_peak(&t, self.clock_ticks);
            over.extend(over_limit(&mut entry.record, live, &t, self.clock_ticks));
        }
        for (run_id, pgid, done) in over {
            self.save_latest(run_id);
            if !*done.borrow() {
                procfs::kill_session(pgid, Signal::SIGTERM, false);
                self.rt.spawn(escalate(pgid, WALLTIME_GRACE, done));
            }
        }
    }

    /// Checks the runs' `-l` limits every `$check_poll_time`, whether or not the server is
    /// reachable, as Torque's MOM polls its jobs on its own: the one place limits are
    /// enforced. Scans `/proc` only when a run has limits.
    pub async fn police_limits(self: Arc<Self>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(
                    self.limit_poll_ms.load(Ordering::Relaxed),
                )) => {}
                // A new `$check_poll_time`: the next sleep is the new one's.
                _ = self.limit_poll_changed.notified() => continue,
                _ = shutdown.recv() => return,
            }
            let watched = self
                .runs()
                .values()
                .any(|e| e.live.is_some() && !e.record.limits.is_empty());
            if watched {
                let runner = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || runner.enforce_limits(&procfs::scan()))
                    .await;
            }
        }
    }

    /// Kills the job at its walltime limit: SIGTERM, then SIGKILL after a grace. The time it
    /// spends suspended does not count: while suspended the timer waits for the resume, which
    /// moves the run's start on (see [`Runner::set_suspended`]).
    fn spawn_walltime(
        self: &Arc<Self>,
        run_id: u64,
        pgid: i32,
        limit: u64,
        mut done: watch::Receiver<bool>,
    ) {
        let Some(mut clock) = self
            .runs()
            .get(&run_id)
            .and_then(|e| e.live.as_ref())
            .map(|live| live.clock.subscribe())
        else {
            return;
        };
        let runner = Arc::clone(self);
        self.rt.spawn(async move {
            loop {
                // Torque kills when walltime *exceeds* the limit: one second past it.
                let wait = {
                    let runs = runner.runs();
                    let Some(entry) = runs.get(&run_id).filter(|e| e.live.is_some()) else {
                        return;
                    };
                    let elapsed = entry.record.walltime(now_secs());
                    entry.record.suspended_at.is_none().then(|| {
                        Duration::from_secs(limit.saturating_add(1).saturating_sub(elapsed))
                    })
                };
                let expired = tokio::select! {
                    _ = sleep_or_forever(wait) => true,
                    changed = clock.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        false
                    }
                    _ = ended(&mut done) => return,
                };
                if !expired {
                    continue;
                }
                let (elapsed, terminal) = {
                    let mut runs = runner.runs();
                    let Some(entry) = runs.get_mut(&run_id).filter(|e| e.live.is_some()) else {
                        return;
                    };
                    let elapsed = entry.record.walltime(now_secs());
                    if entry.record.interventions.over_limit.is_some() {
                        return;
                    }
                    if entry.record.suspended_at.is_some() || elapsed <= limit {
                        continue;
                    }
                    entry.record.interventions.walltime = true;
                    entry.record.walltime_elapsed = elapsed;
                    let terminal = entry.record.terminal.clone();
                    (elapsed, terminal.map(|tty| (tty, entry.record.uid)))
                };
                if let Some((tty, uid)) = terminal {
                    // Before the kill: the terminal goes with the job's shell.
                    let text = exit::walltime_message(elapsed, limit);
                    let told = tokio::task::spawn_blocking(move || {
                        crate::terminal::tell(&tty, uid, &text)
                    })
                    .await;
                    if let Ok(Err(e)) = told {
                        tracing::warn!(run = run_id, "cannot tell the job's terminal: {e}");
                    }
                }
                let r = Arc::clone(&runner);
                let _ = tokio::task::spawn_blocking(move || r.save_latest(run_id)).await;
                tracing::info!(
                    run = run_id,
                    pgid,
                    elapsed,
                    limit,
                    "walltime exceeded: killing job"
                );
                procfs::kill_session(pgid, Signal::SIGTERM, false);
                escalate(pgid, WALLTIME_GRACE, done).await;
                return;
            }
        });
    }

    /// Watches an adopted run, which this process cannot wait for: done when
    /// the supervisor's exit file appears, or when both the shell and the
    /// supervisor are gone.
    fn spawn_orphan_watch(
        self: &Arc<Self>,
        run_id: u64,
        pgid: i32,
        supervisor: Recorded,
        mut done: watch::Receiver<bool>,
    ) {
        let runner = Arc::clone(self);
        let exit_file = self.layout.exit_file(run_id);
        self.rt.spawn(async move {
            let mut tick = tokio::time::interval(ORPHAN_POLL);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let over = exit_file.exists()
                            || (!session_alive(pgid) && !supervisor.alive(&exit_file));
                        if over {
                            let r = Arc::clone(&runner);
                            let f = exit_file.clone();
                            let _ = tokio::task::spawn_blocking(move || {
                                r.finish(run_id, supervisor::read_exit_file(&f), None)
                            })
                            .await;
                            return;
                        }
                    }
                    _ = ended(&mut done) => return,
                }
            }
        });
    }
}

/// Whether a record written in boot `record_boot` is from before this boot `this_boot`. An
/// empty id says nothing: older MOMs wrote none (and synced every version), and a MOM that
/// cannot read this boot's id syncs every version too.
fn from_an_earlier_boot(record_boot: &str, this_boot: &str) -> bool {
    !record_boot.is_empty() && !this_boot.is_empty() && record_boot != this_boot
}

/// The end of a run with no usage to tell: its script never ran (`exit_status` -1, -2,
/// -3, -14), or it is not known to have (-4 after a reboot).
fn unstarted(exit_status: i32, message: &str) -> RunResult {
    RunResult {
        exit_status,
        used: Usage::default(),
        end_time: now_secs(),
        session_id: 0,
        message: message.to_string(),
        copy_errors: Vec::new(),
    }
}

/// A suspended run's clock goes on at `now`: its start moves on by the time suspended.
fn resume_clock(record: &mut RunRecord, now: i64) {
    if let Some(since) = record.suspended_at.take() {
        record.start_time += (now - since).max(0);
    }
}

/// Sleeps `wait`, or forever when there is none.
async fn sleep_or_forever(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the run's `done` flag is set (or its sender is gone).
async fn ended(done: &mut watch::Receiver<bool>) {
    let _ = done.wait_for(|d| *d).await;
}

/// Checks a live run's sampled usage against its `-l` limits (see `limits`): the first time
/// one is exceeded, records why (the exit status and the notice for its stderr) and returns
/// what the caller needs to kill it once the runs lock is released: run id, process group,
/// and the run's end.
fn over_limit(
    record: &mut RunRecord,
    live: &Live,
    t: &procfs::SessionTotals,
    clock_ticks: u64,
) -> Option<(u64, i32, watch::Receiver<bool>)> {
    let by_mom = &record.interventions;
    // Torque checks running jobs only: not a suspended one, nor one being ended (qdel, a
    // cancel, its walltime) or already over a limit.
    if record.limits.is_empty()
        || record.suspended_at.is_some()
        || by_mom.over_limit.is_some()
        || by_mom.walltime
        || by_mom.deleted
        || live.cancelled
    {
        return None;
    }
    let ticks = clock_ticks.max(1);
    let used = limits::Sampled {
        cput_secs: t.cpu_ticks / ticks,
        max_process_cput_secs: t.max_process_cpu_ticks / ticks,
        vmem_bytes: t.vsize_bytes,
        max_process_vmem_bytes: t.max_process_vsize,
    };
    let (exceeded, reason) = record.limits.exceeded(&used)?;
    tracing::info!(run = record.run_id, job = %record.job_id, %reason, "job over its limit: killing it");
    record.interventions.over_limit = Some(exceeded);
    record.limit_notice = reason;
    Some((record.run_id, live.pgid, live.done.subscribe()))
}

/// A run's `-l` limits, read from its resource list (see `limits`): `mem` limits each
/// process only when the job runs on this node alone, as in Torque.
fn job_limits(spec: &RunSpec, ignored: limits::Ignored) -> limits::JobLimits {
    let mut hosts: Vec<&str> = spec.nodefile_hosts.iter().map(String::as_str).collect();
    hosts.sort_unstable();
    hosts.dedup();
    // An unlimited stack adds nothing (else it would lift every address-space limit).
    let stack = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
        .ok()
        .map(|(soft, _)| soft)
        .filter(|soft| *soft != libc::RLIM_INFINITY)
        .unwrap_or(0);
    limits::from_resource_list(&spec.resource_limits, hosts.len() <= 1, stack, ignored)
}

/// SIGKILL to the group after `delay` unless the job ended first.
async fn escalate(pgid: i32, delay: Duration, done: watch::Receiver<bool>) {
    if outlived(delay, done).await {
        tracing::info!(pgid, "job still alive after grace: SIGKILL");
        procfs::kill_session(pgid, Signal::SIGKILL, false);
    }
}

/// Whether the job is still running once `delay` has passed (false as soon as it ends).
async fn outlived(delay: Duration, mut done: watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = ended(&mut done) => false,
    }
}

/// Kills the supervisor of the run whose exit file is `exit_file`, if one runs,
/// and everything it started (blocking: scans /proc). It is the job's child
/// subreaper, so whatever of the job left the shell's session is still among
/// its descendants. Found by its command line, so only an exec'd supervisor
/// is: one the spawner forked holds a shell that exits unexec'd by itself once
/// the MOM that launched it is gone (EOF instead of the release).
fn stop_unrecorded_launch(exit_file: &Path) {
    let procs = procfs::scan();
    for sup in procs.iter().filter(|p| is_supervisor_of(p, exit_file)) {
        let pid = sup.stat.pid;
        tracing::warn!(supervisor = pid, exit_file = %exit_file.display(), "stopping a job launch no MOM recorded");
        leftovers::kill_descendants_of(pid, &procs);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Kills the session of a run's prologue, if that process (pid and start time) still runs.
fn kill_prologue(session: Option<(i32, u64)>) {
    let Some((pid, started)) = session else {
        return;
    };
    if procfs::proc_of(pid).is_some_and(|p| p.stat.start_ticks == started) {
        tracing::info!(pid, "killing a prologue");
        procfs::kill_session(pid, Signal::SIGKILL, true);
    }
}

/// A run's supervisor as its record names it.
struct Recorded {
    pid: i32,
    /// Its start time (clock ticks after boot); 0 in records of older MOMs.
    started: u64,
}

impl Recorded {
    /// Whether it still runs. The pid and start time name one process; a
    /// record without the start time was written by an older MOM, whose
    /// supervisors were all exec'd, and is checked by its command line.
    fn alive(&self, exit_file: &Path) -> bool {
        procfs::proc_of(self.pid).is_some_and(|p| {
            if self.started == 0 {
                is_supervisor_of(&p, exit_file)
            } else {
                p.stat.start_ticks == self.started && is_mine(&p)
            }
        })
    }
}

/// Whether `p` runs as this MOM's user (a job's user can copy a command line,
/// not easily an owner) and has not exited (a zombie does not count).
fn is_mine(p: &Proc) -> bool {
    p.stat.pid > 1 && p.stat.state != 'Z' && p.uid == nix::unistd::geteuid().as_raw()
}

/// Whether the process `p` is an exec'd supervisor of the run whose exit file
/// is `exit_file`: [`is_mine`], with the command line `launch::spawn_supervisor`
/// gives, naming that exit file. (One forked by the spawner has the spawner's
/// command line; see [`Recorded::alive`].)
fn is_supervisor_of(p: &Proc, exit_file: &Path) -> bool {
    let pid = p.stat.pid;
    is_mine(p)
        && procfs::cmdline(pid).is_some_and(|args| {
            args.get(1).map(Vec::as_slice) == Some(supervisor::SUPERVISE_ARG.as_bytes())
                && args.get(2).map(Vec::as_slice) == Some(exit_file.as_os_str().as_bytes())
        })
}

/// Whether the session leader `pgid` still runs (a zombie does not count).
fn session_alive(pgid: i32) -> bool {
    pgid > 1 && procfs::stat_of(pgid).is_some_and(|s| s.session == pgid && s.state != 'Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Torque's poll: a run is checked only while it runs (not suspended, deleted or
    /// cancelled), strictly over its limit, and marked once.
    #[test]
    fn only_a_running_job_is_checked_against_its_limits_and_marked_once() {
        let mut record = RunRecord::for_test(7);
        record.limits = limits::Watch {
            cput_secs: Some(10),
            ..Default::default()
        };
        let (done, _) = watch::channel(false);
        let live = Live::new(4242, done);
        let ticks = |secs: u64| procfs::SessionTotals {
            cpu_ticks: secs * 100,
            ..Default::default()
        };
        assert!(over_limit(&mut record.clone(), &live, &ticks(10), 100).is_none());
        let mut suspended = record.clone();
        suspended.suspended_at = Some(5);
        assert!(over_limit(&mut suspended, &live, &ticks(12), 100).is_none());
        let mut deleted = record.clone();
        deleted.interventions.deleted = true;
        assert!(over_limit(&mut deleted, &live, &ticks(12), 100).is_none());
        let (done, _) = watch::channel(false);
        let mut cancelled = Live::new(4242, done);
        cancelled.cancelled = true;
        assert!(over_limit(&mut record.clone(), &cancelled, &ticks(12), 100).is_none());

        let (run, pgid, _) = over_limit(&mut record, &live, &ticks(12), 100).expect("over");
        assert_eq!((run, pgid), (7, 4242));
        assert_eq!(record.interventions.over_limit, Some(limits::Exceeded::Cpu));
        assert_eq!(record.limit_notice, "cput 12 exceeded limit 10");
        assert!(
            over_limit(&mut record, &live, &ticks(20), 100).is_none(),
            "once"
        );
    }

    /// A runner over a fresh MOM home (the directory lives as long as the first value), and
    /// the receiver of its events.
    fn runner() -> (
        tempfile::TempDir,
        Arc<Runner>,
        mpsc::UnboundedReceiver<Event>,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path());
        layout.ensure().expect("ensure");
        let (events, received) = mpsc::unbounded_channel();
        let runner = Runner::new(layout, "n1".into(), events, PathBuf::from("/nonexistent"));
        (dir, runner, received)
    }

    /// A record of run `run_id` in `phase`, written in boot `boot_id`, naming this test
    /// process as its supervisor and its process group as the job's: were it adopted, this
    /// process would be watched and signalled.
    fn record(run_id: u64, phase: Phase, boot_id: &str) -> RunRecord {
        let me = std::process::id() as i32;
        RunRecord {
            phase,
            boot_id: boot_id.to_string(),
            uid: nix::unistd::getuid().as_raw(),
            session_id: nix::unistd::getpgrp().as_raw(),
            supervisor_pid: me,
            supervisor_started: procfs::stat_of(me).map_or(0, |s| s.start_ticks),
            ..RunRecord::for_test(run_id)
        }
    }

    #[tokio::test]
    async fn an_idle_syncer_wakes_for_a_result_and_syncs_it_at_its_deadline() {
        let (_dir, runner, _events) = runner();
        let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
        let syncer =
            tokio::spawn(Arc::clone(&runner).keep_results_durable(Shutdown::new(stop.subscribe())));
        // Nothing to sync yet: it waits for a result.
        assert!(wait_for_async(|| runner.sync_idle.load(Ordering::SeqCst)).await);
        let running = record(8, Phase::Running, &runner.boot_id);
        runner.runs().insert(8, Entry::new(running, None));
        runner.end(8, unstarted(job_exec::FAIL1, "test"));
        let written = runner.runs()[&8].unsynced_result.expect("marked");
        let synced = wait_for_async(|| runner.runs()[&8].unsynced_result.is_none()).await;
        assert!(synced, "synced once due");
        assert!(
            written.elapsed() >= RESULT_SYNC_DELAY,
            "not before its deadline"
        );
        drop(stop);
        syncer.await.unwrap();
    }

    /// Polls `condition` on the runtime (every 10 ms, at most 10 s).
    async fn wait_for_async(mut condition: impl FnMut() -> bool) -> bool {
        for _ in 0..1000 {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn the_end_of_a_run_waits_to_be_synced() {
        let (_dir, runner, mut events) = runner();
        let running = record(8, Phase::Running, &runner.boot_id);
        runner.runs().insert(8, Entry::new(running, None));
        assert!(runner.runs()[&8].unsynced_result.is_none(), "no result yet");
        runner.end(8, unstarted(job_exec::FAIL1, "test"));
        assert!(matches!(
            events.try_recv(),
            Ok(Event::Ended { run_id: 8, .. })
        ));
        assert!(runner.runs()[&8].unsynced_result.is_some());
        runner.sync_results(RESULT_SYNC_DELAY);
        assert!(runner.runs()[&8].unsynced_result.is_some(), "not due yet");
    }

    #[test]
    fn a_runs_walltime_leaves_out_its_suspension() {
        let mut r = RunRecord::for_test(1);
        r.start_time = 100;
        assert_eq!(r.walltime(130), 30);
        r.suspended_at = Some(110);
        assert_eq!(r.walltime(130), 10, "frozen while suspended");
        assert_eq!(r.walltime(90), 10, "whatever the clock says");
    }

    #[tokio::test]
    async fn suspend_stops_the_jobs_processes_and_its_clock_resume_moves_its_start_on() {
        use std::os::unix::process::CommandExt;
        let (_dir, runner, _events) = runner();
        // A job of its own process group, as a job's shell is.
        let mut job = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("spawn sleep");
        let pgid = job.id() as i32;
        let state = || procfs::stat_of(pgid).map(|s| s.state);
        let mut running = record(9, Phase::Running, &runner.boot_id);
        running.start_time = now_secs() - 100;
        let (done, _) = watch::channel(false);
        runner
            .runs()
            .insert(9, Entry::new(running, Some(Live::new(pgid, done))));
        let mut clock = runner.runs()[&9].live.as_ref().unwrap().clock.subscribe();

        runner.set_suspended(9, true);
        let since = runner.runs()[&9].record.suspended_at.expect("suspended");
        assert!(clock.has_changed().unwrap(), "the walltime timer is told");
        clock.mark_unchanged();
        let stopped = wait_for(|| state() == Some('T'));
        assert!(stopped, "{:?}", state());
        let on_disk = runner.store.load_all();
        assert_eq!(on_disk[0].suspended_at, Some(since), "on disk first");

        let start = runner.runs()[&9].record.start_time;
        let before = now_secs();
        runner.set_suspended(9, false);
        let after = now_secs();
        let record = runner.runs()[&9].record.clone();
        assert_eq!(record.suspended_at, None);
        // The start moves by the time suspended, read by set_suspended between these two.
        let moved = record.start_time - start;
        assert!(
            (before - since).max(0) <= moved && moved <= (after - since).max(0),
            "{moved}"
        );
        assert!(clock.has_changed().unwrap());
        let continued = wait_for(|| matches!(state(), Some('S' | 'R')));
        assert!(continued, "{:?}", state());
        let _ = job.kill();
        let _ = job.wait();
    }

    #[tokio::test]
    async fn a_message_goes_to_the_jobs_files_once_each_with_one_newline() {
        let (dir, runner, _events) = runner();
        let (out, err) = (dir.path().join("job.OU"), dir.path().join("job.ER"));
        std::fs::write(&out, "").unwrap();
        std::fs::write(&err, "").unwrap();
        let mut running = record(5, Phase::Running, &runner.boot_id);
        running.stderr_target = Some(err.clone());
        running.pelog.streams = Some(crate::paths::Streams::Separate {
            stdout: out.clone(),
            stderr: err.clone(),
        });
        let (done, _) = watch::channel(false);
        runner
            .runs()
            .insert(5, Entry::new(running, Some(Live::new(0, done))));
        runner.message(5, "to both", true, true);
        runner.message(5, "ends with its own\n", false, true);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "to both\n");
        assert_eq!(
            std::fs::read_to_string(&err).unwrap(),
            "to both\nends with its own\n"
        );
        // Joined streams (one file): written once.
        if let Some(entry) = runner.runs().get_mut(&5) {
            entry.record.pelog.streams = Some(crate::paths::Streams::IntoStderr(err.clone()));
        }
        runner.message(5, "once", true, true);
        assert_eq!(
            std::fs::read_to_string(&err).unwrap(),
            "to both\nends with its own\nonce\n"
        );
    }

    /// Polls `condition` (every 10 ms, at most 10 s).
    fn wait_for(mut condition: impl FnMut() -> bool) -> bool {
        for _ in 0..1000 {
            if condition() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn result_of(runner: &Runner, run_id: u64) -> Option<RunResult> {
        runner
            .finished()
            .into_iter()
            .find_map(|(id, r)| (id == run_id).then_some(r))
    }

    #[tokio::test]
    async fn runs_recorded_before_a_reboot_are_lost_not_adopted_nor_unstarted() {
        let (_dir, runner, _events) = runner();
        runner
            .store
            .save(&record(1, Phase::Starting, "an-earlier-boot"))
            .expect("save");
        runner
            .store
            .save(&record(2, Phase::Running, "an-earlier-boot"))
            .expect("save");
        let failed = RunRecord {
            prologue_failed: Some(job_exec::FAIL2),
            ..record(3, Phase::Starting, "an-earlier-boot")
        };
        runner.store.save(&failed).expect("save");
        let done = RunResult {
            exit_status: 0,
            used: Usage::default(),
            end_time: 2,
            session_id: 9,
            message: String::new(),
            copy_errors: Vec::new(),
        };
        let ended = record(4, Phase::Ended(done.clone()), "an-earlier-boot");
        runner.store.save(&ended).expect("save");
        runner.recover();
        assert_eq!(result_of(&runner, 4), Some(done), "a result is a result");
        for run_id in [1, 2] {
            let result = result_of(&runner, run_id).expect("ended at recovery");
            assert_eq!(result.exit_status, job_exec::INITABT, "run {run_id}");
            assert_eq!(result.message, REBOOTED);
        }
        // What a record says happened still did.
        assert_eq!(
            result_of(&runner, 3).map(|r| r.exit_status),
            Some(job_exec::FAIL2)
        );
        // Ended on disk too: a second MOM start in this boot reads the same.
        let (events, _received) = mpsc::unbounded_channel();
        let again = Runner::new(
            runner.layout.clone(),
            "n1".into(),
            events,
            PathBuf::from("/nonexistent"),
        );
        again.recover();
        assert_eq!(
            result_of(&again, 2).map(|r| r.exit_status),
            Some(job_exec::INITABT)
        );
    }

    #[test]
    fn only_two_known_and_different_boot_ids_say_a_reboot() {
        assert!(from_an_earlier_boot("a", "b"));
        assert!(!from_an_earlier_boot("a", "a"));
        assert!(
            !from_an_earlier_boot("", "b"),
            "an older MOM's record, synced"
        );
        assert!(
            !from_an_earlier_boot("a", ""),
            "this boot unknown: every version synced"
        );
    }

    #[tokio::test]
    async fn runs_of_this_boot_keep_their_meaning() {
        let (_dir, runner, _events) = runner();
        let this_boot = runner.boot_id.clone();
        assert!(!this_boot.is_empty(), "the kernel gives a boot id");
        runner
            .store
            .save(&record(1, Phase::Starting, &this_boot))
            .expect("save");
        // An older MOM's record (no boot id) was synced: "starting" still proves it.
        runner
            .store
            .save(&record(2, Phase::Starting, ""))
            .expect("save");
        runner.recover();
        for run_id in [1, 2] {
            let result = result_of(&runner, run_id).expect("ended at recovery");
            assert_eq!(result.exit_status, job_exec::RETRY, "run {run_id}");
        }
        // The older MOM's record says this boot from its next version on.
        let on_disk = runner.store.load_all();
        assert!(
            on_disk.iter().all(|r| r.boot_id == this_boot),
            "{on_disk:?}"
        );
    }

    #[tokio::test]
    async fn a_result_is_synced_once_it_has_waited_and_not_before() {
        let (_dir, runner, _events) = runner();
        runner
            .store
            .save(&record(7, Phase::Starting, ""))
            .expect("save");
        runner.recover();
        let unsynced = |r: &Runner| r.runs().get(&7).and_then(|e| e.unsynced_result);
        assert!(
            unsynced(&runner).is_some(),
            "a result read from disk may be unsynced"
        );
        runner.sync_results(Duration::from_secs(3600));
        assert!(unsynced(&runner).is_some(), "not due yet");
        runner.sync_results(Duration::ZERO);
        assert_eq!(unsynced(&runner), None);
        // A result written later (here: a version after the end) waits again.
        runner.save_latest(7);
        assert!(unsynced(&runner).is_some(), "written again");
        runner.sync_results(Duration::ZERO);
        assert_eq!(unsynced(&runner), None);
        // Acknowledged: forgotten, nothing left to sync.
        runner.ack(&[7]);
        assert!(runner.finished().is_empty());
        runner.sync_results(Duration::ZERO);
    }
}
