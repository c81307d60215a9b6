//! Filter: the node is open to the job's owner.
//!
//! A workstation lent by one lab can be restricted to that lab's people with
//! `acl_users=alice,bob` and/or `acl_groups=lab` in `server_priv/nodes`. A node with neither
//! list takes anyone's jobs; with either, the owner's user name or primary group must be
//! listed.

use super::{NodeFilter, NodeState, PendingJob, Reason};
use crate::resources::Chunk;

/// Who may use a node (empty lists: everyone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAccess {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl NodeAccess {
    pub fn is_open(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    pub fn admits(&self, owner: &Owner) -> bool {
        self.is_open() || self.users.contains(&owner.user) || self.groups.contains(&owner.group)
    }
}

/// The job's owner as node restrictions see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    pub user: String,
    pub group: String,
}

/// Refuses nodes restricted to other users and groups.
#[derive(Debug, Clone, Copy, Default)]
pub struct Access;

impl NodeFilter for Access {
    fn name(&self) -> &'static str {
        "access"
    }

    fn feasible(
        &self,
        job: &PendingJob,
        _chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        if node.view.access.admits(&job.owner) {
            Ok(())
        } else {
            Err("node is restricted to other users".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        let owner = |u: &str, g: &str| Owner {
            user: u.into(),
            group: g.into(),
        };
        let access = |users: &[&str], groups: &[&str]| NodeAccess {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        };
        let cases = [
            ("open node", access(&[], &[]), owner("bob", "users"), true),
            (
                "listed user",
                access(&["alice", "bob"], &[]),
                owner("bob", "users"),
                true,
            ),
            (
                "unlisted user",
                access(&["alice"], &[]),
                owner("bob", "users"),
                false,
            ),
            (
                "listed group",
                access(&["alice"], &["lab"]),
                owner("bob", "lab"),
                true,
            ),
            (
                "unlisted group",
                access(&[], &["lab"]),
                owner("bob", "users"),
                false,
            ),
        ];
        for (name, acl, who, want) in cases {
            let mut view = node("ws1", 2);
            view.access = acl;
            let mut j = job(1, nodes_req(vec![chunk(1, 1)]));
            j.owner = who;
            let got = Access
                .feasible(&j, &chunk(1, 1), &NodeState::current(&view))
                .is_ok();
            assert_eq!(got, want, "{name}");
        }
    }
}
