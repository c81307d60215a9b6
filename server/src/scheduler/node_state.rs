//! Filter: the node may take new work at all.
//!
//! `available` folds together what the server knows about the node (MOM connected and
//! reporting, not `offline`, not `down`, not `busy`, owner not active), so this rule stays a
//! flag test; new reasons for unavailability belong in how the server fills the flag, or in
//! their own filter when they depend on the job.

use super::{NodeFilter, NodeState, PendingJob, Reason};
use crate::resources::Chunk;

/// Refuses nodes that are down, offline or busy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Available;

impl NodeFilter for Available {
    fn name(&self) -> &'static str {
        "node-state"
    }

    fn feasible(
        &self,
        _job: &PendingJob,
        _chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        if node.available {
            Ok(())
        } else {
            Err("node is not available (down, offline or busy)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        let c = chunk(1, 1);
        let cases = [
            ("up", node("a", 1), true),
            ("offline", offline(node("a", 1)), false),
        ];
        for (name, view, want) in cases {
            assert_eq!(
                admits(&Available, &c, &NodeState::current(&view)),
                want,
                "{name}"
            );
            // could_ever_fit ignores state.
            assert!(
                admits(&Available, &c, &NodeState::idealised(&view)),
                "{name}"
            );
        }
    }
}
