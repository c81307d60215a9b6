//! `trqauthd`: the login node's authentication agent (see `capstan_client::agent`).
//!
//! `trqauthd [--home DIR] [--server HOST:PORT]` runs it; `trqauthd [--home DIR] install-cert
//! BUNDLE` installs the certificate `pbs_server enroll HOST` issued for this host.
//!
//! It runs as root: it must keep the host's key from the users it vouches for (whoever can
//! read the key can assert any user), and a key readable by its own account is readable by
//! everyone who can become that account. `--allow-non-root` permits a dedicated service
//! account that owns `trqauthd_priv/` and that no submitting user can become; never run it
//! as a user who submits jobs.

use std::path::PathBuf;

use anyhow::Context;
use capstan_client::agent::{self, AgentConfig};
use capstan_proto::daemon;
use clap::Parser;
use tracing::warn;

/// Capstan's login-node authentication agent (Torque's trqauthd role).
#[derive(Debug, Parser)]
#[command(name = "trqauthd", version = capstan_proto::PBS_VERSION)]
struct Args {
    /// PBS_HOME: trqauthd.sock, trqauthd_priv/ and server_name live here (default: $PBS_HOME,
    /// else /var/spool/capstan).
    #[arg(long)]
    home: Option<PathBuf>,
    /// The server's TLS listener, HOST[:PORT] (default: the name in DIR/server_name, port 15001).
    #[arg(long)]
    server: Option<String>,
    /// Run as a non-root account (a dedicated service account that owns trqauthd_priv/ and
    /// that no submitting user can become).
    #[arg(long)]
    allow_non_root: bool,
    /// Log filter (overridden by RUST_LOG).
    #[arg(long, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Install the enrolment bundle from `pbs_server enroll HOST` (`-`: standard input) into
    /// DIR/trqauthd_priv/ (0700, files 0600) and delete it.
    InstallCert { bundle: PathBuf },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    capstan_proto::daemon::exit_code("trqauthd", daemon_main(args))
}

#[tokio::main]
async fn daemon_main(args: Args) -> anyhow::Result<()> {
    daemon::init_logging(&args.log_level);
    let home = daemon::home(args.home);
    let root = nix::unistd::geteuid().is_root();
    if !root && !args.allow_non_root {
        anyhow::bail!(
            "trqauthd must run as root: it keeps this host's key from the users it vouches for \
             (--allow-non-root for a dedicated service account no user can become)"
        );
    }
    if let Some(Command::InstallCert { bundle }) = args.command {
        let (host, server) = agent::install(&home, &bundle)
            .with_context(|| format!("installing {}", bundle.display()))?;
        eprintln!(
            "trqauthd: installed the certificate for {host} (server {server}) in {}",
            agent::priv_dir(&home).display()
        );
        return Ok(());
    }
    if !root {
        warn!("running as a non-root account (--allow-non-root): keep it a dedicated one");
    }
    let config = AgentConfig::new(home, args.server)?;
    agent::run(config, capstan_proto::shutdown::signal()).await?;
    Ok(())
}
