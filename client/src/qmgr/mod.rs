//! `qmgr`: Torque's administration language, parsed and rendered without a server.
//!
//! A directive is `VERB OBJECT [NAME[,NAME...]] [ATTR OP VALUE[, ATTR OP VALUE ...]]`:
//! verbs `create`, `delete`, `set`, `unset`, `list`, `print` (any unique prefix, as Torque
//! accepts `s` for `set`... except that `s` is `set` and `se` too), objects `server`, `queue`,
//! `node` (or `s`, `q`, `n`). The server does the changes (`Manage` RPC); listing uses the
//! same Stat calls as `qstat -Qf` / `-Bf` / `pbsnodes`, rendered here in qmgr's own layouts
//! (`list`: tab-indented blocks; `print`: re-playable `create`/`set` commands).

use chrono::TimeZone;

use crate::format::{ctime, Kind, Object};

/// What a directive does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Delete,
    Set,
    Unset,
    List,
    Print,
}

/// What it does it to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Server,
    Queue,
    Node,
}

/// `=`, `+=`, `-=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrOp {
    Set,
    Incr,
    Decr,
}

/// One `name[.resource] OP value` (for `unset`: just the name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrChange {
    pub name: String,
    pub resource: String,
    pub op: AttrOp,
    pub value: String,
}

/// A parsed directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub verb: Verb,
    pub object: ObjectKind,
    /// Queue or node names; empty = all (for list/print) or the server.
    pub names: Vec<String>,
    pub attrs: Vec<AttrChange>,
}

/// A line qmgr will not send, with Torque's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `qmgr: Illegal operation: WORD` + `Try 'help' if you are having trouble.`
    IllegalOperation(String),
    /// `qmgr: Illegal object type: WORD`
    IllegalObject(String),
    /// `qmgr: Syntax error - cannot locate attribute` + the line + a caret at `column`.
    UnknownAttribute { line: String, column: usize },
    /// `qmgr: Syntax error` + the line + a caret at `column`.
    Syntax { line: String, column: usize },
}

impl ParseError {
    /// The text qmgr prints on stderr.
    pub fn message(&self) -> String {
        let caret = |line: &str, column: usize| format!("{line}\n{}^\n", " ".repeat(column));
        match self {
            ParseError::IllegalOperation(w) => {
                format!("qmgr: Illegal operation: {w}\nTry 'help' if you are having trouble.\n")
            }
            ParseError::IllegalObject(w) => format!("qmgr: Illegal object type: {w}\n"),
            ParseError::UnknownAttribute { line, column } => format!(
                "qmgr: Syntax error - cannot locate attribute\n{}",
                caret(line, *column)
            ),
            ParseError::Syntax { line, column } => {
                format!("qmgr: Syntax error\n{}", caret(line, *column))
            }
        }
    }
}

/// Server attribute names Torque knows (qmgr refuses others before asking the server).
pub const SERVER_ATTRS: &[&str] = &[
    "acl_host_enable",
    "acl_hosts",
    "default_queue",
    "down_on_error",
    "job_stat_rate",
    "keep_completed",
    "log_events",
    "mail_body_fmt",
    "mail_domain",
    "mail_from",
    "mail_subject_fmt",
    "managers",
    "moab_array_compatible",
    "mom_job_sync",
    "net_counter",
    "next_job_number",
    "no_mail_force",
    "node_check_rate",
    "note_append_on_error",
    "nppcu",
    "operators",
    "pbs_version",
    "poll_jobs",
    "query_other_jobs",
    "resources_assigned",
    "scheduling",
    "server_state",
    "state_count",
    "submit_hosts",
    "tcp_timeout",
    "timeout_for_job_delete",
    "timeout_for_job_requeue",
    "total_jobs",
];

/// Queue attribute names Torque knows.
pub const QUEUE_ATTRS: &[&str] = &[
    "acl_group_enable",
    "acl_groups",
    "acl_host_enable",
    "acl_hosts",
    "acl_logic_or",
    "acl_user_enable",
    "acl_users",
    "disallowed_types",
    "enabled",
    "from_route_only",
    "keep_completed",
    "kill_delay",
    "max_queuable",
    "max_running",
    "max_user_queuable",
    "max_user_run",
    "mtime",
    "priority",
    "queue_type",
    "resources_assigned",
    "resources_default",
    "resources_max",
    "resources_min",
    "route_destinations",
    "started",
    "state_count",
    "total_jobs",
];

/// Node attribute names Torque knows, and Capstan's nodes-file keys qmgr may set too.
pub const NODE_ATTRS: &[&str] = &[
    "state",
    "np",
    "properties",
    "ntype",
    "note",
    "gpus",
    "site",
    "speed",
    "dedicated",
];

fn verb_of(word: &str) -> Option<Verb> {
    let w = word.to_ascii_lowercase();
    // Torque matches abbreviations; `s` is `set`, `d` is `delete`, `p` is `print`.
    let table = [
        ("create", Verb::Create),
        ("delete", Verb::Delete),
        ("set", Verb::Set),
        ("unset", Verb::Unset),
        ("list", Verb::List),
        ("print", Verb::Print),
    ];
    table
        .iter()
        .find(|(name, _)| !w.is_empty() && name.starts_with(&w))
        .map(|(_, v)| *v)
}

fn object_of(word: &str) -> Option<ObjectKind> {
    let w = word.to_ascii_lowercase();
    let table = [
        ("server", ObjectKind::Server),
        ("queue", ObjectKind::Queue),
        ("node", ObjectKind::Node),
    ];
    table
        .iter()
        .find(|(name, _)| !w.is_empty() && name.starts_with(&w))
        .map(|(_, o)| *o)
}

/// Splits off the next whitespace-delimited word, returning it with its start column.
fn next_word(line: &str, from: usize) -> Option<(usize, &str)> {
    let rest = &line[from..];
    let start = from + (rest.len() - rest.trim_start().len());
    let rest = &line[start..];
    if rest.is_empty() {
        return None;
    }
    let end = start + rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some((start, &line[start..end]))
}

/// Whether `text` starts an attribute (`name OP`), used to tell a list's comma from the comma
/// between attributes: `managers = a@x,b@y, operators += c@z`.
fn starts_attribute(text: &str) -> bool {
    let t = text.trim_start();
    let name_len = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(t.len());
    if name_len == 0 {
        return false;
    }
    let after = t[name_len..].trim_start();
    after.starts_with('=') || after.starts_with("+=") || after.starts_with("-=")
}

/// Parses one directive. `None` for a blank line or a comment.
pub fn parse(line: &str) -> Result<Option<Directive>, ParseError> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let line = trimmed;
    let (_, verb_word) = next_word(line, 0).ok_or(ParseError::Syntax {
        line: line.to_string(),
        column: 0,
    })?;
    let verb = verb_of(verb_word).ok_or_else(|| ParseError::IllegalOperation(verb_word.into()))?;
    let after_verb = verb_word.len();
    let Some((obj_col, obj_word)) = next_word(line, after_verb) else {
        return Err(ParseError::Syntax {
            line: line.to_string(),
            column: line.len(),
        });
    };
    let object = object_of(obj_word).ok_or_else(|| ParseError::IllegalObject(obj_word.into()))?;
    let mut pos = obj_col + obj_word.len();
    let mut names = Vec::new();
    // The name list: the next word, unless it already is an attribute (`set server a = b`).
    if let Some((col, word)) = next_word(line, pos) {
        // For the server the optional word names the server (`set server vm a = b`), unless
        // it is an attribute name with its operator missing.
        let server_attr = object == ObjectKind::Server
            && SERVER_ATTRS.contains(&word.split('.').next().unwrap_or(word));
        if !starts_attribute(&line[col..]) && !server_attr {
            if object != ObjectKind::Server {
                names = word
                    .split(',')
                    .filter(|n| !n.is_empty() && *n != "@default")
                    .map(|n| capstan_proto::text::before_at(n).to_string())
                    .collect();
            }
            pos = col + word.len();
        }
    }
    let attrs = parse_attrs(line, pos, verb, object)?;
    match verb {
        Verb::Set | Verb::Unset if attrs.is_empty() => Err(ParseError::Syntax {
            line: line.to_string(),
            column: line.len(),
        }),
        Verb::Create | Verb::Delete | Verb::Set | Verb::Unset
            if object != ObjectKind::Server && names.is_empty() =>
        {
            Err(ParseError::Syntax {
                line: line.to_string(),
                column: line.len(),
            })
        }
        _ => Ok(Some(Directive {
            verb,
            object,
            names,
            attrs,
        })),
    }
}

fn parse_attrs(
    line: &str,
    start: usize,
    verb: Verb,
    object: ObjectKind,
) -> Result<Vec<AttrChange>, ParseError> {
    let known: &[&str] = match object {
        ObjectKind::Server => SERVER_ATTRS,
        ObjectKind::Queue => QUEUE_ATTRS,
        ObjectKind::Node => NODE_ATTRS,
    };
    let mut attrs = Vec::new();
    let mut pos = start;
    loop {
        let rest = &line[pos..];
        let skipped = rest.len() - rest.trim_start().len();
        pos += skipped;
        if pos >= line.len() {
            break;
        }
        let rest = &line[pos..];
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if name_len == 0 {
            return Err(ParseError::Syntax {
                line: line.to_string(),
                column: pos,
            });
        }
        let full = &rest[..name_len];
        let (name, resource) = full.split_once('.').unwrap_or((full, ""));
        if !known.contains(&name) {
            return Err(ParseError::UnknownAttribute {
                line: line.to_string(),
                column: pos,
            });
        }
        pos += name_len;
        let after = line[pos..].trim_start();
        pos = line.len() - after.len();
        if verb == Verb::Unset {
            attrs.push(AttrChange {
                name: name.into(),
                resource: resource.into(),
                op: AttrOp::Set,
                value: String::new(),
            });
            if let Some(rest) = after.strip_prefix(',') {
                pos = line.len() - rest.len();
                continue;
            }
            if !after.is_empty() {
                return Err(ParseError::Syntax {
                    line: line.to_string(),
                    column: pos,
                });
            }
            break;
        }
        let (op, op_len) = if after.starts_with("+=") {
            (AttrOp::Incr, 2)
        } else if after.starts_with("-=") {
            (AttrOp::Decr, 2)
        } else if after.starts_with('=') {
            (AttrOp::Set, 1)
        } else {
            return Err(ParseError::Syntax {
                line: line.to_string(),
                column: pos,
            });
        };
        pos += op_len;
        // The value runs to a comma that starts another attribute, or to the end.
        let value_start = pos;
        let bytes = line.as_bytes();
        let mut in_quotes = false;
        let mut end = line.len();
        let mut next = None;
        let mut i = value_start;
        while i < line.len() {
            match bytes[i] {
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes && starts_attribute(&line[i + 1..]) => {
                    end = i;
                    next = Some(i + 1);
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let value = line[value_start..end].trim().replace('"', "");
        attrs.push(AttrChange {
            name: name.into(),
            resource: resource.into(),
            op,
            value,
        });
        match next {
            Some(n) => pos = n,
            None => break,
        }
    }
    Ok(attrs)
}

/// Attributes `print` leaves out: the server computes them.
const COMPUTED: &[&str] = &[
    "server_state",
    "total_jobs",
    "state_count",
    "pbs_version",
    "net_counter",
    "resources_assigned",
    "mtime",
    "status",
    "jobs",
    "power_state",
    "mom_service_port",
    "mom_manager_port",
    "learned_speed",
];

/// Node attributes that come from `server_priv/nodes` and cannot be set with qmgr.
const NODES_FILE_ONLY: &[&str] = &["acl_users", "acl_groups", "window"];

/// Attributes whose value is a comma-separated list printed one entry per `set`/`+=` line.
const LISTS: &[&str] = &[
    "properties",
    "managers",
    "operators",
    "submit_hosts",
    "acl_users",
    "acl_groups",
    "acl_hosts",
    "state",
];

fn full_name(a: &crate::format::Attribute) -> String {
    if a.resource.is_empty() {
        a.name.to_string()
    } else {
        format!("{}.{}", a.name, a.resource)
    }
}

/// `list server|queue|node`: `Server vm` / `Queue batch` / `Node n1`, tab-indented
/// attributes, a blank line after each object. Times print as dates; a node's `status`
/// wraps at commas with 17-space continuation lines.
pub fn list<Tz: TimeZone>(kind: ObjectKind, objects: &[Object], tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let title = match kind {
        ObjectKind::Server => "Server",
        ObjectKind::Queue => "Queue",
        ObjectKind::Node => "Node",
    };
    let mut out = String::new();
    for o in objects {
        out.push_str(&format!("{title} {}\n", o.name));
        for a in &o.attrs {
            let value = match a.kind {
                Kind::Time => a
                    .value
                    .parse()
                    .ok()
                    .and_then(|t| ctime(t, tz))
                    .unwrap_or_else(|| a.value.clone()),
                Kind::Text => a.value.clone(),
            };
            let head = format!("\t{} = ", full_name(a));
            if &*a.name == "status" {
                out.push_str(&wrap_status(&head, &value));
            } else {
                out.push_str(&format!("{head}{value}\n"));
            }
        }
        out.push('\n');
    }
    out
}

/// Packs comma-separated items into lines of at most 80 columns (a tab counts 8), each line
/// ending at a comma, continuation lines indented 17 spaces: qmgr's `status` layout.
fn wrap_status(head: &str, value: &str) -> String {
    const WIDTH: usize = 80;
    const INDENT: usize = 17;
    let head_width = head.len() - 1 + 8;
    let items: Vec<&str> = value.split(',').collect();
    let mut out = head.to_string();
    let mut col = head_width;
    let mut first_on_line = true;
    for (i, item) in items.iter().enumerate() {
        let piece = if i + 1 < items.len() {
            format!("{item},")
        } else {
            item.to_string()
        };
        if !first_on_line && col + piece.len() > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(INDENT));
            col = INDENT;
        }
        out.push_str(&piece);
        col += piece.len();
        first_on_line = false;
    }
    out.push('\n');
    out
}

fn set_lines(prefix: &str, o: &Object, skip: &[&str]) -> String {
    let mut out = String::new();
    for a in &o.attrs {
        if COMPUTED.contains(&&*a.name) || skip.contains(&&*a.name) {
            continue;
        }
        let name = full_name(a);
        if LISTS.contains(&&*a.name) && a.value.contains(',') {
            for (i, entry) in a.value.split(',').enumerate() {
                let op = if i == 0 { "=" } else { "+=" };
                out.push_str(&format!("{prefix} {name} {op} {entry}\n"));
            }
        } else if a.value.contains(char::is_whitespace) {
            // Quoted, so the line reads back as one value (`mail_subject_fmt`, a note).
            out.push_str(&format!("{prefix} {name} = \"{}\"\n", a.value));
        } else {
            out.push_str(&format!("{prefix} {name} = {}\n", a.value));
        }
    }
    out
}

/// `print queue NAME`: the commands that recreate one queue.
pub fn print_queue(queue: &Object) -> String {
    format!(
        "#\n# Create and define queue {name}\n#\ncreate queue {name}\n{}",
        set_lines(&format!("set queue {}", queue.name), queue, &[]),
        name = queue.name
    )
}

/// `print server`: every queue's commands, then the server's.
pub fn print_server(server: &Object, queues: &[Object]) -> String {
    let mut out = String::from("#\n# Create queues and set their attributes.\n#\n");
    for q in queues {
        out.push_str(&print_queue(q));
    }
    out.push_str("#\n# Set server attributes.\n#\n");
    out.push_str(&set_lines("set server", server, &[]));
    out
}

/// `print node [NAME...]`: one header for the whole listing (Torque's `display`), then each
/// node's block.
pub fn print_nodes(nodes: &[Object]) -> String {
    let mut out = String::from("#\n# Create nodes and set their properties.\n#\n");
    for node in nodes {
        out.push_str(&format!(
            "#\n# Create and define node {name}\n#\ncreate node {name}\n{}",
            set_lines(&format!("set node {}", node.name), node, NODES_FILE_ONLY),
            name = node.name
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Attribute;

    fn change(name: &str, resource: &str, op: AttrOp, value: &str) -> AttrChange {
        AttrChange {
            name: name.into(),
            resource: resource.into(),
            op,
            value: value.into(),
        }
    }

    #[test]
    fn parses_set_with_lists_and_several_attributes() {
        let d = parse("set server managers = root@vm,alice@vm, query_other_jobs = true")
            .unwrap()
            .unwrap();
        assert_eq!(d.verb, Verb::Set);
        assert_eq!(d.object, ObjectKind::Server);
        assert!(d.names.is_empty());
        assert_eq!(
            d.attrs,
            vec![
                change("managers", "", AttrOp::Set, "root@vm,alice@vm"),
                change("query_other_jobs", "", AttrOp::Set, "true"),
            ]
        );
        let d = parse("s q batch resources_default.walltime=1:00:00")
            .unwrap()
            .unwrap();
        assert_eq!(d.names, vec!["batch"]);
        assert_eq!(
            d.attrs,
            vec![change(
                "resources_default",
                "walltime",
                AttrOp::Set,
                "1:00:00"
            )]
        );
        let d = parse("set queue lab acl_users += \"bob,carol\"")
            .unwrap()
            .unwrap();
        assert_eq!(
            d.attrs,
            vec![change("acl_users", "", AttrOp::Incr, "bob,carol")]
        );
        let d = parse("unset queue lab acl_users, acl_user_enable")
            .unwrap()
            .unwrap();
        assert_eq!(d.verb, Verb::Unset);
        assert_eq!(d.attrs.len(), 2);
        let d = parse("list queue").unwrap().unwrap();
        assert!(d.names.is_empty());
        assert_eq!(parse("  # comment").unwrap(), None);
    }

    #[test]
    fn bad_lines_get_torques_messages() {
        assert_eq!(
            parse("frobnicate server").unwrap_err().message(),
            "qmgr: Illegal operation: frobnicate\nTry 'help' if you are having trouble.\n"
        );
        assert_eq!(
            parse("set server nosuchattr = 1").unwrap_err().message(),
            "qmgr: Syntax error - cannot locate attribute\nset server nosuchattr = 1\n           ^\n"
        );
        assert!(matches!(
            parse("set server scheduling true"),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse("create queue"),
            Err(ParseError::Syntax { .. })
        ));
        assert!(matches!(
            parse("list frob"),
            Err(ParseError::IllegalObject(_))
        ));
    }

    #[test]
    fn list_and_print_layouts() {
        let q = Object::new(
            "batch",
            vec![
                Attribute::text("queue_type", "Execution"),
                Attribute::text("total_jobs", "0"),
                Attribute::res("resources_default", "walltime", "01:00:00"),
                Attribute::time("mtime", 0),
                Attribute::text("acl_users", "alice,bob"),
                Attribute::text("enabled", "True"),
            ],
        );
        let listed = list(ObjectKind::Queue, std::slice::from_ref(&q), &chrono::Utc);
        assert_eq!(
            listed,
            "Queue batch\n\tqueue_type = Execution\n\ttotal_jobs = 0\n\tresources_default.walltime = 01:00:00\n\tmtime = Thu Jan  1 00:00:00 1970\n\tacl_users = alice,bob\n\tenabled = True\n\n"
        );
        let s = Object::new(
            "vm",
            vec![
                Attribute::text("server_state", "Active"),
                Attribute::text("scheduling", "True"),
                Attribute::text("managers", "root@vm,alice@vm"),
                Attribute::text("default_queue", "batch"),
            ],
        );
        assert_eq!(
            print_server(&s, &[q]),
            "#\n# Create queues and set their attributes.\n#\n#\n# Create and define queue batch\n#\ncreate queue batch\nset queue batch queue_type = Execution\nset queue batch resources_default.walltime = 01:00:00\nset queue batch acl_users = alice\nset queue batch acl_users += bob\nset queue batch enabled = True\n#\n# Set server attributes.\n#\nset server scheduling = True\nset server managers = root@vm\nset server managers += alice@vm\nset server default_queue = batch\n"
        );
    }

    #[test]
    fn print_node_heads_the_listing_once() {
        let node = |name: &str| Object::new(name, vec![Attribute::text("np", "2")]);
        assert_eq!(
            print_nodes(&[node("a1"), node("b1")]),
            "#\n# Create nodes and set their properties.\n#\n\
             #\n# Create and define node a1\n#\ncreate node a1\nset node a1 np = 2\n\
             #\n# Create and define node b1\n#\ncreate node b1\nset node b1 np = 2\n"
        );
    }

    #[test]
    fn status_wraps_at_commas() {
        let text = wrap_status(
            "\tstatus = ",
            "opsys=linux,uname=Linux vm 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64,sessions=2274,nsessions=1",
        );
        assert_eq!(
            text,
            "\tstatus = opsys=linux,\n                 uname=Linux vm 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64,\n                 sessions=2274,nsessions=1\n"
        );
    }
}
