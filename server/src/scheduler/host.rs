//! Filter: a chunk that names a host runs on that host (`nodes=node01:ppn=2`).
//!
//! Torque resolves the leading word of a node spec against node names first and, failing that,
//! against properties (`nodes=bigmem` is one node with property `bigmem`). The grammar cannot
//! tell the two apart without the node list, so this rule accepts a node whose name matches or
//! which carries the word as a property. Host names compare case-insensitively, as DNS does;
//! a short name also matches a node listed by its fully qualified name and vice versa.

use super::{NodeFilter, NodeState, PendingJob, Reason};
use crate::resources::Chunk;

/// Refuses nodes other than the one the chunk names.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostName;

/// `node01` matches `node01`, `NODE01`, `node01.example.org`; `node01.a` does not match
/// `node01.b`.
fn same_host(asked: &str, node: &str) -> bool {
    if asked.eq_ignore_ascii_case(node) {
        return true;
    }
    let short = |h: &str| h.split('.').next().unwrap_or(h).to_ascii_lowercase();
    // Only compare short names when at least one side is unqualified.
    (!asked.contains('.') || !node.contains('.')) && short(asked) == short(node)
}

impl NodeFilter for HostName {
    fn name(&self) -> &'static str {
        "host"
    }

    fn feasible(
        &self,
        _job: &PendingJob,
        chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        match &chunk.host {
            None => Ok(()),
            Some(asked)
                if same_host(asked, &node.view.name)
                    || node.view.properties.iter().any(|p| p == asked) =>
            {
                Ok(())
            }
            Some(_) => Err("not the requested host".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        /// (name, host asked, node name, node properties, feasible)
        type Case<'a> = (&'a str, Option<&'a str>, &'a str, &'a [&'a str], bool);
        let cases: &[Case<'_>] = &[
            ("no host asked", None, "node01", &[], true),
            ("exact", Some("node01"), "node01", &[], true),
            ("case-insensitive", Some("NODE01"), "node01", &[], true),
            ("other host", Some("node02"), "node01", &[], false),
            ("prefix is not a match", Some("node0"), "node01", &[], false),
            (
                "short asks, node fqdn",
                Some("node01"),
                "node01.example.org",
                &[],
                true,
            ),
            (
                "fqdn asks, node short",
                Some("node01.example.org"),
                "node01",
                &[],
                true,
            ),
            (
                "different domains",
                Some("node01.a"),
                "node01.b",
                &[],
                false,
            ),
            (
                "word is a property",
                Some("bigmem"),
                "node01",
                &["bigmem"],
                true,
            ),
            (
                "word is neither",
                Some("bigmem"),
                "node01",
                &["fast"],
                false,
            ),
        ];
        for (name, asked, node_name, props, want) in cases {
            let view = with_props(node(node_name, 1), props);
            let c = Chunk {
                host: asked.map(str::to_string),
                ..chunk(1, 1)
            };
            assert_eq!(
                admits(&HostName, &c, &NodeState::current(&view)),
                *want,
                "{name}"
            );
        }
    }
}
