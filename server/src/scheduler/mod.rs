//! Placement: a pure function from a [`Snapshot`] to [`Decision`]s.
//!
//! No I/O, no clock reads, no database: the server builds the snapshot, calls [`schedule`],
//! then persists and dispatches the decisions. The same code runs in the simulator
//! (`capstan-sim`), on virtual time.
//!
//! # The pipeline
//!
//! One pass, in the shape of Nomad's scheduler stack and the Kubernetes framework with its
//! placement (node-set) extension:
//!
//! ```text
//!  jobs ──> ordering ──> for each job:
//!           (priority)     candidate sets (sites.rs): one per allowed site, and a cross-site
//!                          set only when the job and the policy allow spanning
//!                            └─ per set: nodes ──> filters ──> ranking ──> selection
//!                                                  (NodeFilter) (NodeScorer) (select.rs)
//!                          set scorers (SetScorer) rank the sets that found room; the best
//!                          starts. None: the site policy compares waiting for one site
//!                          (a reservation from running jobs' walltimes) with spanning now.
//!           EASY backfill: the first job that waits holds a reservation (backfill.rs); later
//!           jobs may only use its nodes if they end before it starts.
//! ```
//!
//! * **Ordering** ([`priority`]): queue priority, then `-p`, then submission time, then job
//!   number, combined with age and [`fairshare`] into one value (`qstat -f`'s
//!   `start_priority` for queued jobs).
//! * **Filters** ([`NodeFilter`]): hard per-node checks, each in its own module, listed
//!   cheapest first in [`Pipeline::filters`]: [`node_state`], [`slots`], [`exclusive`] (a
//!   `-n` job's nodes must be empty), [`lending`] (owner windows), [`backfill`]
//!   (reservations), [`host`], [`properties`], [`memory`], [`access`] (nodes restricted to
//!   some users or groups).
//!   A filter sees the node as it stands in this pass ([`NodeState`]). Before them, job
//!   rules: [`terminal`] (an interactive job waits for its qsub) and [`array_limit`] (an
//!   array's `%N`) hold a job back without looking at nodes.
//! * **Candidate sets** ([`sites`]): a multi-node job runs inside one site whenever one site can
//!   hold it; the [`SitePolicy`] decides what happens when none can.
//! * **Ranking** ([`rank`]): soft [`NodeScorer`]s order the feasible nodes inside a set
//!   ([`dedicated`], [`speed`], [`load`]). Ties keep the nodes' own order, so identical nodes
//!   are filled first fit, as Torque does. A node's speed is the one learned from completed
//!   jobs ([`speed_learning`]) when there is enough evidence, else its configured `speed=`.
//! * **Set scoring** ([`SetScorer`]): whole candidate sets are scored ([`site_packing`],
//!   [`speed`] homogeneity, [`dedicated`] share); the mean is the score a start reports.
//! * **Selection** ([`select`]): picks distinct nodes for every chunk of the job (all chunks or
//!   none), takes the lowest free slot indices on each, and commits them.
//!
//! Every decision carries its reasons: a [`Decision::Wait`] has the `comment` text, a
//! [`Decision::Start`] the site(s), the winning score and each set scorer's part of it.
//!
//! # Adding a rule
//!
//! A hard rule is a new module with a type implementing [`NodeFilter`] plus table tests, and
//! one line in [`Pipeline::filters`]. A soft rule is a new module implementing [`NodeScorer`]
//! (node order inside a set) or [`SetScorer`] (choice between sets), added to the lists in
//! [`Pipeline::standard`].
//! Baseline policies for the simulator are other [`Pipeline`] constructors, not other loops.
//! A new field of [`PendingJob`] must be placed in or out of the failure cache key
//! (`PendingJob::feasibility_key`); the compiler asks.

pub mod access;
pub mod array_limit;
pub mod backfill;
pub mod dedicated;
pub mod exclusive;
pub mod fairshare;
pub mod host;
pub mod lending;
pub mod load;
pub mod memory;
pub mod node_state;
pub mod priority;
pub mod properties;
pub mod rank;
pub mod select;
pub mod site_packing;
pub mod sites;
pub mod slots;
pub mod speed;
pub mod speed_learning;
pub mod terminal;
pub mod window;

use std::borrow::Cow;
use std::collections::HashMap;
#[cfg(test)]
use std::collections::HashSet;

use crate::resources::{Chunk, SlotRequest};

pub use lending::Lending;
pub use rank::NodeScorer;
pub use sites::SitePolicy;
pub use window::Window;

/// Walltime assumed for a job that has none (the queue default normally supplies one).
pub const DEFAULT_WALLTIME: u64 = 3600;

/// Everything the scheduler may look at.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Epoch seconds.
    pub now: i64,
    /// Jobs eligible to start (state Q, not held, dependencies met, execution time reached).
    pub jobs: Vec<PendingJob>,
    pub nodes: Vec<NodeView>,
    /// Jobs holding slots, with the time they are expected to end at the latest.
    pub running: Vec<RunningJob>,
    pub settings: Settings,
}

/// Cluster-wide scheduler settings (server settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// How much slower a job runs when its nodes span sites (the inter-site link).
    pub site_span_penalty: f64,
    /// The longest a job waits for one site before it spans instead.
    pub max_wait_secs: i64,
    /// Local time = epoch + this (lending windows are in local time).
    pub utc_offset_secs: i64,
    /// How queue priority, `-p`, age and fair share combine into a job's priority.
    pub weights: priority::Weights,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            site_span_penalty: 1.5,
            max_wait_secs: 86_400,
            utc_offset_secs: 0,
            weights: priority::Weights::default(),
        }
    }
}

/// A job's own say on sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Span {
    /// The scheduler decides (one site preferred, spanning when it finishes earlier).
    #[default]
    Default,
    /// `-l place=group=site`: never span.
    Never,
    /// `-l place=free`: the job does not care; any nodes anywhere.
    Free,
}

#[derive(Debug, Clone)]
pub struct PendingJob {
    pub seq: u64,
    pub queue_priority: i64,
    /// `-p` (-1024..1023).
    pub priority: i64,
    /// When it entered its queue, epoch seconds (its age, for the age weight).
    pub qtime: i64,
    /// Its place in line among jobs of equal priority (Torque's `queue_rank`: given in
    /// order as jobs enter a queue, swapped by qorder).
    pub rank: u64,
    pub request: SlotRequest,
    pub walltime_secs: Option<u64>,
    /// `-l site=NAME`: that site only.
    pub site: Option<String>,
    pub span: Span,
    /// The owner's part of recent cluster use (`fairshare::Usage::share`), `0..=1`.
    pub usage_share: f64,
    /// Whose job it is (restricted nodes admit only some users and groups).
    pub owner: access::Owner,
    /// `qsub -n` (or `-l naccesspolicy=singlejob`): its nodes run no other job.
    pub exclusive: bool,
    /// A sub-job of an array with a slot limit (`-t 1-9%2`): the limit and its use.
    pub array_slots: Option<array_limit::ArraySlots>,
    /// An interactive job (`qsub -I`) whose qsub is not attached: it may not start.
    pub awaiting_terminal: bool,
}

/// What a job's chance of fitting in a pass depends on: identical keys fit or fail alike.
#[derive(Debug, PartialEq, Eq, Hash)]
struct FeasibilityKey<'j> {
    request: &'j SlotRequest,
    walltime_secs: Option<u64>,
    site: Option<&'j str>,
    span: Span,
    owner: &'j access::Owner,
    exclusive: bool,
}

impl PendingJob {
    /// The key of [`Pipeline::run`]'s failure cache.
    ///
    /// Why every job field that is not pure ordering, rather than only the fields today's
    /// filters read (say, no owner unless some node is restricted): the cache pays off for
    /// job arrays, whose elements share request, walltime and owner anyway, so a narrower key
    /// would win almost nothing, and it would have to be kept in step with every filter,
    /// scorer and site rule by hand. The pattern below is exhaustive on purpose: a new field
    /// does not compile until it is put in the key or among the ordering fields. Those are
    /// left out because no cacheable failure depends on them: `qtime` is read only by the
    /// `WaitThenSpan` policy, whose waits are not cached.
    fn feasibility_key(&self) -> FeasibilityKey<'_> {
        let PendingJob {
            seq: _,
            queue_priority: _,
            priority: _,
            qtime: _,
            rank: _,
            usage_share: _,
            request,
            walltime_secs,
            site,
            span,
            owner,
            exclusive,
            // Asked before any node is (see `array_limit`): never a node failure.
            array_slots: _,
            awaiting_terminal: _,
        } = self;
        FeasibilityKey {
            request,
            walltime_secs: *walltime_secs,
            site: site.as_deref(),
            span: *span,
            owner,
            exclusive: *exclusive,
        }
    }

    /// The walltime used for reservations and windows.
    pub fn walltime(&self) -> u64 {
        self.walltime_secs
            .filter(|w| *w > 0)
            .unwrap_or(DEFAULT_WALLTIME)
    }

    /// The slots the job holds on a node of `np` slots where it asked for `asked`: all of
    /// them when it is exclusive (the one place that rule is spelt, for the pass and for
    /// reservations).
    pub fn slots_on(&self, np: u32, asked: u32) -> u32 {
        if self.exclusive {
            np
        } else {
            asked
        }
    }

    /// Could the job's nodes be in more than one place?
    pub fn multi_node(&self) -> bool {
        self.request.procs || self.request.nodect() > 1
    }
}

/// A job that holds slots now.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningJob {
    pub seq: u64,
    /// When its slots are expected back at the latest (start + walltime).
    pub expected_end: i64,
    pub placement: Vec<NodeSlots>,
}

#[derive(Debug, Clone)]
pub struct NodeView {
    pub name: String,
    pub site: String,
    pub np: u32,
    /// `used[i]` is true when slot i is held by a job.
    pub used: Vec<bool>,
    pub properties: Vec<String>,
    /// Up, reporting, not offline, not busy: may take new work.
    pub available: bool,
    pub physmem_kb: Option<u64>,
    /// Relative speed (1.0 = reference).
    pub speed: f64,
    /// False for a borrowed workstation.
    pub dedicated: bool,
    /// When a non-dedicated node is lent (`None`: always).
    pub window: Option<Window>,
    /// Load average per slot (0 = idle).
    pub load: f64,
    /// `acl_users=` / `acl_groups=` from the nodes file.
    pub access: access::NodeAccess,
}

/// How set scorers rate one placement ([`Pipeline::set_score`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SetScore {
    /// The mean of `parts`; the best mean wins between candidate sets.
    pub mean: f64,
    /// Each set scorer's name and value, in pipeline order.
    pub parts: Vec<(&'static str, f64)>,
}

/// Slots taken on one node, in exec_host order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlots {
    pub node: String,
    pub slots: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start the job on these nodes; the first is the mother superior. `site` names the
    /// site (`a`, or `a+b` when it spans), `score` is the mean set score that won and
    /// `scores` each set scorer's part of it, so the job's comment can say why it won.
    Start {
        seq: u64,
        placement: Vec<NodeSlots>,
        site: String,
        score: f64,
        scores: Vec<(&'static str, f64)>,
    },
    /// The job stays queued; `reason` becomes its `comment` (Torque words, e.g.
    /// `Not Running: Not enough of the right type of nodes are available`).
    Wait { seq: u64, reason: String },
}

impl Decision {
    pub fn seq(&self) -> u64 {
        match self {
            Decision::Start { seq, .. } | Decision::Wait { seq, .. } => *seq,
        }
    }
}

/// The comment Torque's scheduler leaves on a job that does not fit right now.
pub const NOT_ENOUGH_NODES: &str =
    "Not Running: Not enough of the right type of nodes are available";

/// Why a filter refused a node. Static text in the common case, so refusing costs nothing in
/// the hot loop; owned text when a rule wants to name values.
pub type Reason = Cow<'static, str>;

/// A node as one scheduling pass sees it: the snapshot's view plus what this pass has already
/// handed out. Filters and scorers read this rather than [`NodeView`] so that two jobs started
/// in the same pass never get the same slot.
#[derive(Debug, Clone)]
pub struct NodeState<'a> {
    pub view: &'a NodeView,
    /// May take new work in this pass (`view.available`, or forced true by [`could_ever_fit`]).
    pub available: bool,
    /// Free slots left in this pass.
    pub free: u32,
    /// The time a job placed now would start (the pass's `now`, or a future time when the
    /// scheduler computes a reservation).
    pub now: i64,
    /// Owner availability at `now`.
    pub lending: Lending,
    /// A waiting job holds `reserved_slots` of this node from this time on (EASY backfill).
    pub reserved_from: Option<i64>,
    pub reserved_slots: u32,
    /// Per slot index `0..np`: taken (by a running job or earlier in this pass).
    used: Vec<bool>,
}

impl<'a> NodeState<'a> {
    /// The node as the snapshot reports it, at time 0 UTC (for rule tests).
    pub fn current(view: &'a NodeView) -> Self {
        Self::at(view, 0, 0)
    }

    /// The node as the snapshot reports it, at `now`. Slot flags beyond `np` are ignored and
    /// missing ones count as free, so a node whose `np` changed under running jobs stays usable.
    pub fn at(view: &'a NodeView, now: i64, utc_offset: i64) -> Self {
        let used: Vec<bool> = (0..view.np as usize)
            .map(|i| view.used.get(i).copied().unwrap_or(false))
            .collect();
        let free = used.iter().filter(|u| !**u).count() as u32;
        NodeState {
            view,
            available: view.available,
            free,
            now,
            lending: Lending::of(view, now, utc_offset),
            reserved_from: None,
            reserved_slots: 0,
            used,
        }
    }

    /// The node empty, up and lent: what [`could_ever_fit`] judges against.
    pub fn idealised(view: &'a NodeView) -> Self {
        NodeState {
            view,
            available: true,
            free: view.np,
            now: 0,
            lending: Lending::Dedicated,
            reserved_from: None,
            reserved_slots: 0,
            used: vec![false; view.np as usize],
        }
    }

    /// Seconds the job would run here (its walltime at this node's speed).
    pub fn duration(&self, job: &PendingJob) -> i64 {
        (job.walltime() as f64 / self.view.speed.max(1e-6)).ceil() as i64
    }

    /// Marks the `count` lowest free slots taken and returns their indices. Lowest first keeps
    /// `exec_host` ranges compact (`vm/0-1`) as Torque's are.
    fn take_lowest(&mut self, count: u32) -> Vec<u32> {
        let mut taken = Vec::with_capacity(count as usize);
        for (i, used) in self.used.iter_mut().enumerate() {
            if taken.len() == count as usize {
                break;
            }
            if !*used {
                *used = true;
                taken.push(i as u32);
            }
        }
        self.free -= taken.len() as u32;
        taken
    }
}

/// A hard placement rule: may this node host one unit of this chunk of this job?
///
/// Must be pure and cheap: it runs for every (job, chunk, node) the pass considers.
pub trait NodeFilter: Send + Sync {
    /// Short stable name, for logs and explanations.
    fn name(&self) -> &'static str;
    /// `Ok` when the node may take the chunk; `Err(reason)` otherwise.
    fn feasible(&self, job: &PendingJob, chunk: &Chunk, node: &NodeState<'_>)
        -> Result<(), Reason>;
}

/// A soft rule over a whole candidate set (the nodes one placement would use).
pub trait SetScorer: Send + Sync {
    /// Short stable name, for logs and explanations.
    fn name(&self) -> &'static str;
    /// `0.0` (worst) to `1.0` (best) for placing `job` on `picks` (node index, slots).
    fn score(&self, job: &PendingJob, cluster: &select::Cluster<'_>, picks: &[(usize, u32)])
        -> f64;
}

/// The composed rules: which filters, which scorers, which site policy.
pub struct Pipeline {
    pub filters: Vec<Box<dyn NodeFilter>>,
    pub scorers: Vec<Box<dyn NodeScorer>>,
    pub set_scorers: Vec<Box<dyn SetScorer>>,
    pub sites: SitePolicy,
    /// EASY backfill: the first waiting job holds a reservation.
    pub backfill: bool,
    /// Refuse placements whose whole set (at its slowest speed, with the span penalty) would
    /// outlast a lending window: owners come first.
    pub guard_windows: bool,
}

impl Pipeline {
    /// Capstan's policy. Cheapest filters first so that most nodes are refused by a flag or a
    /// counter before any string comparison.
    pub fn standard() -> Self {
        Pipeline {
            filters: Self::filters(true),
            scorers: vec![
                Box::new(dedicated::Dedicated),
                Box::new(speed::Fast),
                Box::new(load::LightlyLoaded),
            ],
            set_scorers: vec![
                Box::new(site_packing::SitePacking),
                Box::new(speed::Homogeneous),
                Box::new(dedicated::Dedicated),
            ],
            sites: SitePolicy::Capstan,
            backfill: true,
            guard_windows: true,
        }
    }

    /// The hard rules; `overrun` also keeps jobs off lent nodes whose window ends before them.
    pub fn filters(overrun: bool) -> Vec<Box<dyn NodeFilter>> {
        vec![
            Box::new(node_state::Available),
            Box::new(slots::FreeSlots),
            Box::new(exclusive::WholeNode),
            Box::new(lending::LendingWindow { overrun }),
            Box::new(backfill::Reserved),
            Box::new(host::HostName),
            Box::new(properties::Properties),
            Box::new(memory::Memory),
            Box::new(access::Access),
        ]
    }

    /// Baseline: Torque's `pbs_sched` FIFO first fit, sites ignored, no reservation.
    pub fn fifo_first_fit() -> Self {
        Pipeline {
            filters: Self::filters(false),
            scorers: Vec::new(),
            set_scorers: Vec::new(),
            sites: SitePolicy::Ignore,
            backfill: false,
            guard_windows: false,
        }
    }

    /// Baselines with sites: first fit inside sites, backfill, a fixed span rule
    /// (HTCondor/PBS `do_not_span_psets`, Slurm `--switches@N`, PBS default).
    pub fn baseline(sites: SitePolicy) -> Self {
        Pipeline {
            filters: Self::filters(false),
            scorers: Vec::new(),
            set_scorers: Vec::new(),
            sites,
            backfill: true,
            guard_windows: false,
        }
    }

    /// Runs every filter; the first refusal wins.
    pub fn feasible(
        &self,
        job: &PendingJob,
        chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        self.filters
            .iter()
            .try_for_each(|f| f.feasible(job, chunk, node))
    }

    /// A placement's set score: each set scorer's value, in pipeline order (clamped to 0..1;
    /// a NaN counts as 0), and their mean (1.0 with no set scorers).
    pub fn set_score(
        &self,
        job: &PendingJob,
        cluster: &select::Cluster<'_>,
        picks: &[(usize, u32)],
    ) -> SetScore {
        let parts: Vec<(&'static str, f64)> = self
            .set_scorers
            .iter()
            .map(|s| {
                let v = s.score(job, cluster, picks);
                (s.name(), if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) })
            })
            .collect();
        let mean = if parts.is_empty() {
            1.0
        } else {
            parts.iter().map(|(_, v)| v).sum::<f64>() / parts.len() as f64
        };
        SetScore { mean, parts }
    }

    /// One scheduling pass: one decision per pending job, in the order jobs were considered.
    pub fn run(&self, snapshot: &Snapshot) -> Vec<Decision> {
        self.run_reaching(snapshot, Reach::AllJobs)
    }

    /// A pass that goes as far down the pending list as `reach` says, deciding in order.
    fn run_reaching(&self, snapshot: &Snapshot, reach: Reach) -> Vec<Decision> {
        let now = snapshot.now;
        let settings = &snapshot.settings;
        let mut cluster = select::Cluster::at(&snapshot.nodes, now, settings.utc_offset_secs);
        let index: HashMap<&str, usize> = snapshot
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let mut releases: Vec<backfill::Release> = snapshot
            .running
            .iter()
            .flat_map(|r| {
                let index = &index;
                r.placement.iter().filter_map(move |p| {
                    Some(backfill::Release {
                        // A job past its expected end is about to end.
                        end: r.expected_end.max(now + 1),
                        node: *index.get(p.node.as_str())?,
                        slots: p.slots.len() as u32,
                    })
                })
            })
            .collect();
        // Within a pass capacity only shrinks, so a request that fits nowhere once fits
        // nowhere again: remember it and answer later identical jobs (job arrays) at once.
        let mut failed: HashMap<FeasibilityKey<'_>, String> = HashMap::new();
        let mut reserved = !self.backfill;
        let mut array_starts = array_limit::StartsThisPass::new();
        let mut decisions = Vec::with_capacity(snapshot.jobs.len());
        for i in priority::order(&snapshot.jobs, now, &settings.weights) {
            if reach == Reach::UntilFull && cluster.is_full() {
                break;
            }
            let job = &snapshot.jobs[i];
            let job_rule =
                terminal::refusal(job).or_else(|| array_limit::refusal(job, &array_starts));
            if let Some(reason) = job_rule {
                decisions.push(Decision::Wait {
                    seq: job.seq,
                    reason,
                });
                continue;
            }
            let key = job.feasibility_key();
            let outcome = match failed.get(&key) {
                Some(reason) if reserved => sites::Outcome::Wait {
                    reason: reason.clone(),
                    reservation: None,
                    cacheable: false,
                },
                _ => sites::decide(self, &cluster, &releases, job, now, settings),
            };
            match outcome {
                sites::Outcome::Start {
                    picks,
                    spanned,
                    score: SetScore { mean, parts },
                } => {
                    let speed = speed::slowest(&cluster, &picks);
                    let mut duration = job.walltime() as f64 / speed;
                    if spanned {
                        duration *= settings.site_span_penalty;
                    }
                    let end = now.saturating_add(duration.ceil() as i64);
                    let held = cluster.held(job, &picks);
                    releases.extend(held.iter().map(|&(node, slots)| backfill::Release {
                        end,
                        node,
                        slots,
                    }));
                    let site = sites::label(&cluster, &picks);
                    let placement = cluster.commit(job, picks);
                    array_limit::started(job, &mut array_starts);
                    decisions.push(Decision::Start {
                        seq: job.seq,
                        placement,
                        site,
                        score: mean,
                        scores: parts,
                    });
                }
                sites::Outcome::Wait {
                    mut reason,
                    reservation,
                    cacheable,
                } => {
                    if cacheable {
                        failed.insert(key, reason.clone());
                    }
                    if !reserved {
                        let reservation = reservation.or_else(|| {
                            backfill::earliest(self, &cluster, &releases, job, settings)
                        });
                        if let Some(r) = reservation {
                            reserved = true;
                            if reason == NOT_ENOUGH_NODES {
                                reason = format!(
                                    "{NOT_ENOUGH_NODES} (expected start in {} s on site {})",
                                    (r.start - now).max(0),
                                    sites::label(&cluster, &r.picks)
                                );
                            }
                            r.apply(&mut cluster);
                        }
                    }
                    decisions.push(Decision::Wait {
                        seq: job.seq,
                        reason,
                    });
                }
            }
        }
        decisions
    }

    /// See [`could_ever_fit`].
    pub fn could_ever_fit(
        &self,
        request: &SlotRequest,
        owner: &access::Owner,
        nodes: &[NodeView],
    ) -> bool {
        let job = PendingJob {
            seq: 0,
            queue_priority: 0,
            priority: 0,
            qtime: 0,
            rank: 0,
            request: request.clone(),
            walltime_secs: None,
            site: None,
            span: Span::Free,
            usage_share: 0.0,
            owner: owner.clone(),
            exclusive: false,
            array_slots: None,
            awaiting_terminal: false,
        };
        select::Cluster::idealised(nodes).find(self, &job).is_some()
    }
}

/// One scheduling pass with Capstan's policy, as far down the pending list as `reach` says.
pub fn schedule(snapshot: &Snapshot, reach: Reach) -> Vec<Decision> {
    Pipeline::standard().run_reaching(snapshot, reach)
}

/// How far down the pending list a pass goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Every job gets a decision: a start, or why it waits (and so its comment).
    AllJobs,
    /// Only while some available node has a free slot: after that every job could only
    /// wait, and saying so again for each of them is what made a pass per job end cost as
    /// much as the queue is long. Capacity only shrinks within a pass, so no job after the
    /// stop could have started.
    UntilFull,
}

/// Could the request ever be satisfied by these nodes, ignoring current load and state
/// (np, properties, host names, memory, who may use the node)? False → qsub is refused with
/// PBSE_EXCQRESC `cannot locate feasible nodes ...`.
pub fn could_ever_fit(request: &SlotRequest, owner: &access::Owner, nodes: &[NodeView]) -> bool {
    Pipeline::standard().could_ever_fit(request, owner, nodes)
}

/// Builders shared by the rule modules' tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub fn node(name: &str, np: u32) -> NodeView {
        NodeView {
            name: name.to_string(),
            site: "default".to_string(),
            np,
            used: vec![false; np as usize],
            properties: Vec::new(),
            available: true,
            physmem_kb: None,
            speed: 1.0,
            dedicated: true,
            window: None,
            load: 0.0,
            access: Default::default(),
        }
    }

    pub fn in_site(mut node: NodeView, site: &str) -> NodeView {
        node.site = site.to_string();
        node
    }

    pub fn with_props(mut node: NodeView, props: &[&str]) -> NodeView {
        node.properties = props.iter().map(|p| p.to_string()).collect();
        node
    }

    pub fn with_used(mut node: NodeView, used: &[u32]) -> NodeView {
        for &i in used {
            if let Some(slot) = node.used.get_mut(i as usize) {
                *slot = true;
            }
        }
        node
    }

    pub fn offline(mut node: NodeView) -> NodeView {
        node.available = false;
        node
    }

    pub fn with_mem(mut node: NodeView, kb: u64) -> NodeView {
        node.physmem_kb = Some(kb);
        node
    }

    pub fn chunk(count: u32, ppn: u32) -> Chunk {
        Chunk::new(count, ppn)
    }

    pub fn host_chunk(host: &str, ppn: u32) -> Chunk {
        Chunk {
            host: Some(host.to_string()),
            ..chunk(1, ppn)
        }
    }

    pub fn prop_chunk(count: u32, ppn: u32, props: &[&str]) -> Chunk {
        Chunk {
            properties: props.iter().map(|p| p.to_string()).collect(),
            ..chunk(count, ppn)
        }
    }

    pub fn nodes_req(chunks: Vec<Chunk>) -> SlotRequest {
        SlotRequest {
            chunks,
            procs: false,
        }
    }

    pub fn procs_req(n: u32) -> SlotRequest {
        SlotRequest {
            chunks: vec![chunk(n, 1)],
            procs: true,
        }
    }

    /// Does `filter` let a plain one-slot job put one unit of `chunk` on `node`? (For the
    /// filters that read only the chunk and the node.)
    pub fn admits(filter: &dyn NodeFilter, chunk: &Chunk, node: &NodeState<'_>) -> bool {
        let j = job(0, nodes_req(vec![Chunk::new(1, 1)]));
        filter.feasible(&j, chunk, node).is_ok()
    }

    pub fn job(seq: u64, request: SlotRequest) -> PendingJob {
        PendingJob {
            seq,
            queue_priority: 0,
            priority: 0,
            qtime: 1_000 + seq as i64,
            rank: seq,
            request,
            walltime_secs: None,
            site: None,
            span: Span::Default,
            usage_share: 0.0,
            owner: Default::default(),
            exclusive: false,
            array_slots: None,
            awaiting_terminal: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    fn snapshot(jobs: Vec<PendingJob>, nodes: Vec<NodeView>) -> Snapshot {
        Snapshot {
            now: 1_700_000_000,
            jobs,
            nodes,
            running: Vec::new(),
            settings: Settings::default(),
        }
    }

    fn start(seq: u64, placement: &[(&str, &[u32])]) -> Decision {
        Decision::Start {
            seq,
            placement: placement
                .iter()
                .map(|(n, s)| NodeSlots {
                    node: n.to_string(),
                    slots: s.to_vec(),
                })
                .collect(),
            site: "default".to_string(),
            score: 0.0,
            scores: Vec::new(),
        }
    }

    /// Decisions without scores, and wait reasons cut at Torque's text (reservations add
    /// an expected start after it).
    fn plain(decisions: Vec<Decision>) -> Vec<Decision> {
        decisions
            .into_iter()
            .map(|d| match d {
                Decision::Start {
                    seq,
                    placement,
                    site,
                    ..
                } => Decision::Start {
                    seq,
                    placement,
                    site,
                    score: 0.0,
                    scores: Vec::new(),
                },
                Decision::Wait { seq, reason } => Decision::Wait {
                    seq,
                    reason: reason
                        .split(" (expected start")
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                },
            })
            .collect()
    }

    fn wait(seq: u64) -> Decision {
        Decision::Wait {
            seq,
            reason: NOT_ENOUGH_NODES.to_string(),
        }
    }

    #[test]
    fn an_event_pass_stops_deciding_once_the_nodes_are_full() {
        // Three free slots; job 1 waits for a property no node has, jobs 2-4 fill the
        // slots, and job 5 comes after the last slot went.
        let nodes = vec![node("n1", 2), with_used(node("n2", 2), &[1])];
        let jobs = vec![
            job(1, nodes_req(vec![prop_chunk(1, 1, &["bigmem"])])),
            job(2, nodes_req(vec![chunk(1, 1)])),
            job(3, nodes_req(vec![chunk(1, 1)])),
            job(4, nodes_req(vec![chunk(1, 1)])),
            job(5, nodes_req(vec![chunk(1, 1)])),
        ];
        let until_full = plain(schedule(
            &snapshot(jobs.clone(), nodes.clone()),
            Reach::UntilFull,
        ));
        let starts = [
            start(2, &[("n1", &[0])]),
            start(3, &[("n1", &[1])]),
            start(4, &[("n2", &[0])]),
        ];
        assert_eq!(until_full[1..], starts[..]);
        assert!(
            matches!(until_full[0], Decision::Wait { seq: 1, .. }),
            "{until_full:?}"
        );
        assert_eq!(until_full.len(), 4, "job 5 got a decision: {until_full:?}");
        // The periodic pass decides about everyone, with the same starts.
        let all = plain(schedule(&snapshot(jobs, nodes), Reach::AllJobs));
        assert_eq!(all[..4], until_full[..]);
        assert_eq!(all[4..], [wait(5)]);
    }

    #[test]
    fn another_users_failure_does_not_decide_for_a_restricted_nodes_owner() {
        // ws1 is lent to alice only; n1 is busy. Bob's job waits; alice's identical request
        // must still be evaluated (not answered from bob's cached failure) and start on ws1.
        let mut ws1 = node("ws1", 1);
        ws1.access.users = vec!["alice".into()];
        let n1 = with_used(node("n1", 1), &[0]);
        let mut bob = job(1, nodes_req(vec![chunk(1, 1)]));
        bob.owner.user = "bob".into();
        let mut alice = job(2, nodes_req(vec![chunk(1, 1)]));
        alice.owner.user = "alice".into();
        let decisions = plain(schedule(
            &snapshot(vec![bob, alice], vec![ws1, n1]),
            Reach::AllJobs,
        ));
        assert_eq!(decisions, vec![wait(1), start(2, &[("ws1", &[0])])]);
    }

    #[test]
    fn the_longest_walltime_qsub_accepts_does_not_overflow_end_times() {
        // `walltime=9223372036854775806` parses (Torque keeps durations in a C long), but
        // now + that is past i64::MAX: end times saturate instead of overflowing.
        let huge = crate::resources::parse_duration("9223372036854775806");
        let with_wall = |seq, ppn, walltime_secs| PendingJob {
            walltime_secs,
            ..job(seq, nodes_req(vec![chunk(1, ppn)]))
        };
        // Started: its expected end (a release for later reservations) is computed.
        let got = plain(schedule(
            &snapshot(
                vec![with_wall(1, 1, huge), with_wall(2, 1, huge)],
                vec![node("vm", 1)],
            ),
            Reach::AllJobs,
        ));
        assert_eq!(got, vec![start(1, &[("vm", &[0])]), wait(2)]);
        // Behind a reservation: the backfill filter asks whether it ends before the reserved
        // start, and it does not.
        let got = plain(schedule(
            &snapshot(
                vec![
                    with_wall(1, 1, Some(1000)),
                    with_wall(2, 2, Some(1000)),
                    with_wall(3, 1, huge),
                ],
                vec![node("vm", 2)],
            ),
            Reach::AllJobs,
        ));
        assert_eq!(got, vec![start(1, &[("vm", &[0])]), wait(2), wait(3)]);
    }

    #[test]
    fn reservations_and_exclusive_jobs_keep_nodes_whole() {
        let walled = |seq, chunks: Vec<Chunk>, walltime: u64, exclusive| PendingJob {
            walltime_secs: Some(walltime),
            exclusive,
            ..job(seq, nodes_req(chunks))
        };
        let long = 100_000;
        // An exclusive job waits for node vm to empty: its reservation holds all four slots,
        // so only a job that ends first may use the three free ones meanwhile.
        let got = plain(schedule(
            &snapshot(
                vec![
                    walled(1, vec![chunk(1, 1)], 1000, false),
                    walled(2, vec![chunk(1, 1)], 1000, true),
                    walled(3, vec![chunk(1, 1)], long, false),
                    walled(4, vec![chunk(1, 1)], 500, false),
                ],
                vec![node("vm", 4)],
            ),
            Reach::AllJobs,
        ));
        assert_eq!(
            got,
            vec![
                start(1, &[("vm", &[0])]),
                wait(2),
                wait(3),
                start(4, &[("vm", &[1])])
            ]
        );
        // A long exclusive job may not take a free node some of whose slots are reserved.
        let got = plain(schedule(
            &snapshot(
                vec![
                    walled(1, vec![chunk(1, 2)], 1000, false),
                    walled(2, vec![chunk(2, 2)], 1000, false),
                    walled(3, vec![chunk(1, 1)], long, true),
                ],
                vec![node("b", 2), node("a", 4)],
            ),
            Reach::AllJobs,
        ));
        assert_eq!(got, vec![start(1, &[("b", &[0, 1])]), wait(2), wait(3)]);
    }

    #[test]
    fn schedule_table() {
        struct Case {
            name: &'static str,
            jobs: Vec<PendingJob>,
            nodes: Vec<NodeView>,
            want: Vec<Decision>,
        }
        let cases = vec![
            Case {
                name: "default job takes slot 0 of the first node",
                jobs: vec![job(0, nodes_req(vec![chunk(1, 1)]))],
                nodes: vec![node("vm", 2)],
                want: vec![start(0, &[("vm", &[0])])],
            },
            Case {
                name: "nodes=1:ppn=2 gets vm/0-1",
                jobs: vec![job(0, nodes_req(vec![chunk(1, 2)]))],
                nodes: vec![node("vm", 2)],
                want: vec![start(0, &[("vm", &[0, 1])])],
            },
            Case {
                name: "lowest free indices are used",
                jobs: vec![job(0, nodes_req(vec![chunk(1, 2)]))],
                nodes: vec![with_used(node("vm", 4), &[0, 2])],
                want: vec![start(0, &[("vm", &[1, 3])])],
            },
            Case {
                name: "slots taken earlier in the pass are not handed out twice",
                jobs: vec![
                    job(0, nodes_req(vec![chunk(1, 1)])),
                    job(1, nodes_req(vec![chunk(1, 1)])),
                    job(2, nodes_req(vec![chunk(1, 1)])),
                ],
                nodes: vec![node("vm", 2)],
                want: vec![
                    start(0, &[("vm", &[0])]),
                    start(1, &[("vm", &[1])]),
                    wait(2),
                ],
            },
            Case {
                name: "full cluster: every job waits with Torque's comment",
                jobs: vec![job(0, nodes_req(vec![chunk(1, 1)])), job(1, procs_req(1))],
                nodes: vec![with_used(node("vm", 2), &[0, 1])],
                want: vec![wait(0), wait(1)],
            },
            Case {
                name: "priority order: -p decides before submission order",
                jobs: vec![
                    job(0, nodes_req(vec![chunk(1, 1)])),
                    PendingJob {
                        priority: 100,
                        ..job(1, nodes_req(vec![chunk(1, 1)]))
                    },
                ],
                nodes: vec![node("vm", 1)],
                want: vec![start(1, &[("vm", &[0])]), wait(0)],
            },
            Case {
                name: "queue priority beats -p",
                jobs: vec![
                    PendingJob {
                        priority: 1000,
                        ..job(0, nodes_req(vec![chunk(1, 1)]))
                    },
                    PendingJob {
                        queue_priority: 10,
                        ..job(1, nodes_req(vec![chunk(1, 1)]))
                    },
                ],
                nodes: vec![node("vm", 1)],
                want: vec![start(1, &[("vm", &[0])]), wait(0)],
            },
            Case {
                name: "nodes=2:ppn=2 needs two distinct nodes",
                jobs: vec![job(0, nodes_req(vec![chunk(2, 2)]))],
                nodes: vec![node("a", 4), node("b", 2)],
                want: vec![start(0, &[("a", &[0, 1]), ("b", &[0, 1])])],
            },
            Case {
                name: "nodes=2:ppn=2 does not double up on one big node",
                jobs: vec![job(0, nodes_req(vec![chunk(2, 2)]))],
                nodes: vec![node("a", 8), with_used(node("b", 2), &[1])],
                want: vec![wait(0)],
            },
            Case {
                name: "multi-node slot accounting across jobs",
                jobs: vec![
                    job(0, nodes_req(vec![chunk(2, 1)])),
                    job(1, nodes_req(vec![chunk(2, 1)])),
                    job(2, nodes_req(vec![chunk(1, 1)])),
                ],
                nodes: vec![node("a", 2), node("b", 1)],
                want: vec![
                    start(0, &[("a", &[0]), ("b", &[0])]),
                    wait(1),
                    start(2, &[("a", &[1])]),
                ],
            },
            Case {
                name: "a blocked big job does not stop a later small one",
                jobs: vec![
                    job(0, nodes_req(vec![chunk(1, 4)])),
                    job(1, nodes_req(vec![chunk(1, 1)])),
                ],
                nodes: vec![node("a", 2)],
                want: vec![wait(0), start(1, &[("a", &[0])])],
            },
            Case {
                name: "host list in chunk order; first is mother superior",
                jobs: vec![job(
                    0,
                    nodes_req(vec![host_chunk("node02", 1), host_chunk("node01", 2)]),
                )],
                nodes: vec![node("node01", 2), node("node02", 2)],
                want: vec![start(0, &[("node02", &[0]), ("node01", &[0, 1])])],
            },
            Case {
                name: "named host busy: wait even though others are free",
                jobs: vec![job(0, nodes_req(vec![host_chunk("node01", 1)]))],
                nodes: vec![with_used(node("node01", 1), &[0]), node("node02", 4)],
                want: vec![wait(0)],
            },
            Case {
                name: "properties pick the matching node",
                jobs: vec![job(0, nodes_req(vec![prop_chunk(1, 1, &["bigmem"])]))],
                nodes: vec![node("a", 4), with_props(node("b", 4), &["bigmem", "fast"])],
                want: vec![start(0, &[("b", &[0])])],
            },
            Case {
                name: "offline nodes are skipped",
                jobs: vec![job(0, nodes_req(vec![chunk(1, 1)]))],
                nodes: vec![offline(node("a", 4)), node("b", 1)],
                want: vec![start(0, &[("b", &[0])])],
            },
            Case {
                name: "only offline nodes: wait",
                jobs: vec![job(0, nodes_req(vec![chunk(1, 1)]))],
                nodes: vec![offline(node("a", 4))],
                want: vec![wait(0)],
            },
            Case {
                name: "procs fills nodes in order",
                jobs: vec![job(0, procs_req(5))],
                nodes: vec![
                    with_used(node("a", 4), &[1]),
                    offline(node("b", 8)),
                    node("c", 4),
                ],
                want: vec![start(0, &[("a", &[0, 2, 3]), ("c", &[0, 1])])],
            },
            Case {
                name: "procs larger than free slots waits",
                jobs: vec![job(0, procs_req(5)), job(1, procs_req(4))],
                nodes: vec![node("a", 2), node("b", 2)],
                want: vec![wait(0), start(1, &[("a", &[0, 1]), ("b", &[0, 1])])],
            },
            Case {
                name: "multi-chunk: all or nothing, no slots leak from a failed job",
                jobs: vec![
                    job(0, nodes_req(vec![chunk(1, 1), prop_chunk(1, 1, &["gpu"])])),
                    job(1, nodes_req(vec![chunk(2, 1)])),
                ],
                nodes: vec![node("a", 1), node("b", 1)],
                want: vec![wait(0), start(1, &[("a", &[0]), ("b", &[0])])],
            },
            Case {
                name: "multi-chunk: constrained chunk does not lose its only node",
                jobs: vec![job(
                    0,
                    nodes_req(vec![chunk(1, 1), prop_chunk(1, 1, &["gpu"])]),
                )],
                nodes: vec![with_props(node("g", 1), &["gpu"]), node("p", 1)],
                want: vec![start(0, &[("p", &[0]), ("g", &[0])])],
            },
            Case {
                name: "select mem is honoured",
                jobs: vec![job(
                    0,
                    nodes_req(vec![Chunk {
                        mem_kb: Some(8 << 20),
                        ..chunk(1, 1)
                    }]),
                )],
                nodes: vec![
                    with_mem(node("small", 4), 4 << 20),
                    with_mem(node("big", 4), 16 << 20),
                ],
                want: vec![start(0, &[("big", &[0])])],
            },
            Case {
                name: "no nodes at all",
                jobs: vec![job(0, nodes_req(vec![chunk(1, 1)]))],
                nodes: vec![],
                want: vec![wait(0)],
            },
        ];
        for case in cases {
            let got = plain(schedule(
                &snapshot(case.jobs.clone(), case.nodes.clone()),
                Reach::AllJobs,
            ));
            assert_eq!(got, case.want, "{}", case.name);
            // The FIFO baseline keeps Torque's behaviour on these single-site cases.
            let fifo = plain(Pipeline::fifo_first_fit().run(&snapshot(case.jobs, case.nodes)));
            assert_eq!(fifo, case.want, "fifo: {}", case.name);
        }
    }

    #[test]
    fn every_job_gets_exactly_one_decision() {
        let jobs: Vec<PendingJob> = (0..50)
            .map(|i| {
                job(
                    i,
                    nodes_req(vec![chunk(1 + (i % 3) as u32, 1 + (i % 2) as u32)]),
                )
            })
            .collect();
        let nodes = (0..5).map(|i| node(&format!("n{i}"), 4)).collect();
        let got = schedule(&snapshot(jobs, nodes), Reach::AllJobs);
        let mut seqs: Vec<u64> = got.iter().map(Decision::seq).collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (0..50).collect::<Vec<_>>());
        // No slot handed out twice.
        let mut taken = HashSet::new();
        for d in &got {
            if let Decision::Start { placement, .. } = d {
                for ns in placement {
                    for s in &ns.slots {
                        assert!(taken.insert((ns.node.clone(), *s)), "{ns:?} reused");
                    }
                }
            }
        }
        assert_eq!(taken.len(), 20, "the cluster should end up full");
    }

    #[test]
    fn could_ever_fit_table() {
        let cluster = vec![
            with_used(node("vm", 2), &[0, 1]),
            offline(with_props(node("big", 8), &["bigmem"])),
            with_mem(node("small", 1), 1 << 20),
        ];
        let cases: Vec<(&str, SlotRequest, bool)> = vec![
            ("default job", nodes_req(vec![chunk(1, 1)]), true),
            (
                "busy and offline nodes still count",
                nodes_req(vec![chunk(1, 8)]),
                true,
            ),
            ("more ppn than any np", nodes_req(vec![chunk(1, 9)]), false),
            ("three distinct nodes", nodes_req(vec![chunk(3, 1)]), true),
            ("four distinct nodes", nodes_req(vec![chunk(4, 1)]), false),
            ("two nodes with 2 slots", nodes_req(vec![chunk(2, 2)]), true),
            (
                "three nodes with 2 slots",
                nodes_req(vec![chunk(3, 2)]),
                false,
            ),
            (
                "property present",
                nodes_req(vec![prop_chunk(1, 1, &["bigmem"])]),
                true,
            ),
            (
                "property absent",
                nodes_req(vec![prop_chunk(1, 1, &["gpu"])]),
                false,
            ),
            ("host present", nodes_req(vec![host_chunk("vm", 2)]), true),
            (
                "host too small",
                nodes_req(vec![host_chunk("vm", 3)]),
                false,
            ),
            (
                "host absent",
                nodes_req(vec![host_chunk("nosuch", 1)]),
                false,
            ),
            (
                "same host twice cannot fit",
                nodes_req(vec![host_chunk("vm", 1), host_chunk("vm", 1)]),
                false,
            ),
            (
                "matching needs the right assignment",
                nodes_req(vec![chunk(2, 1), prop_chunk(1, 1, &["bigmem"])]),
                true,
            ),
            (
                "memory too large for the only node that is known small",
                nodes_req(vec![Chunk {
                    mem_kb: Some(2 << 20),
                    host: Some("small".into()),
                    ..chunk(1, 1)
                }]),
                false,
            ),
            ("procs over all nodes", procs_req(11), true),
            ("procs beyond total np", procs_req(12), false),
        ];
        for (name, req, want) in cases {
            assert_eq!(
                could_ever_fit(&req, &Default::default(), &cluster),
                want,
                "{name}"
            );
        }
        assert!(!could_ever_fit(
            &nodes_req(vec![chunk(1, 1)]),
            &Default::default(),
            &[]
        ));
    }
}
