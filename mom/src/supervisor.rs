//! The per-run supervisor: a small process (`pbs_mom` re-executed with
//! [`SUPERVISE_ARG`]) that execs the job's shell, waits for it and writes how
//! it ended to `mom_priv/jobs/RUNID.exit`.
//!
//! Why a separate process: only a process's parent can learn its exit status
//! and rusage. If the MOM itself were the parent, a MOM restart (upgrade,
//! crash, `kill -9`) would orphan every running job and lose its exit status.
//! The supervisor is started in its own session, so it outlives the MOM, and
//! the next MOM reads the result from the file. It is single-threaded and runs
//! no async runtime, so forking the job from it is simple.
//!
//! Protocol with the MOM: the [`ExecPlan`] as JSON on stdin; one line on
//! stdout, `started PID` or `failed MESSAGE`; then the exit file.

use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::launch::{self, ExecPlan};

/// First argument that turns `pbs_mom` into a supervisor.
pub const SUPERVISE_ARG: &str = "--capstan-supervise";

/// How the job's shell ended, as `wait4` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Raw wait status.
    pub status: i32,
    /// User + system CPU of the shell and every descendant it waited for.
    pub cput_secs: u64,
    /// Peak resident set of the largest of them, kB.
    pub maxrss_kb: u64,
}

/// Supervisor entry point; returns the process exit code.
pub fn main(exit_file: &Path) -> i32 {
    let mut input = Vec::new();
    let mut out = io::stdout();
    let plan: ExecPlan = match io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "failed PBS: bad job plan: {e}");
            return 1;
        }
    };
    let pid = match launch::spawn_job(&plan) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = writeln!(out, "failed {}", e.0.replace('\n', " "));
            return 0;
        }
    };
    let _ = writeln!(out, "started {pid}");
    let _ = out.flush();
    let Some(record) = wait_child(pid) else {
        return 1;
    };
    match write_exit_file(exit_file, &record) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Waits for a child (blocking) and collects its rusage.
pub fn wait_child(pid: i32) -> Option<ExitRecord> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            let secs = |t: libc::timeval| t.tv_sec.max(0) as u64 + u64::from(t.tv_usec >= 500_000);
            return Some(ExitRecord {
                status,
                cput_secs: secs(ru.ru_utime) + secs(ru.ru_stime),
                maxrss_kb: ru.ru_maxrss.max(0) as u64,
            });
        }
        if r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return None;
    }
}

/// Writes the exit file atomically (temporary file, sync, rename).
pub fn write_exit_file(path: &Path, record: &ExitRecord) -> io::Result<()> {
    let tmp = path.with_extension("exit.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(record).map_err(io::Error::other)?)?;
    f.sync_all()?;
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

    #[test]
    fn exit_file_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("5.exit");
        assert_eq!(read_exit_file(&path), None);
        let r = ExitRecord {
            status: 7 << 8,
            cput_secs: 1,
            maxrss_kb: 2048,
        };
        write_exit_file(&path, &r).expect("write");
        write_exit_file(&path, &r).expect("overwrite");
        assert_eq!(read_exit_file(&path), Some(r));
    }

    #[test]
    #[allow(clippy::zombie_processes)] // reaped by wait_child, which is under test
    fn waits_for_a_child() {
        let child = std::process::Command::new("/bin/sh")
            .args(["-c", "exit 4"])
            .spawn()
            .expect("spawn");
        let r = wait_child(child.id() as i32).expect("waited");
        assert_eq!(
            crate::exit::Termination::from_wait_status(r.status),
            crate::exit::Termination::Exited(4)
        );
        assert_eq!(wait_child(child.id() as i32), None);
    }
}
