//! Domain objects → ordered Torque attribute lists, exactly as `qstat -f` / `pbsnodes` print them.
//!
//! Why here and not in the commands: Torque prints attributes in the server's internal order,
//! and tools parse that output; keeping the order (and the value spellings) in one server-side
//! place means every command shows the same thing. Pure functions over the in-memory state.

use std::collections::HashMap;

use crate::model::{
    Attr, AttrKind, AttrSink, DepKind, HostSlots, Job, JobState, NodeStatus, Queue, StatObject,
};
use crate::resources;
use crate::state::{NodeRuntime, State, StateCounts};

/// Compresses slot numbers into Torque's ranges: `[0,1]` → `0-1`, `[0,2]` → `0,2`.
pub fn compress_slots(slots: &[u32]) -> String {
    let mut sorted = slots.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if start == end {
            parts.push(start.to_string());
        } else {
            parts.push(format!("{start}-{end}"));
        }
        i += 1;
    }
    parts.join(",")
}

/// `node/0-1+node2/0`.
pub fn format_exec_host(hosts: &[HostSlots]) -> String {
    hosts
        .iter()
        .map(|h| format!("{}/{}", h.node, compress_slots(&h.slots)))
        .collect::<Vec<_>>()
        .join("+")
}

/// For each job (or array, by its number), the jobs depending on it: `(kind, dependent's
/// id)` (for `beforeok:16.vm`).
pub type ReverseDeps = HashMap<u64, Vec<(DepKind, String)>>;

/// Builds the reverse dependency index once per listing. A dependent array all of whose
/// sub-jobs wait alike (they copied the condition at submission) is named once, `12[]`,
/// not as each of thousands of sub-jobs.
pub fn reverse_deps(state: &State) -> ReverseDeps {
    let server = state.server_name.as_str();
    let mut dependents: HashMap<u64, Vec<(DepKind, u64)>> = HashMap::new();
    for job in state.jobs.values() {
        for dep in &job.depend {
            dependents
                .entry(dep.seq)
                .or_default()
                .push((dep.kind, job.seq));
        }
    }
    let mut map = ReverseDeps::with_capacity(dependents.len());
    for (parent, children) in dependents {
        let mut waiting_sub_jobs: HashMap<(&str, u64), usize> = HashMap::new();
        for (kind, child) in &children {
            if let Some((array, _)) = crate::model::member_of(*child) {
                *waiting_sub_jobs.entry((kind.name(), array)).or_default() += 1;
            }
        }
        // Each array's size counted once, not once per waiting sub-job.
        let sizes: HashMap<u64, usize> = waiting_sub_jobs
            .keys()
            .map(|&(_, array)| (array, state.sub_jobs(array).count()))
            .collect();
        let whole = |kind: DepKind, array: u64| {
            waiting_sub_jobs.get(&(kind.name(), array)) == sizes.get(&array)
        };
        let mut shown = std::collections::HashSet::new();
        let items = children
            .iter()
            .filter_map(|&(kind, child)| match crate::model::member_of(child) {
                Some((array, _)) if whole(kind, array) => shown
                    .insert((kind.name(), array))
                    .then(|| (kind, crate::model::array_id(array, server))),
                _ => Some((kind, crate::model::job_id(child, server))),
            })
            .collect();
        map.insert(parent, items);
    }
    map
}

/// Groups `(name, id)` pairs by consecutive name: `afterok:1.vm:2.vm,afterany:3.vm`.
fn group_deps(items: &[(&str, String)]) -> String {
    let mut out = String::new();
    let mut last: Option<&str> = None;
    for (name, id) in items {
        if last == Some(*name) {
            out.push(':');
            out.push_str(id);
        } else {
            if last.is_some() {
                out.push(',');
            }
            out.push_str(name);
            out.push(':');
            out.push_str(id);
            last = Some(name);
        }
    }
    out
}

/// The `depend` value of a job: its own conditions, then the jobs waiting on it.
pub fn depend_string(job: &Job, reverse: &ReverseDeps, server: &str) -> String {
    let mut items: Vec<(&str, String)> = job
        .depend
        .iter()
        .map(|d| (d.kind.name(), d.parent_id(server)))
        .collect();
    if let Some(children) = reverse.get(&job.seq) {
        items.extend(
            children
                .iter()
                .map(|(kind, id)| (kind.reverse_name(), id.clone())),
        );
    }
    group_deps(&items)
}

fn bool_text(value: bool) -> &'static str {
    if value {
        "True"
    } else {
        "False"
    }
}

/// Which attributes a caller asked for (Torque's `pbs_statjob` attribute list): names such as
/// `Job_Name` or `Resource_List` (all of its resources). Listing only what a command prints
/// keeps a 5,000-job `qstat` small.
#[derive(Debug, Clone, Default)]
pub struct AttrFilter {
    names: Vec<String>,
    /// The bits of [`JOB_ATTR_NAMES`] wanted, computed once per request.
    job_mask: u64,
}

impl AttrFilter {
    /// `None` (everything) for an empty list.
    pub fn new(names: impl IntoIterator<Item = String>) -> Option<AttrFilter> {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        if names.is_empty() {
            return None;
        }
        let mut filter = AttrFilter { names, job_mask: 0 };
        filter.job_mask = JOB_ATTR_NAMES
            .iter()
            .enumerate()
            .filter(|(_, n)| filter.wants(n))
            .fold(0, |mask, (i, _)| mask | 1 << i);
        Some(filter)
    }

    /// Whether `name`, or some resource of it (`resources_used.cput` asks for
    /// `resources_used`), is wanted. A scan: the lists are short (a command asks for a
    /// handful of names), and this runs once per job attribute name per request.
    pub fn wants(&self, name: &str) -> bool {
        self.names.iter().any(|n| {
            n == name
                || (n.len() > name.len() && n.starts_with(name) && n.as_bytes()[name.len()] == b'.')
        })
    }

    /// Whether `name.resource` is wanted: the whole of `name`, or that resource of it.
    pub fn wants_res(&self, name: &str, resource: &str) -> bool {
        self.names.iter().any(|n| {
            n == name
                || (n.len() == name.len() + 1 + resource.len()
                    && n.starts_with(name)
                    && n.ends_with(resource)
                    && n.as_bytes()[name.len()] == b'.')
        })
    }
}

/// Every attribute [`write_job_attrs`] can emit. A filter becomes a bit mask over this table once
/// per request, so the ~50 "is this wanted?" questions per job are bit tests, not string
/// compares (they were a third of a 5,000-job listing's server time).
const JOB_ATTR_NAMES: [&str; 54] = [
    "Job_Name",
    "Job_Owner",
    "resources_used",
    "job_state",
    "queue",
    "server",
    "Account_Name",
    "Checkpoint",
    "ctime",
    "depend",
    "Error_Path",
    "exec_host",
    "Execution_Time",
    "group_list",
    "Hold_Types",
    "interactive",
    "Join_Path",
    "Keep_Files",
    "Mail_Points",
    "Mail_Users",
    "mtime",
    "Output_Path",
    "Priority",
    "start_priority",
    "qtime",
    "Rerunable",
    "Resource_List",
    "session_id",
    "Shell_Path_List",
    "User_List",
    "Variable_List",
    "euser",
    "egroup",
    "queue_type",
    "comment",
    "etime",
    "exit_status",
    "submit_args",
    "job_array_id",
    "job_array_request",
    "umask",
    "start_time",
    // Torque's attribute `Walltime`, resource `Remaining` (so `qstat -x` nests it).
    "Walltime",
    "start_count",
    "fault_tolerant",
    "comp_time",
    "job_radix",
    "total_runtime",
    "node_exclusive",
    "submit_host",
    "init_work_dir",
    "job_arguments",
    "kill_delay",
    "request_version",
];

/// One of [`JOB_ATTR_NAMES`], resolved at compile time by [`at!`].
#[derive(Clone, Copy)]
struct AttrId {
    bit: u64,
    name: &'static str,
}

impl AttrId {
    /// The entry for `name`; a name missing from the table fails the build.
    const fn of(name: &'static str) -> AttrId {
        let mut i = 0;
        while i < JOB_ATTR_NAMES.len() {
            if const_str_eq(JOB_ATTR_NAMES[i], name) {
                return AttrId { bit: 1 << i, name };
            }
            i += 1;
        }
        panic!("attribute missing from JOB_ATTR_NAMES")
    }
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// `at!("Job_Name")`: the compile-time [`AttrId`] of a job attribute.
macro_rules! at {
    ($name:literal) => {
        const { AttrId::of($name) }
    };
}

/// Writes wanted attributes to a sink; unwanted ones cost a bit test and nothing else.
struct Out<'f, S> {
    sink: &'f mut S,
    filter: Option<&'f AttrFilter>,
    /// Which of [`JOB_ATTR_NAMES`] are wanted (all bits without a filter).
    mask: u64,
}

impl<S: AttrSink> Out<'_, S> {
    fn wants(&self, id: AttrId) -> bool {
        self.mask & id.bit != 0
    }

    fn text(&mut self, id: AttrId, value: impl AsRef<str>) {
        if self.wants(id) {
            self.sink.attr(id.name, "", AttrKind::Text, value.as_ref());
        }
    }

    fn wants_res(&self, id: AttrId, resource: &str) -> bool {
        self.wants(id) && self.filter.is_none_or(|f| f.wants_res(id.name, resource))
    }

    fn res(&mut self, id: AttrId, resource: &str, value: impl AsRef<str>) {
        if self.wants_res(id, resource) {
            self.sink
                .attr(id.name, resource, AttrKind::Text, value.as_ref());
        }
    }

    /// [`Out::res`] for values that cost something to compute.
    fn res_lazy(&mut self, id: AttrId, resource: &str, value: impl FnOnce() -> String) {
        if self.wants_res(id, resource) {
            self.sink.attr(id.name, resource, AttrKind::Text, &value());
        }
    }

    /// For values that cost something to compute.
    fn lazy(&mut self, id: AttrId, value: impl FnOnce() -> String) {
        if self.wants(id) {
            self.sink.attr(id.name, "", AttrKind::Text, &value());
        }
    }

    fn time(&mut self, id: AttrId, epoch: i64) {
        if self.wants(id) {
            self.sink.attr(
                id.name,
                "",
                AttrKind::Time,
                itoa::Buffer::new().format(epoch),
            );
        }
    }
}

/// Writes a job's attributes, in Torque's `qstat -f` order, to `sink` (a listing's row).
pub fn write_job_attrs(
    job: &Job,
    state: &State,
    reverse: &ReverseDeps,
    now: i64,
    filter: Option<&AttrFilter>,
    sink: &mut impl AttrSink,
) {
    let server = state.server_name.as_str();
    let mut a = Out {
        sink,
        filter,
        mask: filter.map_or(u64::MAX, |f| f.job_mask),
    };
    a.text(at!("Job_Name"), &job.name);
    a.text(at!("Job_Owner"), &job.owner);
    if let Some(used) = job
        .resources_used
        .as_ref()
        .filter(|_| a.wants(at!("resources_used")))
    {
        // Formatted only when printed: a listing asks for cput alone, of thousands of jobs.
        let used_at = at!("resources_used");
        a.res_lazy(used_at, "cput", || {
            resources::format_duration(used.cput_secs)
        });
        a.res_lazy(used_at, "vmem", || format!("{}kb", used.vmem_kb));
        a.res_lazy(used_at, "walltime", || {
            resources::format_duration(used.walltime_secs)
        });
        a.res_lazy(used_at, "mem", || format!("{}kb", used.mem_kb));
        a.res(at!("resources_used"), "energy_used", "0");
    }
    // Torque's `S`: a running job's state letter while it is suspended.
    let letter = if job.state == JobState::Running && job.suspended {
        "S"
    } else {
        job.state.letter()
    };
    a.text(at!("job_state"), letter);
    a.text(at!("queue"), &job.queue);
    a.text(at!("server"), server);
    if let Some(account) = &job.account {
        a.text(at!("Account_Name"), account);
    }
    a.text(at!("Checkpoint"), &job.checkpoint);
    a.time(at!("ctime"), job.ctime);
    let depend = if a.wants(at!("depend")) {
        depend_string(job, reverse, server)
    } else {
        String::new()
    };
    if !depend.is_empty() {
        a.text(at!("depend"), &depend);
    }
    a.text(at!("Error_Path"), &job.error_path);
    if !job.exec_host.is_empty() && a.wants(at!("exec_host")) {
        a.lazy(at!("exec_host"), || format_exec_host(&job.exec_host));
    }
    if let Some(t) = job.execution_time {
        a.time(at!("Execution_Time"), t);
    }
    if let Some(list) = &job.group_list {
        a.text(at!("group_list"), list);
    }
    a.lazy(at!("Hold_Types"), || job.hold_types.letters());
    if job.interactive.is_some() {
        // Torque keeps qsub's port here and shows its clients a boolean (encode_inter).
        a.text(at!("interactive"), "True");
    }
    a.text(at!("Join_Path"), &job.join_path);
    a.text(at!("Keep_Files"), &job.keep_files);
    a.text(at!("Mail_Points"), &job.mail_points);
    if let Some(users) = &job.mail_users {
        a.text(at!("Mail_Users"), users);
    }
    a.time(at!("mtime"), job.mtime);
    a.text(at!("Output_Path"), &job.output_path);
    a.lazy(at!("Priority"), || job.priority.to_string());
    // Not a Torque attribute: the combined priority (queue, `-p`, age, fair share) the
    // scheduler ordered this queued job by at its last periodic pass (`dispatch::SAFETY_PASS`).
    if job.state == JobState::Queued {
        if let Some(p) = state.learning.priorities.get(&job.seq) {
            a.lazy(at!("start_priority"), || format!("{p:.2}"));
        }
    }
    a.time(at!("qtime"), job.qtime);
    a.text(at!("Rerunable"), bool_text(job.rerunable));
    for (name, value) in &job.resources {
        a.res(at!("Resource_List"), name, value);
    }
    if let Some(session) = job.session_id {
        a.lazy(at!("session_id"), || session.to_string());
    }
    if let Some(shell) = &job.shell_path {
        a.text(at!("Shell_Path_List"), shell);
    }
    if let Some(users) = &job.user_list {
        a.text(at!("User_List"), users);
    }
    a.text(at!("Variable_List"), &job.variable_list);
    a.text(at!("euser"), &job.euser);
    a.text(at!("egroup"), &job.egroup);
    a.text(at!("queue_type"), "E");
    if let Some(comment) = &job.comment {
        a.text(at!("comment"), comment);
    }
    if let Some(t) = job.etime {
        a.time(at!("etime"), t);
    }
    // A completed job's, or why a requeued job's last start failed (-14, -3).
    if let Some(status) = job.exit_status {
        a.lazy(at!("exit_status"), || status.to_string());
    }
    if let Some(args) = &job.submit_args {
        a.text(at!("submit_args"), args);
    }
    // A sub-job names its index; an array's summary row its request (Torque's job_clone
    // gives sub-jobs no `job_array_request`).
    if let Some(index) = job.array_index() {
        a.lazy(at!("job_array_id"), || index.to_string());
    } else if let Some(part) = &job.array {
        a.text(at!("job_array_request"), &part.request);
    }
    // The mask's value in decimal, as Torque shows it (`-W umask=022`: 18).
    if let Some(mask) = job.umask {
        a.lazy(at!("umask"), || mask.to_string());
    }
    if let Some(t) = job.start_time {
        a.time(at!("start_time"), t);
    }
    if job.state == JobState::Running && a.wants_res(at!("Walltime"), "Remaining") {
        if let (Some(limit), Some(start)) = (job.walltime_secs(), job.start_time) {
            let elapsed = (now - start).max(0) as u64;
            let remaining = limit as i64 - elapsed as i64;
            a.res(at!("Walltime"), "Remaining", remaining.to_string());
        }
    }
    if job.start_count > 0 {
        a.lazy(at!("start_count"), || job.start_count.to_string());
    }
    a.text(at!("fault_tolerant"), bool_text(job.fault_tolerant));
    if let Some(t) = job.comp_time {
        a.time(at!("comp_time"), t);
    }
    a.text(at!("job_radix"), "0");
    if let Some(total) = job.total_runtime {
        a.lazy(at!("total_runtime"), || format!("{total:.6}"));
    }
    if job.node_exclusive {
        a.text(at!("node_exclusive"), "True");
    }
    a.text(at!("submit_host"), &job.submit_host);
    a.text(at!("init_work_dir"), &job.init_work_dir);
    if let Some(args) = &job.job_arguments {
        a.text(at!("job_arguments"), args);
    }
    if let Some(delay) = job.kill_delay {
        a.lazy(at!("kill_delay"), || delay.to_string());
    }
    a.text(at!("request_version"), "1");
}

/// `resources_assigned.*` of a queue (or, with `None`, the server): what the running jobs
/// requested, `nodect` always and `mem` (in bytes, as Torque prints the sum) once some job
/// asked for memory.
fn resources_assigned(state: &State, queue: Option<&str>) -> Vec<Attr> {
    let mut nodect: u64 = 0;
    let mut mem_kb: u64 = 0;
    for job in state
        .running_jobs()
        .filter(|j| queue.is_none_or(|q| j.queue == q))
    {
        let nodes = job.resource("nodect").and_then(|n| n.parse::<u64>().ok());
        nodect = nodect.saturating_add(nodes.unwrap_or(0));
        let mem = job
            .resource("mem")
            .and_then(crate::resources::parse_size_kb);
        mem_kb = mem_kb.saturating_add(mem.unwrap_or(0));
    }
    let mut a = vec![Attr::res(
        "resources_assigned",
        "nodect",
        nodect.to_string(),
    )];
    if mem_kb > 0 {
        a.push(Attr::res(
            "resources_assigned",
            "mem",
            format!("{}b", mem_kb.saturating_mul(1024)),
        ));
    }
    a
}

/// A queue's attributes in Torque's `qstat -Qf` order.
pub fn queue_attrs(queue: &Queue, state: &State) -> StatObject {
    let counts = state.counts(Some(&queue.name));
    let mut a = vec![
        Attr::text("queue_type", "Execution"),
        Attr::text("total_jobs", counts.total().to_string()),
        Attr::text("state_count", counts.torque_string()),
    ];
    if queue.priority != 0 {
        a.push(Attr::text("priority", queue.priority.to_string()));
    }
    for (enable_attr, enabled, list_attr, list) in [
        (
            "acl_host_enable",
            queue.acl_host_enable,
            "acl_hosts",
            &queue.acl_hosts,
        ),
        (
            "acl_user_enable",
            queue.acl_user_enable,
            "acl_users",
            &queue.acl_users,
        ),
        (
            "acl_group_enable",
            queue.acl_group_enable,
            "acl_groups",
            &queue.acl_groups,
        ),
    ] {
        if enabled {
            a.push(Attr::text(enable_attr, "True"));
        }
        if !list.is_empty() {
            a.push(Attr::text(list_attr, list.join(",")));
        }
    }
    for (name, value) in &queue.resources_default {
        a.push(Attr::res("resources_default", name, value));
    }
    a.push(Attr::time("mtime", queue.mtime));
    a.extend(resources_assigned(state, Some(&queue.name)));
    a.push(Attr::text("enabled", bool_text(queue.enabled)));
    a.push(Attr::text("started", bool_text(queue.started)));
    StatObject {
        name: queue.name.clone(),
        attrs: a,
    }
}

/// The server's attributes in Torque's `qstat -Bf` order.
pub fn server_attrs(state: &State, keep_completed: u64) -> StatObject {
    let counts: StateCounts = state.counts(None);
    let name = state.server_name.as_str();
    let security = &state.server_attrs;
    let mut a = vec![
        Attr::text("server_state", "Active"),
        Attr::text("scheduling", bool_text(security.scheduling)),
        Attr::text("total_jobs", counts.total().to_string()),
        Attr::text("state_count", counts.torque_string()),
        Attr::text("acl_hosts", name),
    ];
    // Torque lists only attributes that are set.
    for (attr, list) in [
        ("managers", &security.managers),
        ("operators", &security.operators),
        ("submit_hosts", &security.submit_hosts),
    ] {
        if !list.is_empty() {
            a.push(Attr::text(attr, list.join(",")));
        }
    }
    if security.query_other_jobs {
        a.push(Attr::text("query_other_jobs", "True"));
    }
    if !state.default_queue.is_empty() {
        a.push(Attr::text("default_queue", &state.default_queue));
    }
    let mail = &security.mail;
    a.extend([
        Attr::text("log_events", "2047"),
        Attr::text("mail_from", mail.from()),
    ]);
    for (attr, value) in [
        ("mail_domain", &mail.domain),
        ("mail_subject_fmt", &mail.subject_fmt),
        ("mail_body_fmt", &mail.body_fmt),
    ] {
        if let Some(value) = value {
            a.push(Attr::text(attr, value));
        }
    }
    if mail.no_mail_force {
        a.push(Attr::text("no_mail_force", "True"));
    }
    a.extend(resources_assigned(state, None));
    a.extend([
        Attr::text("node_check_rate", "150"),
        Attr::text("tcp_timeout", "300"),
        Attr::text("job_stat_rate", "300"),
        Attr::text("poll_jobs", "True"),
        Attr::text("down_on_error", "True"),
        Attr::text("mom_job_sync", "True"),
        Attr::text("pbs_version", capstan_proto::PBS_VERSION),
        Attr::text("keep_completed", keep_completed.to_string()),
    ]);
    // Torque sets it with the first job: a new server does not show it.
    if state.next_job_number > 0 {
        a.push(Attr::text(
            "next_job_number",
            state.next_job_number.to_string(),
        ));
    }
    a.extend([
        Attr::text("moab_array_compatible", "True"),
        Attr::text("nppcu", "1"),
        Attr::text("timeout_for_job_delete", "120"),
        Attr::text("timeout_for_job_requeue", "120"),
        Attr::text("note_append_on_error", "True"),
    ]);
    StatObject {
        name: name.to_string(),
        attrs: a,
    }
}

/// Torque's `status` string, keys in Torque's order.
pub fn status_string(status: &NodeStatus) -> String {
    let sessions = if status.sessions.is_empty() {
        "? 0".to_string()
    } else {
        status
            .sessions
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "opsys={},uname={},sessions={},nsessions={},nusers={},idletime={},totmem={}kb,availmem={}kb,physmem={}kb,ncpus={},loadave={:.2},{}gres=,netload={},state={},varattr= ,cpuclock=Fixed,version={},rectime={},jobs={}",
        status.opsys,
        status.uname,
        sessions,
        status.sessions.len(),
        status.nusers,
        status.idletime,
        status.totmem_kb,
        status.availmem_kb,
        status.physmem_kb,
        status.ncpus,
        status.loadave,
        status
            .message
            .as_deref()
            .map(|m| format!("message={m},"))
            .unwrap_or_default(),
        status.netload,
        if status.state.is_empty() { "free" } else { &status.state },
        capstan_proto::PBS_VERSION,
        status.rectime,
        status.jobs.join(" "),
    )
}

/// `0-1/48.vm,2/49.vm`: each job's slots on the node, ordered by first slot.
pub fn node_jobs_string(node: &NodeRuntime, server: &str) -> String {
    let mut order: Vec<u64> = Vec::new();
    let mut slots: HashMap<u64, Vec<u32>> = HashMap::new();
    for (i, s) in node.slots.iter().enumerate() {
        if let Some(seq) = s {
            if !slots.contains_key(seq) {
                order.push(*seq);
            }
            slots.entry(*seq).or_default().push(i as u32);
        }
    }
    order
        .iter()
        .map(|seq| {
            format!(
                "{}/{}",
                compress_slots(&slots[seq]),
                crate::model::job_id(*seq, server)
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `2.0`, `1.5`: speeds always show a decimal point.
pub fn format_speed(speed: f64) -> String {
    if speed.fract() == 0.0 {
        format!("{speed:.1}")
    } else {
        format!("{speed}")
    }
}

/// A node's attributes in `pbsnodes` order.
pub fn node_attrs(node: &NodeRuntime, server: &str) -> StatObject {
    let mut a = vec![
        Attr::text("state", node.state_string()),
        Attr::text("power_state", "Running"),
        Attr::text("np", node.def.np.to_string()),
    ];
    if !node.def.properties.is_empty() {
        a.push(Attr::text("properties", node.def.properties.join(",")));
    }
    a.push(Attr::text("ntype", "cluster"));
    a.push(Attr::text("site", &node.def.site));
    a.push(Attr::text("speed", format_speed(node.def.speed)));
    if let Some(learned) = node.learned_speed {
        a.push(Attr::text("learned_speed", format!("{learned:.2}")));
    }
    if !node.def.dedicated {
        a.push(Attr::text("dedicated", "False"));
    }
    if let Some(window) = &node.def.window {
        a.push(Attr::text("window", window.to_string()));
    }
    if !node.def.access.users.is_empty() {
        a.push(Attr::text("acl_users", node.def.access.users.join(",")));
    }
    if !node.def.access.groups.is_empty() {
        a.push(Attr::text("acl_groups", node.def.access.groups.join(",")));
    }
    let jobs = node_jobs_string(node, server);
    if !jobs.is_empty() {
        a.push(Attr::text("jobs", jobs));
    }
    if let Some(status) = &node.status {
        if node.is_up() {
            a.push(Attr::text("status", status_string(status)));
        }
    }
    if let Some(note) = &node.flags.note {
        a.push(Attr::text("note", note));
    }
    a.push(Attr::text(
        "mom_service_port",
        node.def.mom_ports.0.to_string(),
    ));
    a.push(Attr::text(
        "mom_manager_port",
        node.def.mom_ports.1.to_string(),
    ));
    if node.def.gpus > 0 {
        a.push(Attr::text("gpus", node.def.gpus.to_string()));
    }
    StatObject {
        name: node.def.name.clone(),
        attrs: a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl AttrSink for Vec<Attr> {
        fn attr(&mut self, name: &'static str, resource: &str, kind: AttrKind, value: &str) {
            self.push(Attr {
                name: std::borrow::Cow::Borrowed(name),
                resource: resource.to_string(),
                value: value.to_string(),
                kind,
            });
        }
    }

    /// A job's attributes as a list, for asserting on names and values.
    fn job_attrs(
        job: &Job,
        state: &State,
        reverse: &ReverseDeps,
        now: i64,
        filter: Option<&AttrFilter>,
    ) -> StatObject {
        let mut attrs = Vec::new();
        write_job_attrs(job, state, reverse, now, filter, &mut attrs);
        StatObject {
            name: job.id(&state.server_name),
            attrs,
        }
    }
    use crate::model::{Dependency, NodeDef, NodeFlags};
    use std::time::Instant;

    #[test]
    fn filters_take_whole_attributes_or_single_resources() {
        let f =
            AttrFilter::new(["resources_used.cput".to_string(), "Job_Name".to_string()]).unwrap();
        assert!(f.wants("Job_Name"));
        assert!(f.wants("resources_used"));
        assert!(!f.wants("resources"));
        assert!(!f.wants("Job_Owner"));
        assert!(f.wants_res("resources_used", "cput"));
        assert!(!f.wants_res("resources_used", "mem"));
        let whole = AttrFilter::new(["Resource_List".to_string()]).unwrap();
        assert!(whole.wants_res("Resource_List", "walltime"));
    }

    #[test]
    fn slot_ranges_compress_like_torque() {
        assert_eq!(compress_slots(&[0]), "0");
        assert_eq!(compress_slots(&[0, 1]), "0-1");
        assert_eq!(compress_slots(&[0, 2]), "0,2");
        assert_eq!(compress_slots(&[3, 0, 1, 5, 6, 7]), "0-1,3,5-7");
        let hosts = vec![
            HostSlots {
                node: "vm".into(),
                slots: vec![0, 1],
            },
            HostSlots {
                node: "vm2".into(),
                slots: vec![0],
            },
        ];
        assert_eq!(format_exec_host(&hosts), "vm/0-1+vm2/0");
    }

    #[test]
    fn dependencies_group_by_kind() {
        let items = vec![
            ("afterok", "1.vm".to_string()),
            ("afterok", "2.vm".to_string()),
            ("afterany", "3.vm".to_string()),
        ];
        assert_eq!(group_deps(&items), "afterok:1.vm:2.vm,afterany:3.vm");
        let _ = Dependency {
            kind: DepKind::AfterOk,
            seq: 1,
            satisfied: false,
        };
    }

    fn node(np: u32) -> NodeRuntime {
        NodeRuntime::new(
            NodeDef {
                name: "vm".into(),
                np,
                site: "default".into(),
                speed: 1.0,
                dedicated: true,
                window: None,
                gpus: 0,
                properties: vec!["fast".into(), "ib".into()],
                access: Default::default(),
                mom_ports: crate::model::DEFAULT_MOM_PORTS,
            },
            NodeFlags::default(),
            Instant::now(),
        )
    }

    #[test]
    fn node_attrs_follow_pbsnodes_order() {
        let mut n = node(3);
        n.slots = vec![Some(48), Some(48), Some(49)];
        n.flags.note = Some("maint".into());
        let obj = node_attrs(&n, "vm");
        let names: Vec<&str> = obj.attrs.iter().map(|a| &*a.name).collect();
        assert_eq!(
            names,
            vec![
                "state",
                "power_state",
                "np",
                "properties",
                "ntype",
                "site",
                "speed",
                "jobs",
                "note",
                "mom_service_port",
                "mom_manager_port"
            ]
        );
        assert_eq!(obj.attrs[0].value, "down");
        assert_eq!(obj.attrs[3].value, "fast,ib");
        assert_eq!(obj.attrs[6].value, "1.0");
        assert_eq!(obj.attrs[7].value, "0-1/48.vm,2/49.vm");
        assert_eq!(format_speed(1.5), "1.5");
        n.learned_speed = Some(1.926);
        let obj = node_attrs(&n, "vm");
        assert_eq!(obj.attrs[6].name, "speed");
        assert_eq!(obj.attrs[7].name, "learned_speed");
        assert_eq!(obj.attrs[7].value, "1.93");
    }

    #[test]
    fn queued_jobs_show_their_start_priority() {
        let mut state = test_state();
        state.learning.priorities.insert(48, 12.5);
        let mut job = crate::store::tests::sample_job(48);
        let names = |job: &Job, state: &State| -> Vec<(String, String)> {
            job_attrs(job, state, &ReverseDeps::new(), 0, None)
                .attrs
                .into_iter()
                .map(|a| (a.name.into_owned(), a.value))
                .collect()
        };
        let attrs = names(&job, &state);
        let at = attrs.iter().position(|a| a.0 == "start_priority").unwrap();
        assert_eq!(attrs[at - 1].0, "Priority");
        assert_eq!(attrs[at].1, "12.50");
        job.state = JobState::Running;
        assert!(!names(&job, &state).iter().any(|a| a.0 == "start_priority"));
        job.state = JobState::Queued;
        assert!(!names(&job, &test_state())
            .iter()
            .any(|a| a.0 == "start_priority"));
    }

    fn test_state() -> State {
        State::new("vm", 49, "batch", vec![], vec![], Default::default())
    }

    #[test]
    fn queue_and_server_show_what_running_jobs_were_assigned() {
        let mut state = test_state();
        let queue = Queue::new("batch", 0);
        state.queues.push(queue.clone());
        let running = |seq, resources: &[(&str, &str)]| {
            let mut job = crate::store::tests::sample_job(seq);
            job.state = JobState::Running;
            job.resources = resources
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            job
        };
        let flat = |obj: StatObject| -> Vec<String> {
            obj.attrs
                .into_iter()
                .map(|a| match a.resource.as_str() {
                    "" => format!("{} = {}", a.name, a.value),
                    r => format!("{}.{r} = {}", a.name, a.value),
                })
                .collect()
        };
        let assigned = |lines: &[String]| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l.starts_with("resources_assigned."))
                .cloned()
                .collect()
        };
        // No memory asked for: nodect only.
        state.apply_jobs(vec![running(1, &[("nodes", "2"), ("nodect", "2")])]);
        assert_eq!(
            assigned(&flat(queue_attrs(&queue, &state))),
            ["resources_assigned.nodect = 2"]
        );
        // A 100mb job: Torque's sum in bytes, after nodect.
        state.apply_jobs(vec![running(2, &[("mem", "100mb"), ("nodect", "1")])]);
        let want = [
            "resources_assigned.nodect = 3",
            "resources_assigned.mem = 104857600b",
        ];
        assert_eq!(assigned(&flat(queue_attrs(&queue, &state))), want);
        let server = flat(server_attrs(&state, 300));
        assert_eq!(assigned(&server), want);
        assert!(server.contains(&"next_job_number = 49".to_string()));
        // A new server, no number used yet: not shown, as Torque.
        let fresh = State::new("vm", 0, "batch", vec![], vec![], Default::default());
        let fresh = flat(server_attrs(&fresh, 300));
        assert!(
            !fresh.iter().any(|l| l.starts_with("next_job_number")),
            "{fresh:?}"
        );
        let at = server
            .iter()
            .position(|l| l.starts_with("resources_assigned."))
            .unwrap();
        assert_eq!(server[at - 1], "mail_from = adm");
        assert_eq!(server[at + 2], "node_check_rate = 150");
    }

    #[test]
    fn running_job_attrs_follow_qstat_f_order() {
        let mut job = crate::store::tests::sample_job(48);
        job.state = JobState::Running;
        job.resources = vec![
            ("nodes".into(), "1:ppn=2".into()),
            ("nodect".into(), "1".into()),
            ("walltime".into(), "00:10:00".into()),
        ];
        job.exec_host = vec![HostSlots {
            node: "vm".into(),
            slots: vec![0, 1],
        }];
        job.session_id = Some(11493);
        job.start_time = Some(100);
        job.start_count = 1;
        job.comment = Some("Job started on Sat Nov 21 at 16:08".into());
        job.submit_args = Some("-N full job.sh".into());
        let obj = job_attrs(&job, &test_state(), &ReverseDeps::new(), 104, None);
        assert_eq!(obj.name, "48.vm");
        let names: Vec<String> = obj
            .attrs
            .iter()
            .map(|a| {
                if a.resource.is_empty() {
                    a.name.to_string()
                } else {
                    format!("{}.{}", a.name, a.resource)
                }
            })
            .collect();
        let expected = [
            "Job_Name",
            "Job_Owner",
            "job_state",
            "queue",
            "server",
            "Checkpoint",
            "ctime",
            "Error_Path",
            "exec_host",
            "Hold_Types",
            "Join_Path",
            "Keep_Files",
            "Mail_Points",
            "mtime",
            "Output_Path",
            "Priority",
            "qtime",
            "Rerunable",
            "Resource_List.nodes",
            "Resource_List.nodect",
            "Resource_List.walltime",
            "session_id",
            "Variable_List",
            "euser",
            "egroup",
            "queue_type",
            "comment",
            "etime",
            "submit_args",
            "start_time",
            "Walltime.Remaining",
            "start_count",
            "fault_tolerant",
            "job_radix",
            "submit_host",
            "init_work_dir",
            "request_version",
        ];
        assert_eq!(names, expected);
        let value = |n: &str| {
            obj.attrs
                .iter()
                .find(|a| a.name == n)
                .map(|a| a.value.clone())
                .unwrap()
        };
        assert_eq!(value("exec_host"), "vm/0-1");
        let remaining = obj.attrs.iter().find(|a| a.name == "Walltime").unwrap();
        assert_eq!(
            (remaining.resource.as_str(), remaining.value.as_str()),
            ("Remaining", "596")
        );
        assert_eq!(
            obj.attrs.iter().find(|a| a.name == "ctime").unwrap().kind,
            crate::model::AttrKind::Time
        );
    }

    #[test]
    fn filter_keeps_only_requested_attributes_in_order() {
        let mut job = crate::store::tests::sample_job(3);
        job.resources_used = Some(Default::default());
        let filter = AttrFilter::new(
            ["job_state", "Job_Name", "resources_used"]
                .into_iter()
                .map(String::from),
        );
        let obj = job_attrs(&job, &test_state(), &ReverseDeps::new(), 0, filter.as_ref());
        let names: Vec<&str> = obj.attrs.iter().map(|a| &*a.name).collect();
        assert_eq!(names[0], "Job_Name");
        assert_eq!(names[1..6], ["resources_used"; 5]);
        assert_eq!(names[6], "job_state");
        assert_eq!(names.len(), 7);
        assert!(AttrFilter::new(Vec::<String>::new()).is_none());
    }

    #[test]
    fn completed_job_shows_usage_exit_status_and_times() {
        let mut job = crate::store::tests::sample_job(0);
        job.state = JobState::Completed;
        job.resources_used = Some(crate::model::ResourcesUsed {
            cput_secs: 0,
            mem_kb: 0,
            vmem_kb: 0,
            walltime_secs: 0,
        });
        job.exit_status = Some(0);
        job.start_time = Some(10);
        job.start_count = 1;
        job.comp_time = Some(10);
        job.total_runtime = Some(0.056187);
        let obj = job_attrs(&job, &test_state(), &ReverseDeps::new(), 20, None);
        let names: Vec<&str> = obj.attrs.iter().map(|a| &*a.name).collect();
        assert_eq!(
            &names[..7],
            &[
                "Job_Name",
                "Job_Owner",
                "resources_used",
                "resources_used",
                "resources_used",
                "resources_used",
                "resources_used"
            ]
        );
        let used: Vec<(&str, &str)> = obj.attrs[2..7]
            .iter()
            .map(|a| (a.resource.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(
            used,
            vec![
                ("cput", "00:00:00"),
                ("vmem", "0kb"),
                ("walltime", "00:00:00"),
                ("mem", "0kb"),
                ("energy_used", "0")
            ]
        );
        let tail: Vec<&str> = names[names.len() - 9..].to_vec();
        assert_eq!(
            tail,
            vec![
                "start_time",
                "start_count",
                "fault_tolerant",
                "comp_time",
                "job_radix",
                "total_runtime",
                "submit_host",
                "init_work_dir",
                "request_version"
            ]
        );
        assert!(names.contains(&"exit_status"));
        assert!(!names.contains(&"Walltime"));
        let total = obj
            .attrs
            .iter()
            .find(|a| a.name == "total_runtime")
            .unwrap();
        assert_eq!(total.value, "0.056187");
    }

    #[test]
    fn node_state_strings() {
        let mut n = node(2);
        n.flags.offline = true;
        assert_eq!(n.state_string(), "down,offline");
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        n.session = Some(crate::state::SessionHandle { id: 1, tx });
        assert_eq!(n.state_string(), "offline");
        n.flags.offline = false;
        assert_eq!(n.state_string(), "free");
        n.slots = vec![Some(1), Some(2)];
        assert_eq!(n.state_string(), "job-exclusive");
        n.status = Some(NodeStatus {
            state: "busy".into(),
            ..NodeStatus::default()
        });
        assert_eq!(n.state_string(), "job-exclusive,busy");
        assert!(!n.available());
        // A failed health check: connected, but down and taking nothing.
        n.slots = vec![None, None];
        n.status = Some(NodeStatus {
            state: "down".into(),
            message: Some("ERROR: no scratch".into()),
            ..NodeStatus::default()
        });
        assert_eq!(n.state_string(), "down");
        assert!(n.is_up() && !n.available());
    }

    #[test]
    fn status_string_uses_torque_keys() {
        let status = NodeStatus {
            opsys: "linux".into(),
            uname: "Linux vm".into(),
            sessions: vec![2274],
            nusers: 1,
            idletime: 5,
            totmem_kb: 100,
            availmem_kb: 50,
            physmem_kb: 100,
            ncpus: 2,
            loadave: 3.44,
            netload: 9,
            state: "free".into(),
            message: None,
            jobs: vec![],
            rectime: 1795277301,
        };
        assert_eq!(
            status_string(&status),
            "opsys=linux,uname=Linux vm,sessions=2274,nsessions=1,nusers=1,idletime=5,totmem=100kb,availmem=50kb,physmem=100kb,ncpus=2,loadave=3.44,gres=,netload=9,state=free,varattr= ,cpuclock=Fixed,version=6.1.3.h5,rectime=1795277301,jobs="
        );
        // A health check's message comes after the load, as in Torque's MOM.
        let checked = NodeStatus {
            state: "down".into(),
            message: Some("ERROR: no scratch".into()),
            ..status
        };
        assert!(status_string(&checked)
            .contains(",loadave=3.44,message=ERROR: no scratch,gres=,netload=9,state=down,"));
    }
}
