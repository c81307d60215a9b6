//! `pbs_mom`: Capstan's node agent.
//!
//! `pbs_mom --home DIR --server HOST:PORT [--node-name NAME] [--log-level L]`
//! `pbs_mom --home DIR install-cert BUNDLE` (enrolment; see `tls.rs`)
//!
//! The MOM speaks to the server over TLS 1.3 with the certificate installed by
//! `install-cert`; it refuses to start without one unless given the loudly
//! named `--insecure-plaintext-moms` (single-host demos only).
//!
//! Dials the server, reports node status, runs jobs as their users and keeps
//! their results until the server has them. SIGTERM/SIGINT stop the MOM
//! gracefully (jobs keep running and are adopted by the next MOM process);
//! SIGHUP rereads `DIR/mom_priv/config`; `DIR/pbs_environment`, the base of every job's
//! environment, is read once at start (as Torque's MOM reads it).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use capstan_mom::layout::Layout;
use capstan_mom::runner::Runner;
use capstan_mom::session::{Session, SessionOptions};
use capstan_mom::shutdown::{self, Shutdown};
use capstan_mom::status::Collector;
use capstan_mom::supervisor;
use clap::Parser;
use tokio::sync::{broadcast, mpsc};

#[derive(Debug, Parser)]
#[command(
    name = "pbs_mom",
    version,
    about = "Capstan node agent (Torque-compatible pbs_mom)"
)]
struct Args {
    /// MOM home directory (default: $PBS_HOME, else /var/spool/capstan).
    #[arg(long)]
    home: Option<PathBuf>,
    /// Server's MOM listener, HOST:PORT (default: the name in DIR/server_name, port 15001).
    #[arg(long)]
    server: Option<String>,
    /// Node name to report (default: the name in this node's certificate; with
    /// --insecure-plaintext-moms, the short host name).
    #[arg(long)]
    node_name: Option<String>,
    /// DANGER: dial the server over plain TCP without a certificate (the server must run
    /// with the same flag). For a single-host demo only; never across a network.
    #[arg(long)]
    insecure_plaintext_moms: bool,
    /// Log filter, e.g. `info` or `capstan_mom=debug` (overridden by RUST_LOG).
    #[arg(long, default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Install the enrolment bundle made by `pbs_server enroll NODE` (key, certificate and
    /// CA into DIR/mom_priv/tls/, private to root) and delete the bundle. `-` reads stdin.
    InstallCert { bundle: PathBuf },
}

fn main() -> std::process::ExitCode {
    // A run's supervisor and the copy helper may be this same binary (see
    // capstan_mom::supervisor::program).
    if let Some(code) = supervisor::run_helper() {
        std::process::exit(code);
    }
    let args = Args::parse();
    capstan_proto::daemon::exit_code("pbs_mom", daemon_main(args))
}

fn daemon_main(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(run(args));
    // Each running job has a blocking thread parked reading its supervisor's
    // pipe; dropping the runtime normally would wait for every job to finish.
    // The jobs keep running and the next MOM adopts them, so do not wait.
    runtime.shutdown_background();
    result
}

async fn run(args: Args) -> anyhow::Result<()> {
    capstan_proto::daemon::init_logging(&args.log_level);

    let home = capstan_proto::daemon::home(args.home);
    Layout::new(home.clone())
        .ensure()
        .with_context(|| format!("cannot create MOM directories under {}", home.display()))?;
    // Jobs see paths under the home ($PBS_NODEFILE, their script) from their
    // own working directory, so they must be absolute.
    let home =
        std::fs::canonicalize(&home).with_context(|| format!("resolving {}", home.display()))?;
    let layout = Layout::new(home.clone());
    if let Some(Command::InstallCert { bundle }) = &args.command {
        let node = capstan_mom::tls::install(&layout.mom_priv(), bundle)?;
        tracing::info!(
            node = %node,
            dir = %layout.mom_priv().join("tls").display(),
            "certificate installed; the bundle was deleted"
        );
        return Ok(());
    }
    let (tls, cert_name) = if args.insecure_plaintext_moms {
        tracing::warn!(
            "--insecure-plaintext-moms: talking to the server over PLAIN TCP with no \
             certificate; anyone on the path can read and forge this node's traffic. \
             Single-host demos only."
        );
        (None, None)
    } else {
        let creds = capstan_mom::tls::load(&layout.mom_priv())?;
        (Some(creds.client_config()), Some(creds.node_name.clone()))
    };
    let server = match args.server {
        Some(s) => s,
        None => {
            let path = home.join("server_name");
            let name = std::fs::read_to_string(&path)
                .with_context(|| format!("no --server given and cannot read {}", path.display()))?;
            format!("{}:{}", name.trim(), capstan_proto::daemon::SERVER_PORT)
        }
    };
    let node_name = match (args.node_name, &cert_name) {
        (Some(n), _) => n,
        (None, Some(c)) => c.clone(),
        (None, None) => short_hostname()?,
    };
    if let Some(c) = &cert_name {
        if *c != node_name {
            tracing::warn!(
                certificate = %c,
                %node_name,
                "--node-name differs from the name in this node's certificate; the server \
                 will refuse the session"
            );
        }
    }
    tracing::info!(home = %home.display(), %server, %node_name, "pbs_mom starting");

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let supervisor = supervisor::program();
    tracing::debug!(supervisor = %supervisor.display(), "job supervisor");
    let runner = Runner::new(layout.clone(), node_name.clone(), events_tx, supervisor);
    // Read once, at start, as Torque's MOM reads it; an unsafe or unreadable one stops the
    // MOM, as it stops Torque's.
    let env_file = layout.pbs_environment();
    let base_env = capstan_mom::pbs_environment::load(&env_file, nix::unistd::geteuid().as_raw())?
        .map(|loaded| {
            for w in loaded.warnings {
                tracing::warn!("{}: {w}", env_file.display());
            }
            tracing::info!(file = %env_file.display(), count = loaded.vars.len(), "job environment base loaded");
            loaded.vars
        });
    runner.set_base_environment(base_env);
    {
        let r = runner.clone();
        tokio::task::spawn_blocking(move || r.recover())
            .await
            .context("recovering run records")?;
    }
    let options = SessionOptions {
        server,
        node_name,
        tls,
    };
    let served = serve(layout, options, runner.clone(), events_rx).await;
    // The last round: every result the server has not acknowledged, once the session has
    // ended (the MOM may stay down a while), whatever ended it.
    let _ = tokio::task::spawn_blocking(move || runner.sync_results(Duration::ZERO)).await;
    served
}

/// The MOM once its runs are recovered: the session with the server until a signal or a
/// fatal error.
async fn serve(
    layout: Layout,
    options: SessionOptions,
    runner: std::sync::Arc<Runner>,
    events_rx: mpsc::UnboundedReceiver<capstan_mom::job::Event>,
) -> anyhow::Result<()> {
    let collector = Collector::new(layout.config());
    // What an earlier MOM set aside for removal and did not get to remove, in the
    // background (a job's tree may be large).
    let mut leftovers = vec![layout.jobs_dir(), layout.aux_dir()];
    leftovers.extend(collector.config().tmpdir);
    tokio::task::spawn_blocking(move || capstan_mom::launch::remove_leftovers(&leftovers));
    let (notify, _) = broadcast::channel::<()>(1);
    tokio::spawn(
        runner
            .clone()
            .keep_results_durable(Shutdown::new(notify.subscribe())),
    );
    tokio::spawn(
        runner
            .clone()
            .police_limits(Shutdown::new(notify.subscribe())),
    );
    let session = Session::new(options, runner, events_rx, collector)?;
    let mut task = tokio::spawn(session.run(Shutdown::new(notify.subscribe())));
    tokio::select! {
        sig = shutdown::wait_for_signal() => {
            let sig = sig.context("installing signal handlers")?;
            tracing::info!("{sig} received: shutting down (running jobs keep running)");
            drop(notify);
            task.await.context("session task")?;
        }
        r = &mut task => r.context("session task")?,
    }
    Ok(())
}

fn short_hostname() -> anyhow::Result<String> {
    let h = nix::unistd::gethostname().context("gethostname")?;
    let h = h.to_string_lossy();
    Ok(h.split('.').next().unwrap_or(&h).to_string())
}
