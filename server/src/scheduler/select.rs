//! Selection: turning a job's request into concrete nodes and slots, and keeping count.
//!
//! [`Cluster`] is the pass's mutable picture of the nodes. For each job, [`Cluster::find`]
//! chooses nodes without changing anything, and [`Cluster::place`] commits the choice (lowest
//! free slot indices on each node) only when every chunk found room, so a job that fails
//! leaves no half-taken slots behind: all chunks or none.
//!
//! Rules of the game, as Torque's node allocator plays it:
//! * Each unit of a node request (`nodes=2:ppn=2` has two) gets its own node, and no node
//!   serves two units of the same job, across chunks too (`nodes=node01+node01` cannot fit).
//!   That keeps `exec_host` one entry per node.
//! * `procs=N` is N slots anywhere: nodes are filled in rank order, several slots per node.
//! * Placement order is chunk order, then rank order inside a chunk; the first node is the
//!   mother superior.
//!
//! Several units with different constraints compete for nodes (`nodes=1+1:gpu` must not give
//! the only gpu node to the unconstrained unit), so multi-chunk jobs are matched with
//! augmenting paths (bipartite matching) after a first-fit start; single-chunk jobs, the
//! common case, are plain first fit and stop scanning as soon as they have their nodes.
//!
//! Cheap cluster-wide counters ([`Cluster::might_fit`]) answer most hopeless jobs without a
//! scan: nothing free, fewer free slots than asked, no node with `ppn` free slots, fewer
//! nodes with a free slot than units asked.

use std::collections::{BTreeMap, HashSet};

use super::{rank, NodeSlots, NodeState, NodeView, PendingJob, Pipeline};
use crate::resources::{Chunk, SlotRequest};

/// Marks "no unit" / "no node" in the matcher's index arrays.
const NONE: usize = usize::MAX;

/// Counters over the available nodes of one site.
#[derive(Debug, Clone, Default)]
struct Counters {
    /// Free-slot count → number of available nodes with exactly that many free slots. The
    /// largest key bounds the `ppn` any job can get in this pass.
    by_free: BTreeMap<u32, u32>,
    /// Free slots over available nodes.
    total_free: u64,
    /// Available nodes with at least one free slot.
    open_nodes: usize,
}

impl Counters {
    /// Adds (`delta` = 1) or removes (-1) one available node with `free` slots.
    fn count(&mut self, free: u32, delta: i32) {
        if delta > 0 {
            *self.by_free.entry(free).or_insert(0) += 1;
            self.total_free += u64::from(free);
            self.open_nodes += usize::from(free > 0);
        } else {
            if let Some(n) = self.by_free.get_mut(&free) {
                *n -= 1;
                if *n == 0 {
                    self.by_free.remove(&free);
                }
            }
            self.total_free -= u64::from(free);
            self.open_nodes -= usize::from(free > 0);
        }
    }
}

/// The nodes as this pass sees them, indexed by site, plus counters over the available ones.
///
/// Nodes are grouped by site (sites numbered in order of first appearance), so a candidate
/// set "site a" scans only site a's open nodes: a pass costs about jobs × open nodes, not
/// jobs × sites × nodes.
#[derive(Debug, Clone)]
pub struct Cluster<'a> {
    nodes: Vec<NodeState<'a>>,
    /// Site names by site index.
    sites: Vec<&'a str>,
    /// Per node: its site index.
    site_of: Vec<usize>,
    /// Per site: total `np` of its nodes (available or not).
    site_slots: Vec<u64>,
    counters: Vec<Counters>,
    /// Per site: indices of the available nodes with a free slot, in snapshot order. Only
    /// these are offered to the filters: every unit needs at least one slot on an available
    /// node, so no rule could accept the others, and within a pass a closed node never
    /// reopens. Once the cluster is nearly full, scans get short.
    open: Vec<Vec<usize>>,
}

impl<'a> Cluster<'a> {
    /// The cluster as the snapshot reports it (at time 0, UTC: for tests of counting rules).
    pub fn current(views: &'a [NodeView]) -> Self {
        Self::from_states(views.iter().map(NodeState::current).collect())
    }

    /// The cluster as the snapshot reports it at `now` (local offset `utc_offset`).
    pub fn at(views: &'a [NodeView], now: i64, utc_offset: i64) -> Self {
        Self::from_states(
            views
                .iter()
                .map(|v| NodeState::at(v, now, utc_offset))
                .collect(),
        )
    }

    /// Every node up and empty: for [`could_ever_fit`](super::could_ever_fit).
    pub fn idealised(views: &'a [NodeView]) -> Self {
        Self::from_states(views.iter().map(NodeState::idealised).collect())
    }

    /// Builds the indexes over `nodes`.
    pub fn from_states(nodes: Vec<NodeState<'a>>) -> Self {
        let mut sites: Vec<&'a str> = Vec::new();
        let mut site_of = Vec::with_capacity(nodes.len());
        for n in &nodes {
            let name = n.view.site.as_str();
            let index = match sites.iter().position(|s| *s == name) {
                Some(i) => i,
                None => {
                    sites.push(name);
                    sites.len() - 1
                }
            };
            site_of.push(index);
        }
        let mut cluster = Cluster {
            counters: vec![Counters::default(); sites.len()],
            open: vec![Vec::new(); sites.len()],
            site_slots: vec![0; sites.len()],
            nodes,
            sites,
            site_of,
        };
        for i in 0..cluster.nodes.len() {
            let site = cluster.site_of[i];
            cluster.site_slots[site] += u64::from(cluster.nodes[i].view.np);
            if cluster.nodes[i].available {
                cluster.counters[site].count(cluster.nodes[i].free, 1);
                if cluster.nodes[i].free > 0 {
                    cluster.open[site].push(i);
                }
            }
        }
        cluster
    }

    /// No available node has a free slot: nothing more can start in this pass.
    pub fn is_full(&self) -> bool {
        self.open.iter().all(Vec::is_empty)
    }

    /// The nodes in snapshot order.
    pub fn nodes(&self) -> &[NodeState<'a>] {
        &self.nodes
    }

    /// Mutable access for pass-level marks (reservations); slot counts stay with [`Self::place`].
    pub fn node_mut(&mut self, i: usize) -> &mut NodeState<'a> {
        &mut self.nodes[i]
    }

    /// Site names by index.
    pub fn sites(&self) -> &[&'a str] {
        &self.sites
    }

    /// Site index of node `i`.
    pub fn site_of(&self, i: usize) -> usize {
        self.site_of[i]
    }

    /// Index of the site called `name`.
    pub fn site_index(&self, name: &str) -> Option<usize> {
        self.sites.iter().position(|s| *s == name)
    }

    /// All site indices.
    pub fn all_sites(&self) -> Vec<usize> {
        (0..self.sites.len()).collect()
    }

    /// Total slots of a site (all its nodes).
    pub fn site_slots(&self, site: usize) -> u64 {
        self.site_slots[site]
    }

    /// Free slots on the available nodes of a site now (in this pass).
    pub fn site_free(&self, site: usize) -> u64 {
        self.counters[site].total_free
    }

    fn open_in<'s>(&'s self, scope: &'s [usize]) -> impl Iterator<Item = usize> + 's {
        scope
            .iter()
            .flat_map(move |&s| self.open[s].iter().copied())
    }

    fn open_len(&self, scope: &[usize]) -> usize {
        scope.iter().map(|&s| self.open[s].len()).sum()
    }

    /// A quick necessary condition over the whole cluster: false means the request cannot
    /// fit now, without scanning.
    pub fn might_fit(&self, request: &SlotRequest) -> bool {
        self.might_fit_in(&self.all_sites(), request)
    }

    /// [`Self::might_fit`] restricted to the sites in `scope`.
    pub fn might_fit_in(&self, scope: &[usize], request: &SlotRequest) -> bool {
        let total_free: u64 = scope.iter().map(|&s| self.counters[s].total_free).sum();
        if total_free == 0 || u64::from(request.total_slots()) > total_free {
            return false;
        }
        if request.procs {
            return true;
        }
        let max_free = scope
            .iter()
            .filter_map(|&s| self.counters[s].by_free.keys().next_back().copied())
            .max()
            .unwrap_or(0);
        let open_nodes: usize = scope.iter().map(|&s| self.counters[s].open_nodes).sum();
        let max_ppn = request.chunks.iter().map(|c| c.ppn).max().unwrap_or(0);
        max_ppn <= max_free && request.nodect() as usize <= open_nodes
    }

    /// Finds room for `job` anywhere and takes it. `None`: the job does not fit now; nothing
    /// changed.
    pub fn place(&mut self, pipeline: &Pipeline, job: &PendingJob) -> Option<Vec<NodeSlots>> {
        let picks = self.find(pipeline, job)?;
        Some(self.commit(job, picks))
    }

    /// The slots `job` would hold on each picked node: what it asked for, or for an
    /// exclusive job every free slot (see [`Self::commit`]).
    pub fn held(&self, job: &PendingJob, picks: &[(usize, u32)]) -> Vec<(usize, u32)> {
        picks
            .iter()
            // The exclusive filter admitted such a node only if it was wholly free.
            .map(|&(i, slots)| (i, job.slots_on(self.nodes[i].free, slots)))
            .collect()
    }

    /// Takes the slots of a choice made by [`Self::find_in`]. An exclusive job's placement
    /// names the slots it asked for, but it takes its nodes' other free slots too, so that no
    /// later job of the pass lands there (the server holds them for it the same way).
    pub fn commit(&mut self, job: &PendingJob, picks: Vec<(usize, u32)>) -> Vec<NodeSlots> {
        let held = self.held(job, &picks);
        let placement: Vec<NodeSlots> = picks
            .into_iter()
            .zip(held)
            .map(|((i, asked), (_, holds))| {
                let placed = self.take(i, asked);
                if holds > asked {
                    self.take(i, holds - asked);
                }
                placed
            })
            .collect();
        for site in 0..self.open.len() {
            if self.open[site].len() != self.counters[site].open_nodes {
                let nodes = &self.nodes;
                self.open[site].retain(|&i| nodes[i].free > 0);
            }
        }
        placement
    }

    /// Takes `count` slots on node `i`, keeping the counters right.
    fn take(&mut self, i: usize, count: u32) -> NodeSlots {
        let before = self.nodes[i].free;
        let available = self.nodes[i].available;
        let site = self.site_of[i];
        if available {
            self.counters[site].count(before, -1);
        }
        let slots = self.nodes[i].take_lowest(count);
        if available {
            self.counters[site].count(self.nodes[i].free, 1);
        }
        NodeSlots {
            node: self.nodes[i].view.name.clone(),
            slots,
        }
    }

    /// Chooses nodes for `job` without taking them: `(node index, slot count)` in exec_host
    /// order, each node once. `None` when the request cannot be met (or is empty).
    pub fn find(&self, pipeline: &Pipeline, job: &PendingJob) -> Option<Vec<(usize, u32)>> {
        self.find_in(pipeline, job, &self.all_sites())
    }

    /// [`Self::find`] using only the nodes of the sites in `scope` (a candidate set).
    pub fn find_in(
        &self,
        pipeline: &Pipeline,
        job: &PendingJob,
        scope: &[usize],
    ) -> Option<Vec<(usize, u32)>> {
        let chunks = &job.request.chunks;
        if chunks.is_empty() {
            return None;
        }
        if job.request.procs {
            self.find_procs(pipeline, job, scope)
        } else if let [chunk] = chunks.as_slice() {
            self.find_single(pipeline, job, chunk, scope)
        } else {
            self.find_matching(pipeline, job, scope)
        }
    }

    /// Feasible nodes for one unit of `chunk`, in rank order. With no scorers (first fit) the
    /// scan stops after `enough` nodes.
    fn candidates(
        &self,
        pipeline: &Pipeline,
        job: &PendingJob,
        chunk: &Chunk,
        enough: usize,
        scope: &[usize],
    ) -> Vec<usize> {
        let first_fit = pipeline.scorers.is_empty();
        let mut out = Vec::new();
        for i in self.open_in(scope) {
            if first_fit && out.len() >= enough {
                break;
            }
            if pipeline.feasible(job, chunk, &self.nodes[i]).is_ok() {
                out.push(i);
            }
        }
        rank::rank(&pipeline.scorers, job, chunk, &self.nodes, &mut out);
        out
    }

    /// One chunk: the first `count` feasible nodes.
    fn find_single(
        &self,
        pipeline: &Pipeline,
        job: &PendingJob,
        chunk: &Chunk,
        scope: &[usize],
    ) -> Option<Vec<(usize, u32)>> {
        let count = chunk.count as usize;
        if count == 0 || count > self.open_len(scope) {
            return None;
        }
        let nodes = self.candidates(pipeline, job, chunk, count, scope);
        (nodes.len() >= count).then(|| {
            nodes[..count]
                .iter()
                .map(|&i| (i, chunk.ppn.max(1)))
                .collect()
        })
    }

    /// `procs`: units of `ppn` slots (1 for `procs=N`) packed onto nodes in rank order.
    fn find_procs(
        &self,
        pipeline: &Pipeline,
        job: &PendingJob,
        scope: &[usize],
    ) -> Option<Vec<(usize, u32)>> {
        // Slots this job has tentatively taken per node, for requests with several chunks.
        let mut taken: BTreeMap<usize, u32> = BTreeMap::new();
        let mut order: Vec<usize> = Vec::new();
        for chunk in &job.request.chunks {
            let ppn = chunk.ppn.max(1);
            let mut remaining = chunk.count;
            // First fit may stop scanning once the chunk is placed; ranking needs every node.
            let nodes: Box<dyn Iterator<Item = usize> + '_> = if pipeline.scorers.is_empty() {
                Box::new(
                    self.open_in(scope)
                        .filter(|&i| pipeline.feasible(job, chunk, &self.nodes[i]).is_ok()),
                )
            } else {
                Box::new(
                    self.candidates(pipeline, job, chunk, usize::MAX, scope)
                        .into_iter(),
                )
            };
            for i in nodes {
                if remaining == 0 {
                    break;
                }
                let already = taken.get(&i).copied().unwrap_or(0);
                let units = ((self.nodes[i].free - already) / ppn).min(remaining);
                if units == 0 {
                    continue;
                }
                remaining -= units;
                if already == 0 {
                    order.push(i);
                }
                *taken.entry(i).or_insert(0) += units * ppn;
            }
            if remaining > 0 {
                return None;
            }
        }
        Some(
            order
                .into_iter()
                .map(|i| (i, taken.get(&i).copied().unwrap_or(0)))
                .collect(),
        )
    }

    /// Several chunks: every unit its own node, found by bipartite matching.
    fn find_matching(
        &self,
        pipeline: &Pipeline,
        job: &PendingJob,
        scope: &[usize],
    ) -> Option<Vec<(usize, u32)>> {
        let chunks = &job.request.chunks;
        let units = job.request.nodect() as usize;
        if units == 0 || units > self.open_len(scope) {
            return None;
        }
        if pipeline.scorers.is_empty() {
            if let Some(picks) = self.find_greedy(pipeline, job, scope) {
                return Some(picks);
            }
        }
        let adj: Vec<Vec<usize>> = chunks
            .iter()
            .map(|c| self.candidates(pipeline, job, c, usize::MAX, scope))
            .collect();
        let unit_chunk: Vec<usize> = chunks
            .iter()
            .enumerate()
            .flat_map(|(c, chunk)| std::iter::repeat_n(c, chunk.count as usize))
            .collect();
        let owner = Matcher::new(&adj, &unit_chunk, self.nodes.len()).solve()?;
        // Chunk order, and rank order inside each chunk.
        let mut picks = Vec::with_capacity(units);
        for (c, chunk) in chunks.iter().enumerate() {
            for &node in &adj[c] {
                let unit = owner[node];
                if unit != NONE && unit_chunk[unit] == c {
                    picks.push((node, chunk.ppn.max(1)));
                }
            }
        }
        Some(picks)
    }

    /// First fit chunk by chunk, each node once, stopping each scan as soon as the chunk has
    /// its nodes. Usually succeeds, and then spares the full scans matching needs; when it
    /// fails, a cleverer assignment may still exist, so the caller falls back to matching.
    fn find_greedy(
        &self,
        pipeline: &Pipeline,
        job: &PendingJob,
        scope: &[usize],
    ) -> Option<Vec<(usize, u32)>> {
        let mut picked: HashSet<usize> = HashSet::new();
        let mut picks = Vec::new();
        for chunk in &job.request.chunks {
            let mut needed = chunk.count;
            for i in self.open_in(scope) {
                if needed == 0 {
                    break;
                }
                if !picked.contains(&i) && pipeline.feasible(job, chunk, &self.nodes[i]).is_ok() {
                    picked.insert(i);
                    picks.push((i, chunk.ppn.max(1)));
                    needed -= 1;
                }
            }
            if needed > 0 {
                return None;
            }
        }
        Some(picks)
    }
}

/// Maximum bipartite matching of units (left) to nodes (right), each node used at most once.
///
/// Starts greedy (first fit in each chunk's rank order), then repairs with breadth-first
/// augmenting paths (Kuhn's method): iterative, so deep conflicts cannot overflow a stack, and
/// each repair costs at most one pass over the edges.
struct Matcher<'m> {
    /// Per chunk: feasible nodes in rank order.
    adj: &'m [Vec<usize>],
    /// Per unit: its chunk.
    unit_chunk: &'m [usize],
    /// Per node: the unit using it, or NONE.
    owner: Vec<usize>,
    /// Per unit: its node, or NONE.
    assigned: Vec<usize>,
    /// Per node: the round in which the search last reached it.
    seen: Vec<u32>,
    /// Per node: the unit the search came from.
    came_from: Vec<usize>,
}

impl<'m> Matcher<'m> {
    fn new(adj: &'m [Vec<usize>], unit_chunk: &'m [usize], nodes: usize) -> Self {
        Matcher {
            adj,
            unit_chunk,
            owner: vec![NONE; nodes],
            assigned: vec![NONE; unit_chunk.len()],
            seen: vec![0; nodes],
            came_from: vec![NONE; nodes],
        }
    }

    /// Per node, the unit matched to it; `None` if some unit cannot be matched.
    fn solve(mut self) -> Option<Vec<usize>> {
        for unit in 0..self.unit_chunk.len() {
            let free = self.adj[self.unit_chunk[unit]]
                .iter()
                .copied()
                .find(|&n| self.owner[n] == NONE);
            if let Some(node) = free {
                self.owner[node] = unit;
                self.assigned[unit] = node;
            }
        }
        let mut round = 0;
        for unit in 0..self.unit_chunk.len() {
            if self.assigned[unit] == NONE {
                round += 1;
                if !self.augment(unit, round) {
                    return None;
                }
            }
        }
        Some(self.owner)
    }

    /// Breadth-first search for a path from `start` to a free node, then flips it.
    fn augment(&mut self, start: usize, round: u32) -> bool {
        let adj = self.adj;
        let mut queue = vec![start];
        let mut head = 0;
        while head < queue.len() {
            let unit = queue[head];
            head += 1;
            for &node in &adj[self.unit_chunk[unit]] {
                if self.seen[node] == round {
                    continue;
                }
                self.seen[node] = round;
                self.came_from[node] = unit;
                let holder = self.owner[node];
                if holder == NONE {
                    self.flip(start, node);
                    return true;
                }
                queue.push(holder);
            }
        }
        false
    }

    /// Moves every unit on the path ending at free node `end` one step along it.
    fn flip(&mut self, start: usize, end: usize) {
        let mut node = end;
        loop {
            let unit = self.came_from[node];
            let previous = self.assigned[unit];
            self.owner[node] = unit;
            self.assigned[unit] = node;
            if unit == start || previous == NONE {
                break;
            }
            node = previous;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::rank::tests::MostFree;
    use super::super::testutil::*;
    use super::*;

    fn names(cluster: &Cluster<'_>, picks: &[(usize, u32)]) -> Vec<(String, u32)> {
        picks
            .iter()
            .map(|&(i, n)| (cluster.nodes()[i].view.name.clone(), n))
            .collect()
    }

    #[test]
    fn find_table() {
        struct Case {
            name: &'static str,
            nodes: Vec<NodeView>,
            request: SlotRequest,
            want: Option<Vec<(&'static str, u32)>>,
        }
        let cases = vec![
            Case {
                name: "first fit",
                nodes: vec![node("a", 1), node("b", 1)],
                request: nodes_req(vec![chunk(1, 1)]),
                want: Some(vec![("a", 1)]),
            },
            Case {
                name: "count larger than the cluster",
                nodes: vec![node("a", 8)],
                request: nodes_req(vec![chunk(2, 1)]),
                want: None,
            },
            Case {
                name: "empty request is not placed",
                nodes: vec![node("a", 8)],
                request: nodes_req(vec![]),
                want: None,
            },
            Case {
                name: "matching repairs a greedy choice through a chain",
                // Greedy: unit0 (any) → a; unit1 (x) → b; unit2 (y) finds only b, held by
                // unit1, which moves to a, held by unit0, which moves to c.
                nodes: vec![
                    with_props(node("a", 1), &["x"]),
                    with_props(node("b", 1), &["x", "y"]),
                    node("c", 1),
                ],
                request: nodes_req(vec![
                    chunk(1, 1),
                    prop_chunk(1, 1, &["x"]),
                    prop_chunk(1, 1, &["y"]),
                ]),
                want: Some(vec![("c", 1), ("a", 1), ("b", 1)]),
            },
            Case {
                name: "matching fails cleanly when impossible",
                nodes: vec![with_props(node("a", 1), &["x"]), node("b", 1)],
                request: nodes_req(vec![prop_chunk(1, 1, &["x"]), prop_chunk(1, 1, &["x"])]),
                want: None,
            },
            Case {
                name: "chunk order is exec_host order",
                nodes: vec![node("a", 2), node("b", 2), node("c", 2)],
                request: nodes_req(vec![host_chunk("c", 2), chunk(2, 1)]),
                want: Some(vec![("c", 2), ("a", 1), ("b", 1)]),
            },
            Case {
                name: "procs packs nodes",
                nodes: vec![node("a", 2), node("b", 2), node("c", 2)],
                request: procs_req(3),
                want: Some(vec![("a", 2), ("b", 1)]),
            },
            Case {
                name: "procs with several chunks shares nodes",
                nodes: vec![node("a", 3), node("b", 2)],
                request: SlotRequest {
                    chunks: vec![chunk(2, 1), chunk(3, 1)],
                    procs: true,
                },
                want: Some(vec![("a", 3), ("b", 2)]),
            },
        ];
        let pipeline = Pipeline::standard();
        for case in cases {
            let cluster = Cluster::current(&case.nodes);
            let got = cluster
                .find(&pipeline, &job(0, case.request))
                .map(|p| names(&cluster, &p));
            let want = case
                .want
                .map(|w| w.into_iter().map(|(n, c)| (n.to_string(), c)).collect());
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn place_commits_and_counts() {
        let views = vec![
            node("a", 2),
            with_used(node("b", 2), &[0]),
            offline(node("c", 4)),
        ];
        let pipeline = Pipeline::standard();
        let mut cluster = Cluster::current(&views);
        assert_eq!(cluster.counters[0].total_free, 3);
        assert_eq!(cluster.counters[0].open_nodes, 2);
        assert!(
            !cluster.might_fit(&nodes_req(vec![chunk(1, 3)])),
            "no node has 3 free"
        );
        assert!(
            !cluster.might_fit(&nodes_req(vec![chunk(3, 1)])),
            "only 2 open nodes"
        );
        assert!(!cluster.might_fit(&procs_req(4)), "only 3 free slots");
        assert!(cluster.might_fit(&procs_req(3)));

        let placed = cluster.place(&pipeline, &job(0, nodes_req(vec![chunk(2, 1)])));
        assert_eq!(
            placed,
            Some(vec![
                NodeSlots {
                    node: "a".into(),
                    slots: vec![0]
                },
                NodeSlots {
                    node: "b".into(),
                    slots: vec![1]
                },
            ])
        );
        assert_eq!(cluster.counters[0].total_free, 1);
        assert_eq!(cluster.counters[0].open_nodes, 1);
        assert_eq!(cluster.open, vec![vec![0]]);
        assert_eq!(cluster.counters[0].by_free.get(&1), Some(&1));
        assert_eq!(cluster.counters[0].by_free.get(&0), Some(&1));

        // A failing multi-chunk job takes nothing.
        let before = cluster.clone();
        assert_eq!(
            cluster.place(
                &pipeline,
                &job(1, nodes_req(vec![chunk(1, 1), chunk(1, 1)]))
            ),
            None
        );
        assert_eq!(
            cluster.counters[0].total_free,
            before.counters[0].total_free
        );
        assert_eq!(cluster.nodes()[0].free, before.nodes()[0].free);
    }

    #[test]
    fn scorers_change_the_choice() {
        let views = vec![with_used(node("a", 4), &[0, 1, 2]), node("b", 4)];
        let pipeline = Pipeline {
            scorers: vec![Box::new(MostFree)],
            ..Pipeline::standard()
        };
        let mut cluster = Cluster::current(&views);
        let placed = cluster.place(&pipeline, &job(0, nodes_req(vec![chunk(1, 1)])));
        assert_eq!(
            placed,
            Some(vec![NodeSlots {
                node: "b".into(),
                slots: vec![0]
            }])
        );
    }
}
