//! The Batch service the commands call, on the Unix socket (and, from login nodes' agents,
//! on the TLS listener).
//!
//! Why this module exists: it is the only place where proto types meet domain types (design
//! principle 9), and the only place that decides who the caller is: the uid comes from the
//! socket's peer credentials (tonic's `UdsConnectInfo`), never from a request field
//! (principle 3); on TLS, from a submit host's certificate, whose agent vouches for the user. Every handler converts, takes the state lock, calls `jobs`/`attrs`, and
//! converts back; listings are served from memory.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use capstan_proto::pbse;
use capstan_proto::remote;
use capstan_proto::text::before_at;
use capstan_proto::v1 as pb;
use capstan_proto::v1::batch_server::Batch;
use tokio::sync::broadcast;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status, Streaming};
use tracing::{error, info, warn};

use crate::attrs;
use crate::dispatch::{self, now_epoch};
use crate::interactive::{ClientEnds, ToClient, ToTerminal, Window};
use crate::jobs::{self, Caller, JobOp, SubmitInput};
use crate::manage::{self, NoteChange};
use crate::model::{Attr, AttrKind, Interactive, PbsError, StatObject, Table};
use crate::shutdown::Shutdown;
use crate::state::{ChangeFailed, Listed, Shared};
use crate::tls;

/// Largest job listing built: the commands refuse larger replies (`client/src/connect.rs`),
/// and a request that names the same jobs over and over must not hold the state lock while
/// gigabytes are built.
const MAX_LISTING_BYTES: usize = 256 << 20;

/// The Batch gRPC service.
#[derive(Debug, Clone)]
pub struct BatchService {
    shared: Arc<Shared>,
    /// uid → resolved identity (user database lookups are slow next to a 2 ms submit).
    callers: Arc<Mutex<HashMap<u32, Caller>>>,
    /// The server's stop: an interactive qsub's stream that ends with it is not its qsub
    /// going away, and its job is not deleted for it.
    shutdown: broadcast::Sender<()>,
}

impl BatchService {
    pub fn new(shared: Arc<Shared>, shutdown: broadcast::Sender<()>) -> BatchService {
        BatchService {
            shared,
            callers: Arc::new(Mutex::new(HashMap::new())),
            shutdown,
        }
    }

    /// Who is asking. On the Unix socket: the peer credentials' uid (any assertion header is
    /// ignored). On the TLS listener: the user a submit host's agent asserts, from a host
    /// whose certificate names it and which `submit_hosts` lists; anything else is refused
    /// with Torque's PBSE_BADHOST / PBSE_BADUSER and logged.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if let Some(info) = request.extensions().get::<UdsConnectInfo>() {
            let uid = info
                .peer_cred
                .map(|cred| cred.uid())
                .ok_or_else(|| Status::unauthenticated("no peer credentials on this connection"))?;
            if let Ok(cache) = self.callers.lock() {
                if let Some(caller) = cache.get(&uid) {
                    return Ok(caller.clone());
                }
            }
            let caller = resolve_uid(uid);
            if let Ok(mut cache) = self.callers.lock() {
                cache.insert(uid, caller.clone());
            }
            return Ok(caller);
        }
        self.remote_caller(request).await
    }

    /// The TLS path of [`BatchService::caller`].
    async fn remote_caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let refuse = |code: i32, host: &str, reason: String| {
            warn!(peer = %peer, host, "remote request refused: {reason}");
            remote::refusal(
                tonic::Code::PermissionDenied,
                code,
                format!("{} ({reason})", pbse::text(code).trim_end()),
            )
        };
        let Some(certs) = request.peer_certs() else {
            return Err(refuse(
                pbse::BADHOST,
                "",
                "no client certificate (commands from other hosts go through trqauthd over TLS)"
                    .to_string(),
            ));
        };
        let host = tls::peer_identity(&certs).map_err(|e| refuse(pbse::BADHOST, "", e))?;
        if let Some(reason) = tls::is_revoked(&self.shared.config.revoked_file(), &host) {
            return Err(refuse(
                pbse::BADHOST,
                &host.name,
                format!("revoked: {reason}"),
            ));
        }
        let submit_host = self
            .shared
            .core
            .lock()
            .await
            .state
            .server_attrs
            .is_submit_host(&host.name);
        if !submit_host {
            return Err(refuse(
                pbse::BADHOST,
                &host.name,
                format!("host {} is not in submit_hosts", host.name),
            ));
        }
        let asserted = request
            .metadata()
            .get(remote::ASSERTED_USER)
            .ok_or_else(|| refuse(pbse::BADUSER, &host.name, "no user asserted".to_string()))?
            .to_str()
            .map_err(|_| {
                refuse(
                    pbse::BADUSER,
                    &host.name,
                    "unreadable user name".to_string(),
                )
            })?;
        resolve_user_name(asserted, &host.name).map_err(|reason| {
            refuse(
                pbse::BADUSER,
                &host.name,
                format!("asserted user {asserted:?}: {reason}"),
            )
        })
    }
}

/// Whether `name` can be a user name (POSIX portable characters, not an option).
fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '$'))
}

/// A user asserted by `host`'s agent → the caller, through this host's user database (the
/// cluster shares one, as under Torque).
pub fn resolve_user_name(name: &str, host: &str) -> Result<Caller, String> {
    use nix::unistd::User;
    if !valid_user_name(name) {
        return Err("not a user name".to_string());
    }
    let user = User::from_name(name)
        .map_err(|e| format!("user database: {e}"))?
        .ok_or_else(|| "no such user on the server".to_string())?;
    Ok(Caller {
        uid: user.uid.as_raw(),
        group: primary_group(&user),
        user: user.name,
        host: host.to_string(),
    })
}

/// The name of `user`'s primary group (its number when the group database has no entry).
fn primary_group(user: &nix::unistd::User) -> String {
    nix::unistd::Group::from_gid(user.gid)
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| user.gid.to_string())
}

/// uid → user name and primary group name (numbers when the user database has no entry).
pub fn resolve_uid(uid: u32) -> Caller {
    use nix::unistd::{Uid, User};
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => Caller {
            uid,
            group: primary_group(&user),
            user: user.name,
            host: crate::config::short_hostname(),
        },
        _ => Caller {
            uid,
            user: uid.to_string(),
            group: uid.to_string(),
            host: crate::config::short_hostname(),
        },
    }
}

type InteractiveOut =
    Pin<Box<dyn Stream<Item = Result<pb::InteractiveOutput, Status>> + Send + 'static>>;

fn interactive_output(kind: pb::interactive_output::Kind) -> pb::InteractiveOutput {
    pb::InteractiveOutput { kind: Some(kind) }
}

/// Carries an interactive qsub's keystrokes and window sizes towards its job's terminal, until
/// the qsub's stream ends; then, unless the server is stopping, the job goes with it (deleted
/// as its owner's qdel would, if it is not over yet), as Torque's goes with its terminal.
async fn relay_keystrokes(
    shared: Arc<Shared>,
    caller: Caller,
    seq: u64,
    job_id: String,
    input: tokio::sync::mpsc::Sender<ToTerminal>,
    mut inbound: Streaming<pb::InteractiveInput>,
    mut shutdown: Shutdown,
) {
    // Whether the job's terminal is open: until then nothing reads the queue towards it, so
    // nothing is queued (qsub sends no keys before `ready`; a client that did would fill the
    // queue, and its going away would go unheard).
    let mut open = false;
    loop {
        let message = tokio::select! {
            message = inbound.message() => message,
            _ = shutdown.recv() => return,
        };
        let kind = match message {
            Ok(Some(m)) => m.kind,
            Ok(None) => break,
            // What a qsub that exits (its job over, or killed) leaves.
            Err(e) => {
                tracing::debug!(job = %job_id, "interactive qsub's stream failed: {e}");
                break;
            }
        };
        let to_terminal = match kind {
            Some(pb::interactive_input::Kind::Input(bytes)) => {
                if !open {
                    open = shared.core.lock().await.state.terminals.is_open(seq);
                }
                if !open {
                    continue;
                }
                ToTerminal::Input(bytes)
            }
            Some(pb::interactive_input::Kind::Window(w)) => {
                let window = Window::from_wire(w.rows, w.cols);
                let core = &mut shared.core.lock().await;
                // Remembered for the terminal's start; sent only once it is open.
                open = core.state.terminals.resized(seq, window);
                if !open {
                    continue;
                }
                ToTerminal::Window(window)
            }
            // A second submission, or nothing: not this stream's to make.
            _ => continue,
        };
        // The terminal is gone (the job is ending): the rest is for no one. The stream is
        // read on to its end, which says whether qsub went away before the job did.
        let _ = input.send(to_terminal).await;
    }
    drop(input);
    let deleted = shared
        .change(
            move |core| {
                Box::pin(async move {
                    if !core.state.terminals.detach(seq) {
                        return false;
                    }
                    let why = "its qsub went away";
                    crate::interactive::delete_as(core, &caller, &job_id, now_epoch(), why).await;
                    true
                })
            },
            |_| false,
        )
        .await;
    if let Err(e) = deleted {
        error!(
            job = seq,
            "deleting an interactive job whose qsub went away: {e}"
        );
    }
}

fn error_to_proto(e: PbsError) -> pb::PbsError {
    pb::PbsError {
        code: e.code,
        detail: e.detail,
        object: e.object,
    }
}

/// One result per job id, in order, as the job-control commands print them.
fn action_reply(results: Vec<(String, Option<PbsError>)>) -> pb::JobActionReply {
    pb::JobActionReply {
        results: results
            .into_iter()
            .map(|(id, error)| pb::JobActionResult {
                id,
                error: error.map(error_to_proto),
            })
            .collect(),
    }
}

fn attr_to_proto(a: Attr) -> pb::Attr {
    pb::Attr {
        name: a.name.into_owned(),
        resource: a.resource,
        value: a.value,
        kind: match a.kind {
            AttrKind::Text => pb::AttrKind::Text as i32,
            AttrKind::Time => pb::AttrKind::Time as i32,
        },
    }
}

fn object_to_proto(o: StatObject) -> pb::StatObject {
    pb::StatObject {
        name: o.name,
        attrs: o.attrs.into_iter().map(attr_to_proto).collect(),
    }
}

fn attr_from_proto(a: pb::Attr) -> Attr {
    Attr {
        name: Cow::Owned(a.name),
        resource: a.resource,
        value: a.value,
        kind: AttrKind::Text,
    }
}

fn reply(server_name: String, objects: Vec<StatObject>, errors: Vec<PbsError>) -> pb::StatReply {
    pb::StatReply {
        server_name,
        objects: objects.into_iter().map(object_to_proto).collect(),
        errors: errors.into_iter().map(error_to_proto).collect(),
        table: None,
    }
}

/// A state change whose task failed, as the client sees it.
impl From<ChangeFailed> for Status {
    fn from(e: ChangeFailed) -> Status {
        error!("{e}");
        Status::internal("state change failed")
    }
}

/// A listing at the edge: the packed table's buffers move into the message as they are.
fn table_to_proto(table: Table) -> pb::StatTable {
    pb::StatTable {
        columns: table
            .columns
            .into_iter()
            .map(|c| {
                attr_to_proto(Attr {
                    name: Cow::Borrowed(c.name),
                    resource: c.resource,
                    value: String::new(),
                    kind: c.kind,
                })
            })
            .collect(),
        names: table.names,
        name_ends: table.name_ends,
        row_ends: table.row_ends,
        cell_columns: table.cell_columns,
        values: table.values,
        value_ends: table.value_ends,
    }
}

#[tonic::async_trait]
impl Batch for BatchService {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitReply>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let attrs = req.attrs.into_iter().map(attr_from_proto).collect();
        let input = SubmitInput::new(attrs, req.script, req.destination, &caller);
        let submitter = caller.clone();
        let result = self
            .shared
            .change(
                move |core| {
                    Box::pin(
                        async move { jobs::submit(core, &submitter, &input, now_epoch()).await },
                    )
                },
                |result| result.as_ref().is_ok_and(jobs::Submitted::may_start),
            )
            .await?;
        let reply = match result {
            Ok(submitted) => pb::SubmitReply {
                job_id: submitted.id,
                error: None,
            },
            Err(e) => {
                info!(user = %caller.user, code = e.code, detail = %e.detail, "submission rejected");
                pb::SubmitReply {
                    job_id: String::new(),
                    error: Some(error_to_proto(e)),
                }
            }
        };
        Ok(Response::new(reply))
    }

    async fn stat_jobs(
        &self,
        request: Request<pb::StatJobsRequest>,
    ) -> Result<Response<pb::StatReply>, Status> {
        let caller = self.caller(&request).await?;
        let request = request.into_inner();
        let operands = request.operands;
        let expand_arrays = request.expand_arrays;
        let wanted = attrs::AttrFilter::new(request.attributes);
        let filter = wanted.as_ref();
        let core = self.shared.core.lock().await;
        let state = &core.state;
        let now = now_epoch();
        // Dependents of every job: only when `depend` is printed (qstat -f), not for listings.
        let reverse = if filter.is_none_or(|f| f.wants("depend")) {
            attrs::reverse_deps(state)
        } else {
            Default::default()
        };
        let server = state.server_name.clone();
        // Torque's `query_other_jobs`: unless it is True, users see only their own jobs
        // (listings skip the others; naming one is PBSE_PERM). Operators see everything.
        let sees_all =
            state.server_attrs.query_other_jobs || state.server_attrs.is_op_or_mgr(&caller);
        let visible = |job: &&crate::model::Job| sees_all || job.uid == caller.uid;
        let mut table = Table::default();
        let push = |table: &mut Table, job: &crate::model::Job| {
            table.push_row(
                |name| job.write_id(&server, name),
                |row| attrs::write_job_attrs(job, state, &reverse, now, filter, row),
            )
        };
        // Appends an array: its sub-jobs when asked to expand arrays (`qstat -t`), else its
        // summary row (`12[]`).
        let push_array = |table: &mut Table, members: &[&crate::model::Job]| {
            if expand_arrays {
                for job in members {
                    push(table, job);
                }
            } else if let Some(summary) = crate::model::array_summary(members.iter().copied()) {
                push(table, &summary);
            }
        };
        // Appends the visible jobs of one queue, or of all of them, in number order.
        let list = |table: &mut Table, queue: Option<&str>| {
            let wanted = |j: &&crate::model::Job| queue.is_none_or(|q| j.queue == q) && visible(j);
            for listed in state.listing() {
                match listed {
                    Listed::Job(job) if wanted(&job) => push(table, job),
                    Listed::Job(_) => {}
                    Listed::Array(_, mut members) => {
                        members.retain(wanted);
                        push_array(table, &members);
                    }
                }
                if table.byte_len() > MAX_LISTING_BYTES {
                    break;
                }
            }
        };
        let mut errors = Vec::new();
        if operands.is_empty() {
            list(&mut table, None);
        }
        // A listing named again adds nothing but work under the state lock (Torque would
        // print it twice; no one asks for that, and a request can repeat it millions of times).
        let mut everything_listed = false;
        let mut queues_listed: HashSet<&str> = HashSet::new();
        for operand in &operands {
            if table.byte_len() > MAX_LISTING_BYTES {
                break;
            }
            let operand = operand.trim();
            if operand.starts_with(|c: char| c.is_ascii_digit()) {
                if let Some(jobs::JobRef::Array(number)) = jobs::parse_job_ref(operand, &server) {
                    let members: Vec<_> = state.sub_jobs(number).collect();
                    match members.first() {
                        Some(job) if visible(job) => push_array(&mut table, &members),
                        Some(_) => errors.push(PbsError::new(
                            pbse::PERM,
                            "",
                            jobs::shown_job_id(operand, &server),
                        )),
                        None => errors.push(PbsError::new(
                            pbse::UNKJOBID,
                            "",
                            jobs::shown_job_id(operand, &server),
                        )),
                    }
                    continue;
                }
                match jobs::parse_job_id(operand, &server).and_then(|s| state.jobs.get(&s)) {
                    Some(job) if visible(&job) => push(&mut table, job),
                    Some(job) => errors.push(PbsError::new(pbse::PERM, "", job.id(&server))),
                    None => errors.push(PbsError::new(
                        pbse::UNKJOBID,
                        "",
                        jobs::shown_job_id(operand, &server),
                    )),
                }
                continue;
            }
            let queue = before_at(operand);
            if everything_listed || (!queue.is_empty() && !queues_listed.insert(queue)) {
                continue;
            }
            if queue.is_empty() {
                everything_listed = true;
                list(&mut table, None);
            } else if state.queue(queue).is_some() {
                list(&mut table, Some(queue));
            } else {
                errors.push(PbsError::new(pbse::UNKQUE, "", queue));
            }
        }
        drop(core);
        if table.byte_len() > MAX_LISTING_BYTES {
            return Err(Status::resource_exhausted(format!(
                "the listing would exceed {} MiB",
                MAX_LISTING_BYTES >> 20
            )));
        }
        Ok(Response::new(pb::StatReply {
            server_name: server,
            objects: Vec::new(),
            errors: errors.into_iter().map(error_to_proto).collect(),
            table: Some(table_to_proto(table)),
        }))
    }

    async fn stat_queues(
        &self,
        request: Request<pb::StatQueuesRequest>,
    ) -> Result<Response<pb::StatReply>, Status> {
        // Anyone may list queues, but on TLS only through a submit host.
        self.caller(&request).await?;
        let names = request.into_inner().names;
        let core = self.shared.core.lock().await;
        let state = &core.state;
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        if names.is_empty() {
            objects.extend(state.queues.iter().map(|q| attrs::queue_attrs(q, state)));
        }
        for name in &names {
            let name = before_at(name);
            match state.queue(name) {
                Some(q) => objects.push(attrs::queue_attrs(q, state)),
                None => errors.push(PbsError::new(pbse::UNKQUE, "", name)),
            }
        }
        Ok(Response::new(reply(
            state.server_name.clone(),
            objects,
            errors,
        )))
    }

    async fn stat_server(
        &self,
        request: Request<pb::StatServerRequest>,
    ) -> Result<Response<pb::StatReply>, Status> {
        self.caller(&request).await?;
        let core = self.shared.core.lock().await;
        let object = attrs::server_attrs(&core.state, core.config.keep_completed);
        Ok(Response::new(reply(
            core.state.server_name.clone(),
            vec![object],
            vec![],
        )))
    }

    async fn job_action(
        &self,
        request: Request<pb::JobActionRequest>,
    ) -> Result<Response<pb::JobActionReply>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let op = match pb::JobOp::try_from(req.op) {
            Ok(pb::JobOp::Delete) => JobOp::Delete,
            Ok(pb::JobOp::Hold) => JobOp::Hold,
            Ok(pb::JobOp::Release) => JobOp::Release,
            Ok(pb::JobOp::Signal) => JobOp::Signal,
            Ok(pb::JobOp::Rerun) => JobOp::Rerun,
            Ok(pb::JobOp::Move) => JobOp::Move,
            Ok(pb::JobOp::Message) => JobOp::Message,
            _ => return Err(Status::invalid_argument("unknown job operation")),
        };
        let (results, _) = self
            .shared
            .change(
                move |core| {
                    Box::pin(async move {
                        let args = jobs::ActionArgs {
                            hold_types: req.hold_types,
                            signal: req.signal,
                            destination: req.destination,
                            message: req.message,
                            message_stdout: req.message_stdout,
                            message_stderr: req.message_stderr,
                            delete_message: req.delete_message,
                            purge: req.purge,
                            delete_delay_secs: req.delete_delay_secs,
                            array_range: req.array_range,
                        };
                        jobs::job_action(core, &caller, op, &req.ids, &args, now_epoch()).await
                    })
                },
                |(_, wake)| *wake,
            )
            .await?;
        Ok(Response::new(action_reply(results)))
    }

    async fn stat_nodes(
        &self,
        request: Request<pb::StatNodesRequest>,
    ) -> Result<Response<pb::StatReply>, Status> {
        self.caller(&request).await?;
        let names = request.into_inner().names;
        let core = self.shared.core.lock().await;
        let state = &core.state;
        let server = state.server_name.as_str();
        let mut objects = Vec::new();
        let mut errors = Vec::new();
        if names.is_empty() {
            objects.extend(state.nodes.iter().map(|n| attrs::node_attrs(n, server)));
        }
        for name in &names {
            match state.node(name) {
                Some(n) => objects.push(attrs::node_attrs(n, server)),
                None => errors.push(PbsError::new(
                    pbse::UNKNODE,
                    "cannot locate specified node",
                    name.as_str(),
                )),
            }
        }
        Ok(Response::new(reply(server.to_string(), objects, errors)))
    }

    async fn modify_nodes(
        &self,
        request: Request<pb::ModifyNodesRequest>,
    ) -> Result<Response<pb::ModifyNodesReply>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let offline = match pb::NodeOp::try_from(req.op).unwrap_or(pb::NodeOp::Unspecified) {
            pb::NodeOp::Offline => Some(true),
            pb::NodeOp::Clear | pb::NodeOp::Reset => Some(false),
            pb::NodeOp::NoteOnly | pb::NodeOp::Unspecified => None,
        };
        let (errors, _) = self
            .shared
            .change(
                move |core| {
                    Box::pin(async move {
                        let note = req.note.as_deref().map(|text| {
                            if req.append_note {
                                NoteChange::Append(text)
                            } else {
                                NoteChange::Set(text)
                            }
                        });
                        manage::modify_nodes(core, &caller, &req.names, offline, note).await
                    })
                },
                |(_, changed)| *changed,
            )
            .await?;
        Ok(Response::new(pb::ModifyNodesReply {
            errors: errors.into_iter().map(error_to_proto).collect(),
        }))
    }

    async fn manage(
        &self,
        request: Request<pb::ManageRequest>,
    ) -> Result<Response<pb::ManageReply>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let command = match pb::ManageCommand::try_from(req.command) {
            Ok(pb::ManageCommand::Create) => manage::Command::Create,
            Ok(pb::ManageCommand::Delete) => manage::Command::Delete,
            Ok(pb::ManageCommand::Set) => manage::Command::Set,
            Ok(pb::ManageCommand::Unset) => manage::Command::Unset,
            _ => return Err(Status::invalid_argument("unknown qmgr command")),
        };
        let object = match pb::ManageObject::try_from(req.object) {
            Ok(pb::ManageObject::Server) => manage::Object::Server,
            Ok(pb::ManageObject::Queue) => manage::Object::Queue(req.name),
            Ok(pb::ManageObject::Node) => manage::Object::Node(req.name),
            _ => return Err(Status::invalid_argument("unknown qmgr object")),
        };
        // An operator this server does not know is refused, not read as `=`: that would
        // replace a list (`managers`, `acl_users`) the client meant to add to or cut.
        let attrs = req
            .attrs
            .into_iter()
            .map(|a| {
                let op = match pb::ManageOp::try_from(a.op) {
                    Ok(pb::ManageOp::Set) => manage::Op::Set,
                    Ok(pb::ManageOp::Incr) => manage::Op::Incr,
                    Ok(pb::ManageOp::Decr) => manage::Op::Decr,
                    Err(_) => return Err(Status::invalid_argument("unknown qmgr operator")),
                };
                Ok(manage::ManageAttr {
                    op,
                    name: a.name,
                    resource: a.resource,
                    value: a.value,
                })
            })
            .collect::<Result<Vec<_>, Status>>()?;
        // A queue started, scheduling switched on or a priority changed: look again.
        let result = self
            .shared
            .change(
                move |core| {
                    Box::pin(async move {
                        manage::manage(core, &caller, command, object, &attrs, now_epoch()).await
                    })
                },
                Result::is_ok,
            )
            .await?;
        Ok(Response::new(pb::ManageReply {
            error: result.err().map(error_to_proto),
        }))
    }

    async fn alter(
        &self,
        request: Request<pb::AlterRequest>,
    ) -> Result<Response<pb::JobActionReply>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let attrs: Vec<Attr> = req.attrs.into_iter().map(attr_from_proto).collect();
        let id = req.id.clone();
        let result = self
            .shared
            .change(
                move |core| {
                    Box::pin(
                        async move { jobs::alter(core, &caller, &id, &attrs, now_epoch()).await },
                    )
                },
                |r| matches!(r, Ok(true)),
            )
            .await?;
        Ok(Response::new(pb::JobActionReply {
            results: vec![pb::JobActionResult {
                id: req.id,
                error: result.err().map(error_to_proto),
            }],
        }))
    }

    async fn order_jobs(
        &self,
        request: Request<pb::OrderJobsRequest>,
    ) -> Result<Response<pb::JobActionReply>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let result = self
            .shared
            .change(
                move |core| {
                    Box::pin(async move {
                        jobs::order(core, &caller, &req.first, &req.second, now_epoch()).await
                    })
                },
                |r| r.is_ok(),
            )
            .await?;
        Ok(Response::new(pb::JobActionReply {
            results: vec![pb::JobActionResult {
                id: String::new(),
                error: result.err().map(error_to_proto),
            }],
        }))
    }

    async fn run_jobs(
        &self,
        request: Request<pb::RunJobsRequest>,
    ) -> Result<Response<pb::JobActionReply>, Status> {
        let caller = self.caller(&request).await?;
        let req = request.into_inner();
        let results = self
            .shared
            .change(
                move |core| {
                    Box::pin(async move {
                        dispatch::run_now(core, &caller, &req.ids, &req.hosts, now_epoch()).await
                    })
                },
                // A start may release `after:` dependents: the scheduler looks again.
                |_| true,
            )
            .await?;
        Ok(Response::new(action_reply(results)))
    }

    type InteractiveStream = InteractiveOut;

    /// qsub -I (see `interactive`): the submission, then the job's terminal.
    async fn interactive(
        &self,
        mut request: Request<Streaming<pb::InteractiveInput>>,
    ) -> Result<Response<InteractiveOut>, Status> {
        let caller = self.caller(&request).await?;
        let first = crate::mom_session::first_message(&mut request, "submission").await?;
        let Some(pb::interactive_input::Kind::Submit(submit)) = first.and_then(|m| m.kind) else {
            return Err(Status::invalid_argument("the first message must be submit"));
        };
        let req = submit.request.unwrap_or_default();
        let attrs = req.attrs.into_iter().map(attr_from_proto).collect();
        let mut input = SubmitInput::new(attrs, req.script, req.destination, &caller);
        input.interactive = Some(Interactive {
            command: Some(submit.command).filter(|c| !c.is_empty()),
        });
        let window = submit
            .window
            .map_or(Window::DEFAULT, |w| Window::from_wire(w.rows, w.cols));
        let term = submit.term;
        let submitter = caller.clone();
        let result =
            self.shared
                .change(
                    move |core| {
                        Box::pin(async move {
                            let submitted =
                                jobs::submit(core, &submitter, &input, now_epoch()).await?;
                            let seq = submitted.seq;
                            let ends = core.state.terminals.attach(seq, &term, window).ok_or_else(
                                || PbsError::new(pbse::SYSTEM, "job already has a terminal", ""),
                            )?;
                            Ok((submitted, seq, ends))
                        })
                    },
                    |result: &Result<(jobs::Submitted, u64, ClientEnds), PbsError>| {
                        result.as_ref().is_ok_and(|(s, _, _)| s.may_start())
                    },
                )
                .await?;
        let (submitted, seq, ends) = match result {
            Ok(attached) => attached,
            Err(e) => {
                info!(user = %caller.user, code = e.code, detail = %e.detail, "interactive submission rejected");
                let reply = pb::SubmitReply {
                    job_id: String::new(),
                    error: Some(error_to_proto(e)),
                };
                let only = interactive_output(pb::interactive_output::Kind::Submitted(reply));
                return Ok(Response::new(Box::pin(tokio_stream::once(Ok(only)))));
            }
        };
        info!(user = %caller.user, job = %submitted.id, "interactive job submitted; its qsub is attached");
        let inbound = request.into_inner();
        let shutdown = Shutdown::new(self.shutdown.subscribe());
        tokio::spawn(relay_keystrokes(
            Arc::clone(&self.shared),
            caller,
            seq,
            submitted.id.clone(),
            ends.input,
            inbound,
            shutdown,
        ));
        let reply = pb::SubmitReply {
            job_id: submitted.id,
            error: None,
        };
        let first = interactive_output(pb::interactive_output::Kind::Submitted(reply));
        let rest = tokio_stream::wrappers::ReceiverStream::new(ends.events).map(|event| {
            Ok(interactive_output(match event {
                ToClient::Ready(node) => pb::interactive_output::Kind::Ready(node),
                ToClient::Output(bytes) => pb::interactive_output::Kind::Output(bytes),
                ToClient::Ended {
                    started,
                    exit_status,
                } => pb::interactive_output::Kind::Ended(pb::InteractiveEnd {
                    started,
                    exit_status,
                }),
            }))
        });
        Ok(Response::new(Box::pin(
            tokio_stream::once(Ok(first)).chain(rest),
        )))
    }

    async fn terminate(
        &self,
        request: Request<pb::TerminateRequest>,
    ) -> Result<Response<pb::ManageReply>, Status> {
        let caller = self.caller(&request).await?;
        let kind = match pb::ShutdownType::try_from(request.get_ref().r#type) {
            Ok(pb::ShutdownType::Quick) => jobs::ShutdownType::Quick,
            Ok(pb::ShutdownType::Immediate) => jobs::ShutdownType::Immediate,
            Ok(pb::ShutdownType::Delay) => jobs::ShutdownType::Delay,
            Err(_) => return Err(Status::invalid_argument("unknown shutdown type")),
        };
        let shared = Arc::clone(&self.shared);
        // Asked for in the change itself: a qterm that hangs up once its jobs are requeued or
        // deleted still stops the server (only the wait below is the caller's).
        let prepared = self
            .shared
            .change(
                move |core| {
                    Box::pin(async move {
                        jobs::prepare_shutdown(core, &caller, kind, now_epoch()).await?;
                        info!(by = %caller.user_at_host(), ?kind, "qterm: stopping the server");
                        shared.termination.request();
                        Ok(())
                    })
                },
                |_| false,
            )
            .await?;
        if let Err(e) = prepared {
            return Ok(Response::new(pb::ManageReply {
                error: Some(error_to_proto(e)),
            }));
        }
        self.shared.termination.wait_stopped().await;
        Ok(Response::new(pb::ManageReply { error: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttrSink;

    #[test]
    fn job_table_names_each_attribute_once_and_packs_values() {
        let mut table = Table::default();
        let mut job = |seq: u64, cput: Option<&str>| {
            table.push_row(
                |name| name.push_str(&format!("{seq}.vm")),
                |row| {
                    row.attr("Job_Name", "", AttrKind::Text, &format!("job{seq}"));
                    if let Some(cput) = cput {
                        row.attr("resources_used", "cput", AttrKind::Text, cput);
                    }
                    row.attr("qtime", "", AttrKind::Time, "7");
                },
            )
        };
        job(1, None);
        job(2, Some("00:00:01"));
        let table = table_to_proto(table);
        let columns: Vec<(&str, &str, i32)> = table
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.resource.as_str(), c.kind))
            .collect();
        assert_eq!(
            columns,
            [
                ("Job_Name", "", pb::AttrKind::Text as i32),
                ("qtime", "", pb::AttrKind::Time as i32),
                ("resources_used", "cput", pb::AttrKind::Text as i32),
            ]
        );
        assert_eq!(table.names, "1.vm2.vm");
        assert_eq!(table.name_ends, [4, 8]);
        assert_eq!(table.row_ends, [2, 5]);
        // The second row keeps its own attribute order: Job_Name, cput, qtime.
        assert_eq!(table.cell_columns, [0, 1, 0, 2, 1]);
        assert_eq!(table.values, "job17job200:00:017");
        assert_eq!(table.value_ends, [4, 5, 9, 17, 18]);
    }
}
