//! Start-up, the two listeners, and orderly shutdown.
//!
//! Start-up order matters: the nodes file and the database are read and the in-memory state
//! built BEFORE the socket exists, so a command that can connect always sees the loaded state;
//! `pbs_server ready` is logged once both listeners are bound.
//!
//! Listeners:
//! * the Batch service on the Unix socket `DIR/capstan.sock` (mode 0666: every user may
//!   connect; identity comes from SO_PEERCRED, see `api.rs`);
//! * the MomSession service on `--mom-listen`: TLS 1.3 with a client certificate issued by
//!   the cluster CA (see `tls.rs`); the node's identity is read from that certificate in
//!   `mom_session::authenticate_node`. Plain TCP only with `--insecure-plaintext-moms`.
//! * the Batch service on the same TLS listener, for login nodes' agents (`trqauthd`), which
//!   assert users; `api::BatchService::caller` accepts that only from a host in
//!   `submit_hosts` whose certificate names it. Never on plain TCP.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use capstan_proto::v1::batch_server::BatchServer;
use capstan_proto::v1::mom_session_server::MomSessionServer;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, Mutex, Notify};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::server::TcpIncoming;
use tracing::{info, warn};

use crate::accounting::Accounting;
use crate::api::BatchService;
use crate::authz::ServerAttrs;
use crate::config::Config;
use crate::dispatch::{self, now_epoch};
use crate::mail::{self, Mailer};
use crate::model::{JobState, NodeFlags, Queue};
use crate::mom_session::{self, MomService};
use crate::nodes_file;
use crate::resources;
use crate::scheduler::fairshare::Usage;
use crate::shutdown::Shutdown;
use crate::state::{Core, NodeRuntime, Shared, State};
use crate::store::Store;
use crate::tls;

/// Largest request accepted (a job script travels inside Submit).
pub const MAX_MESSAGE: usize = 64 << 20;

/// Name of the queue a fresh server creates (Torque's `torque.setup`).
pub const DEFAULT_QUEUE: &str = "batch";

/// Builds the shared state from the nodes file and the database (creating the default
/// queue on first start).
/// Job mail goes to `mailer`.
pub async fn load_state(config: Arc<Config>, mailer: Mailer) -> anyhow::Result<Arc<Shared>> {
    std::fs::create_dir_all(config.server_priv())
        .with_context(|| format!("creating {}", config.server_priv().display()))?;
    let defs = nodes_file::load(&config.nodes_file())?;
    if defs.is_empty() {
        warn!(file = %config.nodes_file().display(), "no nodes defined");
    }
    let mut store = Store::open(&config.db_path(), config.durable)
        .await
        .with_context(|| format!("opening {}", config.db_path().display()))?;
    // Job scripts and environments live in the database: server_priv and the database
    // files are the server's alone (0700/0600), whatever umask created them.
    for (path, mode) in [
        (config.server_priv(), 0o700),
        (config.db_path(), 0o600),
        (config.server_priv().join("capstan.db-wal"), 0o600),
        (config.server_priv().join("capstan.db-shm"), 0o600),
    ] {
        if path.exists() {
            let perms =
                <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(mode);
            std::fs::set_permissions(&path, perms)
                .with_context(|| format!("making {} private", path.display()))?;
        }
    }
    let loaded = store.load().await?;
    let now = now_epoch();

    let mut queues = loaded.queues;
    let mut default_queue = loaded.default_queue.unwrap_or_default();
    // First start only: an administrator who later deletes every queue keeps none.
    if queues.is_empty() && loaded.next_job_number.is_none() {
        let batch = Queue {
            enabled: true,
            started: true,
            resources_default: vec![
                ("walltime".to_string(), "01:00:00".to_string()),
                ("nodes".to_string(), "1".to_string()),
            ],
            ..Queue::new(DEFAULT_QUEUE, now)
        };
        let mut tx = store.begin()?;
        tx.save_queue(&batch)?;
        tx.set_default_queue(DEFAULT_QUEUE)?;
        // Nothing stored yet: numbering starts at 0, as Torque's does.
        tx.set_next_job_number(0)?;
        tx.commit().await?;
        info!("first start: created queue batch");
        queues.push(batch);
        default_queue = DEFAULT_QUEUE.to_string();
    }

    // Databases from before server attributes existed get what a first start would write.
    let server_attrs = match loaded.server_attrs {
        Some(attrs) => attrs,
        None => {
            let server_user = nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.name);
            let attrs =
                ServerAttrs::first_start(&crate::config::short_hostname(), server_user.as_deref());
            let mut tx = store.begin()?;
            tx.save_server_attrs(&attrs)?;
            tx.commit().await?;
            info!(managers = ?attrs.managers, "server attributes initialised");
            attrs
        }
    };

    let started = Instant::now();
    let nodes = defs
        .into_iter()
        .map(|def| {
            let flags = loaded
                .node_flags
                .get(&def.name)
                .cloned()
                .unwrap_or_else(NodeFlags::default);
            NodeRuntime::new(def, flags, started)
        })
        .collect();
    let mut state = State::new(
        config.server_name.clone(),
        loaded.next_job_number.unwrap_or(0),
        default_queue,
        queues,
        nodes,
        server_attrs,
    );
    state.learning.fairshare = Usage::restore(config.fairshare_half_life, &loaded.fairshare, now);
    for (shape, node, walltime) in &loaded.speed_samples {
        state.learning.speed_samples.add(shape, node, *walltime);
    }
    state.refresh_learned_speeds();
    let mut jobs = loaded.jobs;
    for job in jobs.iter_mut() {
        if job.state != JobState::Completed {
            let map = job.resources.iter().cloned().collect();
            job.request = resources::slot_request(&map).ok();
        }
    }
    // Jobs stored before queue ranks existed get theirs, kept at once: ranks given only in
    // memory would be given again at the next start, beside ones qorder had saved.
    let ranked = crate::model::rank_unranked(&mut jobs);
    if !ranked.is_empty() {
        let mut tx = store.begin()?;
        for job in jobs.iter().filter(|j| ranked.contains(&j.seq)) {
            tx.save_job(job)?;
        }
        tx.commit().await?;
        info!(
            jobs = ranked.len(),
            "queue ranks given to jobs stored without them"
        );
    }
    state.apply_jobs(jobs);
    info!(
        jobs = state.jobs.len(),
        nodes = state.nodes.len(),
        next_job_number = state.next_job_number,
        "state loaded"
    );
    Ok(Arc::new(Shared {
        core: Mutex::new(Core {
            state,
            store,
            accounting: Accounting::new(config.accounting_dir()),
            mailer,
            config: config.clone(),
        }),
        config,
        wake: Notify::new(),
        termination: Default::default(),
    }))
}

/// Runs the server until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.home)
        .with_context(|| format!("creating {}", config.home.display()))?;
    std::fs::write(
        config.server_name_file(),
        format!("{}\n", config.server_name),
    )
    .with_context(|| format!("writing {}", config.server_name_file().display()))?;
    let (mailer, postman) = mail::channel(config.sendmail.clone());
    let shared = load_state(config.clone(), mailer).await?;
    crate::interactive::delete_orphaned(&mut *shared.core.lock().await, dispatch::now_epoch())
        .await;
    let tls_config = if config.insecure_plaintext_moms {
        if !config.mom_listen.ip().is_loopback() {
            anyhow::bail!(
                "--insecure-plaintext-moms is for a single-host demo: --mom-listen must be a \
                 loopback address (127.0.0.1), not {}",
                config.mom_listen
            );
        }
        warn!(
            "--insecure-plaintext-moms: the MOM listener is PLAIN TCP and trusts the node name \
             each MOM claims; anyone who can reach {} can pose as any node. Single-host demos only.",
            config.mom_listen
        );
        None
    } else {
        let ca = tls::ensure_ca(&config.server_priv(), &config.server_name)?;
        Some(tls::server_config(&ca, &config.server_name)?)
    };

    // The MOM listener first: the command socket's appearance then tells whoever waits for
    // it (scripts, tests) that both listeners are bound.
    let tcp = TcpListener::bind(config.mom_listen)
        .await
        .with_context(|| format!("binding MOM listener {}", config.mom_listen))?;
    let mom_addr = tcp.local_addr()?;
    let socket = config.socket_path();
    match std::fs::remove_file(&socket) {
        Ok(()) => info!(socket = %socket.display(), "removed stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", socket.display())),
    }
    // Bound and listening under a name of its own, then renamed into place: bind() makes
    // the file before listen(), and a command (or a waiting script) that connected in
    // between would be refused.
    let binding = socket.with_extension(format!("sock.{}", std::process::id()));
    let _ = std::fs::remove_file(&binding);
    let uds =
        UnixListener::bind(&binding).with_context(|| format!("binding {}", binding.display()))?;
    std::fs::set_permissions(&binding, std::fs::Permissions::from_mode(0o666))
        .with_context(|| format!("chmod {}", binding.display()))?;
    std::fs::rename(&binding, &socket)
        .with_context(|| format!("renaming {} to {}", binding.display(), socket.display()))?;

    let (notify_shutdown, _) = broadcast::channel::<()>(1);
    let dispatcher = tokio::spawn(dispatch::run(
        shared.clone(),
        Shutdown::new(notify_shutdown.subscribe()),
    ));
    let watchdog = tokio::spawn(mom_session::watch_nodes(
        shared.clone(),
        Shutdown::new(notify_shutdown.subscribe()),
    ));
    let postman = tokio::spawn(postman.run());

    let batch = BatchService::new(shared.clone(), notify_shutdown.clone());
    let mut batch_shutdown = Shutdown::new(notify_shutdown.subscribe());
    let batch_server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BatchServer::new(batch).max_decoding_message_size(MAX_MESSAGE))
            .serve_with_incoming_shutdown(UnixListenerStream::new(uds), async move {
                batch_shutdown.recv().await
            }),
    );
    let mom = MomService::new(shared.clone(), notify_shutdown.clone());
    let mut mom_shutdown = Shutdown::new(notify_shutdown.subscribe());
    let mut mom_builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(config.status_interval))
        .http2_keepalive_timeout(Some(config.status_interval * 2));
    let mom_builder = mom_builder.add_service(MomSessionServer::new(mom));
    let mom_server = match &tls_config {
        // Plain TCP carries no certificate, so it never serves commands: no host could be
        // told apart from another, let alone be trusted to assert users.
        None => tokio::spawn(
            mom_builder.serve_with_incoming_shutdown(
                TcpIncoming::from(tcp)
                    .with_nodelay(Some(true))
                    .with_keepalive(Some(config.status_interval * 2)),
                async move { mom_shutdown.recv().await },
            ),
        ),
        Some(tls) => {
            let incoming = tls::spawn_acceptor(tcp, tls.clone());
            // Login nodes' agents (`trqauthd`) speak Batch on this listener, asserting users;
            // `BatchService::caller` accepts that only from certificates of submit hosts.
            let remote_batch = BatchService::new(shared.clone(), notify_shutdown.clone());
            tokio::spawn(
                mom_builder
                    .add_service(
                        BatchServer::new(remote_batch).max_decoding_message_size(MAX_MESSAGE),
                    )
                    .serve_with_incoming_shutdown(ReceiverStream::new(incoming), async move {
                        mom_shutdown.recv().await
                    }),
            )
        }
    };
    info!(
        server = %config.server_name,
        socket = %socket.display(),
        mom_listen = %mom_addr,
        mom_transport = if tls_config.is_some() { "TLS 1.3, client certificates required" } else { "PLAINTEXT (insecure)" },
        "pbs_server ready"
    );

    tokio::select! {
        _ = shutdown => {}
        _ = shared.termination.requested() => info!("qterm received"),
    }
    info!("shutting down");
    let _ = notify_shutdown.send(());
    mom_session::close_all(&shared).await;
    let work = async {
        let _ = dispatcher.await;
        let _ = watchdog.await;
    };
    if tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .is_err()
    {
        warn!("the scheduler did not stop within 5 s; stopping anyway");
    }
    {
        let mut core = shared.core.lock().await;
        core.store.close().await;
        // Nothing changes a job from here on: the postman sends what is queued and stops.
        drop(std::mem::take(&mut core.mailer));
    }
    // The command listener no longer accepts; its path goes before qterm is answered, so
    // that it cannot be a next server's socket by the time this one gets to it.
    let _ = std::fs::remove_file(&socket);
    // Everything is committed and closed: a waiting qterm may be answered now, while the
    // listeners finish the requests they have (its own among them).
    shared.termination.stopped();
    let listeners = async {
        if let Ok(Err(e)) = batch_server.await {
            warn!("batch listener: {e}");
        }
        if let Ok(Err(e)) = mom_server.await {
            warn!("MOM listener: {e}");
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), listeners)
        .await
        .is_err()
    {
        warn!("listeners did not stop within 5 s; exiting anyway");
    }
    // Within a bound: a stuck mail system never holds up a stop (what is left is dropped
    // with this warning; mail is a courtesy).
    if tokio::time::timeout(Duration::from_secs(5), postman)
        .await
        .is_err()
    {
        warn!("mail still waiting for sendmail after 5 s is not sent");
    }
    info!("pbs_server stopped");
    Ok(())
}
