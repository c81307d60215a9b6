//! What a job leaves behind when its shell exits, cleared by the run's
//! supervisor (see `supervisor`) before it reports the end.
//!
//! Torque's MOM kills every process of a job's session when the job ends.
//! Finding them means reading all of `/proc`, which on a busy node costs more
//! than the rest of ending a job, and nearly every job leaves nothing behind.
//! So the supervisor makes itself a *child subreaper*
//! (`PR_SET_CHILD_SUBREAPER`) before it starts the shell: every process the
//! job orphans (a `cmd &` the script did not wait for, a daemon that detached
//! with `setsid`) is re-parented to the supervisor instead of to init. Once the
//! shell is reaped, `waitpid(-1, WNOHANG)` answering `ECHILD` proves that no
//! descendant of the job is left, and nothing is scanned.
//!
//! Otherwise [`clear`] ends what is left as Torque's MOM does: SIGTERM to every
//! descendant of the supervisor (one `/proc` scan, following parent links), up to
//! [`TERM_GRACE`] for them to go, then SIGKILL to the rest, and reaps them.
//! It repeats as orphans of killed processes arrive, for at most the patience
//! it is given: a process in uninterruptible sleep (`D`, e.g. on a dead NFS
//! server) dies of SIGKILL only when the kernel lets it, and the job's end must
//! still be reported. Then it gives up ([`Leftovers::Stuck`]); the processes go
//! to init when the supervisor exits and the MOM sweeps the session as before.
//!
//! Why descendants, and not the job's session or process group: once the shell
//! is reaped its pid may be reused by a stranger as soon as no leftover keeps
//! the session or group id in use (one that left with `setsid` does not), so a
//! `killpg` on it could hit an unrelated process. Every leftover, wherever it
//! moved, is still a descendant of its subreaper.

use std::io;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use nix::errno::Errno;
use nix::sys::signal::{self, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::procfs::{self, Proc};

/// How long the supervisor waits for killed leftovers to die before it
/// reports the job's end anyway.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// How long leftovers have after their SIGTERM before the SIGKILL (Torque's kill_task
/// polls 20 times a quarter of a second).
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// What the supervisor found, and did, once the job's shell had exited
/// (recorded in the exit file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Leftovers {
    /// Not known: the exit file of a supervisor older than this field, or of
    /// one that could not become a subreaper. The MOM sweeps the session.
    #[default]
    Unknown,
    /// The job left no process behind.
    Nothing,
    /// It left processes; the supervisor killed and reaped every one.
    Killed,
    /// Some had not died when the supervisor's patience ran out; the MOM
    /// sweeps the session too.
    Stuck,
}

impl Leftovers {
    /// Whether no process of the job can remain, so that nobody needs to
    /// look for one.
    pub fn all_gone(self) -> bool {
        matches!(self, Leftovers::Nothing | Leftovers::Killed)
    }
}

/// Makes the calling process the parent of every orphan among its
/// descendants. Must be set before the job's shell is started.
pub fn become_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Clears what the job left behind. Call it in a subreaper that has no
/// children but the job's (the shell already reaped).
pub fn clear(patience: Duration) -> Leftovers {
    if reap_exited() == Children::None {
        return Leftovers::Nothing;
    }
    // SIGCHLD blocked, an exit between a check and the wait stays pending and
    // ends the wait at once: no wake-up is lost, and nothing polls.
    let chld = sigchld();
    let mut old = SigSet::empty();
    if signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), Some(&mut old)).is_err() {
        return Leftovers::Unknown;
    }
    // Torque's kill_task: SIGTERM first, so a script's TERM trap (the script runs in a
    // child of the job's shell, which has exited) may clean up; SIGKILL to what is left.
    // (And SIGCONT: a stopped process acts on the SIGTERM only once continued.)
    let procs = procfs::scan();
    signal_descendants_of(std::process::id() as i32, &procs, Signal::SIGTERM);
    signal_descendants_of(std::process::id() as i32, &procs, Signal::SIGCONT);
    let grace_end = Instant::now() + TERM_GRACE;
    while reap_exited() == Children::Alive {
        let left = grace_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        wait_for_sigchld(&chld, left);
    }
    let deadline = Instant::now() + patience;
    let outcome = loop {
        kill_descendants();
        if reap_exited() == Children::None {
            break Leftovers::Killed;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Leftovers::Stuck;
        }
        wait_for_sigchld(&chld, left);
    };
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    outcome
}

/// Whether the caller still has children, after reaping those that exited.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Children {
    None,
    Alive,
}

/// Reaps every child that has exited, without blocking (the job spawner's loop uses it too).
pub(crate) fn reap_exited() -> Children {
    // __WALL: also children that were cloned with another exit signal than SIGCHLD.
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::__WALL;
    loop {
        match waitpid(Pid::from_raw(-1), Some(flags)) {
            Ok(WaitStatus::StillAlive) => return Children::Alive,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => return Children::None,
            // Cannot tell: assume something is left, so someone sweeps.
            Err(_) => return Children::Alive,
        }
    }
}

/// The set of SIGCHLD alone, which the supervisor blocks while it clears leftovers and the
/// job spawner blocks for good (both wait on it).
pub(crate) fn sigchld() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set
}

/// SIGKILL to every descendant of this process (one `/proc` scan).
fn kill_descendants() {
    kill_descendants_of(std::process::id() as i32, &procfs::scan());
}

/// SIGKILL to every descendant of `root` in the process table `procs`.
pub(crate) fn kill_descendants_of(root: i32, procs: &[Proc]) {
    signal_descendants_of(root, procs, Signal::SIGKILL);
}

/// `sig` to every descendant of `root` in the process table `procs`.
fn signal_descendants_of(root: i32, procs: &[Proc], sig: Signal) {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.stat.ppid).or_default().push(p.stat.pid);
    }
    let mut todo = vec![root];
    while let Some(parent) = todo.pop() {
        for child in children.remove(&parent).unwrap_or_default() {
            if child > 1 {
                let _ = signal::kill(Pid::from_raw(child), sig);
                todo.push(child);
            }
        }
    }
}

/// Waits until a SIGCHLD is pending (it must be blocked) or `timeout` passes.
fn wait_for_sigchld(set: &SigSet, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos().into(),
    };
    // SAFETY: valid pointers; a null siginfo is allowed. EAGAIN (timeout) and
    // EINTR both just return: the caller checks again.
    unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nothing_and_killed_mean_all_gone() {
        assert!(Leftovers::Nothing.all_gone());
        assert!(Leftovers::Killed.all_gone());
        assert!(!Leftovers::Stuck.all_gone());
        assert!(!Leftovers::Unknown.all_gone());
        assert_eq!(Leftovers::default(), Leftovers::Unknown);
    }
}
