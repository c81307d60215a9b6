//! A job's resource limits (`qsub -l cput=...,mem=...`), applied as Torque's Linux MOM
//! applies them (`mom_set_limits` and `mom_over_limit`, `src/resmom/linux/mom_mach.c`):
//! some are `setrlimit` limits set on the job's shell before it execs, so every process of
//! the job inherits them; the others are totals the MOM compares with the job's usage each
//! time it samples it (every status report), killing the job when one is exceeded.
//!
//! | `-l` | limit |
//! |---|---|
//! | `pcput` | `RLIMIT_CPU` on each process; also checked per process at each sample |
//! | `cput` | the job's CPU time, summed over its processes, checked at each sample |
//! | `file` | `RLIMIT_FSIZE` |
//! | `pmem`, and `mem` of a job on one node | `RLIMIT_DATA` and `RLIMIT_RSS` (a job on several nodes has no per-process `mem` limit, as in Torque) |
//! | `vmem`, `pvmem` | the smaller is `RLIMIT_AS` (never below `mem`'s limit plus the stack's); the job's total virtual memory is checked against `vmem`, each process's against `pvmem` |
//! | `nice` | the shell's `nice(N)` (as root, before the job becomes its user, so a negative value works as in Torque) |
//!
//! A job over a checked limit gets Torque's notice in its stderr (`=>> PBS: job killed:
//! cput 12 exceeded limit 10`), SIGTERM, then SIGKILL, and ends with `-12`
//! (JOB_EXEC_OVERLIMIT_CPUT) or `-10` (JOB_EXEC_OVERLIMIT_MEM). `$igncput`, `$ignmem` and
//! `$ignvmem` in `mom_priv/config` turn each family off, and `$ignwalltime` the walltime
//! kill, as in Torque.
//!
//! Pure: the launch sets the [`ProcessLimits`], the runner hands [`Watch::exceeded`] what it
//! sampled.

use serde::{Deserialize, Serialize};

use capstan_proto::job_exec;
use capstan_proto::resources::{parse_duration, parse_size};

/// Which of Torque's limits this MOM leaves alone (`$igncput`, `$ignmem`, `$ignvmem`,
/// `$ignwalltime`; all enforced by default, as in Torque).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ignored {
    pub cput: bool,
    pub mem: bool,
    pub vmem: bool,
    /// No kill at the walltime limit (the runner's timer is not started).
    pub walltime: bool,
}

/// The `setrlimit` limits and niceness a job's shell takes before exec (soft = hard, as
/// Torque sets them). Travels in the supervisor's exec plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLimits {
    /// `RLIMIT_CPU`, seconds (`pcput`).
    pub cpu_secs: Option<u64>,
    /// `RLIMIT_FSIZE`, bytes (`file`).
    pub file_bytes: Option<u64>,
    /// `RLIMIT_DATA` and `RLIMIT_RSS`, bytes (`pmem`, a one-node job's `mem`).
    pub data_bytes: Option<u64>,
    /// `RLIMIT_AS`, bytes (`vmem`, `pvmem`).
    pub address_space_bytes: Option<u64>,
    /// `nice`: added to the shell's niceness.
    pub nice: Option<i32>,
}

impl ProcessLimits {
    /// The `(resource, value)` pairs to set, in Torque's order.
    pub fn rlimits(&self) -> Vec<(Rlimit, u64)> {
        let mut out = Vec::new();
        if let Some(v) = self.cpu_secs {
            out.push((Rlimit::Cpu, v));
        }
        if let Some(v) = self.file_bytes {
            out.push((Rlimit::FileSize, v));
        }
        if let Some(v) = self.data_bytes {
            out.push((Rlimit::Data, v));
            out.push((Rlimit::Rss, v));
        }
        if let Some(v) = self.address_space_bytes {
            out.push((Rlimit::AddressSpace, v));
        }
        out
    }
}

/// The resource limits Torque sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    Cpu,
    FileSize,
    Data,
    Rss,
    AddressSpace,
}

impl Rlimit {
    /// The `setrlimit` resource number.
    pub fn resource(self) -> libc::__rlimit_resource_t {
        match self {
            Rlimit::Cpu => libc::RLIMIT_CPU,
            Rlimit::FileSize => libc::RLIMIT_FSIZE,
            Rlimit::Data => libc::RLIMIT_DATA,
            Rlimit::Rss => libc::RLIMIT_RSS,
            Rlimit::AddressSpace => libc::RLIMIT_AS,
        }
    }
}

/// The limits the MOM checks against the job's sampled usage. Kept in the run's record, so
/// a MOM that adopts the run after a restart goes on checking them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// `cput`: the job's CPU seconds, all its processes together.
    pub cput_secs: Option<u64>,
    /// `pcput`: any one process's CPU seconds.
    pub pcput_secs: Option<u64>,
    /// `vmem`: the job's virtual memory, all its processes together, bytes.
    pub vmem_bytes: Option<u64>,
    /// `pvmem`: any one process's virtual memory, bytes.
    pub pvmem_bytes: Option<u64>,
}

/// What one sample saw of a job's live processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sampled {
    /// CPU seconds of the job's processes and the children they reaped.
    pub cput_secs: u64,
    /// The most CPU seconds one process used itself.
    pub max_process_cput_secs: u64,
    /// Virtual memory of the job's live processes, bytes.
    pub vmem_bytes: u64,
    /// The largest virtual memory of one process, bytes.
    pub max_process_vmem_bytes: u64,
}

/// Which family of limits a job exceeded: it decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exceeded {
    /// `cput` or `pcput`: JOB_EXEC_OVERLIMIT_CPUT.
    Cpu,
    /// `vmem` or `pvmem`: JOB_EXEC_OVERLIMIT_MEM.
    Memory,
}

impl Exceeded {
    /// Torque's exit status for a job killed over this limit.
    pub fn exit_status(self) -> i32 {
        match self {
            Exceeded::Cpu => job_exec::OVERLIMIT_CPUT,
            Exceeded::Memory => job_exec::OVERLIMIT_MEM,
        }
    }
}

impl Watch {
    /// Whether nothing is checked (most jobs): no need to look.
    pub fn is_empty(&self) -> bool {
        *self == Watch::default()
    }

    /// The first limit `used` exceeds, in Torque's order (cput, pcput, vmem, pvmem), with
    /// Torque's words for it (`mom_over_limit`'s `log_buffer`).
    pub fn exceeded(&self, used: &Sampled) -> Option<(Exceeded, String)> {
        if let Some(limit) = self.cput_secs.filter(|l| used.cput_secs > *l) {
            let text = format!("cput {} exceeded limit {limit}", used.cput_secs);
            return Some((Exceeded::Cpu, text));
        }
        if let Some(limit) = self.pcput_secs.filter(|l| used.max_process_cput_secs > *l) {
            return Some((Exceeded::Cpu, format!("pcput exceeded limit {limit}")));
        }
        if let Some(limit) = self.vmem_bytes.filter(|l| used.vmem_bytes > *l) {
            let text = format!("vmem {} exceeded limit {limit}", used.vmem_bytes);
            return Some((Exceeded::Memory, text));
        }
        if let Some(limit) = self
            .pvmem_bytes
            .filter(|l| used.max_process_vmem_bytes > *l)
        {
            return Some((Exceeded::Memory, format!("pvmem exceeded limit {limit}")));
        }
        None
    }
}

/// The kernel's range of niceness.
const NICE_MIN: i64 = -20;
const NICE_MAX: i64 = 19;

/// A job's limits: what its shell is given and what the MOM checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobLimits {
    pub process: ProcessLimits,
    pub watch: Watch,
}

/// Reads the limits from the job's `Resource_List` as the server sends it (`name=value`,
/// comma-separated, values in Torque's stored forms). `one_node`: the job runs on this node
/// only (then `mem` is a per-process limit too). `stack_bytes`: the stack's soft limit the
/// shell will inherit (Torque keeps `RLIMIT_AS` at least `mem`'s limit plus it).
///
/// Resources that are not limits (`nodes`, `walltime`, ...) are not looked at; a limit
/// whose value does not read (the server checked it at submission) is left out.
pub fn from_resource_list(
    list: &str,
    one_node: bool,
    stack_bytes: u64,
    ignored: Ignored,
) -> JobLimits {
    let mut limits = JobLimits::default();
    let mut vmem_floor = 0u64;
    for (name, value) in list.split(',').filter_map(|r| r.split_once('=')) {
        let secs = || parse_duration(value);
        let bytes = || {
            parse_size(value)
                .and_then(|s| s.bytes())
                .map(|b| u64::try_from(b).unwrap_or(u64::MAX))
        };
        match name {
            "cput" if !ignored.cput => limits.watch.cput_secs = secs(),
            "pcput" if !ignored.cput => {
                limits.process.cpu_secs = secs();
                limits.watch.pcput_secs = secs();
            }
            "file" => limits.process.file_bytes = bytes(),
            "pmem" if !ignored.mem => set_data(&mut limits, bytes(), stack_bytes, &mut vmem_floor),
            "mem" if one_node && !ignored.mem => {
                set_data(&mut limits, bytes(), stack_bytes, &mut vmem_floor)
            }
            // A zero size is no limit, as Torque's `vmem_limit == 0`.
            "vmem" if !ignored.vmem => {
                let bytes = bytes().filter(|b| *b > 0);
                limits.watch.vmem_bytes = bytes;
                lower(&mut limits.process.address_space_bytes, bytes);
            }
            "pvmem" if !ignored.vmem => {
                let bytes = bytes().filter(|b| *b > 0);
                limits.watch.pvmem_bytes = bytes;
                lower(&mut limits.process.address_space_bytes, bytes);
            }
            // nice(2) takes an int and clamps to the kernel's range; so does this.
            "nice" => {
                limits.process.nice = value
                    .parse::<i64>()
                    .ok()
                    .map(|n| n.clamp(NICE_MIN, NICE_MAX) as i32)
            }
            _ => {}
        }
    }
    // Torque: "Don't make (p)vmem < pmem".
    if let Some(v) = limits.process.address_space_bytes.as_mut() {
        *v = (*v).max(vmem_floor);
    }
    limits
}

/// `pmem`/`mem`: the data and resident limits (the later wins, as Torque sets each in
/// turn), and the floor of `RLIMIT_AS`.
fn set_data(limits: &mut JobLimits, value: Option<u64>, stack_bytes: u64, floor: &mut u64) {
    if let Some(v) = value {
        limits.process.data_bytes = Some(v);
        *floor = v.saturating_add(stack_bytes);
    }
}

/// Keeps the smaller of the two limits.
fn lower(slot: &mut Option<u64>, value: Option<u64>) {
    if let Some(v) = value {
        *slot = Some(slot.map_or(v, |old| old.min(v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: u64 = 8 << 20;

    fn read(list: &str) -> JobLimits {
        from_resource_list(list, true, STACK, Ignored::default())
    }

    #[test]
    fn resources_that_are_not_limits_set_nothing() {
        let l = read("nodes=1:ppn=2,walltime=00:02:00,neednodes=1:ppn=2,ncpus=2,procs=3");
        assert_eq!(l, JobLimits::default());
        assert!(l.watch.is_empty());
        assert!(l.process.rlimits().is_empty());
    }

    #[test]
    fn each_limit_lands_where_torques_mom_puts_it() {
        let l = read("cput=00:01:00,pcput=00:00:30,file=1kb,pmem=100mb,nice=5");
        assert_eq!(l.watch.cput_secs, Some(60));
        assert_eq!(l.watch.pcput_secs, Some(30));
        assert_eq!(l.process.cpu_secs, Some(30), "only pcput is an rlimit");
        assert_eq!(l.process.file_bytes, Some(1024));
        assert_eq!(l.process.data_bytes, Some(100 << 20));
        assert_eq!(l.process.nice, Some(5));
        assert_eq!(
            l.process.rlimits(),
            vec![
                (Rlimit::Cpu, 30),
                (Rlimit::FileSize, 1024),
                (Rlimit::Data, 100 << 20),
                (Rlimit::Rss, 100 << 20),
            ]
        );
    }

    #[test]
    fn mem_is_a_process_limit_only_on_one_node() {
        let one = from_resource_list("mem=1gb", true, STACK, Ignored::default());
        assert_eq!(one.process.data_bytes, Some(1 << 30));
        let many = from_resource_list("mem=1gb", false, STACK, Ignored::default());
        assert_eq!(many, JobLimits::default());
    }

    #[test]
    fn the_smaller_of_vmem_and_pvmem_is_the_address_space_but_never_below_mem() {
        let l = read("vmem=2gb,pvmem=1gb");
        assert_eq!(l.process.address_space_bytes, Some(1 << 30));
        assert_eq!(l.watch.vmem_bytes, Some(2 << 30));
        assert_eq!(l.watch.pvmem_bytes, Some(1 << 30));
        let l = read("vmem=100mb,mem=200mb");
        assert_eq!(l.process.address_space_bytes, Some((200 << 20) + STACK));
    }

    #[test]
    fn odd_values_are_read_as_torques_mom_reads_them() {
        let l = read("vmem=0b,pvmem=0kb,nice=-99");
        assert_eq!(
            l.process.address_space_bytes, None,
            "a zero size is no limit"
        );
        assert!(l.watch.is_empty());
        assert_eq!(l.process.nice, Some(-20));
        assert_eq!(read("nice=4000000000").process.nice, Some(19));
        let huge = read("file=99999pb");
        assert_eq!(huge.process.file_bytes, Some(u64::MAX));
    }

    #[test]
    fn ignored_families_are_left_alone() {
        let all = Ignored {
            cput: true,
            mem: true,
            vmem: true,
            walltime: true,
        };
        let l = from_resource_list(
            "cput=10,pcput=5,mem=1gb,pmem=1gb,vmem=1gb,pvmem=1gb",
            true,
            STACK,
            all,
        );
        assert_eq!(l, JobLimits::default());
        let l = from_resource_list("file=1mb,nice=3", true, STACK, all);
        assert_eq!(
            l.process.file_bytes,
            Some(1 << 20),
            "file and nice have no switch"
        );
        assert_eq!(l.process.nice, Some(3));
    }

    #[test]
    fn exceeding_is_strictly_more_and_says_so_in_torques_words() {
        let watch = read("cput=10,pcput=5,vmem=1000b,pvmem=600b").watch;
        let ok = Sampled {
            cput_secs: 10,
            max_process_cput_secs: 5,
            vmem_bytes: 1000,
            max_process_vmem_bytes: 600,
        };
        assert_eq!(watch.exceeded(&ok), None, "at the limit is not over it");
        let cases = [
            (
                Sampled {
                    cput_secs: 12,
                    ..ok
                },
                Exceeded::Cpu,
                "cput 12 exceeded limit 10",
            ),
            (
                Sampled {
                    max_process_cput_secs: 6,
                    ..ok
                },
                Exceeded::Cpu,
                "pcput exceeded limit 5",
            ),
            (
                Sampled {
                    vmem_bytes: 1001,
                    ..ok
                },
                Exceeded::Memory,
                "vmem 1001 exceeded limit 1000",
            ),
            (
                Sampled {
                    max_process_vmem_bytes: 601,
                    ..ok
                },
                Exceeded::Memory,
                "pvmem exceeded limit 600",
            ),
        ];
        for (used, kind, text) in cases {
            assert_eq!(watch.exceeded(&used), Some((kind, text.to_string())));
        }
        assert_eq!(Exceeded::Cpu.exit_status(), -12);
        assert_eq!(Exceeded::Memory.exit_status(), -10);
    }
}
