//! Torque's negative `exit_status` codes (`JOB_EXEC_*`, Torque's `pbs_job.h`) that the MOM
//! reports and the server acts on, spelled once for both (see `RunEnded.exit_status`).

/// JOB_EXEC_FAIL1: the run could not be started (bad user, spool error...), or was lost.
pub const FAIL1: i32 = -1;
/// JOB_EXEC_FAIL2: the run was aborted before its script ran and must not be retried (its
/// prologue exited 1).
pub const FAIL2: i32 = -2;
/// JOB_EXEC_RETRY: the run never started its script and may be retried; the server
/// requeues the job.
pub const RETRY: i32 = -3;
/// JOB_EXEC_INITABT: the job was aborted on its node without its MOM (the supervisor killed
/// it when no MOM came back in time); as Torque, the server requeues it when it is
/// rerunnable, else ends it with this status.
pub const INITABT: i32 = -4;
/// JOB_EXEC_OVERLIMIT_MEM: killed for exceeding its `vmem` or `pvmem`.
pub const OVERLIMIT_MEM: i32 = -10;
/// JOB_EXEC_OVERLIMIT_WT: killed for exceeding its walltime.
pub const OVERLIMIT_WT: i32 = -11;
/// JOB_EXEC_OVERLIMIT_CPUT: killed for exceeding its `cput` or `pcput`.
pub const OVERLIMIT_CPUT: i32 = -12;
/// JOB_EXEC_RETRY_PROLOGUE: the prologue failed (any way but exiting 1); the script never ran
/// and, as Torque, the server requeues the job.
pub const RETRY_PROLOGUE: i32 = -14;
