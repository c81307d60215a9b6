//! Ranking: the order in which feasible nodes are offered to selection.
//!
//! This is the scoring hook of the pipeline. Each [`NodeScorer`] gives a feasible node a score
//! in `0.0..=1.0` (Nomad's normalised scores, Kubernetes' Score plugins); nodes are offered in
//! descending mean score, ties kept in the nodes' own order. With no scorer the order is the
//! nodes' own order, which makes selection plain first fit (the baselines), and the cheapest:
//! selection may then stop at the first nodes that fit instead of scoring them all.
//!
//! Scorers are one module each, listed in [`Pipeline::standard`](super::Pipeline::standard)
//! (today [`dedicated`](super::dedicated), [`speed`](super::speed), [`load`](super::load)).

use super::{NodeState, PendingJob};
use crate::resources::Chunk;

/// A soft placement rule: how good is this (feasible) node for one unit of this chunk?
pub trait NodeScorer: Send + Sync {
    /// Short stable name, for logs and explanations.
    fn name(&self) -> &'static str;
    /// `0.0` (worst) to `1.0` (best). Values outside are clamped; NaN counts as `0.0`.
    fn score(&self, job: &PendingJob, chunk: &Chunk, node: &NodeState<'_>) -> f64;
}

/// Reorders `candidates` (indices into `nodes`) best first. No scorers: unchanged (first fit).
pub fn rank(
    scorers: &[Box<dyn NodeScorer>],
    job: &PendingJob,
    chunk: &Chunk,
    nodes: &[NodeState<'_>],
    candidates: &mut [usize],
) {
    if scorers.is_empty() {
        return;
    }
    let mean = |i: usize| {
        let sum: f64 = scorers
            .iter()
            .map(|s| {
                let v = s.score(job, chunk, &nodes[i]);
                if v.is_nan() {
                    0.0
                } else {
                    v.clamp(0.0, 1.0)
                }
            })
            .sum();
        sum / scorers.len() as f64
    };
    let mut scored: Vec<(f64, usize)> = candidates.iter().map(|&i| (mean(i), i)).collect();
    // Stable: equal scores keep node order.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (slot, (_, i)) in candidates.iter_mut().zip(scored) {
        *slot = i;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::testutil::*;
    use super::*;

    /// Test scorer: prefers nodes with more free slots (a "spread" policy).
    pub(crate) struct MostFree;

    impl NodeScorer for MostFree {
        fn name(&self) -> &'static str {
            "most-free"
        }
        fn score(&self, _job: &PendingJob, _chunk: &Chunk, node: &NodeState<'_>) -> f64 {
            if node.view.np == 0 {
                0.0
            } else {
                f64::from(node.free) / f64::from(node.view.np)
            }
        }
    }

    /// Test scorer returning a fixed, possibly out-of-range value.
    struct Fixed(f64);

    impl NodeScorer for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        fn score(&self, _job: &PendingJob, _chunk: &Chunk, _node: &NodeState<'_>) -> f64 {
            self.0
        }
    }

    #[test]
    fn table() {
        let views = [
            with_used(node("a", 4), &[0, 1, 2]),
            node("b", 4),
            with_used(node("c", 4), &[0, 1]),
            node("d", 4),
        ];
        let nodes: Vec<NodeState<'_>> = views.iter().map(NodeState::current).collect();
        let j = job(0, nodes_req(vec![chunk(1, 1)]));
        let c = chunk(1, 1);
        type Case = (&'static str, Vec<Box<dyn NodeScorer>>, Vec<usize>);
        let cases: Vec<Case> = vec![
            ("no scorers: first fit", vec![], vec![0, 1, 2, 3]),
            (
                "most free first, ties in node order",
                vec![Box::new(MostFree)],
                vec![1, 3, 2, 0],
            ),
            (
                "constant scores keep order",
                vec![Box::new(Fixed(0.5))],
                vec![0, 1, 2, 3],
            ),
            (
                "NaN and out-of-range are harmless",
                vec![Box::new(Fixed(f64::NAN)), Box::new(Fixed(7.0))],
                vec![0, 1, 2, 3],
            ),
        ];
        for (name, scorers, want) in cases {
            let mut candidates = vec![0, 1, 2, 3];
            rank(&scorers, &j, &c, &nodes, &mut candidates);
            assert_eq!(candidates, want, "{name}");
        }
    }
}
