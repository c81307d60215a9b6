//! Graceful shutdown, mini-redis style, shared by `pbs_server` and `pbs_mom`.
//!
//! `main` owns a `broadcast` sender and drops it (or sends) on SIGTERM/SIGINT; every
//! long-lived task holds a [`Shutdown`] and winds down at its next `select!`. [`Shutdown`]
//! remembers whether the notice was already seen, so a task can check it more than once.
//! [`wait_for_signal`] is the SIGTERM/SIGINT wait a daemon's `main` starts with;
//! [`signal`] is that wait for a daemon that serves on without handlers rather than fail.

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

    /// Waits for the notice (returns at once if it was already seen). A dropped sender, or a
    /// lagged receiver, counts as a notice.
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

/// Waits for SIGTERM or SIGINT; returns the signal's name. Fails only if the handlers cannot
/// be installed.
pub async fn wait_for_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Resolves when the process receives SIGTERM or SIGINT (logged); never, if the handlers
/// cannot be installed (logged too), so the daemon keeps serving rather than stopping at once.
pub async fn signal() {
    match wait_for_signal().await {
        Ok(name) => tracing::info!("{name} received, shutting down"),
        Err(e) => {
            tracing::error!("cannot install SIGTERM/SIGINT handlers: {e}");
            std::future::pending::<()>().await
        }
    }
}
