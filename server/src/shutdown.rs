//! Graceful shutdown, mini-redis style.
//!
//! One `broadcast` channel tells every long-lived task (the dispatcher, the node watchdog,
//! each MOM session) to stop; [`Shutdown`] remembers whether the signal was already seen so a
//! task can check it more than once. [`signal`] resolves on SIGTERM or SIGINT.

pub use capstan_proto::shutdown::Shutdown;

/// Resolves when the process receives SIGTERM or SIGINT; never, if the handlers cannot be
/// installed (logged), so the server keeps serving rather than stopping at once.
pub async fn signal() {
    match capstan_proto::shutdown::wait_for_signal().await {
        Ok(name) => tracing::info!("{name} received, shutting down"),
        Err(e) => {
            tracing::error!("cannot install SIGTERM/SIGINT handlers: {e}");
            std::future::pending::<()>().await
        }
    }
}
