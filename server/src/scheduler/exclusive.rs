//! Filter: an exclusive job (`qsub -n`, or `-l naccesspolicy=singlejob`) runs only on nodes
//! where nothing else runs, as Torque's `node_exclusive` asks.
//!
//! Only the new job's side needs a rule: once an exclusive job is placed, every slot of its
//! nodes counts as used (in the pass, see [`Cluster::commit`](super::select::Cluster::commit);
//! in the snapshot, the server reports its nodes full), so [`slots`](super::slots) turns
//! everyone else away. Reservations hold its nodes whole too ([`super::backfill`]).

use super::{NodeFilter, NodeState, PendingJob, Reason};
use crate::resources::Chunk;

/// Refuses a node that is partly in use to an exclusive job.
#[derive(Debug, Clone, Copy, Default)]
pub struct WholeNode;

impl NodeFilter for WholeNode {
    fn name(&self) -> &'static str {
        "exclusive"
    }

    fn feasible(
        &self,
        job: &PendingJob,
        _chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        if !job.exclusive || node.free >= node.view.np {
            Ok(())
        } else {
            Err("the job asked for whole nodes and this one is in use".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::select::Cluster;
    use super::super::testutil::*;
    use super::super::Pipeline;
    use super::*;

    fn exclusive(seq: u64, ppn: u32) -> PendingJob {
        PendingJob {
            exclusive: true,
            ..job(seq, nodes_req(vec![chunk(1, ppn)]))
        }
    }

    #[test]
    fn table() {
        // (name, node, exclusive job, feasible now, feasible ever)
        let cases = [
            ("empty node", node("a", 4), true, true, true),
            (
                "one slot in use",
                with_used(node("a", 4), &[3]),
                true,
                false,
                true,
            ),
            (
                "shared job, partly used node",
                with_used(node("a", 4), &[3]),
                false,
                true,
                true,
            ),
        ];
        for (name, view, is_exclusive, now, ever) in cases {
            let j = PendingJob {
                exclusive: is_exclusive,
                ..job(0, nodes_req(vec![chunk(1, 1)]))
            };
            let c = chunk(1, 1);
            let feasible = |state| WholeNode.feasible(&j, &c, &state).is_ok();
            assert_eq!(feasible(NodeState::current(&view)), now, "{name}");
            assert_eq!(feasible(NodeState::idealised(&view)), ever, "{name}");
        }
    }

    #[test]
    fn an_exclusive_job_holds_its_node_against_the_rest_of_the_pass() {
        let views = [node("a", 4), node("b", 4)];
        let pipeline = Pipeline::standard();
        let mut cluster = Cluster::current(&views);
        // It asked for one slot and is told one slot, but node a is now full.
        let placed = cluster.place(&pipeline, &exclusive(1, 1)).unwrap();
        assert_eq!(
            (placed[0].node.as_str(), placed[0].slots.as_slice()),
            ("a", &[0][..])
        );
        assert_eq!(cluster.nodes()[0].free, 0);
        // A shared job goes elsewhere; a second exclusive job needs an empty node.
        let shared = cluster
            .place(&pipeline, &job(2, nodes_req(vec![chunk(1, 1)])))
            .unwrap();
        assert_eq!(shared[0].node, "b");
        assert!(cluster.place(&pipeline, &exclusive(3, 1)).is_none());
    }
}
