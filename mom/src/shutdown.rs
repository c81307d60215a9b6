//! Graceful shutdown, mini-redis style: `main` waits for SIGTERM or SIGINT and
//! then drops a broadcast sender; every task holding a [`Shutdown`] sees the
//! channel close and winds down at its next `select!`.
//!
//! Shutting the MOM down does not kill jobs: their records are on disk and a
//! restarted MOM adopts them (see `runner`).

use tokio::signal::unix::{signal, SignalKind};

pub use capstan_proto::shutdown::Shutdown;

/// Waits for SIGTERM or SIGINT; returns the signal's name.
pub async fn wait_for_signal() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
