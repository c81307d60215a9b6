//! What `pbs_server`, `pbs_mom`, `trqauthd` and the commands agree on before they speak:
//! where `PBS_HOME` is, the port of the server's TLS listener, and how a daemon logs.

use std::path::PathBuf;

/// `PBS_HOME` when neither `--home` nor `$PBS_HOME` names one.
pub const DEFAULT_HOME: &str = "/var/spool/capstan";

/// The server's TLS listener (MOMs and login nodes' `trqauthd` dial it) when no port is given.
pub const SERVER_PORT: u16 = 15001;

/// `PBS_HOME`: `flag` (a daemon's `--home`), else a non-empty `$PBS_HOME`, else
/// [`DEFAULT_HOME`].
pub fn home(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("PBS_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME))
}

/// Logs to stderr (colours on a terminal only), filtered by `$RUST_LOG`, else by `level` (a
/// daemon's `--log-level`), else at `info` when neither parses.
pub fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins() {
        assert_eq!(home(Some("/x".into())), PathBuf::from("/x"));
    }
}
