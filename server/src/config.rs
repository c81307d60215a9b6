//! The server's settings, resolved once at start from the command line.
//!
//! Kept apart from `main.rs` so tests can build a server without parsing arguments.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the running server needs to know about its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// PBS_HOME: holds `server_priv/`, `capstan.sock`, `server_name`.
    pub home: PathBuf,
    /// Where MOMs dial in.
    pub mom_listen: SocketAddr,
    /// The job-id suffix (`0.NAME`) and the host part of `Job_Owner`.
    pub server_name: String,
    /// Whether uid 0 may submit and run jobs.
    pub allow_root_jobs: bool,
    /// How often MOMs report; a node is down after three missed reports.
    pub status_interval: Duration,
    /// Seconds a completed job stays listed.
    pub keep_completed: u64,
    /// SQLite `synchronous=FULL` (default). Off only for throw-away test databases.
    pub durable: bool,
    /// MOM listener in plain TCP, trusting the node name in Hello. Single-host demos only;
    /// never the default (`--insecure-plaintext-moms`).
    pub insecure_plaintext_moms: bool,
    /// Scheduler: how much slower a job runs across sites (`--site-span-penalty`).
    pub site_span_penalty: f64,
    /// Scheduler: the longest a parallel job waits for one site (`--site-max-wait`).
    pub site_max_wait: u64,
    /// Priority: weight per hour a job waited, and of the owner's fair-share usage (0..1).
    pub priority_weight_age: f64,
    pub priority_weight_fairshare: f64,
    /// Seconds for fair-share usage to halve.
    pub fairshare_half_life: u64,
    /// The program job mail goes through (`--sendmail`).
    pub sendmail: PathBuf,
}

/// Where Debian's mail systems (exim, postfix, msmtp-mta, ...) put sendmail.
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";

impl Config {
    /// A configuration with Capstan's defaults for `home`.
    pub fn new(home: PathBuf, server_name: String) -> Config {
        Config {
            home,
            mom_listen: SocketAddr::from(([0, 0, 0, 0], capstan_proto::daemon::SERVER_PORT)),
            server_name,
            allow_root_jobs: false,
            status_interval: Duration::from_secs(5),
            keep_completed: 300,
            durable: true,
            insecure_plaintext_moms: false,
            site_span_penalty: 1.5,
            site_max_wait: 86_400,
            priority_weight_age: 0.0,
            priority_weight_fairshare: 0.0,
            fairshare_half_life: 7 * 86_400,
            sendmail: PathBuf::from(DEFAULT_SENDMAIL),
        }
    }

    pub fn server_priv(&self) -> PathBuf {
        self.home.join("server_priv")
    }

    /// Torque's accounting log directory (a file per day).
    pub fn accounting_dir(&self) -> PathBuf {
        self.server_priv().join("accounting")
    }

    pub fn nodes_file(&self) -> PathBuf {
        self.server_priv().join("nodes")
    }

    pub fn db_path(&self) -> PathBuf {
        self.server_priv().join("capstan.db")
    }

    /// Node names or certificate serials that may no longer connect (read per connection).
    pub fn revoked_file(&self) -> PathBuf {
        self.server_priv().join("revoked")
    }

    pub fn socket_path(&self) -> PathBuf {
        self.home.join("capstan.sock")
    }

    pub fn server_name_file(&self) -> PathBuf {
        self.home.join("server_name")
    }

    /// A node silent for this long is down.
    pub fn node_timeout(&self) -> Duration {
        self.status_interval * 3
    }

    /// How long a down node's runs wait for its MOM to come back before they are lost.
    pub fn lost_grace(&self) -> Duration {
        self.status_interval * 2
    }
}

/// The machine's short host name (up to the first dot).
pub fn short_hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or_default().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
