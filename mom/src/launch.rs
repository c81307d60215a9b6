//! Starting a job's shell as its user: the job's own `fork`/`exec` code. (The MOM forks
//! otherwise only through std's `Command`, which runs nothing but async-signal-safe calls
//! before exec: the copy helper of `deliver` and the prologue and epilogue scripts of
//! `pelog`, both rare enough that a fork of the MOM is no cost.)
//!
//! Three steps, split so that the risky part runs in the smallest process:
//!
//! * [`prepare`] (in the MOM): everything that can allocate or read files:
//!   user and group lookup, the output paths, the spool directory and script,
//!   the node file, the environment. The result is an [`ExecPlan`].
//! * [`launch`] (in the MOM): has the spawner fork the run's supervisor (see
//!   `spawner`; [`spawn_supervisor`] execs one, `capstan_supervisor
//!   --capstan-supervise`, when no spawner can run), hands it the plan as JSON
//!   and reads back the shell's pid. Nothing is forked from the multi-threaded
//!   MOM, whose page tables make a fork costly and after which only
//!   async-signal-safe code may run: the spawner and an exec'd supervisor are
//!   started with std's `Command` on its `posix_spawn` path (no `pre_exec`,
//!   uid, gid or groups), and the supervisor calls `setsid` itself.
//! * [`spawn_job`] (in the supervisor): forks the shell. Between `fork` and
//!   `exec` the child makes only async-signal-safe system calls on data
//!   prepared before the fork, and it waits before `execve` until the MOM has
//!   recorded the run as running (see [`HeldShell`]).
//!
//! In the child, in order: signals unblocked and SIGPIPE at its default, `setsid`
//! (the job gets its own session and process group, so signals reach all of
//! it), `setgroups`/`setgid`/`setuid` (only when
//! the MOM is root and the user differs), `umask 077`, then the output files
//! are opened *as the user* with `O_NOFOLLOW` (so root never writes through a
//! path the user controls): the spool files `JOBID.OU`/`.ER` in the job's own
//! spool directory, or the `$HOME` file for a stream kept with `-k` (see
//! `paths::spool`; the copy to the requested path happens after the job, as the
//! user, in `deliver`), `chdir`, and `execve` of the job's shell (a login shell
//! unless the MOM config says `$source_login_batch false`), once the MOM's
//! release is read and stdin is the pipe holding the line the shell runs (the
//! script's path and `-F`'s arguments, Torque's SHELL_INVOKE). If the
//! shell cannot be exec'd the child writes Torque's message to its stderr file
//! and exits 254, which is the job's exit status.
//!
//! The child reports through a close-on-exec pipe: a failed step (one byte
//! naming it, then the errno), "ready" once set up, and "held back" if the
//! release does not come.

use std::ffi::{CString, OsStr};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use nix::unistd::{Gid, Group, Uid, User};
use serde::{Deserialize, Serialize};

use crate::deliver::{self, DeliveryPlan};
use crate::job::RunSpec;
use crate::layout::{safe_component, Layout};
use crate::limits::ProcessLimits;
use crate::paths::{self, OutputRequest, Streams};
use crate::pbs_environment::put_env_var;
use crate::pelog::{self, PelogJob};
use crate::spawner::{Spawner, SupervisorProcess};
use crate::supervisor::{Link, Started};

/// Torque's MOM manager port, exported as `PBS_MOMPORT` for compatibility.
const PBS_MOMPORT: &str = "15003";
/// `PATH` when the job's environment does not carry one; the login shell's
/// profile usually extends it.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why a run could not be started; becomes `RunEnded{exit_status: -1, message}`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LaunchError(pub String);

/// A started run.
#[derive(Debug)]
pub struct Launched {
    /// Pid of the shell = its session id = its process group id.
    pub pid: i32,
    /// The supervisor that waits for the shell.
    pub supervisor: SupervisorProcess,
    pub uid: u32,
    /// What the job's shell opened (spool files, or `$HOME` files with `-k`).
    pub streams: Streams,
    pub start_time: i64,
    /// What to copy where when the job ends.
    pub delivery: DeliveryPlan,
    /// The pipes to the supervisor, for the rest of the run (see `supervisor`).
    pub link: Link,
    /// The supervisor kills the job if this MOM goes away and no other adopts the run.
    pub watches_mom: bool,
    /// What the prologue and epilogue are told (see `pelog`).
    pub pelog: PelogJob,
    /// The job's own `TMPDIR` (`$tmpdir`), if any.
    pub tmpdir: Option<PathBuf>,
    /// An interactive run's terminal, which the runner has paired at the server before it
    /// releases the shell (see `terminal`).
    pub terminal: Option<crate::terminal::Pty>,
}

/// How runs start, as the MOM's config says (read at each start: a SIGHUP changes it for
/// the runs started after).
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Start the shell as a login shell (`$source_login_batch`).
    pub login: bool,
    /// See [`ExecPlan::orphan_timeout_ms`].
    pub orphan_timeout_ms: u64,
    /// `$tmpdir`: each job gets a directory of its own in it, `DIR/JOBID` (0700, the
    /// user's), as `TMPDIR`; removed with the job's other files.
    pub tmpdir: Option<PathBuf>,
    /// The job's `-l` limits its shell takes (see `limits`).
    pub limits: ProcessLimits,
    /// `pbs_environment`'s variables (`None`: no such file; see `pbs_environment`).
    pub base_env: Option<Vec<(String, String)>>,
}

/// The identity a job's process takes (only when the MOM switches user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// Everything needed to exec a job's shell, resolved by the MOM and handed to
/// the supervisor (as JSON on its stdin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecPlan {
    pub user_name: String,
    pub uid: u32,
    pub identity: Option<Identity>,
    pub streams: Streams,
    pub workdir: PathBuf,
    pub shell: PathBuf,
    /// Start the shell as a login shell (`-bash`), as Torque does unless the
    /// MOM config says `$source_login_batch false`.
    pub login: bool,
    pub script: PathBuf,
    pub env: Vec<(String, String)>,
    /// What to copy after the job ends. The MOM keeps it (in the run record);
    /// it does not travel to the supervisor, which copies as `identity` what
    /// the MOM names when the job has ended.
    #[serde(skip)]
    pub delivery: DeliveryPlan,
    /// What the prologue and epilogue are told; the MOM runs them (see `pelog`).
    #[serde(skip)]
    pub pelog: PelogJob,
    /// The job's own `TMPDIR`, made by the MOM (see [`StartOptions::tmpdir`]).
    #[serde(skip)]
    pub tmpdir: Option<PathBuf>,
    /// `tmpdir` was made by this launch (not an earlier run's, reused).
    #[serde(skip)]
    pub tmpdir_made: bool,
    /// Once the MOM is gone (EOF on the supervisor's stdin), how long the supervisor lets
    /// the job run before killing it, unless a new MOM adopts the run (ms; 0: never).
    #[serde(default)]
    pub orphan_timeout_ms: u64,
    /// The job's umask (`-W umask=`, else Torque's 077): its processes' and, through the
    /// mode 0666 they are created with, its output files'.
    #[serde(default = "default_umask")]
    pub umask: u32,
    /// `-F`: the script's arguments, after its path on the line the shell reads.
    #[serde(default)]
    pub arguments: Vec<String>,
    /// The `-l` limits set on the shell before exec (`setrlimit`, `nice`).
    #[serde(default)]
    pub limits: ProcessLimits,
    /// An interactive job's terminal (its slave's path, see `terminal`): the shell's
    /// controlling terminal and its stdin, stdout and stderr, instead of files and a script.
    #[serde(default)]
    pub terminal: Option<PathBuf>,
    /// `qsub -I -x`: the command the interactive shell runs (`SHELL -c COMMAND`).
    #[serde(default)]
    pub command: Option<String>,
}

/// Torque's umask for a job that gave none.
pub const DEFAULT_UMASK: u32 = 0o077;

pub(crate) fn default_umask() -> u32 {
    DEFAULT_UMASK
}

/// Steps of the child's setup, sent back over the error pipe.
#[repr(u8)]
#[derive(Clone, Copy)]
enum Step {
    Setsid = 1,
    Identity = 2,
    Stdout = 3,
    Stderr = 4,
    Chdir = 5,
    Stdin = 6,
    Limits = 7,
    Terminal = 8,
}

/// How the child opens its standard output and error.
enum Opens {
    Separate(CString, CString),
    Both(CString),
    /// An interactive job's terminal: also its stdin and controlling terminal.
    Terminal(CString),
}

/// Everything the child needs, prepared before `fork`. The descriptors stay
/// owned by [`spawn_job`]; the child only uses their numbers.
struct ChildPlan {
    identity: Option<Identity>,
    umask: u32,
    /// `setrlimit` pairs (soft = hard) and the `nice` increment, set as root.
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    nice: Option<i32>,
    opens: Opens,
    workdir: CString,
    shell: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    exec_fail_msg: Vec<u8>,
    /// The job's stdin once the release has been read: a pipe holding the command line
    /// (see [`script_command_line`]), then end of file; -1 for an interactive job, whose
    /// stdin is its terminal.
    stdin: RawFd,
    /// Write end of the report pipe (see [`HeldShell`]; a failed step and its errno).
    report: RawFd,
    /// The supervisor's end of it, closed first thing in the child.
    report_read: RawFd,
}

/// Resolves the user, writes the spool and node files, and starts the run's
/// supervisor, which forks the shell (a login shell when `login`) and holds it
/// before exec: the caller records the run, then releases the shell with
/// [`Link::go`], or drops the link to stop it (see `supervisor`). Blocking:
/// call it from a blocking thread.
pub fn launch(
    spec: &RunSpec,
    layout: &Layout,
    node_name: &str,
    spawner: &Spawner,
    options: &StartOptions,
) -> Result<Launched, LaunchError> {
    let mut plan = prepare(spec, layout, node_name, options)?;
    plan.orphan_timeout_ms = options.orphan_timeout_ms;
    let made_tmpdir = plan.tmpdir.clone().filter(|_| plan.tmpdir_made);
    let terminal = spec
        .terminal
        .as_ref()
        .map(|t| crate::terminal::open_pty(plan.uid, t.rows, t.cols))
        .transpose()
        .map_err(|e| LaunchError(format!("PBS: {e}")));
    let launched = terminal.and_then(|terminal| {
        plan.terminal = terminal.as_ref().map(|pty| pty.slave_path.clone());
        start_supervisor(spec, layout, spawner, plan, terminal)
    });
    if let (Err(_), Some(dir)) = (&launched, made_tmpdir) {
        // Made for this launch and never used: gone again (only if still empty).
        let _ = std::fs::remove_dir(dir);
    }
    launched
}

/// The launch once the plan is made: the supervisor started and the shell held.
fn start_supervisor(
    spec: &RunSpec,
    layout: &Layout,
    spawner: &Spawner,
    plan: ExecPlan,
    terminal: Option<crate::terminal::Pty>,
) -> Result<Launched, LaunchError> {
    let json = serde_json::to_vec(&plan)
        .map_err(|e| LaunchError(format!("PBS: cannot encode job plan: {e}")))?;
    let start_time = crate::status::now_secs();
    let (mut supervisor, mut link) = spawner.spawn(&layout.exit_file(spec.run_id))?;
    let refused = match link.start(&json) {
        Ok(Started::Held { pid, watches_mom }) => {
            return Ok(Launched {
                pid,
                supervisor,
                uid: plan.uid,
                streams: plan.streams,
                start_time,
                delivery: plan.delivery,
                link,
                watches_mom,
                pelog: plan.pelog,
                tmpdir: plan.tmpdir,
                terminal,
            })
        }
        // It says why and exits.
        Ok(Started::Failed(why)) => LaunchError(why),
        Ok(Started::Unheld(pid)) => {
            // Its job runs before the run could be recorded: stopped, not tracked.
            let kill = nix::sys::signal::Signal::SIGKILL;
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), kill);
            supervisor.kill();
            LaunchError(format!(
                "PBS: {} is older than pbs_mom (it does not hold the job's shell); install both from one build",
                spawner.program().display()
            ))
        }
        Err(talk) => {
            supervisor.kill();
            LaunchError(format!("PBS: job supervisor failed ({talk})"))
        }
    };
    // Until it is gone: what it wrote is final then.
    link.close();
    supervisor.reap();
    Err(refused)
}

/// Execs a supervisor (`supervisor::program`) that will write the shell's end
/// to `exit_file`, and the MOM's end of its pipes: the fallback when no
/// spawner can run (see `spawner`).
pub fn spawn_supervisor(supervisor: &Path, exit_file: &Path) -> Result<(Child, Link), LaunchError> {
    // Keep this Command on std's posix_spawn path (see the module comment):
    // no pre_exec, uid, gid or groups. The program is a path and the
    // environment is empty, so no PATH search is needed either.
    let mut child = crate::supervisor::helper_command(supervisor, crate::supervisor::SUPERVISE_ARG)
        .arg(exit_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            LaunchError(format!(
                "PBS: cannot start supervisor {}: {e}",
                supervisor.display()
            ))
        })?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(LaunchError("PBS: job supervisor has no pipes".into()));
    };
    Ok((child, Link::new(stdin, stdout)))
}

/// Resolves everything about a run before anything is forked: the user and
/// group, output files, spool and node files, environment.
pub fn prepare(
    spec: &RunSpec,
    layout: &Layout,
    node_name: &str,
    options: &StartOptions,
) -> Result<ExecPlan, LaunchError> {
    let fail = |m: String| Err(LaunchError(m));
    let umask = spec.umask.unwrap_or(DEFAULT_UMASK);
    if !safe_component(&spec.job_id) {
        return fail(format!("invalid job id {:?}", spec.job_id));
    }
    let user = match User::from_name(&spec.euser) {
        Ok(Some(u)) => u,
        Ok(None) => {
            return fail(format!(
                "Bad UID for job execution: no user {:?} on {node_name}",
                spec.euser
            ))
        }
        Err(e) => return fail(format!("cannot look up user {:?}: {e}", spec.euser)),
    };
    if user.uid.is_root() && !spec.allow_root {
        return fail("Bad UID for job execution: root jobs are not allowed".into());
    }
    let mom_uid = Uid::effective();
    if !mom_uid.is_root() && user.uid != mom_uid {
        return fail(format!(
            "pbs_mom runs as uid {mom_uid} and cannot run jobs of user {} (uid {})",
            user.name, user.uid
        ));
    }
    let switch = mom_uid.is_root() && user.uid != mom_uid;
    let gid = resolve_group(spec, &user, switch)?;
    let identity = if switch {
        let name = CString::new(user.name.as_str())
            .map_err(|_| LaunchError(format!("bad user name {:?}", user.name)))?;
        let groups = nix::unistd::getgrouplist(&name, gid)
            .map_err(|e| LaunchError(format!("cannot list groups of {}: {e}", user.name)))?;
        Some(Identity {
            uid: user.uid.as_raw(),
            gid: gid.as_raw(),
            groups: groups.iter().map(|g| g.as_raw()).collect(),
        })
    } else {
        None
    };

    let final_streams = paths::resolve(&OutputRequest {
        output_path: &spec.output_path,
        error_path: &spec.error_path,
        join_path: &spec.join_path,
        keep_files: &spec.keep_files,
        job_name: &spec.job_name,
        job_seq: &spec.job_seq,
        home: &user.dir,
    });
    let spooled = paths::spool(
        &final_streams,
        &spec.keep_files,
        &layout.spool_dir(&spec.job_id),
        &spec.job_id,
    );
    let interactive = spec.terminal.is_some();
    let delivery = DeliveryPlan {
        job_id: spec.job_id.clone(),
        user_name: user.name.clone(),
        uid: user.uid.as_raw(),
        identity: identity.clone(),
        dest_prefix: deliver::dest_prefix(&user.name, &spec.env),
        // An interactive job writes to its terminal: no output files, nothing to copy
        // (Torque's std_file_name names the pty for it).
        files: if interactive {
            Vec::new()
        } else {
            spooled.deliveries
        },
        umask,
    };

    let owner = switch.then_some((user.uid, gid));
    let script = write_spool(spec, layout, owner)?;
    write_nodefile(spec, layout, node_name, owner)?;
    let (tmpdir, tmpdir_made) = match &options.tmpdir {
        Some(dir) => {
            let (path, made) = make_tmpdir(dir, &spec.job_id, owner)?;
            (Some(path), made)
        }
        None => (None, false),
    };

    let login_shell = if user.shell.as_os_str().is_empty() {
        PathBuf::from("/bin/sh")
    } else {
        user.shell.clone()
    };
    let shell = shell_for(&spec.shell, node_name).unwrap_or_else(|| login_shell.clone());
    let workdir = if spec.init_work_dir.is_empty() {
        user.dir.clone()
    } else {
        PathBuf::from(&spec.init_work_dir)
    };
    let base_env = options.base_env.as_deref();
    let mut env = build_env(
        spec,
        layout,
        node_name,
        &user,
        &shell,
        tmpdir.as_deref(),
        base_env.unwrap_or(&[]),
    );
    if let Some(terminal) = &spec.terminal {
        // As Torque's start_interactive_session: qsub's TERM, and no ENVIRONMENT=BATCH.
        env.retain(|(k, _)| k != "ENVIRONMENT");
        let term = if terminal.term.is_empty() || terminal.term.contains('\0') {
            "unknown".to_string()
        } else {
            terminal.term.clone()
        };
        put_env_var(&mut env, "TERM", term);
    }
    let group = if spec.egroup.is_empty() {
        Group::from_gid(gid)
            .ok()
            .flatten()
            .map_or_else(|| gid.to_string(), |g| g.name)
    } else {
        spec.egroup.clone()
    };
    let pelog = PelogJob {
        job_id: spec.job_id.clone(),
        user: user.name.clone(),
        group,
        job_name: spec.job_name.clone(),
        resource_limits: spec.resource_limits.clone(),
        queue: spec.queue.clone(),
        account: spec.account.clone(),
        script: script.clone(),
        env: pelog::environment(
            &env,
            &spec.resource_limits,
            node_name,
            &base_env.map_or_else(
                || pelog::default_base_environment(std::env::var("LANG").ok().as_deref()),
                <[(String, String)]>::to_vec,
            ),
            tmpdir.as_deref(),
        ),
        streams: Some(spooled.open.clone()),
        uid: user.uid.as_raw(),
        identity: identity.clone(),
        home: user.dir.clone(),
    };
    Ok(ExecPlan {
        user_name: user.name.clone(),
        uid: user.uid.as_raw(),
        identity,
        streams: spooled.open,
        workdir,
        shell,
        // Torque's `$source_login_interactive` (default on) is not `$source_login_batch`.
        login: options.login || interactive,
        script,
        env,
        delivery,
        pelog,
        tmpdir,
        tmpdir_made,
        orphan_timeout_ms: 0,
        umask,
        arguments: spec.arguments.clone(),
        limits: options.limits,
        terminal: None,
        command: spec
            .terminal
            .as_ref()
            .map(|t| t.command.clone())
            .filter(|c| !c.is_empty()),
    })
}

/// A job's shell, forked and set up as its user (session, identity, output
/// files, working directory) and held just before `execve` until the MOM's
/// release: the `go` line the MOM writes to the supervisor's stdin once it has
/// recorded the run as running, which the held child reads itself (so the
/// supervisor need not wake for it). A MOM that dies before that leaves a run
/// that never ran a line of its script, so the next MOM's "never started" is
/// true.
#[derive(Debug)]
pub struct HeldShell {
    /// The shell's pid (= its session and process group id).
    pub pid: i32,
    /// Read end of the child's report pipe: [`HELD_BACK`] when it exited without
    /// the release, EOF when it exec'd (the pipe is close-on-exec).
    report: std::fs::File,
}

impl HeldShell {
    /// Once the child is reaped: whether it exited without exec'ing the job,
    /// because the release did not come.
    pub fn was_held_back(mut self) -> bool {
        let mut byte = [0u8; 1];
        self.report.read_exact(&mut byte).is_ok() && byte[0] == HELD_BACK
    }
}

/// The release: what the MOM writes to let a held shell exec (see [`HeldShell`]).
pub const RELEASE: &[u8; 3] = b"go\n";
/// The child's report: set up and waiting for the release.
const READY: u8 = b'R';
/// The child's report: the release did not come, so it exits without exec'ing.
const HELD_BACK: u8 = b'H';
/// Exit code of a child held back, or whose setup failed (its report says which).
const NOT_EXECED_EXIT: i32 = 126;

/// Forks the job's shell as the plan says and holds it before `execve` (see
/// [`HeldShell`]). Used by the supervisor, which is single-threaded: the child
/// of its `fork` may run the prepared setup without an exec in between. The
/// supervisor's stdin must be the MOM's pipe, unread past the plan's line.
pub fn spawn_job(plan: &ExecPlan) -> Result<HeldShell, LaunchError> {
    let ExecPlan {
        user_name,
        uid,
        identity,
        streams,
        workdir,
        shell,
        login,
        script,
        env,
        delivery: _,
        pelog: _,
        tmpdir: _,
        tmpdir_made: _,
        orphan_timeout_ms: _,
        umask,
        arguments,
        limits,
        terminal,
        command,
    } = plan;
    // Torque's default (SHELL_INVOKE): the shell gets no argument; its stdin holds one
    // line, the script's path and `-F`'s arguments, which it runs as a command, so the
    // script's `#!` line chooses its interpreter (a Python job script runs under Python).
    // An interactive shell reads its terminal instead; with `-x`, it runs the command.
    let mut argv = vec![cstr(argv0(shell, *login))?];
    if let (Some(_), Some(command)) = (terminal, command) {
        argv.push(cstr("-c")?);
        argv.push(cstr(command.as_bytes())?);
    }
    let stdin = match terminal {
        Some(_) => None,
        None => Some(command_pipe(&script_command_line(script, arguments)?)?),
    };
    let envp = env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}").into_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let opens = match (terminal, streams) {
        (Some(tty), _) => Opens::Terminal(path_cstr(tty)?),
        (None, Streams::Separate { stdout, stderr }) => {
            Opens::Separate(path_cstr(stdout)?, path_cstr(stderr)?)
        }
        (None, Streams::IntoStdout(p) | Streams::IntoStderr(p)) => Opens::Both(path_cstr(p)?),
    };
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| LaunchError(format!("PBS: pipe: {e}")))?;
    let child_plan = ChildPlan {
        identity: identity.clone(),
        umask: *umask,
        rlimits: limits
            .rlimits()
            .into_iter()
            .map(|(limit, value)| (limit.resource(), value))
            .collect(),
        nice: limits.nice,
        opens,
        workdir: path_cstr(workdir)?,
        shell: path_cstr(shell)?,
        argv_ptrs: ptrs(&argv),
        _argv: argv,
        envp_ptrs: ptrs(&envp),
        _envp: envp,
        exec_fail_msg: format!("PBS: exec of shell '{}' failed\n", shell.display()).into_bytes(),
        stdin: stdin.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
        report: report_write.as_raw_fd(),
        report_read: report_read.as_raw_fd(),
    };
    // SAFETY: the supervisor is single-threaded (see above), and the child
    // runs only `child_setup`, which never returns.
    let pid = match unsafe { nix::unistd::fork() } {
        Err(e) => {
            return Err(LaunchError(format!(
                "PBS: cannot fork the job's shell: {e}"
            )))
        }
        Ok(nix::unistd::ForkResult::Child) => child_setup(&child_plan),
        Ok(nix::unistd::ForkResult::Parent { child }) => child.as_raw(),
    };
    drop((report_write, stdin));
    let mut report = std::fs::File::from(report_read);
    // READY once the child is set up and waits for the release; on a failed
    // step, the step and its errno.
    let mut first = [0u8; 1];
    if report.read_exact(&mut first).is_ok() && first[0] == READY {
        return Ok(HeldShell { pid, report });
    }
    let mut errno = [0u8; 4];
    let errno = report
        .read_exact(&mut errno)
        .map_or(0, |()| i32::from_ne_bytes(errno));
    let _ = crate::supervisor::wait_child(pid);
    let errno = io::Error::from_raw_os_error(errno);
    let what = match first[0] {
        s if s == Step::Setsid as u8 => "setsid failed".to_string(),
        s if s == Step::Identity as u8 => {
            format!("cannot switch to user {user_name} (uid {uid})")
        }
        s if s == Step::Stdin as u8 => "cannot redirect stdin".to_string(),
        s if s == Step::Terminal as u8 => "cannot open the job's terminal".to_string(),
        s if s == Step::Stdout as u8 => {
            format!("cannot open output file {}", out_path(streams).display())
        }
        s if s == Step::Stderr as u8 => format!(
            "cannot open error file {}",
            streams.stderr_target().display()
        ),
        s if s == Step::Chdir as u8 => {
            format!("cannot change to directory {}", workdir.display())
        }
        // Torque's words (start_exec.c), with the cause.
        s if s == Step::Limits as u8 => "unable to set limits".to_string(),
        _ => "cannot start job shell".to_string(),
    };
    Err(LaunchError(format!("PBS: {what}: {errno}")))
}

/// The most a command line may take: it is written into a pipe before the shell runs,
/// so it must fit the pipe's buffer (64 KiB on Linux) with room to spare.
const MAX_COMMAND_LINE: usize = 32 * 1024;

/// The line the job's shell reads on its stdin, as Torque's MOM writes it: the script's
/// path (quoted here, so a `PBS_HOME` with a space still works), then `-F`'s arguments as
/// given, for the shell to split and expand.
fn script_command_line(script: &Path, arguments: &[String]) -> Result<Vec<u8>, LaunchError> {
    let path = script.as_os_str().as_bytes();
    let mut line = Vec::with_capacity(path.len() + 3);
    line.push(b'\'');
    for &b in path {
        if b == b'\'' {
            line.extend_from_slice(b"'\\''");
        } else {
            line.push(b);
        }
    }
    line.push(b'\'');
    for argument in arguments {
        line.push(b' ');
        line.extend_from_slice(argument.as_bytes());
    }
    line.push(b'\n');
    if line.len() > MAX_COMMAND_LINE || line[..line.len() - 1].iter().any(|&b| b == b'\n' || b == 0)
    {
        return Err(LaunchError(
            "PBS: the job's arguments are too long or hold a newline".into(),
        ));
    }
    Ok(line)
}

/// A pipe whose read end holds `line` and then end of file (its write end is closed).
fn command_pipe(line: &[u8]) -> Result<std::os::fd::OwnedFd, LaunchError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| LaunchError(format!("PBS: pipe: {e}")))?;
    let mut write = std::fs::File::from(write);
    write
        .write_all(line)
        .map_err(|e| LaunchError(format!("PBS: cannot write the job's command line: {e}")))?;
    Ok(read)
}

/// The shell of `-S path[@host][,path[@host]...]` for this node, as Torque's `set_shell`
/// picks it: the entry naming this host, else the last one naming none; `None` (the
/// user's login shell) when no entry applies.
fn shell_for(list: &str, node_name: &str) -> Option<PathBuf> {
    let mut chosen = None;
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.split_once('@') {
            // (An entry with no path names no shell: the login shell stays.)
            Some(("", _)) => {}
            Some((path, host)) => {
                if host == node_name || hostname_is(host) {
                    return Some(PathBuf::from(path));
                }
            }
            None => chosen = Some(PathBuf::from(entry)),
        }
    }
    chosen
}

/// Whether `name` is this machine's host name, short or full.
fn hostname_is(name: &str) -> bool {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .is_some_and(|h| h == name || h.split('.').next() == Some(name))
}

fn out_path(streams: &Streams) -> &Path {
    match streams {
        Streams::Separate { stdout, .. } => stdout,
        Streams::IntoStdout(p) | Streams::IntoStderr(p) => p,
    }
}

/// The job's group: `egroup` if given (the user must belong to it when the
/// MOM switches identity), else the user's primary group.
fn resolve_group(spec: &RunSpec, user: &User, switch: bool) -> Result<Gid, LaunchError> {
    if spec.egroup.is_empty() || !switch {
        return Ok(user.gid);
    }
    let group = match Group::from_name(&spec.egroup) {
        Ok(Some(g)) => g,
        Ok(None) => {
            return Err(LaunchError(format!(
                "Bad GID for job execution: no group {:?}",
                spec.egroup
            )))
        }
        Err(e) => {
            return Err(LaunchError(format!(
                "cannot look up group {:?}: {e}",
                spec.egroup
            )))
        }
    };
    if group.gid != user.gid && !group.mem.contains(&user.name) {
        return Err(LaunchError(format!(
            "Bad GID for job execution: user {} is not in group {}",
            user.name, group.name
        )));
    }
    Ok(group.gid)
}

/// Writes the script to `jobs/JOBID/JOBID.SC`. The directory is created 0700
/// by root, the script created exclusively in it, and only then is ownership
/// handed to the user, so the user never controls a path root writes through.
fn write_spool(
    spec: &RunSpec,
    layout: &Layout,
    owner: Option<(Uid, Gid)>,
) -> Result<PathBuf, LaunchError> {
    let dir = layout.spool_dir(&spec.job_id);
    let err = |what: &str, p: &Path, e: io::Error| {
        LaunchError(format!("PBS: cannot {what} {}: {e}", p.display()))
    };
    remove_path(&dir).map_err(|e| err("remove old spool", &dir, e))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| err("create spool directory", &dir, e))?;
    let script = layout.script(&spec.job_id);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o500)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&script)
        .map_err(|e| err("create script", &script, e))?;
    f.write_all(&spec.script)
        .map_err(|e| err("write script", &script, e))?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o500))
        .map_err(|e| err("chmod script", &script, e))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::fchown(f.as_raw_fd(), Some(uid), Some(gid))
            .map_err(|e| err("chown script", &script, e.into()))?;
        nix::unistd::chown(&dir, Some(uid), Some(gid))
            .map_err(|e| err("chown spool directory", &dir, e.into()))?;
    }
    Ok(script)
}

/// Writes `aux/JOBID`, one host per slot: created by root in root's directory,
/// replaced atomically, readable only by the job's user (owner, 0600) and root.
fn write_nodefile(
    spec: &RunSpec,
    layout: &Layout,
    node_name: &str,
    owner: Option<(Uid, Gid)>,
) -> Result<(), LaunchError> {
    let path = layout.nodefile(&spec.job_id);
    let tmp = layout.aux_dir().join(format!(".{}.tmp", spec.job_id));
    let mut text = String::new();
    if spec.nodefile_hosts.is_empty() {
        text.push_str(node_name);
        text.push('\n');
    }
    for h in &spec.nodefile_hosts {
        text.push_str(h);
        text.push('\n');
    }
    let write = || -> io::Result<()> {
        remove_path(&tmp)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        if let Some((uid, gid)) = owner {
            nix::unistd::fchown(f.as_raw_fd(), Some(uid), Some(gid))?;
        }
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| {
        LaunchError(format!(
            "PBS: cannot write node file {}: {e}",
            path.display()
        ))
    })
}

/// The job's environment, built from nothing (the MOM's own environment, e.g.
/// LD_PRELOAD, never leaks into a job, except what the site's `pbs_environment` names):
/// `base` (that file's variables), the server's variables, then what only the MOM knows.
/// `PATH` is the default only when neither `base` nor the job brought one.
pub fn build_env(
    spec: &RunSpec,
    layout: &Layout,
    node_name: &str,
    user: &User,
    shell: &Path,
    tmpdir: Option<&Path>,
    base: &[(String, String)],
) -> Vec<(String, String)> {
    // As Torque's InitUserEnv: `pbs_environment` first, then the job's variables, then
    // what the MOM sets; a later value replaces an earlier one in its place.
    let mut env: Vec<(String, String)> = base.to_vec();
    let has_path =
        base.iter().any(|(k, _)| k == "PATH") || spec.env.iter().any(|(k, _)| k == "PATH");
    let mut set = |k: &str, v: String| put_env_var(&mut env, k, v);
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            tracing::warn!(job = %spec.job_id, "skipping invalid environment variable {k:?}");
            continue;
        }
        set(k, v.clone());
    }
    set("HOME", user.dir.display().to_string());
    set("USER", user.name.clone());
    set("LOGNAME", user.name.clone());
    // The shell the job runs in (`-S`'s, else the login shell), as Torque's InitUserEnv sets it.
    set("SHELL", shell.display().to_string());
    if !has_path {
        set("PATH", DEFAULT_PATH.into());
    }
    set("ENVIRONMENT", "BATCH".into());
    // Torque's InitUserEnv sets the MOM's own name (`mom_host`, which `$mom_host` or `-H`
    // may set), over any the job brought: here the node name the MOM serves.
    set("HOSTNAME", node_name.into());
    set("PBS_NODEFILE", layout.nodefile_env(&spec.job_id, ""));
    set("PBS_GPUFILE", layout.nodefile_env(&spec.job_id, "gpu"));
    set("PBS_MICFILE", layout.nodefile_env(&spec.job_id, "mic"));
    set("PBS_MOMPORT", PBS_MOMPORT.into());
    set("PBS_NODENUM", "0".into());
    set("PBS_TASKNUM", "1".into());
    set("PBS_VNODENUM", "0".into());
    // As Torque's InitUserEnv: the job's own `TMPDIR` (`-v`, `-V`) wins over `$tmpdir`'s.
    if let Some(dir) = tmpdir.filter(|_| !spec.env.iter().any(|(k, _)| k == "TMPDIR")) {
        set("TMPDIR", dir.display().to_string());
    }
    env
}

/// Makes the job's own `TMPDIR`, `DIR/JOBID` (see [`StartOptions::tmpdir`]), 0700, the
/// user's. `DIR` may be shared and writable by all, and job ids are predictable, so as
/// Torque's `TMakeTmpDir`: a directory already there is used only if it is the user's (one
/// left by an earlier run of the job), never removed or taken over; one this call made is
/// given to the user through a descriptor opened without following links. Also says whether
/// this call made it.
fn make_tmpdir(
    dir: &Path,
    job_id: &str,
    owner: Option<(Uid, Gid)>,
) -> Result<(PathBuf, bool), LaunchError> {
    let path = dir.join(job_id);
    let err = |what: &str, e: io::Error| {
        LaunchError(format!(
            "PBS: cannot {what} job tmpdir {}: {e}",
            path.display()
        ))
    };
    let created = match std::fs::DirBuilder::new().mode(0o700).create(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(err("create", e)),
    };
    // One this call made and could not hand over is removed again (it is empty), so the
    // job's next start here does not find it in the way.
    let undo = |e: LaunchError| {
        if created {
            let _ = std::fs::remove_dir(&path);
        }
        e
    };
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| undo(err("open", e)))?;
    let meta = opened.metadata().map_err(|e| undo(err("stat", e)))?;
    let me = Uid::effective();
    let user = owner.map_or(me, |(uid, _)| uid);
    if meta.uid() == user.as_raw() {
        return Ok((path, created));
    }
    match owner {
        Some((uid, gid)) if created && meta.uid() == me.as_raw() => {
            nix::unistd::fchown(opened.as_raw_fd(), Some(uid), Some(gid))
                .map_err(|e| undo(err("chown", e.into())))?;
            Ok((path, true))
        }
        _ => Err(LaunchError(format!(
            "PBS: job tmpdir {} exists and is not the job user's",
            path.display()
        ))),
    }
}

/// Runs in the forked child, never returns: sets the child up, reads the
/// release from its stdin (the MOM's pipe), execs the shell. Only
/// async-signal-safe calls on prepared data.
fn child_setup(plan: &ChildPlan) -> ! {
    let tell = |byte: u8| {
        // SAFETY: write(2) on a valid fd and a local buffer.
        unsafe { libc::write(plan.report, (&byte as *const u8).cast(), 1) };
    };
    let fail = |step: Step| -> ! {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let mut report = [step as u8, 0, 0, 0, 0];
        report[1..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: write(2) and _exit(2) on a valid fd and a local buffer.
        unsafe {
            libc::write(plan.report, report.as_ptr().cast(), report.len());
            libc::_exit(NOT_EXECED_EXIT)
        }
    };
    // SAFETY: plain system calls on prepared, NUL-terminated data.
    unsafe {
        libc::close(plan.report_read);
        // What std's Command would do: the job starts with no signal blocked and
        // SIGPIPE at its default (Rust ignores it, and an ignored signal stays
        // ignored across exec).
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // An interactive job's terminal, once opened (below): its stdin after the release.
        let mut terminal: RawFd = -1;
        if libc::setsid() < 0 {
            fail(Step::Setsid);
        }
        // The job's limits, while still root (a hard limit may be raised, a negative nice
        // taken), as Torque's MOM sets them before the job becomes its user.
        for &(resource, value) in &plan.rlimits {
            let limit = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &limit) < 0 {
                fail(Step::Limits);
            }
        }
        if let Some(increment) = plan.nice {
            *libc::__errno_location() = 0;
            if libc::nice(increment) == -1 && *libc::__errno_location() != 0 {
                fail(Step::Limits);
            }
        }
        if become_user(plan.identity.as_ref(), plan.umask).is_err() {
            fail(Step::Identity);
        }
        // O_APPEND and never truncated, as Torque's open_std_file opens them: the prologue's
        // output, appended while the shell is held, stays ahead of the job's own (see
        // `pelog`), and a kept (`-k`) file already in the home directory (an earlier run's)
        // is added to.
        let open = |p: &CString| {
            libc::open(
                p.as_ptr(),
                libc::O_WRONLY
                    | libc::O_CREAT
                    | libc::O_APPEND
                    | libc::O_NOFOLLOW
                    | libc::O_CLOEXEC,
                0o666 as libc::c_uint,
            )
        };
        match &plan.opens {
            Opens::Separate(out, err) => {
                let fd = open(out);
                if fd < 0 || libc::dup2(fd, 1) < 0 {
                    fail(Step::Stdout);
                }
                libc::close(fd);
                let fd = open(err);
                if fd < 0 || libc::dup2(fd, 2) < 0 {
                    fail(Step::Stderr);
                }
                libc::close(fd);
            }
            Opens::Both(p) => {
                let fd = open(p);
                if fd < 0 || libc::dup2(fd, 1) < 0 || libc::dup2(fd, 2) < 0 {
                    fail(Step::Stdout);
                }
                libc::close(fd);
            }
            Opens::Terminal(tty) => {
                // Opened by the session leader, it becomes the controlling terminal (asked
                // for as well, in case the kernel would not do it by itself).
                let fd = libc::open(tty.as_ptr(), libc::O_RDWR);
                if fd < 0
                    || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0
                    || libc::dup2(fd, 1) < 0
                    || libc::dup2(fd, 2) < 0
                {
                    fail(Step::Terminal);
                }
                terminal = fd;
            }
        }
        if libc::chdir(plan.workdir.as_ptr()) < 0 {
            fail(Step::Chdir);
        }
        tell(READY);
        // The release, from the MOM's pipe; EOF (the MOM died, or dropped the
        // run) or anything else holds the job back.
        let mut go = [0u8; RELEASE.len()];
        let mut got = 0;
        while got < go.len() {
            let n = libc::read(0, go[got..].as_mut_ptr().cast(), go.len() - got);
            if n > 0 {
                got += n as usize;
            } else if n == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break;
            }
        }
        if &go != RELEASE {
            tell(HELD_BACK);
            libc::_exit(NOT_EXECED_EXIT);
        }
        let stdin = if terminal >= 0 { terminal } else { plan.stdin };
        if libc::dup2(stdin, 0) < 0 {
            fail(Step::Stdin);
        }
        if terminal > 2 {
            libc::close(terminal);
        }
        libc::execve(
            plan.shell.as_ptr(),
            plan.argv_ptrs.as_ptr(),
            plan.envp_ptrs.as_ptr(),
        );
        let m = &plan.exec_fail_msg;
        libc::write(2, m.as_ptr().cast(), m.len());
        libc::_exit(crate::exit::EXEC_SHELL_FAILED);
    }
}

/// Takes `identity`'s supplementary groups, group and user (when the MOM
/// switches user), then the job's `umask`: how every process of a job's user starts,
/// the job's shell as well as the copies of its output (`deliver`). Only
/// async-signal-safe calls on data prepared before the fork, so it may run
/// between `fork` and `exec`; on failure, errno says why.
pub(crate) fn become_user(identity: Option<&Identity>, umask: u32) -> io::Result<()> {
    // SAFETY: plain system calls on valid data owned by the caller.
    unsafe {
        if let Some(id) = identity {
            if libc::setgroups(id.groups.len() as _, id.groups.as_ptr()) < 0
                || libc::setgid(id.gid) < 0
                || libc::setuid(id.uid) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        libc::umask(umask as libc::mode_t);
    }
    Ok(())
}

fn cstr(bytes: impl Into<Vec<u8>>) -> Result<CString, LaunchError> {
    CString::new(bytes)
        .map_err(|_| LaunchError("PBS: NUL byte in job argument or environment".into()))
}

fn path_cstr(p: &Path) -> Result<CString, LaunchError> {
    cstr(p.as_os_str().as_bytes())
}

/// A NULL-terminated pointer array over `v` (for execve).
fn ptrs(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter()
        .map(|c| c.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Removes a file, symlink or directory tree if present (never follows a symlink).
fn remove_path(p: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where [`set_aside_job_files`] puts things: a hidden name in the same directory, which
/// [`remove_leftovers`] recognises.
const SET_ASIDE_MARK: &str = ".capstan-removing-";

/// Moves a job's spool directory, node file and `TMPDIR` out of the way (after the server
/// acked its last run) and returns where they went, for [`remove_set_aside`]: a rename
/// is one quick call, while removing a tree a job filled with millions of files takes as
/// long as it takes, which must not hold up the MOM's session. The names are then free for
/// the job's next run here. The new name carries a random part (the directory may be shared,
/// and a MOM restarted may get its old pid); what cannot be renamed is left where it is, for
/// the next run of the job to reuse or refuse, never removed in place (a new run of the job
/// could already own it).
pub fn set_aside_job_files(layout: &Layout, job_id: &str, tmpdir: Option<&Path>) -> Vec<PathBuf> {
    use std::hash::{BuildHasher, Hasher};
    if !safe_component(job_id) {
        return Vec::new();
    }
    let own = [layout.spool_dir(job_id), layout.nodefile(job_id)];
    own.iter()
        .map(PathBuf::as_path)
        .chain(tmpdir)
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .filter_map(|p| {
            let mut random = std::collections::hash_map::RandomState::new().build_hasher();
            random.write(p.as_os_str().as_bytes());
            let mut name = std::ffi::OsString::from(SET_ASIDE_MARK);
            name.push(format!("{:016x}-", random.finish()));
            name.push(p.file_name().unwrap_or_default());
            let aside = p.with_file_name(name);
            // Never over something already there.
            match nix::fcntl::renameat2(
                None,
                p,
                None,
                &aside,
                nix::fcntl::RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => Some(aside),
                Err(e) => {
                    tracing::warn!(
                        "cannot set {} aside for removal: {e}; left in place",
                        p.display()
                    );
                    None
                }
            }
        })
        .collect()
}

/// What earlier MOM processes set aside and did not get to remove (they stopped first), in
/// `dirs` (the jobs and aux directories, the `$tmpdir`) (blocking).
pub fn remove_leftovers(dirs: &[PathBuf]) {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let leftovers: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .as_bytes()
                    .starts_with(SET_ASIDE_MARK.as_bytes())
            })
            .map(|e| e.path())
            .collect();
        remove_set_aside(&leftovers);
    }
}

/// Removes what [`set_aside_job_files`] returned (blocking; never follows a link).
pub fn remove_set_aside(paths: &[PathBuf]) {
    for p in paths {
        if let Err(e) = remove_path(p) {
            tracing::warn!("cannot remove {}: {e}", p.display());
        }
    }
}

/// Appends a MOM message (the walltime notice, a qmsg line) to one of the job's output files
/// (see [`open_user_file_to_append`]).
pub fn append_to_user_file(path: &Path, uid: u32, text: &str) -> io::Result<()> {
    open_user_file_to_append(path, uid)?.write_all(text.as_bytes())
}

/// Opens one of the job's output files for the MOM to append to (the walltime
/// notice, prologue and epilogue output). The file was created by the user, so
/// root only writes to it if it is still a regular file owned by that user,
/// opened without following a final symlink and without creating anything.
pub fn open_user_file_to_append(path: &Path, uid: u32) -> io::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.file_type().is_file() || meta.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "not a regular file owned by the job's user",
        ));
    }
    Ok(f)
}

/// argv[0] of the job's shell: its basename, after a `-` for a login shell
/// (`-bash`), which makes the shell read the user's profile as Torque's jobs do.
pub fn argv0(shell: &Path, login: bool) -> Vec<u8> {
    let base = shell.file_name().unwrap_or(OsStr::new("sh"));
    let mut v = if login { b"-".to_vec() } else { Vec::new() };
    v.extend_from_slice(base.as_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_is_login_style_unless_turned_off() {
        assert_eq!(argv0(Path::new("/bin/bash"), true), b"-bash");
        assert_eq!(argv0(Path::new("/bin/bash"), false), b"bash");
    }

    /// A MOM's layout and the user the tests run as, for `build_env`.
    fn env_fixture() -> (Layout, User) {
        let user = User::from_uid(Uid::current())
            .ok()
            .flatten()
            .expect("current user");
        (Layout::new("/var/spool/capstan"), user)
    }

    /// `build_env` of `spec` on node `n1`, for the tests' user with bash.
    fn env_of(
        spec: &RunSpec,
        tmpdir: Option<&Path>,
        base: &[(String, String)],
    ) -> Vec<(String, String)> {
        let (layout, user) = env_fixture();
        let bash = Path::new("/bin/bash");
        build_env(spec, &layout, "n1", &user, bash, tmpdir, base)
    }

    #[test]
    fn env_starts_empty_and_mom_wins() {
        let (_, user) = env_fixture();
        let spec = RunSpec {
            job_id: "4.vm".into(),
            env: vec![
                ("PBS_JOBID".into(), "4.vm".into()),
                ("HOME".into(), "/elsewhere".into()),
                ("HOSTNAME".into(), "submithost".into()),
                ("BAD=NAME".into(), "x".into()),
            ],
            ..Default::default()
        };
        let env = env_of(&spec, None, &[]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("PBS_JOBID"), Some("4.vm"));
        assert_eq!(get("HOME"), Some(user.dir.to_str().expect("utf8 home")));
        assert_eq!(get("PATH"), Some(DEFAULT_PATH));
        assert_eq!(get("PBS_NODEFILE"), Some("/var/spool/capstan/aux//4.vm"));
        assert_eq!(get("PBS_MICFILE"), Some("/var/spool/capstan/aux//4.vmmic"));
        assert_eq!(get("ENVIRONMENT"), Some("BATCH"));
        assert_eq!(get("HOSTNAME"), Some("n1"));
        assert_eq!(get("LD_PRELOAD"), None);
        assert!(get("BAD=NAME").is_none());
        assert_eq!(env.iter().filter(|(n, _)| n == "HOME").count(), 1);
    }

    /// `pbs_environment` comes first and the job's own variables override it, as in
    /// Torque's InitUserEnv; its PATH stands in for the MOM's default.
    #[test]
    fn pbs_environment_is_the_base_the_job_overrides() {
        let spec = RunSpec {
            job_id: "4.vm".into(),
            env: vec![("TZ".into(), "Asia/Tokyo".into())],
            ..Default::default()
        };
        let base = [("LANG", "C"), ("PATH", "/site/bin:/bin"), ("TZ", "UTC")]
            .map(|(k, v)| (k.to_string(), v.to_string()));
        let env = env_of(&spec, None, &base);
        assert_eq!(
            &env[..3],
            &base.map(|(k, v)| (k, if v == "UTC" { "Asia/Tokyo".into() } else { v }))
        );
        assert_eq!(env.iter().filter(|(n, _)| n == "PATH").count(), 1);
    }

    /// `$tmpdir` gives the job its `TMPDIR` unless the job brought its own.
    #[test]
    fn the_jobs_own_tmpdir_wins() {
        let scratch = Path::new("/scratch/4.vm");
        let tmpdir_of = |env: Vec<(String, String)>| {
            let spec = RunSpec {
                job_id: "4.vm".into(),
                env,
                ..Default::default()
            };
            env_of(&spec, Some(scratch), &[])
                .into_iter()
                .find(|(k, _)| k == "TMPDIR")
                .map(|(_, v)| v)
        };
        assert_eq!(tmpdir_of(vec![]).as_deref(), Some("/scratch/4.vm"));
        let mine = vec![("TMPDIR".to_string(), "/home/u/tmp".to_string())];
        assert_eq!(tmpdir_of(mine).as_deref(), Some("/home/u/tmp"));
    }

    #[test]
    fn the_shell_list_is_read_as_torques_set_shell_reads_it() {
        assert_eq!(shell_for("", "n1"), None);
        assert_eq!(shell_for("/bin/sh", "n1"), Some(PathBuf::from("/bin/sh")));
        // An entry for this node wins; else the last one for any host.
        let list = "/bin/dash,/bin/sh@n1,/bin/zsh@n2";
        assert_eq!(shell_for(list, "n1"), Some(PathBuf::from("/bin/sh")));
        assert_eq!(shell_for(list, "n3"), Some(PathBuf::from("/bin/dash")));
        assert_eq!(
            shell_for("/bin/sh@zz,/bin/dash", "n1"),
            Some(PathBuf::from("/bin/dash"))
        );
        assert_eq!(
            shell_for("/bin/a,/bin/b", "n1"),
            Some(PathBuf::from("/bin/b"))
        );
        assert_eq!(shell_for("/bin/sh@zz", "n1"), None);
        assert_eq!(shell_for("@n1", "n1"), None);
    }

    /// A plan or delivery written before `-W umask` existed (an older MOM's run record, an
    /// older MOM's supervisor input) means Torque's 077, never 0.
    #[test]
    fn plans_without_a_umask_mean_077() {
        let plan = ExecPlan {
            user_name: "u".into(),
            uid: 1000,
            identity: None,
            streams: Streams::IntoStdout("/tmp/x.OU".into()),
            workdir: "/tmp".into(),
            shell: "/bin/sh".into(),
            login: true,
            script: "/tmp/x.SC".into(),
            env: Vec::new(),
            delivery: DeliveryPlan::default(),
            pelog: PelogJob::default(),
            tmpdir: None,
            tmpdir_made: false,
            orphan_timeout_ms: 0,
            umask: 0o022,
            arguments: vec!["a".into()],
            limits: ProcessLimits {
                nice: Some(3),
                ..Default::default()
            },
            terminal: None,
            command: None,
        };
        let older = |value: serde_json::Value, keys: &[&str]| {
            let mut value = value;
            for key in keys {
                value.as_object_mut().expect("an object").remove(*key);
            }
            value
        };
        let json = older(
            serde_json::to_value(&plan).unwrap(),
            &["umask", "arguments", "limits"],
        );
        let read: ExecPlan = serde_json::from_value(json).unwrap();
        assert_eq!((read.umask, read.arguments.len()), (0o077, 0));
        assert_eq!(read.limits, ProcessLimits::default(), "no limits");
        let delivery = DeliveryPlan {
            umask: 0o022,
            ..DeliveryPlan::default()
        };
        let json = older(serde_json::to_value(&delivery).unwrap(), &["umask"]);
        let read: DeliveryPlan = serde_json::from_value(json).unwrap();
        assert_eq!(read.umask, 0o077);
        assert_eq!(DeliveryPlan::default().umask, 0o077);
    }
}
