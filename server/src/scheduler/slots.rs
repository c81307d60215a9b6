//! Filter: the node has enough free slots for one unit of the chunk (`ppn`).
//!
//! Reads [`NodeState::free`], which already excludes slots handed out earlier in the same pass;
//! for [`could_ever_fit`](super::could_ever_fit) the state is idealised, so this becomes
//! "`np` is at least `ppn`".

use super::{NodeFilter, NodeState, PendingJob, Reason};
use crate::resources::Chunk;

/// Refuses nodes with fewer free slots than the chunk's `ppn`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FreeSlots;

impl NodeFilter for FreeSlots {
    fn name(&self) -> &'static str {
        "slots"
    }

    fn feasible(
        &self,
        _job: &PendingJob,
        chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        // A zero-ppn chunk cannot come from the grammar; demand one slot so it cannot land on
        // a node that has none.
        if node.free >= chunk.ppn.max(1) {
            Ok(())
        } else {
            Err("not enough free slots".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        // (name, node, ppn, feasible now, feasible ever)
        let cases = [
            ("empty node, ppn fits", node("a", 4), 4, true, true),
            ("ppn above np", node("a", 4), 5, false, false),
            (
                "partly used",
                with_used(node("a", 4), &[0, 1]),
                2,
                true,
                true,
            ),
            (
                "partly used, too few left",
                with_used(node("a", 4), &[0, 1, 2]),
                2,
                false,
                true,
            ),
            ("full", with_used(node("a", 1), &[0]), 1, false, true),
            ("np 0", node("a", 0), 1, false, false),
        ];
        for (name, view, ppn, now, ever) in cases {
            let c = chunk(1, ppn);
            assert_eq!(
                admits(&FreeSlots, &c, &NodeState::current(&view)),
                now,
                "{name}"
            );
            assert_eq!(
                admits(&FreeSlots, &c, &NodeState::idealised(&view)),
                ever,
                "{name}"
            );
        }
    }
}
