//! Graceful shutdown, mini-redis style.
//!
//! One `broadcast` channel tells every long-lived task (the dispatcher, the node watchdog,
//! each MOM session) to stop; [`Shutdown`] remembers whether the signal was already seen so a
//! task can check it more than once. [`signal`] resolves on SIGTERM or SIGINT.

pub use capstan_proto::shutdown::Shutdown;

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install SIGTERM handler: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        r = tokio::signal::ctrl_c() => {
            if r.is_ok() {
                tracing::info!("SIGINT received, shutting down");
            } else {
                std::future::pending::<()>().await;
            }
        }
    }
}
