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

/// A daemon's fatal error on one line: the error, then each cause whose text it does not
/// already carry. Messages here often embed their source (`cannot read X: No such file`),
/// which the usual `Caused by:` listing would print a second time.
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        let said = c.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = c.source();
    }
    text
}

/// The end of a daemon's `main`: `PROGRAM: error` on stderr and exit status 1 on an error,
/// as the commands report theirs.
pub fn exit_code<E: AsRef<dyn std::error::Error + Send + Sync + 'static>>(
    program: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {}", describe(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /x: {source}")]
    struct Embeds {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting")]
    struct Wraps(#[source] Embeds);

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(
            describe(&Embeds { source: io() }),
            format!("cannot read /x: {}", io())
        );
        assert_eq!(
            describe(&Wraps(Embeds { source: io() })),
            format!("starting: cannot read /x: {}", io())
        );
    }

    #[test]
    fn the_flag_wins() {
        assert_eq!(home(Some("/x".into())), PathBuf::from("/x"));
    }
}
