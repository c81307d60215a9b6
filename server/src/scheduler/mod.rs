//! Placement: a pure function from a [`Snapshot`] to [`Decision`]s.
//!
//! No I/O, no clock reads, no database: the server builds the snapshot, calls [`schedule`],
//! then persists and dispatches the decisions. The same code runs in the simulator.
//!
//! # The pipeline
//!
//! One pass, in the shape of Nomad's scheduler stack and the Kubernetes framework:
//!
//! ```text
//!  jobs ──> ordering (priority.rs) ──> for each job, for each chunk:
//!                                        nodes ──> filters ──> ranking ──> selection
//!                                                  (hard:      (soft:      (select.rs:
//!                                                   NodeFilter) NodeScorer)  distinct nodes,
//!                                                                            all chunks or none)
//! ```
//!
//! * **Ordering** ([`priority`]): queue priority, then `-p`, then submission time, then job
//!   number. Jobs are considered strictly in that order; one that cannot start gets a
//!   [`Decision::Wait`] and later, smaller jobs may still start (Torque `pbs_sched` FIFO
//!   behaviour; no reservation for the blocked job yet — EASY backfill is a later rule).
//! * **Filters** ([`NodeFilter`]): hard per-node checks, each in its own module, listed
//!   cheapest first in [`Pipeline::standard`]: [`node_state`], [`slots`], [`host`],
//!   [`properties`], [`memory`]. A filter sees the node as it stands in this pass
//!   ([`NodeState`]: slots taken by jobs started earlier in the same pass are already gone).
//! * **Ranking** ([`rank`]): soft [`NodeScorer`]s give each feasible node a score in `0..=1`;
//!   with no scorer the order is the nodes' own order, i.e. first fit.
//! * **Selection** ([`select`]): picks distinct nodes for every chunk of the job (a multi-chunk
//!   job gets all its chunks or nothing), takes the lowest free slot indices on each, and
//!   commits them so the next job sees them taken. `procs=N` fills nodes in rank order.
//!
//! # Adding a rule
//!
//! A hard rule is a new module with a type implementing [`NodeFilter`] plus table tests, and
//! one line in [`Pipeline::standard`]. A soft rule (site affinity, speed, ...) is a new module
//! implementing [`NodeScorer`], added to the `scorers` list there. Nothing else changes:
//! [`could_ever_fit`] runs the same filters against an idealised, empty, all-up cluster, so a
//! new hard rule is honoured at submission time too. A filter or scorer that reads job fields
//! other than its request and walltime must extend the failure cache key in [`Pipeline::run`].
//!
//! SEAM (lead): the types and signatures are fixed; the scheduler helper implements the
//! pipeline (feasibility filters → ordering → selection, each rule its own module).

pub mod host;
pub mod memory;
pub mod node_state;
pub mod priority;
pub mod properties;
pub mod rank;
pub mod select;
pub mod slots;

use std::borrow::Cow;
use std::collections::HashSet;

use crate::resources::{Chunk, SlotRequest};

pub use rank::NodeScorer;

/// Everything the scheduler may look at.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Epoch seconds.
    pub now: i64,
    /// Jobs eligible to start (state Q, not held, dependencies met, execution time reached).
    pub jobs: Vec<PendingJob>,
    pub nodes: Vec<NodeView>,
}

#[derive(Debug, Clone)]
pub struct PendingJob {
    pub seq: u64,
    pub queue_priority: i64,
    /// `-p` (-1024..1023).
    pub priority: i64,
    /// Submission order tie-breaker: epoch seconds of qtime.
    pub qtime: i64,
    pub request: SlotRequest,
    pub walltime_secs: Option<u64>,
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
    pub speed: f64,
}

/// Slots taken on one node, in exec_host order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSlots {
    pub node: String,
    pub slots: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start the job on these nodes; the first is the mother superior.
    Start { seq: u64, placement: Vec<NodeSlots> },
    /// The job stays queued; `reason` becomes its `comment` (Torque words, e.g.
    /// `Not Running: Not enough of the right type of nodes are available`).
    Wait { seq: u64, reason: String },
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
    /// Per slot index `0..np`: taken (by a running job or earlier in this pass).
    used: Vec<bool>,
}

impl<'a> NodeState<'a> {
    /// The node as the snapshot reports it. Slot flags beyond `np` are ignored and missing
    /// ones count as free, so a node whose `np` changed under running jobs stays usable.
    pub fn current(view: &'a NodeView) -> Self {
        let used: Vec<bool> = (0..view.np as usize)
            .map(|i| view.used.get(i).copied().unwrap_or(false))
            .collect();
        let free = used.iter().filter(|u| !**u).count() as u32;
        NodeState {
            view,
            available: view.available,
            free,
            used,
        }
    }

    /// The node empty and up: what [`could_ever_fit`] judges against.
    pub fn idealised(view: &'a NodeView) -> Self {
        NodeState {
            view,
            available: true,
            free: view.np,
            used: vec![false; view.np as usize],
        }
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

/// The composed rules: which filters, which scorers, in which order.
pub struct Pipeline {
    pub filters: Vec<Box<dyn NodeFilter>>,
    pub scorers: Vec<Box<dyn NodeScorer>>,
}

impl Pipeline {
    /// The rules Capstan runs today, cheapest filters first so that most nodes are refused by
    /// a flag or a counter before any string comparison. No scorers yet: first fit.
    pub fn standard() -> Self {
        Pipeline {
            filters: vec![
                Box::new(node_state::Available),
                Box::new(slots::FreeSlots),
                Box::new(host::HostName),
                Box::new(properties::Properties),
                Box::new(memory::Memory),
            ],
            scorers: Vec::new(),
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

    /// One scheduling pass: one decision per pending job, in the order jobs were considered.
    pub fn run(&self, snapshot: &Snapshot) -> Vec<Decision> {
        let mut cluster = select::Cluster::current(&snapshot.nodes);
        // Within a pass capacity only shrinks, so a request that failed once fails again:
        // remember it and answer later identical jobs (job arrays, parameter sweeps) at once.
        let mut failed: HashSet<(&SlotRequest, Option<u64>)> = HashSet::new();
        let mut decisions = Vec::with_capacity(snapshot.jobs.len());
        for index in priority::order(&snapshot.jobs) {
            let job = &snapshot.jobs[index];
            let key = (&job.request, job.walltime_secs);
            let placement = if !cluster.might_fit(&job.request) || failed.contains(&key) {
                None
            } else {
                cluster.place(self, job)
            };
            decisions.push(match placement {
                Some(placement) => Decision::Start {
                    seq: job.seq,
                    placement,
                },
                None => {
                    failed.insert(key);
                    Decision::Wait {
                        seq: job.seq,
                        reason: NOT_ENOUGH_NODES.to_string(),
                    }
                }
            });
        }
        decisions
    }

    /// See [`could_ever_fit`].
    pub fn could_ever_fit(&self, request: &SlotRequest, nodes: &[NodeView]) -> bool {
        let job = PendingJob {
            seq: 0,
            queue_priority: 0,
            priority: 0,
            qtime: 0,
            request: request.clone(),
            walltime_secs: None,
        };
        select::Cluster::idealised(nodes).find(self, &job).is_some()
    }
}

/// One scheduling pass.
pub fn schedule(snapshot: &Snapshot) -> Vec<Decision> {
    Pipeline::standard().run(snapshot)
}

/// Could the request ever be satisfied by these nodes, ignoring current load and state
/// (np, properties, host names, memory)? False → qsub is refused with PBSE_EXCQRESC
/// `cannot locate feasible nodes ...`.
pub fn could_ever_fit(request: &SlotRequest, nodes: &[NodeView]) -> bool {
    Pipeline::standard().could_ever_fit(request, nodes)
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
        }
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
        Chunk {
            count,
            host: None,
            ppn,
            properties: Vec::new(),
            mem_kb: None,
        }
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

    pub fn job(seq: u64, request: SlotRequest) -> PendingJob {
        PendingJob {
            seq,
            queue_priority: 0,
            priority: 0,
            qtime: 1_000 + seq as i64,
            request,
            walltime_secs: None,
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
        }
    }

    fn wait(seq: u64) -> Decision {
        Decision::Wait {
            seq,
            reason: NOT_ENOUGH_NODES.to_string(),
        }
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
            let got = schedule(&snapshot(case.jobs, case.nodes));
            assert_eq!(got, case.want, "{}", case.name);
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
        let got = schedule(&snapshot(jobs, nodes));
        let mut seqs: Vec<u64> = got
            .iter()
            .map(|d| match d {
                Decision::Start { seq, .. } | Decision::Wait { seq, .. } => *seq,
            })
            .collect();
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
            assert_eq!(could_ever_fit(&req, &cluster), want, "{name}");
        }
        assert!(!could_ever_fit(&nodes_req(vec![chunk(1, 1)]), &[]));
    }

    /// Not a measurement (see design.md "Measuring"): a guard that a pass over a large
    /// backlog stays far from quadratic blow-up. Run with `--ignored` in release builds.
    #[test]
    #[ignore]
    fn large_pass_is_fast() {
        let nodes: Vec<NodeView> = (0..1000)
            .map(|i| {
                with_props(
                    node(&format!("n{i:04}"), 16),
                    if i % 10 == 0 { &["bigmem"] } else { &[] },
                )
            })
            .collect();
        let jobs: Vec<PendingJob> = (0..10_000u64)
            .map(|i| {
                let req = match i % 4 {
                    0 => nodes_req(vec![chunk(1 + (i % 7) as u32, 1 + (i % 16) as u32)]),
                    1 => procs_req(1 + (i % 33) as u32),
                    2 => nodes_req(vec![prop_chunk(1, 2, &["bigmem"]), chunk(1, 3)]),
                    _ => nodes_req(vec![host_chunk(
                        &format!("n{:04}", i % 1000),
                        1 + (i % 5) as u32,
                    )]),
                };
                PendingJob {
                    priority: (i % 11) as i64,
                    ..job(i, req)
                }
            })
            .collect();
        let snap = snapshot(jobs, nodes);
        let started = std::time::Instant::now();
        let got = schedule(&snap);
        let elapsed = started.elapsed();
        assert_eq!(got.len(), 10_000);
        assert!(elapsed.as_millis() < 1000, "pass took {elapsed:?}");
    }
}
