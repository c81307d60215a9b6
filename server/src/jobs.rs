//! The job lifecycle: submit validation, delete, hold, release, signal (suspend and resume
//! too), rerun, move (qmove), message (qmsg), dependencies, run completion, node loss, what
//! qterm does to running jobs, and the `keep_completed` purge.
//!
//! Why one module: these are the rules of Torque's job state machine, and they share one
//! pattern: compute the changed jobs on clones (an "overlay"), let dependency consequences
//! cascade through the overlay, commit the overlay in ONE transaction, and only then apply it
//! to memory and talk to MOMs. A failed commit leaves memory untouched and answers
//! PBSE_SYSTEM, so nothing is acknowledged that is not durable.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tracing::{info, warn};

use crate::authz::Privilege;
use crate::model::{
    parse_bool, ArrayPart, Attr, DepKind, Dependency, HoldTypes, Interactive, Job, JobState,
    PbsError, PendingAction, ResourcesUsed, ToMom,
};
use crate::resources::{self, ResourceError};
use crate::scheduler;
use crate::state::{Core, State};
use crate::store::StoreTx;
use capstan_proto::{job_exec, pbse};

/// Who is asking, from the socket's peer credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub user: String,
    pub group: String,
    /// The host the identity was established on (`Job_Owner = user@host`). Callers on the
    /// Unix socket are on the server's own host.
    pub host: String,
}

impl Caller {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// `user@host`, as ACLs and `managers`/`operators` match it.
    pub fn user_at_host(&self) -> String {
        format!("{}@{}", self.user, self.host)
    }

    /// `job`'s owner as a caller: who a queue's ACLs judge it as, and who deletes it when
    /// the server acts for its owner.
    pub fn owner_of(job: &Job) -> Caller {
        Caller {
            uid: job.uid,
            user: job.euser.clone(),
            group: job.egroup.clone(),
            host: job
                .owner
                .split_once('@')
                .map_or_else(String::new, |(_, host)| host.to_string()),
        }
    }
}

/// A submission, already converted from proto.
#[derive(Debug, Clone, Default)]
pub struct SubmitInput {
    pub attrs: Vec<Attr>,
    pub script: Vec<u8>,
    pub destination: String,
    /// The group `group_list` chose for the job ([`SubmitInput::new`]), or why it may not
    /// have it; `None` when the submission names none. Looked up before the change: the
    /// group database may be LDAP, and nothing slow runs under the state lock.
    pub group: Option<Result<String, PbsError>>,
    /// Set by `qsub -I`'s stream (never by a plain Submit): the job is interactive.
    pub interactive: Option<Interactive>,
}

impl SubmitInput {
    /// The submission, with its `group_list` resolved against the group database.
    pub fn new(attrs: Vec<Attr>, script: Vec<u8>, destination: String, caller: &Caller) -> Self {
        let group = attrs
            .iter()
            .rfind(|a| a.name == "group_list")
            .map(|a| group_from_list(&a.value, caller));
        SubmitInput {
            attrs,
            script,
            destination,
            group,
            interactive: None,
        }
    }
}

/// The job-control operations of `JobAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOp {
    Delete,
    Hold,
    Release,
    Signal,
    Rerun,
    /// qmove: to another queue.
    Move,
    /// qmsg: a line into a running job's output.
    Message,
}

/// What a job-control request says besides its operation and its job ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionArgs {
    /// qhold/qrls `-h`: letters of {u, o, s}; empty means `u`.
    pub hold_types: String,
    /// qsig `-s`: a signal name or number; empty means SIGTERM.
    pub signal: String,
    /// qmove: the destination (`queue`, `queue@server`, or `@server` for the default queue).
    pub destination: String,
    /// qmsg: the message and its files (stdout, stderr).
    pub message: String,
    pub message_stdout: bool,
    pub message_stderr: bool,
    /// qdel `-m` (operators and managers only).
    pub delete_message: String,
    /// qdel `-p` (operators and managers only): purge (see [`purge`]); an ordinary delete
    /// for a whole array, as in Torque.
    pub purge: bool,
    /// qdel `-W`: the kill delay for this delete.
    pub delete_delay_secs: Option<u32>,
    /// qdel/qhold/qrls `-t`: the indices of each array named to act on (empty: all).
    pub array_range: String,
}

#[cfg(test)]
impl ActionArgs {
    fn test(hold_types: &str, signal: &str) -> ActionArgs {
        ActionArgs {
            hold_types: hold_types.into(),
            signal: signal.into(),
            ..ActionArgs::default()
        }
    }
}

/// The longest `-F` the server takes, bytes: the MOM writes it, with the script's path, into
/// a pipe the job's shell reads (see the MOM's `launch::script_command_line`).
pub const MAX_JOB_ARGUMENTS: usize = 16 * 1024;

/// The longest qmsg message the server relays, bytes.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Seconds between qdel's SIGTERM and SIGKILL.
pub const KILL_DELAY_SECS: u32 = 2;
/// Torque's exit status for a job deleted (256 + SIGTERM).
pub const EXIT_DELETED: i32 = 271;

/// Starts in a row whose script never ran before the job is held (system hold) rather than
/// requeued again. Why: such a start fails on the MOM's side (its disk full, say), and the
/// scheduler would otherwise hand the job straight back to it, forever. PBS Pro holds a job
/// after 20 failed attempts to run, with the comment used here.
pub const MAX_FAILED_STARTS: u32 = 20;

/// What a job id names: a job (or one sub-job of an array), or a whole array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRef {
    /// `12`, or `12[3]` (the key of sub-job 3, see [`crate::model::member_key`]).
    Job(u64),
    /// `12[]`: every sub-job of array 12.
    Array(u64),
}

/// Parses `12`, `12[3]`, `12[]`, each optionally followed by `.SERVER` or
/// `.SERVER.domain`; `None` when the id is malformed or names another server.
pub fn parse_job_ref(id: &str, server_name: &str) -> Option<JobRef> {
    let (local, rest) = match id.split_once('.') {
        Some((local, rest)) => (local, Some(rest)),
        None => (id, None),
    };
    let digits = |text: &str| -> Option<u64> {
        text.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse().ok())
            .flatten()
    };
    let job = match local.split_once('[') {
        // (A number as high as a sub-job's key is no job's.)
        None => JobRef::Job(digits(local).filter(|n| *n < crate::model::FIRST_MEMBER_KEY)?),
        Some((number, index)) => {
            let number = digits(number).filter(|n| *n <= crate::model::MAX_ARRAY_NUMBER)?;
            match index.strip_suffix(']')? {
                "" => JobRef::Array(number),
                index => {
                    let index = u32::try_from(digits(index)?).ok()?;
                    if index > capstan_proto::array::MAX_ARRAY_INDEX {
                        return None;
                    }
                    JobRef::Job(crate::model::member_key(number, index))
                }
            }
        }
    };
    let ours = match rest {
        None => true,
        Some(rest) => {
            rest == server_name
                || rest.starts_with(&format!("{server_name}."))
                || server_name.starts_with(&format!("{rest}."))
        }
    };
    ours.then_some(job)
}

/// Parses an id that must name one job (`12`, `12[3]`, see [`parse_job_ref`]) into its key;
/// `None` also for a whole array (`12[]`).
pub fn parse_job_id(id: &str, server_name: &str) -> Option<u64> {
    match parse_job_ref(id, server_name)? {
        JobRef::Job(key) => Some(key),
        JobRef::Array(_) => None,
    }
}

/// The sub-jobs of array `number` a request by `caller` may act on: every one kept, once
/// the array's owner is judged (Torque judges the array, whichever sub-jobs are picked);
/// `None` when the array has none.
fn array_for<'a>(
    state: &'a State,
    caller: &Caller,
    number: u64,
) -> Result<Option<Vec<&'a Job>>, PbsError> {
    let members: Vec<&Job> = state.sub_jobs(number).collect();
    let privilege = state.server_attrs.privilege(caller);
    match members.first() {
        None => Ok(None),
        Some(first) if privilege < Privilege::Operator && first.uid != caller.uid => {
            Err(PbsError::new(pbse::PERM, "", ""))
        }
        Some(_) => Ok(Some(members)),
    }
}

/// The refusal of a command that takes one job when given a whole array (`12[]`): Torque's
/// own answer depends on the array's first sub-job, so Capstan says what it does not do.
pub fn whole_array_refused(command: &str, id: &str, server_name: &str) -> PbsError {
    PbsError::new(
        pbse::IVALREQ,
        format!("{command} takes one job, not a whole job array: name a sub-job, NUMBER[INDEX]"),
        shown_job_id(id, server_name),
    )
}

/// A job id as replies name it: `SEQ.SERVER` (`SEQ[INDEX].SERVER`, `SEQ[].SERVER`) when it
/// parses, else as given.
pub fn shown_job_id(id: &str, server_name: &str) -> String {
    match parse_job_ref(id, server_name) {
        Some(JobRef::Job(key)) => crate::model::job_id(key, server_name),
        Some(JobRef::Array(number)) => crate::model::array_id(number, server_name),
        None => id.to_string(),
    }
}

/// The signal names Torque's MOM knows (its `sig_tbl`), without `SIG`. `suspend` and
/// `resume` are the server's own (see [`JobOp::Signal`]).
const SIGNAL_NAMES: &[(&str, i32)] = &[
    ("NULL", 0),
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("IOT", libc::SIGIOT),
    ("ABRT", libc::SIGABRT),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("BUS", libc::SIGBUS),
    ("SEGV", libc::SIGSEGV),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("URG", libc::SIGURG),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("CONT", libc::SIGCONT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGPOLL),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
];

/// `USR1`, `SIGUSR1` (any case; a name of Torque's table) or a number up to 64 → signal
/// number; `None` is Torque's PBSE_UNKSIG. No name means SIGTERM (qsig without `-s`).
pub fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    if text.is_empty() {
        return Some(libc::SIGTERM);
    }
    if let Ok(n) = text.parse::<i32>() {
        return (0..=64).contains(&n).then_some(n);
    }
    let name = match text.get(..3) {
        Some(prefix) if prefix.eq_ignore_ascii_case("SIG") => &text[3..],
        _ => text,
    };
    SIGNAL_NAMES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, number)| *number)
}

/// Recomputes Q/H/W from holds and execution time (R and C are left alone).
pub fn settle(job: &mut Job, now: i64) {
    if matches!(job.state, JobState::Running | JobState::Completed) {
        return;
    }
    let new = if job.hold_types.any() {
        JobState::Held
    } else if job.execution_time.is_some_and(|t| t > now) {
        JobState::Waiting
    } else {
        JobState::Queued
    };
    if new == JobState::Queued && job.state != JobState::Queued {
        job.etime = Some(now);
    }
    job.state = new;
}

/// What a dependency condition says about its parent right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepOutcome {
    Pending,
    Satisfied,
    /// The condition can never be met: the dependent is deleted.
    Failed,
}

/// Evaluates a condition on a whole array against its sub-jobs (those still kept; none
/// left counts as done, as a purged parent does). Torque's `*array` kinds without a count:
/// every sub-job must have started (`afterstartarray`) or ended, and the array is judged
/// once all have ended: `afterokarray` is met if every one exited 0 and fails otherwise,
/// `afternotokarray` the reverse, `afteranyarray` is met.
pub fn array_dep_outcome(kind: DepKind, members: &[&Job]) -> DepOutcome {
    let ended = |j: &&Job| j.state == JobState::Completed;
    if kind == DepKind::AfterStartArray {
        let started = |j: &&Job| ended(j) || j.state == JobState::Running || j.start_count > 0;
        return if members.iter().all(started) {
            DepOutcome::Satisfied
        } else {
            DepOutcome::Pending
        };
    }
    if !members.iter().all(ended) {
        return DepOutcome::Pending;
    }
    let succeeded = |j: &&Job| j.exit_status == Some(0);
    let met = match kind {
        DepKind::AfterOkArray => members.iter().all(succeeded),
        DepKind::AfterNotOkArray => !members.iter().any(succeeded),
        _ => true,
    };
    if met {
        DepOutcome::Satisfied
    } else {
        DepOutcome::Failed
    }
}

/// Evaluates one condition. A parent that no longer exists (purged) counts as done.
pub fn dep_outcome(kind: DepKind, parent: Option<&Job>) -> DepOutcome {
    let Some(p) = parent else {
        return DepOutcome::Satisfied;
    };
    let done = p.state == JobState::Completed;
    match kind {
        DepKind::After => {
            if done || p.state == JobState::Running || p.start_count > 0 {
                DepOutcome::Satisfied
            } else {
                DepOutcome::Pending
            }
        }
        DepKind::AfterAny if done => DepOutcome::Satisfied,
        DepKind::AfterOk if done => {
            if p.exit_status == Some(0) {
                DepOutcome::Satisfied
            } else {
                DepOutcome::Failed
            }
        }
        DepKind::AfterNotOk if done => {
            if p.exit_status == Some(0) {
                DepOutcome::Failed
            } else {
                DepOutcome::Satisfied
            }
        }
        _ => DepOutcome::Pending,
    }
}

/// Applies the job's dependency conditions against `lookup`; returns true when the job
/// changed. A failed condition deletes the job (C, 271, Torque's comment); all conditions met
/// lift the system hold, if it is the one dependencies placed (`depend_hold`; in jobs stored
/// without it, a job that never started): a system hold of a job that has started has
/// another reason (too many failed starts) unless `qalter -W depend` placed it.
pub fn evaluate_deps<'a>(
    job: &mut Job,
    lookup: impl Fn(u64) -> Option<&'a Job>,
    array: impl Fn(u64) -> Vec<&'a Job>,
    now: i64,
    server_name: &str,
) -> bool {
    if job.state == JobState::Completed || job.depend.iter().all(|d| d.satisfied) {
        return false;
    }
    let mut changed = false;
    for i in 0..job.depend.len() {
        if job.depend[i].satisfied {
            continue;
        }
        let dep = job.depend[i];
        let outcome = if dep.kind.on_array() {
            array_dep_outcome(dep.kind, &array(dep.seq))
        } else {
            dep_outcome(dep.kind, lookup(dep.seq))
        };
        match outcome {
            DepOutcome::Pending => {}
            DepOutcome::Satisfied => {
                job.depend[i].satisfied = true;
                changed = true;
            }
            DepOutcome::Failed => {
                let why = format!(
                    "Job deleted as result of dependency on job {}",
                    dep.parent_id(server_name)
                );
                if job.state == JobState::Running {
                    // Released by hand and started: deleted as `qdel` deletes a running job
                    // (the caller signals it, see `cascade`); it ends when its MOM says so.
                    if job.pending == Some(PendingAction::Delete) {
                        return false;
                    }
                    job.pending = Some(PendingAction::Delete);
                    job.comment = Some(why);
                    job.mtime = now;
                    return true;
                }
                job.state = JobState::Completed;
                job.exit_status = Some(EXIT_DELETED);
                job.comp_time = Some(now);
                job.mtime = now;
                job.comment = Some(why);
                return true;
            }
        }
    }
    if changed
        && job.depend.iter().all(|d| d.satisfied)
        && job.hold_types.system
        && job.system_hold_is_dependencies()
    {
        job.hold_types.system = false;
        job.depend_hold = Some(false);
        settle(job, now);
    }
    if changed {
        job.mtime = now;
    }
    changed
}

/// Propagates the consequences of `seeds` (jobs that started or ended) to their dependents,
/// adding every changed dependent to `overlay` (and cascading further on deletions). Returns
/// the signals that end dependents already running whose dependency failed, for the caller
/// to send once the overlay is committed.
#[must_use]
pub fn cascade(
    state: &State,
    overlay: &mut BTreeMap<u64, Job>,
    seeds: Vec<u64>,
    now: i64,
) -> Vec<(String, ToMom)> {
    let mut kills = Vec::new();
    let waiting: Vec<u64> = state.jobs_awaiting_dependencies().map(|j| j.seq).collect();
    if waiting.is_empty() {
        return kills;
    }
    // Arrays some of whose sub-jobs changed since their `*array` conditions were last
    // judged: the first such sub-job taken from the work list has them judged, once for all
    // (every seed's change is in the overlay already), so a qdel of 10,000 sub-jobs judges
    // a dependent once, not 10,000 times.
    let mut arrays_changed: HashSet<u64> = HashSet::new();
    let mut work = Vec::with_capacity(seeds.len());
    let push = |work: &mut Vec<u64>, seq: u64, changed: &mut HashSet<u64>| {
        if let Some((array, _)) = crate::model::member_of(seq) {
            changed.insert(array);
        }
        work.push(seq);
    };
    for seq in seeds {
        push(&mut work, seq, &mut arrays_changed);
    }
    while let Some(parent) = work.pop() {
        let array_due =
            crate::model::member_of(parent).is_some_and(|(array, _)| arrays_changed.remove(&array));
        for &child_seq in &waiting {
            let child = overlay
                .get(&child_seq)
                .or_else(|| state.jobs.get(&child_seq));
            let Some(child) = child else { continue };
            let concerned = |d: &Dependency| {
                !d.satisfied && d.concerns(parent) && (array_due || !d.kind.on_array())
            };
            if !child.depend.iter().any(concerned) {
                continue;
            }
            let mut child = child.clone();
            let changed = evaluate_deps(
                &mut child,
                |s| overlay.get(&s).or_else(|| state.jobs.get(&s)),
                |number| sub_jobs_changed(state, overlay, number),
                now,
                &state.server_name,
            );
            if changed {
                if child.state == JobState::Completed {
                    push(&mut work, child.seq, &mut arrays_changed);
                } else if child.pending == Some(PendingAction::Delete) {
                    kills.extend(delete_signal(&mut child, None));
                }
                overlay.insert(child.seq, child);
            }
        }
    }
    kills
}

/// The sub-jobs of array `number`, each as `overlay` has it when changed there (the changes
/// not yet committed), else as kept.
fn sub_jobs_changed<'a>(
    state: &'a State,
    overlay: &'a BTreeMap<u64, Job>,
    number: u64,
) -> Vec<&'a Job> {
    state
        .sub_jobs(number)
        .map(|job| overlay.get(&job.seq).unwrap_or(job))
        .collect()
}

/// Writes every job of the overlay.
fn save_overlay(tx: &mut StoreTx<'_>, overlay: &BTreeMap<u64, Job>) -> Result<(), PbsError> {
    for job in overlay.values() {
        tx.save_job(job).map_err(PbsError::system)?;
    }
    Ok(())
}

fn resource_error(e: ResourceError) -> PbsError {
    match e {
        ResourceError::Unknown(name) => {
            PbsError::new(pbse::UNKRESC, "", format!("Resource_List.{name}"))
        }
        ResourceError::IllegalValue(name) => {
            PbsError::new(pbse::BADATVAL, "", format!("Resource_List.{name}"))
        }
        ResourceError::Syntax => PbsError::new(pbse::SYNTAX, "Invalid Syntax", ""),
    }
}

fn bad_value(name: &str) -> PbsError {
    PbsError::new(pbse::BADATVAL, "", name)
}

/// `umask`: what qsub sends (the octal mask's value, in decimal), at most 0777.
fn valid_umask(v: &str) -> Result<u32, PbsError> {
    v.trim()
        .parse()
        .ok()
        .filter(|mask| *mask <= 0o777)
        .ok_or_else(|| bad_value("umask"))
}

/// The longest `-K` a job may ask for: every qdel of it, a manager's or qterm's too, waits
/// this long before SIGKILL if the job ignores SIGTERM.
pub const MAX_KILL_DELAY_SECS: u32 = 600;

/// `kill_delay` (`qsub -K SECS`): whole seconds, at most [`MAX_KILL_DELAY_SECS`].
fn valid_kill_delay(v: &str) -> Result<u32, PbsError> {
    v.trim()
        .parse()
        .ok()
        .filter(|secs| *secs <= MAX_KILL_DELAY_SECS)
        .ok_or_else(|| bad_value("kill_delay"))
}

/// `User_List` (`qsub -u user[@host][,...]`): whom to run the job as. Torque lets a user
/// run jobs as another account that trusts them (`.rhosts`); Capstan has no such trust, so
/// every entry must name the submitting user, else Torque's PBSE_BADUSER.
fn valid_user_list(v: &str, caller: &Caller) -> Result<String, PbsError> {
    for entry in v.split(',') {
        let user = entry.split('@').next().unwrap_or_default().trim();
        if user != caller.user {
            return Err(PbsError::new(
                pbse::BADUSER,
                format!("{} may not run jobs as {user}", caller.user),
                "",
            ));
        }
    }
    Ok(v.to_string())
}

/// The group a job runs with, from `group_list` (`group[@host][,...]`, Torque's syntax;
/// the entry without a host, else the first): the caller's own group, or one that lists
/// them as a member, else Torque's PBSE_BADGRP. (The MOM checks again, on its node.)
fn group_from_list(list: &str, caller: &Caller) -> Result<String, PbsError> {
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    let chosen = entries
        .iter()
        .find(|e| !e.contains('@'))
        .or(entries.first())
        .map(|e| e.split('@').next().unwrap_or_default())
        .unwrap_or_default();
    if chosen == caller.group {
        return Ok(chosen.to_string());
    }
    let member = match nix::unistd::Group::from_name(chosen) {
        Ok(Some(group)) => group.mem.contains(&caller.user),
        _ => false,
    };
    if chosen.is_empty() || !member {
        return Err(PbsError::new(
            pbse::BADGRP,
            format!("{} is not a member of group {chosen}", caller.user),
            "",
        ));
    }
    Ok(chosen.to_string())
}

/// `Account_Name` (`-A`): any text but control characters (a newline would be a line of its
/// own in the prologue's arguments and the accounting log).
fn valid_account(v: &str) -> Result<String, PbsError> {
    if v.chars().any(char::is_control) {
        return Err(bad_value("Account_Name"));
    }
    Ok(v.to_string())
}

/// `Job_Name`: not empty, no white space, no `/`.
fn valid_job_name(v: &str) -> Result<String, PbsError> {
    if v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad_value("Job_Name"));
    }
    Ok(v.to_string())
}

/// `Join_Path`: `n`, `oe` or `eo`.
fn valid_join_path(v: &str) -> Result<String, PbsError> {
    if !matches!(v, "n" | "oe" | "eo") {
        return Err(bad_value("Join_Path"));
    }
    Ok(v.to_string())
}

/// `Keep_Files`: `n`, `o`, `e`, `oe` or `eo`.
fn valid_keep_files(v: &str) -> Result<String, PbsError> {
    if !matches!(v, "n" | "o" | "e" | "oe" | "eo") {
        return Err(bad_value("Keep_Files"));
    }
    Ok(v.to_string())
}

/// `Mail_Points`: `n`, or letters of `abe`.
fn valid_mail_points(v: &str) -> Result<String, PbsError> {
    if !(v == "n" || (!v.is_empty() && v.chars().all(|c| "abe".contains(c)))) {
        return Err(bad_value("Mail_Points"));
    }
    Ok(v.to_string())
}

/// `Mail_Users`: addresses the server may hand sendmail (see `mail::addresses`).
fn valid_mail_users(v: &str) -> Result<String, PbsError> {
    crate::mail::addresses(v).ok_or_else(|| bad_value("Mail_Users"))?;
    Ok(v.to_string())
}

/// `Priority`: -1024 to 1023.
fn valid_priority(v: &str) -> Result<i64, PbsError> {
    v.parse()
        .ok()
        .filter(|p| (-1024..=1023).contains(p))
        .ok_or_else(|| bad_value("Priority"))
}

/// Torque: `o` holds need an operator, `s` holds a manager.
fn may_set_holds(holds: HoldTypes, privilege: Privilege) -> bool {
    !((holds.other && privilege < Privilege::Operator)
        || (holds.system && privilege < Privilege::Manager))
}

/// The jobs conditions `deps` wait on, with those these wait on, however far up: a job
/// among them may not take `deps` (it would wait on itself).
fn waited_on(state: &State, deps: &[Dependency]) -> BTreeSet<u64> {
    let (mut seen, mut seen_arrays) = (BTreeSet::new(), BTreeSet::new());
    let mut work: Vec<Dependency> = deps.iter().filter(|d| !d.satisfied).copied().collect();
    while let Some(dep) = work.pop() {
        // An `*array` condition waits on every sub-job (each array walked once: its
        // sub-jobs' own conditions are mostly the same copied ones).
        let parents: Vec<u64> = if !dep.kind.on_array() {
            vec![dep.seq]
        } else if seen_arrays.insert(dep.seq) {
            state.sub_jobs(dep.seq).map(|job| job.seq).collect()
        } else {
            Vec::new()
        };
        for seq in parents {
            if seen.insert(seq) {
                if let Some(job) = state.jobs.get(&seq) {
                    work.extend(job.depend.iter().filter(|d| !d.satisfied).copied());
                }
            }
        }
    }
    seen
}

/// Parses `afterok:14[:15],afterany:16.vm` into conditions; every target must exist.
fn parse_depend(text: &str, state: &State) -> Result<Vec<Dependency>, PbsError> {
    let bad = || PbsError::new(pbse::BADDEPEND, "", "");
    let mut deps = Vec::new();
    for clause in text.split(',').filter(|c| !c.is_empty()) {
        let mut parts = clause.split(':');
        let kind = parts.next().and_then(DepKind::parse).ok_or_else(bad)?;
        let mut any = false;
        for target in parts {
            // An `*array` kind names a whole array that has sub-jobs (Torque's count,
            // `12[][5]`, is not built); the others one job.
            let seq = match (kind.on_array(), parse_job_ref(target, &state.server_name)) {
                (true, Some(JobRef::Array(number))) if state.sub_jobs(number).next().is_some() => {
                    number
                }
                (false, Some(JobRef::Job(seq))) if state.jobs.contains_key(&seq) => seq,
                _ => return Err(bad()),
            };
            deps.push(Dependency {
                kind,
                seq,
                satisfied: false,
            });
            any = true;
        }
        if !any {
            return Err(bad());
        }
    }
    Ok(deps)
}

/// The file a directory given as an output path gets: Torque's `NAME.oSEQ` (`letter` `o`
/// or `e`), and for a sub-job its array's, `NAME.oSEQ-INDEX`, as at submission.
fn default_output_file(job: &Job, letter: char) -> String {
    // A sub-job's name is its array's with `-INDEX`, which the number carries already.
    let name = match job.array_index() {
        Some(index) => job
            .name
            .strip_suffix(&format!("-{index}"))
            .unwrap_or(&job.name),
        None => &job.name,
    };
    format!("{name}.{letter}{}", crate::model::file_number(job.seq))
}

/// `HOST:path` as stored: adds the host when missing, resolves relative paths against the
/// working directory, and appends `NAME.oSEQ` to a directory (trailing `/`).
fn output_path(given: Option<&str>, host: &str, workdir: &str, default_file: &str) -> String {
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return format!("{host}:{}/{default_file}", workdir.trim_end_matches('/'));
    };
    let (h, path) = match given.split_once(':') {
        Some((h, p)) if !h.contains('/') => (h.to_string(), p.to_string()),
        _ => (host.to_string(), given.to_string()),
    };
    let mut path = if path.starts_with('/') {
        path
    } else {
        format!("{}/{}", workdir.trim_end_matches('/'), path)
    };
    if path.ends_with('/') {
        path.push_str(default_file);
    }
    format!("{h}:{path}")
}

/// A submission built and checked: the job, and for an array (`-t`) its sub-jobs' indices
/// (the job is then their template, see [`array_members`]).
struct Built {
    job: Job,
    array_indices: Option<Vec<u32>>,
}

/// Builds and validates a job from a submission (no state change).
fn build_job(
    core: &Core,
    caller: &Caller,
    seq: u64,
    input: &SubmitInput,
    now: i64,
) -> Result<Built, PbsError> {
    let state = &core.state;
    let server = state.server_name.as_str();
    // An interactive job's script may be empty: it is read for its directives, never run.
    if input.script.is_empty() && input.interactive.is_none() {
        return Err(PbsError::new(pbse::IVALREQ, "empty job script", ""));
    }
    let queue_name = capstan_proto::text::before_at(&input.destination).to_string();
    let queue_name = if queue_name.is_empty() {
        state.default_queue.clone()
    } else {
        queue_name
    };
    let Some(queue) = state.queue(&queue_name) else {
        return Err(PbsError::new(pbse::UNKQUE, "requested queue not found", ""));
    };

    if !queue.enabled {
        return Err(PbsError::new(
            pbse::QUNOENB,
            format!(
                "queue is disabled: user {}, queue {}",
                caller.user_at_host(),
                queue.name
            ),
            "",
        ));
    }

    let mut name = "STDIN".to_string();
    let mut given_resources: Vec<(String, String)> = Vec::new();
    let mut out_given = None;
    let mut err_given = None;
    let mut variable_list = String::new();
    let mut depend = Vec::new();
    let mut holds = HoldTypes::default();
    let mut submit_args = None;
    let mut account = None;
    let mut mail_users = None;
    let mut shell_path = None;
    let mut init_work_dir = None;
    let mut submit_host = None;
    let mut join_path = "n".to_string();
    let mut keep_files = "n".to_string();
    let mut mail_points = "a".to_string();
    let mut priority = 0i64;
    let mut rerunable = true;
    let mut checkpoint = "u".to_string();
    let mut execution_time = None;
    let mut umask = None;
    let mut job_arguments = None;
    let mut kill_delay = None;
    let mut fault_tolerant = false;
    let mut group_list = None;
    let mut user_list = None;
    let mut node_exclusive = false;
    let mut array = None;

    for attr in &input.attrs {
        let v = attr.value.as_str();
        match &*attr.name {
            "Job_Name" => name = valid_job_name(v)?,
            "Resource_List" => {
                let value = resources::normalize(&attr.resource, v).map_err(resource_error)?;
                given_resources.retain(|(n, _)| n != &attr.resource);
                given_resources.push((attr.resource.clone(), value));
            }
            "Output_Path" => out_given = Some(v.to_string()),
            "Error_Path" => err_given = Some(v.to_string()),
            "Variable_List" => variable_list = v.to_string(),
            "depend" => depend = parse_depend(v, state)?,
            "Hold_Types" => holds = HoldTypes::parse(v).ok_or_else(|| bad_value("Hold_Types"))?,
            "submit_args" => submit_args = Some(v.to_string()),
            "Account_Name" => account = Some(valid_account(v)?),
            "Mail_Users" => mail_users = Some(valid_mail_users(v)?),
            "Shell_Path_List" => shell_path = Some(v.to_string()),
            "init_work_dir" => init_work_dir = Some(v.to_string()),
            "submit_host" => submit_host = Some(v.to_string()),
            "Join_Path" => join_path = valid_join_path(v)?,
            "Keep_Files" => keep_files = valid_keep_files(v)?,
            "Mail_Points" => mail_points = valid_mail_points(v)?,
            "Priority" => priority = valid_priority(v)?,
            "Rerunable" => rerunable = parse_bool(v).ok_or_else(|| bad_value("Rerunable"))?,
            "Checkpoint" => checkpoint = v.to_string(),
            "Execution_Time" => {
                execution_time = Some(v.parse().map_err(|_| bad_value("Execution_Time"))?)
            }
            "job_array_request" => array = Some((v.to_string(), valid_array_request(v)?)),
            "umask" => umask = Some(valid_umask(v)?),
            // The MOM hands them to the job's shell on one line, as Torque's does.
            "job_arguments" if v.contains(['\0', '\n']) || v.len() > MAX_JOB_ARGUMENTS => {
                return Err(bad_value("job_arguments"))
            }
            "job_arguments" => job_arguments = Some(v.to_string()),
            "kill_delay" => kill_delay = Some(valid_kill_delay(v)?),
            "fault_tolerant" => {
                fault_tolerant = parse_bool(v).ok_or_else(|| bad_value("fault_tolerant"))?
            }
            "group_list" => group_list = Some(v.to_string()),
            "User_List" => user_list = Some(valid_user_list(v, caller)?),
            "node_exclusive" => {
                node_exclusive = parse_bool(v).ok_or_else(|| bad_value("node_exclusive"))?
            }
            // Accepted for compatibility; identity and these values are the server's.
            "Job_Owner" | "job_radix" | "request_version" | "queue" => {}
            _ => {
                return Err(PbsError::new(
                    pbse::NOATTR,
                    "detected presence of an unknown attribute",
                    "",
                ))
            }
        }
    }

    // The job runs with this group, so the queue's and nodes' group ACLs judge it.
    let egroup = match &input.group {
        Some(group) => group.clone()?,
        None => caller.group.clone(),
    };
    let as_job = Caller {
        group: egroup.clone(),
        ..caller.clone()
    };
    crate::authz::check_queue_acls(queue, &as_job)?;

    // Queue defaults fill what was not given; nodect follows nodes. A default `nodes` does
    // not apply to a job that asks for its slots another way: it would win over `procs`,
    // `select` or `ncpus` (see `resources::slot_request`), and Torque shows a procs job with
    // no nodes (and refuses ncpus beside nodes).
    let mut resources_list = given_resources;
    let defaulted = apply_queue_defaults(queue, &mut resources_list);
    let request = feasible_request(state, &mut resources_list, &caller.user, &egroup)?;

    if input.interactive.is_some() {
        // Torque's req_quejob: "Interactive jobs are necessarily not rerunable"; and qsub
        // refuses `-I` with `-t` before it gets here.
        rerunable = false;
        if array.is_some() {
            return Err(PbsError::new(
                pbse::BAD_ARRAY_REQ,
                "interactive job can not be job array",
                "",
            ));
        }
    }
    let depend_hold = !depend.is_empty();
    if depend_hold {
        holds.system = true;
    }
    let mut vars = crate::model::split_variable_list(&variable_list);
    // qsub names the origin queue only when given `-q`; otherwise it is the queue the job
    // went to, first in the list as Torque puts it.
    if !vars.iter().any(|(k, _)| k == "PBS_O_QUEUE") {
        variable_list = if variable_list.is_empty() {
            format!("PBS_O_QUEUE={}", queue.name)
        } else {
            format!("PBS_O_QUEUE={},{variable_list}", queue.name)
        };
        vars.insert(0, ("PBS_O_QUEUE".into(), queue.name.clone()));
    }
    let var = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let workdir = var("PBS_O_WORKDIR")
        .or_else(|| init_work_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    let host = submit_host
        .clone()
        .or_else(|| var("PBS_O_HOST"))
        .unwrap_or_else(|| server.to_string());
    let init_work_dir = init_work_dir
        .or_else(|| var("PBS_O_INITDIR"))
        .unwrap_or_else(|| workdir.clone());

    let mut job = Job {
        seq,
        output_path: output_path(
            out_given.as_deref(),
            &host,
            &workdir,
            &format!("{name}.o{seq}"),
        ),
        error_path: output_path(
            err_given.as_deref(),
            &host,
            &workdir,
            &format!("{name}.e{seq}"),
        ),
        name,
        owner: caller.user_at_host(),
        uid: caller.uid,
        euser: caller.user.clone(),
        egroup,
        state: JobState::Queued,
        queue: queue.name.clone(),
        account,
        checkpoint,
        ctime: now,
        mtime: now,
        qtime: now,
        queue_rank: state.next_queue_rank(seq),
        etime: None,
        depend,
        exec_host: Vec::new(),
        execution_time,
        hold_types: holds,
        depend_hold: Some(depend_hold),
        join_path,
        keep_files,
        mail_points,
        mail_users,
        priority,
        rerunable,
        resources: resources_list,
        session_id: None,
        shell_path,
        variable_list,
        comment: None,
        exit_status: None,
        submit_args,
        start_time: None,
        start_count: 0,
        umask,
        job_arguments,
        kill_delay,
        fault_tolerant,
        group_list,
        user_list,
        node_exclusive,
        interactive: input.interactive.clone(),
        array: array.as_ref().map(|(request, parsed)| ArrayPart {
            request: request.clone(),
            slot_limit: parsed.slot_limit,
        }),
        failed_starts: 0,
        suspended: false,
        defaulted,
        comp_time: None,
        total_runtime: None,
        submit_host: host,
        init_work_dir,
        resources_used: None,
        current_run: None,
        pending: None,
        request: Some(request),
        script: Arc::new(input.script.clone()),
    };
    settle(&mut job, now);
    if job.state == JobState::Queued {
        job.etime = Some(now);
    }
    // Parents that already finished decide at once.
    evaluate_deps(
        &mut job,
        |s| state.jobs.get(&s),
        |number| state.sub_jobs(number).collect(),
        now,
        server,
    );
    Ok(Built {
        job,
        array_indices: array.map(|(_, parsed)| parsed.indices),
    })
}

/// `-t`'s value, parsed: Torque's `Bad Job Array Request` otherwise.
fn valid_array_request(v: &str) -> Result<capstan_proto::array::ArrayRequest, PbsError> {
    use capstan_proto::array::{parse, ArrayRequestError, MAX_ARRAY_SIZE};
    parse(v).map_err(|e| match e {
        ArrayRequestError::TooManyJobs => PbsError::new(
            pbse::BAD_ARRAY_REQ,
            format!("Requested array size too large, limit is {MAX_ARRAY_SIZE}"),
            "",
        ),
        ArrayRequestError::Malformed | ArrayRequestError::IndexTooHigh => {
            PbsError::new(pbse::BAD_ARRAY_REQ, "", "")
        }
    })
}

/// The sub-jobs of an array submitted as `template`, as Torque's `job_clone` makes them:
/// each a copy keyed by its index (see [`crate::model::member_key`]), its name and output
/// paths with `-INDEX` added, `PBS_ARRAYID` at the end of its variables, and its own place
/// in line, in index order.
fn array_members(template: &Job, indices: &[u32], state: &State) -> Vec<Job> {
    indices
        .iter()
        .map(|&index| {
            let mut variable_list = template.variable_list.clone();
            if !variable_list.is_empty() {
                variable_list.push(',');
            }
            variable_list.push_str(&format!("PBS_ARRAYID={index}"));
            Job {
                seq: crate::model::member_key(template.seq, index),
                name: format!("{}-{index}", template.name),
                output_path: format!("{}-{index}", template.output_path),
                error_path: format!("{}-{index}", template.error_path),
                variable_list,
                queue_rank: state.next_queue_rank(template.seq),
                ..template.clone()
            }
        })
        .collect()
}

/// Fills in the queue's `resources_default` for what the job did not ask for, and returns the
/// names filled in. A default `nodes` does not apply to a job that asks for its slots with
/// `procs`, `select` or `ncpus`: it would override them.
fn apply_queue_defaults(
    queue: &crate::model::Queue,
    resources: &mut Vec<(String, String)>,
) -> Vec<String> {
    let slots_asked_otherwise = resources
        .iter()
        .any(|(n, _)| matches!(n.as_str(), "procs" | "select" | "ncpus"));
    let mut filled = Vec::new();
    for (n, v) in &queue.resources_default {
        let given = resources.iter().any(|(g, _)| g == n);
        let overridden = n == "nodes" && slots_asked_otherwise;
        if !given && !overridden {
            resources.push((n.clone(), v.clone()));
            filled.push(n.clone());
        }
    }
    filled
}

/// The placement request of a (normalised) Resource_List, refused with PBSE_EXCQRESC when no
/// node could ever hold it for this owner; sets `nodect` right after `nodes`, as Torque shows it
/// (not for `procs`, which Torque shows with no node count: `NDS` is `--` in `qstat -a`).
fn feasible_request(
    state: &State,
    resources_list: &mut Vec<(String, String)>,
    user: &str,
    group: &str,
) -> Result<resources::SlotRequest, PbsError> {
    resources_list.retain(|(n, _)| n != "nodect");
    let map: std::collections::BTreeMap<String, String> = resources_list.iter().cloned().collect();
    let request = resources::slot_request(&map).map_err(resource_error)?;
    let views = crate::dispatch::node_views(state, false);
    let owner = scheduler::access::Owner {
        user: user.to_string(),
        group: group.to_string(),
    };
    if !scheduler::could_ever_fit(&request, &owner, &views) {
        return Err(PbsError::new(
            pbse::EXCQRESC,
            "cannot locate feasible nodes (nodes file is empty, all systems are busy, or no nodes have the requested feature)",
            "",
        ));
    }
    // Torque counts nodes only for a job that asked for them (directly or through a queue
    // default): a procs job, or a bare job in a queue with no default, shows NDS `--`.
    let asked = ["nodes", "select", "ncpus"]
        .iter()
        .any(|n| map.contains_key(*n));
    if request.procs || !asked {
        return Ok(request);
    }
    let nodect = ("nodect".to_string(), request.nodect().to_string());
    match resources_list.iter().position(|(n, _)| n == "nodes") {
        Some(i) => resources_list.insert(i + 1, nodect),
        None => resources_list.push(nodect),
    }
    Ok(request)
}

/// A stored submission: its id (`SEQ.SERVER`) and the state it entered.
#[derive(Debug)]
pub struct Submitted {
    pub id: String,
    /// The job's number (an array's, for `qsub -t`).
    pub seq: u64,
    pub state: JobState,
}

impl Submitted {
    /// Whether the scheduler has anything new to look at: a held job, one waiting for its
    /// `-a` time or for a dependency cannot start, so submitting it wakes nobody.
    pub fn may_start(&self) -> bool {
        self.state == JobState::Queued
    }
}

/// qsub: validates and stores the job. Rejections consume a sequence number.
pub async fn submit(
    core: &mut Core,
    caller: &Caller,
    input: &SubmitInput,
    now: i64,
) -> Result<Submitted, PbsError> {
    if caller.is_root() && !core.config.allow_root_jobs {
        return Err(PbsError::new(pbse::BADUSER, "", ""));
    }
    let seq = core.state.next_job_number;
    let next = seq + 1;
    let built =
        build_job(core, caller, seq, input, now).and_then(|built| match built.array_indices {
            None => Ok(vec![built.job]),
            Some(_) if seq > crate::model::MAX_ARRAY_NUMBER => Err(PbsError::new(
                pbse::BAD_ARRAY_REQ,
                "job numbers have outgrown job arrays",
                "",
            )),
            Some(indices) => Ok(array_members(&built.job, &indices, &core.state)),
        });
    let written = match built.as_deref() {
        Ok([job]) if job.array.is_none() => core.store.insert_job(job).await,
        Ok(members) => {
            let stored = async {
                let mut tx = core.store.begin()?;
                tx.insert_array(seq, members)?;
                tx.commit().await
            };
            stored.await
        }
        // A refused submission still uses up its number.
        Err(_) => core.store.set_next_job_number(next).await,
    };
    // Advanced even when the write failed: an error that hides a commit must not make every
    // later qsub collide with the stored job, and a number skipped is harmless.
    core.state.next_job_number = next;
    written.map_err(PbsError::system)?;
    let jobs = built?;
    let id = match jobs.as_slice() {
        [job] if job.array.is_none() => job.id(&core.state.server_name),
        _ => crate::model::array_id(seq, &core.state.server_name),
    };
    let state = jobs[0].state;
    info!(job = %id, user = %caller.user, state = state.letter(), jobs = jobs.len(), "job submitted");
    core.apply_jobs(jobs, now);
    Ok(Submitted { id, seq, state })
}

/// What one id of a `JobAction` names: a job (which `act_on` may not find) or an array's
/// unfinished sub-jobs (`None`: no such array); or why it is refused before any job is
/// looked at (a bad `-t`).
type Target = Result<Option<Vec<u64>>, PbsError>;

/// One id's outcome in a `JobAction` reply.
pub type ActionResult = (String, Option<PbsError>);

/// What qterm does to running jobs (Torque's `qterm -t`; checkpointing is not built, so no job
/// is checkpointed first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownType {
    /// They keep running on their nodes; the restarted server finds them (the default).
    Quick,
    /// Rerunnable ones are requeued (killed, as qrerun does), the others deleted.
    Immediate,
    /// Rerunnable ones are requeued, the others keep running.
    Delay,
}

/// qterm's part before the server stops: only operators and managers may stop it (Torque's
/// PBSE_PERM, with no more said); no job starts from then on (`State::stopping`); for
/// `Immediate` and `Delay`, running jobs are
/// requeued or deleted as qrerun and qdel would (committed now; their MOMs are told now, or
/// at the restarted server's Hello if the word does not reach them first).
pub async fn prepare_shutdown(
    core: &mut Core,
    caller: &Caller,
    kind: ShutdownType,
    now: i64,
) -> Result<(), PbsError> {
    if !core.state.server_attrs.is_op_or_mgr(caller) {
        return Err(PbsError::new(pbse::PERM, "", ""));
    }
    core.state.stopping = true;
    if kind == ShutdownType::Quick {
        return Ok(());
    }
    let server = core.state.server_name.clone();
    let (requeue, delete): (Vec<&Job>, Vec<&Job>) = core
        .state
        .running_jobs()
        .filter(|job| job.pending.is_none())
        .partition(|job| job.rerunable);
    let requeue: Vec<String> = requeue.iter().map(|job| job.id(&server)).collect();
    let delete: Vec<String> = match kind {
        ShutdownType::Immediate => delete.iter().map(|job| job.id(&server)).collect(),
        _ => Vec::new(),
    };
    let args = ActionArgs::default();
    for (op, ids) in [(JobOp::Rerun, requeue), (JobOp::Delete, delete)] {
        if ids.is_empty() {
            continue;
        }
        let (results, _) = job_action(core, caller, op, &ids, &args, now).await;
        for (id, error) in results {
            if let Some(e) = error {
                warn!(job = %id, code = e.code, detail = %e.detail, ?op, "not stopped for the shutdown");
            }
        }
    }
    Ok(())
}

/// Asks the job's mother superior to end its current run the way qdel does: SIGTERM to the
/// whole job, SIGKILL after `delay` (qdel `-W`, at most [`MAX_KILL_DELAY_SECS`] as `-K`),
/// else its `-K` delay or `KILL_DELAY_SECS`. qdel and qrerun differ only in what the server
/// does when the run's end is reported (see `PendingAction`).
fn delete_signal(job: &mut Job, delay: Option<u32>) -> Option<(String, ToMom)> {
    // The MOM continues a suspended job before the SIGTERM: it is no longer suspended.
    job.suspended = false;
    let delay = delay.map(|d| d.min(MAX_KILL_DELAY_SECS));
    signal_to_end(job, delay.or(job.kill_delay).unwrap_or(KILL_DELAY_SECS))
}

/// The message that ends the job's current run as qdel does, to its mother superior; also
/// resent to a MOM that reconnects before it acted on it.
pub fn kill_signal(job: &Job) -> Option<(String, ToMom)> {
    signal_to_end(job, job.kill_delay.unwrap_or(KILL_DELAY_SECS))
}

fn signal_to_end(job: &Job, kill_delay_secs: u32) -> Option<(String, ToMom)> {
    let (run, ms) = (job.current_run?, job.mother_superior()?);
    Some((
        ms.to_string(),
        ToMom::Signal {
            run_id: run,
            signal: libc::SIGTERM,
            delete: true,
            kill_delay_secs,
        },
    ))
}

/// What [`job_action`] asks the caller to do once the overlay is committed.
struct Plan {
    overlay: BTreeMap<u64, Job>,
    seeds: Vec<u64>,
    messages: Vec<(String, ToMom)>,
    run_ends: Vec<(u64, i32)>,
    /// `qdel -p`: jobs forgotten once their end is committed.
    purged: Vec<u64>,
    freed_or_queued: bool,
}

/// qdel / qhold / qrls / qsig / qrerun / qmove / qmsg on a list of ids (`all` for delete).
pub async fn job_action(
    core: &mut Core,
    caller: &Caller,
    op: JobOp,
    ids: &[String],
    args: &ActionArgs,
    now: i64,
) -> (Vec<ActionResult>, bool) {
    let server = core.state.server_name.clone();
    let privilege = core.state.server_attrs.privilege(caller);
    // Each id as shown, its jobs, and whether it named a whole array.
    let mut targets: Vec<(String, Target, bool)> = Vec::new();
    // `-t`'s indices, Torque's grammar without a slot limit.
    let range = (!args.array_range.is_empty()).then(|| {
        capstan_proto::array::parse(&args.array_range)
            .ok()
            .filter(|r| r.slot_limit.is_none())
            .map(|r| r.indices)
            .ok_or_else(|| PbsError::new(pbse::IVALREQ, "Error in specified array range", ""))
    });
    let mut all_taken = false;
    for id in ids {
        if op == JobOp::Delete && id == "all" {
            // Once is enough: a request repeating `all` must not multiply the work.
            if std::mem::replace(&mut all_taken, true) {
                continue;
            }
            for job in core.state.jobs.values() {
                if job.state != JobState::Completed
                    && (privilege >= Privilege::Operator || job.uid == caller.uid)
                {
                    targets.push((job.id(&server), Ok(Some(vec![job.seq])), false));
                }
            }
            continue;
        }
        let shown = shown_job_id(id, &server);
        let job_ref = parse_job_ref(id, &server);
        let whole_array = matches!(job_ref, Some(JobRef::Array(_)));
        let jobs = match (job_ref, &range) {
            (_, Some(Err(e))) => Err(e.clone()),
            (None, _) => Ok(None),
            (Some(JobRef::Job(_)), Some(Ok(_))) => Err(PbsError::new(
                pbse::IVALREQ,
                "-t names indices of a job array: give its id as NUMBER[]",
                "",
            )),
            (Some(JobRef::Job(key)), None) => Ok(Some(vec![key])),
            (Some(JobRef::Array(number)), range) => {
                // As Torque's: sub-jobs already complete, and indices of the range that
                // the array lacks, are passed over in silence.
                let in_range = |job: &Job| match range {
                    Some(Ok(indices)) => job
                        .array_index()
                        .is_some_and(|i| indices.binary_search(&i).is_ok()),
                    _ => true,
                };
                array_for(&core.state, caller, number).map(|members| {
                    members.map(|members| {
                        members
                            .into_iter()
                            .filter(|job| job.state != JobState::Completed && in_range(job))
                            .map(|job| job.seq)
                            .collect()
                    })
                })
            }
        };
        targets.push((shown, jobs, whole_array));
    }

    let mut plan = Plan {
        overlay: BTreeMap::new(),
        seeds: Vec::new(),
        messages: Vec::new(),
        run_ends: Vec::new(),
        purged: Vec::new(),
        freed_or_queued: false,
    };
    let mut results = Vec::with_capacity(targets.len());
    // Torque's req_deletearray ignores qdel's purge: `-p N[]` deletes the array as usual
    // (its sub-jobs, `N[3]`, are purged one by one as jobs).
    let unpurged = ActionArgs {
        purge: false,
        ..args.clone()
    };
    for (shown, jobs, whole_array) in targets {
        let args = if whole_array { &unpurged } else { args };
        let outcome = match jobs {
            Err(mut e) => {
                e.object = shown.clone();
                Err(e)
            }
            Ok(None) => Err(PbsError::new(pbse::UNKJOBID, "", shown.clone())),
            // A job, or an array's sub-jobs: the array's answer is the first refusal when
            // every sub-job refused (a qsig to an array none of whose jobs runs), else done.
            Ok(Some(jobs)) => {
                let mut first_refusal = None;
                let mut acted = jobs.is_empty();
                for seq in jobs {
                    match act_on(core, caller, op, seq, args, now, &mut plan) {
                        Ok(()) => acted = true,
                        Err(e) => {
                            first_refusal.get_or_insert(e);
                        }
                    }
                }
                match first_refusal {
                    Some(mut e) if !acted => {
                        if e.object.is_empty() {
                            e.object = shown.clone();
                        }
                        Err(e)
                    }
                    _ => Ok(()),
                }
            }
        };
        results.push((shown, outcome.err()));
    }

    if plan.overlay.is_empty() {
        send_messages(core, plan.messages);
        return (results, false);
    }
    let seeds = std::mem::take(&mut plan.seeds);
    // The jobs the request named: its dependents that the cascade ends were not deleted by
    // the requestor but aborted by their dependency, and are recorded and mailed so.
    let asked: HashSet<u64> = plan.overlay.keys().copied().collect();
    let kills = cascade(&core.state, &mut plan.overlay, seeds, now);
    // A job named twice (`qdel -p 4 4`) is purged once; an awaited sub-job not yet.
    plan.purged.sort_unstable();
    plan.purged.dedup();
    if !plan.purged.is_empty() {
        let awaited = awaited_sub_jobs(&core.state);
        plan.purged.retain(|seq| !awaited(*seq));
    }
    plan.messages.extend(kills);
    // Runs ended here (a purge, or a delete whose MOM is out of reach): fair share charged
    // up to now, while they still count as running, as `runs_ended` does.
    let usage = (!plan.run_ends.is_empty()).then(|| core.state.fairshare_at(now));
    let committed = async {
        let mut tx = core.store.begin().map_err(PbsError::system)?;
        save_overlay(&mut tx, &plan.overlay)?;
        for (run, status) in &plan.run_ends {
            tx.end_run(*run, now, *status).map_err(PbsError::system)?;
        }
        if let Some(usage) = &usage {
            let (rows, as_of) = usage.saved();
            tx.save_fairshare(&rows, as_of.unwrap_or(now))
                .map_err(PbsError::system)?;
        }
        if !plan.purged.is_empty() {
            tx.purge_jobs(&plan.purged, core.state.next_job_number)
                .map_err(PbsError::system)?;
            tx.forget_array_scripts(&emptied_arrays(&core.state, &plan.purged));
        }
        tx.commit().await.map_err(PbsError::system)
    }
    .await;
    if let Err(e) = committed {
        for r in results.iter_mut() {
            if r.1.is_none() {
                r.1 = Some(e.clone());
            }
        }
        return (results, false);
    }
    let deletion = (op == JobOp::Delete).then(|| crate::mail::Deletion {
        requestor: caller.user_at_host(),
        uid: caller.uid,
        message: args.delete_message.clone(),
    });
    let (named, cascaded): (Vec<Job>, Vec<Job>) = plan
        .overlay
        .into_values()
        .partition(|job| asked.contains(&job.seq));
    core.apply_jobs_by(named, now, deletion.as_ref());
    core.apply_jobs(cascaded, now);
    if let Some(usage) = usage {
        core.state.learning.fairshare = usage;
    }
    for seq in &plan.purged {
        info!(job = %crate::model::job_id(*seq, &server), "purging job without checking MOM");
        core.state.remove_job(*seq);
    }
    send_messages(core, plan.messages);
    (results, plan.freed_or_queued)
}

/// qalter: changes attributes of a queued, held or waiting job (and the harmless ones of a
/// running job). Only the owner, operators and managers may; a running job's resources are
/// fixed for users (Torque answers PBSE_PERM), and its output paths for everyone
/// (PBSE_MODATRRUN). A whole array (`12[]`) is its unfinished sub-jobs, changed in one
/// commit (Torque's modify_whole_array): those that refuse are left as they were, and the
/// array's answer is the first refusal only when every one refused. Returns whether the
/// scheduler should look again.
pub async fn alter(
    core: &mut Core,
    caller: &Caller,
    id: &str,
    attrs: &[Attr],
    now: i64,
) -> Result<bool, PbsError> {
    let state = &core.state;
    let server = state.server_name.as_str();
    let (targets, whole_array) = match parse_job_ref(id, server) {
        Some(JobRef::Job(seq)) => (vec![seq], false),
        Some(JobRef::Array(number)) => {
            let shown = crate::model::array_id(number, server);
            let members = match array_for(state, caller, number) {
                Ok(Some(members)) => members,
                Ok(None) => return Err(PbsError::new(pbse::UNKJOBID, "", shown)),
                Err(e) => return Err(PbsError { object: shown, ..e }),
            };
            let unfinished: Vec<u64> = members
                .iter()
                .filter(|j| j.state != JobState::Completed)
                .map(|j| j.seq)
                .collect();
            if unfinished.is_empty() {
                return Err(PbsError::new(pbse::BADSTATE, "", shown));
            }
            (unfinished, true)
        }
        None => return Err(PbsError::new(pbse::UNKJOBID, "", id)),
    };
    let mut overlay = BTreeMap::new();
    let mut deleted = Vec::new();
    let mut depend = None;
    let (mut may_start, mut altered) = (false, 0);
    // The array's answer when every sub-job refuses: a refusal of one that is not running
    // says more (a running one refuses most changes whatever they are).
    let mut refusals: [Option<PbsError>; 2] = [None, None];
    for seq in targets {
        let running = state
            .jobs
            .get(&seq)
            .is_some_and(|j| j.state == JobState::Running);
        let change = AlterChange {
            attrs,
            depend: &mut depend,
            overlay: &mut overlay,
            deleted: &mut deleted,
        };
        match alter_one(state, caller, seq, change, now) {
            Ok(starts) => {
                may_start |= starts;
                altered += 1;
            }
            Err(e) if !whole_array => return Err(e),
            Err(e) => {
                refusals[usize::from(running)].get_or_insert(e);
            }
        }
    }
    if altered == 0 {
        if let Some(mut refusal) = refusals.into_iter().flatten().next() {
            refusal.object = shown_job_id(id, server);
            return Err(refusal);
        }
    }
    // Those waiting on the jobs the change deleted (a failed `afterok` given), at once.
    let kills = cascade(state, &mut overlay, deleted, now);
    let mut tx = core.store.begin().map_err(PbsError::system)?;
    save_overlay(&mut tx, &overlay)?;
    tx.commit().await.map_err(PbsError::system)?;
    info!(job = %shown_job_id(id, &core.state.server_name), by = %caller.user_at_host(), "job altered");
    core.apply_jobs(overlay.into_values().collect(), now);
    send_messages(core, kills);
    Ok(may_start)
}

/// `qalter -W depend`'s conditions, read once: with every job they wait on however far up
/// (see [`waited_on`]), or why they are refused.
type NewDepend = Result<(Vec<Dependency>, BTreeSet<u64>), PbsError>;

/// What one qalter changes, and where [`alter_one`] puts what it changed.
struct AlterChange<'c> {
    attrs: &'c [Attr],
    /// `-W depend`, read at the first job that takes it and kept for the others (an
    /// array's thousands of sub-jobs).
    depend: &'c mut Option<NewDepend>,
    overlay: &'c mut BTreeMap<u64, Job>,
    /// Jobs the change deleted (a failed parent), whose dependents the caller settles.
    deleted: &'c mut Vec<u64>,
}

/// One job's qalter (see [`alter`]), into `change.overlay`; nothing when it is refused.
/// Returns whether the job may start now.
fn alter_one(
    state: &State,
    caller: &Caller,
    seq: u64,
    change: AlterChange<'_>,
    now: i64,
) -> Result<bool, PbsError> {
    let AlterChange {
        attrs,
        depend,
        overlay,
        deleted,
    } = change;
    let server = state.server_name.as_str();
    let shown = crate::model::job_id(seq, server);
    let Some(current) = overlay.get(&seq).or_else(|| state.jobs.get(&seq)) else {
        return Err(PbsError::new(pbse::UNKJOBID, "", shown));
    };
    let privilege = state.server_attrs.privilege(caller);
    if privilege < Privilege::Operator && current.uid != caller.uid {
        return Err(PbsError::new(pbse::PERM, "", shown));
    }
    if current.state == JobState::Completed {
        return Err(PbsError::new(pbse::BADSTATE, "", shown));
    }
    let running = current.state == JobState::Running;
    let mut job = current.clone();
    let mut resources_changed = false;
    let mut new_depend = None;
    for attr in attrs {
        let v = attr.value.as_str();
        let fail = |mut e: PbsError| {
            e.object = shown.clone();
            e
        };
        match &*attr.name {
            "Job_Name" => job.name = valid_job_name(v).map_err(fail)?,
            "Resource_List" => {
                if running {
                    // Torque lets managers stretch a running job's limits; Capstan's MOM
                    // fixes them at start, so nobody may, and users get Torque's answer.
                    return Err(if privilege < Privilege::Operator {
                        PbsError::new(pbse::PERM, "", shown)
                    } else {
                        PbsError::new(
                            pbse::MODATRRUN,
                            "resources of a running job are fixed at start in Capstan",
                            shown,
                        )
                    });
                }
                let value = resources::normalize(&attr.resource, v)
                    .map_err(|_| PbsError::new(pbse::BADATVAL, "", shown.clone()))?;
                job.resources.retain(|(n, _)| n != &attr.resource);
                job.resources.push((attr.resource.clone(), value));
                resources_changed = true;
            }
            "Output_Path" | "Error_Path" | "Join_Path" | "Keep_Files" if running => {
                return Err(PbsError::new(pbse::MODATRRUN, "", shown));
            }
            "Output_Path" | "Error_Path" => {
                // The same rules as at submission: relative to the submission directory, and
                // a directory (trailing `/`) gets Torque's `NAME.oSEQ` / `NAME.eSEQ`.
                let workdir = job
                    .variable("PBS_O_WORKDIR")
                    .unwrap_or_else(|| job.init_work_dir.clone());
                let letter = if attr.name == "Output_Path" { 'o' } else { 'e' };
                let default_file = default_output_file(&job, letter);
                let target = if letter == 'o' {
                    &mut job.output_path
                } else {
                    &mut job.error_path
                };
                *target = output_path(Some(v), &job.submit_host, &workdir, &default_file);
            }
            "Join_Path" => job.join_path = valid_join_path(v).map_err(fail)?,
            "Keep_Files" => job.keep_files = valid_keep_files(v).map_err(fail)?,
            "Mail_Points" => job.mail_points = valid_mail_points(v).map_err(fail)?,
            "Mail_Users" => job.mail_users = Some(valid_mail_users(v).map_err(fail)?),
            "Account_Name" => job.account = Some(valid_account(v)?),
            "Priority" => job.priority = valid_priority(v).map_err(fail)?,
            "Rerunable" => {
                let rerunable = parse_bool(v).ok_or_else(|| fail(bad_value("Rerunable")))?;
                // Its terminal goes with its run: a second run would have no one at it.
                if rerunable && job.interactive.is_some() {
                    return Err(fail(PbsError::new(
                        pbse::BADATVAL,
                        "an interactive job is not rerunable",
                        "",
                    )));
                }
                job.rerunable = rerunable;
            }
            "Execution_Time" => {
                job.execution_time = Some(v.parse().map_err(|_| fail(bad_value("Execution_Time")))?)
            }
            "Hold_Types" => {
                let holds = HoldTypes::parse(v).ok_or_else(|| fail(bad_value("Hold_Types")))?;
                // Judged on what changes: a user may not clear the system hold that
                // dependencies placed (`-h n`) any more than set one.
                if !may_set_holds(job.hold_types.differing(holds), privilege) {
                    return Err(PbsError::new(pbse::PERM, "", shown));
                }
                job.hold_types = holds;
                if !holds.system {
                    job.depend_hold = Some(false);
                }
            }
            "Shell_Path_List" => job.shell_path = Some(v.to_string()),
            // `qalter -W depend=...`: the job's dependencies set anew, as qsub's (a running
            // job is past them).
            "depend" => {
                if running {
                    return Err(PbsError::new(pbse::MODATRRUN, "", shown));
                }
                let (deps, reached) = depend
                    .get_or_insert_with(|| {
                        let deps = parse_depend(v, state)?;
                        let reached = waited_on(state, &deps);
                        Ok((deps, reached))
                    })
                    .as_ref()
                    .map_err(|e| fail(e.clone()))?;
                // Neither on itself nor in a circle (a parent that waits, however far up,
                // for this job): such jobs would wait for each other for ever.
                if reached.contains(&seq) {
                    return Err(PbsError::new(pbse::BADDEPEND, "", shown));
                }
                new_depend = Some(deps.clone());
            }
            _ => {
                return Err(PbsError::new(
                    pbse::NOATTR,
                    format!("qalter cannot change {}", attr.name),
                    shown,
                ))
            }
        }
    }
    if resources_changed {
        let (user, group) = (job.euser.clone(), job.egroup.clone());
        let request = feasible_request(state, &mut job.resources, &user, &group).map_err(|e| {
            // qalter names the job, not the attribute: `Illegal attribute ... for 18.vm`.
            if e.code == pbse::EXCQRESC {
                PbsError::new(e.code, e.detail, shown.clone())
            } else {
                PbsError::new(pbse::BADATVAL, "", shown.clone())
            }
        })?;
        job.request = Some(request);
    }
    if let Some(deps) = new_depend {
        // The new dependencies replace the old, and place the system hold as at submission
        // (qsub's syntax admits no empty list). A system hold already there for another
        // reason (a manager's, too many failed starts) stays theirs: met dependencies do
        // not lift it.
        let theirs = !job.hold_types.system || job.system_hold_is_dependencies();
        job.depend = deps;
        job.hold_types.system = true;
        job.depend_hold = Some(theirs);
    }
    job.mtime = now;
    if !running {
        settle(&mut job, now);
        // Parents that already finished decide at once: a failed `afterok` deletes the
        // job, and with it those that wait on it succeeding.
        evaluate_deps(
            &mut job,
            |s| overlay.get(&s).or_else(|| state.jobs.get(&s)),
            |number| sub_jobs_changed(state, overlay, number),
            now,
            server,
        );
        if job.state == JobState::Completed {
            deleted.push(seq);
        }
        overlay.insert(seq, job);
    } else {
        overlay.insert(seq, job);
    }
    Ok(!running)
}

/// qorder (Torque's req_orderjob): two jobs swap their places in line, their queue ranks,
/// and their queues when they are in different ones, each checked as a qmove into the
/// other's queue is. The caller must own both (or be an operator); neither may be running
/// or complete.
pub async fn order(
    core: &mut Core,
    caller: &Caller,
    first: &str,
    second: &str,
    now: i64,
) -> Result<(), PbsError> {
    let state = &core.state;
    let server = state.server_name.as_str();
    let privilege = state.server_attrs.privilege(caller);
    let find = |id: &str| -> Result<Job, PbsError> {
        if let Some(JobRef::Array(_)) = parse_job_ref(id, server) {
            return Err(whole_array_refused("qorder", id, server));
        }
        let job = parse_job_id(id, server)
            .and_then(|seq| state.jobs.get(&seq))
            .ok_or_else(|| PbsError::new(pbse::UNKJOBID, "", ""))?;
        if privilege < Privilege::Operator && job.uid != caller.uid {
            return Err(PbsError::new(pbse::PERM, "", ""));
        }
        if job.state == JobState::Completed {
            return Err(PbsError::new(
                pbse::BADSTATE,
                "invalid state for job - COMPLETE",
                "",
            ));
        }
        Ok(job.clone())
    };
    // As Torque's: both looked up and judged first, then whether either runs.
    let (mut one, mut other) = (find(first)?, find(second)?);
    if one.state == JobState::Running || other.state == JobState::Running {
        return Err(PbsError::new(pbse::BADSTATE, "", ""));
    }
    if one.seq == other.seq {
        return Ok(());
    }
    let ranks = (one.rank(), other.rank());
    if one.queue != other.queue {
        let queues = (one.queue.clone(), other.queue.clone());
        move_job(state, &mut one, &queues.1, now)?;
        move_job(state, &mut other, &queues.0, now)?;
    }
    one.queue_rank = ranks.1;
    other.queue_rank = ranks.0;
    one.mtime = now;
    other.mtime = now;
    let mut tx = core.store.begin().map_err(PbsError::system)?;
    tx.save_job(&one).map_err(PbsError::system)?;
    tx.save_job(&other).map_err(PbsError::system)?;
    tx.commit().await.map_err(PbsError::system)?;
    info!(
        first = %one.id(server),
        second = %other.id(server),
        by = %caller.user_at_host(),
        "jobs reordered"
    );
    core.apply_jobs(vec![one, other], now);
    Ok(())
}

pub(crate) fn send_messages(core: &Core, messages: Vec<(String, ToMom)>) {
    for (node, message) in messages {
        if let Some(n) = core.state.node(&node) {
            if !n.send(message) {
                warn!(node = %node, "MOM session closed before a message could be sent");
            }
        }
    }
}

fn act_on(
    core: &Core,
    caller: &Caller,
    op: JobOp,
    seq: u64,
    args: &ActionArgs,
    now: i64,
    plan: &mut Plan,
) -> Result<(), PbsError> {
    let state = &core.state;
    let Some(current) = plan.overlay.get(&seq).or_else(|| state.jobs.get(&seq)) else {
        return Err(PbsError::new(pbse::UNKJOBID, "", ""));
    };
    let mut job = current.clone();
    let privilege = state.server_attrs.privilege(caller);
    let owner = privilege >= Privilege::Operator || caller.uid == job.uid;
    // Torque's req_deletejob: -m and -p are for operators and managers.
    if op == JobOp::Delete && privilege < Privilege::Operator {
        if !args.delete_message.is_empty() {
            return Err(PbsError::new(
                pbse::PERM,
                "must have operator or manager privilege to use -m parameter",
                "",
            ));
        }
        if args.purge {
            return Err(PbsError::new(pbse::PERM, "", ""));
        }
    }
    if op == JobOp::Rerun {
        // Torque's req_rerunjob: the job's state first, then the caller's permission (a
        // completed job is refused below, as for every request).
        if !matches!(job.state, JobState::Running | JobState::Completed) {
            return Err(PbsError::new(
                pbse::BADSTATE,
                format!("job {} is in a bad state", job.id(&state.server_name)),
                "",
            ));
        }
        if privilege < Privilege::Operator {
            return Err(PbsError::new(
                pbse::PERM,
                "additional permissions required (ATR_DFLAG_MGWR | ATR_DFLAG_OPWR)",
                "",
            ));
        }
    }
    if !owner {
        return Err(PbsError::new(pbse::PERM, "", ""));
    }
    let ms_connected = job
        .mother_superior()
        .and_then(|n| state.node(n))
        .is_some_and(|n| n.is_up());
    if op == JobOp::Delete && args.purge {
        purge(job, ms_connected, now, plan);
        return Ok(());
    }
    if job.state == JobState::Completed && op != JobOp::Signal {
        return Err(PbsError::new(
            pbse::BADSTATE,
            "invalid state for job - COMPLETE",
            "",
        ));
    }
    match op {
        JobOp::Delete => {
            if job.state == JobState::Running {
                if ms_connected {
                    plan.messages
                        .extend(delete_signal(&mut job, args.delete_delay_secs));
                    job.pending = Some(PendingAction::Delete);
                    job.mtime = now;
                } else {
                    if let Some(run) = job.current_run {
                        plan.run_ends.push((run, EXIT_DELETED));
                    }
                    end_job(&mut job, EXIT_DELETED, now, None);
                    plan.seeds.push(seq);
                    plan.freed_or_queued = true;
                }
            } else {
                job.state = JobState::Completed;
                job.comp_time = Some(now);
                job.mtime = now;
                // Not a failed start's status (-14, -3) from before it was requeued.
                job.exit_status = None;
                plan.seeds.push(seq);
            }
        }
        JobOp::Hold => {
            let holds = requested_holds(&args.hold_types, privilege)?;
            job.hold_types.add(holds);
            job.mtime = now;
            settle(&mut job, now);
        }
        JobOp::Release => {
            let holds = requested_holds(&args.hold_types, privilege)?;
            if !job.hold_types.intersects(holds) {
                return Err(PbsError::new(pbse::BAD_STATE_TRANSITION, "", ""));
            }
            job.hold_types.remove(holds);
            if !job.hold_types.system {
                job.depend_hold = Some(false);
            }
            job.mtime = now;
            settle(&mut job, now);
            plan.freed_or_queued = true;
        }
        JobOp::Signal => {
            if job.state != JobState::Running {
                return Err(PbsError::new(pbse::BADSTATE, "", ""));
            }
            // Torque's two privileged names (compared as written, as Torque's server does).
            if let Some(suspend) = match args.signal.trim() {
                "suspend" => Some(true),
                "resume" => Some(false),
                _ => None,
            } {
                if privilege < Privilege::Operator {
                    return Err(PbsError::new(pbse::PERM, "", ""));
                }
                // Torque's MOM refuses a job not yet running there (before its RunStarted:
                // in its prologue, say), and a suspend of a suspended one; a MOM out of reach
                // cannot be told (Torque's server fails the request then too).
                // Nor one being ended (a qdel or qrerun under way).
                if job.session_id.is_none() || job.pending.is_some() || (suspend && job.suspended) {
                    return Err(PbsError::new(pbse::BADSTATE, "", ""));
                }
                if !ms_connected {
                    return Err(PbsError::new(pbse::NORELYMOM, "", ""));
                }
                if let (Some(run_id), Some(ms)) = (job.current_run, job.mother_superior()) {
                    plan.messages.push((
                        ms.to_string(),
                        ToMom::Suspend {
                            run_id,
                            suspended: suspend,
                        },
                    ));
                }
                // Resuming a job that is not suspended only continues its processes.
                if job.suspended != suspend {
                    job.suspended = suspend;
                    job.mtime = now;
                    plan.overlay.insert(seq, job);
                }
                return Ok(());
            }
            // As for suspend and resume: a signal no MOM can carry is refused, not lost.
            // (Torque's MOM judges the name, so an unreachable one is said first.)
            if !ms_connected {
                return Err(PbsError::new(pbse::NORELYMOM, "", ""));
            }
            let signal =
                parse_signal(&args.signal).ok_or_else(|| PbsError::new(pbse::UNKSIG, "", ""))?;
            if let (Some(run), Some(ms)) = (job.current_run, job.mother_superior()) {
                plan.messages.push((
                    ms.to_string(),
                    ToMom::Signal {
                        run_id: run,
                        signal,
                        delete: false,
                        kill_delay_secs: 0,
                    },
                ));
            }
            // SIGCONT, and the SIGCONT the MOM sends before a SIGTERM (a SIGKILL is a SIGTERM
            // first there), continue a suspended job: it is no longer suspended, and its
            // walltime counts again (on the MOM too).
            if job.suspended && matches!(signal, libc::SIGCONT | libc::SIGTERM | libc::SIGKILL) {
                job.suspended = false;
                job.mtime = now;
                plan.overlay.insert(seq, job);
            }
            return Ok(());
        }
        JobOp::Message => {
            // Torque's server relays a message to a running job only.
            if job.state != JobState::Running || job.session_id.is_none() {
                return Err(PbsError::new(pbse::BADSTATE, "", ""));
            }
            if !ms_connected {
                return Err(PbsError::new(pbse::NORELYMOM, "", ""));
            }
            // qmsg sends at most 256 characters; a peer gets no more room than a page.
            if args.message.len() > MAX_MESSAGE_BYTES {
                return Err(PbsError::new(pbse::BADATVAL, "message too long", ""));
            }
            if let (Some(run_id), Some(ms)) = (job.current_run, job.mother_superior()) {
                plan.messages.push((
                    ms.to_string(),
                    ToMom::Message {
                        run_id,
                        text: args.message.clone(),
                        // Neither named: stderr, as Torque's qmsg defaults.
                        stdout: args.message_stdout,
                        stderr: args.message_stderr || !args.message_stdout,
                    },
                ));
            }
            return Ok(());
        }
        JobOp::Rerun => {
            if !job.rerunable {
                return Err(PbsError::new(
                    pbse::NORERUN,
                    format!("job {} not rerunnable", job.id(&state.server_name)),
                    "",
                ));
            }
            if ms_connected {
                plan.messages.extend(delete_signal(&mut job, None));
                job.pending = Some(PendingAction::Requeue);
                job.mtime = now;
            } else {
                if let Some(run) = job.current_run {
                    plan.run_ends.push((run, EXIT_DELETED));
                }
                requeue(&mut job, now, None);
                plan.freed_or_queued = true;
            }
        }
        JobOp::Move => {
            move_job(state, &mut job, &args.destination, now)?;
            plan.freed_or_queued = true;
        }
    }
    plan.overlay.insert(seq, job);
    Ok(())
}

/// qmove: a job that has not started goes to another queue, as if submitted there: the
/// queue must exist and be enabled and admit the job's owner (its ACLs), its defaults fill
/// what the job did not ask for, and the job must still fit some node; `qtime` restarts.
fn move_job(state: &State, job: &mut Job, destination: &str, now: i64) -> Result<(), PbsError> {
    if !matches!(
        job.state,
        JobState::Queued | JobState::Held | JobState::Waiting
    ) {
        return Err(PbsError::new(pbse::BADSTATE, "", ""));
    }
    let name = capstan_proto::text::before_at(destination);
    let name = if name.is_empty() {
        state.default_queue.as_str()
    } else {
        name
    };
    let Some(queue) = state.queue(name) else {
        return Err(PbsError::new(pbse::UNKQUE, "", ""));
    };
    if queue.name == job.queue {
        return Err(PbsError::new(pbse::JOB_ALREADY_IN_QUEUE, "", ""));
    }
    if !queue.enabled {
        return Err(PbsError::new(pbse::QUNOENB, "", ""));
    }
    crate::authz::check_queue_acls(queue, &Caller::owner_of(job))?;
    // What the old queue's defaults filled in goes; the new queue's fill in (Torque's
    // svr_dequejob / svr_enquejob).
    let mut resources = job.resources.clone();
    resources.retain(|(n, _)| !job.defaulted.contains(n));
    let defaulted = apply_queue_defaults(queue, &mut resources);
    let request = feasible_request(state, &mut resources, &job.euser, &job.egroup)?;
    job.queue = queue.name.clone();
    job.resources = resources;
    job.defaulted = defaulted;
    job.request = Some(request);
    job.qtime = now;
    job.queue_rank = state.next_queue_rank(job.number());
    job.mtime = now;
    Ok(())
}

/// qhold/qrls's hold types (`u` when none are given), refused when the caller may not touch them.
fn requested_holds(hold_text: &str, privilege: Privilege) -> Result<HoldTypes, PbsError> {
    let holds = HoldTypes::parse(if hold_text.is_empty() { "u" } else { hold_text })
        .ok_or_else(|| PbsError::new(pbse::BADATVAL, "", ""))?;
    if !may_set_holds(holds, privilege) {
        return Err(PbsError::new(pbse::PERM, "", ""));
    }
    Ok(holds)
}

/// A run ended for good: C with its exit status.
fn end_job(job: &mut Job, exit_status: i32, now: i64, comment: Option<String>) {
    job.state = JobState::Completed;
    job.exit_status = Some(exit_status);
    job.comp_time = Some(now);
    job.mtime = now;
    job.current_run = None;
    job.pending = None;
    job.suspended = false;
    if let Some(start) = job.start_time {
        job.total_runtime = Some((now - start).max(0) as f64);
    }
    if comment.is_some() {
        job.comment = comment;
    }
}

/// A run ended but the job runs again: back to Q (or H/W), no hosts. It keeps its place in
/// line (`queue_rank`), as Torque's does.
fn requeue(job: &mut Job, now: i64, comment: Option<String>) {
    job.state = JobState::Queued;
    job.exec_host.clear();
    job.current_run = None;
    job.pending = None;
    job.suspended = false;
    job.session_id = None;
    job.mtime = now;
    job.qtime = now;
    job.etime = Some(now);
    settle(job, now);
    if comment.is_some() {
        job.comment = comment;
    }
}

/// Learned-speed evidence from a run that just ended: (node, shape, walltime secs, end),
/// only for a normal end (exit status 0, nothing pending) on a single node.
fn speed_sample(job: &Job, exit_status: i32, end_time: i64) -> Option<(String, String, u64, i64)> {
    if exit_status != 0 || job.pending.is_some() || job.exec_host.len() != 1 {
        return None;
    }
    // What the server saw elapse bounds what the MOM reports (a second's rounding aside).
    let elapsed = job
        .start_time
        .map(|s| end_time.saturating_sub(s).max(0) as u64);
    let walltime = job
        .resources_used
        .map(|u| u.walltime_secs)
        .filter(|w| *w > 0)
        .map(|w| elapsed.map_or(w, |e| w.min(e.saturating_add(1))))
        .or(elapsed)
        .filter(|w| *w > 0)?;
    let shape = scheduler::speed_learning::shape_key(
        &job.name,
        job.resource("nodes"),
        job.resource("ppn"),
        job.walltime_secs(),
    );
    Some((job.exec_host[0].node.clone(), shape, walltime, end_time))
}

/// A MOM's report that a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    pub run_id: u64,
    pub exit_status: i32,
    pub used: Option<ResourcesUsed>,
    pub end_time: i64,
    pub session_id: i32,
    pub message: String,
    /// Torque's "Unable to copy file ..." texts for output the MOM could not deliver: the
    /// job's comment from now on, and mailed to its owner.
    pub copy_errors: Vec<String>,
}

impl RunEnd {
    /// The comment the copy errors leave on the job (one line), if any.
    fn comment(&self) -> Option<String> {
        (!self.copy_errors.is_empty()).then(|| self.copy_errors.join(" ").replace('\n', " "))
    }
}

/// Commits the ends of a batch of runs (C or requeue) and resolves their dependents, in one
/// transaction (group commit: a MOM that reports many ends at once pays one fsync).
/// Idempotent: unknown or already-finished runs change nothing. Returns true when a job left
/// R (slots were freed).
pub async fn runs_ended(
    core: &mut Core,
    node: &str,
    ends: &[RunEnd],
    now: i64,
) -> Result<bool, PbsError> {
    let by_run: HashMap<u64, u64> = core
        .state
        .running_jobs()
        .filter_map(|j| j.current_run.map(|r| (r, j.seq)))
        .collect();
    let mut overlay = BTreeMap::new();
    let mut seeds = Vec::new();
    let mut run_ends = Vec::new();
    let mut samples = Vec::new();
    let mut undelivered = Vec::new();
    for end in ends {
        // Unknown, lost or already finished runs: every path that ends a run also closes
        // its run record, so there is nothing to write.
        let Some(job) = by_run.get(&end.run_id).and_then(|s| core.state.jobs.get(s)) else {
            continue;
        };
        if overlay.contains_key(&job.seq) {
            continue;
        }
        if job.mother_superior() != Some(node) {
            warn!(
                node,
                run = end.run_id,
                "run end reported by a node that is not its mother superior"
            );
            continue;
        }
        let mut job = job.clone();
        let id = job.id(&core.state.server_name);
        // 0 when no session ever started (a prologue that aborted the job), as Torque shows it.
        if end.session_id > 0 || job.session_id.is_none() {
            job.session_id = Some(end.session_id.max(0));
        }
        if let Some(used) = end.used {
            job.resources_used = Some(used);
        } else if job.resources_used.is_none() {
            job.resources_used = Some(ResourcesUsed::default());
        }
        let end_time = mom_time(end.end_time, now).unwrap_or(now);
        // JOB_EXEC_RETRY_PROLOGUE too: the prologue failed, so the script never ran, and
        // Torque requeues the job.
        let never_ran = matches!(end.exit_status, job_exec::RETRY | job_exec::RETRY_PROLOGUE);
        if !never_ran {
            job.failed_starts = 0;
        }
        match job.pending {
            Some(PendingAction::Requeue) => {
                requeue(&mut job, now, end.comment());
                info!(job = %id, "job requeued");
            }
            // Lost on its node (JOB_EXEC_INITABT: killed because its MOM was gone, or its
            // node rebooted under it): as a lost run, requeued when rerunnable; otherwise it
            // ends below with that status. The MOM's message says which.
            None if end.exit_status == job_exec::INITABT && job.rerunable => {
                let why = if end.message.is_empty() {
                    format!("Job requeued: its pbs_mom on {node} was gone too long")
                } else {
                    format!("Job requeued: run lost on {node}: {}", end.message)
                };
                info!(job = %id, "job requeued: run lost on its node ({why})");
                requeue(&mut job, now, Some(why));
            }
            None if never_ran => {
                job.failed_starts += 1;
                let held = job.failed_starts >= MAX_FAILED_STARTS;
                let why = match (held, end.message.as_str()) {
                    (true, "") => Some("job held, too many failed attempts to run".to_string()),
                    (true, last) => Some(format!(
                        "job held, too many failed attempts to run (last: {last})"
                    )),
                    (false, "") => None,
                    (false, message) => Some(format!("Job requeued: {message}")),
                };
                if held {
                    // A fresh count once a manager releases it (`qrls -h s`).
                    job.failed_starts = 0;
                    job.hold_types.system = true;
                    warn!(job = %id, "job held: {MAX_FAILED_STARTS} starts in a row never ran its script");
                } else {
                    info!(job = %id, "job requeued: its script never ran");
                }
                requeue(&mut job, now, why);
                // Behind the jobs in line: else a job whose starts keep failing would go
                // first again each time.
                job.queue_rank = core.state.next_queue_rank(job.number());
                // Torque shows why the last start failed (-14: the prologue asked for a retry).
                job.exit_status = Some(end.exit_status);
            }
            pending => {
                if let Some(sample) = speed_sample(&job, end.exit_status, end_time) {
                    samples.push(sample);
                }
                // A job deleted while its MOM restarted: the run never started, and qdel wins.
                // Killed without its MOM (INITABT) after a qdel it never acted on: deleted.
                let exit_status = match pending {
                    Some(PendingAction::Delete)
                        if never_ran || end.exit_status == job_exec::INITABT =>
                    {
                        EXIT_DELETED
                    }
                    _ => end.exit_status,
                };
                end_job(&mut job, exit_status, end_time, end.comment());
                job.mtime = now;
                info!(job = %id, exit_status, "job completed");
            }
        }
        if !end.message.is_empty() {
            info!(job = %id, "{}", end.message);
        }
        run_ends.push((end.run_id, end_time, end.exit_status));
        if !end.copy_errors.is_empty() {
            undelivered.push((
                job.seq,
                crate::mail::undelivered(&id, node, &end.copy_errors),
            ));
        }
        seeds.push(job.seq);
        overlay.insert(job.seq, job);
    }
    if overlay.is_empty() {
        return Ok(false);
    }
    let kills = cascade(&core.state, &mut overlay, seeds, now);
    // Fair share charged up to this end (the ending jobs still count as running here).
    let usage = core.state.fairshare_at(now);
    let mut tx = core.store.begin().map_err(PbsError::system)?;
    for (run, end_time, status) in run_ends {
        tx.end_run(run, end_time, status)
            .map_err(PbsError::system)?;
    }
    save_overlay(&mut tx, &overlay)?;
    let (rows, as_of) = usage.saved();
    tx.save_fairshare(&rows, as_of.unwrap_or(now))
        .map_err(PbsError::system)?;
    for (node, shape, walltime, ended_at) in &samples {
        tx.insert_speed_sample(node, shape, *walltime, *ended_at)
            .map_err(PbsError::system)?;
    }
    tx.commit().await.map_err(PbsError::system)?;
    // As Torque's: the output's fate (its stage-out) is told before the end mail.
    for (seq, notice) in &undelivered {
        if let Some(job) = overlay.get(seq) {
            core.mail(notice, job);
        }
    }
    core.apply_jobs(overlay.into_values().collect(), now);
    send_messages(core, kills);
    core.state.learning.fairshare = usage;
    if !samples.is_empty() {
        for (node, shape, walltime, _) in &samples {
            core.state
                .learning
                .speed_samples
                .add(shape, node, *walltime);
        }
        core.state.refresh_learned_speeds();
    }
    Ok(true)
}

/// A time from a MOM's clock, unless it is missing (0) or later than the server's `now`: a
/// future end would keep a completed job past `keep_completed` (or wrap its purge time), a
/// future start hold its slots in the scheduler's eyes for ever.
fn mom_time(t: i64, now: i64) -> Option<i64> {
    (1..=now).contains(&t).then_some(t)
}

/// A MOM's report that a run started: memory only (nothing is acknowledged on it; the next
/// commit of the job carries it).
/// Only the run's mother superior speaks for it; a start time in the future is not taken
/// (it would hold the job's slots in the scheduler's eyes for ever).
pub fn run_started(
    core: &mut Core,
    node: &str,
    run_id: u64,
    session_id: i32,
    start_time: i64,
    now: i64,
) {
    core.state.update_running_jobs(|job| {
        if job.current_run == Some(run_id) && job.mother_superior() == Some(node) {
            job.session_id = Some(session_id);
            if let Some(start_time) = mom_time(start_time, now) {
                job.start_time = Some(start_time);
            }
        }
    });
}

/// Resource usage reported with a node's status (memory only), for the runs `node` is the
/// mother superior of.
pub fn record_usage(core: &mut Core, node: &str, usage: &[(u64, ResourcesUsed)]) {
    if usage.is_empty() {
        return;
    }
    let by_run: HashMap<u64, ResourcesUsed> = usage.iter().copied().collect();
    core.state.update_running_jobs(|job| {
        if job.mother_superior() != Some(node) {
            return;
        }
        if let Some(used) = job.current_run.and_then(|r| by_run.get(&r)) {
            job.resources_used = Some(*used);
        }
    });
}

/// Ends (or requeues, when Rerunable) the runs of `seqs`, lost with node `node`.
pub async fn lose_jobs(
    core: &mut Core,
    seqs: &[u64],
    node: &str,
    now: i64,
) -> Result<(), PbsError> {
    let mut overlay = BTreeMap::new();
    let mut run_ends = Vec::new();
    let mut seeds = Vec::new();
    for seq in seqs {
        let Some(job) = core.state.jobs.get(seq) else {
            continue;
        };
        if job.state != JobState::Running {
            continue;
        }
        let mut job = job.clone();
        if let Some(run) = job.current_run {
            run_ends.push(run);
        }
        let id = job.id(&core.state.server_name);
        match job.pending {
            Some(PendingAction::Delete) => end_job(&mut job, EXIT_DELETED, now, None),
            _ if job.rerunable || job.pending == Some(PendingAction::Requeue) => {
                warn!(job = %id, node, "run lost; job requeued");
                requeue(
                    &mut job,
                    now,
                    Some(format!("Job requeued: node {node} went down")),
                )
            }
            _ => {
                warn!(job = %id, node, "run lost; job ended");
                end_job(
                    &mut job,
                    job_exec::FAIL1,
                    now,
                    Some(format!("Job lost: node {node} went down")),
                )
            }
        }
        seeds.push(job.seq);
        overlay.insert(job.seq, job);
    }
    if overlay.is_empty() {
        return Ok(());
    }
    let kills = cascade(&core.state, &mut overlay, seeds, now);
    let mut tx = core.store.begin().map_err(PbsError::system)?;
    for run in run_ends {
        tx.end_run(run, now, job_exec::FAIL1)
            .map_err(PbsError::system)?;
    }
    save_overlay(&mut tx, &overlay)?;
    tx.commit().await.map_err(PbsError::system)?;
    core.apply_jobs(overlay.into_values().collect(), now);
    send_messages(core, kills);
    Ok(())
}

/// The running jobs whose mother superior is `node`.
pub fn jobs_on_node(state: &State, node: &str) -> Vec<u64> {
    state
        .running_jobs()
        .filter(|j| j.mother_superior() == Some(node))
        .map(|j| j.seq)
        .collect()
}

/// `qdel -p`, Torque's forced_jobpurge: the job is ended as deleted (exit status 271) and
/// forgotten at once, in whatever state, a completed one too, without waiting for its MOM:
/// the way out for a job whose node will not answer. Unlike Torque's, which leaves an
/// orphan to the MOM, a mother superior still connected is sent CancelRuns (it kills the
/// run with SIGKILL and forgets it; the server waits for nothing); its slots are free
/// either way. The accounting log still gets the job's `E` (or, not started, `D`) record,
/// which Torque's purge skips: a run's usage is not lost to the site's accounting. A
/// sub-job an `*array` condition waits on is ended but kept until the condition is judged
/// (see [`awaited_sub_jobs`]).
fn purge(mut job: Job, ms_connected: bool, now: i64, plan: &mut Plan) {
    if job.state != JobState::Completed {
        if let Some(run) = job.current_run {
            plan.run_ends.push((run, EXIT_DELETED));
            if let Some(ms) = job.mother_superior().filter(|_| ms_connected) {
                plan.messages
                    .push((ms.to_string(), ToMom::Cancel(vec![run])));
            }
        }
        end_job(&mut job, EXIT_DELETED, now, None);
        plan.seeds.push(job.seq);
        plan.freed_or_queued = true;
    }
    plan.purged.push(job.seq);
    plan.overlay.insert(job.seq, job);
}

/// Whether a job (by number) is a sub-job of an array an `*array` condition still waits on.
/// Such ended sub-jobs are kept, whatever purges: the condition is judged on all of them
/// (Torque keeps the array's counts instead), and forgetting a failed one would let
/// `afterokarray` pass.
fn awaited_sub_jobs(state: &State) -> impl Fn(u64) -> bool {
    let awaited_arrays: HashSet<u64> = state
        .jobs_awaiting_dependencies()
        .flat_map(|j| j.depend.iter())
        .filter(|d| d.kind.on_array() && !d.satisfied)
        .map(|d| d.seq)
        .collect();
    move |seq| {
        crate::model::member_of(seq).is_some_and(|(array, _)| awaited_arrays.contains(&array))
    }
}

/// The arrays none of whose sub-jobs stays once `forgotten` go: their script goes with the
/// last of them.
fn emptied_arrays(state: &State, forgotten: &[u64]) -> Vec<u64> {
    let mut per_array: BTreeMap<u64, usize> = BTreeMap::new();
    for (array, _) in forgotten
        .iter()
        .filter_map(|seq| crate::model::member_of(*seq))
    {
        *per_array.entry(array).or_default() += 1;
    }
    per_array
        .into_iter()
        .filter(|(array, n)| state.sub_jobs(*array).count() == *n)
        .map(|(array, _)| array)
        .collect()
}

/// Forgets completed jobs older than `keep_completed` seconds.
pub async fn purge_completed(core: &mut Core, now: i64) -> Result<usize, PbsError> {
    let keep = core.config.keep_completed as i64;
    let awaited = awaited_sub_jobs(&core.state);
    let old: Vec<u64> = core
        .state
        .jobs
        .values()
        .filter(|j| {
            j.state == JobState::Completed
                && j.comp_time.unwrap_or(j.mtime).saturating_add(keep) <= now
                && !awaited(j.seq)
        })
        .map(|j| j.seq)
        .collect();
    if old.is_empty() {
        return Ok(0);
    }
    let emptied = emptied_arrays(&core.state, &old);
    let mut tx = core.store.begin().map_err(PbsError::system)?;
    tx.purge_jobs(&old, core.state.next_job_number)
        .map_err(PbsError::system)?;
    tx.forget_array_scripts(&emptied);
    tx.commit().await.map_err(PbsError::system)?;
    for seq in &old {
        core.state.remove_job(*seq);
    }
    Ok(old.len())
}

/// W jobs whose execution time has come: returns the changed jobs (for the dispatcher's
/// transaction).
pub fn due_waiting(state: &State, now: i64) -> Vec<Job> {
    state
        .pending_jobs()
        .filter(|j| j.state == JobState::Waiting && j.execution_time.is_none_or(|t| t <= now))
        .map(|j| {
            let mut j = j.clone();
            j.mtime = now;
            settle(&mut j, now);
            j
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::HostSlots;

    fn job(seq: u64, state: JobState) -> Job {
        let mut j = crate::store::tests::sample_job(seq);
        j.state = state;
        j
    }

    /// Job `seq`, held by the system for its one unmet dependency `kind` on `parent`.
    fn held_on(seq: u64, kind: DepKind, parent: u64) -> Job {
        let mut child = job(seq, JobState::Held);
        child.hold_types.system = true;
        child.depend = vec![Dependency {
            kind,
            seq: parent,
            satisfied: false,
        }];
        child
    }

    async fn core_with_jobs(dir: &std::path::Path, jobs: Vec<Job>) -> Core {
        let mut store = crate::store::Store::open(&dir.join("db"), false)
            .await
            .unwrap();
        for j in &jobs {
            store.insert_job(j).await.unwrap();
        }
        let mut config = crate::config::Config::new(dir.to_path_buf(), "vm".into());
        config.durable = false;
        let mut state = State::new(
            "vm",
            10,
            "batch",
            vec![],
            vec![],
            crate::authz::ServerAttrs::first_start("h", None),
        );
        state.apply_jobs(jobs);
        Core {
            state,
            store,
            accounting: crate::accounting::Accounting::new(config.accounting_dir()),
            mailer: crate::mail::Mailer::default(),
            config: std::sync::Arc::new(config),
        }
    }

    /// Enabled, started `queues` and one node `n1` (np=2), for submissions to land.
    fn open_queues_and_a_node(core: &mut Core, queues: &[&str]) {
        for name in queues {
            core.state.queues.push(crate::model::Queue {
                enabled: true,
                started: true,
                ..crate::model::Queue::new(name, 0)
            });
        }
        let nodes = crate::nodes_file::parse("n1 np=2\n").unwrap();
        core.state.nodes = nodes
            .into_iter()
            .map(|def| {
                crate::state::NodeRuntime::new(def, Default::default(), std::time::Instant::now())
            })
            .collect();
    }

    fn user(uid: u32) -> Caller {
        Caller {
            uid,
            user: if uid == 0 {
                "root".into()
            } else {
                format!("u{uid}")
            },
            group: "g".into(),
            host: "h".into(),
        }
    }

    /// [`job_action`] on one id, as the tests write it: its results.
    async fn act(
        core: &mut Core,
        caller: &Caller,
        op: JobOp,
        id: &str,
        args: &ActionArgs,
        now: i64,
    ) -> Vec<ActionResult> {
        job_action(core, caller, op, &[id.to_string()], args, now)
            .await
            .0
    }

    fn code(r: &ActionResult) -> Option<(i32, String)> {
        r.1.as_ref().map(|e| (e.code, e.detail.clone()))
    }

    /// The accounting records written so far, every day's file.
    fn accounting_records(core: &Core) -> String {
        let Ok(files) = std::fs::read_dir(core.config.accounting_dir()) else {
            return String::new();
        };
        files
            .filter_map(|f| std::fs::read_to_string(f.ok()?.path()).ok())
            .collect()
    }

    /// The qdel's requestor deleted the job it named; the dependent the cascade ends was
    /// aborted by its dependency (`A`, and the dependency mail, not the qdel's).
    #[tokio::test]
    async fn a_qdel_records_its_cascade_as_aborted_by_the_dependency() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = vec![job(14, JobState::Queued), held_on(16, DepKind::AfterOk, 14)];
        let mut core = core_with_jobs(dir.path(), jobs).await;
        let results = act(
            &mut core,
            &user(0),
            JobOp::Delete,
            "14",
            &ActionArgs::default(),
            150,
        )
        .await;
        assert_eq!(code(&results[0]), None);
        assert_eq!(core.state.jobs[&16].state, JobState::Completed);
        let records = accounting_records(&core);
        assert!(records.contains(";D;14.vm;requestor=root@h\n"), "{records}");
        assert!(records.contains(";A;16.vm;queue=batch\n"), "{records}");
        assert!(!records.contains(";D;16.vm;"), "{records}");
    }

    /// A qmove of several jobs ranks each behind every job in line, and apart; qorder swaps
    /// two jobs' ranks and queues, and the swap is stored.
    #[tokio::test]
    async fn queue_ranks_are_distinct_and_qorder_swaps_them() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = (1..=3).map(|seq| job(seq, JobState::Queued)).collect();
        let mut core = core_with_jobs(dir.path(), jobs).await;
        open_queues_and_a_node(&mut core, &["batch", "dq"]);
        let root = user(0);
        let to_dq = ActionArgs {
            destination: "dq".into(),
            ..ActionArgs::default()
        };
        let ids = ["1".to_string(), "2".to_string()];
        let (results, _) = job_action(&mut core, &root, JobOp::Move, &ids, &to_dq, 50).await;
        assert!(results.iter().all(|r| r.1.is_none()), "{results:?}");
        let rank = |core: &Core, seq: u64| core.state.jobs[&seq].rank();
        assert_ne!(rank(&core, 1), rank(&core, 2));
        assert!(rank(&core, 1).min(rank(&core, 2)) > rank(&core, 3));
        let (one, three) = (rank(&core, 1), rank(&core, 3));
        order(&mut core, &root, "1", "3", 60).await.unwrap();
        assert_eq!((rank(&core, 1), rank(&core, 3)), (three, one));
        assert_eq!(core.state.jobs[&1].queue, "batch");
        assert_eq!(core.state.jobs[&3].queue, "dq");
        let loaded = core.store.load().await.unwrap();
        let stored = |seq: u64| loaded.jobs.iter().find(|j| j.seq == seq).unwrap().rank();
        assert_eq!((stored(1), stored(3)), (three, one));
    }

    #[tokio::test]
    async fn a_refused_submission_uses_up_its_number_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core_with_jobs(dir.path(), vec![job(3, JobState::Queued)]).await;
        let input = SubmitInput {
            attrs: Vec::new(),
            script: b"true\n".to_vec(),
            destination: "nosuchqueue".into(),
            group: None,
            interactive: None,
        };
        let refused = submit(&mut core, &user(1000), &input, 100)
            .await
            .unwrap_err();
        assert_eq!(refused.code, pbse::UNKQUE);
        assert_eq!(core.state.next_job_number, 11);
        let loaded = core.store.load().await.unwrap();
        assert_eq!(loaded.jobs.len(), 1);
        assert_eq!(loaded.next_job_number, Some(11));
    }

    #[tokio::test]
    /// `Submitted::may_start` (what wakes the scheduler, see `api.rs`) is `state == Queued`:
    /// what matters is which state each kind of submission settles in.
    async fn submissions_settle_in_the_state_that_decides_the_wake_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut done = job(4, JobState::Completed);
        done.exit_status = Some(0);
        let mut core = core_with_jobs(dir.path(), vec![job(3, JobState::Queued), done]).await;
        open_queues_and_a_node(&mut core, &["batch"]);
        let now = 1_000_000;
        let cases: [(Vec<Attr>, JobState); 6] = [
            (vec![], JobState::Queued),
            (vec![Attr::text("Hold_Types", "u")], JobState::Held),
            (
                vec![Attr::text("Execution_Time", (now + 600).to_string())],
                JobState::Waiting,
            ),
            // Settled at submit: a time already past, a dependency already met.
            (
                vec![Attr::text("Execution_Time", (now - 5).to_string())],
                JobState::Queued,
            ),
            (vec![Attr::text("depend", "afterok:3.vm")], JobState::Held),
            (vec![Attr::text("depend", "afterok:4.vm")], JobState::Queued),
        ];
        for (attrs, state) in cases {
            let input = SubmitInput {
                attrs: attrs.clone(),
                script: b"true\n".to_vec(),
                destination: String::new(),
                group: None,
                interactive: None,
            };
            let submitted = submit(&mut core, &user(1000), &input, now).await.unwrap();
            assert_eq!(submitted.state, state, "{attrs:?}");
        }
    }

    #[tokio::test]
    async fn pbs_o_queue_is_the_queue_the_job_went_to_unless_qsub_named_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core_with_jobs(dir.path(), Vec::new()).await;
        open_queues_and_a_node(&mut core, &["batch", "dq"]);
        core.state.default_queue = "dq".into();
        let cases = [
            ("", "PBS_O_HOME=/h", "PBS_O_QUEUE=dq,PBS_O_HOME=/h"),
            ("", "", "PBS_O_QUEUE=dq"),
            (
                "batch",
                "PBS_O_QUEUE=batch,PBS_O_HOME=/h",
                "PBS_O_QUEUE=batch,PBS_O_HOME=/h",
            ),
        ];
        for (destination, given, stored) in cases {
            let input = SubmitInput {
                attrs: vec![Attr::text("Variable_List", given)],
                script: b"true\n".to_vec(),
                destination: destination.into(),
                group: None,
                interactive: None,
            };
            let submitted = submit(&mut core, &user(1000), &input, 100).await.unwrap();
            let seq: u64 = submitted.id.split('.').next().unwrap().parse().unwrap();
            assert_eq!(core.state.jobs[&seq].variable_list, stored, "{given}");
        }
    }

    #[tokio::test]
    async fn purged_jobs_leave_their_numbers_used() {
        let dir = tempfile::tempdir().unwrap();
        let completed = |seq| {
            let mut j = job(seq, JobState::Completed);
            j.comp_time = Some(100);
            j
        };
        let mut core = core_with_jobs(dir.path(), vec![completed(3), completed(4)]).await;
        assert_eq!(core.state.next_job_number, 10);
        let expired = 100 + core.config.keep_completed as i64;
        let purged = purge_completed(&mut core, expired).await.unwrap();
        assert_eq!(purged, 2);
        let loaded = core.store.load().await.unwrap();
        assert!(loaded.jobs.is_empty());
        assert_eq!(loaded.next_job_number, Some(10));
    }

    /// Job `seq`, running since 100 as run `run` on one slot of `node`.
    fn running_on(seq: u64, node: &str, run: u64) -> Job {
        let mut j = job(seq, JobState::Running);
        j.exec_host = vec![HostSlots {
            node: node.into(),
            slots: vec![0],
        }];
        j.current_run = Some(run);
        j.start_time = Some(100);
        j
    }

    #[test]
    fn qdel_waits_the_jobs_own_kill_delay_before_sigkill() {
        let delay = |job: &mut Job| match delete_signal(job, None) {
            Some((
                node,
                ToMom::Signal {
                    kill_delay_secs, ..
                },
            )) => (node, kill_delay_secs),
            other => panic!("{other:?}"),
        };
        let mut job = running_on(1, "n1", 10);
        assert_eq!(delay(&mut job), ("n1".to_string(), KILL_DELAY_SECS));
        job.kill_delay = Some(30);
        assert_eq!(delay(&mut job), ("n1".to_string(), 30));
    }

    #[tokio::test]
    async fn a_normal_end_saves_a_speed_sample_and_fair_share() {
        let dir = tempfile::tempdir().unwrap();
        let mut two_nodes = running_on(3, "n1", 30);
        two_nodes.exec_host.push(HostSlots {
            node: "n2".into(),
            slots: vec![0],
        });
        let jobs = vec![running_on(1, "n1", 10), running_on(2, "n2", 20), two_nodes];
        let mut core = core_with_jobs(dir.path(), jobs).await;
        core.state.learning.fairshare.advance(100, []);
        let end = |run_id, exit_status| RunEnd {
            run_id,
            exit_status,
            end_time: 160,
            ..RunEnd::default()
        };
        assert!(runs_ended(&mut core, "n1", &[end(10, 0), end(30, 0)], 160)
            .await
            .unwrap());
        assert!(runs_ended(&mut core, "n2", &[end(20, 1)], 160)
            .await
            .unwrap());
        let loaded = core.store.load().await.unwrap();
        // Only job 1: job 2 failed, job 3 spans two nodes.
        assert_eq!(loaded.speed_samples.len(), 1);
        let (shape, node, walltime) = &loaded.speed_samples[0];
        assert_eq!((node.as_str(), *walltime), ("n1", 60));
        assert!(shape.starts_with("job.sh|"), "{shape}");
        // Three jobs of user u held 1 + 1 + 2 slots for 60 s.
        assert_eq!(loaded.fairshare.len(), 1);
        let (user, usage, as_of) = &loaded.fairshare[0];
        assert_eq!((user.as_str(), *as_of), ("u", 160));
        assert!((usage - 240.0).abs() < 1.0, "{usage}");
    }

    #[tokio::test]
    async fn a_mom_speaks_only_for_its_own_runs_and_not_from_the_future() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core_with_jobs(dir.path(), vec![running_on(1, "n1", 10)]).await;
        let used = |walltime_secs| ResourcesUsed {
            walltime_secs,
            ..ResourcesUsed::default()
        };
        // Another node's reports about run 10 change nothing.
        run_started(&mut core, "n2", 10, 77, 150, 200);
        record_usage(&mut core, "n2", &[(10, used(5))]);
        let job = &core.state.jobs[&1];
        assert_eq!((job.session_id, job.start_time), (None, Some(100)));
        assert_eq!(job.resources_used, None);
        assert!(!runs_ended(
            &mut core,
            "n2",
            &[RunEnd {
                run_id: 10,
                ..RunEnd::default()
            }],
            200
        )
        .await
        .unwrap());
        // Its own node's are taken, but not a start time in the future.
        run_started(&mut core, "n1", 10, 77, i64::MAX, 200);
        record_usage(&mut core, "n1", &[(10, used(5))]);
        let job = &core.state.jobs[&1];
        assert_eq!((job.session_id, job.start_time), (Some(77), Some(100)));
        assert_eq!(job.resources_used, Some(used(5)));
        // An end time in the future is the server's now; the reported walltime is bounded by
        // what the server saw elapse; the purge still waits keep_completed.
        let end = RunEnd {
            run_id: 10,
            end_time: i64::MAX,
            used: Some(used(u64::MAX)),
            ..RunEnd::default()
        };
        assert!(runs_ended(&mut core, "n1", &[end], 200).await.unwrap());
        assert_eq!(core.state.jobs[&1].comp_time, Some(200));
        let loaded = core.store.load().await.unwrap();
        assert_eq!(loaded.speed_samples[0].2, 101);
        let keep = core.config.keep_completed as i64;
        assert_eq!(purge_completed(&mut core, 200 + keep - 1).await.unwrap(), 0);
        assert_eq!(purge_completed(&mut core, 200 + keep).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_running_dependent_whose_dependency_fails_is_deleted_as_qdel_would() {
        let dir = tempfile::tempdir().unwrap();
        // Job 2 waits on job 1's success but was released by hand and runs on n2.
        let mut child = running_on(2, "n2", 20);
        child.depend = vec![crate::model::Dependency {
            kind: crate::model::DepKind::AfterOk,
            seq: 1,
            satisfied: false,
        }];
        let jobs = vec![running_on(1, "n1", 10), child];
        let mut core = core_with_jobs(dir.path(), jobs).await;
        // Job 1 fails: job 2 is signalled (SIGTERM, then SIGKILL), not marked done while it runs.
        let mut overlay = BTreeMap::new();
        let mut parent = core.state.jobs[&1].clone();
        end_job(&mut parent, 1, 150, None);
        overlay.insert(1, parent);
        let kills = cascade(&core.state, &mut overlay, vec![1], 150);
        assert!(matches!(
            kills.as_slice(),
            [(node, ToMom::Signal { run_id: 20, signal: libc::SIGTERM, delete: true, .. })] if node == "n2"
        ));
        let child = &overlay[&2];
        assert_eq!(child.state, JobState::Running);
        assert_eq!(child.pending, Some(PendingAction::Delete));
        assert_eq!(
            child.comment.as_deref(),
            Some("Job deleted as result of dependency on job 1.vm")
        );
        // Once pending, a second look signals nothing again.
        core.state.apply_jobs(overlay.into_values().collect());
        let mut overlay = BTreeMap::new();
        assert!(cascade(&core.state, &mut overlay, vec![1], 151).is_empty());
        // Its end (the MOM killed it for the delete) completes it with qdel's status.
        let end = RunEnd {
            run_id: 20,
            exit_status: EXIT_DELETED,
            end_time: 152,
            ..RunEnd::default()
        };
        assert!(runs_ended(&mut core, "n2", &[end], 152).await.unwrap());
        let child = &core.state.jobs[&2];
        assert_eq!(
            (child.state, child.exit_status),
            (JobState::Completed, Some(EXIT_DELETED))
        );
        assert_eq!(
            child.comment.as_deref(),
            Some("Job deleted as result of dependency on job 1.vm")
        );
    }

    #[tokio::test]
    async fn operators_suspend_and_resume_running_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let mut started = running_on(1, "n1", 10);
        started.session_id = Some(4321);
        let starting = running_on(3, "n1", 30);
        let jobs = vec![started, job(2, JobState::Queued), starting];
        let mut core = core_with_jobs(dir.path(), jobs).await;
        let sig = |name: &str| ActionArgs::test("", name);
        // n1's MOM out of reach: it cannot be told.
        core.state.nodes = crate::nodes_file::parse("n1 np=2\n")
            .unwrap()
            .into_iter()
            .map(|def| {
                crate::state::NodeRuntime::new(def, Default::default(), std::time::Instant::now())
            })
            .collect();
        let r = act(&mut core, &user(0), JobOp::Signal, "1", &sig("suspend"), 5).await;
        assert_eq!(code(&r[0]).map(|c| c.0), Some(pbse::NORELYMOM));
        let (tx, mut to_mom) = tokio::sync::mpsc::unbounded_channel();
        core.state.nodes[0].session = Some(crate::state::SessionHandle { id: 1, tx });
        let mut signal = async |caller: u32, id: &str, name: &str| {
            let r = act(&mut core, &user(caller), JobOp::Signal, id, &sig(name), 5).await;
            code(&r[0])
        };
        // The owner (uid 1000) may signal, not suspend; a queued job is refused first.
        assert_eq!(
            signal(1000, "2", "suspend").await.map(|c| c.0),
            Some(pbse::BADSTATE)
        );
        assert_eq!(
            signal(1000, "1", "suspend").await,
            Some((pbse::PERM, String::new()))
        );
        // Not yet running on its MOM (no RunStarted: in its prologue, say).
        assert_eq!(
            signal(0, "3", "suspend").await.map(|c| c.0),
            Some(pbse::BADSTATE)
        );
        assert_eq!(signal(0, "1", "suspend").await, None);
        assert_eq!(
            signal(0, "1", "suspend").await.map(|c| c.0),
            Some(pbse::BADSTATE),
            "twice"
        );
        assert_eq!(signal(0, "1", "resume").await, None);
        // Resuming a job that is not suspended continues its processes and changes nothing.
        assert_eq!(signal(0, "1", "resume").await, None);
        // A plain SIGCONT (the owner may send it) continues a suspended job: not suspended.
        assert_eq!(signal(0, "1", "suspend").await, None);
        assert_eq!(signal(1000, "1", "CONT").await, None);
        // So does a SIGKILL, a SIGTERM first on the MOM, which continues the job for it
        // (else the second suspend below would be refused as a repeat).
        assert_eq!(signal(0, "1", "suspend").await, None);
        assert_eq!(signal(1000, "1", "KILL").await, None);
        assert_eq!(signal(0, "1", "suspend").await, None);
        assert_eq!(signal(1000, "1", "KILL").await, None);
        let mut sent = Vec::new();
        while let Ok(message) = to_mom.try_recv() {
            sent.push(message);
        }
        let suspend = |suspended| ToMom::Suspend {
            run_id: 10,
            suspended,
        };
        let cont = ToMom::Signal {
            run_id: 10,
            signal: libc::SIGCONT,
            delete: false,
            kill_delay_secs: 0,
        };
        let kill = ToMom::Signal {
            run_id: 10,
            signal: libc::SIGKILL,
            delete: false,
            kill_delay_secs: 0,
        };
        assert_eq!(
            sent,
            vec![
                suspend(true),
                suspend(false),
                suspend(false),
                suspend(true),
                cont,
                suspend(true),
                kill.clone(),
                suspend(true),
                kill
            ]
        );
        assert!(!core.state.jobs[&1].suspended, "continued by the SIGKILL");
        assert_eq!(core.state.jobs[&1].state, JobState::Running);
    }

    #[tokio::test]
    async fn qterm_requeues_or_deletes_running_jobs_by_type_and_stops_starts() {
        let jobs = || {
            let mut again = running_on(1, "n1", 10);
            again.rerunable = true;
            let mut fixed = running_on(2, "n1", 20);
            fixed.rerunable = false;
            vec![again, fixed, job(3, JobState::Queued)]
        };
        let dir = tempfile::tempdir().unwrap();
        let mut core = core_with_jobs(dir.path(), jobs()).await;
        let refused = prepare_shutdown(&mut core, &user(1000), ShutdownType::Immediate, 150).await;
        assert_eq!(
            refused.map_err(|e| (e.code, e.detail)),
            Err((pbse::PERM, String::new()))
        );
        assert!(!core.state.stopping, "a refusal changes nothing");
        assert_eq!(core.state.jobs[&1].pending, None);
        prepare_shutdown(&mut core, &user(0), ShutdownType::Immediate, 150)
            .await
            .unwrap();
        assert!(core.state.stopping, "no pass starts a job now");
        let refused =
            crate::dispatch::run_now(&mut core, &user(0), &["3".to_string()], "", 150).await;
        assert_eq!(
            refused[0].1.as_ref().map(|e| e.code),
            Some(pbse::SVRDOWN),
            "nor qrun"
        );
        // Their node has no MOM session here, so qrerun and qdel act at once.
        assert_eq!(core.state.jobs[&1].state, JobState::Queued, "requeued");
        assert_eq!(
            (core.state.jobs[&2].state, core.state.jobs[&2].exit_status),
            (JobState::Completed, Some(EXIT_DELETED)),
            "deleted"
        );
        assert_eq!(core.state.jobs[&3].state, JobState::Queued);

        let dir = tempfile::tempdir().unwrap();
        let mut core = core_with_jobs(dir.path(), jobs()).await;
        prepare_shutdown(&mut core, &user(0), ShutdownType::Delay, 150)
            .await
            .unwrap();
        assert_eq!(core.state.jobs[&1].state, JobState::Queued, "requeued");
        assert_eq!(
            core.state.jobs[&2].state,
            JobState::Running,
            "delay: it runs on"
        );

        let dir = tempfile::tempdir().unwrap();
        let mut core = core_with_jobs(dir.path(), jobs()).await;
        prepare_shutdown(&mut core, &user(0), ShutdownType::Quick, 150)
            .await
            .unwrap();
        assert!(core.state.stopping);
        assert_eq!(
            core.state.jobs[&1].state,
            JobState::Running,
            "quick: all run on"
        );
        assert_eq!(core.state.jobs[&2].state, JobState::Running);
    }

    #[tokio::test]
    async fn a_run_killed_without_its_mom_is_requeued_when_rerunnable() {
        let dir = tempfile::tempdir().unwrap();
        let mut fixed = running_on(2, "n1", 20);
        fixed.rerunable = false;
        let mut deleted = running_on(3, "n1", 30);
        deleted.pending = Some(PendingAction::Delete);
        let mut after_reboot = running_on(4, "n1", 40);
        after_reboot.rerunable = true;
        let jobs = vec![running_on(1, "n1", 10), fixed, deleted, after_reboot];
        let mut core = core_with_jobs(dir.path(), jobs).await;
        let end = |run_id| RunEnd {
            run_id,
            exit_status: job_exec::INITABT,
            end_time: 150,
            ..RunEnd::default()
        };
        let rebooted = |run_id| RunEnd {
            message: "the node rebooted while the job was starting or running".into(),
            ..end(run_id)
        };
        assert!(runs_ended(
            &mut core,
            "n1",
            &[end(10), end(20), end(30), rebooted(40)],
            150
        )
        .await
        .unwrap());
        let rerun = &core.state.jobs[&1];
        assert_eq!(rerun.state, JobState::Queued);
        assert_eq!(
            rerun.comment.as_deref(),
            Some("Job requeued: its pbs_mom on n1 was gone too long")
        );
        let rerun = &core.state.jobs[&4];
        assert_eq!(rerun.state, JobState::Queued);
        assert_eq!(
            rerun.comment.as_deref(),
            Some("Job requeued: run lost on n1: the node rebooted while the job was starting or running")
        );
        let ended = &core.state.jobs[&2];
        assert_eq!(
            (ended.state, ended.exit_status),
            (JobState::Completed, Some(job_exec::INITABT))
        );
        // A qdel its MOM never acted on: deleted, as qdel says.
        let deleted = &core.state.jobs[&3];
        assert_eq!(
            (deleted.state, deleted.exit_status),
            (JobState::Completed, Some(EXIT_DELETED))
        );
    }

    #[tokio::test]
    async fn a_run_that_never_ran_its_script_is_requeued() {
        let dir = tempfile::tempdir().unwrap();
        let mut core = core_with_jobs(dir.path(), vec![running_on(1, "n1", 10)]).await;
        let retry = RunEnd {
            run_id: 10,
            exit_status: job_exec::RETRY,
            end_time: 110,
            message: "pbs_mom restarted while starting the job".into(),
            ..RunEnd::default()
        };
        // true: the job left R.
        assert!(runs_ended(&mut core, "n1", &[retry], 110).await.unwrap());
        let loaded = core.store.load().await.unwrap();
        let job = &loaded.jobs[0];
        assert_eq!(job.state, JobState::Queued);
        assert!(job.exec_host.is_empty() && job.current_run.is_none());
        // Why the last start failed, as Torque shows it (-14 for a prologue's retry).
        assert_eq!(job.exit_status, Some(job_exec::RETRY));
        assert_eq!(
            job.comment.as_deref(),
            Some("Job requeued: pbs_mom restarted while starting the job")
        );
    }

    #[tokio::test]
    async fn a_job_whose_starts_keep_failing_is_held_not_requeued_forever() {
        let dir = tempfile::tempdir().unwrap();
        let mut almost = running_on(1, "n1", 10);
        almost.failed_starts = MAX_FAILED_STARTS - 2;
        let mut core = core_with_jobs(dir.path(), vec![almost]).await;
        let retry = |run_id| RunEnd {
            run_id,
            exit_status: job_exec::RETRY,
            end_time: 110,
            message: "cannot save the run record: No space left on device".into(),
            ..RunEnd::default()
        };
        // One more failure: still requeued.
        assert!(runs_ended(&mut core, "n1", &[retry(10)], 110)
            .await
            .unwrap());
        let job = &core.store.load().await.unwrap().jobs[0];
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.failed_starts, MAX_FAILED_STARTS - 1);
        // The next start fails too: held by the system, with the reason, and a fresh count.
        let mut again = job.clone();
        again.state = JobState::Running;
        again.exec_host = running_on(1, "n1", 11).exec_host;
        again.current_run = Some(11);
        core.state.apply_jobs(vec![again]);
        assert!(runs_ended(&mut core, "n1", &[retry(11)], 120)
            .await
            .unwrap());
        let job = &core.store.load().await.unwrap().jobs[0];
        assert_eq!(job.state, JobState::Held);
        assert!(job.hold_types.system);
        assert_eq!(job.failed_starts, 0);
        assert_eq!(
            job.comment.as_deref(),
            Some(
                "job held, too many failed attempts to run \
                 (last: cannot save the run record: No space left on device)"
            )
        );
    }

    #[tokio::test]
    async fn a_run_that_ran_resets_the_failed_starts() {
        let dir = tempfile::tempdir().unwrap();
        let mut flaky = running_on(1, "n1", 10);
        flaky.failed_starts = 3;
        let mut core = core_with_jobs(dir.path(), vec![flaky]).await;
        let ended = RunEnd {
            run_id: 10,
            exit_status: 0,
            end_time: 110,
            ..RunEnd::default()
        };
        assert!(runs_ended(&mut core, "n1", &[ended], 110).await.unwrap());
        let job = &core.store.load().await.unwrap().jobs[0];
        assert_eq!(job.state, JobState::Completed);
        assert_eq!(job.failed_starts, 0);
    }

    #[tokio::test]
    async fn a_deleted_job_whose_run_never_ran_stays_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let mut running = running_on(1, "n1", 10);
        running.pending = Some(PendingAction::Delete);
        let mut core = core_with_jobs(dir.path(), vec![running]).await;
        let retry = RunEnd {
            run_id: 10,
            exit_status: job_exec::RETRY,
            end_time: 110,
            ..RunEnd::default()
        };
        assert!(runs_ended(&mut core, "n1", &[retry], 110).await.unwrap());
        let job = &core.store.load().await.unwrap().jobs[0];
        assert_eq!(job.state, JobState::Completed);
        assert_eq!(job.exit_status, Some(EXIT_DELETED));
    }

    #[tokio::test]
    async fn qrerun_needs_an_operator_and_a_rerunable_job() {
        let dir = tempfile::tempdir().unwrap();
        let mut mine = running_on(1, "n1", 10);
        mine.uid = 1000;
        let mut fixed = running_on(2, "n1", 20);
        fixed.rerunable = false;
        let mut core = core_with_jobs(dir.path(), vec![mine, fixed]).await;
        let r = act(
            &mut core,
            &user(1000),
            JobOp::Rerun,
            "1",
            &ActionArgs::default(),
            5,
        )
        .await;
        assert_eq!(
            code(&r[0]),
            Some((
                pbse::PERM,
                "additional permissions required (ATR_DFLAG_MGWR | ATR_DFLAG_OPWR)".into()
            ))
        );
        let r = act(
            &mut core,
            &user(0),
            JobOp::Rerun,
            "2",
            &ActionArgs::test("", ""),
            5,
        )
        .await;
        assert_eq!(
            code(&r[0]),
            Some((pbse::NORERUN, "job 2.vm not rerunnable".into()))
        );
        assert_eq!(core.state.jobs[&2].state, JobState::Running);
        assert_eq!(core.state.jobs[&2].pending, None);
    }

    #[tokio::test]
    async fn job_control_permissions_and_states() {
        let dir = tempfile::tempdir().unwrap();
        let mut mine = job(1, JobState::Queued);
        mine.uid = 1000;
        let mut theirs = job(2, JobState::Queued);
        theirs.uid = 2000;
        let mut done = job(3, JobState::Completed);
        done.uid = 1000;
        let mut core = core_with_jobs(dir.path(), vec![mine, theirs, done]).await;
        let me = user(1000);

        let r = act(
            &mut core,
            &me,
            JobOp::Delete,
            "2",
            &ActionArgs::test("", ""),
            5,
        )
        .await;
        assert_eq!(code(&r[0]), Some((pbse::PERM, String::new())));
        assert_eq!(r[0].0, "2.vm");
        let r = act(
            &mut core,
            &me,
            JobOp::Hold,
            "1",
            &ActionArgs::test("o", ""),
            5,
        )
        .await;
        assert_eq!(code(&r[0]).map(|c| c.0), Some(pbse::PERM));
        // qrerun looks at the state before the caller (Torque's req_rerunjob).
        let r = act(
            &mut core,
            &me,
            JobOp::Rerun,
            "1",
            &ActionArgs::test("", ""),
            5,
        )
        .await;
        assert_eq!(
            code(&r[0]),
            Some((pbse::BADSTATE, "job 1.vm is in a bad state".into()))
        );
        let r = act(
            &mut core,
            &me,
            JobOp::Release,
            "1",
            &ActionArgs::test("", ""),
            5,
        )
        .await;
        assert_eq!(code(&r[0]).map(|c| c.0), Some(pbse::BAD_STATE_TRANSITION));
        let r = act(
            &mut core,
            &me,
            JobOp::Signal,
            "1",
            &ActionArgs::test("", "USR1"),
            5,
        )
        .await;
        assert_eq!(code(&r[0]).map(|c| c.0), Some(pbse::BADSTATE));
        let r = act(
            &mut core,
            &me,
            JobOp::Delete,
            "3.vm",
            &ActionArgs::test("", ""),
            5,
        )
        .await;
        assert_eq!(
            code(&r[0]),
            Some((pbse::BADSTATE, "invalid state for job - COMPLETE".into()))
        );

        let r = act(
            &mut core,
            &me,
            JobOp::Hold,
            "1",
            &ActionArgs::test("", ""),
            5,
        )
        .await;
        assert!(r[0].1.is_none());
        assert_eq!(core.state.jobs[&1].state, JobState::Held);
        assert_eq!(core.state.jobs[&1].hold_types.letters(), "u");
        let r = act(
            &mut core,
            &me,
            JobOp::Release,
            "1",
            &ActionArgs::test("", ""),
            6,
        )
        .await;
        assert!(r[0].1.is_none());
        assert_eq!(core.state.jobs[&1].state, JobState::Queued);

        // `all` takes only the caller's unfinished jobs; a queued job is C without exit status.
        let r = act(
            &mut core,
            &me,
            JobOp::Delete,
            "all",
            &ActionArgs::test("", ""),
            7,
        )
        .await;
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, "1.vm");
        let deleted = &core.state.jobs[&1];
        assert_eq!(deleted.state, JobState::Completed);
        assert_eq!(deleted.exit_status, None);
        assert_eq!(core.state.jobs[&2].state, JobState::Queued);

        // Root on the server host (a manager) may act on anyone's job; the change is stored.
        let r = act(
            &mut core,
            &user(0),
            JobOp::Hold,
            "2",
            &ActionArgs::test("o", ""),
            8,
        )
        .await;
        assert!(r[0].1.is_none());
        let loaded = core.store.load().await.unwrap();
        let stored = loaded.jobs.iter().find(|j| j.seq == 2).unwrap();
        assert_eq!(stored.hold_types.letters(), "o");
        assert_eq!(stored.state, JobState::Held);
    }

    #[test]
    fn job_ids_accept_short_and_qualified_forms() {
        assert_eq!(parse_job_id("12", "vm"), Some(12));
        assert_eq!(parse_job_id("12.vm", "vm"), Some(12));
        assert_eq!(parse_job_id("12.vm.example.com", "vm"), Some(12));
        assert_eq!(parse_job_id("12.other", "vm"), None);
        assert_eq!(parse_job_id("x.vm", "vm"), None);
        assert_eq!(parse_job_id("+12", "vm"), None);
        let key = crate::model::FIRST_MEMBER_KEY.to_string();
        assert_eq!(parse_job_id(&key, "vm"), None);
    }

    /// The `*array` kinds judge the array once every sub-job has ended (afterstartarray:
    /// once every one has started).
    #[test]
    fn array_conditions_wait_for_every_sub_job() {
        use DepOutcome::*;
        use JobState::*;
        let sub = |state: JobState, exit: Option<i32>| Job {
            state,
            exit_status: exit,
            start_count: u32::from(state != Queued),
            ..crate::store::tests::sample_job(crate::model::member_key(3, 1))
        };
        let (ok, failed) = (sub(Completed, Some(0)), sub(Completed, Some(1)));
        let (running, queued) = (sub(Running, None), sub(Queued, None));
        let cases: [(DepKind, Vec<&Job>, DepOutcome); 10] = [
            (DepKind::AfterOkArray, vec![&ok, &running], Pending),
            (DepKind::AfterOkArray, vec![&ok, &ok], Satisfied),
            (DepKind::AfterOkArray, vec![&ok, &failed], Failed),
            (DepKind::AfterNotOkArray, vec![&failed, &failed], Satisfied),
            (DepKind::AfterNotOkArray, vec![&failed, &ok], Failed),
            (DepKind::AfterAnyArray, vec![&failed, &ok], Satisfied),
            (DepKind::AfterAnyArray, vec![&failed, &queued], Pending),
            (DepKind::AfterStartArray, vec![&running, &ok], Satisfied),
            (DepKind::AfterStartArray, vec![&running, &queued], Pending),
            // All purged: done, as a purged parent is.
            (DepKind::AfterOkArray, vec![], Satisfied),
        ];
        for (kind, members, expected) in cases {
            assert_eq!(array_dep_outcome(kind, &members), expected, "{kind:?}");
        }
        let dep = Dependency {
            kind: DepKind::AfterOkArray,
            seq: 3,
            satisfied: false,
        };
        assert!(dep.concerns(crate::model::member_key(3, 9)));
        assert!(!dep.concerns(3) && !dep.concerns(crate::model::member_key(4, 9)));
        assert_eq!(dep.parent_id("vm"), "3[].vm");
    }

    /// A condition on an array waits on each of its sub-jobs, and on what they wait on:
    /// qalter may not close a circle through one.
    #[test]
    fn circles_through_arrays_are_found() {
        use crate::model::member_key;
        let mut state = State::new("vm", 0, "batch", vec![], vec![], Default::default());
        let on = |kind, seq| Dependency {
            kind,
            seq,
            satisfied: false,
        };
        let waiting_sub_job = Job {
            depend: vec![on(DepKind::AfterOk, 5)],
            ..crate::store::tests::sample_job(member_key(3, 2))
        };
        state.apply_jobs(vec![
            crate::store::tests::sample_job(member_key(3, 1)),
            waiting_sub_job,
            crate::store::tests::sample_job(5),
        ]);
        let reached = waited_on(&state, &[on(DepKind::AfterOkArray, 3)]);
        assert!(reached.contains(&member_key(3, 1)), "its own array");
        assert!(reached.contains(&5), "through a sub-job's condition");
        assert!(!reached.contains(&6));
        let reached = waited_on(&state, &[on(DepKind::AfterOk, 5)]);
        assert!(!reached.contains(&member_key(3, 1)));
    }

    #[test]
    fn array_ids_name_a_sub_job_or_the_whole_array() {
        use crate::model::member_key;
        assert_eq!(parse_job_id("12[3]", "vm"), Some(member_key(12, 3)));
        assert_eq!(parse_job_id("12[3].vm", "vm"), Some(member_key(12, 3)));
        assert_eq!(parse_job_ref("12[].vm", "vm"), Some(JobRef::Array(12)));
        assert_eq!(parse_job_id("12[]", "vm"), None);
        for bad in [
            "12[",
            "12[x]",
            "[3]",
            "12[3",
            "12[-1]",
            "12[100000]",
            "12[3].other",
        ] {
            assert_eq!(parse_job_ref(bad, "vm"), None, "{bad}");
        }
        assert_eq!(shown_job_id("12[3]", "vm"), "12[3].vm");
        assert_eq!(shown_job_id("12[]", "vm"), "12[].vm");
    }

    /// Torque's job_clone: `-INDEX` on the name and both paths, `PBS_ARRAYID` last in the
    /// variables, and a place in line per sub-job, in index order.
    #[test]
    fn sub_jobs_are_copies_of_the_array_named_by_index() {
        let state = State::new("vm", 0, "batch", vec![], vec![], Default::default());
        let template = Job {
            seq: 20,
            name: "arr".into(),
            output_path: "vm:/w/arr.o20".into(),
            error_path: "vm:/w/arr.e20".into(),
            variable_list: "PBS_O_QUEUE=batch".into(),
            ..crate::store::tests::sample_job(20)
        };
        let members = array_members(&template, &[1, 7], &state);
        let shown: Vec<(String, &str, &str, &str)> = members
            .iter()
            .map(|j| {
                (
                    j.id("vm"),
                    j.name.as_str(),
                    j.output_path.as_str(),
                    j.variable_list.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "20[1].vm".to_string(),
                    "arr-1",
                    "vm:/w/arr.o20-1",
                    "PBS_O_QUEUE=batch,PBS_ARRAYID=1"
                ),
                (
                    "20[7].vm".to_string(),
                    "arr-7",
                    "vm:/w/arr.o20-7",
                    "PBS_O_QUEUE=batch,PBS_ARRAYID=7"
                ),
            ]
        );
        assert_eq!(members[1].error_path, "vm:/w/arr.e20-7");
        // qalter's directory paths name files as submission does.
        assert_eq!(default_output_file(&members[1], 'e'), "arr.e20-7");
        assert_eq!(default_output_file(&template, 'o'), "arr.o20");
        assert!(members[0].queue_rank < members[1].queue_rank);
        assert_eq!(members[0].number(), 20);
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("USR1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("SIGUSR1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("usr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal(""), Some(libc::SIGTERM));
        assert_eq!(parse_signal("NOPE"), None);
        // Torque's table: its old names too, and nothing beyond it.
        assert_eq!(parse_signal("sigCld"), Some(libc::SIGCHLD));
        assert_eq!(parse_signal("IOT"), Some(libc::SIGABRT));
        assert_eq!(parse_signal("NULL"), Some(0));
        assert_eq!(parse_signal("POLL"), Some(libc::SIGIO));
        assert_eq!(parse_signal("STKFLT"), None);
        assert_eq!(parse_signal("SIGPWR"), None);
        assert_eq!(parse_signal("SIG"), None);
        assert_eq!(parse_signal("65"), None);
    }

    /// `child`'s conditions judged at time 5 against `parent`, the only job there is.
    fn judged_against(child: &mut Job, parent: &Job) -> bool {
        evaluate_deps(child, |_| Some(parent), |_| Vec::new(), 5, "vm")
    }

    #[test]
    fn afterok_of_a_failed_job_deletes_the_dependent() {
        let mut parent = job(14, JobState::Completed);
        parent.exit_status = Some(1);
        let mut child = held_on(16, DepKind::AfterOk, 14);
        assert!(judged_against(&mut child, &parent));
        assert_eq!(child.state, JobState::Completed);
        assert_eq!(child.exit_status, Some(271));
        assert_eq!(
            child.comment.as_deref(),
            Some("Job deleted as result of dependency on job 14.vm")
        );
    }

    /// `qalter -W depend` on a job that has run places a hold its dependencies lift when
    /// met; a system hold that is not theirs stays, and a job stored without the mark keeps
    /// a started job's system hold, as before.
    #[test]
    fn a_hold_dependencies_placed_is_lifted_whatever_the_starts() {
        let mut parent = job(14, JobState::Completed);
        parent.exit_status = Some(0);
        for (depend_hold, lifted) in [(Some(true), true), (Some(false), false), (None, false)] {
            let mut child = held_on(15, DepKind::AfterOk, 14);
            child.start_count = 2;
            child.depend_hold = depend_hold;
            assert!(judged_against(&mut child, &parent));
            assert_eq!(!child.hold_types.system, lifted, "{depend_hold:?}");
        }
    }

    #[test]
    fn a_dependency_met_late_does_not_lift_a_hold_it_did_not_place() {
        let parent = job(14, JobState::Completed);
        // Released early by a manager, started, then held for its failed starts.
        let mut child = held_on(18, DepKind::AfterAny, 14);
        child.start_count = MAX_FAILED_STARTS;
        assert!(judged_against(&mut child, &parent));
        assert!(child.depend[0].satisfied);
        assert_eq!(child.state, JobState::Held);
        assert!(child.hold_types.system);
    }

    #[test]
    fn afterany_releases_the_dependent() {
        let mut parent = job(14, JobState::Completed);
        parent.exit_status = Some(1);
        let mut child = held_on(17, DepKind::AfterAny, 14);
        assert!(judged_against(&mut child, &parent));
        assert_eq!(child.state, JobState::Queued);
        assert_eq!(child.hold_types.letters(), "n");
        assert_eq!(child.etime, Some(5));
    }

    #[test]
    fn user_hold_outlives_a_met_dependency() {
        let mut parent = job(1, JobState::Completed);
        parent.exit_status = Some(0);
        let mut child = job(2, JobState::Held);
        child.hold_types = HoldTypes::parse("us").unwrap();
        child.depend = vec![Dependency {
            kind: DepKind::AfterOk,
            seq: 1,
            satisfied: false,
        }];
        judged_against(&mut child, &parent);
        assert_eq!(child.state, JobState::Held);
        assert_eq!(child.hold_types.letters(), "u");
    }

    #[test]
    fn pending_dependencies_keep_the_hold() {
        let parent = job(1, JobState::Running);
        for kind in [DepKind::AfterOk, DepKind::AfterAny, DepKind::AfterNotOk] {
            assert_eq!(dep_outcome(kind, Some(&parent)), DepOutcome::Pending);
        }
        assert_eq!(
            dep_outcome(DepKind::After, Some(&parent)),
            DepOutcome::Satisfied
        );
        let mut ok = job(1, JobState::Completed);
        ok.exit_status = Some(0);
        assert_eq!(
            dep_outcome(DepKind::AfterNotOk, Some(&ok)),
            DepOutcome::Failed
        );
    }

    #[test]
    fn output_paths_follow_torque_rules() {
        assert_eq!(
            output_path(None, "vm", "/home/u", "job.sh.o3"),
            "vm:/home/u/job.sh.o3"
        );
        assert_eq!(
            output_path(Some("/tmp/out/"), "vm", "/home/u", "job.sh.o3"),
            "vm:/tmp/out/job.sh.o3"
        );
        assert_eq!(
            output_path(Some("h2:/tmp/x.txt"), "vm", "/home/u", "job.sh.o3"),
            "h2:/tmp/x.txt"
        );
        assert_eq!(
            output_path(Some("rel.txt"), "vm", "/home/u", "job.sh.o3"),
            "vm:/home/u/rel.txt"
        );
    }

    #[test]
    fn settle_prefers_hold_then_wait() {
        let mut j = job(1, JobState::Queued);
        j.execution_time = Some(100);
        settle(&mut j, 50);
        assert_eq!(j.state, JobState::Waiting);
        j.hold_types.user = true;
        settle(&mut j, 50);
        assert_eq!(j.state, JobState::Held);
        j.hold_types.user = false;
        settle(&mut j, 150);
        assert_eq!(j.state, JobState::Queued);
    }
}
