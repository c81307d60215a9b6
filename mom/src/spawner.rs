//! Where runs' supervisors come from: a fork server, so that starting a job
//! costs a `fork`, not the `exec` of a program.
//!
//! Why: on a VM, a program's start-up is dominated by the dynamic loader and
//! libc's CPU probes (each `cpuid` traps to the hypervisor). Measured on the
//! bench machine, an exec'd supervisor's start-up cost more CPU than the job's
//! whole shell. The spawner is `capstan_supervisor --capstan-spawner` (see
//! [`supervisor::program`]), started once by the MOM: single-threaded and
//! without an async runtime, so it may fork and go on running Rust in the
//! child, which the multi-threaded MOM may not.
//!
//! Protocol, over a `SOCK_SEQPACKET` socket pair (the spawner's stdin), one
//! message each way per run:
//!
//! ```text
//! → the run's exit file path, with two descriptors (SCM_RIGHTS): the read end
//!   of the MOM → supervisor pipe and the write end of the supervisor → MOM pipe
//! ← the supervisor's pid (i32, native endian), or -errno if fork failed
//! ```
//!
//! The child puts those pipes on its stdin and stdout, closes everything else
//! and is from then on the run's supervisor, exactly as an exec'd one
//! ([`supervisor::main`]). The spawner reaps the supervisors (the MOM is not
//! their parent and could not): it blocks SIGCHLD and waits on a signalfd
//! beside the socket, so their CPU time adds up in its own, as it used to in
//! the MOM's. At EOF (the MOM is gone) the spawner exits; the supervisors
//! live on, as they always did.
//!
//! If the spawner cannot be started or dies, the MOM starts a new one once and
//! retries; if that fails too it execs the supervisor itself, as before
//! (`launch::spawn_supervisor`), so a broken spawner costs speed, not jobs. A
//! spawner that fails its very first request (an older `capstan_supervisor`
//! that does not know the role) is not tried again by this MOM process. A
//! spawner that does not answer within [`ANSWER_TIMEOUT`] (stopped, wedged)
//! counts as gone: the request holds the spawner's lock, and every launch of
//! the node would otherwise wait behind it forever. A supervisor it forked
//! late never hears `go` (its pipes' MOM ends are closed), so it exits
//! without running the job.

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{self, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::socket::{sockopt, SockFlag, SockType};
use nix::sys::time::TimeVal;
use nix::unistd::dup2;

use crate::launch::{self, LaunchError};
use crate::leftovers;
use crate::procfs;
use crate::supervisor::{self, Link};

/// First argument that makes `capstan_supervisor` (or `pbs_mom`) the spawner.
pub const SPAWNER_ARG: &str = "--capstan-spawner";

/// What ps shows for the spawner, apart from the supervisors it forks.
pub const SPAWNER_NAME: &CStr = c"capstan_spawner";

/// How long the spawner may take to answer a request. A fork takes well under a
/// millisecond; this is a machine stalled for seconds, or a spawner that is stopped.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest exit file path a request carries (the kernel's PATH_MAX).
const MAX_PATH: usize = 4096;

/// A run's supervisor process as the MOM holds it.
#[derive(Debug)]
pub struct SupervisorProcess {
    pub pid: i32,
    /// Its start time in clock ticks after boot (0 if it is already gone):
    /// with the pid, it names this process (see `RunRecord::supervisor_started`).
    pub started: u64,
    /// Set when the MOM exec'd it itself (the fallback): the MOM is its
    /// parent and must reap it. The spawner reaps its own.
    exec_child: Option<Child>,
}

impl SupervisorProcess {
    fn new(pid: i32, exec_child: Option<Child>) -> SupervisorProcess {
        SupervisorProcess {
            pid,
            started: procfs::stat_of(pid).map_or(0, |s| s.start_ticks),
            exec_child,
        }
    }

    /// Reaps it if the MOM is its parent. Call once its stdout reached EOF
    /// ([`Link::close`]): it has exited, or is about to.
    pub fn reap(self) {
        if let Some(mut child) = self.exec_child {
            let _ = child.wait();
        }
    }

    /// SIGKILL to this supervisor, and to no other process: a forked one is reaped by the
    /// spawner, after which its pid may name a stranger, so its start time must still match
    /// (an exec'd one is the MOM's unreaped child: its pid cannot be reused meanwhile).
    pub fn kill(&mut self) {
        match &mut self.exec_child {
            Some(child) => {
                let _ = child.kill();
            }
            None => {
                let same = procfs::stat_of(self.pid)
                    .is_some_and(|s| self.started != 0 && s.start_ticks == self.started);
                if same {
                    let _ = signal::kill(nix::unistd::Pid::from_raw(self.pid), Signal::SIGKILL);
                }
            }
        }
    }
}

/// The MOM's side: starts supervisors through the spawner (blocking calls;
/// concurrent launches take turns, each holding the spawner for one fork).
pub struct Spawner {
    program: PathBuf,
    answer_timeout: Duration,
    state: Mutex<State>,
}

enum State {
    /// None yet, or the last one died: start one at the next launch.
    Idle,
    Running(Running),
    /// A new spawner failed its first request: supervisors are exec'd from now on.
    Broken,
}

/// A started spawner: its process and the MOM's end of its socket.
struct Running {
    child: Child,
    socket: OwnedFd,
}

/// Why a request to the spawner did not give a supervisor.
enum Refusal {
    /// The spawner is gone or talks nonsense: start another.
    Gone(String),
    /// It is there but could not fork (errno).
    Fork(Errno),
}

impl Spawner {
    /// `program` is what [`supervisor::program`] names; nothing starts until
    /// the first run.
    pub fn new(program: PathBuf) -> Spawner {
        Spawner {
            program,
            answer_timeout: ANSWER_TIMEOUT,
            state: Mutex::new(State::Idle),
        }
    }

    /// The program run as supervisors (and as the copy helper).
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Starts a supervisor that will write the shell's end to `exit_file`,
    /// and the MOM's end of its pipes.
    pub fn spawn(&self, exit_file: &Path) -> Result<(SupervisorProcess, Link), LaunchError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            let fresh = matches!(*state, State::Idle);
            if fresh {
                match start(&self.program, self.answer_timeout) {
                    Ok(r) => *state = State::Running(r),
                    Err(e) => {
                        tracing::warn!(program = %self.program.display(), "cannot start the job spawner: {e}");
                        break;
                    }
                }
            }
            let State::Running(r) = &*state else { break };
            let (to_read, to_write) = pipe()?;
            let (from_read, from_write) = pipe()?;
            match request(
                &r.socket,
                exit_file,
                [to_read.as_raw_fd(), from_write.as_raw_fd()],
            ) {
                Ok(pid) => {
                    let link = Link::new(File::from(to_write), File::from(from_read));
                    return Ok((SupervisorProcess::new(pid, None), link));
                }
                Err(Refusal::Fork(e)) => {
                    return Err(LaunchError(format!("PBS: cannot fork job supervisor: {e}")))
                }
                Err(Refusal::Gone(why)) => {
                    let next = if fresh {
                        tracing::warn!(program = %self.program.display(), "a new job spawner failed ({why}): supervisors are exec'd from now on");
                        State::Broken
                    } else {
                        tracing::warn!(attempt, "job spawner gone ({why}): starting another");
                        State::Idle
                    };
                    if let State::Running(mut old) = std::mem::replace(&mut *state, next) {
                        let _ = old.child.kill();
                        let _ = old.child.wait();
                    }
                }
            }
        }
        drop(state);
        let (child, link) = launch::spawn_supervisor(&self.program, exit_file)?;
        Ok((SupervisorProcess::new(child.id() as i32, Some(child)), link))
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), LaunchError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| {
        LaunchError(format!(
            "PBS: cannot make a pipe for the job supervisor: {e}"
        ))
    })
}

/// Starts the spawner as `launch::spawn_supervisor` starts a supervisor (std's
/// posix_spawn path: nothing runs between fork and exec in the MOM). A read of its
/// answer fails with EAGAIN after `answer_timeout`.
fn start(program: &Path, answer_timeout: Duration) -> std::io::Result<Running> {
    let (mom_end, spawner_end) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    socket::setsockopt(
        &mom_end,
        sockopt::ReceiveTimeout,
        &TimeVal::from(libc::timeval {
            tv_sec: answer_timeout.as_secs() as libc::time_t,
            tv_usec: answer_timeout.subsec_micros() as libc::suseconds_t,
        }),
    )?;
    let child = supervisor::helper_command(program, SPAWNER_ARG)
        .stdin(Stdio::from(spawner_end))
        .stdout(Stdio::null())
        .spawn()?;
    Ok(Running {
        child,
        socket: mom_end,
    })
}

/// One request: the supervisor's pid.
fn request(socket: &OwnedFd, exit_file: &Path, fds: [RawFd; 2]) -> Result<i32, Refusal> {
    let path = exit_file.as_os_str().as_bytes();
    let rights = [ControlMessage::ScmRights(&fds)];
    socket::sendmsg::<()>(
        socket.as_raw_fd(),
        &[IoSlice::new(path)],
        &rights,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| Refusal::Gone(format!("send: {e}")))?;
    let mut answer = [0u8; 4];
    let got = nix::unistd::read(socket.as_raw_fd(), &mut answer).map_err(|e| match e {
        Errno::EAGAIN => Refusal::Gone("no answer in time".into()),
        e => Refusal::Gone(format!("receive: {e}")),
    })?;
    if got != answer.len() {
        return Err(Refusal::Gone(format!("answered {got} bytes")));
    }
    match i32::from_ne_bytes(answer) {
        pid if pid > 1 => Ok(pid),
        errno if errno < 0 => Err(Refusal::Fork(Errno::from_raw(-errno))),
        other => Err(Refusal::Gone(format!("answered pid {other}"))),
    }
}

/// The spawner's main loop (it was exec'd with [`SPAWNER_ARG`]; its stdin is
/// the socket). Returns the exit code in the spawner; in each forked child,
/// runs the supervisor and exits with its code.
pub fn main() -> i32 {
    // A session of its own, as each supervisor has: a Ctrl-C to the MOM's
    // terminal does not stop launches (the MOM would start another anyway).
    let _ = nix::unistd::setsid();
    if leftovers::sigchld().thread_block().is_err() {
        return 1;
    }
    let flags = SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK;
    let Ok(exits) = SignalFd::with_flags(&leftovers::sigchld(), flags) else {
        return 1;
    };
    // SAFETY: fd 0 is the socket the MOM gave as stdin, and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(0) };
    let mut path = vec![0u8; MAX_PATH];
    loop {
        leftovers::reap_exited();
        let mut ready = [
            PollFd::new(socket.as_fd(), PollFlags::POLLIN),
            PollFd::new(exits.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut ready, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return 1,
        }
        let request = ready[0].any().unwrap_or(true);
        while let Ok(Some(_)) = exits.read_signal() {}
        if !request {
            continue;
        }
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [IoSliceMut::new(&mut path)];
        let received = socket::recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        );
        let msg = match received {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(_) => return 1,
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    // SAFETY: the kernel just installed these descriptors for us.
                    fds.extend(
                        received
                            .into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
        }
        let bytes = msg.bytes;
        let cut = msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        if bytes == 0 && fds.is_empty() {
            return 0; // EOF: the MOM is gone
        }
        let answer = match <[OwnedFd; 2]>::try_from(fds) {
            Ok(pipes) if !cut && bytes > 0 => {
                let exit_file = PathBuf::from(OsStr::from_bytes(&path[..bytes]));
                fork_supervisor(&exit_file, pipes)
            }
            // A request the MOM would not send: refuse it, stay up.
            _ => -(Errno::EINVAL as i32),
        };
        if nix::unistd::write(&socket, &answer.to_ne_bytes()).is_err() {
            return 0;
        }
    }
}

/// Forks one supervisor; its pid, or -errno. `pipes` are closed here either way.
fn fork_supervisor(exit_file: &Path, pipes: [OwnedFd; 2]) -> i32 {
    // SAFETY: this process is single-threaded, so the child may run any code.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => child.as_raw(),
        Ok(nix::unistd::ForkResult::Child) => {
            std::process::exit(become_supervisor(exit_file, pipes))
        }
        Err(e) => -(e as i32),
    }
}

/// In the forked child: the pipes on stdin and stdout, nothing else open (the
/// signalfd goes too), SIGCHLD unblocked again, then the supervisor.
fn become_supervisor(exit_file: &Path, [input, output]: [OwnedFd; 2]) -> i32 {
    let restored = leftovers::sigchld().thread_unblock().is_ok();
    // Onto 0 and 1, replacing the socket and /dev/null; the originals close here.
    let moved = dup2(input.as_raw_fd(), 0).is_ok() && dup2(output.as_raw_fd(), 1).is_ok();
    drop((input, output));
    if !restored || !moved {
        return 1;
    }
    supervisor::become_helper(supervisor::HELPER_NAME);
    supervisor::main(exit_file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A program that logs its role (to `roles`) and exits at once: as a spawner it fails its
    /// first request, as an exec'd supervisor it is gone before the MOM says anything. `then`
    /// runs after the log line.
    fn logging_program(dir: &Path, then: &str) -> PathBuf {
        let program = dir.join("helper.sh");
        let log = dir.join("roles");
        std::fs::write(
            &program,
            format!("#!/bin/sh\necho \"$1\" >> '{}'\n{then}", log.display()),
        )
        .expect("write");
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        program
    }

    #[test]
    fn a_spawner_that_does_not_answer_is_given_up_and_the_supervisor_execd() {
        let dir = tempfile::tempdir().expect("tempdir");
        // As the spawner it reads nothing and never answers; as a supervisor it logs and exits.
        let program = logging_program(
            dir.path(),
            &format!("[ \"$1\" = {SPAWNER_ARG} ] && exec sleep 60\nexit 0\n"),
        );
        let log = dir.path().join("roles");
        let spawner = Spawner {
            answer_timeout: Duration::from_millis(200),
            ..Spawner::new(program)
        };
        let begun = std::time::Instant::now();
        let (mut supervisor, link) = spawner
            .spawn(&dir.path().join("1.exit"))
            .expect("exec'd instead");
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "{:?}",
            begun.elapsed()
        );
        link.close();
        supervisor.kill();
        supervisor.reap();
        let roles = std::fs::read_to_string(&log).expect("roles");
        assert_eq!(
            roles.lines().collect::<Vec<_>>(),
            [SPAWNER_ARG, supervisor::SUPERVISE_ARG]
        );
        // The silent spawner was killed and reaped, and is not asked again.
        assert!(matches!(*spawner.state.lock().unwrap(), State::Broken));
    }

    #[test]
    fn a_spawner_that_fails_its_first_request_is_not_started_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spawner = Spawner::new(logging_program(dir.path(), ""));
        for run in 0..3 {
            let exit_file = dir.path().join(format!("{run}.exit"));
            let (mut supervisor, link) = spawner.spawn(&exit_file).expect("exec'd instead");
            link.close();
            supervisor.kill();
            supervisor.reap();
        }
        let roles = std::fs::read_to_string(dir.path().join("roles")).expect("roles");
        let count = |role: &str| roles.lines().filter(|l| *l == role).count();
        assert_eq!(count(SPAWNER_ARG), 1, "{roles}");
        assert_eq!(count(supervisor::SUPERVISE_ARG), 3, "{roles}");
    }
}
