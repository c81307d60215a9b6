//! Filter: the node has every property the chunk names (`nodes=2:bigmem:ppn=1`).
//!
//! Properties are the bare words of the `server_priv/nodes` file and match exactly, as in
//! Torque (they are site-defined labels, so no case folding).

use super::{NodeFilter, NodeState, PendingJob, Reason};
use crate::resources::Chunk;

/// Refuses nodes lacking one of the chunk's properties.
#[derive(Debug, Clone, Copy, Default)]
pub struct Properties;

impl NodeFilter for Properties {
    fn name(&self) -> &'static str {
        "properties"
    }

    fn feasible(
        &self,
        _job: &PendingJob,
        chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        if chunk
            .properties
            .iter()
            .all(|p| node.view.properties.iter().any(|have| have == p))
        {
            Ok(())
        } else {
            Err("node lacks a requested property".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &[&str], &[&str], bool)] = &[
            ("no properties asked", &[], &[], true),
            ("no properties asked, node has some", &["fast"], &[], true),
            ("one present", &["bigmem", "fast"], &["bigmem"], true),
            (
                "all present",
                &["bigmem", "fast"],
                &["fast", "bigmem"],
                true,
            ),
            ("one missing", &["bigmem"], &["bigmem", "fast"], false),
            ("node has none", &[], &["gpu"], false),
            ("case matters", &["BigMem"], &["bigmem"], false),
        ];
        for (name, have, want_props, want) in cases {
            let view = with_props(node("a", 1), have);
            let c = prop_chunk(1, 1, want_props);
            assert_eq!(
                admits(&Properties, &c, &NodeState::current(&view)),
                *want,
                "{name}"
            );
        }
    }
}
