//! Prologue and epilogue scripts: the site's hooks around every job (Torque's
//! `mom_priv/prologue`, `prologue.user`, `epilogue.user`, `epilogue`; reference
//! section 8), run by the job's mother superior.
//!
//! When they run, and why there:
//! * the prologues (`prologue` as the MOM's user, root on a real node, in
//!   `mom_priv`; then `prologue.user` and the job's own `-l prologue=PATH` as the
//!   job's user, in its home) run once
//!   the job's shell is set up and held before exec, and before the run is
//!   recorded as running. So their output lands at the top of the job's stdout
//!   and stderr files, which the held shell has just opened, and a MOM that dies
//!   meanwhile leaves a run that never ran its script (the server requeues it).
//! * the epilogues (the job's own `-l epilogue=PATH`, `epilogue.user`, then
//!   `epilogue`, Torque's order) run once
//!   the job has ended and its exit status and usage are known, before its
//!   output is copied back, and append to the same files. They run from the
//!   MOM, so a run adopted after a MOM restart gets them too; the record keeps
//!   what they are told ([`PelogJob`]).
//!
//! Torque's rules, kept here: a missing script is skipped. A script that is not
//! a regular file owned by the MOM's user, readable and executable by it and
//! writable by nobody else (the `.user` ones also readable and executable by
//! others), is not run and fails as -1 ("permission Error"). A script still
//! running after `$prologalarm` is killed with its session and fails as -4. One
//! killed by a signal counts as success (Torque reads only a normal exit's
//! code). A prologue that fails decides the job's fate ([`prologue_exit_status`]);
//! an epilogue's failure is only logged. Each runs in a session of its own with
//! stdin on `/dev/null` and Torque's small environment ([`environment`]).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::job::Usage;
use crate::launch::{self, Identity};
use crate::paths::Streams;
use crate::pbs_environment::put_env_var;
use crate::procfs;
use capstan_proto::job_exec;

/// One of the scripts, named as in `mom_priv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Prologue,
    PrologueUser,
    /// The job's own, `-l prologue=PATH`.
    PrologueJob,
    Epilogue,
    EpilogueUser,
    /// The job's own, `-l epilogue=PATH`.
    EpilogueJob,
}

impl Script {
    /// The prologues, in the order they run (Torque's: the site's, then the job's).
    pub const PROLOGUES: [Script; 3] =
        [Script::Prologue, Script::PrologueUser, Script::PrologueJob];
    /// The epilogues, in the order they run (Torque's: the job's first, root's last).
    pub const EPILOGUES: [Script; 3] =
        [Script::EpilogueJob, Script::EpilogueUser, Script::Epilogue];

    /// The file's name in `mom_priv`; the job's own scripts are where it says.
    pub fn file_name(self) -> Option<&'static str> {
        match self {
            Script::Prologue => Some("prologue"),
            Script::PrologueUser => Some("prologue.user"),
            Script::Epilogue => Some("epilogue"),
            Script::EpilogueUser => Some("epilogue.user"),
            Script::PrologueJob | Script::EpilogueJob => None,
        }
    }

    /// Runs as the job's user (else as the MOM's).
    fn as_user(self) -> bool {
        !matches!(self, Script::Prologue | Script::Epilogue)
    }

    /// Where the script is for `job`: in `dir` (`mom_priv`), or for the job's own, the
    /// `prologue`/`epilogue` resource it asked for (relative to `PBS_O_WORKDIR`, as
    /// Torque's `get_local_script_path`); `None` when the job asked for none.
    fn path(self, dir: &Path, job: &PelogJob) -> Option<PathBuf> {
        let resource = match self {
            Script::PrologueJob => "prologue",
            Script::EpilogueJob => "epilogue",
            _ => return self.file_name().map(|name| dir.join(name)),
        };
        let asked = asked_resource(&job.resource_limits, resource).filter(|p| !p.is_empty())?;
        let workdir = job
            .env
            .iter()
            .find(|(n, _)| n == "PBS_O_WORKDIR")
            .map(|(_, v)| v.as_str())
            .unwrap_or("/");
        Some(Path::new(workdir).join(asked))
    }
}

/// Torque's return code for a script whose file may not be run ("permission Error").
pub const RC_REFUSED: i32 = -1;
/// Torque's return code for a script killed at `$prologalarm`.
pub const RC_TIMEOUT: i32 = -4;
/// Torque's return code for a script that outlived its SIGKILL by [`KILL_WAIT`].
pub const RC_UNKILLABLE: i32 = -5;
/// What Torque's child exits with when the script cannot be exec'd.
pub const RC_EXEC_FAILED: i32 = 255;
/// How long a script killed at its alarm may take to die (Torque's wait): one stuck in
/// the kernel (a hung NFS mount) is then left to a thread of its own, and fails.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// What the scripts are told about a job, and where their output goes. Kept in
/// the run record, so that the epilogue of a run adopted after a MOM restart has it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PelogJob {
    pub job_id: String,
    pub user: String,
    pub group: String,
    pub job_name: String,
    /// `Resource_List` as `name=value,...` (see the server's `dispatch::pelog_limits`).
    pub resource_limits: String,
    pub queue: String,
    /// "" when the job has none (Torque passes an empty argument).
    pub account: String,
    /// The job's script in this MOM's spool.
    pub script: PathBuf,
    /// The scripts' environment ([`environment`]).
    pub env: Vec<(String, String)>,
    /// The job's output files (in the spool, or in `$HOME` for `-k`); `None`
    /// before the launch: output then goes nowhere.
    pub streams: Option<Streams>,
    /// The job's user, who must own those files.
    pub uid: u32,
    /// Who the `.user` scripts run as (`None` when the MOM does not switch user).
    pub identity: Option<Identity>,
    /// The `.user` scripts' working directory.
    pub home: PathBuf,
}

/// Why the prologues stopped before the job could start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// One failed.
    Failed(Failure),
    /// The run is no longer wanted (a qdel, a cancel): the rest were not run.
    Abandoned,
}

/// A script that failed: which, Torque's return code, and the text Torque logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub script: Script,
    pub rc: i32,
    pub message: String,
}

/// The job's `exit_status` when a prologue failed with `rc`: 1 aborts the job
/// (JOB_EXEC_FAIL2, -2); anything else, a timeout or a refused file included,
/// sends it back to the queue to be tried again (JOB_EXEC_RETRY_PROLOGUE, -14).
pub fn prologue_exit_status(rc: i32) -> i32 {
    if rc == 1 {
        job_exec::FAIL2
    } else {
        job_exec::RETRY_PROLOGUE
    }
}

/// The prologues' arguments (Torque's eight): job id, user, group, job name,
/// resource limits, queue, account, script.
pub fn prologue_args(job: &PelogJob) -> Vec<String> {
    vec![
        job.job_id.clone(),
        job.user.clone(),
        job.group.clone(),
        job.job_name.clone(),
        job.resource_limits.clone(),
        job.queue.clone(),
        job.account.clone(),
        job.script.display().to_string(),
    ]
}

/// The epilogues' arguments (Torque's eleven): job id, user, group, job name,
/// session id, resource limits, resources used, queue, account, exit status, script.
pub fn epilogue_args(
    job: &PelogJob,
    session_id: i32,
    used: &Usage,
    exit_status: i32,
) -> Vec<String> {
    vec![
        job.job_id.clone(),
        job.user.clone(),
        job.group.clone(),
        job.job_name.clone(),
        session_id.to_string(),
        job.resource_limits.clone(),
        used_string(used),
        job.queue.clone(),
        job.account.clone(),
        exit_status.to_string(),
        job.script.display().to_string(),
    ]
}

/// `resources_used` as Torque's epilogue gets it:
/// `cput=00:00:00,vmem=0kb,walltime=00:00:00,mem=0kb,energy_used=0`.
pub fn used_string(used: &Usage) -> String {
    let hms = |s: u64| format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    format!(
        "cput={},vmem={}kb,walltime={},mem={}kb,energy_used=0",
        hms(used.cput_secs),
        used.vmem_kb,
        hms(used.walltime_secs),
        used.mem_kb
    )
}

/// What the scripts' environment starts from when the MOM has no `pbs_environment` (see
/// [`environment`]): what Torque's default file holds, `PATH=/bin:/usr/bin`, and the MOM's
/// `LANG`.
pub fn default_base_environment(lang: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_string(), "/bin:/usr/bin".to_string())];
    if let Some(lang) = lang {
        env.push(("LANG".into(), lang.into()));
    }
    env
}

/// The scripts' environment, as Torque's MOM gives it (observed): `base`, the MOM's own
/// environment, which is `pbs_environment`'s variables (`PATH=/bin:/usr/bin` and `LANG` in
/// Torque's default file); then `PBS_MSHOST`, `PBS_NODEFILE`, `PBS_NODENUM=0`,
/// `PBS_O_WORKDIR`, and, when the job asked for `nodes`, `PBS_RESOURCE_NODES`, `PBS_NP`,
/// `PBS_NUM_NODES` and `PBS_NUM_PPN`; `tmpdir`, the directory `$tmpdir` made for the job,
/// when there is one (whatever `TMPDIR` the job set for itself), as `TMPDIR`. `job_env` is
/// the job's own environment.
pub fn environment(
    job_env: &[(String, String)],
    resource_limits: &str,
    mother_superior: &str,
    base: &[(String, String)],
    tmpdir: Option<&Path>,
) -> Vec<(String, String)> {
    let job = |name: &str| {
        job_env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let nodes = asked_resource(resource_limits, "nodes");
    let mut env = base.to_vec();
    let mut set = |name: &str, value: String| put_env_var(&mut env, name, value);
    set("PBS_MSHOST", mother_superior.into());
    if let Some(file) = job("PBS_NODEFILE") {
        set("PBS_NODEFILE", file);
    }
    set("PBS_NODENUM", "0".into());
    if nodes.is_some() {
        for name in ["PBS_NP", "PBS_NUM_NODES", "PBS_NUM_PPN"] {
            if let Some(v) = job(name) {
                set(name, v);
            }
        }
    }
    if let Some(dir) = job("PBS_O_WORKDIR") {
        set("PBS_O_WORKDIR", dir);
    }
    if let Some(nodes) = nodes {
        set("PBS_RESOURCE_NODES", nodes.into());
    }
    if let Some(dir) = tmpdir {
        set("TMPDIR", dir.display().to_string());
    }
    env
}

/// Whether a script is there to run.
#[derive(Debug, PartialEq, Eq)]
pub enum Located {
    /// No such file: nothing to run.
    Missing,
    Runnable(PathBuf),
    /// There, but not to be run: Torque's return code and why.
    Refused(i32, String),
}

/// Finds `script` for `job` and checks it as Torque does: a regular file owned by
/// `owner` (the MOM's user; for the job's own scripts, the job's user), readable and
/// executable by its owner and writable by nobody else; the `.user` scripts also
/// readable and executable by others, since the job's user runs them.
pub fn locate(dir: &Path, script: Script, owner: u32, job: &PelogJob) -> Located {
    let Some(path) = script.path(dir, job) else {
        return Located::Missing;
    };
    let (owner, others) = match script {
        Script::PrologueJob | Script::EpilogueJob => {
            // The user's path, looked at by root: one the user could not reach counts as
            // missing, so the answer says nothing about what is there.
            // Both the path given and where its links lead (root follows them below).
            let reachable = |id: &Identity| {
                reachable_by(&path, id)
                    && std::fs::canonicalize(&path).is_ok_and(|real| reachable_by(&real, id))
            };
            if job.identity.as_ref().is_some_and(|id| !reachable(id)) {
                return Located::Missing;
            }
            (job.uid, 0)
        }
        Script::PrologueUser | Script::EpilogueUser => (owner, 0o005),
        Script::Prologue | Script::Epilogue => (owner, 0),
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Located::Missing,
        Err(e) => {
            return Located::Refused(
                e.raw_os_error().unwrap_or(RC_REFUSED),
                format!("cannot stat: {e}"),
            )
        }
    };
    let mode = meta.mode();
    let runnable = meta.is_file()
        && meta.uid() == owner
        && mode & 0o500 == 0o500
        && mode & 0o022 == 0
        && mode & others == others;
    if runnable {
        Located::Runnable(path)
    } else {
        Located::Refused(RC_REFUSED, "permission Error".into())
    }
}

/// Whether the user `id` could reach `path`: every directory above it searchable by that
/// user (mode bits; ACLs are not read).
fn reachable_by(path: &Path, id: &Identity) -> bool {
    path.ancestors()
        .skip(1)
        .all(|dir| match std::fs::metadata(dir) {
            Ok(m) => {
                let mode = m.mode();
                if m.uid() == id.uid {
                    mode & 0o100 != 0
                } else if m.gid() == id.gid || id.groups.contains(&m.gid()) {
                    mode & 0o010 != 0
                } else {
                    mode & 0o001 != 0
                }
            }
            Err(_) => false,
        })
}

/// How the MOM runs the scripts.
#[derive(Debug, Clone)]
pub struct Scripts<'a> {
    /// `mom_priv`: where the scripts are, and the root ones' working directory.
    pub dir: &'a Path,
    /// The uid that must own the scripts (the MOM's).
    pub owner: u32,
    /// `$prologalarm`.
    pub alarm: Duration,
}

/// Whether the job asked for a prologue of its own (`-l prologue=`), there or not.
pub fn names_own_prologue(job: &PelogJob) -> bool {
    asked_resource(&job.resource_limits, "prologue").is_some_and(|p| !p.is_empty())
}

/// The value of resource `name` in a `name=value,...` resource-limit string.
fn asked_resource<'l>(resource_limits: &'l str, name: &str) -> Option<&'l str> {
    resource_limits
        .split(',')
        .find_map(|r| r.strip_prefix(name)?.strip_prefix('='))
}

impl Scripts<'_> {
    /// Whether the site has a prologue in `mom_priv` (runnable or not).
    pub fn any_site_prologue(&self) -> bool {
        let job = PelogJob::default();
        [Script::Prologue, Script::PrologueUser]
            .into_iter()
            .any(|script| locate(self.dir, script, self.owner, &job) != Located::Missing)
    }

    /// Runs the prologues in order and stops at the first that fails.
    ///
    /// `wanted` is asked whether the run is still wanted before each script and
    /// after the last (with `None`), and as each script starts (with its pid = session
    /// id, which it may record so that a qdel can kill the script): on `false` the
    /// script just started is killed and no other runs.
    pub fn prologues(
        &self,
        job: &PelogJob,
        mut wanted: impl FnMut(Option<i32>) -> bool,
    ) -> Result<(), Stop> {
        let args = prologue_args(job);
        for script in Script::PROLOGUES {
            if !wanted(None) {
                return Err(Stop::Abandoned);
            }
            self.one(script, job, &args, &mut wanted)
                .map_err(Stop::Failed)?;
        }
        if wanted(None) {
            Ok(())
        } else {
            Err(Stop::Abandoned)
        }
    }

    /// Whether an epilogue is there for `job` (runnable or not).
    pub fn any_epilogue(&self, job: &PelogJob) -> bool {
        Script::EPILOGUES
            .into_iter()
            .any(|script| locate(self.dir, script, self.owner, job) != Located::Missing)
    }

    /// Runs the epilogues in order (all of them: a failure is only reported).
    pub fn epilogues(
        &self,
        job: &PelogJob,
        session_id: i32,
        used: &Usage,
        exit_status: i32,
    ) -> Vec<Failure> {
        let args = epilogue_args(job, session_id, used, exit_status);
        Script::EPILOGUES
            .into_iter()
            .filter_map(|script| self.one(script, job, &args, &mut |_| true).err())
            .collect()
    }

    fn one(
        &self,
        script: Script,
        job: &PelogJob,
        args: &[String],
        wanted: &mut dyn FnMut(Option<i32>) -> bool,
    ) -> Result<(), Failure> {
        let path = match locate(self.dir, script, self.owner, job) {
            Located::Missing => return Ok(()),
            Located::Runnable(path) => path,
            Located::Refused(rc, why) => {
                let path = script.path(self.dir, job).unwrap_or_default();
                return Err(failure(script, &path, rc, &why));
            }
        };
        let rc = self.run(script, &path, job, args, wanted);
        match rc {
            0 => Ok(()),
            RC_UNKILLABLE => Err(failure(
                script,
                &path,
                rc,
                "prolog/epilog timeout occurred, cannot kill child",
            )),
            RC_TIMEOUT => Err(failure(
                script,
                &path,
                rc,
                "prolog/epilog timeout occurred, child cleaned up",
            )),
            _ => Err(failure(script, &path, rc, "nonzero p/e exit status")),
        }
    }

    /// Runs one script to its end or its alarm; Torque's return code.
    fn run(
        &self,
        script: Script,
        path: &Path,
        job: &PelogJob,
        args: &[String],
        wanted: &mut dyn FnMut(Option<i32>) -> bool,
    ) -> i32 {
        let (stdout, stderr) = open_outputs(job);
        let stderr_copy = stderr.as_ref().and_then(|f| f.try_clone().ok());
        let as_user = script.as_user();
        let identity = job.identity.clone().filter(|_| as_user);
        let cwd = if as_user {
            job.home.as_path()
        } else {
            self.dir
        };
        let cwd = CString::new(cwd.as_os_str().as_bytes()).unwrap_or_else(|_| c"/".to_owned());
        let chdir_failed = format!(
            "PBS: chdir to {} failed (running {} in the current directory)\n",
            cwd.to_string_lossy(),
            path.display()
        );
        let mut cmd = Command::new(path);
        cmd.args(args)
            .env_clear()
            .envs(job.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(stdout.map_or_else(Stdio::null, Stdio::from))
            .stderr(stderr.map_or_else(Stdio::null, Stdio::from));
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, the
        // identity switch of `become_user`, chdir, write) on data prepared before.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if as_user {
                    // Torque's 077, not the job's `-W umask`: the site's scripts, not the job.
                    launch::become_user(identity.as_ref(), launch::DEFAULT_UMASK)?;
                }
                if libc::chdir(cwd.as_ptr()) != 0 {
                    // Torque only warns, and runs the script where it is.
                    libc::write(2, chdir_failed.as_ptr().cast(), chdir_failed.len());
                }
                Ok(())
            });
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(mut err) = stderr_copy {
                    let _ = writeln!(err, "execv of {} failed: {e}", path.display());
                }
                return RC_EXEC_FAILED;
            }
        };
        let pid = child.id() as i32;
        if !wanted(Some(pid)) {
            procfs::kill_session(pid, Signal::SIGKILL, true);
        }
        let (done_tx, done_rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            let _ = done_tx.send(());
            status
        });
        let timed_out = matches!(
            done_rx.recv_timeout(self.alarm),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        if timed_out {
            tracing::warn!(job = %job.job_id, script = %path.display(), pid, "$prologalarm reached: killing the script's session");
            procfs::kill_session(pid, Signal::SIGKILL, true);
            if done_rx.recv_timeout(KILL_WAIT).is_err() {
                // The waiter reaps it whenever it dies.
                return RC_UNKILLABLE;
            }
            return RC_TIMEOUT;
        }
        match waiter.join() {
            // A script killed by a signal has no exit code: Torque counts it as 0.
            Ok(Ok(status)) => status.code().unwrap_or(0),
            _ => RC_EXEC_FAILED,
        }
    }
}

fn failure(script: Script, path: &Path, rc: i32, why: &str) -> Failure {
    Failure {
        script,
        rc,
        message: format!(
            "prolog/epilog failed, file: {}, exit: {rc}, {why}",
            path.display()
        ),
    }
}

/// The job's output files, opened for appending, for the script's stdout and
/// stderr (joined streams share one file). A file that cannot be opened safely
/// (see `launch::open_user_file_to_append`) leaves that stream on `/dev/null`.
fn open_outputs(job: &PelogJob) -> (Option<File>, Option<File>) {
    let open = |p: &Path| -> Option<File> {
        if p == Path::new("/dev/null") {
            return None;
        }
        launch::open_user_file_to_append(p, job.uid)
            .map_err(|e| tracing::warn!(job = %job.job_id, "prologue/epilogue output: cannot open {}: {e}", p.display()))
            .ok()
    };
    match &job.streams {
        None => (None, None),
        Some(Streams::Separate { stdout, stderr }) => (open(stdout), open(stderr)),
        Some(Streams::IntoStdout(p) | Streams::IntoStderr(p)) => {
            let file = open(p);
            let copy = file.as_ref().and_then(|f| f.try_clone().ok());
            (file, copy)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn job() -> PelogJob {
        PelogJob {
            job_id: "45.vm".into(),
            user: "testuser".into(),
            group: "testuser".into(),
            job_name: "pelog".into(),
            resource_limits: "nodes=1:ppn=2,walltime=00:02:00,neednodes=1:ppn=2".into(),
            queue: "batch".into(),
            account: String::new(),
            script: "/var/spool/torque/mom_priv/jobs/45.vm.SC".into(),
            ..Default::default()
        }
    }

    #[test]
    fn arguments_are_torques() {
        assert_eq!(
            prologue_args(&job()),
            [
                "45.vm",
                "testuser",
                "testuser",
                "pelog",
                "nodes=1:ppn=2,walltime=00:02:00,neednodes=1:ppn=2",
                "batch",
                "",
                "/var/spool/torque/mom_priv/jobs/45.vm.SC"
            ]
        );
        let used = Usage {
            cput_secs: 3661,
            mem_kb: 2048,
            vmem_kb: 10240,
            walltime_secs: 59,
        };
        let args = epilogue_args(&job(), 15295, &used, 0);
        assert_eq!(args.len(), 11);
        assert_eq!(args[4], "15295");
        assert_eq!(
            args[6],
            "cput=01:01:01,vmem=10240kb,walltime=00:00:59,mem=2048kb,energy_used=0"
        );
        assert_eq!(
            (args[7].as_str(), args[8].as_str(), args[9].as_str()),
            ("batch", "", "0")
        );
        assert_eq!(
            used_string(&Usage::default()),
            "cput=00:00:00,vmem=0kb,walltime=00:00:00,mem=0kb,energy_used=0"
        );
    }

    #[test]
    fn environment_is_torques_small_one() {
        let job_env: Vec<(String, String)> = [
            ("PBS_NODEFILE", "/var/spool/torque/aux//45.vm"),
            ("PBS_NP", "2"),
            ("PBS_NUM_NODES", "1"),
            ("PBS_NUM_PPN", "2"),
            ("PBS_O_WORKDIR", "/home/testuser"),
            ("PBS_JOBID", "45.vm"),
            ("HOME", "/home/testuser"),
            ("TMPDIR", "/scratch/45.vm"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let base = default_base_environment(Some("C.UTF-8"));
        // The job set a TMPDIR of its own; its scripts get the one `$tmpdir` made.
        let job_env: Vec<(String, String)> = job_env
            .into_iter()
            .map(|(k, v)| {
                if k == "TMPDIR" {
                    (k, "/home/testuser/tmp".into())
                } else {
                    (k, v)
                }
            })
            .collect();
        let scratch = Some(Path::new("/scratch/45.vm"));
        let env = environment(&job_env, &job().resource_limits, "vm", &base, scratch);
        let text: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            text,
            [
                "PATH=/bin:/usr/bin",
                "LANG=C.UTF-8",
                "PBS_MSHOST=vm",
                "PBS_NODEFILE=/var/spool/torque/aux//45.vm",
                "PBS_NODENUM=0",
                "PBS_NP=2",
                "PBS_NUM_NODES=1",
                "PBS_NUM_PPN=2",
                "PBS_O_WORKDIR=/home/testuser",
                "PBS_RESOURCE_NODES=1:ppn=2",
                "TMPDIR=/scratch/45.vm"
            ]
        );
        // Without a nodes request, the node counts are not given (Torque's rule).
        let env = environment(
            &job_env,
            "procs=3",
            "vm",
            &default_base_environment(None),
            None,
        );
        assert!(env
            .iter()
            .all(|(k, _)| !k.starts_with("PBS_NUM") && k != "PBS_NP" && k != "LANG"));
        // A site's pbs_environment is the base instead; its names are replaced in place.
        let site = [("TZ", "UTC"), ("PBS_NODENUM", "9"), ("PATH", "/opt/bin")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = environment(&job_env, "procs=3", "vm", &site, None);
        let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(&names[..4], ["TZ", "PBS_NODENUM", "PATH", "PBS_MSHOST"]);
        assert_eq!(env[1].1, "0");
        assert_eq!(env[2].1, "/opt/bin");
        // No directory made: no TMPDIR, whatever the job set.
        assert!(env.iter().all(|(k, _)| k != "TMPDIR"));
    }

    #[test]
    fn prologue_failures_map_to_torques_exit_statuses() {
        assert_eq!(prologue_exit_status(1), -2);
        for rc in [2, 255, RC_REFUSED, RC_TIMEOUT, RC_EXEC_FAILED] {
            assert_eq!(prologue_exit_status(rc), -14, "rc {rc}");
        }
    }

    #[test]
    fn scripts_are_checked_as_torque_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = nix::unistd::geteuid().as_raw();
        let write = |name: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        assert_eq!(
            locate(dir.path(), Script::Prologue, me, &job()),
            Located::Missing
        );
        write("prologue", 0o500);
        assert!(matches!(
            locate(dir.path(), Script::Prologue, me, &job()),
            Located::Runnable(_)
        ));
        // Someone else's file, or one others may change, is not run.
        assert!(matches!(
            locate(dir.path(), Script::Prologue, me + 1, &job()),
            Located::Refused(-1, _)
        ));
        for mode in [0o520, 0o502, 0o400, 0o100] {
            write("prologue", mode);
            assert!(
                matches!(
                    locate(dir.path(), Script::Prologue, me, &job()),
                    Located::Refused(-1, _)
                ),
                "mode {mode:o}"
            );
        }
        // The user's scripts must be readable and executable by the job's user too.
        write("epilogue.user", 0o500);
        assert!(matches!(
            locate(dir.path(), Script::EpilogueUser, me, &job()),
            Located::Refused(-1, _)
        ));
        write("epilogue.user", 0o755);
        assert!(matches!(
            locate(dir.path(), Script::EpilogueUser, me, &job()),
            Located::Runnable(_)
        ));
        std::fs::create_dir(dir.path().join("epilogue")).expect("mkdir");
        assert!(matches!(
            locate(dir.path(), Script::Epilogue, me, &job()),
            Located::Refused(-1, _)
        ));
    }

    #[test]
    fn the_jobs_own_scripts_are_where_it_asked_and_must_be_its_users() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = nix::unistd::geteuid().as_raw();
        let mut job = job();
        job.uid = me;
        job.env = vec![("PBS_O_WORKDIR".into(), dir.path().display().to_string())];
        assert_eq!(
            locate(dir.path(), Script::PrologueJob, me, &job),
            Located::Missing
        );
        job.resource_limits = "walltime=00:01:00,prologue=pre.sh,epilogue=/nonexistent/post".into();
        assert_eq!(
            locate(dir.path(), Script::PrologueJob, me, &job),
            Located::Missing
        );
        let pre = dir.path().join("pre.sh");
        std::fs::write(&pre, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&pre, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_eq!(
            locate(dir.path(), Script::PrologueJob, me + 1, &job),
            Located::Runnable(pre.clone())
        );
        assert_eq!(
            locate(dir.path(), Script::EpilogueJob, me, &job),
            Located::Missing
        );
        // Another user's file is not run as this job's.
        job.uid = me + 1;
        assert!(matches!(
            locate(dir.path(), Script::PrologueJob, me, &job),
            Located::Refused(-1, _)
        ));
        // Behind a directory the user may not search, it is as good as missing.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let open = dir.path().join("open.sh");
        std::fs::write(&open, "#!/bin/sh\n").expect("write");
        job.resource_limits = format!("prologue={}", open.display());
        let stranger = Identity {
            uid: me + 1,
            gid: 54321,
            groups: vec![54321],
        };
        job.identity = Some(stranger.clone());
        assert!(matches!(
            locate(dir.path(), Script::PrologueJob, me, &job),
            Located::Refused(-1, _)
        ));
        let hidden = dir.path().join("hidden");
        std::fs::create_dir(&hidden).expect("mkdir");
        std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(hidden.join("pre.sh"), "#!/bin/sh\n").expect("write");
        job.resource_limits = format!("prologue={}", hidden.join("pre.sh").display());
        assert_eq!(
            locate(dir.path(), Script::PrologueJob, me, &job),
            Located::Missing
        );
    }

    /// Writes a script this test then runs, through a `cat` child, so that this process never
    /// holds it open for writing: other tests fork meanwhile, and a child holding an
    /// inherited write descriptor until its exec makes the script's exec fail (ETXTBSY).
    fn write_script(path: &Path, body: &str, mode: u32) {
        let mut cat = Command::new("sh")
            .args(["-c", "cat > \"$0\""])
            .arg(path)
            .stdin(Stdio::piped())
            .spawn()
            .expect("sh");
        cat.stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("write");
        assert!(cat.wait().expect("wait").success());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_script_runs_with_its_arguments_and_its_code_is_returned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        std::fs::write(&out, "").expect("out");
        let script = dir.path().join("prologue");
        write_script(
            &script,
            "#!/bin/sh\necho \"$# $1 $PBS_MSHOST $(pwd)\"\nexit 3\n",
            0o500,
        );
        let mut job = job();
        job.uid = nix::unistd::geteuid().as_raw();
        job.streams = Some(Streams::IntoStdout(out.clone()));
        job.env = vec![("PBS_MSHOST".into(), "vm".into())];
        let scripts = Scripts {
            dir: dir.path(),
            owner: job.uid,
            alarm: Duration::from_secs(30),
        };
        let mut seen = Vec::new();
        let stop = scripts
            .prologues(&job, |pid| {
                seen.push(pid);
                true
            })
            .expect_err("exit 3 fails");
        let Stop::Failed(failed) = stop else {
            panic!("{stop:?}");
        };
        assert_eq!((failed.script, failed.rc), (Script::Prologue, 3));
        assert!(
            failed.message.ends_with("exit: 3, nonzero p/e exit status"),
            "{}",
            failed.message
        );
        assert_eq!(seen.len(), 2);
        assert!(seen[0].is_none() && seen[1].is_some_and(|pid| pid > 1));
        let printed = std::fs::read_to_string(&out).expect("read");
        assert_eq!(printed, format!("8 45.vm vm {}\n", dir.path().display()));
    }

    #[test]
    fn a_run_no_longer_wanted_kills_its_prologue_and_runs_no_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("user-ran");
        let write = |name: &str, body: String, mode: u32| {
            write_script(&dir.path().join(name), &body, mode);
        };
        write("prologue", "#!/bin/sh\nexec sleep 60\n".into(), 0o500);
        write(
            "prologue.user",
            format!("#!/bin/sh\ntouch {}\n", marker.display()),
            0o755,
        );
        let owner = nix::unistd::geteuid().as_raw();
        let scripts = Scripts {
            dir: dir.path(),
            owner,
            alarm: Duration::from_secs(60),
        };
        let started = std::time::Instant::now();
        // Wanted until the first script has started (a qdel then).
        let mut asked = 0;
        let stop = scripts.prologues(&job(), |_| {
            asked += 1;
            asked == 1
        });
        assert_eq!(stop, Err(Stop::Abandoned));
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(!marker.exists(), "prologue.user ran");
    }

    #[test]
    fn a_script_past_its_alarm_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("epilogue");
        // A child of its own that holds the output pipe open too: the whole session goes.
        write_script(&script, "#!/bin/sh\nsleep 60 &\nsleep 60\n", 0o500);
        let owner = nix::unistd::geteuid().as_raw();
        let scripts = Scripts {
            dir: dir.path(),
            owner,
            alarm: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let failed = scripts.epilogues(&job(), 0, &Usage::default(), 0);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].rc, RC_TIMEOUT);
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
