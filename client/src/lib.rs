//! Torque's commands for Capstan.
//!
//! Each binary in `src/bin/` is thin: parse options the Torque way, call the server through
//! [`connect`], and print with the pure renderers in [`format`] (qstat, pbsnodes), the qsub
//! logic in [`qsub`], or the shared job-control helpers in [`jobctl`] (qdel, qhold, qrls,
//! qsig, qrerun, qalter), qmgr's language in [`qmgr`], the queue switches (qenable, qdisable, qstart, qstop) in
//! [`queuectl`], qterm in [`qterm`], and qselect's matching in [`select`]. Proto types stop here: renderers take attribute lists and return strings,
//! so they are tested without a server.
//!
//! [`agent`] is `trqauthd`, the login node's authentication agent the commands dial when the
//! server runs on another host.
//!
//! Options are parsed by hand ([`getopt`]) because Torque's exact diagnostics and usage
//! texts are part of the interface scripts rely on.

pub mod agent;
pub mod connect;
pub mod format;
pub mod getopt;
pub mod jobctl;
pub mod qmgr;
pub mod qsub;
pub mod qterm;
pub mod queuectl;
pub mod select;
