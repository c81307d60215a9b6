//! How the end of a run becomes Torque's `exit_status` (reference section 6).
//!
//! Kept pure so the rules are readable in one place and unit-tested:
//!
//! | what happened | exit_status |
//! |---|---|
//! | walltime limit hit (MOM killed it) | `-11` (JOB_EXEC_OVERLIMIT_WT) |
//! | `cput`/`pcput` exceeded at a sample (MOM killed it, see `limits`) | `-12` (JOB_EXEC_OVERLIMIT_CPUT) |
//! | `vmem`/`pvmem` exceeded at a sample | `-10` (JOB_EXEC_OVERLIMIT_MEM) |
//! | qdel while running | `271` (256 + SIGTERM), even when SIGKILL finished it |
//! | died of a signal the MOM delivered (qsig) | `256 + signal`; a qsig SIGKILL is a SIGTERM first (`271`), then, 5 s later, SIGKILL (`265`), as Torque's MOM does |
//! | died of a signal the MOM did not deliver | `128 + signal` (the shell convention) |
//! | shell exited | its exit code (254 when the `-S` shell could not be exec'd) |
//! | the MOM could not start it at all | `-1` (JOB_EXEC_FAIL1) |
//! | its shell was never released: its MOM died first, or could not record the start | `-3` (JOB_EXEC_RETRY: the server requeues it) |

use capstan_proto::job_exec;

use crate::limits::Exceeded;

/// Exit code of a job whose shell could not be exec'd.
pub const EXEC_SHELL_FAILED: i32 = 254;

const SIGTERM: i32 = libc::SIGTERM;

/// How the job's top shell ended, as `wait` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
}

impl Termination {
    /// Decodes a raw `wait` status.
    pub fn from_wait_status(status: i32) -> Termination {
        if libc::WIFSIGNALED(status) {
            Termination::Signaled(libc::WTERMSIG(status))
        } else {
            Termination::Exited(libc::WEXITSTATUS(status))
        }
    }
}

/// What the MOM did to the run while it ran (persisted with the run record,
/// so a restarted MOM still knows it delivered qdel's SIGTERM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Interventions {
    /// The walltime timer fired.
    pub walltime: bool,
    /// qdel (SignalRun with delete).
    pub deleted: bool,
    /// A sample found the job over one of its `-l` limits (see `limits`).
    #[serde(default)]
    pub over_limit: Option<Exceeded>,
    /// Bit `n` set: the MOM delivered signal `n` (qsig).
    pub delivered: u64,
}

impl Interventions {
    pub fn record_signal(&mut self, sig: i32) {
        if (1..64).contains(&sig) {
            self.delivered |= 1 << sig;
        }
    }

    pub fn delivered(&self, sig: i32) -> bool {
        (1..64).contains(&sig) && self.delivered & (1 << sig) != 0
    }
}

/// Torque's exit_status for a run whose shell ended with `term`.
pub fn exit_status(term: Termination, by_mom: &Interventions) -> i32 {
    if by_mom.walltime {
        return job_exec::OVERLIMIT_WT;
    }
    if let Some(limit) = by_mom.over_limit {
        return limit.exit_status();
    }
    if by_mom.deleted {
        return 256 + SIGTERM;
    }
    match term {
        Termination::Exited(code) => code,
        Termination::Signaled(sig) if by_mom.delivered(sig) => 256 + sig,
        Termination::Signaled(sig) => 128 + sig,
    }
}

/// exit_status for a run whose shell the MOM could not wait for (it was
/// started by an earlier MOM process): only what the MOM itself did is known.
pub fn exit_status_unwaited(by_mom: &Interventions) -> i32 {
    if by_mom.walltime {
        job_exec::OVERLIMIT_WT
    } else if let Some(limit) = by_mom.over_limit {
        limit.exit_status()
    } else if by_mom.deleted {
        256 + SIGTERM
    } else {
        job_exec::FAIL1
    }
}

/// The line the MOM appends to the job's stderr when it kills it for walltime.
pub fn walltime_message(elapsed_secs: u64, limit_secs: u64) -> String {
    kill_notice(&format!(
        "walltime {elapsed_secs} exceeded limit {limit_secs}"
    ))
}

/// Torque's line in the job's stderr when its MOM kills it over a limit (`=>> PBS: job
/// killed: cput 12 exceeded limit 10`): `reason` is what the limit check said.
pub fn kill_notice(reason: &str) -> String {
    format!("=>> PBS: job killed: {reason}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> Interventions {
        Interventions::default()
    }

    #[test]
    fn normal_exit_codes_pass_through() {
        assert_eq!(exit_status(Termination::Exited(0), &none()), 0);
        assert_eq!(exit_status(Termination::Exited(3), &none()), 3);
        assert_eq!(exit_status(Termination::Exited(137), &none()), 137);
        assert_eq!(exit_status(Termination::Exited(254), &none()), 254);
    }

    #[test]
    fn signal_not_from_mom_is_128_plus() {
        assert_eq!(exit_status(Termination::Signaled(9), &none()), 137);
        let mut i = none();
        i.record_signal(10);
        assert_eq!(exit_status(Termination::Signaled(15), &i), 143);
    }

    #[test]
    fn qsig_signal_is_256_plus() {
        let mut i = none();
        i.record_signal(libc::SIGUSR1);
        assert_eq!(exit_status(Termination::Signaled(libc::SIGUSR1), &i), 266);
    }

    #[test]
    fn qsig_kill_is_a_term_first_and_a_kill_after_the_grace() {
        // The MOM records the SIGTERM it sends first, and the SIGKILL when it sends it.
        let mut i = none();
        i.record_signal(libc::SIGTERM);
        assert_eq!(exit_status(Termination::Signaled(libc::SIGTERM), &i), 271);
        // Killed by something else meanwhile (the OOM killer): not the MOM's doing.
        assert_eq!(exit_status(Termination::Signaled(libc::SIGKILL), &i), 137);
        i.record_signal(libc::SIGKILL);
        assert_eq!(exit_status(Termination::Signaled(libc::SIGKILL), &i), 265);
        // A TERM trap that cleaned up and exited: its own status.
        assert_eq!(exit_status(Termination::Exited(3), &i), 3);
    }

    #[test]
    fn qdel_is_271_whatever_finished_it() {
        let i = Interventions {
            deleted: true,
            ..none()
        };
        assert_eq!(exit_status(Termination::Signaled(libc::SIGKILL), &i), 271);
        assert_eq!(exit_status(Termination::Signaled(libc::SIGTERM), &i), 271);
        assert_eq!(exit_status(Termination::Exited(0), &i), 271);
    }

    #[test]
    fn walltime_wins() {
        let i = Interventions {
            walltime: true,
            deleted: true,
            ..none()
        };
        assert_eq!(exit_status(Termination::Signaled(15), &i), -11);
        assert_eq!(exit_status_unwaited(&i), -11);
    }

    #[test]
    fn a_limit_kill_is_torques_overlimit_code_whatever_ended_the_shell() {
        let i = Interventions {
            over_limit: Some(Exceeded::Cpu),
            deleted: true,
            ..none()
        };
        assert_eq!(exit_status(Termination::Signaled(15), &i), -12);
        assert_eq!(exit_status(Termination::Exited(0), &i), -12);
        assert_eq!(exit_status_unwaited(&i), -12);
        let i = Interventions {
            over_limit: Some(Exceeded::Memory),
            ..none()
        };
        assert_eq!(exit_status(Termination::Signaled(9), &i), -10);
        let both = Interventions {
            walltime: true,
            ..i
        };
        assert_eq!(exit_status(Termination::Signaled(15), &both), -11);
    }

    #[test]
    fn unwaited_runs() {
        assert_eq!(exit_status_unwaited(&none()), -1);
        let i = Interventions {
            deleted: true,
            ..none()
        };
        assert_eq!(exit_status_unwaited(&i), 271);
    }

    #[test]
    fn decodes_wait_status() {
        assert_eq!(
            Termination::from_wait_status(3 << 8),
            Termination::Exited(3)
        );
        assert_eq!(Termination::from_wait_status(9), Termination::Signaled(9));
    }

    #[test]
    fn walltime_text() {
        assert_eq!(
            walltime_message(28, 5),
            "=>> PBS: job killed: walltime 28 exceeded limit 5\n"
        );
    }
}
