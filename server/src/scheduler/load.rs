//! Scorer: lightly loaded nodes first.
//!
//! `load` is the MOM's load average per slot. Load that is not ours (an owner compiling, a
//! runaway process) slows every job placed there; among otherwise equal nodes the quieter one
//! wins. Identical idle nodes tie, so plain clusters keep first-fit order.

use super::{NodeScorer, NodeState, PendingJob};
use crate::resources::Chunk;

/// `1 - load per slot`, clamped to `0..1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LightlyLoaded;

impl NodeScorer for LightlyLoaded {
    fn name(&self) -> &'static str {
        "lightly-loaded"
    }
    fn score(&self, _job: &PendingJob, _chunk: &Chunk, node: &NodeState<'_>) -> f64 {
        (1.0 - node.view.load).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        let j = job(0, nodes_req(vec![chunk(1, 1)]));
        let cases = [
            ("idle", 0.0, 1.0),
            ("half", 0.5, 0.5),
            ("overloaded", 3.0, 0.0),
        ];
        for (name, load, want) in cases {
            let mut v = node("a", 1);
            v.load = load;
            assert_eq!(
                LightlyLoaded.score(&j, &chunk(1, 1), &NodeState::current(&v)),
                want,
                "{name}"
            );
        }
    }
}
