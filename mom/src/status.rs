//! The node's status report (Torque's `status` attribute, reference 9.1),
//! read from `/proc` and the kernel.
//!
//! Parsers take file text and are pure; [`Collector::collect`] does the
//! reading. Everything here is best effort: a file that cannot be read leaves
//! its fields at zero rather than failing the heartbeat, because a missing
//! heartbeat marks the whole node down.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::MomConfig;
use crate::health::Health;
use crate::job::Usage;
use crate::procfs::Proc;

/// Memory figures from `/proc/meminfo`, in kB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl MemInfo {
    /// Torque's physmem: RAM.
    pub fn physmem_kb(&self) -> u64 {
        self.mem_total
    }
    /// Torque's totmem: RAM + swap.
    pub fn totmem_kb(&self) -> u64 {
        self.mem_total + self.swap_total
    }
    /// Torque's availmem: what could still be allocated, RAM + swap.
    pub fn availmem_kb(&self) -> u64 {
        self.mem_available + self.swap_free
    }
}

/// Parses `/proc/meminfo`. Kernels older than 3.14 lack MemAvailable; then
/// MemFree + Buffers + Cached stands in for it.
pub fn parse_meminfo(text: &str) -> MemInfo {
    let mut m = MemInfo::default();
    let (mut free, mut buffers, mut cached, mut have_avail) = (0, 0, 0, false);
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "MemTotal:" => m.mem_total = v,
            "MemAvailable:" => {
                m.mem_available = v;
                have_avail = true;
            }
            "MemFree:" => free = v,
            "Buffers:" => buffers = v,
            "Cached:" => cached = v,
            "SwapTotal:" => m.swap_total = v,
            "SwapFree:" => m.swap_free = v,
            _ => {}
        }
    }
    if !have_avail {
        m.mem_available = free + buffers + cached;
    }
    m
}

/// The 1-minute load average from `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// Bytes received + sent on every interface but `lo`, from `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> u64 {
    let mut total = 0u64;
    for line in text.lines().skip(2) {
        let Some((iface, counters)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = counters
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // receive bytes is field 0, transmit bytes field 8.
        total = total
            .saturating_add(fields.first().copied().unwrap_or(0))
            .saturating_add(fields.get(8).copied().unwrap_or(0));
    }
    total
}

/// Session ids and user count of interactive (non-root) processes: Torque's
/// `sessions`/`nsessions`/`nusers`, which tell whether a workstation's owner is
/// logged in.
pub fn sessions_and_users(procs: &[Proc]) -> (Vec<i32>, u32) {
    let mut sessions: Vec<i32> = procs
        .iter()
        .filter(|p| p.uid != 0 && p.stat.session > 0)
        .map(|p| p.stat.session)
        .collect();
    sessions.sort_unstable();
    sessions.dedup();
    let mut users: Vec<u32> = procs
        .iter()
        .filter(|p| p.uid != 0 && p.stat.tty_nr != 0)
        .map(|p| p.uid)
        .collect();
    users.sort_unstable();
    users.dedup();
    (sessions, users.len() as u32)
}

/// The node status in the MOM's own terms; the session converts it to the wire type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeReport {
    pub opsys: String,
    pub uname: String,
    pub sessions: Vec<i32>,
    pub nusers: u32,
    pub idletime: u64,
    pub totmem_kb: u64,
    pub availmem_kb: u64,
    pub physmem_kb: u64,
    pub ncpus: u32,
    pub loadave: f64,
    pub netload: u64,
    /// `free`, `busy`, or `down` (the health check failed).
    pub state: String,
    /// The health check's message (`ERROR ...`, `EVENT: ...`), if any.
    pub message: Option<String>,
    pub jobs: Vec<String>,
    pub rectime: i64,
    pub usage: Vec<(u64, Usage)>,
}

/// Builds status reports; remembers the busy state between reports (the
/// load thresholds have hysteresis) and the config file to reload on SIGHUP.
#[derive(Debug)]
pub struct Collector {
    config_path: PathBuf,
    config: MomConfig,
    busy: bool,
    /// What the last health check said (healthy until one says otherwise).
    health: Health,
}

impl Collector {
    pub fn new(config_path: PathBuf) -> Collector {
        let mut c = Collector {
            config_path,
            config: MomConfig::default(),
            busy: false,
            health: Health::default(),
        };
        c.reload();
        c
    }

    /// Rereads `mom_priv/config` (at start and on SIGHUP); returns what it now says.
    pub fn reload(&mut self) -> MomConfig {
        let (config, warnings) = MomConfig::load(&self.config_path);
        for w in warnings {
            tracing::warn!("{}: {w}", self.config_path.display());
        }
        self.config = config.clone();
        config
    }

    /// Takes a health check's verdict; true when it changes what the node reports.
    pub fn set_health(&mut self, health: Health) -> bool {
        std::mem::replace(&mut self.health, health.clone()) != health
    }

    /// What the last health check said.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The config as last loaded.
    pub fn config(&self) -> MomConfig {
        self.config.clone()
    }

    /// Reads the node's state. `jobs` and `usage` come from the runner.
    pub fn collect(
        &mut self,
        procs: &[Proc],
        jobs: Vec<String>,
        usage: Vec<(u64, Usage)>,
    ) -> NodeReport {
        let mem = std::fs::read_to_string("/proc/meminfo")
            .map(|t| parse_meminfo(&t))
            .unwrap_or_default();
        let loadave = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|t| parse_loadavg(&t))
            .unwrap_or(0.0);
        let netload = std::fs::read_to_string("/proc/net/dev")
            .map(|t| parse_net_dev(&t))
            .unwrap_or(0);
        self.busy = self.config.busy(self.busy, loadave);
        let (sessions, nusers) = sessions_and_users(procs);
        let now = now_secs();
        NodeReport {
            opsys: "linux".into(),
            uname: uname_line(),
            sessions,
            nusers,
            idletime: idletime(now),
            totmem_kb: mem.totmem_kb(),
            availmem_kb: mem.availmem_kb(),
            physmem_kb: mem.physmem_kb(),
            ncpus: ncpus(),
            loadave,
            netload,
            state: if self.health.down {
                "down"
            } else if self.busy {
                "busy"
            } else {
                "free"
            }
            .into(),
            message: self.health.message.clone(),
            jobs,
            rectime: now,
            usage,
        }
    }
}

/// `uname -a` style: sysname nodename release version machine.
fn uname_line() -> String {
    match nix::sys::utsname::uname() {
        Ok(u) => [
            u.sysname(),
            u.nodename(),
            u.release(),
            u.version(),
            u.machine(),
        ]
        .iter()
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" "),
        Err(_) => String::new(),
    }
}

fn ncpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as u32
    } else {
        1
    }
}

/// Seconds since the last keyboard/terminal activity (Torque checks tty and
/// input device access times). With no such device, time since boot.
fn idletime(now: i64) -> u64 {
    let mut latest: i64 = 0;
    for dir in ["/dev/pts", "/dev/input"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            if let Ok(meta) = e.metadata() {
                use std::os::unix::fs::MetadataExt;
                latest = latest.max(meta.atime()).max(meta.mtime());
            }
        }
    }
    if latest == 0 {
        // /proc/uptime: "SECONDS_UP IDLE_SECONDS".
        return std::fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .map(|u| u as u64)
            .unwrap_or(0);
    }
    (now - latest).max(0) as u64
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::procfs::ProcStat;

    const MEMINFO: &str = "MemTotal:       24684084 kB\nMemFree:         1000000 kB\nMemAvailable:   24268280 kB\nBuffers:          100 kB\nCached:           200 kB\nSwapTotal:       2097148 kB\nSwapFree:        2000000 kB\n";

    #[test]
    fn meminfo_maps_to_torque_fields() {
        let m = parse_meminfo(MEMINFO);
        assert_eq!(m.physmem_kb(), 24684084);
        assert_eq!(m.totmem_kb(), 24684084 + 2097148);
        assert_eq!(m.availmem_kb(), 24268280 + 2000000);
    }

    #[test]
    fn meminfo_without_memavailable() {
        let m =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 300 kB\nBuffers: 20 kB\nCached: 80 kB\n");
        assert_eq!(m.mem_available, 400);
        assert_eq!(m.totmem_kb(), 1000);
        assert_eq!(parse_meminfo("garbage\n\n"), MemInfo::default());
    }

    #[test]
    fn loadavg() {
        assert_eq!(parse_loadavg("3.44 2.10 1.00 2/345 6789\n"), Some(3.44));
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn net_dev_skips_lo() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n  eth0: 1000 10 0 0 0 0 0 0 234 3 0 0 0 0 0 0\n";
        assert_eq!(parse_net_dev(text), 1234);
    }

    #[test]
    fn sessions_and_users_ignore_root() {
        let p = |pid, session, tty_nr, uid| Proc {
            stat: ProcStat {
                pid,
                session,
                tty_nr,
                ..Default::default()
            },
            uid,
        };
        let procs = [
            p(1, 1, 0, 0),
            p(10, 10, 34816, 1000),
            p(11, 10, 34816, 1000),
            p(20, 20, 0, 1001),
        ];
        assert_eq!(sessions_and_users(&procs), (vec![10, 20], 1));
    }
}
