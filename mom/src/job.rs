//! The MOM's own types for a run: what the server asked for ([`RunSpec`]),
//! what the MOM remembers about it on disk ([`RunRecord`]) and what it tells
//! the session ([`Event`]). The session converts to and from the wire types;
//! nothing below the session sees generated proto code.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Resources a run used (Torque's `resources_used`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub cput_secs: u64,
    pub mem_kb: u64,
    pub vmem_kb: u64,
    pub walltime_secs: u64,
}

/// How a run ended; kept on disk until the server acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub exit_status: i32,
    pub used: Usage,
    pub end_time: i64,
    pub session_id: i32,
    pub message: String,
    /// Torque's "Unable to copy file ..." text for each output file that could
    /// not be delivered (kept in `undelivered/`).
    #[serde(default)]
    pub copy_errors: Vec<String>,
}

/// Where a run is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Recorded, shell not yet known to be running. Found at MOM start, it means
    /// the previous MOM died mid-launch.
    Starting,
    /// The shell runs in session `RunRecord::session_id` (or is about to: it
    /// execs the job once this is on disk and the MOM releases it).
    Running,
    /// Finished; the result waits for the server's AckRunEnded.
    Ended(RunResult),
}

/// The record of one run, `mom_priv/jobs/RUNID.json`: it outlives the MOM process (see `store`
/// for what it outlives and what not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: u64,
    pub job_id: String,
    pub euser: String,
    pub uid: u32,
    /// Session id = process group id of the job's shell (0 before it runs).
    pub session_id: i32,
    pub start_time: i64,
    /// The walltime the MOM enforces (0: none, also under `$ignwalltime`).
    pub walltime_limit_secs: u64,
    /// The file the job's stderr goes to (walltime notice), once known.
    pub stderr_target: Option<PathBuf>,
    pub phase: Phase,
    /// Pid of the run's supervisor process (0 before it runs).
    #[serde(default)]
    pub supervisor_pid: i32,
    /// Its start time in clock ticks after boot, which with the pid names one
    /// process (0 before it runs, and in records of older MOMs).
    #[serde(default)]
    pub supervisor_started: u64,
    /// Signals, qdel and walltime kills the MOM delivered.
    #[serde(default)]
    pub interventions: crate::exit::Interventions,
    /// Elapsed seconds when the walltime kill happened.
    #[serde(default)]
    pub walltime_elapsed: u64,
    /// What to copy where once the job ends (spooled output).
    #[serde(default)]
    pub delivery: crate::deliver::DeliveryPlan,
    /// Launched by a MOM that holds the shell until the run is recorded as
    /// running (false in records of older MOMs, whose shells ran at once): only
    /// then does "starting" prove the script never ran.
    #[serde(default)]
    pub gated: bool,
    /// How long its supervisor lets the job run once the MOM is gone (ms; 0 in records of
    /// older MOMs, whose supervisors never kill): a new MOM that adopts the run tells the
    /// supervisor so (SIGUSR1), and only then.
    #[serde(default)]
    pub orphan_timeout_ms: u64,
    /// What its epilogue is told (empty before the launch, and in records of older MOMs,
    /// whose runs get no epilogue).
    #[serde(default)]
    pub pelog: crate::pelog::PelogJob,
    /// The job's own `TMPDIR` (`$tmpdir`), removed with its other files.
    #[serde(default)]
    pub tmpdir: Option<PathBuf>,
    /// The prologue running for this starting run, if one is: its pid (= session id) and
    /// start time in clock ticks after boot, which name one process. A qdel or cancel kills
    /// it, and so does the next MOM if this one dies meanwhile.
    #[serde(default)]
    pub prologue_session: Option<(i32, u64)>,
    /// The epilogues have been started: a MOM that adopts the run after a restart does not
    /// run them again (at most once).
    #[serde(default)]
    pub epilogues_started: bool,
    /// Its prologue failed: the run ends with this exit status (-2 or -14), even if the MOM
    /// restarts before reporting it.
    #[serde(default)]
    pub prologue_failed: Option<i32>,
    /// The boot this record was written in (`/proc/sys/kernel/random/boot_id`). Its versions
    /// are not synced (see `store`), so a record from an earlier boot may lack its last
    /// ones; and none of its processes exist any more. Empty in records of older MOMs,
    /// which synced every version.
    #[serde(default)]
    pub boot_id: String,
    /// Since when the job is suspended (`qsig -s suspend`), epoch seconds. Its walltime
    /// does not count meanwhile: a resume moves `start_time` on by the time suspended, as
    /// Torque's MOM does.
    #[serde(default)]
    pub suspended_at: Option<i64>,
    /// The `-l` limits the MOM checks at each sample (see `limits`).
    #[serde(default)]
    pub limits: crate::limits::Watch,
    /// Why a sample killed the job over a limit (`cput 12 exceeded limit 10`), for the
    /// notice in its stderr; empty until then.
    #[serde(default)]
    pub limit_notice: String,
    /// An interactive run's terminal (`qsub -I`), which is its stderr: a kill notice is
    /// written there when the MOM kills, as the terminal is gone by the time the run ends.
    #[serde(default)]
    pub terminal: Option<PathBuf>,
}

impl RunRecord {
    /// The record of a run about to be launched, started at `start_time`; what the launch
    /// learns (uid, session, supervisor, delivery) is filled in once it succeeds.
    pub fn starting(spec: &RunSpec, start_time: i64) -> RunRecord {
        RunRecord {
            run_id: spec.run_id,
            job_id: spec.job_id.clone(),
            euser: spec.euser.clone(),
            uid: 0,
            session_id: 0,
            start_time,
            walltime_limit_secs: spec.walltime_limit_secs,
            stderr_target: None,
            terminal: None,
            phase: Phase::Starting,
            supervisor_pid: 0,
            supervisor_started: 0,
            interventions: Default::default(),
            walltime_elapsed: 0,
            delivery: Default::default(),
            gated: true,
            orphan_timeout_ms: 0,
            pelog: Default::default(),
            tmpdir: None,
            prologue_session: None,
            epilogues_started: false,
            prologue_failed: None,
            boot_id: String::new(),
            suspended_at: None,
            limits: Default::default(),
            limit_notice: String::new(),
        }
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    /// The run's walltime at `now`, seconds: not counting the time it is or was suspended.
    pub fn walltime(&self, now: i64) -> u64 {
        (self.suspended_at.unwrap_or(now) - self.start_time).max(0) as u64
    }

    /// A starting record of run `run_id` (job `RUNID.vm` of user `u`, uid 1000), for tests.
    #[cfg(test)]
    pub fn for_test(run_id: u64) -> RunRecord {
        RunRecord {
            uid: 1000,
            ..RunRecord::starting(
                &RunSpec {
                    run_id,
                    job_id: format!("{run_id}.vm"),
                    euser: "u".into(),
                    ..Default::default()
                },
                1,
            )
        }
    }
}

/// A request to start a run (the MOM's copy of `StartRun`).
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub run_id: u64,
    pub job_id: String,
    pub job_name: String,
    pub job_seq: String,
    pub euser: String,
    pub egroup: String,
    pub script: Vec<u8>,
    pub env: Vec<(String, String)>,
    pub nodefile_hosts: Vec<String>,
    pub output_path: String,
    pub error_path: String,
    pub join_path: String,
    pub keep_files: String,
    pub shell: String,
    pub init_work_dir: String,
    pub walltime_limit_secs: u64,
    pub allow_root: bool,
    /// What the prologue and epilogue are told (see `pelog`): `Resource_List` as
    /// `name=value,...`, the queue, the account ("" for none).
    pub resource_limits: String,
    pub queue: String,
    pub account: String,
    /// `-W umask=`: the job's umask (`None`: Torque's 077).
    pub umask: Option<u32>,
    /// `-F`: the script's arguments.
    pub arguments: Vec<String>,
    /// An interactive job's terminal (`qsub -I`; see `terminal`): `None` for a batch job.
    pub terminal: Option<TerminalSpec>,
}

/// How an interactive job's terminal starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalSpec {
    /// qsub's `TERM`, for the job.
    pub term: String,
    pub rows: u16,
    pub cols: u16,
    /// `qsub -I -x`: what the shell runs (`-c`); empty: an interactive shell.
    pub command: String,
}

/// What the runner reports to the server, through the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Started {
        run_id: u64,
        session_id: i32,
        start_time: i64,
    },
    Ended {
        run_id: u64,
        result: RunResult,
    },
}

/// A run this MOM holds, for Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub run_id: u64,
    pub job_id: String,
    pub finished: bool,
    pub suspended: bool,
    pub session_id: i32,
}
