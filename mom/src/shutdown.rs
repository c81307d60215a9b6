//! Graceful shutdown, mini-redis style: `main` waits for SIGTERM or SIGINT and
//! then drops a broadcast sender; every task holding a [`Shutdown`] sees the
//! channel close and winds down at its next `select!`.
//!
//! Shutting the MOM down does not kill jobs: their records are on disk and a
//! restarted MOM adopts them (see `runner`).

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast;

/// Listens for the shutdown notice.
#[derive(Debug)]
pub struct Shutdown {
    is_shutdown: bool,
    notify: broadcast::Receiver<()>,
}

impl Shutdown {
    pub fn new(notify: broadcast::Receiver<()>) -> Shutdown {
        Shutdown {
            is_shutdown: false,
            notify,
        }
    }

    pub fn is_shutdown(&self) -> bool {
        self.is_shutdown
    }

    /// Waits for the notice (returns at once if it was already seen).
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        // Err (closed or lagged) also means: shut down.
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// Waits for SIGTERM or SIGINT; returns the signal's name.
pub async fn wait_for_signal() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
