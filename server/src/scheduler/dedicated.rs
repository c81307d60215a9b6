//! Scorer: dedicated nodes before borrowed ones.
//!
//! A borrowed workstation may be reclaimed; a dedicated node will not be. As a node scorer it
//! orders nodes inside a set; as a set scorer it is the share of the set that is dedicated.

use super::{select::Cluster, Lending, NodeScorer, NodeState, PendingJob, SetScorer};
use crate::resources::Chunk;

/// Prefers dedicated nodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dedicated;

fn node_score(node: &NodeState<'_>) -> f64 {
    match node.lending {
        Lending::Dedicated => 1.0,
        Lending::Open { until: i64::MAX } => 0.5,
        Lending::Open { .. } => 0.25,
        Lending::Closed => 0.0,
    }
}

impl NodeScorer for Dedicated {
    fn name(&self) -> &'static str {
        "dedicated"
    }
    fn score(&self, _job: &PendingJob, _chunk: &Chunk, node: &NodeState<'_>) -> f64 {
        node_score(node)
    }
}

impl SetScorer for Dedicated {
    fn name(&self) -> &'static str {
        "dedicated"
    }
    fn score(&self, _job: &PendingJob, cluster: &Cluster<'_>, picks: &[(usize, u32)]) -> f64 {
        if picks.is_empty() {
            return 0.0;
        }
        let sum: f64 = picks
            .iter()
            .map(|&(i, _)| node_score(&cluster.nodes()[i]))
            .sum();
        sum / picks.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        let mut lent = node("w", 1);
        lent.dedicated = false;
        let views = vec![node("d", 1), lent];
        let cluster = Cluster::current(&views);
        let j = job(0, nodes_req(vec![chunk(1, 1)]));
        type Case<'a> = (&'a str, &'a [(usize, u32)], f64);
        let cases: &[Case<'_>] = &[
            ("dedicated", &[(0, 1)], 1.0),
            ("borrowed", &[(1, 1)], 0.5),
            ("mixed", &[(0, 1), (1, 1)], 0.75),
            ("empty", &[], 0.0),
        ];
        for (name, picks, want) in cases {
            assert_eq!(
                SetScorer::score(&Dedicated, &j, &cluster, picks),
                *want,
                "{name}"
            );
        }
        assert_eq!(
            NodeScorer::score(&Dedicated, &j, &chunk(1, 1), &cluster.nodes()[1]),
            0.5
        );
    }
}
