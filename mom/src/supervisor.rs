//! The per-run supervisor: a small process (a fork of the MOM's job spawner,
//! see `spawner`; else `capstan_supervisor`, or `pbs_mom` re-executed, with
//! [`SUPERVISE_ARG`]; see [`program`]) that execs the job's
//! shell, waits for it, clears what the job left behind, writes how it ended
//! to `mom_priv/jobs/RUNID.exit` and then copies the job's output to its
//! destinations as the user.
//!
//! Why a separate process: only a process's parent can learn its exit status
//! and rusage. If the MOM itself were the parent, a MOM restart (upgrade,
//! crash, `kill -9`) would orphan every running job and lose its exit status.
//! The supervisor runs in its own session (it calls `setsid` first: neither
//! the spawner's fork nor `posix_spawn`, the MOM's cheap way to start a
//! process, gives it one), so it outlives the MOM, and
//! the next MOM reads the result from the file. It is single-threaded and runs
//! no async runtime, so it may fork freely: the job's shell, and the child
//! that copies the output (no exec needed, unlike from the MOM; see
//! `deliver::copy_in_child`).
//!
//! It is also the job's child subreaper, so it knows whether the job left any
//! process behind and kills those before it reports the end (see `leftovers`).
//!
//! Protocol with the MOM, one line at a time (MOM → supervisor on its stdin,
//! supervisor → MOM on its stdout):
//!
//! ```text
//! → the ExecPlan as JSON
//! ← held PID | failed MESSAGE      (the shell is set up, held before exec)
//! → go                             (the release: the MOM has recorded the run
//!                                   as running; read by the held shell itself)
//!      ... the job runs; its leftovers are cleared; the exit file is written ...
//!      (if the pipe hangs up meanwhile, the MOM is gone: unless a new MOM
//!       sends SIGUSR1 within the plan's `orphan_timeout_ms`, the job is killed
//!       and the exit file says `orphaned`; see `wait_watching_mom`)
//! ← exited
//! → deliver [Delivery...]          (or EOF: nothing to copy, or the MOM is gone)
//! ← delivered [null | "error"...]  | failed MESSAGE
//! ```
//!
//! Without the release (EOF: the MOM died before recording the run, or it
//! dropped a run cancelled meanwhile) the shell exits without exec'ing, the
//! exit file says `held_back`, and the supervisor exits without `exited`: a
//! run the MOM never recorded as running never ran its script, so the next
//! MOM's "never started" is the truth. (An older supervisor answers
//! `started PID`: its shell already runs, so the MOM kills it and refuses the
//! run.)
//!
//! The MOM appends its walltime notice to the stderr file between `exited`
//! and `deliver`, so the notice is in what gets copied. EOF at the go-ahead
//! means "exit without copying": either the MOM had nothing to copy, or it
//! died; then the exit file is already written, the next MOM adopts the run
//! and delivers with the exec'd copy helper, so output is never lost. The MOM
//! falls back to that helper whenever this path fails.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::deliver::{self, CopyResults, DeliverError};
use crate::launch::{self, ExecPlan};
use crate::leftovers::{self, Leftovers};
use crate::paths::Delivery;
use crate::spawner;

/// First argument that makes `capstan_supervisor` (or `pbs_mom`) a run's supervisor.
pub const SUPERVISE_ARG: &str = "--capstan-supervise";

/// The supervisor's own binary, installed beside `pbs_mom` (see [`program`]).
pub const BINARY_NAME: &str = "capstan_supervisor";

/// When this process was exec'd as one of the MOM's helpers (a run's
/// supervisor, or the copy helper of `deliver`), runs it and returns its exit
/// code; `None` for any other command line. Both `pbs_mom` and
/// [`BINARY_NAME`] start with this.
pub fn run_helper() -> Option<i32> {
    let mut argv = std::env::args_os().skip(1);
    let role = argv.next()?;
    if role == spawner::SPAWNER_ARG {
        // Named apart from the supervisors it forks, which rename themselves.
        become_helper(spawner::SPAWNER_NAME);
        return Some(spawner::main());
    }
    if role != SUPERVISE_ARG && role != deliver::DELIVER_ARG {
        return None;
    }
    become_helper(HELPER_NAME);
    Some(if role == SUPERVISE_ARG {
        main(Path::new(&argv.next().unwrap_or_default()))
    } else {
        deliver::helper_main()
    })
}

/// What ps, top and pgrep show for a supervisor or the copy helper (the
/// kernel keeps 15 bytes of [`BINARY_NAME`]).
pub const HELPER_NAME: &CStr = c"capstan_supervi";

/// How the MOM starts any of its helpers (`program` is [`program`]'s answer, `role` one of
/// the role arguments): named [`BINARY_NAME`], with an empty environment and no stderr.
/// Callers set the pipes; keep the command on std's posix_spawn path where they can (no
/// pre_exec), since nothing may run between fork and exec in the multi-threaded MOM.
pub fn helper_command(program: &Path, role: &str) -> Command {
    let mut command = Command::new(program);
    command
        .arg0(BINARY_NAME)
        .env_clear()
        .arg(role)
        .stderr(Stdio::null());
    command
}

/// What every helper does first: its name, and no descriptor above stderr.
pub(crate) fn become_helper(name: &CStr) {
    // Exec'd as /proc/self/fd/N or /proc/self/exe, the kernel named this process "N"
    // or "exe", and a forked supervisor has the spawner's name.
    let _ = nix::sys::prctl::set_name(name);
    close_inherited_fds();
}

/// What the MOM execs for each run's supervisor and for the copy helper.
///
/// [`BINARY_NAME`] beside the running `pbs_mom` when it is there: a tenth of
/// the MOM's size, and one is exec'd per job. It is opened once, when the MOM
/// starts, and exec'd as `/proc/self/fd/N`, so every run of this MOM process
/// gets the binary the MOM started with (an upgrade that installs new files by
/// renaming them into place, as package managers do, reaches the next MOM
/// process, never an old MOM with a new supervisor), and the copy helper,
/// exec'd as the job's user, needs no search permission on the directory. It
/// must be an ELF binary, not a script: the descriptor is closed at exec. Else
/// the MOM's own image, `/proc/self/exe`, which has both properties too. The
/// processes are named `capstan_supervisor` either way (see [`run_helper`]).
pub fn program() -> PathBuf {
    static OPENED: OnceLock<Option<File>> = OnceLock::new();
    let opened = OPENED.get_or_init(|| {
        let exe = std::env::current_exe().ok()?;
        let file = File::open(exe.parent()?.join(BINARY_NAME)).ok()?;
        file.metadata().ok()?.is_file().then_some(file)
    });
    match opened {
        Some(file) => PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
        None => PathBuf::from("/proc/self/exe"),
    }
}

/// The words of the protocol (see the module comment).
mod word {
    /// Answer of a supervisor that holds the shell until the MOM's `go`.
    pub const HELD: &str = "held";
    /// After `held PID`: this supervisor watches its MOM (see `wait_watching_mom`).
    pub const WATCH: &str = "watch";
    /// Answer of an older supervisor, whose shell already runs: refused.
    pub const STARTED: &str = "started";
    pub const FAILED: &str = "failed";
    pub const EXITED: &str = "exited";
    pub const DELIVER: &str = "deliver";
    pub const DELIVERED: &str = "delivered";
}

/// How the job's shell ended, as `wait4` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Raw wait status.
    pub status: i32,
    /// User + system CPU of the shell and every descendant it waited for.
    pub cput_secs: u64,
    /// Peak resident set of the largest of them, kB.
    pub maxrss_kb: u64,
    /// What the job left behind and whether the supervisor cleared it
    /// (`Unknown` in files written by older supervisors).
    #[serde(default)]
    pub leftovers: Leftovers,
    /// The shell never exec'd the job: the MOM's release did not come (see
    /// `launch::HeldShell`).
    #[serde(default)]
    pub held_back: bool,
    /// The supervisor killed the job: its MOM was gone longer than the plan's
    /// `orphan_timeout_ms` and no new MOM adopted the run (see [`wait_watching_mom`]).
    #[serde(default)]
    pub orphaned: bool,
    /// When the shell was reaped (epoch seconds; 0 in files of older supervisors).
    #[serde(default)]
    pub ended_at: i64,
}

/// Supervisor entry point; returns the process exit code.
pub fn main(exit_file: &Path) -> i32 {
    let mut out = io::stdout();
    // First: a session of our own keeps the supervisor (and the job's exit
    // status) out of the MOM's terminal and process group, so a Ctrl-C or a
    // signal to the MOM's group does not take it down. The MOM cannot do this
    // for us: posix_spawn, which it uses, has no setsid.
    if let Err(e) = nix::unistd::setsid() {
        let _ = writeln!(
            out,
            "{} PBS: supervisor cannot start a session: {e}",
            word::FAILED
        );
        return 1;
    }
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = String::new();
    let plan: ExecPlan = match input
        .read_line(&mut line)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str(&line).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "{} PBS: bad job plan: {e}", word::FAILED);
            return 1;
        }
    };
    // Without it the job's orphans would go to init, and only a /proc sweep
    // by the MOM could find them: say so in the record rather than fail the job.
    let reaper = leftovers::become_subreaper().is_ok();
    let shell = match launch::spawn_job(&plan) {
        Ok(shell) => shell,
        Err(e) => {
            let _ = writeln!(out, "{} {}", word::FAILED, one_line(&e.0));
            return 0;
        }
    };
    let pid = shell.pid;
    // SIGUSR1 is a new MOM's word that it adopted this run: blocked from here to the end
    // (read from a signalfd while it matters), so one that comes late cannot end the
    // supervisor. The shell was forked already; its mask is reset before exec anyway.
    let watches_mom = plan.orphan_timeout_ms > 0 && block_adoption_signal();
    if watches_mom {
        let _ = writeln!(out, "{} {pid} {}", word::HELD, word::WATCH);
    } else {
        let _ = writeln!(out, "{} {pid}", word::HELD);
    }
    let _ = out.flush();
    // The shell reads the MOM's `go` itself (see `launch::HeldShell`).
    let waited = if watches_mom {
        wait_watching_mom(pid, Duration::from_millis(plan.orphan_timeout_ms))
    } else {
        wait_for_shell(pid)
    };
    let Some(mut record) = waited else {
        return 1;
    };
    if shell.was_held_back() {
        record.held_back = true;
        return i32::from(write_exit_file(exit_file, &record).is_err());
    }
    if reaper {
        record.leftovers = leftovers::clear(leftovers::PATIENCE);
    }
    if write_exit_file(exit_file, &record).is_err() {
        return 1;
    }
    let (identity, umask) = (plan.identity.as_ref(), plan.umask);
    // An error here means the MOM is gone (EPIPE): the next one delivers.
    let _ = serve_mom(&mut input, &mut out, |files| {
        deliver::copy_in_child(identity, umask, files)
    });
    0
}

/// Closes every descriptor above stderr that a helper inherited: the
/// MOM's are close-on-exec, but whatever the MOM itself inherited without that
/// flag (a jobserver pipe, a service manager's socket) would otherwise reach
/// every job, as Torque's MOM does not let it.
fn close_inherited_fds() {
    // SAFETY: close_range(2) only closes descriptors; none above 2 is in use yet.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } == 0;
    if closed {
        return;
    }
    // Kernels before 5.9: the descriptors /proc lists (the listing's own is
    // closed by then, which makes its close fail harmlessly).
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above.
        unsafe { libc::close(fd) };
    }
}

/// The supervisor's side after the exit file is written: says `exited`, waits
/// for the MOM's go-ahead and, if it comes, copies with `copy` and reports.
pub fn serve_mom<R, W, C>(input: &mut R, out: &mut W, copy: C) -> io::Result<()>
where
    R: BufRead,
    W: Write,
    C: FnOnce(&[Delivery]) -> Result<CopyResults, DeliverError>,
{
    writeln!(out, "{}", word::EXITED)?;
    out.flush()?;
    let mut line = String::new();
    if input.read_line(&mut line)? == 0 {
        return Ok(());
    }
    // A release the shell died before reading (a qdel right after its start)
    // is still in the pipe, ahead of the MOM's answer.
    if line.as_bytes() == launch::RELEASE {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
    }
    let Some((word::DELIVER, json)) = line.trim_end().split_once(' ') else {
        return Ok(());
    };
    let answer = match serde_json::from_str::<Vec<Delivery>>(json) {
        Err(e) => format!("{} bad copy list: {e}", word::FAILED),
        Ok(files) => match copy(&files).and_then(|r| {
            serde_json::to_string(&r).map_err(|e| DeliverError::Helper(e.to_string()))
        }) {
            Ok(results) => format!("{} {results}", word::DELIVERED),
            Err(e) => format!("{} {}", word::FAILED, one_line(&e.to_string())),
        },
    };
    writeln!(out, "{answer}")?;
    out.flush()
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// The MOM's end of the pipes to one supervisor. It lives in the run's waiter
/// thread (reading blocks until the job ends), never in the runner's map.
pub struct Link {
    to: Box<dyn Write + Send>,
    from: Box<dyn BufRead + Send>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

/// What the supervisor answered to the job plan.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    /// The shell has this pid and waits for [`Link::go`]; `watches_mom`: the
    /// supervisor kills the job if its MOM goes and none adopts the run
    /// (`held PID watch`; see [`wait_watching_mom`]).
    Held { pid: i32, watches_mom: bool },
    /// An older supervisor's shell, already running with this pid: the MOM
    /// cannot have recorded it first, so it refuses the run.
    Unheld(i32),
    /// It could not be started; Torque's message.
    Failed(String),
}

impl Link {
    /// `to` is the supervisor's stdin, `from` its stdout.
    pub fn new(to: impl Write + Send + 'static, from: impl Read + Send + 'static) -> Link {
        Link {
            to: Box::new(to),
            from: Box::new(io::BufReader::new(from)),
        }
    }

    /// Sends the job plan and reads the supervisor's answer.
    pub fn start(&mut self, plan_json: &[u8]) -> Result<Started, String> {
        let sent = self
            .to
            .write_all(plan_json)
            .and_then(|()| self.to.write_all(b"\n"))
            .and_then(|()| self.to.flush());
        // Its answer, even if sending failed: a supervisor that stopped early
        // says why.
        let line = match (self.line(), sent) {
            (Ok(Some(l)), _) => l,
            (line, sent) => return Err(format!("{line:?}, {sent:?}")),
        };
        match line.split_once(' ') {
            Some((answer @ (word::HELD | word::STARTED), rest)) => {
                let (pid, watches_mom) = match rest.split_once(' ') {
                    Some((pid, word::WATCH)) => (pid, true),
                    _ => (rest, false),
                };
                match pid.parse::<i32>() {
                    Ok(pid) if pid > 1 && answer == word::HELD => {
                        Ok(Started::Held { pid, watches_mom })
                    }
                    Ok(pid) if pid > 1 => Ok(Started::Unheld(pid)),
                    _ => Err(format!("supervisor said {line:?}")),
                }
            }
            Some((word::FAILED, why)) => Ok(Started::Failed(why.to_string())),
            _ => Err(format!("supervisor said {line:?}")),
        }
    }

    /// The release: lets the held shell exec (the run is recorded). The shell
    /// itself reads this from the supervisor's stdin.
    pub fn go(&mut self) -> io::Result<()> {
        self.to.write_all(launch::RELEASE)?;
        self.to.flush()
    }

    /// Closes the MOM's side and blocks until the supervisor's stdout reaches
    /// EOF: it has exited (or is exiting), so its exit file is final. Without
    /// the release a held shell exits first (see `launch::HeldShell`).
    pub fn close(self) {
        let Link { to, mut from } = self;
        drop(to);
        let _ = io::copy(&mut from, &mut io::sink());
    }

    /// Blocks until the supervisor says the job has ended and its exit file
    /// is written (true), or until it is gone without saying so (false).
    pub fn exited(&mut self) -> bool {
        matches!(self.line(), Ok(Some(l)) if l == word::EXITED)
    }

    /// Has the supervisor copy `files` as the job's user; one result per file
    /// (`None`: copied; `Some`: the copy's error).
    pub fn deliver(&mut self, files: &[Delivery]) -> Result<CopyResults, DeliverError> {
        let gone = |e: io::Error| DeliverError::Supervisor(e.to_string());
        let list = serde_json::to_string(files).map_err(|e| DeliverError::Helper(e.to_string()))?;
        writeln!(self.to, "{} {list}", word::DELIVER).map_err(gone)?;
        self.to.flush().map_err(gone)?;
        let line = self
            .line()
            .map_err(gone)?
            .ok_or_else(|| DeliverError::Supervisor("it exited without an answer".into()))?;
        match line.split_once(' ') {
            Some((word::DELIVERED, json)) => serde_json::from_str(json)
                .map_err(|e| DeliverError::Supervisor(format!("bad answer: {e}"))),
            Some((word::FAILED, why)) => Err(DeliverError::Supervisor(why.to_string())),
            _ => Err(DeliverError::Supervisor(format!("it said {line:?}"))),
        }
    }

    /// One line without its newline; `None` at EOF.
    fn line(&mut self) -> io::Result<Option<String>> {
        let mut line = String::new();
        let n = (&mut self.from)
            .take(deliver::MAX_ANSWER)
            .read_line(&mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if !line.ends_with('\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "line from the supervisor too long or cut short",
            ));
        }
        line.pop();
        Ok(Some(line))
    }
}

/// Waits for a child (blocking) and collects its rusage.
pub(crate) fn wait_child(pid: i32) -> Option<ExitRecord> {
    wait4_until(pid, pid)
}

/// [`wait_child`] for the job's shell, reaping on the way every orphan of the job that
/// exits first: as their subreaper the supervisor is their parent, and one not reaped would
/// stay a zombie (holding a pid of the user's) until the job ends.
fn wait_for_shell(shell: i32) -> Option<ExitRecord> {
    wait4_until(-1, shell)
}

/// Blocks SIGUSR1 (a new MOM's word that it adopted the run) for the rest of this process;
/// whether that worked. See [`wait_watching_mom`].
fn block_adoption_signal() -> bool {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGUSR1);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_ok()
}

/// [`wait_for_shell`], also watching the MOM: when its pipe hangs up (the MOM exited) and no
/// new MOM says within `orphan_timeout` that it adopted the run (SIGUSR1, see
/// `runner::Runner::recover`), the job's process group is killed. Why: the server counts the
/// runs of a MOM gone for its lost grace as lost and requeues them; the job must not be
/// running still when it starts again elsewhere. `orphan_timeout` is a margin short of that
/// grace (`runner::orphan_timeout`). The adopting MOM is watched in turn (a pidfd of the
/// signal's sender): if it exits too, the clock starts again. A MOM that is stopped rather
/// than gone is not noticed. SIGUSR1 must be blocked already ([`block_adoption_signal`]).
fn wait_watching_mom(shell: i32, orphan_timeout: Duration) -> Option<ExitRecord> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let chld = leftovers::sigchld();
    let mut old = SigSet::empty();
    if nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), Some(&mut old)).is_err() {
        return wait_for_shell(shell);
    }
    // Back to the mask before: SIGCHLD as it was, SIGUSR1 still blocked.
    let restore = |old: &SigSet| {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None);
    };
    let mut watched = chld;
    watched.add(Signal::SIGUSR1);
    let flags = SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK;
    let Ok(signals) = SignalFd::with_flags(&watched, flags) else {
        restore(&old);
        return wait_for_shell(shell);
    };
    let stdin = io::stdin();
    let mut mom_pipe_open = true;
    // The MOMs that said they adopted the run, while they run (pidfds).
    let mut adopters: Vec<std::os::fd::OwnedFd> = Vec::new();
    // An adoption whose sender could not be watched (no pidfd on this kernel): trusted.
    let mut adopted_unwatched = false;
    let mut deadline: Option<Instant> = None;
    let mut killed = false;
    let my_uid = nix::unistd::geteuid().as_raw();
    let outcome = loop {
        // An exit before the signalfd was made is still pending, so it is seen here.
        match reap_nohang(shell) {
            Reaped::Shell(mut record) => {
                record.orphaned = killed;
                break Some(record);
            }
            Reaped::Error => break None,
            Reaped::Running => {}
        }
        if let Some(when) = deadline.filter(|_| !killed) {
            if Instant::now() >= when {
                // SIGKILL: the run is about to be counted lost; no one waits for a grace.
                let _ =
                    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(shell), Signal::SIGKILL);
                killed = true;
                continue;
            }
        }
        // Only the hang-up of the MOM's pipe is asked for: its `go` line is the held shell's
        // to read, and nothing else comes before the job has ended.
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if mom_pipe_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::empty()));
        }
        let first_adopter = fds.len();
        for pidfd in &adopters {
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        let timeout = match deadline.filter(|_| !killed) {
            Some(when) => {
                let left = when.saturating_duration_since(Instant::now()).as_millis();
                PollTimeout::try_from(left.min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => break wait_for_shell(shell),
        }
        let fired = |fd: &PollFd| {
            fd.revents().is_some_and(|r| {
                !(r & (PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)).is_empty()
            })
        };
        if mom_pipe_open && fired(&fds[1]) {
            mom_pipe_open = false;
        }
        let gone: Vec<usize> = (first_adopter..fds.len())
            .filter(|&i| fired(&fds[i]))
            .map(|i| i - first_adopter)
            .collect();
        drop(fds);
        for i in gone.into_iter().rev() {
            adopters.remove(i);
        }
        while let Ok(Some(info)) = signals.read_signal() {
            if info.ssi_signo != Signal::SIGUSR1 as u32 || info.ssi_uid != my_uid {
                continue;
            }
            match pidfd_open(info.ssi_pid as i32) {
                Ok(pidfd) => adopters.push(pidfd),
                // The sender is gone already: no adoption.
                Err(nix::errno::Errno::ESRCH) => {}
                Err(_) => adopted_unwatched = true,
            }
        }
        // The clock runs while no MOM is known to be there: the launching one's pipe hung
        // up and every adopter has exited too.
        let orphaned = !mom_pipe_open && adopters.is_empty() && !adopted_unwatched;
        match (orphaned, deadline) {
            (true, None) => deadline = Some(Instant::now() + orphan_timeout),
            (false, Some(_)) => deadline = None,
            _ => {}
        }
    };
    drop(signals);
    restore(&old);
    outcome
}

/// A pidfd for `pid`, readable once it exits (ESRCH: it is gone already; ENOSYS or EPERM on
/// kernels before 5.3 or under a seccomp profile that refuses it).
fn pidfd_open(pid: i32) -> Result<std::os::fd::OwnedFd, nix::errno::Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: a descriptor the kernel just created, owned by nothing else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// What a non-blocking reap found.
enum Reaped {
    Shell(ExitRecord),
    Running,
    Error,
}

/// Reaps every child that has exited (the job's orphans too, as in [`wait_for_shell`]),
/// without blocking; the shell's record if it was among them.
fn reap_nohang(shell: i32) -> Reaped {
    reap(-1, shell, libc::WNOHANG)
}

/// The record of a reaped shell, from its wait status and rusage.
fn exit_record(status: i32, ru: &libc::rusage) -> ExitRecord {
    let secs = |t: libc::timeval| t.tv_sec.max(0) as u64 + u64::from(t.tv_usec >= 500_000);
    ExitRecord {
        status,
        cput_secs: secs(ru.ru_utime) + secs(ru.ru_stime),
        maxrss_kb: ru.ru_maxrss.max(0) as u64,
        leftovers: Leftovers::Unknown,
        held_back: false,
        orphaned: false,
        ended_at: crate::status::now_secs(),
    }
}

/// `wait4(which)` until it reaps `pid`, discarding any other child it reaps.
fn wait4_until(which: i32, pid: i32) -> Option<ExitRecord> {
    match reap(which, pid, 0) {
        Reaped::Shell(record) => Some(record),
        Reaped::Running | Reaped::Error => None,
    }
}

/// `wait4(which, flags)` until it reaps `pid` (its record), finds nothing more exited
/// (`Running`, only with WNOHANG) or fails; any other child it reaps is discarded.
fn reap(which: i32, pid: i32, flags: i32) -> Reaped {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals. __WALL: also children cloned with another exit
        // signal than SIGCHLD.
        let r = unsafe { libc::wait4(which, &mut status, libc::__WALL | flags, &mut ru) };
        if r == pid {
            return Reaped::Shell(exit_record(status, &ru));
        }
        if r > 0 {
            continue;
        }
        if r == 0 {
            return Reaped::Running;
        }
        if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return Reaped::Error;
    }
}

/// Writes the exit file atomically (temporary file, rename). Not synced, as run records are
/// not (see `store`): it is for the next MOM after a MOM restart, which the kernel's copy
/// serves; after a reboot the run's record says which boot it is from.
pub fn write_exit_file(path: &Path, record: &ExitRecord) -> io::Result<()> {
    let tmp = path.with_extension("exit.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(record).map_err(io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// Reads an exit file, if the supervisor wrote one.
pub fn read_exit_file(path: &Path) -> Option<ExitRecord> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::path::PathBuf;

    #[test]
    fn exit_file_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("5.exit");
        assert_eq!(read_exit_file(&path), None);
        let r = ExitRecord {
            status: 7 << 8,
            cput_secs: 1,
            maxrss_kb: 2048,
            leftovers: Leftovers::Killed,
            held_back: false,
            orphaned: true,
            ended_at: 1_700_000_000,
        };
        write_exit_file(&path, &r).expect("write");
        write_exit_file(&path, &r).expect("overwrite");
        assert_eq!(read_exit_file(&path), Some(r));
    }

    #[test]
    fn reads_an_older_supervisors_exit_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("6.exit");
        std::fs::write(&path, r#"{"status":0,"cput_secs":3,"maxrss_kb":10}"#).expect("write");
        let r = read_exit_file(&path).expect("read");
        assert_eq!((r.cput_secs, r.leftovers), (3, Leftovers::Unknown));
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by wait_child, which is under test
    fn waits_for_a_child() {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 4"])
            .spawn()
            .expect("spawn");
        let before = crate::status::now_secs();
        let r = wait_child(child.id() as i32).expect("waited");
        assert_eq!(
            crate::exit::Termination::from_wait_status(r.status),
            crate::exit::Termination::Exited(4)
        );
        // The end is stamped when the child is reaped, for a MOM that reads the file later.
        assert!((before..=crate::status::now_secs()).contains(&r.ended_at));
        assert_eq!(wait_child(child.id() as i32), None);
    }

    /// A link to a supervisor side played by `serve` on a thread, over real pipes.
    fn linked<F>(serve: F) -> (Link, std::thread::JoinHandle<io::Result<()>>)
    where
        F: FnOnce(&mut io::BufReader<File>, &mut File) -> io::Result<()> + Send + 'static,
    {
        let (mom_reads, sup_writes) = nix::unistd::pipe().expect("pipe");
        let (sup_reads, mom_writes) = nix::unistd::pipe().expect("pipe");
        let link = Link::new(File::from(mom_writes), File::from(mom_reads));
        let t = std::thread::spawn(move || {
            let mut input = io::BufReader::new(File::from(sup_reads));
            let mut out = File::from(sup_writes);
            serve(&mut input, &mut out)
        });
        (link, t)
    }

    fn files() -> Vec<Delivery> {
        vec![
            Delivery {
                spool: PathBuf::from("/s/1.vm.OU"),
                dest: PathBuf::from("/w/out"),
            },
            Delivery {
                spool: PathBuf::from("/s/1.vm.ER"),
                dest: PathBuf::from("/w/err"),
            },
        ]
    }

    #[test]
    fn delivers_through_the_supervisor() {
        let (mut link, t) = linked(|input, out| {
            serve_mom(input, out, |got| {
                assert_eq!(got, files().as_slice());
                Ok(vec![
                    None,
                    Some("cannot create regular file '/w/err': Permission denied".into()),
                ])
            })
        });
        assert!(link.exited());
        let results = link.deliver(&files()).expect("delivered");
        assert_eq!(
            results,
            vec![
                None,
                Some("cannot create regular file '/w/err': Permission denied".into())
            ]
        );
        t.join().expect("join").expect("served");
    }

    #[test]
    fn a_failed_copy_is_an_error_for_the_mom() {
        let (mut link, t) = linked(|input, out| {
            serve_mom(input, out, |_| {
                Err(DeliverError::Helper("fork\nfailed".into()))
            })
        });
        assert!(link.exited());
        let err = link.deliver(&files()).expect_err("failed");
        assert_eq!(
            err.to_string(),
            "job supervisor: copy helper failed: fork failed"
        );
        t.join().expect("join").expect("served");
    }

    #[test]
    fn an_unread_release_is_skipped_before_the_copy_list() {
        let (mut link, t) = linked(|input, out| {
            serve_mom(input, out, |got| {
                assert_eq!(got, files().as_slice());
                Ok(vec![None, None])
            })
        });
        link.go().expect("release, never read by a shell");
        assert!(link.exited());
        assert_eq!(link.deliver(&files()).expect("delivered"), vec![None, None]);
        t.join().expect("join").expect("served");
    }

    #[test]
    fn eof_at_the_go_ahead_means_no_copy() {
        let (mut link, t) =
            linked(|input, out| serve_mom(input, out, |_| panic!("nothing must be copied")));
        assert!(link.exited());
        drop(link);
        t.join().expect("join").expect("served");
    }

    #[test]
    fn a_supervisor_gone_mid_way_is_reported() {
        // Gone before "exited": the MOM reaps it and reads the exit file itself.
        let (mut link, t) = linked(|_, _| Ok(()));
        t.join().expect("join").expect("served");
        assert!(!link.exited());
        // Gone after "exited", before answering: the MOM falls back to its helper.
        let (mut link, t) = linked(|_, out| writeln!(out, "exited"));
        t.join().expect("join").expect("served");
        assert!(link.exited());
        assert!(matches!(
            link.deliver(&files()),
            Err(DeliverError::Supervisor(_))
        ));
    }

    #[test]
    fn start_reads_the_pid_or_the_failure() {
        let cases = [
            (
                "held 4242",
                Ok(Started::Held {
                    pid: 4242,
                    watches_mom: false,
                }),
            ),
            (
                "held 4242 watch",
                Ok(Started::Held {
                    pid: 4242,
                    watches_mom: true,
                }),
            ),
            // An older supervisor: the shell already runs.
            ("started 4243", Ok(Started::Unheld(4243))),
            (
                "failed PBS: no such user",
                Ok(Started::Failed("PBS: no such user".into())),
            ),
            ("held 1", Err(r#"supervisor said "held 1""#.to_string())),
        ];
        for (answer, expected) in cases {
            let (mut link, t) = linked(move |input, out| {
                let mut plan = String::new();
                input.read_line(&mut plan)?;
                assert_eq!(plan, "{\"x\":1}\n");
                writeln!(out, "{answer}")
            });
            assert_eq!(link.start(b"{\"x\":1}"), expected, "{answer}");
            t.join().expect("join").expect("served");
        }
    }
}
