//! The MOM's one connection to the server: a `MomSession.Session` stream that
//! this MOM opens (the MOM dials; it never listens, so a worker behind NAT or
//! a firewall needs one outbound rule).
//!
//! One connection: dial, send `Hello` (node name, version, the runs this MOM
//! holds), read `Welcome`, re-send every unacknowledged `RunEnded`, then one
//! `select!` loop over work from the server, the status timer, events from the
//! runner and SIGHUP (config reload). Any stream error ends the connection and
//! the MOM dials again with exponential backoff (100 ms doubling to 5 s, back
//! to 100 ms after a connection that got as far as `Welcome`).
//!
//! Transport is HTTP/2 over TLS 1.3: the MOM presents the certificate the
//! server's CA issued for this node (its identity, design principle 3; see
//! `tls.rs`) and accepts only a server certificate from that CA. Plain TCP only
//! with `--insecure-plaintext-moms`.
//!
//! Wire types are converted to the MOM's own types here and nowhere else.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_proto::v1::{
    mom_message, mom_session_client::MomSessionClient, server_message, HeldRun, Hello, MomMessage,
    NodeStatus, ResourcesUsed, RunEnded, RunStarted, RunUsage, ServerMessage,
    SignalKind as RunSignalKind, StartRun,
};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{ClientTlsConfig, Endpoint};

use crate::config::MomConfig;
use crate::health::{self, CheckError, Health, NodeCheck};
use crate::job::{Event, Held, RunResult, RunSpec, TerminalSpec, Usage};
use crate::procfs;
use crate::runner::Runner;
use crate::shutdown::Shutdown;
use crate::status::{Collector, NodeReport};

/// How a lost connection is dialled again (the session's, and an interactive terminal's).
pub(crate) const BACKOFF_START: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WELCOME_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("bad server address: {0}")]
    Address(String),
    #[error("transport: {}", chain(.0))]
    Transport(#[from] tonic::transport::Error),
    #[error("server: {0}")]
    Status(#[from] tonic::Status),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("server closed the stream")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where to connect and who we are.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// `HOST:PORT` of the server's MOM listener.
    pub server: String,
    pub node_name: String,
    /// TLS settings; `None` only with `--insecure-plaintext-moms`.
    pub tls: Option<ClientTlsConfig>,
}

pub struct Session {
    opts: SessionOptions,
    runner: Arc<Runner>,
    events: mpsc::UnboundedReceiver<Event>,
    collector: Arc<Mutex<Collector>>,
    hangup: Signal,
    /// qmsg lines being written, at most [`MESSAGES_IN_FLIGHT`]: each write has a blocking
    /// thread of its own, and a home on a hung mount must not use up the pool.
    messages: Arc<tokio::sync::Semaphore>,
    /// The node health check: one at a time, its verdict arriving on `verdicts`.
    checks: HealthChecks,
}

/// A check's verdict, with the generation of the config it ran under.
type Verdict = (u64, Result<Health, CheckError>);

/// When the node health check runs (see `health`), and what waits for it.
struct HealthChecks {
    verdicts_tx: mpsc::Sender<Verdict>,
    verdicts: mpsc::Receiver<Verdict>,
    /// Bumped by each config reload: a verdict of an older generation is ignored (the check
    /// it came from may be one the administrator just removed).
    generation: u64,
    in_flight: bool,
    /// Whether a check has given a verdict since the MOM started.
    judged: bool,
    /// When the last periodic check started.
    last_periodic: Option<Instant>,
    /// With `jobstart`: the server's messages from the first StartRun on, in order, until
    /// a verdict says whether the node takes the job (later messages may be about it).
    held_back: VecDeque<ServerMessage>,
}

impl HealthChecks {
    fn new() -> HealthChecks {
        let (verdicts_tx, verdicts) = mpsc::channel(1);
        HealthChecks {
            verdicts_tx,
            verdicts,
            generation: 0,
            in_flight: false,
            judged: false,
            last_periodic: None,
            held_back: VecDeque::new(),
        }
    }

    /// Starts a check of `script` unless one is running; its verdict comes on `verdicts`.
    fn start(&mut self, script: &std::path::Path) {
        if self.in_flight {
            return;
        }
        self.in_flight = true;
        let (script, tx) = (script.to_path_buf(), self.verdicts_tx.clone());
        let generation = self.generation;
        tokio::spawn(async move {
            let _ = tx.send((generation, health::check(&script).await)).await;
        });
    }

    /// A config reload: checks running now give no verdict, and a new one may start.
    fn forget_running(&mut self) {
        self.generation += 1;
        self.in_flight = false;
        self.last_periodic = None;
    }

    /// Starts a periodic check if one is due (every `every` × `period`). A node its check
    /// took down is checked every period until it passes, even with an interval of 0
    /// (`jobstart` or `jobend` only): no job comes to a down node to check it again.
    fn start_if_due(&mut self, check: &NodeCheck, period: Duration, down: bool) {
        let every = match (check.every, down) {
            (0, false) => return,
            (0, true) => 1,
            (every, _) => every,
        };
        // An absurd period (`$status_update_time` near u64::MAX) is never due.
        let due = match (self.last_periodic, period.checked_mul(every)) {
            (None, _) => true,
            (Some(at), Some(wait)) => at.elapsed() >= wait,
            (Some(_), None) => false,
        };
        if due && !self.in_flight {
            self.last_periodic = Some(Instant::now());
            self.start(&check.script);
        }
    }
}

/// How many qmsg lines may be being written at once; more are dropped (and logged).
const MESSAGES_IN_FLIGHT: usize = 4;

/// Hands the runner its part of the config; logged only once in effect, so the
/// log line means the next job sees it.
fn apply_config(runner: &Runner, config: MomConfig) {
    runner.set_login_shells(config.source_login_batch);
    runner.set_prolog_alarm(std::time::Duration::from_secs(config.prolog_alarm_secs));
    runner.set_tmpdir(config.tmpdir.clone());
    runner.set_ignored_limits(config.ignored);
    runner.set_limit_poll(std::time::Duration::from_secs(config.check_poll_secs));
    tracing::info!(?config, "MOM config loaded");
}

impl Session {
    pub fn new(
        opts: SessionOptions,
        runner: Arc<Runner>,
        events: mpsc::UnboundedReceiver<Event>,
        collector: Collector,
    ) -> Result<Session, SessionError> {
        apply_config(&runner, collector.config());
        Ok(Session {
            opts,
            runner,
            events,
            collector: Arc::new(Mutex::new(collector)),
            hangup: signal(SignalKind::hangup())?,
            messages: Arc::new(tokio::sync::Semaphore::new(MESSAGES_IN_FLIGHT)),
            checks: HealthChecks::new(),
        })
    }

    /// Keeps a session open until shutdown, reconnecting as needed.
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let mut backoff = BACKOFF_START;
        while !shutdown.is_shutdown() {
            let mut welcomed = false;
            let result = tokio::select! {
                r = self.serve(&mut welcomed) => r,
                _ = shutdown.recv() => break,
            };
            if welcomed {
                backoff = BACKOFF_START;
            }
            if let Err(e) = result {
                tracing::warn!(server = %self.opts.server, "session ended: {e}; reconnecting in {backoff:?}");
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.recv() => break,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        tracing::info!("session closed for shutdown");
    }

    /// How this MOM dials the server (the session, and each interactive run's terminal).
    fn endpoint(&self) -> Result<Endpoint, SessionError> {
        let scheme = if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{}", self.opts.server))
            .map_err(|e| SessionError::Address(format!("{}: {e}", self.opts.server)))?;
        if let Some(tls) = &self.opts.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        Ok(endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true))
    }

    /// One connection, from dial to the first error.
    async fn serve(&mut self, welcomed: &mut bool) -> Result<(), SessionError> {
        let endpoint = self.endpoint()?;
        let channel = endpoint.connect().await?;
        let mut client = MomSessionClient::new(channel);

        // Interactive runs' terminals dial as the session does (see `terminal`).
        self.runner.set_terminal_endpoint(endpoint.clone());
        self.turn_away_held_back().await;
        // Events queued while disconnected are covered by Hello and the
        // re-sent results below; drop them rather than send them twice.
        while self.events.try_recv().is_ok() {}
        let (tx, rx) = mpsc::channel::<MomMessage>(64);
        let hello = Hello {
            node_name: self.opts.node_name.clone(),
            version: capstan_proto::PBS_VERSION.to_string(),
            held_runs: self.runner.held().into_iter().map(held_to_wire).collect(),
        };
        let held = hello.held_runs.len();
        send(&tx, mom_message::Kind::Hello(hello)).await?;
        let mut inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
        let first = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message())
            .await
            .map_err(|_| SessionError::Protocol("no Welcome from server".into()))??;
        let welcome = match first.and_then(|m| m.kind) {
            Some(server_message::Kind::Welcome(w)) => w,
            Some(other) => {
                return Err(SessionError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )))
            }
            None => return Err(SessionError::Closed),
        };
        *welcomed = true;
        self.runner
            .set_lost_grace(Duration::from_secs(welcome.lost_grace_secs.into()));
        tracing::info!(
            server = %self.opts.server,
            server_name = %welcome.server_name,
            status_interval = welcome.status_interval_secs,
            lost_grace = welcome.lost_grace_secs,
            held,
            "connected to server"
        );
        for (run_id, result) in self.runner.finished() {
            send(&tx, ended_to_wire(run_id, result)).await?;
        }
        let period = Duration::from_secs(welcome.status_interval_secs.max(1).into());
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether this connection has reported status yet: with a health check, the first
        // report waits (a status period at most) for the MOM's first verdict, and the
        // server offers the node no job before its first report.
        let (mut reported, mut waited) = (false, false);
        loop {
            tokio::select! {
                msg = inbound.message() => match msg? {
                    Some(m) => self.receive(m).await,
                    None => return Err(SessionError::Closed),
                },
                _ = tick.tick() => {
                    let check = self.node_check();
                    if let Some(check) = &check {
                        let down = self.collector.lock().unwrap_or_else(|p| p.into_inner()).health().down;
                        self.checks.start_if_due(check, self.status_update_period(), down);
                    }
                    let first_verdict_due = check.is_some() && !self.checks.judged;
                    if reported || waited || !first_verdict_due {
                        let report = self.report().await;
                        send(&tx, mom_message::Kind::Status(report)).await?;
                        reported = true;
                    } else {
                        // The next tick reports whatever the check has said by then.
                        waited = true;
                    }
                }
                Some((generation, verdict)) = self.checks.verdicts.recv() => {
                    if generation != self.checks.generation {
                        continue;
                    }
                    self.checks.in_flight = false;
                    self.checks.judged = true;
                    if self.take_verdict(verdict) || !reported {
                        // Before anything held back is acted on: a node turning a job away
                        // is down in the server's eyes before the job is requeued.
                        let report = self.report().await;
                        send(&tx, mom_message::Kind::Status(report)).await?;
                        reported = true;
                    }
                    self.release_held_back().await;
                }
                Some(event) = self.events.recv() => {
                    let ended = matches!(event, Event::Ended { .. });
                    send(&tx, event_to_wire(event)).await?;
                    // The config is read at a run's end only, not at every event.
                    if let Some(check) = ended.then(|| self.node_check()).flatten().filter(|c| c.on_job_end) {
                        self.checks.start(&check.script);
                    }
                }
                _ = self.hangup.recv() => {
                    let c = Arc::clone(&self.collector);
                    let reloaded = tokio::task::spawn_blocking(move || {
                        c.lock().unwrap_or_else(|p| p.into_inner()).reload()
                    })
                    .await;
                    if let Ok(config) = reloaded {
                        // Checks running now give no verdict; with no check any more,
                        // the last verdict no longer stands.
                        self.checks.forget_running();
                        if config.node_check.is_none() {
                            self.take_verdict(Ok(Health::default()));
                        }
                        // A new or changed check runs now (its period counts from here); what
                        // waited for a verdict waits for its verdict, or, with no `jobstart`
                        // any more, is acted on now.
                        let check = config.node_check.clone();
                        let jobstart = check.as_ref().is_some_and(|c| c.on_job_start);
                        apply_config(&self.runner, config);
                        if let Some(check) = &check {
                            self.checks.last_periodic = Some(Instant::now());
                            self.checks.start(&check.script);
                        }
                        if !self.checks.held_back.is_empty() && !jobstart {
                            self.release_held_back().await;
                        }
                    }
                }
            }
        }
    }

    /// The health check the config asks for, if any.
    fn node_check(&self) -> Option<NodeCheck> {
        self.collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .config()
            .node_check
    }

    /// `$status_update_time`: what the health check's interval counts.
    fn status_update_period(&self) -> Duration {
        let secs = self
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .config()
            .status_update_secs;
        Duration::from_secs(secs.max(1))
    }

    /// Takes a check's verdict (logging what changed, in Torque's words); true when it
    /// changes what the node reports.
    fn take_verdict(&self, verdict: Result<Health, CheckError>) -> bool {
        let health = match verdict {
            Ok(health) => health,
            // Torque leaves the node as it is when its check cannot run.
            Err(e) => {
                tracing::warn!("node health check: {e}");
                return false;
            }
        };
        let mut collector = self.collector.lock().unwrap_or_else(|p| p.into_inner());
        let was_down = collector.health().down;
        match (&health.message, health.down) {
            (Some(message), true) if !was_down => tracing::warn!(
                "Setting node to down. The node health script output the following message: {message}"
            ),
            (_, false) if was_down => {
                tracing::info!("node health check passed: the node takes jobs again")
            }
            _ => {}
        }
        collector.set_health(health)
    }

    /// Acts on a message from the server, unless it must wait for a health check: with
    /// `jobstart`, a StartRun waits for the next verdict (of the check it starts, or of the
    /// one already running), and every message after it waits behind it, so none is acted
    /// on out of order.
    async fn receive(&mut self, msg: ServerMessage) {
        if !self.checks.held_back.is_empty() {
            self.checks.held_back.push_back(msg);
            return;
        }
        // The config is read for StartRuns only: every other message goes straight on.
        let is_start = matches!(msg.kind, Some(server_message::Kind::Start(_)));
        match is_start
            .then(|| self.node_check())
            .flatten()
            .filter(|c| c.on_job_start)
        {
            Some(check) => {
                self.checks.start(&check.script);
                self.checks.held_back.push_back(msg);
            }
            None => self.handle(msg).await,
        }
    }

    /// Turns away a StartRun that waited for a verdict (see [`Runner::refuse`]).
    async fn refuse(&self, start: StartRun, why: String) {
        let (runner, spec) = (Arc::clone(&self.runner), start_from_wire(start));
        if let Err(e) = tokio::task::spawn_blocking(move || runner.refuse(&spec, &why)).await {
            tracing::error!("runner task failed: {e}");
        }
    }

    /// The connection ended while messages waited for a verdict: each StartRun among them is
    /// turned away (JOB_EXEC_RETRY, reported with the runs in the next Hello, so the server
    /// requeues the job whatever its `-r`), the rest dropped (the server's view of the runs
    /// at the next Hello replaces them).
    async fn turn_away_held_back(&mut self) {
        for msg in std::mem::take(&mut self.checks.held_back) {
            if let Some(server_message::Kind::Start(s)) = msg.kind {
                let why =
                    "the connection to the server was lost before the node health check's verdict";
                self.refuse(s, why.to_string()).await;
            }
        }
    }

    /// Acts on the messages held back for a verdict, in order: a StartRun is turned away
    /// while the node is down (a StartRun that came while a periodic check ran takes that
    /// check's verdict).
    async fn release_held_back(&mut self) {
        let down = {
            let collector = self.collector.lock().unwrap_or_else(|p| p.into_inner());
            let health = collector.health();
            health.down.then(|| {
                format!(
                    "node health check failed: {}",
                    health.message.as_deref().unwrap_or("ERROR")
                )
            })
        };
        while let Some(msg) = self.checks.held_back.pop_front() {
            match (msg.kind, &down) {
                (Some(server_message::Kind::Start(s)), Some(why)) => {
                    self.refuse(s, why.clone()).await
                }
                (kind, _) => self.handle(ServerMessage { kind }).await,
            }
        }
    }

    /// Acts on one message from the server. Never fails: a message the MOM
    /// cannot use is logged and dropped (principle 8).
    async fn handle(&mut self, msg: ServerMessage) {
        let runner = Arc::clone(&self.runner);
        let work: Box<dyn FnOnce() + Send> = match msg.kind {
            Some(server_message::Kind::Start(s)) => {
                tracing::info!(run = s.run_id, job = %s.job_id, "StartRun");
                let spec = start_from_wire(s);
                Box::new(move || runner.start(spec))
            }
            Some(server_message::Kind::Signal(s)) => {
                tracing::info!(
                    run = s.run_id,
                    signal = s.signal,
                    delete = s.delete,
                    kind = s.kind,
                    "SignalRun"
                );
                match RunSignalKind::try_from(s.kind) {
                    Ok(RunSignalKind::Suspend) => {
                        Box::new(move || runner.set_suspended(s.run_id, true))
                    }
                    Ok(RunSignalKind::Resume) => {
                        Box::new(move || runner.set_suspended(s.run_id, false))
                    }
                    // A kind this MOM does not know: the signal as it is.
                    _ => Box::new(move || {
                        runner.signal(s.run_id, s.signal, s.delete, s.kill_delay_secs)
                    }),
                }
            }
            Some(server_message::Kind::Message(m)) => {
                tracing::info!(run = m.run_id, "MessageRun");
                // Not awaited: the file may be in a home on a slow or hung mount (`-k`), and
                // nothing that follows depends on the line being written.
                let Ok(permit) = Arc::clone(&self.messages).try_acquire_owned() else {
                    tracing::warn!(run = m.run_id, "too many qmsg lines being written; dropped");
                    return;
                };
                tokio::task::spawn_blocking(move || {
                    runner.message(m.run_id, &m.text, m.stdout, m.stderr);
                    drop(permit);
                });
                return;
            }
            Some(server_message::Kind::AckEnded(a)) => Box::new(move || runner.ack(&a.run_ids)),
            Some(server_message::Kind::Cancel(c)) => {
                tracing::info!(runs = ?c.run_ids, "CancelRuns");
                Box::new(move || runner.cancel(&c.run_ids))
            }
            Some(server_message::Kind::Welcome(_)) => {
                tracing::warn!("unexpected second Welcome; ignored");
                return;
            }
            None => {
                tracing::warn!("empty message from server; ignored");
                return;
            }
        };
        // Runner calls fork, wait and touch files: keep them off the async
        // threads. Awaiting keeps the server's messages in order.
        if let Err(e) = tokio::task::spawn_blocking(work).await {
            tracing::error!("runner task failed: {e}");
        }
    }

    async fn report(&self) -> NodeStatus {
        let runner = Arc::clone(&self.runner);
        let collector = Arc::clone(&self.collector);
        let report = tokio::task::spawn_blocking(move || {
            let procs = procfs::scan();
            let (jobs, usage) = runner.sample(&procs);
            collector
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .collect(&procs, jobs, usage)
        })
        .await
        .unwrap_or_default();
        status_to_wire(report)
    }
}

/// An error with its causes ("transport error: ... : invalid peer certificate: ...").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn send(tx: &mpsc::Sender<MomMessage>, kind: mom_message::Kind) -> Result<(), SessionError> {
    tx.send(MomMessage { kind: Some(kind) })
        .await
        .map_err(|_| SessionError::Closed)
}

fn held_to_wire(h: Held) -> HeldRun {
    HeldRun {
        run_id: h.run_id,
        job_id: h.job_id,
        finished: h.finished,
        suspended: h.suspended,
        session_id: h.session_id,
    }
}

fn usage_to_wire(u: Usage) -> ResourcesUsed {
    ResourcesUsed {
        cput_secs: u.cput_secs,
        mem_kb: u.mem_kb,
        vmem_kb: u.vmem_kb,
        walltime_secs: u.walltime_secs,
    }
}

fn ended_to_wire(run_id: u64, r: RunResult) -> mom_message::Kind {
    mom_message::Kind::Ended(RunEnded {
        run_id,
        exit_status: r.exit_status,
        used: Some(usage_to_wire(r.used)),
        end_time: r.end_time,
        session_id: r.session_id,
        message: r.message,
        copy_errors: r.copy_errors,
    })
}

fn event_to_wire(e: Event) -> mom_message::Kind {
    match e {
        Event::Started {
            run_id,
            session_id,
            start_time,
        } => mom_message::Kind::Started(RunStarted {
            run_id,
            session_id,
            start_time,
        }),
        Event::Ended { run_id, result } => ended_to_wire(run_id, result),
    }
}

fn status_to_wire(r: NodeReport) -> NodeStatus {
    NodeStatus {
        opsys: r.opsys,
        uname: r.uname,
        sessions: r.sessions,
        nusers: r.nusers,
        idletime: r.idletime,
        totmem_kb: r.totmem_kb,
        availmem_kb: r.availmem_kb,
        physmem_kb: r.physmem_kb,
        ncpus: r.ncpus,
        loadave: r.loadave,
        netload: r.netload,
        state: r.state,
        message: r.message.unwrap_or_default(),
        jobs: r.jobs,
        rectime: r.rectime,
        usage: r
            .usage
            .into_iter()
            .map(|(run_id, u)| RunUsage {
                run_id,
                used: Some(usage_to_wire(u)),
            })
            .collect(),
    }
}

fn start_from_wire(s: StartRun) -> RunSpec {
    RunSpec {
        run_id: s.run_id,
        job_id: s.job_id,
        job_name: s.job_name,
        job_seq: s.job_seq,
        euser: s.euser,
        egroup: s.egroup,
        script: s.script,
        env: s.env.into_iter().map(|e| (e.name, e.value)).collect(),
        nodefile_hosts: s.nodefile_hosts,
        output_path: s.output_path,
        error_path: s.error_path,
        join_path: s.join_path,
        keep_files: s.keep_files,
        shell: s.shell,
        init_work_dir: s.init_work_dir,
        walltime_limit_secs: s.walltime_limit_secs,
        allow_root: s.allow_root,
        resource_limits: s.resource_limits,
        queue: s.queue,
        account: s.account,
        umask: s.umask,
        arguments: s.arguments,
        terminal: s.terminal.map(|t| {
            let window = t.window.unwrap_or_default();
            let (rows, cols) = capstan_proto::window::from_wire(window.rows, window.cols);
            TerminalSpec {
                term: t.term,
                rows,
                cols,
                command: t.command,
            }
        }),
    }
}
