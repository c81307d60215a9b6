//! Graceful shutdown, mini-redis style: `main` waits for SIGTERM or SIGINT and
//! then drops a broadcast sender; every task holding a [`Shutdown`] sees the
//! channel close and winds down at its next `select!`.
//!
//! Shutting the MOM down does not kill jobs: their records are on disk and a
//! restarted MOM adopts them (see `runner`).

pub use capstan_proto::shutdown::{wait_for_signal, Shutdown};
