//! `qmgr`'s changes: create/delete queues and nodes and set/unset server, queue and node
//! attributes (Torque's `pbs_manager` request), and `pbsnodes`' node changes (offline, clear,
//! note).
//!
//! Why its own module: these are administrative rules with their own permission model
//! (operators may run the cluster, only managers may change who is trusted) and their own
//! error words. The change is computed on copies, committed in one transaction, and only then
//! applied to memory, like every other change (see `jobs.rs`). A node change writes the
//! nodes file first and then commits the node's flags, putting the file back if that fails.
//!
//! Capstan names every attribute Torque shows. Attributes Capstan does not implement as
//! settable (`log_events`, `acl_hosts` on the server, ...) are refused with
//! PBSE_NOSUP and a reason, never silently accepted. Nodes live in `server_priv/nodes`: qmgr's
//! `create node`, `set node` and `delete node` rewrite that file (durably, line by line; see
//! `nodes_file`) and then change memory, so the cluster grows without a server restart.

use tracing::info;

use crate::authz::{Privilege, ServerAttrs};
use crate::jobs::Caller;
use crate::model::{PbsError, Queue};
use crate::nodes_file;
use crate::resources;
use crate::state::Core;
use capstan_proto::pbse;

/// What qmgr asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Create,
    Delete,
    Set,
    Unset,
}

/// What it is asked of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Server,
    Queue(String),
    Node(String),
}

/// `=`, `+=`, `-=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Incr,
    Decr,
}

/// One `name[.resource] OP value` of a qmgr command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageAttr {
    pub name: String,
    pub resource: String,
    pub value: String,
    pub op: Op,
}

/// Server attributes Torque shows that are fixed in Capstan, with where the setting lives.
const SERVER_FIXED: &[(&str, &str)] = &[
    (
        "acl_hosts",
        "the server is reached through its socket or submit_hosts agents",
    ),
    (
        "acl_host_enable",
        "the server is reached through its socket or submit_hosts agents",
    ),
    ("keep_completed", "set with pbs_server --keep-completed"),
    ("log_events", "logging is set with RUST_LOG"),
    (
        "node_check_rate",
        "node liveness follows pbs_server --status-interval",
    ),
    ("tcp_timeout", "not used by Capstan's transport"),
    ("job_stat_rate", "MOMs push status; nothing is polled"),
    ("poll_jobs", "MOMs push status; nothing is polled"),
    ("down_on_error", "always true in Capstan"),
    ("mom_job_sync", "always true in Capstan"),
    (
        "moab_array_compatible",
        "sub-jobs over their slot limit wait queued, not held",
    ),
    ("nppcu", "not used by Capstan"),
    ("timeout_for_job_delete", "not used by Capstan"),
    ("timeout_for_job_requeue", "not used by Capstan"),
    ("note_append_on_error", "not used by Capstan"),
];

/// Attributes only the server computes.
const SERVER_READ_ONLY: &[&str] = &[
    "server_state",
    "total_jobs",
    "state_count",
    "pbs_version",
    "next_job_number",
    "resources_assigned",
    "net_counter",
];
const QUEUE_READ_ONLY: &[&str] = &["total_jobs", "state_count", "mtime", "resources_assigned"];

/// Torque queue attributes Capstan has not built (limits, routing); refused, never ignored.
const QUEUE_NOT_BUILT: &[&str] = &[
    "acl_logic_or",
    "disallowed_types",
    "from_route_only",
    "keep_completed",
    "kill_delay",
    "max_queuable",
    "max_running",
    "max_user_queuable",
    "max_user_run",
    "resources_max",
    "resources_min",
    "route_destinations",
];

/// Longest queue name Torque accepts (PBS_MAXQUEUENAME).
const MAX_QUEUE_NAME: usize = 15;

fn perm_error(object: &str) -> PbsError {
    PbsError::new(pbse::PERM, "error in permissions (PERM_OPorMGR)", object)
}

/// Applies one qmgr command. On error nothing has changed.
pub async fn manage(
    core: &mut Core,
    caller: &Caller,
    command: Command,
    object: Object,
    attrs: &[ManageAttr],
    now: i64,
) -> Result<(), PbsError> {
    let privilege = core.state.server_attrs.privilege(caller);
    let shown = match &object {
        Object::Server => String::new(),
        Object::Queue(name) | Object::Node(name) => name.clone(),
    };
    if privilege < Privilege::Operator {
        return Err(perm_error(&shown));
    }
    match object {
        Object::Server => manage_server(core, caller, command, attrs, privilege).await,
        Object::Queue(name) => {
            manage_queue(core, caller, command, &name, attrs, privilege, now).await
        }
        Object::Node(name) => manage_node(core, caller, command, &name, attrs, privilege).await,
    }
}

/// The node attributes qmgr may set in the nodes file: Torque's `np`, `gpus`, `properties`
/// and `ntype` (`cluster` only), and Capstan's `site`, `speed` and `dedicated`. `state`
/// (`offline` only: the rest is the node's own doing) and `note` are the node's flags, kept
/// in the database as `pbsnodes -o`/`-N` keep them, so `print node` replays.
const NODE_FILE_ATTRS: &[&str] = &[
    "np",
    "gpus",
    "properties",
    "ntype",
    "site",
    "speed",
    "dedicated",
];

/// A node name qmgr may create: a host name (letters, digits, `-`, labels joined by `.`), at
/// most 64 characters.
fn valid_node_name(name: &str) -> bool {
    name.len() <= 64
        && !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// qmgr on a node (managers only): `create node NAME [attrs]`, `set node NAME attrs`,
/// `unset node NAME attrs`, `delete node NAME`. The node's flags are committed first, then
/// the nodes file is rewritten, then memory follows. A node keeps its slots' jobs: `np` may
/// not drop below a slot in use, and a node is deleted only when no job holds it and its
/// MOM is not connected (stop it first).
async fn manage_node(
    core: &mut Core,
    caller: &Caller,
    command: Command,
    name: &str,
    attrs: &[ManageAttr],
    privilege: Privilege,
) -> Result<(), PbsError> {
    if privilege < Privilege::Manager {
        return Err(perm_error(name));
    }
    let path = core.config.nodes_file();
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(PbsError::system(format!("{}: {e}", path.display()))),
    };
    let change = plan_node_change(core.state.node(name), &text, command, name, attrs)?;
    // The file, then the flags (a create or delete clears what an earlier node of that
    // name left); if the flags cannot be committed, the file is put back, so a refused
    // command has changed nothing.
    let changes_file = change.text != text;
    if changes_file {
        save_nodes_file(&path, &change.text).await?;
    }
    let committed = async {
        let mut tx = core.store.begin()?;
        tx.save_node_flags(name, &change.flags)?;
        tx.commit().await
    }
    .await;
    if let Err(e) = committed {
        if changes_file {
            if let Err(undo) = save_nodes_file(&path, &text).await {
                tracing::error!(file = %path.display(), "cannot put the nodes file back: {}", undo.detail);
            }
        }
        return Err(PbsError::system(e));
    }
    match (command, change.def) {
        (Command::Delete, _) => core.state.nodes.retain(|n| n.def.name != name),
        (Command::Create, Some(def)) => core.state.nodes.push(crate::state::NodeRuntime::new(
            def,
            change.flags,
            std::time::Instant::now(),
        )),
        (_, Some(def)) => {
            if let Some(node) = core.state.node_mut(name) {
                node.slots.resize(def.np as usize, None);
                node.def = def;
                node.flags = change.flags;
            }
        }
        (_, None) => {}
    }
    info!(by = %caller.user_at_host(), node = name, ?command, "node changed");
    Ok(())
}

/// Writes the nodes file durably (two fsyncs) on a blocking thread, off the server's async
/// workers.
async fn save_nodes_file(path: &std::path::Path, text: &str) -> Result<(), PbsError> {
    let (path, text) = (path.to_path_buf(), text.to_string());
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || nodes_file::save(&path, &text))
        .await
        .map_err(|e| PbsError::system(format!("{shown}: {e}")))?
        .map_err(|e| PbsError::system(format!("{shown}: {e}")))
}

/// What a node command makes of the nodes file and the node.
#[derive(Debug)]
struct NodeChange {
    /// The nodes file's new text (the old one when only flags change).
    text: String,
    /// The node's flags after the command (cleared by create and delete).
    flags: crate::model::NodeFlags,
    /// The node as the new file defines it (`None` once deleted).
    def: Option<crate::model::NodeDef>,
}

/// Works out a node command from the node as it is (`current`) and the file's `text`, with
/// no I/O: refused when the node's existence, running jobs or MOM say no, or when the new
/// file would not load at the server's next start.
fn plan_node_change(
    current: Option<&crate::state::NodeRuntime>,
    text: &str,
    command: Command,
    name: &str,
    attrs: &[ManageAttr],
) -> Result<NodeChange, PbsError> {
    let unknown = || PbsError::new(pbse::UNKNODE, "", name);
    let (file_attrs, flag_attrs): (Vec<&ManageAttr>, Vec<&ManageAttr>) = attrs
        .iter()
        .partition(|a| NODE_FILE_ATTRS.contains(&a.name.as_str()));
    let mut flags = current.map(|n| n.flags.clone()).unwrap_or_default();
    for attr in &flag_attrs {
        apply_node_flag(&mut flags, command, attr, name)?;
    }
    let new_text = match command {
        Command::Create => {
            if current.is_some() {
                return Err(PbsError::new(pbse::NODEEXIST, "", name));
            }
            if !valid_node_name(name) {
                return Err(invalid_name("node", name));
            }
            let mut line = nodes_file::NodeLine::new(name);
            for attr in &file_attrs {
                apply_node_attr(&mut line, Command::Set, attr)?;
            }
            nodes_file::add_node(text, &line)
        }
        // Flags only: the node's line stays as it is written.
        Command::Set | Command::Unset if file_attrs.is_empty() => {
            current.ok_or_else(unknown)?;
            text.to_string()
        }
        Command::Set | Command::Unset => {
            current.ok_or_else(unknown)?;
            let mut failed = None;
            let edited = nodes_file::edit_node(text, name, |line| {
                failed = file_attrs
                    .iter()
                    .find_map(|attr| apply_node_attr(line, command, attr).err());
            })
            .ok_or_else(unknown)?;
            if let Some(e) = failed {
                return Err(e);
            }
            edited
        }
        Command::Delete => {
            let node = current.ok_or_else(unknown)?;
            if node.slots.iter().any(Option::is_some) {
                return Err(PbsError::new(
                    pbse::IVALREQ,
                    format!("node {name} has running jobs"),
                    name,
                ));
            }
            if node.is_up() {
                return Err(PbsError::new(
                    pbse::IVALREQ,
                    format!("the pbs_mom of node {name} is connected; stop it first"),
                    name,
                ));
            }
            // Its offline flag and note go with it: a node created later under the same name
            // starts clean.
            flags = Default::default();
            nodes_file::remove_node(text, name).ok_or_else(unknown)?
        }
    };
    // The whole file as the server would read it at its next start: an edit that would not
    // load is refused here.
    let defs = nodes_file::parse(&new_text)
        .map_err(|e| PbsError::new(pbse::BADATVAL, e.to_string(), name))?;
    let def = defs.into_iter().find(|d| d.name == name);
    if let (Some(def), Some(node)) = (&def, current) {
        let in_use = node
            .slots
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        if (def.np as usize) < in_use {
            return Err(PbsError::new(
                pbse::BADATVAL,
                format!(
                    "np {} is below the slots in use on {name} ({in_use})",
                    def.np
                ),
                name,
            ));
        }
    }
    Ok(NodeChange {
        text: new_text,
        flags,
        def,
    })
}

/// `state` and `note` on a node: its flags (see [`NODE_FILE_ATTRS`]).
fn apply_node_flag(
    flags: &mut crate::model::NodeFlags,
    command: Command,
    attr: &ManageAttr,
    node: &str,
) -> Result<(), PbsError> {
    let bad = || PbsError::new(pbse::BADATVAL, "", node);
    match attr.name.as_str() {
        "state" => {
            let offline = attr.value.split(',').any(|w| w.trim() == "offline");
            match (command, attr.op) {
                (Command::Unset, _) => flags.offline = false,
                (_, Op::Set) => flags.offline = offline,
                (_, Op::Incr) if offline => flags.offline = true,
                (_, Op::Decr) if offline => flags.offline = false,
                // `down`, `free`, `job-exclusive`, ...: what the node is, not what is set.
                _ => {}
            }
        }
        "note" => match command {
            Command::Unset => flags.note = None,
            _ if attr.value.chars().any(char::is_control) => return Err(bad()),
            _ if attr.value.is_empty() => flags.note = None,
            _ => flags.note = Some(attr.value.clone()),
        },
        _ => return Err(PbsError::new(pbse::UNKNODEATR, "", node)),
    }
    Ok(())
}

/// One qmgr attribute on a node's line (checked again when the file is parsed).
fn apply_node_attr(
    line: &mut nodes_file::NodeLine,
    command: Command,
    attr: &ManageAttr,
) -> Result<(), PbsError> {
    let name = attr.name.as_str();
    let bad = |why: &str| PbsError::new(pbse::BADATVAL, why, line.name.clone());
    // Nothing that could end the line or split a word.
    let plain = |v: &str| {
        !v.is_empty()
            && !v
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    };
    let unset = command == Command::Unset;
    match name {
        "properties" => {
            let values: Vec<String> = attr
                .value
                .split(',')
                .map(|v| v.trim().to_string())
                .collect();
            if !unset && values.iter().any(|v| !plain(v) || v.contains('=')) {
                return Err(bad("a property is one word, without = or #"));
            }
            match (unset, attr.op) {
                (true, _) => line.properties.clear(),
                (false, Op::Set) => line.properties = values,
                (false, Op::Incr) => {
                    for v in values {
                        if !line.properties.contains(&v) {
                            line.properties.push(v);
                        }
                    }
                }
                (false, Op::Decr) => line.properties.retain(|p| !values.contains(p)),
            }
        }
        // Torque's only node type for a MOM.
        "ntype" if unset || attr.value.eq_ignore_ascii_case("cluster") => {}
        "ntype" => return Err(bad("ntype is cluster")),
        // The key's default again (np=1, gpus=0, the default site, speed 1, dedicated).
        key if unset => line.unset(key),
        key if attr.op != Op::Set => return Err(bad(&format!("{key} takes ="))),
        key @ ("np" | "gpus") => {
            let least = u32::from(key == "np");
            match attr.value.parse::<u32>() {
                Ok(n) if (least..=nodes_file::MAX_NP).contains(&n) => line.set(key, &attr.value),
                _ => {
                    return Err(bad(&format!(
                        "{key} is a number from {least} to {}",
                        nodes_file::MAX_NP
                    )))
                }
            }
        }
        key if !plain(&attr.value) || attr.value.contains(',') => {
            return Err(bad(&format!("bad {key} value")))
        }
        key => line.set(key, &attr.value),
    }
    Ok(())
}

async fn manage_server(
    core: &mut Core,
    caller: &Caller,
    command: Command,
    attrs: &[ManageAttr],
    privilege: Privilege,
) -> Result<(), PbsError> {
    if matches!(command, Command::Create | Command::Delete) {
        return Err(PbsError::new(
            pbse::IVALREQ,
            "the server cannot be created or deleted",
            "",
        ));
    }
    let mut next = core.state.server_attrs.clone();
    let mut default_queue = core.state.default_queue.clone();
    // What `print server` shows for the fixed and computed attributes: setting one to the
    // value it already has is accepted, so a saved `print server` can be replayed.
    let shown = crate::attrs::server_attrs(&core.state, core.config.keep_completed);
    let attrs: Vec<&ManageAttr> = attrs
        .iter()
        .filter(|a| {
            let fixed = SERVER_FIXED.iter().any(|(n, _)| *n == a.name)
                || SERVER_READ_ONLY.contains(&a.name.as_str());
            let unchanged = command == Command::Set
                && a.op == Op::Set
                && shown
                    .attrs
                    .iter()
                    .any(|s| s.name == a.name && s.resource == a.resource && s.value == a.value);
            !(fixed && unchanged)
        })
        .collect();
    for attr in attrs.iter().copied() {
        apply_server_attr(
            &mut next,
            &mut default_queue,
            command,
            attr,
            privilege,
            &core.state.queues,
        )?;
    }
    let mut tx = core.store.begin().map_err(PbsError::system)?;
    tx.save_server_attrs(&next).map_err(PbsError::system)?;
    if default_queue != core.state.default_queue {
        tx.set_default_queue(&default_queue)
            .map_err(PbsError::system)?;
    }
    tx.commit().await.map_err(PbsError::system)?;
    info!(by = %caller.user_at_host(), ?attrs, "server attributes changed");
    core.state.server_attrs = next;
    core.state.default_queue = default_queue;
    Ok(())
}

fn apply_server_attr(
    attrs: &mut ServerAttrs,
    default_queue: &mut String,
    command: Command,
    attr: &ManageAttr,
    privilege: Privilege,
    queues: &[Queue],
) -> Result<(), PbsError> {
    let name = attr.name.as_str();
    let manager_only = |p: Privilege| -> Result<(), PbsError> {
        if p < Privilege::Manager {
            Err(PbsError::new(pbse::ATTRRO, name, ""))
        } else {
            Ok(())
        }
    };
    match name {
        "managers" | "operators" | "submit_hosts" => {
            manager_only(privilege)?;
            let list = match name {
                "managers" => &mut attrs.managers,
                "operators" => &mut attrs.operators,
                _ => &mut attrs.submit_hosts,
            };
            apply_list(list, command, attr)?;
        }
        "query_other_jobs" => {
            manager_only(privilege)?;
            attrs.query_other_jobs = bool_value(command, attr, false)?;
        }
        "scheduling" => attrs.scheduling = bool_value(command, attr, true)?,
        // Managers only: the server runs sendmail as root with these.
        "mail_from" | "mail_domain" | "mail_subject_fmt" | "mail_body_fmt" => {
            manager_only(privilege)?;
            let mail = &mut attrs.mail;
            let setting = match name {
                "mail_from" => &mut mail.from,
                "mail_domain" => &mut mail.domain,
                "mail_subject_fmt" => &mut mail.subject_fmt,
                _ => &mut mail.body_fmt,
            };
            *setting = match command {
                Command::Unset => None,
                _ => Some(mail_value(name, &attr.value)?),
            };
        }
        "no_mail_force" => {
            manager_only(privilege)?;
            attrs.mail.no_mail_force = bool_value(command, attr, false)?;
        }
        "default_queue" => {
            manager_only(privilege)?;
            if command == Command::Unset {
                default_queue.clear();
            } else if queues.iter().any(|q| q.name == attr.value) {
                *default_queue = attr.value.clone();
            } else {
                return Err(PbsError::new(
                    pbse::UNKQUE,
                    format!("cannot locate queue {}", attr.value),
                    attr.value.as_str(),
                ));
            }
        }
        _ if SERVER_READ_ONLY.contains(&name) => {
            return Err(PbsError::new(pbse::ATTRRO, name, ""));
        }
        _ => {
            if let Some((_, why)) = SERVER_FIXED.iter().find(|(n, _)| *n == name) {
                return Err(PbsError::new(pbse::NOSUP, format!("{name}: {why}"), ""));
            }
            return Err(PbsError::new(pbse::NOATTR, name, ""));
        }
    }
    Ok(())
}

async fn manage_queue(
    core: &mut Core,
    caller: &Caller,
    command: Command,
    name: &str,
    attrs: &[ManageAttr],
    privilege: Privilege,
    now: i64,
) -> Result<(), PbsError> {
    let existing = core.state.queue(name).cloned();
    match command {
        Command::Create => {
            if privilege < Privilege::Manager {
                return Err(perm_error(name));
            }
            if existing.is_some() {
                return Err(PbsError::new(pbse::QUEEXIST, "", name));
            }
            if !valid_queue_name(name) {
                return Err(invalid_name("queue", name));
            }
            let mut queue = Queue::new(name, now);
            for attr in attrs {
                apply_queue_attr(&mut queue, Command::Set, attr, privilege)?;
            }
            let mut tx = core.store.begin().map_err(PbsError::system)?;
            tx.save_queue(&queue).map_err(PbsError::system)?;
            tx.commit().await.map_err(PbsError::system)?;
            info!(by = %caller.user_at_host(), queue = name, "queue created");
            core.state.queues.push(queue);
            Ok(())
        }
        Command::Delete => {
            if privilege < Privilege::Manager {
                return Err(perm_error(name));
            }
            if existing.is_none() {
                return Err(unknown_queue(name));
            }
            // Torque refuses while any job, even a completed one, is in the queue.
            if core.state.jobs.values().any(|j| j.queue == name) {
                return Err(PbsError::new(pbse::QUEBUSY, "", name));
            }
            let clears_default = core.state.default_queue == name;
            let mut tx = core.store.begin().map_err(PbsError::system)?;
            tx.delete_queue(name).map_err(PbsError::system)?;
            if clears_default {
                tx.set_default_queue("").map_err(PbsError::system)?;
            }
            tx.commit().await.map_err(PbsError::system)?;
            info!(by = %caller.user_at_host(), queue = name, "queue deleted");
            core.state.queues.retain(|q| q.name != name);
            if clears_default {
                core.state.default_queue.clear();
            }
            Ok(())
        }
        Command::Set | Command::Unset => {
            // No name: every queue, as Torque's server reads it (`qenable @server`).
            let mut changed: Vec<Queue> = if name.is_empty() {
                core.state.queues.clone()
            } else {
                existing.into_iter().collect()
            };
            if changed.is_empty() {
                // Torque's `mgr_queue_set` says no more than that.
                return Err(PbsError::new(pbse::UNKQUE, "", name));
            }
            for queue in changed.iter_mut() {
                for attr in attrs {
                    apply_queue_attr(queue, command, attr, privilege)?;
                }
                queue.mtime = now;
            }
            let mut tx = core.store.begin().map_err(PbsError::system)?;
            for queue in &changed {
                tx.save_queue(queue).map_err(PbsError::system)?;
            }
            tx.commit().await.map_err(PbsError::system)?;
            for queue in changed {
                info!(by = %caller.user_at_host(), queue = %queue.name, ?attrs, "queue attributes changed");
                if let Some(slot) = core.state.queues.iter_mut().find(|q| q.name == queue.name) {
                    *slot = queue;
                }
            }
            Ok(())
        }
    }
}

/// What pbsnodes does to a node's note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteChange<'a> {
    /// `-N TEXT`: the note becomes TEXT; empty or `n` removes it.
    Set(&'a str),
    /// `-A TEXT`: TEXT is appended to the note after ", " (Torque's delimiter), or becomes
    /// the note if there is none.
    Append(&'a str),
}

impl NoteChange<'_> {
    /// The note after this change to `note`.
    fn apply(self, note: Option<&str>) -> Option<String> {
        match (self, note) {
            (NoteChange::Set(text), _) => (!text.is_empty() && text != "n").then(|| text.into()),
            (NoteChange::Append(""), note) => note.map(str::to_string),
            (NoteChange::Append(text), Some(note)) if !note.is_empty() => {
                Some(format!("{note}, {text}"))
            }
            (NoteChange::Append(text), _) => Some(text.to_string()),
        }
    }
}

/// pbsnodes -o/-c/-r/-N/-A: sets or clears `offline` (`None` leaves it) and changes the note
/// of each named node, for operators and managers. The changes are committed in one
/// transaction, then applied. Returns the per-node errors and whether anything changed.
pub async fn modify_nodes(
    core: &mut Core,
    caller: &Caller,
    names: &[String],
    offline: Option<bool>,
    note: Option<NoteChange<'_>>,
) -> (Vec<PbsError>, bool) {
    let permitted = core.state.server_attrs.is_op_or_mgr(caller);
    let mut errors = Vec::new();
    let mut changed = Vec::new();
    for name in names {
        let Some(node) = core.state.node(name) else {
            errors.push(PbsError::new(
                pbse::UNKNODE,
                "cannot locate specified node",
                name.as_str(),
            ));
            continue;
        };
        if !permitted {
            errors.push(perm_error(name));
            continue;
        }
        let mut flags = node.flags.clone();
        if let Some(offline) = offline {
            flags.offline = offline;
        }
        if let Some(change) = note {
            flags.note = change.apply(flags.note.as_deref());
        }
        if flags != node.flags {
            changed.push((name.clone(), flags));
        }
    }
    if changed.is_empty() {
        return (errors, false);
    }
    let committed = async {
        let mut tx = core.store.begin()?;
        for (name, flags) in &changed {
            tx.save_node_flags(name, flags)?;
        }
        tx.commit().await
    }
    .await;
    if let Err(e) = committed {
        errors.push(PbsError::system(format!("node change not committed: {e}")));
        return (errors, false);
    }
    for (name, flags) in changed {
        info!(node = %name, offline = flags.offline, note = ?flags.note, "node changed");
        if let Some(n) = core.state.node_mut(&name) {
            n.flags = flags;
        }
    }
    (errors, true)
}

/// A name qmgr may not create a `kind` (node, queue) with.
fn invalid_name(kind: &str, name: &str) -> PbsError {
    PbsError::new(pbse::BADATVAL, format!("invalid {kind} name {name}"), name)
}

fn unknown_queue(name: &str) -> PbsError {
    PbsError::new(pbse::UNKQUE, format!("cannot locate queue {name}"), name)
}

/// Torque's rule: up to 15 characters, a letter or digit first, then letters, digits, `_`
/// and `-`.
fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_QUEUE_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn apply_queue_attr(
    queue: &mut Queue,
    command: Command,
    attr: &ManageAttr,
    privilege: Privilege,
) -> Result<(), PbsError> {
    let name = attr.name.as_str();
    match name {
        "queue_type" => {
            // Unique prefixes of `execution` (`e`, `exec`, ...), as Torque accepts them.
            let value = attr.value.to_ascii_lowercase();
            if command == Command::Set && (value.is_empty() || !"execution".starts_with(&value)) {
                return Err(PbsError::new(
                    pbse::NOSUP,
                    "only execution queues exist in Capstan (routing queues are not built)",
                    queue.name.as_str(),
                ));
            }
        }
        "enabled" => queue.enabled = bool_value(command, attr, false)?,
        "started" => queue.started = bool_value(command, attr, false)?,
        "priority" => {
            queue.priority = match command {
                Command::Unset => 0,
                _ => attr
                    .value
                    .trim()
                    .parse()
                    .map_err(|_| PbsError::new(pbse::BADATVAL, "", queue.name.as_str()))?,
            }
        }
        "resources_default" => {
            if attr.resource.is_empty() {
                return Err(PbsError::new(pbse::BADATVAL, "", queue.name.as_str()));
            }
            queue.resources_default.retain(|(r, _)| *r != attr.resource);
            if command != Command::Unset {
                let value = resources::normalize(&attr.resource, &attr.value).map_err(|e| {
                    let code = match e {
                        resources::ResourceError::Unknown(_) => pbse::UNKRESC,
                        _ => pbse::BADATVAL,
                    };
                    PbsError::new(code, "", queue.name.as_str())
                })?;
                queue.resources_default.push((attr.resource.clone(), value));
            }
        }
        "acl_user_enable" | "acl_group_enable" | "acl_host_enable" => {
            if privilege < Privilege::Manager {
                return Err(PbsError::new(pbse::ATTRRO, name, queue.name.as_str()));
            }
            let value = bool_value(command, attr, false)?;
            match name {
                "acl_user_enable" => queue.acl_user_enable = value,
                "acl_group_enable" => queue.acl_group_enable = value,
                _ => queue.acl_host_enable = value,
            }
        }
        "acl_users" | "acl_groups" | "acl_hosts" => {
            if privilege < Privilege::Manager {
                return Err(PbsError::new(pbse::ATTRRO, name, queue.name.as_str()));
            }
            let list = match name {
                "acl_users" => &mut queue.acl_users,
                "acl_groups" => &mut queue.acl_groups,
                _ => &mut queue.acl_hosts,
            };
            apply_list(list, command, attr)?;
        }
        _ if QUEUE_READ_ONLY.contains(&name) => {
            return Err(PbsError::new(pbse::ATTRRO, name, queue.name.as_str()));
        }
        _ if QUEUE_NOT_BUILT.contains(&name) => {
            return Err(PbsError::new(
                pbse::NOSUP,
                format!("{name} is not built in Capstan"),
                queue.name.as_str(),
            ));
        }
        _ => return Err(PbsError::new(pbse::NOATTR, name, queue.name.as_str())),
    }
    Ok(())
}

/// `=` replaces the list, `+=` appends entries not yet present, `-=` removes entries; values
/// are comma-separated. `unset` empties it.
fn apply_list(list: &mut Vec<String>, command: Command, attr: &ManageAttr) -> Result<(), PbsError> {
    if command == Command::Unset {
        list.clear();
        return Ok(());
    }
    let entries: Vec<String> = attr
        .value
        .split(',')
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if entries.is_empty() && attr.op != Op::Set {
        return Err(PbsError::new(pbse::BADATVAL, "", ""));
    }
    match attr.op {
        Op::Set => *list = entries,
        Op::Incr => {
            for e in entries {
                if !list.contains(&e) {
                    list.push(e);
                }
            }
        }
        Op::Decr => list.retain(|e| !entries.contains(e)),
    }
    Ok(())
}

/// Torque's boolean spellings (`True`, `true`, `t`, `1`, `y`, ... and their negatives); `unset`
/// restores `default`.
/// A mail attribute's value: not empty, no control characters; the sender and the domain,
/// which become sendmail's arguments and addresses, one word not starting with `-`.
fn mail_value(name: &str, value: &str) -> Result<String, PbsError> {
    let value = value.trim();
    let one_word = matches!(name, "mail_from" | "mail_domain");
    let bad = value.is_empty()
        || value.chars().any(char::is_control)
        || (one_word && (value.starts_with('-') || value.chars().any(char::is_whitespace)));
    if bad {
        return Err(PbsError::new(pbse::BADATVAL, "", ""));
    }
    Ok(value.to_string())
}

fn bool_value(command: Command, attr: &ManageAttr, default: bool) -> Result<bool, PbsError> {
    if command == Command::Unset {
        return Ok(default);
    }
    crate::model::parse_bool(attr.value.trim()).ok_or_else(|| PbsError::new(pbse::BADATVAL, "", ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: &str, op: Op) -> ManageAttr {
        ManageAttr {
            name: name.into(),
            resource: String::new(),
            value: value.into(),
            op,
        }
    }

    #[test]
    fn a_note_is_set_cleared_or_appended_to_after_a_comma() {
        let after = |change: NoteChange, note: Option<&str>| change.apply(note);
        assert_eq!(
            after(NoteChange::Set("disk"), Some("old")).as_deref(),
            Some("disk")
        );
        assert_eq!(after(NoteChange::Set("n"), Some("old")), None);
        assert_eq!(after(NoteChange::Set(""), Some("old")), None);
        assert_eq!(
            after(NoteChange::Append("fan"), Some("disk")).as_deref(),
            Some("disk, fan")
        );
        assert_eq!(
            after(NoteChange::Append("fan"), None).as_deref(),
            Some("fan")
        );
        assert_eq!(
            after(NoteChange::Append(""), Some("disk")).as_deref(),
            Some("disk")
        );
        assert_eq!(after(NoteChange::Append(""), None), None);
    }

    #[test]
    fn node_changes_are_planned_without_io() {
        let text = "# lab\nn1 np=2 fast\n";
        let def = nodes_file::parse(text).unwrap().remove(0);
        let mut n1 =
            crate::state::NodeRuntime::new(def, Default::default(), std::time::Instant::now());
        n1.slots[1] = Some(7);
        let plan = |command, name: &str, attrs: &[ManageAttr], node| {
            plan_node_change(node, text, command, name, attrs)
        };
        let code = |r: Result<NodeChange, PbsError>| r.map(|_| ()).unwrap_err().code;
        assert_eq!(
            code(plan(Command::Create, "n1", &[], Some(&n1))),
            pbse::NODEEXIST
        );
        assert_eq!(
            code(plan(Command::Set, "n9", &[set("np", "4", Op::Set)], None)),
            pbse::UNKNODE
        );
        // Slot 1 holds a job: np may not drop below 2, and the node may not go.
        assert_eq!(
            code(plan(
                Command::Set,
                "n1",
                &[set("np", "1", Op::Set)],
                Some(&n1)
            )),
            pbse::BADATVAL
        );
        assert_eq!(
            code(plan(Command::Delete, "n1", &[], Some(&n1))),
            pbse::IVALREQ
        );
        let grown = plan(Command::Set, "n1", &[set("np", "4", Op::Set)], Some(&n1)).unwrap();
        assert_eq!(grown.text, "# lab\nn1 np=4 fast\n");
        assert_eq!(grown.def.map(|d| d.np), Some(4));
        // Flags only: the file stays as written.
        let offline = plan(
            Command::Set,
            "n1",
            &[set("state", "offline", Op::Incr)],
            Some(&n1),
        )
        .unwrap();
        assert_eq!(offline.text, text);
        assert!(offline.flags.offline);
        let created = plan(
            Command::Create,
            "n2",
            &[set("properties", "gpu", Op::Set)],
            None,
        )
        .unwrap();
        assert_eq!(created.text, "# lab\nn1 np=2 fast\nn2 gpu\n");
    }

    #[test]
    fn list_operators_replace_add_and_remove() {
        let mut list = vec!["root@vm".to_string()];
        apply_list(
            &mut list,
            Command::Set,
            &set("managers", "alice@vm", Op::Incr),
        )
        .unwrap();
        apply_list(
            &mut list,
            Command::Set,
            &set("managers", "alice@vm,bob@*", Op::Incr),
        )
        .unwrap();
        assert_eq!(list, ["root@vm", "alice@vm", "bob@*"]);
        apply_list(
            &mut list,
            Command::Set,
            &set("managers", "alice@vm", Op::Decr),
        )
        .unwrap();
        assert_eq!(list, ["root@vm", "bob@*"]);
        apply_list(
            &mut list,
            Command::Set,
            &set("managers", "carol@vm", Op::Set),
        )
        .unwrap();
        assert_eq!(list, ["carol@vm"]);
        apply_list(&mut list, Command::Unset, &set("managers", "", Op::Set)).unwrap();
        assert!(list.is_empty());
    }

    #[test]
    fn security_attributes_need_a_manager() {
        let mut attrs = ServerAttrs::default();
        let mut dq = String::from("batch");
        let e = apply_server_attr(
            &mut attrs,
            &mut dq,
            Command::Set,
            &set("managers", "mallory@vm", Op::Incr),
            Privilege::Operator,
            &[],
        )
        .unwrap_err();
        assert_eq!(e.code, pbse::ATTRRO);
        assert!(attrs.managers.is_empty());
        // Operators run the cluster: scheduling is theirs.
        apply_server_attr(
            &mut attrs,
            &mut dq,
            Command::Set,
            &set("scheduling", "false", Op::Set),
            Privilege::Operator,
            &[],
        )
        .unwrap();
        assert!(!attrs.scheduling);
    }

    #[test]
    fn unknown_fixed_and_read_only_attributes_are_refused_in_torque_words() {
        let mut attrs = ServerAttrs::default();
        let mut dq = String::new();
        let mut try_set = |name: &str| {
            apply_server_attr(
                &mut attrs,
                &mut dq,
                Command::Set,
                &set(name, "1", Op::Set),
                Privilege::Manager,
                &[],
            )
            .unwrap_err()
            .code
        };
        assert_eq!(try_set("nosuchattr"), pbse::NOATTR);
        assert_eq!(try_set("total_jobs"), pbse::ATTRRO);
        assert_eq!(try_set("log_events"), pbse::NOSUP);
    }

    #[test]
    fn queue_attributes_validate_values() {
        let mut q = Queue::new("short", 0);
        apply_queue_attr(
            &mut q,
            Command::Set,
            &set("enabled", "True", Op::Set),
            Privilege::Operator,
        )
        .unwrap();
        assert!(q.enabled);
        let bad = apply_queue_attr(
            &mut q,
            Command::Set,
            &set("enabled", "maybe", Op::Set),
            Privilege::Manager,
        );
        assert_eq!(bad.unwrap_err().code, pbse::BADATVAL);
        let route = apply_queue_attr(
            &mut q,
            Command::Set,
            &set("queue_type", "route", Op::Set),
            Privilege::Manager,
        );
        assert_eq!(route.unwrap_err().code, pbse::NOSUP);
        apply_queue_attr(
            &mut q,
            Command::Set,
            &set("queue_type", "e", Op::Set),
            Privilege::Manager,
        )
        .unwrap();
        let acl = apply_queue_attr(
            &mut q,
            Command::Set,
            &set("acl_users", "alice", Op::Set),
            Privilege::Operator,
        );
        assert_eq!(acl.unwrap_err().code, pbse::ATTRRO);
        apply_queue_attr(
            &mut q,
            Command::Set,
            &set("acl_users", "alice,bob@login1", Op::Set),
            Privilege::Manager,
        )
        .unwrap();
        assert_eq!(q.acl_users, ["alice", "bob@login1"]);
        let mut walltime = set("resources_default", "1:00:00", Op::Set);
        walltime.resource = "walltime".into();
        apply_queue_attr(&mut q, Command::Set, &walltime, Privilege::Operator).unwrap();
        assert_eq!(
            q.resources_default,
            [("walltime".to_string(), "01:00:00".to_string())]
        );
        walltime.value = "soon".into();
        assert!(apply_queue_attr(&mut q, Command::Set, &walltime, Privilege::Operator).is_err());
    }

    #[test]
    fn queue_names_follow_torque() {
        assert!(valid_queue_name("batch"));
        assert!(valid_queue_name("gpu-long_2"));
        assert!(!valid_queue_name("-x"));
        assert!(!valid_queue_name("a.b"));
        assert!(!valid_queue_name("averyveryverylongname"));
    }
}
