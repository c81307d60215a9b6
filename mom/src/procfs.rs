//! Reading `/proc`: one scan of every process, shared by node status (sessions,
//! users) and per-job usage (the processes in a job's session).
//!
//! Parsers are pure functions over the file text so they can be tested with
//! fixed input; the readers ([`scan`], [`proc_of`], [`stat_of`], [`cmdline`])
//! only open the files and hand the text to them.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The fields of `/proc/PID/stat` the MOM uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub tty_nr: i32,
    /// utime + stime + cutime + cstime, in clock ticks: the CPU this process
    /// and its already-reaped children used.
    pub cpu_ticks: u64,
    /// utime + stime alone: the CPU this process used itself (`pcput`).
    pub own_cpu_ticks: u64,
    /// Virtual size in bytes.
    pub vsize: u64,
    /// Resident set in pages.
    pub rss_pages: u64,
    /// When the process started, in clock ticks after boot: with the pid, it
    /// names one process (a pid alone may be reused).
    pub start_ticks: u64,
}

/// One process as the scan saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub stat: ProcStat,
    pub uid: u32,
}

/// Parses `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    // Fields after the comm, numbered from 3 (state).
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n).and_then(|s| s.parse::<i64>().ok());
    let state = field(3)?.chars().next()?;
    let ticks = |n: usize| num(n).map(|v| v.max(0) as u64).unwrap_or(0);
    Some(ProcStat {
        pid,
        state,
        ppid: num(4)? as i32,
        pgrp: num(5)? as i32,
        session: num(6)? as i32,
        tty_nr: num(7)? as i32,
        cpu_ticks: ticks(14) + ticks(15) + ticks(16) + ticks(17),
        own_cpu_ticks: ticks(14) + ticks(15),
        vsize: num(23).map(|v| v.max(0) as u64).unwrap_or(0),
        rss_pages: num(24).map(|v| v.max(0) as u64).unwrap_or(0),
        start_ticks: ticks(22),
    })
}

/// Every process currently visible. Processes that vanish mid-scan are skipped.
pub fn scan() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        out.extend(read_proc(&entry.path()));
    }
    out
}

/// One process (its stat and owner), if it exists.
pub fn proc_of(pid: i32) -> Option<Proc> {
    read_proc(Path::new(&format!("/proc/{pid}")))
}

fn read_proc(dir: &Path) -> Option<Proc> {
    let meta = std::fs::metadata(dir).ok()?;
    let text = std::fs::read_to_string(dir.join("stat")).ok()?;
    Some(Proc {
        stat: parse_stat(&text)?,
        uid: meta.uid(),
    })
}

/// `/proc/PID/stat` of one process, if it exists.
pub fn stat_of(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// The arguments of one process (`/proc/PID/cmdline`), if it exists.
pub fn cmdline(pid: i32) -> Option<Vec<Vec<u8>>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args: Vec<Vec<u8>> = raw.split(|b| *b == 0).map(<[u8]>::to_vec).collect();
    // The kernel ends every argument with a NUL, so the split leaves an empty last piece.
    if args.last().is_some_and(Vec::is_empty) {
        args.pop();
    }
    Some(args)
}

/// Totals over the live processes of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionTotals {
    pub cpu_ticks: u64,
    pub rss_kb: u64,
    pub vsize_kb: u64,
    /// The whole sum in bytes, and one process's largest, and the most CPU one process
    /// used itself (the job's `vmem`, `pvmem` and `pcput` limits).
    pub vsize_bytes: u64,
    pub max_process_vsize: u64,
    pub max_process_cpu_ticks: u64,
    pub processes: usize,
}

/// Sums a session's processes (zombies count for CPU only).
pub fn session_totals(procs: &[Proc], session: i32, page_kb: u64) -> SessionTotals {
    let mut t = SessionTotals::default();
    for p in procs.iter().filter(|p| p.stat.session == session) {
        t.cpu_ticks += p.stat.cpu_ticks;
        t.max_process_cpu_ticks = t.max_process_cpu_ticks.max(p.stat.own_cpu_ticks);
        if p.stat.state != 'Z' {
            t.rss_kb += p.stat.rss_pages * page_kb;
            t.vsize_kb += p.stat.vsize / 1024;
            t.vsize_bytes = t.vsize_bytes.saturating_add(p.stat.vsize);
            t.max_process_vsize = t.max_process_vsize.max(p.stat.vsize);
            t.processes += 1;
        }
    }
    t
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`, new at every boot); empty if the
/// kernel does not say.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// When this boot began (`btime` in `/proc/stat`), if the kernel says.
pub fn boot_time() -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs = parse_btime(&stat)?;
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// The `btime` line of `/proc/stat`: the boot's start, seconds since the epoch.
fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|secs| secs.trim().parse().ok())
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// Page size in kB.
pub fn page_kb() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        (v as u64 / 1024).max(1)
    } else {
        4
    }
}

/// Signals a job's process group; with `sweep`, also every process still in
/// its session that moved to another group (blocking: scans /proc).
pub fn kill_session(sid: i32, sig: nix::sys::signal::Signal, sweep: bool) {
    if sid <= 1 {
        return;
    }
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(sid), sig);
    if !sweep {
        return;
    }
    for p in scan() {
        let s = p.stat;
        if s.pid > 1 && s.session == sid && s.pgrp != sid {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid), sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btime_is_read_from_its_line() {
        let stat = "cpu  1 2 3 4\nintr 5\nbtime 1765000000\nprocesses 7\n";
        assert_eq!(parse_btime(stat), Some(1_765_000_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
        assert!(boot_time().is_some(), "this kernel says when it booted");
    }

    const STAT: &str = "4242 (my (odd) prog) S 1 4242 4242 34816 4242 4194560 500 0 0 0 150 50 7 3 20 0 1 0 123456 10485760 256 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn parses_stat_with_odd_comm() {
        let s = parse_stat(STAT).expect("parse");
        assert_eq!(s.pid, 4242);
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.session, 4242);
        assert_eq!(s.tty_nr, 34816);
        assert_eq!(s.cpu_ticks, 150 + 50 + 7 + 3);
        assert_eq!(s.own_cpu_ticks, 150 + 50);
        assert_eq!(s.vsize, 10485760);
        assert_eq!(s.rss_pages, 256);
        assert_eq!(s.start_ticks, 123456);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x) S"), None);
    }

    #[test]
    fn sums_one_session() {
        let mut a = parse_stat(STAT).expect("parse");
        let mut b = a;
        b.pid = 4243;
        b.own_cpu_ticks = 300;
        b.vsize = 20 << 20;
        let mut z = a;
        z.pid = 4244;
        z.state = 'Z';
        let mut other = a;
        other.session = 1;
        a.pid = 4242;
        let procs: Vec<Proc> = [a, b, z, other]
            .into_iter()
            .map(|stat| Proc { stat, uid: 1000 })
            .collect();
        let t = session_totals(&procs, 4242, 4);
        assert_eq!(t.processes, 2);
        assert_eq!(t.cpu_ticks, 3 * 210);
        assert_eq!(t.rss_kb, 2 * 256 * 4);
        assert_eq!(t.vsize_kb, 10240 + 20480);
        assert_eq!(t.vsize_bytes, (10 << 20) + (20 << 20));
        assert_eq!(t.max_process_vsize, 20 << 20);
        assert_eq!(t.max_process_cpu_ticks, 300);
    }

    #[test]
    fn scans_this_process() {
        let me = std::process::id() as i32;
        assert!(scan().iter().any(|p| p.stat.pid == me));
        assert_eq!(stat_of(me).map(|s| s.pid), Some(me));
    }
}
