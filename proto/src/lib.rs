//! Capstan's wire contract.
//!
//! * [`v1`]: the generated gRPC types and service stubs from `proto/capstan.proto`.
//!   They stay at the edges: the server's API layer, the MOM's session module and
//!   the commands convert them to their own types at once.
//! * [`pbse`]: Torque's PBSE error numbers and texts, shared by the server (which
//!   decides the error) and the commands (which print it and exit with it).
//! * [`enrolment`]: the enrolment bundle and installed host credentials (MOMs, login nodes).
//! * [`remote`]: the user assertion a login node's agent adds, and refusal error numbers.
//! * [`shutdown`]: the daemons' shutdown notice (one broadcast channel, a listener per task)
//!   and their SIGTERM/SIGINT wait.
//! * [`daemon`]: `PBS_HOME`'s default, the server's TLS port, daemon logging.
//! * [`text`]: small text rules both sides apply (Torque's `NAME@HOST`, cheap equality).
//! * [`resources`]: the resource names a job may ask for, the kind of value of each, and
//!   Torque's duration and size grammar.
//! * [`acl`]: Torque's user, host and group ACL matching.
//! * [`array`]: Torque's job array request (`qsub -t`).

/// Generated types for package `capstan.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("capstan.v1");
}

pub mod acl;
pub mod array;
pub mod daemon;
pub mod enrolment;
pub mod job_exec;
pub mod pbse;
pub mod remote;
pub mod resources;
pub mod shutdown;
pub mod text;
pub mod window;

/// Torque's version string, as `qstat --version` and `pbsnodes` report it.
pub const PBS_VERSION: &str = "6.1.3.h5";
