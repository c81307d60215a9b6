//! The server's own domain types: jobs, queues, nodes, runs; and [`Table`], the packed form
//! job listings are built in (the wire's `StatTable`).
//!
//! Why a separate model: generated proto types stay at the API edge (`api.rs`), SQL rows stay
//! private to `store.rs`; everything between works on these types. They derive serde because the
//! store keeps most of a job as one JSON column (typed columns only for what it queries), so a
//! new Torque attribute is a new field here, not a migration.

use std::borrow::Cow;

use capstan_proto::text::same_text;
use serde::{Deserialize, Serialize};

use crate::resources::SlotRequest;

/// Torque's job states (`job_state`). Transit and Exiting are never entered; a suspended job
/// is Running with [`Job::suspended`] set, shown `S` (Torque keeps its state too and only
/// shows the letter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    Queued,
    Held,
    Waiting,
    Running,
    Completed,
}

impl JobState {
    /// The one-letter form `qstat` prints and the store indexes.
    pub fn letter(self) -> &'static str {
        match self {
            JobState::Queued => "Q",
            JobState::Held => "H",
            JobState::Waiting => "W",
            JobState::Running => "R",
            JobState::Completed => "C",
        }
    }
}

/// `Hold_Types`: a set of `u` (user), `o` (operator), `s` (system) holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldTypes {
    pub user: bool,
    pub other: bool,
    pub system: bool,
}

impl HoldTypes {
    /// Parses letters from `{u, o, s, n}`; `None` on any other letter.
    pub fn parse(text: &str) -> Option<HoldTypes> {
        let mut holds = HoldTypes::default();
        for c in text.chars() {
            match c {
                'u' => holds.user = true,
                'o' => holds.other = true,
                's' => holds.system = true,
                'n' => {}
                _ => return None,
            }
        }
        Some(holds)
    }

    pub fn any(self) -> bool {
        self.user || self.other || self.system
    }

    pub fn add(&mut self, other: HoldTypes) {
        self.user |= other.user;
        self.other |= other.other;
        self.system |= other.system;
    }

    pub fn remove(&mut self, other: HoldTypes) {
        self.user &= !other.user;
        self.other &= !other.other;
        self.system &= !other.system;
    }

    /// The holds that differ between `self` and `other` (set in one, not in the other).
    pub fn differing(self, other: HoldTypes) -> HoldTypes {
        HoldTypes {
            user: self.user != other.user,
            other: self.other != other.other,
            system: self.system != other.system,
        }
    }

    /// Whether `self` shares at least one hold with `other`.
    pub fn intersects(self, other: HoldTypes) -> bool {
        (self.user && other.user) || (self.other && other.other) || (self.system && other.system)
    }

    /// Torque's spelling: `n` when empty, else the letters in `u`, `o`, `s` order.
    pub fn letters(self) -> String {
        let mut s = String::new();
        if self.user {
            s.push('u');
        }
        if self.other {
            s.push('o');
        }
        if self.system {
            s.push('s');
        }
        if s.is_empty() {
            s.push('n');
        }
        s
    }
}

/// One `-W depend=` clause kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DepKind {
    After,
    AfterOk,
    AfterNotOk,
    AfterAny,
    /// The `*array` kinds wait on every sub-job of an array (`afterokarray:12[]`); their
    /// [`Dependency::seq`] is the array's number.
    AfterStartArray,
    AfterOkArray,
    AfterNotOkArray,
    AfterAnyArray,
}

impl DepKind {
    pub fn parse(text: &str) -> Option<DepKind> {
        match text {
            "after" => Some(DepKind::After),
            "afterok" => Some(DepKind::AfterOk),
            "afternotok" => Some(DepKind::AfterNotOk),
            "afterany" => Some(DepKind::AfterAny),
            "afterstartarray" => Some(DepKind::AfterStartArray),
            "afterokarray" => Some(DepKind::AfterOkArray),
            "afternotokarray" => Some(DepKind::AfterNotOkArray),
            "afteranyarray" => Some(DepKind::AfterAnyArray),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DepKind::After => "after",
            DepKind::AfterOk => "afterok",
            DepKind::AfterNotOk => "afternotok",
            DepKind::AfterAny => "afterany",
            DepKind::AfterStartArray => "afterstartarray",
            DepKind::AfterOkArray => "afterokarray",
            DepKind::AfterNotOkArray => "afternotokarray",
            DepKind::AfterAnyArray => "afteranyarray",
        }
    }

    /// The name the parent job shows (`beforeok:16.vm`; an array's summary row shows
    /// `beforeokarray:16.vm`).
    pub fn reverse_name(self) -> &'static str {
        match self {
            DepKind::After => "before",
            DepKind::AfterOk => "beforeok",
            DepKind::AfterNotOk => "beforenotok",
            DepKind::AfterAny => "beforeany",
            DepKind::AfterStartArray => "beforestartarray",
            DepKind::AfterOkArray => "beforeokarray",
            DepKind::AfterNotOkArray => "beforenotokarray",
            DepKind::AfterAnyArray => "beforeanyarray",
        }
    }

    /// Whether the condition is on a whole array.
    pub fn on_array(self) -> bool {
        matches!(
            self,
            DepKind::AfterStartArray
                | DepKind::AfterOkArray
                | DepKind::AfterNotOkArray
                | DepKind::AfterAnyArray
        )
    }
}

/// `afterok:14` = "this job waits for job 14 to succeed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub kind: DepKind,
    pub seq: u64,
    /// Set once the condition is met, so it is not evaluated again.
    #[serde(default)]
    pub satisfied: bool,
}

impl Dependency {
    /// Whether a change of the job keyed `key` may decide this condition: it is the
    /// parent, or a sub-job of the array the condition is on.
    pub fn concerns(&self, key: u64) -> bool {
        if self.kind.on_array() {
            member_of(key).is_some_and(|(array, _)| array == self.seq)
        } else {
            self.seq == key
        }
    }

    /// The parent's id: a job's, or for the `*array` kinds the array's (`12[].vm`).
    pub fn parent_id(&self, server_name: &str) -> String {
        if self.kind.on_array() {
            array_id(self.seq, server_name)
        } else {
            job_id(self.seq, server_name)
        }
    }
}

/// Sub-jobs of a job array (`qsub -t`) are keyed apart from numbered jobs: the key sets this
/// bit and holds the array's number above [`ARRAY_INDEX_BITS`] bits of index. Why: every
/// table, index and message names a job by one `u64`, and a sub-job has no number of its
/// own (`20[1]` is the first sub-job of job 20, and the next job is still 21), so its key is
/// made from the two; keys sort by array, then index.
const ARRAY_MEMBER_KEY: u64 = 1 << 62;
/// Bits of a sub-job's key that hold its index (Torque's indices stop at 99,999).
const ARRAY_INDEX_BITS: u32 = 20;
/// The highest job number an array may have: what fits above the index in a key.
pub const MAX_ARRAY_NUMBER: u64 = (ARRAY_MEMBER_KEY >> ARRAY_INDEX_BITS) - 1;

/// The key of sub-job `index` of array `array` (`array[index]`).
pub fn member_key(array: u64, index: u32) -> u64 {
    debug_assert!(array <= MAX_ARRAY_NUMBER && index < 1 << ARRAY_INDEX_BITS);
    ARRAY_MEMBER_KEY | array << ARRAY_INDEX_BITS | u64::from(index)
}

/// The array and index of a sub-job's key; `None` for a numbered job.
pub fn member_of(key: u64) -> Option<(u64, u32)> {
    (key & ARRAY_MEMBER_KEY != 0).then(|| {
        let array = (key & !ARRAY_MEMBER_KEY) >> ARRAY_INDEX_BITS;
        let index = key & ((1 << ARRAY_INDEX_BITS) - 1);
        (array, index as u32)
    })
}

/// The keys an array's sub-jobs can have, in index order (a range of `State::jobs`).
pub fn member_keys(array: u64) -> std::ops::RangeInclusive<u64> {
    member_key(array, 0)..=member_key(array, (1 << ARRAY_INDEX_BITS) - 1)
}

/// Every sub-job key sorts at or after this one, every numbered job before it.
pub const FIRST_MEMBER_KEY: u64 = ARRAY_MEMBER_KEY;

/// Appends the id of the job keyed `key`: `SEQ.SERVER`, or `SEQ[INDEX].SERVER` for a
/// sub-job. By hand: listings do this once per job, and `format!` was a visible cost.
pub fn write_job_id(key: u64, server_name: &str, out: &mut String) {
    let mut digits = itoa::Buffer::new();
    match member_of(key) {
        Some((array, index)) => {
            out.push_str(digits.format(array));
            out.push('[');
            out.push_str(digits.format(index));
            out.push(']');
        }
        None => out.push_str(digits.format(key)),
    }
    out.push('.');
    out.push_str(server_name);
}

/// Appends the id of array `number` as a whole: `SEQ[].SERVER`.
pub fn write_array_id(number: u64, server_name: &str, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(number));
    out.push_str("[].");
    out.push_str(server_name);
}

/// The id of array `number` as a whole (see [`write_array_id`]).
pub fn array_id(number: u64, server_name: &str) -> String {
    let mut id = String::with_capacity(24 + server_name.len());
    write_array_id(number, server_name, &mut id);
    id
}

/// The number in the default names of the job's output files (`NAME.oSEQ`): `20`, and for
/// a sub-job `20-1` (Torque's `NAME.oSEQ-INDEX`).
pub fn file_number(key: u64) -> String {
    match member_of(key) {
        Some((array, index)) => format!("{array}-{index}"),
        None => key.to_string(),
    }
}

/// The id of the job keyed `key` (see [`write_job_id`]).
pub fn job_id(key: u64, server_name: &str) -> String {
    let mut id = String::with_capacity(24 + server_name.len());
    write_job_id(key, server_name, &mut id);
    id
}

/// What a sub-job keeps of its array's request (every sub-job holds it, so an array is its
/// sub-jobs and nothing else: it ends when the last of them is purged, as Torque's does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayPart {
    /// `-t` as given: the array's `job_array_request`.
    pub request: String,
    /// `%N`: at most N of the array's sub-jobs run at once.
    pub slot_limit: Option<u32>,
}

/// Slots held on one node, in exec_host order (the first entry is the mother superior).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSlots {
    pub node: String,
    pub slots: Vec<u32>,
}

/// What a MOM reported a run used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesUsed {
    pub cput_secs: u64,
    pub mem_kb: u64,
    pub vmem_kb: u64,
    pub walltime_secs: u64,
}

/// Something asked of a running job that completes when its run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingAction {
    /// qdel: the job becomes C when the run ends.
    Delete,
    /// qrerun / node loss: the job goes back to Q when the run ends.
    Requeue,
}

/// What makes a job interactive (`qsub -I`): Torque's `interactive` and `Interactive_Cmd`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interactive {
    /// `-x`: the command its shell runs (`-c`) instead of reading the terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// A job and all the Torque attributes it carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub seq: u64,
    pub name: String,
    pub owner: String,
    pub uid: u32,
    pub euser: String,
    pub egroup: String,
    pub state: JobState,
    pub queue: String,
    pub account: Option<String>,
    pub checkpoint: String,
    pub ctime: i64,
    pub mtime: i64,
    pub qtime: i64,
    /// Torque's `queue_rank`: the job's place in line among jobs of equal priority, given
    /// in order as jobs enter a queue (submission, qmove, a requeue after a failed start)
    /// and swapped by qorder. 0 in jobs stored before it existed, until the server's start
    /// ranks them (see [`rank_unranked`]; their number stands in, see [`Job::rank`]).
    #[serde(default)]
    pub queue_rank: u64,
    pub etime: Option<i64>,
    pub depend: Vec<Dependency>,
    pub output_path: String,
    pub error_path: String,
    pub exec_host: Vec<HostSlots>,
    pub execution_time: Option<i64>,
    pub hold_types: HoldTypes,
    /// Whether the system hold is its dependencies' (placed at submission or by `qalter -W
    /// depend` on a job not already held by the system), lifted once they are met whatever
    /// the job's starts. `None` in jobs stored before it existed: theirs is lifted only if
    /// they never started.
    #[serde(default)]
    pub depend_hold: Option<bool>,
    pub join_path: String,
    pub keep_files: String,
    pub mail_points: String,
    pub mail_users: Option<String>,
    pub priority: i64,
    pub rerunable: bool,
    /// `Resource_List.*` in Torque's order (given, queue defaults, `nodect` after `nodes`).
    pub resources: Vec<(String, String)>,
    pub session_id: Option<i32>,
    pub shell_path: Option<String>,
    pub variable_list: String,
    pub comment: Option<String>,
    pub exit_status: Option<i32>,
    pub submit_args: Option<String>,
    pub start_time: Option<i64>,
    pub start_count: u32,
    /// `-W umask=`: the job's umask (Torque keeps the number, shown in decimal); `None`:
    /// Torque's 077.
    #[serde(default)]
    pub umask: Option<u32>,
    /// `-F "args"`: what the script is given as `$1`, `$2`, ... (split at spaces).
    #[serde(default)]
    pub job_arguments: Option<String>,
    /// `-K SECS`: between qdel's SIGTERM and its SIGKILL (else the server's default).
    #[serde(default)]
    pub kill_delay: Option<u32>,
    /// `-f`: shown as asked (sister nodes only hold slots, so losing one never aborts a job).
    #[serde(default)]
    pub fault_tolerant: bool,
    /// `-W group_list=`: as given; the group chosen from it is `egroup`.
    #[serde(default)]
    pub group_list: Option<String>,
    /// `-u`: as given (it may only name the submitting user).
    #[serde(default)]
    pub user_list: Option<String>,
    /// `-n`: the job's nodes run nothing else while it runs (see `State::occupy`).
    #[serde(default)]
    pub node_exclusive: bool,
    /// Set in a job array's sub-jobs (whose `seq` is a [`member_key`]) and in the array's
    /// summary row ([`array_summary`], whose `seq` is the array's number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayPart>,
    /// `qsub -I`: the job's shell runs on a terminal its qsub holds (see `interactive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<Interactive>,
    /// Starts in a row whose script never ran (the MOM reported JOB_EXEC_RETRY); a run that
    /// ran resets it. At [`crate::jobs::MAX_FAILED_STARTS`] the job is held instead of
    /// requeued once more.
    #[serde(default)]
    pub failed_starts: u32,
    /// Running, but suspended (`qsig -s suspend`): shown `S`, as Torque shows its
    /// JOB_SVFLG_Suspend; still Running for every count and rule, and its slots stay held.
    #[serde(default)]
    pub suspended: bool,
    /// The `Resource_List` names its queue's `resources_default` filled in (not asked for):
    /// qmove drops them and takes the new queue's, as Torque does. Empty in jobs stored
    /// before Capstan kept it.
    #[serde(default)]
    pub defaulted: Vec<String>,
    pub comp_time: Option<i64>,
    pub total_runtime: Option<f64>,
    pub submit_host: String,
    pub init_work_dir: String,
    pub resources_used: Option<ResourcesUsed>,
    /// The run in progress (state R), if any.
    pub current_run: Option<u64>,
    pub pending: Option<PendingAction>,
    /// Derived from `resources` at submit and at load; never stored.
    #[serde(skip)]
    pub request: Option<SlotRequest>,
    /// The script as submitted; stored in its own column, never in the JSON.
    #[serde(skip)]
    pub script: std::sync::Arc<Vec<u8>>,
}

/// Jobs stored before queue ranks existed (rank 0) get ranks in the order they were in
/// line then, the order they entered their queues (qtime, then number), behind every job
/// already ranked (at the first start with ranks, there is none). Returns the jobs ranked,
/// for the caller to save.
pub fn rank_unranked(jobs: &mut [Job]) -> Vec<u64> {
    let last = jobs.iter().map(|j| j.queue_rank).max().unwrap_or(0);
    let mut unranked: Vec<&mut Job> = jobs.iter_mut().filter(|j| j.queue_rank == 0).collect();
    unranked.sort_by_key(|j| (j.qtime, j.seq));
    let mut ranked = Vec::new();
    for (rank, job) in (last + 1..).zip(unranked) {
        job.queue_rank = rank;
        ranked.push(job.seq);
    }
    ranked
}

impl Job {
    /// Whether its system hold, if it has one, is its dependencies' (see `depend_hold`; a
    /// job stored before the mark: if it never started).
    pub fn system_hold_is_dependencies(&self) -> bool {
        self.depend_hold.unwrap_or(self.start_count == 0)
    }

    /// Its place in line among equals (see `queue_rank`).
    pub fn rank(&self) -> u64 {
        if self.queue_rank == 0 {
            self.seq
        } else {
            self.queue_rank
        }
    }

    /// Whether the job's nodes run nothing else: `qsub -n`, or Torque's (Moab's)
    /// `-l naccesspolicy=singlejob`.
    pub fn exclusive(&self) -> bool {
        self.node_exclusive
            || self
                .resource("naccesspolicy")
                .is_some_and(|p| p.eq_ignore_ascii_case("singlejob"))
    }

    /// `Resource_List.NAME`, if set.
    pub fn resource(&self, name: &str) -> Option<&str> {
        self.resources
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `Resource_List.walltime` in seconds, when given and well formed.
    pub fn walltime_secs(&self) -> Option<u64> {
        self.resource("walltime")
            .and_then(crate::resources::parse_duration)
    }

    /// The qualified id: `SEQ.SERVER`, `SEQ[INDEX].SERVER` for a sub-job, `SEQ[].SERVER`
    /// for an array's summary row.
    pub fn id(&self, server_name: &str) -> String {
        let mut id = String::with_capacity(24 + server_name.len());
        self.write_id(server_name, &mut id);
        id
    }

    /// Appends the qualified id to `out` (see [`Job::id`]).
    pub fn write_id(&self, server_name: &str, out: &mut String) {
        if self.is_array_summary() {
            write_array_id(self.seq, server_name, out);
        } else {
            write_job_id(self.seq, server_name, out);
        }
    }

    /// The job number users see: an array's for its sub-jobs, else `seq`.
    pub fn number(&self) -> u64 {
        member_of(self.seq).map_or(self.seq, |(array, _)| array)
    }

    /// A sub-job's index in its array.
    pub fn array_index(&self) -> Option<u32> {
        member_of(self.seq).map(|(_, index)| index)
    }

    /// Whether this is the `SEQ[]` row listings make for an array ([`array_summary`]).
    pub fn is_array_summary(&self) -> bool {
        self.array.is_some() && member_of(self.seq).is_none()
    }

    /// The node that runs the job's script, when running.
    pub fn mother_superior(&self) -> Option<&str> {
        self.exec_host.first().map(|h| h.node.as_str())
    }

    /// `Variable_List` split into `(name, value)` pairs, in order (`\,` unescaped).
    pub fn variables(&self) -> Vec<(String, String)> {
        split_variable_list(&self.variable_list)
    }

    /// One variable of `Variable_List`.
    pub fn variable(&self, name: &str) -> Option<String> {
        self.variables()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }
}

/// The `SEQ[]` row of an array for listings, made from its sub-jobs (in index order; `None`
/// when none is left): the first one's attributes under the array's number, name, output
/// paths and variables (a sub-job's are the array's with `-INDEX` and `PBS_ARRAYID` added),
/// with none of a run's. Its state
/// is Torque's summary (`update_array_statuses`): R while a sub-job runs, else C once every
/// one is complete, else Q (held and waiting sub-jobs count as queued).
pub fn array_summary<'a>(members: impl IntoIterator<Item = &'a Job>) -> Option<Job> {
    let mut members = members.into_iter();
    let first = members.next()?;
    let (array, index) = member_of(first.seq)?;
    let (mut running, mut complete) = (false, true);
    for job in std::iter::once(first).chain(members) {
        running |= job.state == JobState::Running;
        complete &= job.state == JobState::Completed;
    }
    let unsuffixed =
        |text: &str, suffix: &str| text.strip_suffix(suffix).unwrap_or(text).to_string();
    let index_suffix = format!("-{index}");
    let array_id = format!("PBS_ARRAYID={index}");
    let variable_list = unsuffixed(&first.variable_list, &array_id);
    Some(Job {
        seq: array,
        name: unsuffixed(&first.name, &index_suffix),
        output_path: unsuffixed(&first.output_path, &index_suffix),
        error_path: unsuffixed(&first.error_path, &index_suffix),
        variable_list: variable_list
            .strip_suffix(',')
            .map_or(variable_list.clone(), str::to_string),
        state: if running {
            JobState::Running
        } else if complete {
            JobState::Completed
        } else {
            JobState::Queued
        },
        suspended: false,
        exec_host: Vec::new(),
        session_id: None,
        exit_status: None,
        comment: None,
        start_time: None,
        start_count: 0,
        comp_time: None,
        total_runtime: None,
        resources_used: None,
        current_run: None,
        pending: None,
        etime: None,
        ..first.clone()
    })
}

/// Splits a Torque `Variable_List` (`A=1,B=x\,y`) into pairs, honouring `\,` escapes.
pub fn split_variable_list(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let push = |item: &mut String, out: &mut Vec<(String, String)>| {
        if !item.is_empty() {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => (item.clone(), String::new()),
            };
            out.push((name, value));
        }
        item.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                current.push(',');
                chars.next();
            }
            ',' => push(&mut current, &mut out),
            _ => current.push(c),
        }
    }
    push(&mut current, &mut out);
    out
}

/// A queue (only execution queues exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    pub enabled: bool,
    pub started: bool,
    /// `resources_default.*`, in the order they were set.
    pub resources_default: Vec<(String, String)>,
    pub mtime: i64,
    /// `priority`: the scheduler orders jobs by it before anything else.
    #[serde(default)]
    pub priority: i64,
    /// `acl_user_enable` / `acl_users`: who may submit here (Torque's `ACL_User` matching).
    #[serde(default)]
    pub acl_user_enable: bool,
    #[serde(default)]
    pub acl_users: Vec<String>,
    /// `acl_group_enable` / `acl_groups`: the submitter's group must be listed.
    #[serde(default)]
    pub acl_group_enable: bool,
    #[serde(default)]
    pub acl_groups: Vec<String>,
    /// `acl_host_enable` / `acl_hosts`: the submitting host must be listed.
    #[serde(default)]
    pub acl_host_enable: bool,
    #[serde(default)]
    pub acl_hosts: Vec<String>,
}

impl Queue {
    /// A queue as `qmgr -c 'create queue NAME'` leaves it: execution, disabled, stopped.
    pub fn new(name: &str, mtime: i64) -> Queue {
        Queue {
            name: name.to_string(),
            enabled: false,
            started: false,
            resources_default: Vec::new(),
            mtime,
            priority: 0,
            acl_user_enable: false,
            acl_users: Vec::new(),
            acl_group_enable: false,
            acl_groups: Vec::new(),
            acl_host_enable: false,
            acl_hosts: Vec::new(),
        }
    }
}

/// A node as the nodes file defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDef {
    pub name: String,
    pub np: u32,
    pub site: String,
    pub speed: f64,
    /// `dedicated=false`: a borrowed workstation.
    pub dedicated: bool,
    /// `window=mon-fri@19:00-07:00,sat-sun`: when it is lent.
    pub window: Option<crate::scheduler::Window>,
    pub gpus: u32,
    pub properties: Vec<String>,
    /// `acl_users=` / `acl_groups=`: who may use the node (empty: everyone).
    pub access: crate::scheduler::access::NodeAccess,
    /// Torque's `mom_service_port=` / `mom_manager_port=` (default 15002 / 15003), shown by
    /// `pbsnodes` as Torque shows them. Capstan's MOMs dial the server, so no port is used.
    pub mom_ports: (u16, u16),
}

/// Torque's default MOM service and manager ports.
pub const DEFAULT_MOM_PORTS: (u16, u16) = (15002, 15003);

/// A MOM's last report about its node (kept in memory only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    pub opsys: String,
    pub uname: String,
    pub sessions: Vec<i32>,
    pub nusers: u32,
    pub idletime: u64,
    pub totmem_kb: u64,
    pub availmem_kb: u64,
    pub physmem_kb: u64,
    pub ncpus: u32,
    pub loadave: f64,
    pub netload: u64,
    /// `free`, `busy`, or `down` (the MOM's health check failed).
    pub state: String,
    /// The health check's message (`ERROR ...`, `EVENT: ...`), shown as `message=`.
    pub message: Option<String>,
    pub jobs: Vec<String>,
    pub rectime: i64,
}

/// The runtime flags of a node an administrator sets (persisted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFlags {
    pub offline: bool,
    pub note: Option<String>,
}

/// A Torque error answer: PBSE number, the `MSG=` detail, and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbsError {
    pub code: i32,
    pub detail: String,
    pub object: String,
}

/// Torque's boolean spellings (`True`, `t`, `y`, `1`, ... and their negatives), any case.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "t" | "y" | "yes" | "1" => Some(true),
        "false" | "f" | "n" | "no" | "0" => Some(false),
        _ => None,
    }
}

impl PbsError {
    pub fn new(code: i32, detail: impl Into<String>, object: impl Into<String>) -> PbsError {
        PbsError {
            code,
            detail: detail.into(),
            object: object.into(),
        }
    }

    /// A store failure, logged here and answered with PBSE_SYSTEM (nothing has changed).
    pub fn system(e: impl std::fmt::Display) -> PbsError {
        tracing::warn!("store failure: {e}");
        PbsError::new(capstan_proto::pbse::SYSTEM, "", "")
    }
}

/// Everything a MOM needs to start one run (the domain twin of the proto `StartRun`).
#[derive(Debug, Clone, PartialEq)]
pub struct StartRunSpec {
    pub run_id: u64,
    pub job_id: String,
    pub job_name: String,
    pub job_seq: String,
    pub euser: String,
    pub egroup: String,
    pub script: std::sync::Arc<Vec<u8>>,
    pub env: Vec<(String, String)>,
    pub nodefile_hosts: Vec<String>,
    pub output_path: String,
    pub error_path: String,
    pub join_path: String,
    pub keep_files: String,
    pub shell: String,
    pub init_work_dir: String,
    pub walltime_limit_secs: u64,
    pub allow_root: bool,
    /// For the prologue and epilogue: `Resource_List` as Torque passes it (see
    /// `dispatch::pelog_limits`), the queue and the account.
    pub resource_limits: String,
    pub queue: String,
    pub account: String,
    /// `-W umask=` (`None`: Torque's 077) and `-F`'s arguments.
    pub umask: Option<u32>,
    pub arguments: Vec<String>,
    /// An interactive job's terminal (`qsub -I`): `None` for a batch job.
    pub terminal: Option<TerminalSetup>,
}

/// How an interactive job's terminal starts: `TERM`, qsub's window, and `-x`'s command
/// (empty: an interactive shell).
#[derive(Debug, Clone, PartialEq)]
pub struct TerminalSetup {
    pub term: String,
    pub window: crate::interactive::Window,
    pub command: String,
}

/// What the server sends a MOM over its session (converted to proto in `mom_session.rs`).
#[derive(Debug, Clone, PartialEq)]
pub enum ToMom {
    Welcome {
        server_name: String,
        status_interval_secs: u32,
        lost_grace_secs: u32,
    },
    Start(Box<StartRunSpec>),
    Signal {
        run_id: u64,
        signal: i32,
        delete: bool,
        kill_delay_secs: u32,
    },
    /// qsig -s suspend (`suspend`) or resume.
    Suspend {
        run_id: u64,
        suspended: bool,
    },
    /// qmsg: `text` and a newline, into the job's stdout and/or stderr file.
    Message {
        run_id: u64,
        text: String,
        stdout: bool,
        stderr: bool,
    },
    AckEnded(Vec<u64>),
    Cancel(Vec<u64>),
}

/// How an attribute value is rendered by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    Text,
    /// Epoch seconds.
    Time,
}

/// One output attribute (`name.resource = value`), the domain twin of the proto `Attr`.
/// Names the server writes are Torque's fixed names, borrowed, so a listing of thousands
/// of jobs copies none; names a client sends (qsub's attributes) are owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: Cow<'static, str>,
    pub resource: String,
    pub value: String,
    pub kind: AttrKind,
}

impl Attr {
    pub fn text(name: &'static str, value: impl Into<String>) -> Attr {
        Attr {
            name: Cow::Borrowed(name),
            resource: String::new(),
            value: value.into(),
            kind: AttrKind::Text,
        }
    }

    pub fn res(name: &'static str, resource: &str, value: impl Into<String>) -> Attr {
        Attr {
            name: Cow::Borrowed(name),
            resource: resource.to_string(),
            value: value.into(),
            kind: AttrKind::Text,
        }
    }

    pub fn time(name: &'static str, epoch: i64) -> Attr {
        Attr {
            name: Cow::Borrowed(name),
            resource: String::new(),
            value: epoch.to_string(),
            kind: AttrKind::Time,
        }
    }
}

/// A named, ordered attribute list (a job, queue, server or node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatObject {
    pub name: String,
    pub attrs: Vec<Attr>,
}

/// Where a job's attributes are written: a row of a [`Table`] (or, in tests, a list).
pub trait AttrSink {
    /// Appends `name` (`name.resource` when `resource` is not empty) = `value`.
    fn attr(&mut self, name: &'static str, resource: &str, kind: AttrKind, value: &str);
}

/// One attribute as a listing's column: a name, a resource part and a kind, without a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub resource: String,
    pub kind: AttrKind,
}

/// A listing of many objects packed as the wire's `StatTable` is: every row name and every
/// value is a slice of one string. Why: a `qstat` of 5,000 jobs built, sent and freed several
/// allocations per value when each row was its own message; packed, it costs a handful.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Table {
    /// Each distinct attribute once, in order of first appearance.
    pub columns: Vec<Column>,
    pub names: String,
    /// End offset in `names` of each row's name.
    pub name_ends: Vec<u32>,
    /// Cell count at the end of each row.
    pub row_ends: Vec<u32>,
    /// Column of each cell.
    pub cell_columns: Vec<u32>,
    pub values: String,
    /// End offset in `values` of each cell's value.
    pub value_ends: Vec<u32>,
}

impl Table {
    /// Roughly the bytes this table takes on the wire.
    pub fn byte_len(&self) -> usize {
        let offsets = self.name_ends.len()
            + self.row_ends.len()
            + self.cell_columns.len()
            + self.value_ends.len();
        self.names.len() + self.values.len() + 4 * offsets
    }

    /// Appends a row whose name `write_name` appends to the string it is given, and whose
    /// cells `fill` writes.
    pub fn push_row(
        &mut self,
        write_name: impl FnOnce(&mut String),
        fill: impl FnOnce(&mut TableRow<'_>),
    ) {
        write_name(&mut self.names);
        self.name_ends.push(offset(self.names.len()));
        let start = self.cell_columns.len();
        fill(&mut TableRow { table: self, start });
        self.row_ends.push(offset(self.cell_columns.len()));
    }

    /// The column for `name.resource` of `kind`, added when new.
    fn column(
        &mut self,
        position: usize,
        name: &'static str,
        resource: &str,
        kind: AttrKind,
    ) -> u32 {
        let is = |c: &Column| {
            // Names are the same static strings: compare addresses before bytes.
            let same_name = std::ptr::eq(c.name, name) || c.name == name;
            c.kind == kind && same_name && same_text(&c.resource, resource)
        };
        // Objects mostly list the same attributes in the same order, so the column at the
        // same position in the previous row (the last one pushed) is tried first.
        let previous_end = self.row_ends.last().map_or(0, |&e| e as usize);
        let previous_start = self
            .row_ends
            .len()
            .checked_sub(2)
            .map_or(0, |i| self.row_ends[i] as usize);
        let hint = (previous_start + position < previous_end)
            .then(|| self.cell_columns[previous_start + position]);
        if let Some(c) = hint.filter(|&c| is(&self.columns[c as usize])) {
            return c;
        }
        if let Some(c) = self.columns.iter().position(is) {
            return offset(c);
        }
        self.columns.push(Column {
            name,
            resource: resource.to_string(),
            kind,
        });
        offset(self.columns.len() - 1)
    }
}

/// The row being written by [`Table::push_row`].
pub struct TableRow<'t> {
    table: &'t mut Table,
    /// Index of this row's first cell.
    start: usize,
}

impl AttrSink for TableRow<'_> {
    fn attr(&mut self, name: &'static str, resource: &str, kind: AttrKind, value: &str) {
        let position = self.table.cell_columns.len() - self.start;
        let column = self.table.column(position, name, resource, kind);
        self.table.cell_columns.push(column);
        self.table.values.push_str(value);
        self.table.value_ends.push(offset(self.table.values.len()));
    }
}

/// A table offset on the wire. A listing past 4 GiB could not be sent anyway (replies are
/// capped far below), so saturating is only a guard against wrapping around.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_job_keys_hold_the_array_and_index_and_sort_after_numbered_jobs() {
        let key = member_key(20, 3);
        assert_eq!(member_of(key), Some((20, 3)));
        assert_eq!(member_of(20), None);
        assert_eq!(job_id(key, "vm"), "20[3].vm");
        assert_eq!(job_id(20, "vm"), "20.vm");
        assert!(key >= FIRST_MEMBER_KEY && 20 < FIRST_MEMBER_KEY);
        assert!(member_key(20, 99_999) < member_key(21, 0));
        assert!(member_keys(20).contains(&member_key(20, 99_999)));
        assert!(!member_keys(20).contains(&member_key(21, 0)));
        let top = member_key(MAX_ARRAY_NUMBER, 99_999);
        assert_eq!(member_of(top), Some((MAX_ARRAY_NUMBER, 99_999)));
        assert!(i64::try_from(top).is_ok(), "SQLite stores keys as i64");
    }

    /// Torque's update_array_statuses: R while any runs, C once all are, else Q (held
    /// and waiting sub-jobs count as queued); the row has the array's id, name and paths.
    #[test]
    fn an_arrays_summary_row_follows_its_sub_jobs() {
        let sub = |index: u32, state: JobState| Job {
            seq: member_key(20, index),
            state,
            name: format!("arr-{index}"),
            output_path: format!("vm:/w/arr.o20-{index}"),
            variable_list: format!("PBS_O_QUEUE=batch,PBS_ARRAYID={index}"),
            array: Some(ArrayPart {
                request: "1-3".into(),
                slot_limit: None,
            }),
            exit_status: (state == JobState::Completed).then_some(0),
            ..crate::store::tests::sample_job(0)
        };
        let state_of = |states: &[JobState]| {
            let jobs: Vec<Job> = states
                .iter()
                .enumerate()
                .map(|(i, s)| sub(i as u32 + 1, *s))
                .collect();
            array_summary(&jobs).map(|j| j.state)
        };
        use JobState::*;
        assert_eq!(state_of(&[Completed, Running, Held]), Some(Running));
        assert_eq!(state_of(&[Completed, Held, Queued]), Some(Queued));
        assert_eq!(state_of(&[Held, Held]), Some(Queued));
        assert_eq!(state_of(&[Completed, Completed]), Some(Completed));
        assert_eq!(state_of(&[]), None);

        let jobs = [sub(1, Completed), sub(2, Running)];
        let row = array_summary(&jobs).expect("a row");
        assert!(row.is_array_summary());
        assert_eq!(row.id("vm"), "20[].vm");
        assert_eq!(
            (
                row.name.as_str(),
                row.output_path.as_str(),
                row.variable_list.as_str()
            ),
            ("arr", "vm:/w/arr.o20", "PBS_O_QUEUE=batch")
        );
        assert_eq!(
            (row.exit_status, row.resources_used.is_none()),
            (None, true)
        );
        assert_eq!(jobs[1].id("vm"), "20[2].vm");
        assert!(!jobs[1].is_array_summary());
    }

    /// Stored jobs without a rank are ranked by queue time then number, behind any ranked
    /// job, and named for saving; ranked jobs keep theirs.
    #[test]
    fn unranked_jobs_are_ranked_in_the_order_they_entered_their_queues() {
        let job = |seq: u64, qtime: i64, queue_rank: u64| Job {
            qtime,
            queue_rank,
            ..crate::store::tests::sample_job(seq)
        };
        let mut jobs = vec![job(1, 50, 0), job(2, 10, 0), job(3, 10, 7), job(4, 10, 0)];
        assert_eq!(rank_unranked(&mut jobs), [2, 4, 1]);
        let ranks: Vec<(u64, u64)> = jobs.iter().map(|j| (j.seq, j.rank())).collect();
        assert_eq!(ranks, [(1, 10), (2, 8), (3, 7), (4, 9)]);
        assert!(rank_unranked(&mut jobs).is_empty(), "once");
    }

    #[test]
    fn hold_letters_round_trip() {
        assert_eq!(HoldTypes::parse("n").unwrap().letters(), "n");
        assert_eq!(HoldTypes::parse("su").unwrap().letters(), "us");
        assert!(HoldTypes::parse("x").is_none());
    }

    #[test]
    fn differing_holds_are_those_set_in_one_only() {
        let us = HoldTypes::parse("us").unwrap();
        assert_eq!(us.differing(HoldTypes::parse("u").unwrap()).letters(), "s");
        assert_eq!(us.differing(us).letters(), "n");
    }

    #[test]
    fn variable_list_honours_escaped_commas() {
        let vars = split_variable_list("A=1,B=x\\,y,C=");
        assert_eq!(
            vars,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x,y".into()),
                ("C".into(), "".into())
            ]
        );
    }
}
