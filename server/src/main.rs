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
    #[arg(long, default_value_t = SocketAddr::from(([0, 0, 0, 0], capstan_proto::daemon::SERVER_PORT)))]
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
    /// How much slower a job runs across sites than inside one (the scheduler waits for one
    /// site unless spanning finishes earlier with this slowdown).
    #[arg(long, default_value_t = 1.5)]
    site_span_penalty: f64,
    /// Seconds a parallel job at most waits for one site before it may span.
    #[arg(long, default_value_t = 86_400)]
    site_max_wait: u64,
    /// Priority points per hour a job has waited (0: Torque's order).
    #[arg(long, default_value_t = 0.0)]
    priority_weight_age: f64,
    /// Priority points taken from a job whose owner had all recent use (0: off).
    #[arg(long, default_value_t = 0.0)]
    priority_weight_fairshare: f64,
    /// Seconds for fair-share usage to halve.
    #[arg(long, default_value_t = 7 * 86_400)]
    fairshare_half_life: u64,
    /// The program job mail is handed to (`-f FROM ADDRESS...`, the message on its
    /// standard input), as Torque's SENDMAIL_CMD.
    #[arg(long, default_value = capstan_server::config::DEFAULT_SENDMAIL)]
    sendmail: PathBuf,
    /// Log filter (overridden by RUST_LOG).
    #[arg(long, default_value = "info")]
    log_level: String,
    /// DANGER: serve MOMs over plain TCP and trust the node name each MOM claims, with no
    /// certificates. For a single-host demo only: refused unless --mom-listen is loopback.
    #[arg(long)]
    insecure_plaintext_moms: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Issue a certificate for NODE and write its enrolment bundle (mode 0600). Install it on
    /// the node with `pbs_mom --home DIR install-cert BUNDLE`. Creates the cluster CA in
    /// DIR/server_priv/ca/ if there is none yet.
    Enroll {
        /// The node's name, as in the nodes file.
        node: String,
        /// Where to write the bundle (`-`: standard output). Default: ./NODE.bundle
        #[arg(long)]
        out: Option<PathBuf>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = capstan_server::tls::DEFAULT_NODE_DAYS)]
        days: u32,
        /// Expiry as a Unix time instead of --days (tests use it to make expired certificates).
        #[arg(long, hide = true)]
        not_after_unix: Option<i64>,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    capstan_proto::daemon::exit_code("pbs_server", daemon_main(args))
}

#[tokio::main]
async fn daemon_main(args: Args) -> anyhow::Result<()> {
    capstan_proto::daemon::init_logging(&args.log_level);
    let home = capstan_proto::daemon::home(args.home);
    if let Some(Command::Enroll {
        node,
        out,
        days,
        not_after_unix,
    }) = args.command
    {
        // The name the server's certificate carries: --server-name, else the name the
        // server last wrote, else the host name (what the server itself would use).
        let server_name = args
            .server_name
            .or_else(|| {
                std::fs::read_to_string(home.join("server_name"))
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(short_hostname);
        let out = out.unwrap_or_else(|| PathBuf::from(format!("{node}.bundle")));
        let serial = capstan_server::tls::enroll(
            &home.join("server_priv"),
            &server_name,
            &node,
            days,
            not_after_unix,
            &out,
        )?;
        if out != std::path::Path::new("-") {
            eprintln!(
                "pbs_server: enrolled {node} (certificate serial {serial}); bundle written to {}\n\
                 copy it to the node (it holds the node's private key), run there\n    \
                 pbs_mom --home DIR install-cert BUNDLE\nand delete this copy.",
                out.display()
            );
        } else {
            eprintln!("pbs_server: enrolled {node} (certificate serial {serial})");
        }
        return Ok(());
    }
    let mut config = Config::new(home, args.server_name.unwrap_or_else(short_hostname));
    config.insecure_plaintext_moms = args.insecure_plaintext_moms;
    config.mom_listen = args.mom_listen;
    config.allow_root_jobs = args.allow_root_jobs;
    config.status_interval = Duration::from_secs(args.status_interval.max(1));
    config.keep_completed = args.keep_completed;
    config.sendmail = args.sendmail;
    if !(args.site_span_penalty.is_finite() && args.site_span_penalty >= 1.0) {
        anyhow::bail!("--site-span-penalty must be a number >= 1.0");
    }
    config.site_span_penalty = args.site_span_penalty;
    config.site_max_wait = args.site_max_wait;
    config.priority_weight_age = args.priority_weight_age;
    config.priority_weight_fairshare = args.priority_weight_fairshare;
    config.fairshare_half_life = args.fairshare_half_life;
    capstan_server::server::run(config, capstan_server::shutdown::signal()).await
}
