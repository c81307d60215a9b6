//! The MomSession service: one long-lived bidirectional stream per pbs_mom.
//!
//! Why this shape (design principles 2, 3, 5):
//! * The MOM dials; the server only ever talks to a MOM over the stream that MOM opened. The
//!   registry is the `session` slot of each node in `state.rs`: an unbounded channel whose
//!   receiver is this stream's response body, so senders never block under the state lock.
//! * The node's identity is fixed once, by [`authenticate_node`], when the stream opens: it is
//!   the name in the MOM's TLS client certificate (verified against the cluster CA by the
//!   listener, `tls.rs`). A Hello claiming another node, a revoked certificate, or a node the
//!   nodes file does not list is refused and logged. A new session for a node that already
//!   has one replaces it (a restarted MOM must not wait for the old stream to time out); only
//!   a holder of that node's key can do so. An open session whose certificate is revoked is
//!   closed within [`REVOCATION_CHECK`].
//! * Reconciliation on Hello: held runs the server does not consider active on the node are
//!   cancelled; runs the server thinks are running there but the MOM does not hold are lost
//!   (requeued when Rerunable, else ended with -1). Finished-but-unacknowledged runs are left
//!   alone: the MOM re-sends their RunEnded and gets an AckRunEnded once committed.
//! * Status is memory only (no DB write per heartbeat). A node is down when its stream ends
//!   or after three missed status intervals; its runs are declared lost only after a further
//!   grace period ([`Config::lost_grace`](crate::config::Config::lost_grace)) without a
//!   reconnect, which also covers MOMs that have not come back yet after a server restart.
//! * A malformed message is logged and the session closed; nothing a peer sends can panic us.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_proto::v1::mom_session_server::MomSession;
use capstan_proto::v1::{
    mom_message, server_message, terminal_from_mom, terminal_to_mom, AckRunEnded, CancelRuns,
    EnvVar, Hello, MessageRun, MomMessage, ServerMessage, SignalKind, SignalRun, StartRun,
    TerminalFromMom, TerminalSetup, TerminalToMom, Welcome, WindowSize,
};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::config::Config;
use crate::dispatch::now_epoch;
use crate::interactive::{ToClient, ToTerminal};
use crate::jobs::{self, RunEnd};
use crate::model::{NodeStatus, ResourcesUsed, ToMom};
use crate::shutdown::Shutdown;
use crate::state::{uncancelled, Core, SessionHandle, Shared, State};
use crate::tls;

/// The MomSession gRPC service.
#[derive(Debug, Clone)]
pub struct MomService {
    shared: Arc<Shared>,
    shutdown: broadcast::Sender<()>,
}

impl MomService {
    pub fn new(shared: Arc<Shared>, shutdown: broadcast::Sender<()>) -> MomService {
        MomService { shared, shutdown }
    }
}

/// Decides which node a session speaks for: the node its TLS client certificate names.
///
/// Refused (each with the reason, logged by the caller): no verified certificate (unless the
/// listener runs with `--insecure-plaintext-moms`, where the Hello's name is trusted), a
/// certificate whose name or serial is in `DIR/server_priv/revoked`, a certificate naming a
/// node the nodes file does not list, and a Hello claiming any other node than the certificate.
pub fn authenticate_node<T>(
    request: &Request<T>,
    claimed: &str,
    state: &State,
    config: &Config,
) -> Result<String, Status> {
    let claimed = claimed.trim();
    let name = if config.insecure_plaintext_moms {
        if claimed.is_empty() {
            return Err(Status::invalid_argument("Hello names no node"));
        }
        claimed.to_string()
    } else {
        let certs = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no client certificate"))?;
        let peer = tls::peer_identity(&certs).map_err(Status::unauthenticated)?;
        if let Some(reason) = tls::is_revoked(&config.revoked_file(), &peer) {
            return Err(Status::permission_denied(format!("revoked: {reason}")));
        }
        if !claimed.is_empty() && claimed != peer.name {
            return Err(Status::permission_denied(format!(
                "certificate names node {} but Hello claims {claimed}",
                peer.name
            )));
        }
        peer.name
    };
    if state.node(&name).is_none() {
        return Err(Status::permission_denied(format!(
            "node {name} is not in the server's nodes file"
        )));
    }
    Ok(name)
}

fn used_from_proto(u: Option<capstan_proto::v1::ResourcesUsed>) -> Option<ResourcesUsed> {
    u.map(|u| ResourcesUsed {
        cput_secs: u.cput_secs,
        mem_kb: u.mem_kb,
        vmem_kb: u.vmem_kb,
        walltime_secs: u.walltime_secs,
    })
}

/// The MOM's texts go into `pbsnodes` lines as they are: a control character (a newline, say)
/// would break the listing, so each becomes a space; a load that is not a number is 0.
fn status_from_proto(s: capstan_proto::v1::NodeStatus) -> NodeStatus {
    NodeStatus {
        opsys: printable(s.opsys),
        uname: printable(s.uname),
        sessions: s.sessions,
        nusers: s.nusers,
        idletime: s.idletime,
        totmem_kb: s.totmem_kb,
        availmem_kb: s.availmem_kb,
        physmem_kb: s.physmem_kb,
        ncpus: s.ncpus,
        loadave: if s.loadave.is_finite() {
            s.loadave
        } else {
            0.0
        },
        netload: s.netload,
        state: printable(s.state),
        // One field of the status string: no comma may start another.
        message: Some(printable(s.message).replace(',', ";")).filter(|m| !m.is_empty()),
        jobs: s.jobs.into_iter().map(printable).collect(),
        rectime: s.rectime,
    }
}

fn printable(text: String) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    } else {
        text
    }
}

/// Domain message → proto.
pub fn to_proto(message: ToMom) -> ServerMessage {
    let kind = match message {
        ToMom::Welcome {
            server_name,
            status_interval_secs,
            lost_grace_secs,
        } => server_message::Kind::Welcome(Welcome {
            server_name,
            status_interval_secs,
            lost_grace_secs,
        }),
        ToMom::Start(spec) => {
            let spec = *spec;
            server_message::Kind::Start(StartRun {
                run_id: spec.run_id,
                job_id: spec.job_id,
                job_name: spec.job_name,
                job_seq: spec.job_seq,
                euser: spec.euser,
                egroup: spec.egroup,
                script: spec.script.as_ref().clone(),
                env: spec
                    .env
                    .into_iter()
                    .map(|(name, value)| EnvVar { name, value })
                    .collect(),
                nodefile_hosts: spec.nodefile_hosts,
                output_path: spec.output_path,
                error_path: spec.error_path,
                join_path: spec.join_path,
                keep_files: spec.keep_files,
                shell: spec.shell,
                init_work_dir: spec.init_work_dir,
                walltime_limit_secs: spec.walltime_limit_secs,
                allow_root: spec.allow_root,
                resource_limits: spec.resource_limits,
                queue: spec.queue,
                account: spec.account,
                umask: spec.umask,
                arguments: spec.arguments,
                terminal: spec.terminal.map(|t| TerminalSetup {
                    term: t.term,
                    window: Some(window_to_proto(t.window)),
                    command: t.command,
                }),
            })
        }
        ToMom::Signal {
            run_id,
            signal,
            delete,
            kill_delay_secs,
        } => server_message::Kind::Signal(SignalRun {
            run_id,
            signal,
            delete,
            kill_delay_secs,
            kind: SignalKind::Plain as i32,
        }),
        ToMom::Suspend {
            run_id,
            suspended: suspend,
        } => server_message::Kind::Signal(SignalRun {
            run_id,
            signal: if suspend {
                libc::SIGSTOP
            } else {
                libc::SIGCONT
            },
            delete: false,
            kill_delay_secs: 0,
            kind: if suspend {
                SignalKind::Suspend
            } else {
                SignalKind::Resume
            } as i32,
        }),
        ToMom::Message {
            run_id,
            text,
            stdout,
            stderr,
        } => server_message::Kind::Message(MessageRun {
            run_id,
            text,
            stdout,
            stderr,
        }),
        ToMom::AckEnded(run_ids) => server_message::Kind::AckEnded(AckRunEnded { run_ids }),
        ToMom::Cancel(run_ids) => server_message::Kind::Cancel(CancelRuns { run_ids }),
    };
    ServerMessage { kind: Some(kind) }
}

/// How long a new stream (a MOM's session or terminal, qsub -I's) may take to introduce
/// itself.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

fn window_to_proto(w: crate::interactive::Window) -> WindowSize {
    WindowSize {
        rows: w.rows.into(),
        cols: w.cols.into(),
    }
}

/// The first message of a peer's stream, which must come within [`HELLO_TIMEOUT`] (`what`
/// names it in the refusal): a MOM's Hello or TerminalOpen, qsub -I's submission.
pub(crate) async fn first_message<T>(
    request: &mut Request<Streaming<T>>,
    what: &str,
) -> Result<Option<T>, Status> {
    tokio::time::timeout(HELLO_TIMEOUT, request.get_mut().message())
        .await
        .map_err(|_| Status::deadline_exceeded(format!("no {what} received")))?
        .map_err(|e| Status::invalid_argument(format!("reading {what}: {e}")))
}

type OutStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send + 'static>>;
type TerminalOut = Pin<Box<dyn Stream<Item = Result<TerminalToMom, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl MomSession for MomService {
    type SessionStream = OutStream;
    type TerminalStream = TerminalOut;

    /// An interactive run's terminal (see `interactive`): accepted only from the node that
    /// runs the job's shell, for a job whose qsub is attached and has no terminal yet.
    async fn terminal(
        &self,
        mut request: Request<Streaming<TerminalFromMom>>,
    ) -> Result<Response<TerminalOut>, Status> {
        let first = first_message(&mut request, "TerminalOpen").await?;
        let open = match first.and_then(|m| m.kind) {
            Some(terminal_from_mom::Kind::Open(open)) => open,
            _ => return Err(Status::invalid_argument("the first message must be open")),
        };
        let (seq, node, relay) = {
            let mut core = self.shared.core.lock().await;
            let core = &mut *core;
            let node = authenticate_node(&request, &open.node_name, &core.state, &core.config)
                .inspect_err(|e| {
                    warn!(claimed = %open.node_name, run = open.run_id, "terminal refused: {}", e.message());
                })?;
            let job = core.state.running_jobs().find(|j| {
                j.current_run == Some(open.run_id)
                    && j.interactive.is_some()
                    && j.mother_superior() == Some(node.as_str())
            });
            let Some(seq) = job.map(|j| j.seq) else {
                warn!(node = %node, run = open.run_id, "terminal refused: no interactive run of this node has that id");
                return Err(Status::not_found(
                    "no interactive run of this node has that id",
                ));
            };
            let Some(relay) = core.state.terminals.open_relay(seq) else {
                warn!(node = %node, run = open.run_id, "terminal refused: the job's qsub is gone or its terminal is open");
                return Err(Status::failed_precondition(
                    "the job's qsub is gone or its terminal is already open",
                ));
            };
            (seq, node, relay)
        };
        info!(node = %node, run = open.run_id, "interactive terminal open");
        let inbound = request.into_inner();
        let shared = Arc::clone(&self.shared);
        let shutdown = Shutdown::new(self.shutdown.subscribe());
        let (to_mom, out) = mpsc::channel(crate::interactive::FRAMES_IN_FLIGHT);
        tokio::spawn(relay_terminal(
            shared, seq, node, relay, inbound, to_mom, shutdown,
        ));
        let out = tokio_stream::wrappers::ReceiverStream::new(out).map(Ok);
        Ok(Response::new(Box::pin(out)))
    }

    async fn session(
        &self,
        mut request: Request<Streaming<MomMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        let first = first_message(&mut request, "Hello").await?;
        let hello = match first.and_then(|m| m.kind) {
            Some(mom_message::Kind::Hello(h)) => h,
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let node = {
            let core = self.shared.core.lock().await;
            authenticate_node(&request, &hello.node_name, &core.state, &core.config).inspect_err(|e| {
                warn!(claimed = %hello.node_name, peer = %peer, "MOM session refused: {}", e.message());
            })?
        };
        // Kept to re-check revocation while the session lasts.
        let cert = request
            .peer_certs()
            .and_then(|c| tls::peer_identity(&c).ok());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        // Reconciling commits lost runs before memory learns of them: not to be stopped
        // halfway by the MOM hanging up. The reader starts in the same task, so a registered
        // session always has one.
        let shared = Arc::clone(&self.shared);
        let shutdown = Shutdown::new(self.shutdown.subscribe());
        uncancelled(async move {
            let session_id = register(&shared, &node, &hello, tx).await;
            info!(node = %node, peer = %peer, version = %hello.version, held = hello.held_runs.len(), "MOM connected");
            tokio::spawn(read_loop(shared, node, cert, session_id, inbound, shutdown));
        })
        .await?;
        let out = UnboundedReceiverStream::new(rx).map(|m| Ok(to_proto(m)));
        Ok(Response::new(Box::pin(out)))
    }
}

/// Relays an interactive job's terminal between its MOM and its qsub: output up, keys and
/// sizes down, until the MOM closes its stream (the job's shell and everything holding its
/// terminal are gone; then this side closes too, which tells the MOM all was read), the qsub
/// is gone, or the server stops. Then tells the qsub the job ended, if that is recorded.
///
/// The two directions are pumped independently: a paste that fills the way down must not
/// stop the output that qsub must read before it can send more (a cycle that would stall
/// the session for good).
async fn relay_terminal(
    shared: Arc<Shared>,
    seq: u64,
    node: String,
    relay: crate::interactive::RelayEnds,
    mut inbound: Streaming<TerminalFromMom>,
    to_mom: mpsc::Sender<TerminalToMom>,
    mut shutdown: Shutdown,
) {
    let crate::interactive::RelayEnds {
        to_client,
        mut input,
        window,
    } = relay;
    if to_client.send(ToClient::Ready(node.clone())).await.is_err() {
        return;
    }
    let up = async {
        loop {
            match inbound.message().await {
                Ok(Some(TerminalFromMom {
                    kind: Some(terminal_from_mom::Kind::Output(bytes)),
                })) => {
                    if to_client.send(ToClient::Output(bytes)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {
                    warn!(node = %node, job = seq, "unexpected message on a terminal stream; closed");
                    return;
                }
                Ok(None) => return,
                Err(e) => {
                    warn!(node = %node, job = seq, "terminal stream failed: {e}");
                    return;
                }
            }
        }
    };
    let down = async {
        // The size qsub's window has now first: it may have changed since the job's StartRun.
        let mut keys = ToTerminal::Window(window);
        loop {
            let kind = match keys {
                ToTerminal::Input(bytes) => terminal_to_mom::Kind::Input(bytes),
                ToTerminal::Window(w) => terminal_to_mom::Kind::Window(window_to_proto(w)),
            };
            if to_mom
                .send(TerminalToMom { kind: Some(kind) })
                .await
                .is_err()
            {
                return;
            }
            // The qsub is gone: the MOM hangs the terminal up when this side closes.
            let Some(next) = input.recv().await else {
                return;
            };
            keys = next;
        }
    };
    tokio::select! {
        () = up => {}
        () = down => {}
        _ = shutdown.recv() => return,
    }
    drop((to_mom, to_client));
    let end = shared.core.lock().await.state.terminals.relay_closed(seq);
    crate::interactive::send_later(end.into_iter().collect());
}

/// Reconciles the MOM's held runs, registers the session, sends Welcome (and CancelRuns).
async fn register(
    shared: &Shared,
    node: &str,
    hello: &Hello,
    tx: mpsc::UnboundedSender<ToMom>,
) -> u64 {
    let mut core = shared.core.lock().await;
    let now = now_epoch();
    let held: HashSet<u64> = hello.held_runs.iter().map(|r| r.run_id).collect();
    let active: HashMap<u64, u64> = core
        .state
        .running_jobs()
        .filter(|j| j.mother_superior() == Some(node))
        .filter_map(|j| j.current_run.map(|r| (r, j.seq)))
        .collect();
    let lost: Vec<u64> = active
        .iter()
        .filter(|(run, _)| !held.contains(run))
        .map(|(_, seq)| *seq)
        .collect();
    let cancel: Vec<u64> = hello
        .held_runs
        .iter()
        .map(|r| r.run_id)
        .filter(|r| !active.contains_key(r))
        .collect();
    if !lost.is_empty() {
        warn!(
            node,
            count = lost.len(),
            "runs missing on reconnecting MOM are lost"
        );
        if let Err(e) = jobs::lose_jobs(&mut core, &lost, node, now).await {
            warn!(node, code = e.code, "could not record lost runs");
        }
    }
    let session_id = core.state.next_session_id;
    core.state.next_session_id += 1;
    let server_name = core.state.server_name.clone();
    let interval = core.config.status_interval.as_secs().max(1) as u32;
    let _ = tx.send(ToMom::Welcome {
        server_name,
        status_interval_secs: interval,
        lost_grace_secs: u32::try_from(core.config.lost_grace().as_secs()).unwrap_or(u32::MAX),
    });
    if !cancel.is_empty() {
        info!(node, runs = ?cancel, "cancelling runs the server does not expect");
        let _ = tx.send(ToMom::Cancel(cancel));
    }
    // Session ids are memory only (RunStarted): a restarted server learns them again here,
    // as a suspend or a qmsg needs them.
    let sessions: HashMap<u64, i32> = hello
        .held_runs
        .iter()
        .filter(|r| r.session_id > 0 && !r.finished)
        .map(|r| (r.run_id, r.session_id))
        .collect();
    if !sessions.is_empty() {
        core.state.update_running_jobs(|job| {
            if job.mother_superior() == Some(node) && job.session_id.is_none() {
                if let Some(session) = job.current_run.and_then(|r| sessions.get(&r)) {
                    job.session_id = Some(*session);
                }
            }
        });
    }
    // A suspend or resume the MOM missed (its session went before the word reached it): the
    // server's view is sent again.
    let suspended: HashMap<u64, bool> = hello
        .held_runs
        .iter()
        .filter(|r| !r.finished)
        .map(|r| (r.run_id, r.suspended))
        .collect();
    for job in core.state.running_jobs() {
        let Some(run) = job.current_run else {
            continue;
        };
        // A job being ended is continued by its MOM, whatever it was.
        if job.mother_superior() == Some(node)
            && job.pending.is_none()
            && suspended.get(&run).is_some_and(|s| *s != job.suspended)
        {
            info!(
                node,
                run,
                suspended = job.suspended,
                "the MOM missed a suspend or resume; sent again"
            );
            let _ = tx.send(ToMom::Suspend {
                run_id: run,
                suspended: job.suspended,
            });
        }
    }
    // A qdel/qrerun committed before the MOM went away may never have reached it.
    for job in core.state.running_jobs() {
        let held_here = job.current_run.is_some_and(|run| held.contains(&run));
        if job.pending.is_none() || !held_here {
            continue;
        }
        if let Some((ms, signal)) = jobs::kill_signal(job) {
            if ms == node {
                let _ = tx.send(signal);
            }
        }
    }
    if let Some(n) = core.state.node_mut(node) {
        if n.session.is_some() {
            warn!(node, "a new session replaces the node's existing one");
        }
        n.session = Some(SessionHandle { id: session_id, tx });
        n.last_seen = Instant::now();
        n.down_since = None;
        // Reported afresh: the node takes no job before this session's first status (which
        // waits for the MOM's first health check verdict).
        n.status = None;
    }
    shared.wake_scheduler();
    session_id
}

/// Why a session is being closed by the server.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("session replaced by a newer one")]
    Superseded,
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// Most messages taken from the stream before they are handled under one lock.
const MAX_BATCH: usize = 256;

/// How often an open session re-reads `DIR/server_priv/revoked`.
const REVOCATION_CHECK: Duration = Duration::from_secs(2);

async fn read_loop(
    shared: Arc<Shared>,
    node: String,
    cert: Option<tls::PeerIdentity>,
    session_id: u64,
    mut inbound: Streaming<MomMessage>,
    mut shutdown: Shutdown,
) {
    let mut revocation = tokio::time::interval(REVOCATION_CHECK);
    revocation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            m = inbound.message() => m,
            _ = shutdown.recv() => break,
            _ = revocation.tick() => {
                if let Some(reason) = cert
                    .as_ref()
                    .and_then(|c| tls::is_revoked(&shared.config.revoked_file(), c))
                {
                    warn!(node = %node, "closing MOM session: revoked: {reason}");
                    break;
                }
                continue;
            }
        };
        let mut batch = Vec::new();
        let mut closing: Option<String> = None;
        match first {
            Ok(Some(message)) => batch.push(message),
            Ok(None) => closing = Some("MOM closed its session".into()),
            Err(status) => closing = Some(format!("MOM session failed: {}", status.message())),
        }
        // Take whatever else already arrived, so a burst of results shares one commit.
        while closing.is_none() && batch.len() < MAX_BATCH {
            match tokio::time::timeout(Duration::ZERO, inbound.message()).await {
                Ok(Ok(Some(message))) => batch.push(message),
                Ok(Ok(None)) => closing = Some("MOM closed its session".into()),
                Ok(Err(status)) => {
                    closing = Some(format!("MOM session failed: {}", status.message()))
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            if let Err(e) = handle_batch(&shared, &node, session_id, batch).await {
                warn!(node = %node, "closing MOM session: {e}");
                break;
            }
        }
        if let Some(reason) = closing {
            info!(node = %node, "{reason}");
            break;
        }
    }
    let mut core = shared.core.lock().await;
    if let Some(n) = core.state.node_mut(&node) {
        if n.session.as_ref().is_some_and(|s| s.id == session_id) {
            n.session = None;
            n.down_since = Some(Instant::now());
            info!(node = %node, "node down");
        }
    }
}

/// Commits a group of run ends and acknowledges them (all of them: unknown or repeated
/// ends are acknowledged too, so the MOM can forget them).
async fn flush_ends(shared: &Shared, core: &mut Core, node: &str, ends: &mut Vec<RunEnd>) {
    if ends.is_empty() {
        return;
    }
    match jobs::runs_ended(core, node, ends, now_epoch()).await {
        Ok(freed) => {
            if let Some(n) = core.state.node(node) {
                n.send(ToMom::AckEnded(ends.iter().map(|e| e.run_id).collect()));
            }
            if freed {
                shared.wake_scheduler();
            }
        }
        Err(e) => {
            // Not acknowledged: the MOM keeps the results and re-sends them.
            warn!(node, code = e.code, "run ends not committed");
        }
    }
    ends.clear();
}

async fn handle_batch(
    shared: &Shared,
    node: &str,
    session_id: u64,
    batch: Vec<MomMessage>,
) -> Result<(), SessionEnd> {
    let mut core = shared.core.lock().await;
    let core = &mut *core;
    let mut ends: Vec<RunEnd> = Vec::new();
    for message in batch {
        let Some(n) = core.state.node_mut(node) else {
            return Err(SessionEnd::Superseded);
        };
        if n.session.as_ref().is_none_or(|s| s.id != session_id) {
            return Err(SessionEnd::Superseded);
        }
        n.last_seen = Instant::now();
        match message.kind {
            Some(mom_message::Kind::Ended(ended)) => {
                ends.push(RunEnd {
                    run_id: ended.run_id,
                    exit_status: ended.exit_status,
                    used: used_from_proto(ended.used),
                    end_time: ended.end_time,
                    session_id: ended.session_id,
                    message: ended.message,
                    copy_errors: ended.copy_errors,
                });
                continue;
            }
            None => {
                flush_ends(shared, core, node, &mut ends).await;
                return Err(SessionEnd::Protocol("message without content"));
            }
            Some(mom_message::Kind::Hello(_)) => {
                flush_ends(shared, core, node, &mut ends).await;
                return Err(SessionEnd::Protocol("second Hello"));
            }
            Some(mom_message::Kind::Status(status)) => {
                let usage: Vec<(u64, ResourcesUsed)> = status
                    .usage
                    .iter()
                    .filter_map(|u| used_from_proto(u.used).map(|used| (u.run_id, used)))
                    .collect();
                let status = status_from_proto(status);
                let was_available = n.available();
                n.status = Some(status);
                // Busy or unhealthy, or neither any more: placement may change.
                let changed = was_available != n.available();
                jobs::record_usage(core, node, &usage);
                if changed {
                    shared.wake_scheduler();
                }
            }
            Some(mom_message::Kind::Started(started)) => {
                // Ends queued before this start belong to other runs; keep order anyway.
                flush_ends(shared, core, node, &mut ends).await;
                jobs::run_started(
                    core,
                    node,
                    started.run_id,
                    started.session_id,
                    started.start_time,
                    now_epoch(),
                );
            }
        }
    }
    flush_ends(shared, core, node, &mut ends).await;
    Ok(())
}

/// Marks silent nodes down and loses the runs of nodes down for longer than the grace period.
pub async fn watch_nodes(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let period = (shared.config.status_interval / 2)
        .clamp(Duration::from_millis(200), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.recv() => return,
        }
        let mut core = shared.core.lock().await;
        let timeout = core.config.node_timeout();
        let grace = core.config.lost_grace();
        let mut to_lose: Vec<(String, Vec<u64>)> = Vec::new();
        for n in core.state.nodes.iter_mut() {
            if n.is_up() && n.last_seen.elapsed() > timeout {
                warn!(node = %n.def.name, "no status for {:?}; node down", timeout);
                n.session = None;
                n.down_since = Some(Instant::now());
            }
        }
        for n in core.state.nodes.iter() {
            if !n.is_up() && n.down_since.is_some_and(|t| t.elapsed() > grace) {
                let seqs = jobs::jobs_on_node(&core.state, &n.def.name);
                if !seqs.is_empty() {
                    to_lose.push((n.def.name.clone(), seqs));
                }
            }
        }
        // Runs on nodes no longer in the nodes file can never be reconciled.
        let mut orphans: HashMap<String, Vec<u64>> = HashMap::new();
        for job in core.state.running_jobs() {
            if let Some(ms) = job.mother_superior() {
                if core.state.node(ms).is_none() {
                    orphans.entry(ms.to_string()).or_default().push(job.seq);
                }
            }
        }
        to_lose.extend(orphans);
        let mut changed = false;
        for (node, seqs) in to_lose {
            match jobs::lose_jobs(&mut core, &seqs, &node, now_epoch()).await {
                Ok(()) => changed = true,
                Err(e) => warn!(node = %node, code = e.code, "could not record lost runs"),
            }
        }
        if changed {
            shared.wake_scheduler();
        }
    }
}

/// Closes every session (drops the senders so the response streams end) for shutdown.
pub async fn close_all(shared: &Shared) {
    let mut core = shared.core.lock().await;
    for n in core.state.nodes.iter_mut() {
        n.session = None;
    }
    core.state.terminals.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moms_status_texts_stay_on_one_line() {
        let status = status_from_proto(capstan_proto::v1::NodeStatus {
            uname: "Linux n1\nstate = free".into(),
            loadave: f64::NAN,
            jobs: vec!["1.vm\r".into()],
            ..Default::default()
        });
        assert_eq!(status.uname, "Linux n1 state = free");
        assert_eq!(status.jobs, ["1.vm "]);
        assert_eq!(status.loadave, 0.0);
    }
}
