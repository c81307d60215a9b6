//! The in-memory cache of the database, and the lock that serialises every change.
//!
//! Why: answering `qstat` for thousands of jobs and building a scheduling snapshot must not
//! touch SQLite, so the whole state lives in memory, loaded once at start. SQLite stays the
//! source of truth: every mutation runs under the one [`Shared::core`] lock, commits to the
//! store FIRST, then applies to memory, then is acknowledged or acted on. Holding one async
//! lock across the commit is deliberate: it gives the single writer SQLite wants and makes
//! "commit, then apply" atomic with respect to every reader.
//!
//! Node liveness (status, sessions, slot usage) is memory only: it is rebuilt from the MOMs
//! that reconnect, never written per heartbeat.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch, Mutex, Notify};

use crate::accounting::{self, Accounting};
use crate::config::Config;
use crate::mail::{self, Deletion, Mailer, Notice};
use crate::model::{HostSlots, Job, JobState, NodeDef, NodeFlags, NodeStatus, Queue, ToMom};
use crate::scheduler::fairshare::Usage;
use crate::scheduler::speed_learning::Samples;
use crate::store::Store;

/// The sending half of one MOM session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// Distinguishes a replaced session from its successor.
    pub id: u64,
    pub tx: mpsc::UnboundedSender<ToMom>,
}

/// A node: its definition, persisted flags, and what is known about it right now.
#[derive(Debug)]
pub struct NodeRuntime {
    pub def: NodeDef,
    pub flags: NodeFlags,
    /// `slots[i]` = the job holding slot i (as its `exec_host` says).
    pub slots: Vec<Option<u64>>,
    /// An exclusive job (`qsub -n`) running here: the node takes nothing else, whatever its
    /// free slots (also ones `qmgr` adds meanwhile), and shows `job-exclusive`. Derived from
    /// the jobs, never stored.
    pub exclusive_holder: Option<u64>,
    pub status: Option<NodeStatus>,
    pub session: Option<SessionHandle>,
    pub last_seen: Instant,
    /// When the node was last seen going down (server start counts as going down).
    pub down_since: Option<Instant>,
    /// Speed learned from completed jobs, when there is enough evidence
    /// ([`crate::scheduler::speed_learning`]); the scheduler uses it over `def.speed`.
    pub learned_speed: Option<f64>,
}

impl NodeRuntime {
    pub fn new(def: NodeDef, flags: NodeFlags, now: Instant) -> NodeRuntime {
        NodeRuntime {
            slots: vec![None; def.np as usize],
            exclusive_holder: None,
            def,
            flags,
            status: None,
            session: None,
            last_seen: now,
            down_since: Some(now),
            learned_speed: None,
        }
    }

    /// The speed the scheduler uses: learned when known, else the nodes file's `speed=`.
    pub fn speed(&self) -> f64 {
        self.learned_speed.unwrap_or(self.def.speed)
    }

    pub fn is_up(&self) -> bool {
        self.session.is_some()
    }

    pub fn is_busy(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.state == "busy")
    }

    /// Its MOM's health check failed (Torque's MOM reports itself down): connected, its
    /// jobs run on, but it takes no new ones.
    pub fn is_unhealthy(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.state == "down")
    }

    /// May take new work: connected, reported (see `mom_session::register`), and neither
    /// offline, busy nor unhealthy.
    pub fn available(&self) -> bool {
        self.is_up()
            && self.status.is_some()
            && !self.flags.offline
            && !self.is_busy()
            && !self.is_unhealthy()
    }

    pub fn used_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Whether slot `i` may take a new job: nobody holds it, and no exclusive job holds the
    /// node. What the scheduler's snapshot, the pass trigger, a start's last check and the
    /// `job-exclusive` state all ask.
    pub fn slot_free(&self, i: usize) -> bool {
        self.exclusive_holder.is_none() && self.slots.get(i) == Some(&None)
    }

    /// Whether any slot may take a new job.
    pub fn has_free_slot(&self) -> bool {
        (0..self.slots.len()).any(|i| self.slot_free(i))
    }

    /// Torque's `state` string: `down`, `offline`, `job-exclusive`, `busy`, `free`, comma-joined.
    pub fn state_string(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if !self.is_up() || self.is_unhealthy() {
            parts.push("down");
        }
        if self.flags.offline {
            parts.push("offline");
        }
        if self.is_up() {
            if !self.slots.is_empty() && !self.has_free_slot() {
                parts.push("job-exclusive");
            }
            if self.is_busy() {
                parts.push("busy");
            }
        }
        if parts.is_empty() {
            "free".to_string()
        } else {
            parts.join(",")
        }
    }

    /// Sends to the MOM if connected; false when there is no session (or it just closed).
    pub fn send(&self, message: ToMom) -> bool {
        match &self.session {
            Some(session) => session.tx.send(message).is_ok(),
            None => false,
        }
    }
}

/// Counts per state, for `state_count` and the summary listings.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StateCounts {
    pub queued: usize,
    pub held: usize,
    pub waiting: usize,
    pub running: usize,
    pub complete: usize,
}

impl StateCounts {
    pub fn add(&mut self, state: JobState) {
        match state {
            JobState::Queued => self.queued += 1,
            JobState::Held => self.held += 1,
            JobState::Waiting => self.waiting += 1,
            JobState::Running => self.running += 1,
            JobState::Completed => self.complete += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.queued + self.held + self.waiting + self.running + self.complete
    }

    /// `Transit:0 Queued:N Held:N Waiting:N Running:N Exiting:0 Complete:N ` (trailing space).
    pub fn torque_string(&self) -> String {
        format!(
            "Transit:0 Queued:{} Held:{} Waiting:{} Running:{} Exiting:0 Complete:{} ",
            self.queued, self.held, self.waiting, self.running, self.complete
        )
    }
}

/// The cluster as the server knows it.
#[derive(Debug)]
pub struct State {
    pub server_name: String,
    pub next_job_number: u64,
    pub default_queue: String,
    pub queues: Vec<Queue>,
    pub jobs: BTreeMap<u64, Job>,
    /// In nodes-file order.
    pub nodes: Vec<NodeRuntime>,
    pub next_session_id: u64,
    pub learning: Learning,
    /// Server security attributes (`managers`, `operators`, `submit_hosts`, ...).
    pub server_attrs: crate::authz::ServerAttrs,
    /// qterm was accepted: no pass starts a job from now on (one requeued for `-t immediate`
    /// must not start again in the moment before the server stops). Memory only.
    pub stopping: bool,
    /// Seqs of the jobs a scheduling pass looks at (queued, or waiting for their `-a`
    /// time), so a pass costs O(pending) and not O(every job kept): thousands of completed
    /// or held jobs must not slow each `qsub`. Kept in step by [`State::apply_jobs`] (which
    /// changes go through as [`Core::apply_jobs`], for the accounting log; directly only at
    /// load) and [`State::remove_job`], the only ways a job changes in memory besides usage
    /// figures.
    pending: BTreeSet<u64>,
    /// Seqs of the running jobs, kept in step the same way: fair share is charged and
    /// running jobs are listed for the scheduler at every pass, also without visiting every
    /// job kept.
    running: BTreeSet<u64>,
    /// Seqs of the jobs not yet complete that wait on a dependency, kept in step the same
    /// way: every run's start and end looks for dependents to release or delete, and must
    /// not visit every job kept to find the few that have any.
    awaiting_dependencies: BTreeSet<u64>,
    /// The highest queue rank given so far (see [`State::next_queue_rank`]); atomic so that
    /// ranks handed out while a change is built (before it is applied) stay distinct.
    last_queue_rank: AtomicU64,
    /// Interactive jobs' attached qsubs and their terminals (memory only; see `interactive`).
    pub terminals: crate::interactive::Terminals,
}

/// What the scheduler learns across passes: fair-share usage and speed samples (both loaded
/// from the store at start and saved when jobs complete), and each queued job's combined
/// priority at the last periodic pass (memory only; `qstat -f` shows it as `start_priority`).
#[derive(Debug, Clone, Default)]
pub struct Learning {
    pub fairshare: Usage,
    pub speed_samples: Samples,
    pub priorities: HashMap<u64, f64>,
}

impl State {
    /// A state holding no jobs yet (they arrive through [`State::apply_jobs`], which keeps
    /// slot usage and the pending, running and dependency indexes in step) and nothing
    /// learned.
    pub fn new(
        server_name: impl Into<String>,
        next_job_number: u64,
        default_queue: impl Into<String>,
        queues: Vec<Queue>,
        nodes: Vec<NodeRuntime>,
        server_attrs: crate::authz::ServerAttrs,
    ) -> State {
        State {
            server_name: server_name.into(),
            next_job_number,
            default_queue: default_queue.into(),
            queues,
            jobs: BTreeMap::new(),
            nodes,
            next_session_id: 1,
            learning: Learning::default(),
            server_attrs,
            stopping: false,
            pending: BTreeSet::new(),
            running: BTreeSet::new(),
            awaiting_dependencies: BTreeSet::new(),
            last_queue_rank: AtomicU64::new(0),
            terminals: Default::default(),
        }
    }

    /// The rank of a job entering a queue now: behind every job already ranked, and for a
    /// new job no lower than its number (which stands in for the rank of jobs stored before
    /// ranks existed).
    pub fn next_queue_rank(&self, seq: u64) -> u64 {
        let mut next = 0;
        let _ = self
            .last_queue_rank
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                next = (last + 1).max(seq);
                Some(next)
            });
        next
    }

    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.iter().find(|q| q.name == name)
    }

    pub fn node(&self, name: &str) -> Option<&NodeRuntime> {
        self.nodes.iter().find(|n| n.def.name == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeRuntime> {
        self.nodes.iter_mut().find(|n| n.def.name == name)
    }

    pub fn counts(&self, queue: Option<&str>) -> StateCounts {
        let mut counts = StateCounts::default();
        for job in self.jobs.values() {
            if queue.is_none_or(|q| q == job.queue) {
                counts.add(job.state);
            }
        }
        counts
    }

    /// Fair-share usage charged up to `now` for the slots running jobs hold (a copy: the
    /// caller stores it, after any commit).
    pub fn fairshare_at(&self, now: i64) -> Usage {
        let mut usage = self.learning.fairshare.clone();
        usage.advance(
            now,
            // The slots each job asked for: an exclusive job is charged for those, not for
            // the rest of its nodes (its owner did not use them; Torque's accounting agrees).
            self.running_jobs().map(|j| {
                let slots: usize = j.exec_host.iter().map(|h| h.slots.len()).sum();
                (j.euser.as_str(), slots as u32)
            }),
        );
        usage
    }

    /// Recomputes every node's learned speed from the samples.
    pub fn refresh_learned_speeds(&mut self) {
        let speeds = self.learning.speed_samples.speeds();
        for node in &mut self.nodes {
            node.learned_speed = speeds.get(&node.def.name).copied();
        }
    }

    /// Marks the job's exec_host slots as held by it, and with `exclusive` its nodes as
    /// its alone.
    pub fn occupy(&mut self, seq: u64, exec_host: &[HostSlots], exclusive: bool) {
        for host in exec_host {
            if let Some(node) = self.node_mut(&host.node) {
                for slot in &host.slots {
                    if let Some(s) = node.slots.get_mut(*slot as usize) {
                        *s = Some(seq);
                    }
                }
                if exclusive {
                    node.exclusive_holder = Some(seq);
                }
            }
        }
    }

    /// Frees every slot the job holds.
    pub fn release(&mut self, seq: u64, exec_host: &[HostSlots]) {
        for host in exec_host {
            if let Some(node) = self.node_mut(&host.node) {
                for s in node.slots.iter_mut() {
                    if *s == Some(seq) {
                        *s = None;
                    }
                }
                if node.exclusive_holder == Some(seq) {
                    node.exclusive_holder = None;
                }
            }
        }
    }

    /// Replaces jobs in memory with their committed versions, keeping slot usage in step.
    pub fn apply_jobs(&mut self, jobs: Vec<Job>) {
        let mut to_qsubs = Vec::new();
        for job in jobs {
            if let Some(old) = self.jobs.get(&job.seq) {
                if old.state == JobState::Running && job.state != JobState::Running {
                    let host = old.exec_host.clone();
                    self.release(job.seq, &host);
                }
            }
            if job.interactive.is_some() && job.state == JobState::Completed {
                let status = job.exit_status.unwrap_or_default();
                let started = job.start_count > 0;
                to_qsubs.extend(self.terminals.job_ended(job.seq, status, started));
            }
            if job.state == JobState::Running {
                let host = job.exec_host.clone();
                self.occupy(job.seq, &host, job.exclusive());
            }
            let last = self.last_queue_rank.get_mut();
            *last = (*last).max(job.rank());
            mark(&mut self.pending, job.seq, is_pending(&job));
            mark(&mut self.running, job.seq, is_running(&job));
            mark(
                &mut self.awaiting_dependencies,
                job.seq,
                awaits_dependency(&job),
            );
            self.jobs.insert(job.seq, job);
        }
        crate::interactive::send_later(to_qsubs);
    }

    /// Forgets a job (purged after `keep_completed`, or by `qdel -p`).
    pub fn remove_job(&mut self, seq: u64) {
        self.pending.remove(&seq);
        self.running.remove(&seq);
        self.awaiting_dependencies.remove(&seq);
        self.jobs.remove(&seq);
    }

    /// Every job as listings show them: numbered jobs and arrays in number order, an array
    /// as its sub-jobs in index order (sub-jobs are keyed after every numbered job, see
    /// [`crate::model::member_key`], so the two ranges are merged here).
    pub fn listing(&self) -> Listing<'_> {
        Listing {
            numbered: self.jobs.range(..crate::model::FIRST_MEMBER_KEY).peekable(),
            members: self.jobs.range(crate::model::FIRST_MEMBER_KEY..).peekable(),
        }
    }

    /// The sub-jobs of array `number` still kept, in index order.
    pub fn sub_jobs(&self, number: u64) -> impl Iterator<Item = &Job> + '_ {
        self.jobs
            .range(crate::model::member_keys(number))
            .map(|(_, job)| job)
    }

    /// The jobs a scheduling pass considers, in seq order.
    pub fn pending_jobs(&self) -> impl Iterator<Item = &Job> + '_ {
        debug_assert!(
            self.index_in_step(&self.pending, is_pending),
            "pending index out of step with the jobs"
        );
        self.pending.iter().filter_map(|seq| self.jobs.get(seq))
    }

    /// The running jobs, in seq order.
    pub fn running_jobs(&self) -> impl Iterator<Item = &Job> + '_ {
        debug_assert!(
            self.index_in_step(&self.running, is_running),
            "running index out of step with the jobs"
        );
        self.running.iter().filter_map(|seq| self.jobs.get(seq))
    }

    /// Calls `change` on each running job, for the figures a MOM reports that change
    /// without a commit (session id, start time, usage). It must not change what the
    /// indexes and the nodes' slot occupancy depend on (state, dependencies, exec_host).
    pub fn update_running_jobs(&mut self, mut change: impl FnMut(&mut Job)) {
        for seq in &self.running {
            if let Some(job) = self.jobs.get_mut(seq) {
                let indexed = |job: &Job| {
                    (
                        is_running(job),
                        awaits_dependency(job),
                        job.exec_host.clone(),
                    )
                };
                // Only debug builds pay for the copy.
                let before = cfg!(debug_assertions).then(|| indexed(job));
                change(job);
                if let Some(before) = before {
                    assert_eq!(
                        before,
                        indexed(job),
                        "update_running_jobs changed what an index depends on (job {seq})"
                    );
                }
            }
        }
    }

    /// The jobs not yet complete that wait on a dependency, in seq order.
    pub fn jobs_awaiting_dependencies(&self) -> impl Iterator<Item = &Job> + '_ {
        debug_assert!(
            self.index_in_step(&self.awaiting_dependencies, awaits_dependency),
            "dependency index out of step with the jobs"
        );
        self.awaiting_dependencies
            .iter()
            .filter_map(|seq| self.jobs.get(seq))
    }

    /// Whether `index` holds exactly the jobs that pass `wanted` (debug checks).
    fn index_in_step(&self, index: &BTreeSet<u64>, wanted: impl Fn(&Job) -> bool) -> bool {
        self.jobs
            .values()
            .filter(|j| wanted(j))
            .map(|j| j.seq)
            .eq(index.iter().copied())
    }
}

/// One entry of [`State::listing`].
#[derive(Debug)]
pub enum Listed<'a> {
    Job(&'a Job),
    /// An array's number and its sub-jobs.
    Array(u64, Vec<&'a Job>),
}

type JobsIn<'a> = std::iter::Peekable<std::collections::btree_map::Range<'a, u64, Job>>;

/// See [`State::listing`].
pub struct Listing<'a> {
    numbered: JobsIn<'a>,
    members: JobsIn<'a>,
}

impl<'a> Iterator for Listing<'a> {
    type Item = Listed<'a>;

    fn next(&mut self) -> Option<Listed<'a>> {
        let array = self.members.peek().map(|(_, job)| job.number());
        match (self.numbered.peek(), array) {
            (Some((&seq, _)), Some(array)) if seq < array => {
                self.numbered.next().map(|(_, job)| Listed::Job(job))
            }
            (Some(_), None) => self.numbered.next().map(|(_, job)| Listed::Job(job)),
            (_, Some(array)) => {
                let mut members = Vec::new();
                while let Some((_, job)) = self.members.next_if(|(_, job)| job.number() == array) {
                    members.push(job);
                }
                Some(Listed::Array(array, members))
            }
            (None, None) => None,
        }
    }
}

/// Puts `seq` in `index` or takes it out.
fn mark(index: &mut BTreeSet<u64>, seq: u64, member: bool) {
    if member {
        index.insert(seq);
    } else {
        index.remove(&seq);
    }
}

/// Whether a job belongs in [`State::pending_jobs`].
fn is_pending(job: &Job) -> bool {
    matches!(job.state, JobState::Queued | JobState::Waiting)
}

/// Whether a job belongs in [`State::running_jobs`].
fn is_running(job: &Job) -> bool {
    job.state == JobState::Running
}

/// Whether a job belongs in [`State::jobs_awaiting_dependencies`].
fn awaits_dependency(job: &Job) -> bool {
    job.state != JobState::Completed && job.depend.iter().any(|d| !d.satisfied)
}

/// What every task shares: the locked state with its store, and the scheduler's wake-up.
#[derive(Debug)]
pub struct Shared {
    pub config: Arc<Config>,
    pub core: Mutex<Core>,
    /// Woken on submit, job end, release, node up/change: runs a scheduling pass.
    pub wake: Notify,
    /// qterm's request to stop, and the word that the server has (see [`Termination`]).
    pub termination: Termination,
}

/// qterm's way to stop the server: it asks ([`Termination::request`]); `server::run` stops as
/// on a signal and, once its work is done and its database closed, says so
/// ([`Termination::stopped`]); qterm's answer waits for that, as Torque's does, so a script
/// may start the next server as soon as qterm returns.
#[derive(Debug)]
pub struct Termination {
    requested: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
}

impl Default for Termination {
    fn default() -> Termination {
        Termination {
            requested: watch::Sender::new(false),
            stopped: watch::Sender::new(false),
        }
    }
}

impl Termination {
    pub fn request(&self) {
        self.requested.send_replace(true);
    }

    /// Resolves once a stop was requested.
    pub async fn requested(&self) {
        let mut requested = self.requested.subscribe();
        let _ = requested.wait_for(|r| *r).await;
    }

    pub fn stopped(&self) {
        self.stopped.send_replace(true);
    }

    /// Resolves once the server has stopped its work.
    pub async fn wait_stopped(&self) {
        let mut stopped = self.stopped.subscribe();
        let _ = stopped.wait_for(|s| *s).await;
    }
}

/// The state and its store, changed only together under [`Shared::core`].
#[derive(Debug)]
pub struct Core {
    pub state: State,
    pub store: Store,
    pub config: Arc<Config>,
    /// Torque's accounting log (`server_priv/accounting/`).
    pub accounting: Accounting,
    /// Job mail, handed to the postman (see `mail`).
    pub mailer: Mailer,
}

impl Core {
    /// Replaces jobs in memory with their committed versions ([`State::apply_jobs`]),
    /// writes the accounting records their changes call for (`now`: when they happened) and
    /// sends the mail they call for.
    pub fn apply_jobs(&mut self, jobs: Vec<Job>, now: i64) {
        self.apply_jobs_by(jobs, now, None);
    }

    /// [`Core::apply_jobs`] for a qdel (`deletion`), whose records name who asked.
    pub fn apply_jobs_by(&mut self, jobs: Vec<Job>, now: i64, deletion: Option<&Deletion>) {
        let requestor = deletion.map(|d| d.requestor.as_str());
        for job in &jobs {
            let old = self.state.jobs.get(&job.seq);
            let events = accounting::transitions(old, job, requestor);
            for event in &events {
                self.accounting
                    .record(*event, job, &self.state.server_name, now);
            }
            for notice in mail::notices(&events, old, job, deletion) {
                self.mail(&notice, job);
            }
        }
        self.state.apply_jobs(jobs);
    }

    /// Sends `notice` about `job` if the job and the server's settings want it sent.
    pub fn mail(&self, notice: &Notice, job: &Job) {
        let settings = &self.state.server_attrs.mail;
        if let Some(mail) = mail::compose(notice, job, settings, &self.state.server_name) {
            self.mailer.send(mail);
        }
    }
}

/// A change to the core for [`Shared::change`]: a future borrowing the locked core.
pub type CoreChange<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

impl Shared {
    /// Asks the dispatcher for a pass (coalesces with any pending request).
    pub fn wake_scheduler(&self) {
        self.wake.notify_one();
    }

    /// Runs `change` on the locked core, on a task of its own (see [`uncancelled`]), and
    /// wakes the scheduler when `may_start_jobs` says its result could let a job start.
    /// Every client request that changes state goes through here, so none can forget the
    /// wake-up or take the lock differently.
    pub async fn change<T, F>(
        self: &Arc<Self>,
        change: F,
        may_start_jobs: fn(&T) -> bool,
    ) -> Result<T, ChangeFailed>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Core) -> CoreChange<'c, T> + Send + 'static,
    {
        let shared = Arc::clone(self);
        uncancelled(async move {
            let mut core = shared.core.lock().await;
            let result = change(&mut core).await;
            if may_start_jobs(&result) {
                shared.wake_scheduler();
            }
            result
        })
        .await
    }
}

/// A state change whose task failed (it panicked), so it may be half done.
#[derive(Debug, thiserror::Error)]
#[error("state change failed: {0}")]
pub struct ChangeFailed(#[from] tokio::task::JoinError);

/// Runs `change` on a task of its own ([`Shared::change`] is the usual way in), so that it
/// finishes even if whoever asked for it goes away. Why: hyper drops a handler's future when
/// the connection closes, and a change stopped between its commit and its in-memory update
/// leaves the two disagreeing (a submit committed without `next_job_number` advanced makes
/// every later qsub collide with it); one stopped before its wake-up leaves a started job
/// waiting for the periodic pass.
pub async fn uncancelled<T: Send + 'static>(
    change: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, ChangeFailed> {
    Ok(tokio::spawn(change).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{member_key, DepKind, Dependency};

    /// Arrays are listed at their number among numbered jobs, with their sub-jobs in
    /// index order, though their keys sort after every numbered job.
    #[test]
    fn listings_place_arrays_at_their_numbers() {
        let mut state = State::new("vm", 0, "batch", vec![], vec![], Default::default());
        let job = crate::store::tests::sample_job;
        state.apply_jobs(vec![
            job(1),
            job(member_key(2, 5)),
            job(member_key(2, 10)),
            job(3),
            job(member_key(4, 0)),
        ]);
        let order: Vec<String> = state
            .listing()
            .map(|listed| match listed {
                Listed::Job(j) => j.seq.to_string(),
                Listed::Array(n, members) => {
                    let ids: Vec<String> = members.iter().map(|j| j.id("vm")).collect();
                    format!("{n}:{}", ids.join(","))
                }
            })
            .collect();
        assert_eq!(order, ["1", "2:2[5].vm,2[10].vm", "3", "4:4[0].vm"]);
        let array_2: Vec<u64> = state.sub_jobs(2).map(|j| j.seq).collect();
        assert_eq!(array_2, [member_key(2, 5), member_key(2, 10)]);
    }

    #[tokio::test]
    async fn a_change_finishes_when_its_request_is_dropped() {
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (begun, started) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let handler = tokio::spawn(uncancelled(async move {
            let _ = begun.send(());
            // Stands for the commit that is in flight when the client goes away.
            let _ = wait.await;
            let _ = done.send(());
        }));
        started.await.expect("the change began");
        // hyper drops the handler's future when its client disconnects.
        handler.abort();
        assert!(handler.await.unwrap_err().is_cancelled());
        go.send(()).unwrap();
        finished.await.expect("the change ran to its end");
    }

    #[test]
    fn an_exclusive_job_holds_its_node_whole_until_it_leaves() {
        let def = crate::nodes_file::parse("n1 np=4\n").unwrap().remove(0);
        let node = NodeRuntime::new(def, Default::default(), Instant::now());
        let mut state = State::new("vm", 9, "batch", vec![], vec![node], Default::default());
        let mut job = crate::store::tests::sample_job(3);
        job.state = JobState::Running;
        job.node_exclusive = true;
        job.exec_host = vec![HostSlots {
            node: "n1".into(),
            slots: vec![0],
        }];
        state.apply_jobs(vec![job.clone()]);
        let n1 = state.node("n1").unwrap();
        // Its one slot, as exec_host says; the node is its alone all the same.
        assert_eq!(n1.slots, [Some(3), None, None, None]);
        assert_eq!(n1.exclusive_holder, Some(3));
        let views = crate::dispatch::node_views(&state, true);
        assert_eq!(views[0].used, [true; 4]);
        job.state = JobState::Queued;
        state.apply_jobs(vec![job]);
        let n1 = state.node("n1").unwrap();
        assert_eq!((n1.exclusive_holder, n1.used_slots()), (None, 0));
        let views = crate::dispatch::node_views(&state, true);
        assert_eq!(views[0].used, [false; 4]);
    }

    #[test]
    fn the_dependency_index_follows_each_jobs_state_and_conditions() {
        let mut state = State::new("vm", 9, "batch", vec![], vec![], Default::default());
        let awaiting = |state: &State| -> Vec<u64> {
            state.jobs_awaiting_dependencies().map(|j| j.seq).collect()
        };
        let mut child = crate::store::tests::sample_job(2);
        child.state = JobState::Held;
        child.depend = vec![Dependency {
            kind: DepKind::AfterOk,
            seq: 1,
            satisfied: false,
        }];
        state.apply_jobs(vec![crate::store::tests::sample_job(1), child.clone()]);
        assert_eq!(awaiting(&state), [2]);
        child.depend[0].satisfied = true;
        child.state = JobState::Queued;
        state.apply_jobs(vec![child.clone()]);
        assert!(awaiting(&state).is_empty());
        // Deleted by its dependency's failure: complete, so no longer waiting.
        child.depend[0].satisfied = false;
        child.state = JobState::Completed;
        state.apply_jobs(vec![child.clone()]);
        assert!(awaiting(&state).is_empty());
        child.state = JobState::Held;
        state.apply_jobs(vec![child]);
        assert_eq!(awaiting(&state), [2]);
        state.remove_job(2);
        assert!(awaiting(&state).is_empty());
    }
}
