//! Scorers: fast nodes first, and speed-homogeneous node sets.
//!
//! A multi-node job runs at its slowest node's speed, so a set mixing a fast and a slow node
//! wastes the fast one. [`Fast`] orders nodes inside a set (faster first, which also keeps
//! the chosen nodes close in speed); [`Homogeneous`] scores a whole set by slowest / fastest.

use super::{select::Cluster, NodeScorer, NodeState, PendingJob, SetScorer};
use crate::resources::Chunk;

/// The slowest chosen node's speed (1.0 for an empty choice).
pub fn slowest(cluster: &Cluster<'_>, picks: &[(usize, u32)]) -> f64 {
    let min = picks
        .iter()
        .map(|&(i, _)| cluster.nodes()[i].view.speed)
        .fold(f64::INFINITY, f64::min);
    if min.is_finite() && min > 0.0 {
        min
    } else {
        1.0
    }
}

/// Prefers faster nodes: `speed / (speed + 1)`, monotone and within `0..1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fast;

impl NodeScorer for Fast {
    fn name(&self) -> &'static str {
        "fast"
    }
    fn score(&self, _job: &PendingJob, _chunk: &Chunk, node: &NodeState<'_>) -> f64 {
        let s = node.view.speed.max(0.0);
        s / (s + 1.0)
    }
}

/// Scores a set by slowest / fastest node speed (1.0: all alike).
#[derive(Debug, Clone, Copy, Default)]
pub struct Homogeneous;

impl SetScorer for Homogeneous {
    fn name(&self) -> &'static str {
        "speed-homogeneity"
    }
    fn score(&self, _job: &PendingJob, cluster: &Cluster<'_>, picks: &[(usize, u32)]) -> f64 {
        let speeds = picks.iter().map(|&(i, _)| cluster.nodes()[i].view.speed);
        let max = speeds.clone().fold(0.0, f64::max);
        let min = speeds.fold(f64::INFINITY, f64::min);
        if max > 0.0 && min.is_finite() {
            min / max
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        let fast = |n: &str, s: f64| {
            let mut v = node(n, 1);
            v.speed = s;
            v
        };
        let views = vec![fast("a", 1.0), fast("b", 2.0), fast("c", 2.0)];
        let cluster = Cluster::current(&views);
        let j = job(0, nodes_req(vec![chunk(2, 1)]));
        // (name, picks, homogeneity, slowest)
        type Case<'a> = (&'a str, &'a [(usize, u32)], f64, f64);
        let cases: &[Case<'_>] = &[
            ("alike", &[(1, 1), (2, 1)], 1.0, 2.0),
            ("mixed", &[(0, 1), (1, 1)], 0.5, 1.0),
            ("empty", &[], 0.0, 1.0),
        ];
        for (name, picks, homogeneity, slow) in cases {
            assert_eq!(
                Homogeneous.score(&j, &cluster, picks),
                *homogeneity,
                "{name}"
            );
            assert_eq!(slowest(&cluster, picks), *slow, "{name}");
        }
        let c = chunk(1, 1);
        assert!(Fast.score(&j, &c, &cluster.nodes()[1]) > Fast.score(&j, &c, &cluster.nodes()[0]));
    }
}
