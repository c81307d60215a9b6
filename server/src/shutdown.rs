//! Graceful shutdown, mini-redis style.
//!
//! One `broadcast` channel tells every long-lived task (the dispatcher, the node watchdog,
//! each MOM session) to stop; [`Shutdown`] remembers whether the signal was already seen so a
//! task can check it more than once. [`signal`] resolves on SIGTERM or SIGINT.

use tokio::sync::broadcast;

/// Listens for the server's shutdown notice.
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

    /// Waits for the notice (returns at once if it was already received). A dropped sender
    /// counts as a notice.
    pub async fn recv(&mut self) {
        if self.is_shutdown {
            return;
        }
        let _ = self.notify.recv().await;
        self.is_shutdown = true;
    }
}

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
