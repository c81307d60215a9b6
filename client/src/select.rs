//! `qselect`: which jobs match the criteria, as Torque's `qselect` and its server-side
//! `req_selectjobs` decide (Torque's `src/cmds/qselect.c`, `src/server/req_select.c`).
//!
//! The command asks the server for the jobs the caller may see (in one queue with `-q`),
//! with just the attributes the criteria name, and keeps those that match every criterion;
//! this module is that matching, pure, plus the option parsing with Torque's messages.
//!
//! Torque's rules kept here: an operator prefix `.eq.`, `.ne.`, `.ge.`, `.gt.`, `.le.`,
//! `.lt.` on `-a`, `-c`, `-h`, `-p`, `-s` (`.xx.` with any other two letters is skipped
//! and means `.eq.`); `-l name.op.value[,...]` (the operator is required); a job without a
//! resource `-l` names compares as lower than any value; `-h` compares the whole hold
//! set; `-s` matches a state among those listed; `-u` matches `Job_Owner` as Torque's user
//! ACL does (the server's own rule, `capstan_proto::acl`). Durations and sizes are read with
//! the server's grammar (`capstan_proto::resources`).

use capstan_proto::acl::acl_user_match;
use capstan_proto::pbse;
use capstan_proto::resources::{kind_of, parse_duration, parse_size, ResourceKind};

use crate::format::AttrView;
use crate::getopt::{getopt, Item};

/// Torque's option string.
pub const OPTSTRING: &str = "a:A:ec:h:l:N:p:q:r:s:u:";

/// Torque's usage text, byte for byte.
pub const USAGE: &str = "usage: qselect                           [-a [op]date_time] [-A account_string] [-e] [-c [op]interval] \n                          [-h hold_list] [-l resource_list] [-N name] [-p [op]priority] \n                          [-q destination] [-r y|n] [-s states] [-u user_name]\n";

/// A comparison operator (Torque's `batch_op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Ge,
    Gt,
    Le,
    Lt,
}

impl Op {
    fn from_letters(letters: &str) -> Option<Op> {
        Some(match letters {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "ge" => Op::Ge,
            "gt" => Op::Gt,
            "le" => Op::Le,
            "lt" => Op::Lt,
            _ => return None,
        })
    }

    /// Whether a job whose value compares `ordering` to the criterion's is selected
    /// (Torque's `sel_attr`).
    fn accepts(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match ordering {
            Less => matches!(self, Op::Ne | Op::Lt | Op::Le),
            Greater => matches!(self, Op::Ne | Op::Gt | Op::Ge),
            Equal => matches!(self, Op::Eq | Op::Ge | Op::Le),
        }
    }
}

/// One criterion of the selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// `-a`: `Execution_Time` against an epoch time (a job without one counts as 0).
    ExecutionTime(Op, i64),
    /// `-A`: `Account_Name` equal.
    Account(String),
    /// `-c`: `Checkpoint`, in Torque's order `n` > `s` > `c=N` > `c` > `u`.
    Checkpoint(Op, String),
    /// `-h`: `Hold_Types` (the set of holds) against these.
    Holds(Op, String),
    /// `-l`: one resource of `Resource_List`, compared as its kind of value.
    Resource(Op, String, ResourceKind, String),
    /// `-N`: `Job_Name` equal.
    Name(String),
    /// `-p`: `Priority`.
    Priority(Op, i64),
    /// `-r`: `Rerunable`.
    Rerunable(bool),
    /// `-s`: `job_state` among these letters (with `.ne.`: not among them).
    States(Op, String),
    /// `-u`: `Job_Owner` matches one of these (`user` or `user@host`).
    Users(Vec<String>),
}

/// What `qselect` was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub criteria: Vec<Criterion>,
    /// `-q`: the destination (`queue`, `queue@server`, `@server`); the server answers
    /// for that queue only.
    pub destination: Option<String>,
    /// `-e`: only jobs in execution queues.
    pub exec_only: bool,
}

impl Selection {
    /// The queue `-q` names, if it names one (not `@server` alone).
    pub fn queue(&self) -> Option<&str> {
        let dest = self.destination.as_deref()?;
        let queue = dest.split('@').next().unwrap_or("");
        (!queue.is_empty()).then_some(queue)
    }

    /// The attributes the criteria read, for the server to send only those.
    pub fn attributes(&self) -> Vec<String> {
        let mut names: Vec<&str> = self
            .criteria
            .iter()
            .map(|c| match c {
                Criterion::ExecutionTime(..) => "Execution_Time",
                Criterion::Account(_) => "Account_Name",
                Criterion::Checkpoint(..) => "Checkpoint",
                Criterion::Holds(..) => "Hold_Types",
                Criterion::Resource(..) => "Resource_List",
                Criterion::Name(_) => "Job_Name",
                Criterion::Priority(..) => "Priority",
                Criterion::Rerunable(_) => "Rerunable",
                Criterion::States(..) => "job_state",
                Criterion::Users(_) => "Job_Owner",
            })
            .collect();
        if self.exec_only {
            names.push("queue_type");
        }
        // At least one, or the server would send every attribute.
        names.push("job_state");
        names.sort_unstable();
        names.dedup();
        names.into_iter().map(String::from).collect()
    }

    /// Whether `job` matches every criterion.
    pub fn matches(&self, job: &impl AttrView) -> bool {
        if self.exec_only && job.get("queue_type").is_some_and(|t| !t.starts_with('E')) {
            return false;
        }
        self.criteria.iter().all(|c| criterion_matches(c, job))
    }
}

fn criterion_matches(c: &Criterion, job: &impl AttrView) -> bool {
    use std::cmp::Ordering;
    match c {
        Criterion::ExecutionTime(op, t) => {
            let at: i64 = job
                .get("Execution_Time")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            op.accepts(at.cmp(t))
        }
        Criterion::Account(a) => job.get("Account_Name") == Some(a.as_str()),
        Criterion::Checkpoint(op, c) => {
            let order = |v: &str| match v.as_bytes().first() {
                Some(b'n') => 5,
                Some(b's') => 4,
                Some(b'c') if v.len() > 1 => 3,
                Some(b'c') => 2,
                Some(b'u') => 1,
                _ => 0,
            };
            op.accepts(order(job.get("Checkpoint").unwrap_or("")).cmp(&order(c)))
        }
        Criterion::Holds(op, holds) => {
            let set = |v: &str| {
                let mut letters: Vec<char> = v.chars().filter(|c| *c != 'n').collect();
                letters.sort_unstable();
                letters.dedup();
                letters
            };
            let equal = set(job.get("Hold_Types").unwrap_or("n")) == set(holds);
            // Torque's comp_hold says only "equal" or "not".
            op.accepts(if equal {
                Ordering::Equal
            } else {
                Ordering::Greater
            })
        }
        Criterion::Resource(op, name, kind, value) => {
            let ordering = match job.get_res("Resource_List", name) {
                Some(have) => compare_resource(*kind, have, value),
                None => Ordering::Less,
            };
            op.accepts(ordering)
        }
        Criterion::Name(n) => job.get("Job_Name") == Some(n.as_str()),
        Criterion::Priority(op, p) => {
            let have: i64 = job
                .get("Priority")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            op.accepts(have.cmp(p))
        }
        Criterion::Rerunable(r) => {
            let have = job
                .get("Rerunable")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            have == *r
        }
        Criterion::States(op, states) => {
            // A suspended job (`S`) is running, as Torque's server selects it.
            let state = match job.get("job_state").unwrap_or("") {
                "S" => "R",
                state => state,
            };
            let among = !state.is_empty() && states.contains(state);
            op.accepts(if among {
                Ordering::Equal
            } else {
                Ordering::Greater
            })
        }
        Criterion::Users(users) => {
            let owner = job.get("Job_Owner").unwrap_or("");
            acl_user_match(users, owner)
        }
    }
}

/// Compares a job's resource value with a criterion's as the resource's kind says: a
/// duration by seconds, a size by bytes, a count as a number, anything else as text.
fn compare_resource(kind: ResourceKind, have: &str, want: &str) -> std::cmp::Ordering {
    let typed = match kind {
        ResourceKind::Duration => parse_duration(have)
            .zip(parse_duration(want))
            .map(|(a, b)| a.cmp(&b)),
        ResourceKind::Size => size_bytes(have)
            .zip(size_bytes(want))
            .map(|(a, b)| a.cmp(&b)),
        ResourceKind::Count | ResourceKind::Signed => have
            .parse::<i64>()
            .ok()
            .zip(want.parse::<i64>().ok())
            .map(|(a, b)| a.cmp(&b)),
        _ => None,
    };
    typed.unwrap_or_else(|| have.cmp(want))
}

/// Whether `value` is one a resource of `kind` takes (Torque's server decodes it so, and
/// answers PBSE_BADATVAL when it cannot).
fn valid_value(kind: ResourceKind, value: &str) -> bool {
    match kind {
        ResourceKind::Duration => parse_duration(value).is_some(),
        ResourceKind::Size => size_bytes(value).is_some(),
        ResourceKind::Count => value.parse::<u64>().is_ok(),
        ResourceKind::Signed => value.parse::<i64>().is_ok(),
        _ => true,
    }
}

/// A size in bytes, in Torque's grammar (the server's).
fn size_bytes(v: &str) -> Option<u128> {
    parse_size(v)?.bytes()
}

/// Why qselect does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The command line: Torque's lines for stderr, then the usage (exit 2).
    Usage(Vec<String>),
    /// What Torque's server refuses in a selection (an unknown resource, a bad value, an
    /// order on the holds): that PBSE number, printed in its words, and its exit.
    Server(i32),
}

impl Refusal {
    /// Torque's `qselect: TEXT` line for a server refusal.
    pub fn server_message(code: i32) -> String {
        format!("qselect: {}", pbse::text(code))
    }
}

/// Torque's `check_op`: an optional `.xx.` prefix; the rest is the value.
fn split_op(arg: &str) -> (Op, &str) {
    match arg.strip_prefix('.') {
        Some(rest) => {
            let op = rest.get(..2).and_then(Op::from_letters).unwrap_or(Op::Eq);
            (op, arg.get(4..).unwrap_or(""))
        }
        None => (Op::Eq, arg),
    }
}

/// Parses `qselect`'s command line; `now` dates `-a` (Torque's `cvtdate`).
pub fn parse<S: AsRef<str>>(
    args: &[S],
    now: &chrono::DateTime<chrono::Local>,
) -> Result<Selection, Refusal> {
    let parsed = getopt(args, OPTSTRING);
    let mut sel = Selection {
        // Torque's qselect reads it too.
        exec_only: std::env::var_os("PBS_QSTAT_EXECONLY").is_some(),
        ..Selection::default()
    };
    let mut errors = Vec::new();
    // The first thing Torque's server would refuse, once the command line is good.
    let mut refused: Option<i32> = None;
    for item in parsed.items {
        let (letter, value) = match item {
            Item::Opt(letter, value) => (letter, value.unwrap_or_default()),
            Item::Error(message) => {
                errors.push(said(&message));
                continue;
            }
        };
        match letter {
            'a' => {
                let (op, text) = split_op(&value);
                match crate::qsub::exectime::parse_exec_time(text, now) {
                    Some(t) => sel.criteria.push(Criterion::ExecutionTime(op, t)),
                    None => errors.push(said("illegal -a value")),
                }
            }
            'A' => sel.criteria.push(Criterion::Account(value)),
            'e' => sel.exec_only = true,
            'c' => {
                let (op, text) = split_op(&value);
                let text = text.trim_start();
                let ok = match text {
                    "u" => matches!(op, Op::Eq | Op::Ne),
                    "n" | "s" | "c" => true,
                    _ => text
                        .strip_prefix("c=")
                        .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit())),
                };
                if ok {
                    sel.criteria
                        .push(Criterion::Checkpoint(op, text.to_string()));
                } else {
                    errors.push(said("illegal -c value"));
                }
            }
            'h' => {
                let (op, text) = split_op(&value);
                let text = text.trim_start();
                if crate::qsub::options::valid_hold_list(text) {
                    // Hold_Types may only be selected equal or not (Torque's ATR_DFLAG_SELEQ).
                    if !matches!(op, Op::Eq | Op::Ne) {
                        refused.get_or_insert(pbse::IVALREQ);
                    }
                    sel.criteria.push(Criterion::Holds(op, text.to_string()));
                } else {
                    errors.push(said("illegal -h value"));
                }
            }
            'l' => match parse_resources(&value) {
                Some(list) => {
                    for (op, name, want) in list {
                        match kind_of(&name) {
                            None => {
                                refused.get_or_insert(pbse::UNKRESC);
                            }
                            Some(kind) => {
                                if !valid_value(kind, &want) {
                                    refused.get_or_insert(pbse::BADATVAL);
                                }
                                sel.criteria.push(Criterion::Resource(op, name, kind, want));
                            }
                        }
                    }
                }
                None => {
                    errors.push(said("illegal -l value"));
                    errors.push(format!("resource_list: {value}"));
                }
            },
            'N' => sel.criteria.push(Criterion::Name(value)),
            'p' => {
                let (op, text) = split_op(&value);
                match text.trim().parse::<i64>() {
                    Ok(p) => sel.criteria.push(Criterion::Priority(op, p)),
                    // The server decodes it (Torque's client only splits the operator off).
                    Err(_) => {
                        refused.get_or_insert(pbse::BADATVAL);
                    }
                }
            }
            'q' => sel.destination = Some(value),
            'r' => match value.trim_start() {
                // Torque's message says qsub here.
                "y" => sel.criteria.push(Criterion::Rerunable(true)),
                "n" => sel.criteria.push(Criterion::Rerunable(false)),
                _ => errors.push("qsub: illegal -r value".into()),
            },
            's' => {
                let (op, text) = split_op(&value);
                let text = text.trim_start();
                if !value.is_empty() && text.chars().all(|c| "CEHQRTW".contains(c)) {
                    sel.criteria.push(Criterion::States(op, text.to_string()));
                } else {
                    errors.push(said("illegal -s value"));
                }
            }
            'u' => {
                let users: Vec<String> = value.split(',').map(|u| u.trim().to_string()).collect();
                if users.iter().any(|u| u.is_empty() || u.starts_with('@')) {
                    errors.push(said("illegal -u value"));
                } else {
                    sel.criteria.push(Criterion::Users(users));
                }
            }
            _ => errors.push(said(&format!("invalid option -- '{letter}'"))),
        }
    }
    if !parsed.operands.is_empty() && errors.is_empty() {
        // Torque takes no operands: the usage alone.
        return Err(Refusal::Usage(Vec::new()));
    }
    if !errors.is_empty() {
        return Err(Refusal::Usage(errors));
    }
    match refused {
        Some(code) => Err(Refusal::Server(code)),
        None => Ok(sel),
    }
}

/// One of qselect's diagnostics.
fn said(message: &str) -> String {
    format!("qselect: {message}")
}

/// `-l name.op.value[,name.op.value...]` (Torque's `check_res_op`: the operator is
/// required, and every value non-empty).
fn parse_resources(list: &str) -> Option<Vec<(Op, String, String)>> {
    if list.ends_with(',') {
        return None;
    }
    list.split(',')
        .map(|item| {
            let (name, rest) = item.split_once('.')?;
            let op = Op::from_letters(rest.get(..2)?)?;
            let value = rest.get(2..)?.strip_prefix('.')?;
            (!name.is_empty() && !value.is_empty())
                .then(|| (op, name.to_string(), value.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Attribute, Object};

    fn job(attrs: &[(&str, &str, &str)]) -> Object {
        Object {
            name: "1.vm".into(),
            attrs: attrs
                .iter()
                .map(|(n, r, v)| Attribute::res(n, r, v))
                .collect(),
        }
    }

    fn select(args: &[&str]) -> Selection {
        parse(args, &chrono::Local::now()).expect("parses")
    }

    fn refusal(args: &[&str]) -> Refusal {
        parse(args, &chrono::Local::now()).expect_err("refused")
    }

    #[test]
    fn states_users_names_and_queues() {
        let queued = job(&[
            ("job_state", "", "Q"),
            ("Job_Owner", "", "alice@login1.lab.org"),
            ("Job_Name", "", "sim"),
        ]);
        assert!(select(&["-s", "QH"]).matches(&queued));
        assert!(!select(&["-s", "R"]).matches(&queued));
        assert!(select(&["-s", ".ne.R"]).matches(&queued));
        let suspended = job(&[("job_state", "", "S")]);
        assert!(
            select(&["-s", "R"]).matches(&suspended),
            "running, suspended"
        );
        assert!(!select(&["-s", ".ne.R"]).matches(&suspended));
        assert!(select(&["-u", "bob,alice"]).matches(&queued));
        assert!(select(&["-u", "alice@*.lab.org"]).matches(&queued));
        assert!(!select(&["-u", "alice@*.lab.örg"]).matches(&queued));
        let accented = job(&[("Job_Owner", "", "alice@café.lab.org")]);
        assert!(select(&["-u", "alice@*.lab.org"]).matches(&accented));
        assert!(!select(&["-u", "alice@caf"]).matches(&accented));
        assert!(!select(&["-u", "alice@other"]).matches(&queued));
        assert!(select(&["-N", "sim", "-s", "Q"]).matches(&queued));
        assert!(!select(&["-N", "sim2"]).matches(&queued));
        let s = select(&["-q", "batch@vm"]);
        assert_eq!(s.queue(), Some("batch"));
        assert_eq!(select(&["-q", "@vm"]).queue(), None);
    }

    #[test]
    fn priorities_holds_and_resources_compare_as_torque() {
        let j = job(&[
            ("Priority", "", "5"),
            ("Hold_Types", "", "uo"),
            ("Resource_List", "walltime", "01:00:00"),
            ("Resource_List", "mem", "2gb"),
            ("Resource_List", "nodes", "2:ppn=2"),
            ("Rerunable", "", "True"),
        ]);
        assert!(select(&["-p", ".gt.4"]).matches(&j));
        assert!(!select(&["-p", ".gt.5"]).matches(&j));
        assert!(select(&["-p", "5"]).matches(&j));
        assert!(select(&["-h", "ou"]).matches(&j));
        assert!(!select(&["-h", "u"]).matches(&j));
        assert!(select(&["-h", ".ne.n"]).matches(&j));
        assert!(select(&["-h", "n"]).matches(&job(&[("Hold_Types", "", "n")])));
        assert!(select(&["-l", "walltime.gt.30:00"]).matches(&j));
        assert!(select(&["-l", "walltime.eq.3600"]).matches(&j));
        assert!(select(&["-l", "mem.ge.2048mb,walltime.le.01:00:00"]).matches(&j));
        assert!(!select(&["-l", "mem.lt.1gb"]).matches(&j));
        assert!(select(&["-l", "nodes.eq.2:ppn=2"]).matches(&j));
        // A job without the resource is lower than any value.
        assert!(select(&["-l", "cput.lt.10"]).matches(&j));
        assert!(!select(&["-l", "cput.ge.10"]).matches(&j));
        assert!(select(&["-r", "y"]).matches(&j));
        assert!(!select(&["-r", "n"]).matches(&j));
    }

    #[test]
    fn bad_values_get_torques_messages() {
        let bad = |args: &[&str]| match refusal(args) {
            Refusal::Usage(lines) => lines,
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(&["-s", "QX"]), ["qselect: illegal -s value"]);
        assert_eq!(bad(&["-h", "un"]), ["qselect: illegal -h value"]);
        assert_eq!(bad(&["-r", "maybe"]), ["qsub: illegal -r value"]);
        assert_eq!(
            bad(&["-l", "walltime=10"]),
            ["qselect: illegal -l value", "resource_list: walltime=10"]
        );
        assert_eq!(
            bad(&["-l", "walltime.xx.10"])[0],
            "qselect: illegal -l value"
        );
        assert_eq!(bad(&["-c", "z"]), ["qselect: illegal -c value"]);
        assert_eq!(bad(&["-a", "tomorrow"]), ["qselect: illegal -a value"]);
        assert_eq!(bad(&["-Z"]), ["qselect: invalid option -- 'Z'"]);
        assert!(bad(&["12.vm"]).is_empty(), "operands: usage only");
        // What Torque's server refuses.
        assert_eq!(
            refusal(&["-l", "nosuch.lt.1"]),
            Refusal::Server(pbse::UNKRESC)
        );
        assert_eq!(
            refusal(&["-l", "walltime.gt.abc"]),
            Refusal::Server(pbse::BADATVAL)
        );
        assert_eq!(refusal(&["-p", "abc"]), Refusal::Server(pbse::BADATVAL));
        assert_eq!(refusal(&["-h", ".gt.u"]), Refusal::Server(pbse::IVALREQ));
        // A bad command line is said first.
        assert!(matches!(
            refusal(&["-p", "abc", "-s", "X"]),
            Refusal::Usage(_)
        ));
        assert_eq!(
            Refusal::server_message(pbse::UNKRESC),
            "qselect: Unknown resource type "
        );
    }

    #[test]
    fn only_what_the_criteria_read_is_asked_for() {
        let s = select(&["-u", "bob", "-l", "mem.gt.1gb"]);
        assert_eq!(s.attributes(), ["Job_Owner", "Resource_List", "job_state"]);
        assert_eq!(select(&[]).attributes(), ["job_state"]);
    }
}
