//! The scheduling loop: snapshot → `scheduler::schedule` → one commit → StartRun to MOMs;
//! and qrun ([`run_now`]), the same path for one job an operator starts now.
//!
//! Why event-driven: a job should be running within milliseconds of `qsub` on an idle
//! cluster, so a pass runs whenever something that could let a job start happens (submit, job
//! end, release, node up or change), signalled through one `tokio::sync::Notify` (wake-ups
//! coalesce; a permit is stored if the loop is busy, so none is lost). A periodic pass every
//! [`SAFETY_PASS`] is only a safety net, and also starts `-a` jobs whose time has come and
//! purges completed jobs past `keep_completed`.
//!
//! Order of effects in a pass (design principle 1): ALL runs of the pass (run rows, job state
//! R, exec_host) are committed in ONE transaction, then memory is updated, then each mother
//! superior gets its StartRun. A crash between commit and send leaves runs recorded as R that
//! the MOM does not hold; reconciliation treats them as lost when the MOM reconnects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use crate::attrs::format_exec_host;
use crate::authz::Privilege;
use crate::interactive::{Terminals, Window};
use crate::jobs;
use crate::model::PbsError;
use crate::model::{HostSlots, Job, JobState, StartRunSpec, TerminalSetup, ToMom};
use crate::resources;
use crate::scheduler::access::Owner;
use crate::scheduler::array_limit::ArraySlots;
use crate::scheduler::priority::{self, Weights};
use crate::scheduler::{
    self, Decision, NodeSlots, NodeView, PendingJob, Reach, RunningJob, Settings, Snapshot, Span,
};
use crate::shutdown::Shutdown;
use crate::state::{Core, Shared, State};
use capstan_proto::pbse;

/// Interval of the safety-net pass.
pub const SAFETY_PASS: Duration = Duration::from_secs(2);

/// How many queued jobs, first in line, an event's pass shows the scheduler (Slurm's
/// `default_queue_depth` is the same idea, at 100). A job end frees a few slots, and
/// building every queued job's [`PendingJob`] for each made a pass cost as much as the
/// queue is long: with 4,000 queued, the server's CPU per job of a drain rose by half.
/// The jobs further down wait at most for the periodic pass, which sees them all; they could
/// only have taken what the jobs ahead of them did not fit.
pub const EVENT_PASS_DEPTH: usize = 128;

/// Epoch seconds now.
pub fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The nodes as the scheduler sees them. `live = false` describes every node as if idle
/// and available (for submit-time feasibility).
pub fn node_views(state: &State, live: bool) -> Vec<NodeView> {
    state
        .nodes
        .iter()
        .map(|n| NodeView {
            name: n.def.name.clone(),
            site: n.def.site.clone(),
            np: n.def.np,
            used: if live {
                (0..n.slots.len()).map(|i| !n.slot_free(i)).collect()
            } else {
                vec![false; n.slots.len()]
            },
            properties: n.def.properties.clone(),
            available: !live || n.available(),
            physmem_kb: n.status.as_ref().map(|s| s.physmem_kb).filter(|m| *m > 0),
            speed: n.speed(),
            dedicated: n.def.dedicated,
            window: n.def.window.clone(),
            load: n
                .status
                .as_ref()
                .filter(|_| live && n.def.np > 0)
                .map(|s| s.loadave / f64::from(n.def.np))
                .unwrap_or(0.0),
            access: n.def.access.clone(),
        })
        .collect()
}

/// `-l place=...` → the job's say on sites: `group=site` never spans, `free` spans freely.
pub fn span_of(place: Option<&str>) -> Span {
    let Some(place) = place else {
        return Span::Default;
    };
    if place.split(':').any(|p| p == "group=site") {
        Span::Never
    } else if place.split(':').any(|p| p == "free") {
        Span::Free
    } else {
        Span::Default
    }
}

/// Running jobs with the time their slots are due back (start + walltime).
fn running_jobs(state: &State) -> Vec<RunningJob> {
    state
        .running_jobs()
        .filter(|j| !j.exec_host.is_empty())
        .map(|j| {
            let walltime = j
                .walltime_secs()
                .filter(|w| *w > 0)
                .unwrap_or(scheduler::DEFAULT_WALLTIME);
            RunningJob {
                seq: j.seq,
                // Saturating: qsub accepts walltimes up to i64::MAX seconds. A suspended job
                // holds its slots until someone resumes it: no end to plan around.
                expected_end: if j.suspended {
                    i64::MAX
                } else {
                    j.start_time
                        .unwrap_or(0)
                        .saturating_add(i64::try_from(walltime).unwrap_or(i64::MAX))
                },
                // The slots that come back at its end: all of an exclusive job's nodes'.
                placement: j
                    .exec_host
                    .iter()
                    .map(|h| NodeSlots {
                        node: h.node.clone(),
                        slots: match j.exclusive().then(|| state.node(&h.node)).flatten() {
                            Some(node) if node.exclusive_holder == Some(j.seq) => {
                                (0..node.slots.len() as u32).collect()
                            }
                            _ => h.slots.clone(),
                        },
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The local time zone's offset from UTC at `now`, in seconds (lending windows are local).
fn utc_offset(now: i64) -> i64 {
    use chrono::{Offset, TimeZone};
    chrono::Local
        .timestamp_opt(now, 0)
        .single()
        .map(|t| i64::from(t.offset().fix().local_minus_utc()))
        .unwrap_or(0)
}

/// Runs passes until shutdown.
///
/// Fair-share usage (`State::learning`) is decayed and charged in memory at every pass; it is
/// saved to the store when a job completes (`jobs::runs_ended`) and restored at start.
pub async fn run(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(SAFETY_PASS);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // An event's pass stops once the nodes are full; the periodic one reaches every job.
        let reach = tokio::select! {
            _ = shared.wake.notified() => Reach::UntilFull,
            _ = tick.tick() => Reach::AllJobs,
            _ = shutdown.recv() => return,
        };
        let mut core = shared.core.lock().await;
        let now = now_epoch();
        if reach == Reach::AllJobs {
            match jobs::purge_completed(&mut core, now).await {
                Ok(0) => {}
                Ok(n) => debug!(purged = n, "completed jobs purged"),
                Err(e) => warn!(code = e.code, "purge failed"),
            }
        }
        core.state.learning.fairshare = core.state.fairshare_at(now);
        pass(&mut core, now, reach).await;
    }
}

fn has_capacity(state: &State) -> bool {
    state
        .nodes
        .iter()
        .any(|n| n.available() && n.has_free_slot())
}

/// 32 upper-case hex digits, unpredictable enough for a job cookie.
fn job_cookie(seq: u64, run_id: u64) -> String {
    let mut out = String::with_capacity(32);
    for salt in [0x9e37_79b9_7f4a_7c15u64, 0xc2b2_ae3d_27d4_eb4f] {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(seq ^ salt);
        h.write_u64(run_id);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        out.push_str(&format!("{:016X}", h.finish()));
    }
    out
}

/// `HOST:/path` → `/path`.
fn strip_host(path: &str) -> String {
    match path.split_once(':') {
        Some((host, rest)) if !host.contains('/') => rest.to_string(),
        _ => path.to_string(),
    }
}

/// What the mother superior needs to start this run.
pub fn start_spec(job: &Job, run_id: u64, state: &State, allow_root: bool) -> StartRunSpec {
    let server = state.server_name.as_str();
    let vars = job.variables();
    let np: usize = job.exec_host.iter().map(|h| h.slots.len()).sum();
    // As Torque's MOM: from the `nodes` request (1 and 1 for `procs` or none, or for one it
    // cannot read). PBS Pro's `select`, which Torque lacks, counts what was placed.
    let (num_nodes, ppn) = match (job.resource("nodes"), job.resource("select")) {
        (Some(nodes), _) => crate::resources::num_nodes_ppn(nodes).unwrap_or((1, 1)),
        (None, Some(_)) => (
            job.exec_host.len() as u64,
            job.exec_host.first().map_or(1, |h| h.slots.len() as u64),
        ),
        (None, None) => (1, 1),
    };
    let walltime = job.walltime_secs();
    let init_dir = vars
        .iter()
        .find(|(n, _)| n == "PBS_O_INITDIR")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut env = vars;
    env.push(("PBS_JOBID".into(), job.id(server)));
    env.push(("PBS_JOBNAME".into(), job.name.clone()));
    env.push(("PBS_QUEUE".into(), job.queue.clone()));
    let environment = if job.interactive.is_some() {
        "PBS_INTERACTIVE"
    } else {
        "PBS_BATCH"
    };
    env.push(("PBS_ENVIRONMENT".into(), environment.into()));
    env.push(("PBS_JOBCOOKIE".into(), job_cookie(job.seq, run_id)));
    env.push(("PBS_NP".into(), np.to_string()));
    env.push(("PBS_NUM_NODES".into(), num_nodes.to_string()));
    env.push(("PBS_NUM_PPN".into(), ppn.to_string()));
    if let Some(w) = walltime {
        env.push(("PBS_WALLTIME".into(), w.to_string()));
    }
    env.push((
        "PBS_VERSION".into(),
        format!("TORQUE-{}", capstan_proto::PBS_VERSION),
    ));
    let nodefile_hosts = job
        .exec_host
        .iter()
        .flat_map(|h| std::iter::repeat_n(h.node.clone(), h.slots.len()))
        .collect();
    StartRunSpec {
        run_id,
        job_id: job.id(server),
        job_name: job.name.clone(),
        job_seq: crate::model::file_number(job.seq),
        euser: job.euser.clone(),
        egroup: job.egroup.clone(),
        script: job.script.clone(),
        env,
        nodefile_hosts,
        output_path: strip_host(&job.output_path),
        error_path: strip_host(&job.error_path),
        join_path: job.join_path.clone(),
        keep_files: job.keep_files.clone(),
        shell: job.shell_path.clone().unwrap_or_default(),
        init_work_dir: init_dir,
        walltime_limit_secs: walltime.unwrap_or(0),
        allow_root,
        resource_limits: pelog_limits(&job.resources),
        queue: job.queue.clone(),
        account: job.account.clone().unwrap_or_default(),
        umask: job.umask,
        // Split at spaces here; the MOM writes them after the script's path on the line its
        // shell reads, which splits and expands them again, as Torque's shell does.
        arguments: job
            .job_arguments
            .iter()
            .flat_map(|args| args.split(' '))
            .filter(|arg| !arg.is_empty())
            .map(str::to_string)
            .collect(),
        terminal: job.interactive.as_ref().map(|interactive| {
            let (term, window) = state
                .terminals
                .setup(job.seq)
                .unwrap_or_else(|| (String::new(), Window::DEFAULT));
            TerminalSetup {
                term,
                window,
                command: interactive.command.clone().unwrap_or_default(),
            }
        }),
    }
}

/// `Resource_List` as Torque's MOM hands it to the prologue and epilogue:
/// `name=value` joined by commas, without the server's own `nodect`, and with
/// `neednodes` (set by Torque's scheduler to the `nodes` it placed) after a `nodes`
/// request: `nodes=1:ppn=2,walltime=00:02:00,neednodes=1:ppn=2`.
pub fn pelog_limits(resources: &[(String, String)]) -> String {
    let mut parts: Vec<String> = resources
        .iter()
        .filter(|(name, _)| name != "nodect")
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    let has_neednodes = resources.iter().any(|(name, _)| name == "neednodes");
    if let Some((_, nodes)) = resources.iter().find(|(name, _)| name == "nodes") {
        if !has_neednodes {
            parts.push(format!("neednodes={nodes}"));
        }
    }
    parts.join(",")
}

/// `Job started on Sat Nov 21 at 16:08`.
fn started_comment(now: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(now, 0).single() {
        Some(t) => format!("Job started on {}", t.format("%a %b %d at %H:%M")),
        None => "Job started".to_string(),
    }
}

/// One scheduling pass. Reaching every job (the periodic pass), it also runs when no node
/// has a free slot, and decides about every pending job, refreshing the `comment` of the
/// waiting ones and their `start_priority`; an event's pass stops deciding once the nodes
/// are full.
async fn pass(core: &mut Core, now: i64, reach: Reach) {
    let every_job = reach == Reach::AllJobs;
    if core.state.stopping || (!every_job && !has_capacity(&core.state)) {
        return;
    }
    let mut overlay: BTreeMap<u64, Job> = BTreeMap::new();
    for job in jobs::due_waiting(&core.state, now) {
        overlay.insert(job.seq, job);
    }
    let weights = Weights {
        age_per_hour: core.config.priority_weight_age,
        fairshare: core.config.priority_weight_fairshare,
        ..Weights::default()
    };
    let usage = &core.state.learning.fairshare;
    let state = &core.state;
    let mut pending = Vec::new();
    // `qmgr -c 'set server scheduling = False'` stops new starts; a stopped queue keeps its
    // jobs queued.
    // (A scan: a site has a few queues, and this runs for every queued job of every pass.)
    let queue_priority = |name: &str| {
        state
            .queues
            .iter()
            .find(|q| q.name == name)
            .map(|q| q.started.then_some(q.priority))
    };
    // Fair share orders jobs only when weighted (not by default): no lookup per job then.
    let ranking_share = |user: &str| {
        if weights.fairshare == 0.0 {
            0.0
        } else {
            usage.share(user)
        }
    };
    // Jobs the administrator holds back get a comment saying so, as waiting jobs do.
    let mut held_back = Vec::new();
    // The queued jobs of started queues, each with its place in line and queue priority.
    let mut in_line: Vec<(priority::Key, &Job, i64)> = Vec::new();
    for job in state.pending_jobs() {
        let job = overlay.get(&job.seq).unwrap_or(job);
        if job.state != JobState::Queued {
            continue;
        }
        if !state.server_attrs.scheduling {
            held_back.push(Decision::Wait {
                seq: job.seq,
                reason: "Not Running: scheduling is off (server attribute scheduling = False)"
                    .to_string(),
            });
            continue;
        }
        let Some(Some(queue_priority)) = queue_priority(&job.queue) else {
            // Torque's words (reference 3.2).
            held_back.push(Decision::Wait {
                seq: job.seq,
                reason: "Not Running: Queue not started.".to_string(),
            });
            continue;
        };
        let key = priority::Key::new(
            (job.seq, job.rank()),
            (queue_priority, job.priority, job.qtime),
            ranking_share(&job.euser),
            now,
            &weights,
        );
        in_line.push((key, job, queue_priority));
    }
    let array_running = arrays_running(state);
    if !every_job {
        within_slot_limits(&mut in_line, &array_running);
    }
    if !every_job && in_line.len() > EVENT_PASS_DEPTH {
        in_line.select_nth_unstable_by_key(EVENT_PASS_DEPTH - 1, |(key, _, _)| *key);
        in_line.truncate(EVENT_PASS_DEPTH);
    }
    for (_, job, queue_priority) in in_line {
        pending.extend(pending_job(
            job,
            queue_priority,
            usage.share(&job.euser),
            &array_running,
            &state.terminals,
        ));
    }
    // Shown as `start_priority`. The periodic pass keeps it current; a pass per event (one
    // per job end in a drain) does not rebuild it for the whole queue.
    let priorities: Option<std::collections::HashMap<u64, f64>> = every_job.then(|| {
        pending
            .iter()
            .map(|job| (job.seq, priority::value(job, now, &weights)))
            .collect()
    });
    let decisions = if pending.is_empty() {
        Vec::new()
    } else {
        let snapshot = Snapshot {
            now,
            jobs: pending,
            nodes: node_views(state, true),
            running: running_jobs(state),
            settings: settings(core, now, weights),
        };
        // Jobs an event's pass does not reach keep their comment until the periodic pass.
        scheduler::schedule(&snapshot, reach)
    };
    let decisions = decisions.into_iter().chain(held_back);

    let mut starts: Vec<(u64, String, Vec<HostSlots>)> = Vec::new();
    let mut claimed: HashSet<(String, u32)> = HashSet::new();
    for decision in decisions {
        match decision {
            Decision::Start {
                seq,
                placement,
                site,
                score,
                scores,
            } => {
                let valid = !placement.is_empty()
                    && state.node(&placement[0].node).is_some_and(|n| n.is_up())
                    && placement.iter().all(|p| {
                        state.node(&p.node).is_some_and(|n| {
                            p.slots.iter().all(|s| {
                                n.slot_free(*s as usize) && claimed.insert((p.node.clone(), *s))
                            })
                        })
                    });
                if !valid {
                    let job = crate::model::job_id(seq, &state.server_name);
                    warn!(%job, "scheduler proposed an impossible placement; ignored");
                    continue;
                }
                starts.push((
                    seq,
                    start_note(&site, score, &scores),
                    placement
                        .into_iter()
                        .map(|p| HostSlots {
                            node: p.node,
                            slots: p.slots,
                        })
                        .collect(),
                ));
            }
            Decision::Wait { seq, reason } => {
                let Some(job) = overlay.get(&seq).or_else(|| state.jobs.get(&seq)) else {
                    continue;
                };
                if job.comment.as_deref() != Some(reason.as_str()) {
                    let mut job = job.clone();
                    job.comment = Some(reason);
                    overlay.insert(seq, job);
                }
            }
        }
    }
    if let Some(priorities) = priorities {
        core.state.learning.priorities = priorities;
    }
    if overlay.is_empty() && starts.is_empty() {
        return;
    }
    if let Err(e) = commit_starts(core, overlay, starts, now).await {
        warn!("scheduling pass not committed: {e}");
    }
}

/// The scheduler's settings from the server's configuration.
fn settings(core: &Core, now: i64, weights: Weights) -> Settings {
    Settings {
        site_span_penalty: core.config.site_span_penalty,
        max_wait_secs: core.config.site_max_wait as i64,
        utc_offset_secs: utc_offset(now),
        weights,
    }
}

/// Takes out of an event pass's line the sub-jobs their array's slot limit holds back: all
/// but the first `limit - running` of each limited array. Why: an event pass looks only at
/// the first [`EVENT_PASS_DEPTH`] jobs, and an array of thousands at its limit would fill
/// them and leave every other job to the safety pass. (The safety pass sees them all, and
/// writes why they wait.)
fn within_slot_limits(in_line: &mut Vec<(priority::Key, &Job, i64)>, running: &HashMap<u64, u32>) {
    let mut limited: HashMap<u64, (u32, Vec<priority::Key>)> = HashMap::new();
    for (key, job, _) in in_line.iter() {
        let limit = job.array.as_ref().and_then(|a| a.slot_limit);
        if let (Some((array, _)), Some(limit)) = (crate::model::member_of(job.seq), limit) {
            limited
                .entry(array)
                .or_insert((limit, Vec::new()))
                .1
                .push(*key);
        }
    }
    // Per array over its allowance, the last key admitted (`None`: none is).
    let mut cutoffs: HashMap<u64, Option<priority::Key>> = HashMap::new();
    for (array, (limit, mut keys)) in limited {
        let allowance = limit.saturating_sub(running.get(&array).copied().unwrap_or(0)) as usize;
        if keys.len() <= allowance {
            continue;
        }
        let cutoff = allowance
            .checked_sub(1)
            .map(|last| *keys.select_nth_unstable(last).1);
        cutoffs.insert(array, cutoff);
    }
    if cutoffs.is_empty() {
        return;
    }
    in_line.retain(|(key, job, _)| {
        let array = crate::model::member_of(job.seq).map(|(array, _)| array);
        match array.and_then(|array| cutoffs.get(&array)) {
            None => true,
            Some(cutoff) => cutoff.is_some_and(|cutoff| *key <= cutoff),
        }
    });
}

/// How many sub-jobs of each array run (for slot limits): one look at the running jobs,
/// not one per queued sub-job.
fn arrays_running(state: &State) -> HashMap<u64, u32> {
    let mut running = HashMap::new();
    for job in state.running_jobs() {
        if let Some((array, _)) = crate::model::member_of(job.seq) {
            *running.entry(array).or_default() += 1;
        }
    }
    running
}

/// What the scheduler needs to know about a queued job; `None` when its resource list no
/// longer parses. `array_running`: see [`arrays_running`].
fn pending_job(
    job: &Job,
    queue_priority: i64,
    usage_share: f64,
    array_running: &HashMap<u64, u32>,
    terminals: &Terminals,
) -> Option<PendingJob> {
    let array_slots = match (crate::model::member_of(job.seq), &job.array) {
        (Some((array, _)), Some(part)) => part.slot_limit.map(|limit| ArraySlots {
            array,
            limit,
            running: array_running.get(&array).copied().unwrap_or(0),
        }),
        _ => None,
    };
    let request = match &job.request {
        Some(r) => r.clone(),
        None => {
            let map = job.resources.iter().cloned().collect();
            resources::slot_request(&map).ok()?
        }
    };
    Some(PendingJob {
        seq: job.seq,
        queue_priority,
        priority: job.priority,
        qtime: job.qtime,
        rank: job.rank(),
        request,
        walltime_secs: job.walltime_secs(),
        site: job.resource("site").map(str::to_string),
        span: span_of(job.resource("place")),
        usage_share,
        owner: Owner {
            user: job.euser.clone(),
            group: job.egroup.clone(),
        },
        exclusive: job.exclusive(),
        array_slots,
        awaiting_terminal: job.interactive.is_some() && !terminals.is_attached(job.seq),
    })
}

/// Starts `starts` (job, comment note, placement) and saves the other changed jobs of
/// `overlay`: the runs, the jobs and what their start did to dependents in ONE transaction,
/// then memory, then each mother superior's StartRun (see the module comment).
async fn commit_starts(
    core: &mut Core,
    mut overlay: BTreeMap<u64, Job>,
    starts: Vec<(u64, String, Vec<HostSlots>)>,
    now: i64,
) -> Result<(), crate::store::StoreError> {
    // The jobs started, and the signals for running dependents whose dependency failed.
    type Committed = (Vec<u64>, Vec<(String, ToMom)>);
    let result: Result<Committed, crate::store::StoreError> = async {
        let mut tx = core.store.begin()?;
        let mut started = Vec::new();
        for (seq, why, hosts) in starts {
            let Some(job) = overlay.get(&seq).or_else(|| core.state.jobs.get(&seq)) else {
                continue;
            };
            let mut job = job.clone();
            let exec_host = format_exec_host(&hosts);
            let run_id = tx.insert_run(seq, &hosts[0].node, &exec_host, now)?;
            job.state = JobState::Running;
            job.exec_host = hosts;
            job.current_run = Some(run_id);
            job.start_time = Some(now);
            job.start_count += 1;
            job.comment = Some(started_comment(now) + &why);
            job.session_id = None;
            job.suspended = false;
            job.resources_used = None;
            job.exit_status = None;
            job.comp_time = None;
            job.total_runtime = None;
            job.pending = None;
            job.mtime = now;
            started.push(seq);
            overlay.insert(seq, job);
        }
        let kills = jobs::cascade(&core.state, &mut overlay, started.clone(), now);
        for job in overlay.values() {
            tx.save_job(job)?;
        }
        tx.commit().await?;
        Ok((started, kills))
    }
    .await;
    let (started, kills) = result?;
    core.apply_jobs(overlay.into_values().collect(), now);
    jobs::send_messages(core, kills);
    for seq in started {
        let Some(job) = core.state.jobs.get(&seq) else {
            continue;
        };
        let (Some(run_id), Some(ms)) = (job.current_run, job.mother_superior()) else {
            continue;
        };
        let spec = start_spec(job, run_id, &core.state, core.config.allow_root_jobs);
        debug!(job = %spec.job_id, run_id, node = ms, "dispatching run");
        if let Some(node) = core.state.node(ms) {
            if !node.send(ToMom::Start(Box::new(spec))) {
                warn!(
                    node = ms,
                    run_id, "mother superior went away before StartRun was sent"
                );
            }
        }
    }
    Ok(())
}

/// qrun: starts each job now, whatever its place in the queue, its queue's `started` or the
/// server's `scheduling` (an operator's override), wherever the scheduler's feasibility
/// rules find room for it, on the nodes `hosts` names only when given (`-H
/// node[+node...]`, Torque's host list; `/N` slot suffixes are ignored). Managers and
/// operators only; a job must be queued. One result per id, in order, as for qdel.
pub async fn run_now(
    core: &mut Core,
    caller: &jobs::Caller,
    ids: &[String],
    hosts: &str,
    now: i64,
) -> Vec<(String, Option<PbsError>)> {
    let mut results = Vec::with_capacity(ids.len());
    for id in ids {
        let outcome = run_one(core, caller, id, hosts, now).await;
        results.push(match outcome {
            Ok(shown) => (shown, None),
            Err((shown, e)) => (shown, Some(e)),
        });
    }
    results
}

async fn run_one(
    core: &mut Core,
    caller: &jobs::Caller,
    id: &str,
    hosts: &str,
    now: i64,
) -> Result<String, (String, PbsError)> {
    let server = core.state.server_name.clone();
    let shown = jobs::shown_job_id(id, &server);
    let fail = |code: i32, detail: String| {
        Err((shown.clone(), PbsError::new(code, detail, shown.clone())))
    };
    // Privilege first: an ordinary user learns nothing of which jobs exist.
    if core.state.server_attrs.privilege(caller) < Privilege::Operator {
        return fail(pbse::PERM, String::new());
    }
    // qterm was accepted: no job starts any more, this way either.
    if core.state.stopping {
        return fail(pbse::SVRDOWN, String::new());
    }
    // Torque's answer to a whole array.
    if let Some(jobs::JobRef::Array(_)) = jobs::parse_job_ref(id, &server) {
        return fail(pbse::IVALREQ, "cannot run a job array".into());
    }
    let Some(job) = jobs::parse_job_id(id, &server).and_then(|seq| core.state.jobs.get(&seq))
    else {
        return fail(pbse::UNKJOBID, String::new());
    };
    // A held or waiting job is run too (Torque's chk_job_torun refuses only jobs on their
    // way or already running); its holds stay, for a later requeue.
    match job.state {
        JobState::Queued | JobState::Held | JobState::Waiting => {}
        JobState::Running => return fail(pbse::BADSTATE, "job already running".into()),
        JobState::Completed => {
            return fail(pbse::BADSTATE, "invalid state for job - COMPLETE".into())
        }
    }
    let usage = core.state.learning.fairshare.share(&job.euser);
    let running = arrays_running(&core.state);
    let Some(pending) = pending_job(job, 0, usage, &running, &core.state.terminals) else {
        return fail(pbse::BADATVAL, String::new());
    };
    if pending.awaiting_terminal {
        return fail(
            pbse::IVALREQ,
            "cannot run an interactive job whose qsub is not connected".into(),
        );
    }
    // Even qrun keeps an array's slot limit (Torque's check_and_run_job_work).
    if let Some(ArraySlots { limit, running, .. }) =
        pending.array_slots.filter(|s| s.running >= s.limit)
    {
        return fail(
            pbse::IVALREQ,
            format!(
                "Cannot run job. Array slot limit is {limit} and there are already {running} jobs running"
            ),
        );
    }
    let wanted: Vec<&str> = hosts
        .split('+')
        .map(|h| h.split('/').next().unwrap_or(""))
        .filter(|h| !h.is_empty())
        .collect();
    let mut nodes = node_views(&core.state, true);
    if !wanted.is_empty() {
        if let Some(unknown) = wanted.iter().find(|h| !nodes.iter().any(|n| n.name == **h)) {
            return fail(pbse::UNKNODE, format!("cannot locate node {unknown}"));
        }
        nodes.retain(|n| wanted.contains(&n.name.as_str()));
    }
    let requested = pending.request.nodect();
    let available = nodes
        .iter()
        .filter(|n| n.available && n.used.iter().any(|used| !used))
        .count();
    let mut settings = settings(core, now, Weights::default());
    // Started now or not at all: no waiting for a better site.
    settings.max_wait_secs = 0;
    let snapshot = Snapshot {
        now,
        jobs: vec![pending],
        nodes,
        running: running_jobs(&core.state),
        settings,
    };
    let seq = job.seq;
    let start = scheduler::schedule(&snapshot, Reach::AllJobs)
        .into_iter()
        .find_map(|d| match d {
            Decision::Start {
                seq: s,
                placement,
                site,
                score,
                scores,
            } if s == seq => Some((site, score, scores, placement)),
            _ => None,
        });
    let Some((site, score, scores, placement)) = start else {
        return fail(
            pbse::RESCUNAV,
            format!(
                "job allocation request exceeds currently available cluster nodes, {requested} requested, {available} available"
            ),
        );
    };
    let hosts: Vec<HostSlots> = placement
        .into_iter()
        .map(|p| HostSlots {
            node: p.node,
            slots: p.slots,
        })
        .collect();
    let note = start_note(&site, score, &scores);
    commit_starts(core, BTreeMap::new(), vec![(seq, note, hosts)], now)
        .await
        .map_err(|e| (shown.clone(), PbsError::system(e)))?;
    tracing::info!(job = %shown, by = %caller.user_at_host(), "job run by qrun");
    Ok(shown)
}

/// What a start adds to Torque's `Job started on ...` comment: the site and the scores that
/// won, e.g. ` on site a (score 0.83: site-packing 1.00, speed-homogeneity 0.50, dedicated 1.00)`.
fn start_note(site: &str, score: f64, scores: &[(&'static str, f64)]) -> String {
    if scores.is_empty() {
        return format!(" on site {site} (score {score:.2})");
    }
    let parts: Vec<String> = scores
        .iter()
        .map(|(name, value)| format!("{name} {value:.2}"))
        .collect();
    format!(" on site {site} (score {score:.2}: {})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event pass's line keeps, of each array at its slot limit, only the sub-jobs that
    /// could start (the first in line), and every job of no limited array.
    #[test]
    fn an_event_pass_leaves_out_sub_jobs_their_slot_limit_holds_back() {
        use crate::model::{member_key, ArrayPart};
        let limited = |seq: u64, limit: u32| Job {
            array: Some(ArrayPart {
                request: String::new(),
                slot_limit: Some(limit),
            }),
            ..crate::store::tests::sample_job(seq)
        };
        let mut jobs = vec![crate::store::tests::sample_job(1)];
        // Array 2: limit 2, one running: one more may start. Array 3: limit 1, at it.
        jobs.extend((1..=5).rev().map(|i| limited(member_key(2, i), 2)));
        jobs.extend((1..=3).map(|i| limited(member_key(3, i), 1)));
        let weights = Weights::default();
        let mut in_line: Vec<(priority::Key, &Job, i64)> = jobs
            .iter()
            .map(|job| {
                let key = priority::Key::new((job.seq, job.seq), (0, 0, 0), 0.0, 0, &weights);
                (key, job, 0)
            })
            .collect();
        let running = HashMap::from([(2, 1), (3, 1)]);
        within_slot_limits(&mut in_line, &running);
        let kept: Vec<u64> = in_line.iter().map(|(_, job, _)| job.seq).collect();
        assert_eq!(kept, [1, member_key(2, 1)]);
    }

    #[test]
    fn cookie_is_32_upper_hex() {
        let c = job_cookie(1, 2);
        assert_eq!(c.len(), 32);
        assert!(c
            .chars()
            .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_lowercase()));
    }

    #[test]
    fn pelog_limits_are_torques_string() {
        let list = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        // The reference's `-l nodes=1:ppn=2,walltime=00:02:00` job (section 8).
        let job = list(&[
            ("nodes", "1:ppn=2"),
            ("nodect", "1"),
            ("walltime", "00:02:00"),
        ]);
        assert_eq!(
            pelog_limits(&job),
            "nodes=1:ppn=2,walltime=00:02:00,neednodes=1:ppn=2"
        );
        assert_eq!(pelog_limits(&list(&[("procs", "3")])), "procs=3");
        assert_eq!(pelog_limits(&[]), "");
    }

    #[test]
    fn place_becomes_the_span_rule() {
        let cases = [
            (None, Span::Default),
            (Some("scatter"), Span::Default),
            (Some("group=site"), Span::Never),
            (Some("scatter:excl:group=site"), Span::Never),
            (Some("free"), Span::Free),
            (Some("free:excl"), Span::Free),
        ];
        for (place, want) in cases {
            assert_eq!(span_of(place), want, "{place:?}");
        }
    }

    #[test]
    fn strip_host_keeps_the_path() {
        assert_eq!(strip_host("vm:/home/u/x.o1"), "/home/u/x.o1");
        assert_eq!(strip_host("/abs"), "/abs");
    }

    #[test]
    fn start_spec_env_and_nodefile() {
        let mut job = crate::store::tests::sample_job(45);
        job.name = "pelog".into();
        job.variable_list = "PBS_O_QUEUE=batch,PBS_O_WORKDIR=/home/u,PBS_O_INITDIR=/tmp".into();
        job.resources = vec![
            ("nodes".into(), "2:ppn=2".into()),
            ("walltime".into(), "00:02:00".into()),
        ];
        job.exec_host = vec![
            HostSlots {
                node: "a".into(),
                slots: vec![0, 1],
            },
            HostSlots {
                node: "b".into(),
                slots: vec![3, 4],
            },
        ];
        let state = State::new("vm", 46, "batch", vec![], vec![], Default::default());
        let spec = start_spec(&job, 7, &state, false);
        assert_eq!(spec.nodefile_hosts, vec!["a", "a", "b", "b"]);
        assert_eq!(spec.init_work_dir, "/tmp");
        assert_eq!(spec.walltime_limit_secs, 120);
        assert!(spec
            .env
            .contains(&("PBS_WALLTIME".to_string(), "120".to_string())));
        let get = |n: &str| {
            spec.env
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(spec.env[0].0, "PBS_O_QUEUE");
        assert_eq!(get("PBS_JOBID").as_deref(), Some("45.vm"));
        assert_eq!(get("PBS_NP").as_deref(), Some("4"));
        assert_eq!(get("PBS_NUM_NODES").as_deref(), Some("2"));
        assert_eq!(get("PBS_NUM_PPN").as_deref(), Some("2"));
        assert_eq!(get("PBS_VERSION").as_deref(), Some("TORQUE-6.1.3.h5"));
        assert_eq!(get("PBS_ENVIRONMENT").as_deref(), Some("PBS_BATCH"));
        // Not from the placement: Torque's MOM reads the request, 1 and 1 without `nodes`;
        // PBS Pro's select (not Torque's) counts what was placed.
        let mut counts = |resources: &[(&str, &str)]| {
            job.resources = resources
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let spec = start_spec(&job, 7, &state, false);
            let get = |n: &str| {
                spec.env
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
            };
            (get("PBS_NP"), get("PBS_NUM_NODES"), get("PBS_NUM_PPN"))
        };
        let all = |np: &str, nodes: &str, ppn: &str| {
            (
                Some(np.to_string()),
                Some(nodes.to_string()),
                Some(ppn.to_string()),
            )
        };
        assert_eq!(counts(&[("nodes", "1:ppn=2+a")]), all("4", "2", "2"));
        assert_eq!(counts(&[("procs", "4")]), all("4", "1", "1"));
        assert_eq!(counts(&[("select", "2:ncpus=2")]), all("4", "2", "2"));
    }

    #[test]
    fn start_note_names_every_scorer() {
        assert_eq!(
            super::start_note("a", 0.75, &[("site-packing", 1.0), ("dedicated", 0.5)]),
            " on site a (score 0.75: site-packing 1.00, dedicated 0.50)"
        );
        assert_eq!(super::start_note("b", 1.0, &[]), " on site b (score 1.00)");
    }
}
