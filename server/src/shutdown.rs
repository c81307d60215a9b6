//! Graceful shutdown, mini-redis style.
//!
//! One `broadcast` channel tells every long-lived task (the dispatcher, the node watchdog,
//! each MOM session) to stop; [`Shutdown`] remembers whether the signal was already seen so a
//! task can check it more than once. [`signal`] resolves on SIGTERM or SIGINT.

pub use capstan_proto::shutdown::{signal, Shutdown};
