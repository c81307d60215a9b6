//! `pbs_server` entry point: command line, logging, run until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use capstan_server::config::{short_hostname, Config};
use clap::Parser;

/// Capstan's batch server (Torque-compatible).
#[derive(Debug, Parser)]
#[command(name = "pbs_server", version = capstan_proto::PBS_VERSION)]
struct Args {
    /// PBS_HOME: server_priv/, capstan.sock, server_name live here (default: $PBS_HOME,
    /// else /var/spool/capstan).
    #[arg(long)]
    home: Option<PathBuf>,
    /// Address MOMs dial.
    #[arg(long, default_value = "0.0.0.0:15001")]
    mom_listen: SocketAddr,
    /// Job-id suffix and Job_Owner host (default: short host name).
    #[arg(long)]
    server_name: Option<String>,
    /// Let root submit and run jobs.
    #[arg(long)]
    allow_root_jobs: bool,
    /// Seconds between MOM status reports.
    #[arg(long, default_value_t = 5)]
    status_interval: u64,
    /// Seconds completed jobs stay listed.
    #[arg(long, default_value_t = 300)]
    keep_completed: u64,
    /// Log filter (overridden by RUST_LOG).
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let home = args.home.unwrap_or_else(|| {
        std::env::var_os("PBS_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/spool/capstan"))
    });
    let mut config = Config::new(home, args.server_name.unwrap_or_else(short_hostname));
    config.mom_listen = args.mom_listen;
    config.allow_root_jobs = args.allow_root_jobs;
    config.status_interval = Duration::from_secs(args.status_interval.max(1));
    config.keep_completed = args.keep_completed;
    capstan_server::server::run(config, capstan_server::shutdown::signal()).await
}
