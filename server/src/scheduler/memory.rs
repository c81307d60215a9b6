//! Filter: the node has at least the memory a chunk asks for (`select=...:mem=4gb`).
//!
//! Compared against physical memory as the MOM reports it. A node that has not reported yet
//! (`physmem_kb` unknown) is not refused: refusing would turn a slow first heartbeat into a
//! `could_ever_fit` rejection at qsub time.

use super::{NodeFilter, NodeState, PendingJob, Reason};
use crate::resources::Chunk;

/// Refuses nodes known to have less memory than the chunk needs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory;

impl NodeFilter for Memory {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn feasible(
        &self,
        _job: &PendingJob,
        chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        match (chunk.mem_kb, node.view.physmem_kb) {
            (Some(want), Some(have)) if want > have => Err("not enough memory".into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Option<u64>, Option<u64>, bool)] = &[
            ("nothing asked", None, Some(1024), true),
            ("nothing known", Some(1 << 30), None, true),
            ("enough", Some(1024), Some(2048), true),
            ("exactly enough", Some(2048), Some(2048), true),
            ("too little", Some(4096), Some(2048), false),
        ];
        for (name, want_kb, have_kb, want) in cases {
            let mut view = node("a", 1);
            view.physmem_kb = *have_kb;
            let c = Chunk {
                mem_kb: *want_kb,
                ..chunk(1, 1)
            };
            assert_eq!(
                admits(&Memory, &c, &NodeState::current(&view)),
                *want,
                "{name}"
            );
        }
    }
}
