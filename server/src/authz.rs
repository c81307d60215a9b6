//! Who may do what: Torque's server security attributes and its ACL matching.
//!
//! Why one module: every permission decision in Torque reduces to two questions, "what is
//! this caller's privilege" (`managers` / `operators`, lists of `user@host` patterns) and "does
//! this `user@host` match that ACL list" (`acl_users`, `acl_hosts`, `submit_hosts`, node
//! restrictions). Keeping both here means one spelling of the matching rules, unit-tested
//! without a server.
//!
//! The attributes live in the database (`server_kv`, key `server_attrs`, one JSON value) and
//! are changed only through `qmgr` (`manage.rs`).

use serde::{Deserialize, Serialize};

use crate::jobs::Caller;
use crate::model::{PbsError, Queue};
pub use capstan_proto::acl::{acl_group_match, acl_host_match, acl_user_match};
use capstan_proto::pbse;

/// Torque's privilege levels, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Privilege {
    User,
    Operator,
    Manager,
}

/// The server attributes that decide access. Everything here is set with `qmgr -c 'set
/// server ...'` and printed by `qmgr -c 'print server'` and `qstat -B -f`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerAttrs {
    /// `managers`: `user@host` patterns with full rights over jobs, queues, nodes and these
    /// attributes.
    pub managers: Vec<String>,
    /// `operators`: `user@host` patterns that may act on every job and node.
    pub operators: Vec<String>,
    /// `submit_hosts`: hosts (other than the server's own) whose authentication agent may
    /// assert a user. The agent's TLS certificate must name the host.
    pub submit_hosts: Vec<String>,
    /// `query_other_jobs`: whether ordinary users see other users' jobs. Torque's default is
    /// False.
    pub query_other_jobs: bool,
    /// `scheduling`: whether the scheduler starts jobs.
    pub scheduling: bool,
    /// `mail_from`, `mail_domain`, `mail_subject_fmt`, `mail_body_fmt`, `no_mail_force`.
    pub mail: crate::mail::MailSettings,
}

impl Default for ServerAttrs {
    fn default() -> ServerAttrs {
        ServerAttrs {
            managers: Vec::new(),
            operators: Vec::new(),
            submit_hosts: Vec::new(),
            query_other_jobs: false,
            scheduling: true,
            mail: Default::default(),
        }
    }
}

impl ServerAttrs {
    /// What `torque.setup` leaves: root on the server host is manager and operator. When the
    /// server runs as an ordinary user (a personal demo cluster), that user is too, so the
    /// person who started it can administer it.
    pub fn first_start(server_host: &str, server_user: Option<&str>) -> ServerAttrs {
        let mut admins = vec![format!("root@{server_host}")];
        if let Some(user) = server_user.filter(|u| *u != "root") {
            admins.push(format!("{user}@{server_host}"));
        }
        ServerAttrs {
            managers: admins.clone(),
            operators: admins,
            ..ServerAttrs::default()
        }
    }

    /// The caller's privilege: Manager if `managers` matches `user@host`, else Operator if
    /// `operators` does, else User.
    pub fn privilege(&self, caller: &Caller) -> Privilege {
        let who = caller.user_at_host();
        if acl_user_match(&self.managers, &who) {
            Privilege::Manager
        } else if acl_user_match(&self.operators, &who) {
            Privilege::Operator
        } else {
            Privilege::User
        }
    }

    /// Whether the caller is a manager or operator (Torque's `PERM_OPorMGR`).
    pub fn is_op_or_mgr(&self, caller: &Caller) -> bool {
        self.privilege(caller) >= Privilege::Operator
    }

    /// Whether `host` may assert users through its authentication agent.
    pub fn is_submit_host(&self, host: &str) -> bool {
        acl_host_match(&self.submit_hosts, host)
    }
}

/// A queue's submission ACLs, checked as Torque's `svr_chkque` does (host, then group, then
/// user) and refused in its words. The host is the one the caller's identity was established
/// on (the server's own, or a submit host's certificate), never a value from the request.
pub fn check_queue_acls(queue: &Queue, caller: &Caller) -> Result<(), PbsError> {
    let owner = caller.user_at_host();
    if queue.acl_host_enable && !acl_host_match(&queue.acl_hosts, &caller.host) {
        return Err(PbsError::new(
            pbse::BADHOST,
            format!(
                "host ACL rejected the submitting host: user {owner}, queue {}, host {}",
                queue.name, caller.host
            ),
            "",
        ));
    }
    if queue.acl_group_enable
        && !acl_group_match(&queue.acl_groups, std::slice::from_ref(&caller.group))
    {
        return Err(PbsError::new(
            pbse::PERM,
            format!(
                "group ACL is not satisfied: user {owner}, queue {}",
                queue.name
            ),
            "",
        ));
    }
    if queue.acl_user_enable && !acl_user_match(&queue.acl_users, &owner) {
        return Err(PbsError::new(
            pbse::PERM,
            format!(
                "user ACL rejected the submitting user: user {owner}, queue {}",
                queue.name
            ),
            "",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user: &str, host: &str) -> Caller {
        Caller {
            uid: 1000,
            user: user.into(),
            group: user.into(),
            host: host.into(),
        }
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn first_start_makes_root_and_the_server_user_managers() {
        let attrs = ServerAttrs::first_start("vm", Some("alice"));
        assert_eq!(attrs.managers, list(&["root@vm", "alice@vm"]));
        assert_eq!(attrs.privilege(&caller("alice", "vm")), Privilege::Manager);
        assert_eq!(attrs.privilege(&caller("root", "vm")), Privilege::Manager);
        // root elsewhere (a login node's root) is nobody special.
        assert_eq!(attrs.privilege(&caller("root", "login1")), Privilege::User);
        assert_eq!(attrs.privilege(&caller("bob", "vm")), Privilege::User);
        let root_only = ServerAttrs::first_start("vm", Some("root"));
        assert_eq!(root_only.managers, list(&["root@vm"]));
    }

    #[test]
    fn operators_rank_between_users_and_managers() {
        let attrs = ServerAttrs {
            managers: list(&["root@vm"]),
            operators: list(&["ops@*"]),
            ..ServerAttrs::default()
        };
        assert_eq!(
            attrs.privilege(&caller("ops", "login2")),
            Privilege::Operator
        );
        assert!(attrs.is_op_or_mgr(&caller("ops", "vm")));
        assert!(!attrs.is_op_or_mgr(&caller("bob", "vm")));
    }

    #[test]
    fn user_acl_follows_torque_rules() {
        let acl = list(&[
            "alice",
            "bob@login1",
            "*@trusted.lab",
            "carol@*.lab.example",
        ]);
        assert!(acl_user_match(&acl, "alice@anywhere"));
        assert!(acl_user_match(&acl, "bob@login1"));
        assert!(!acl_user_match(&acl, "bob@login2"));
        assert!(acl_user_match(&acl, "dave@trusted.lab"));
        assert!(acl_user_match(&acl, "carol@ws3.lab.example"));
        assert!(!acl_user_match(&acl, "carol@ws3.other.example"));
        assert!(!acl_user_match(&acl, "mallory@vm"));
        assert!(!acl_user_match(&[], "alice@vm"));
    }

    #[test]
    fn host_acl_matches_short_and_qualified_names_and_wildcards() {
        let acl = list(&["login1", "*.lab.example"]);
        assert!(acl_host_match(&acl, "login1"));
        assert!(acl_host_match(&acl, "LOGIN1.lab.example"));
        assert!(acl_host_match(&acl, "ws9.lab.example"));
        assert!(!acl_host_match(&acl, "login10"));
        assert!(!acl_host_match(&acl, "evil.example"));
    }

    #[test]
    fn queue_acls_refuse_in_torque_words() {
        let mut q = Queue::new("lab", 0);
        let alice = caller("alice", "vm");
        assert!(check_queue_acls(&q, &alice).is_ok());
        q.acl_user_enable = true;
        q.acl_users = list(&["bob"]);
        let e = check_queue_acls(&q, &alice).unwrap_err();
        assert_eq!(e.code, pbse::PERM);
        assert_eq!(
            e.detail,
            "user ACL rejected the submitting user: user alice@vm, queue lab"
        );
        q.acl_users.push("alice@vm".into());
        assert!(check_queue_acls(&q, &alice).is_ok());
        q.acl_group_enable = true;
        q.acl_groups = list(&["physics"]);
        let e = check_queue_acls(&q, &alice).unwrap_err();
        assert_eq!(
            e.detail,
            "group ACL is not satisfied: user alice@vm, queue lab"
        );
        q.acl_groups.push("alice".into());
        q.acl_host_enable = true;
        q.acl_hosts = list(&["login1"]);
        let e = check_queue_acls(&q, &alice).unwrap_err();
        assert_eq!(e.code, pbse::BADHOST);
        assert_eq!(
            e.detail,
            "host ACL rejected the submitting host: user alice@vm, queue lab, host vm"
        );
    }

    #[test]
    fn group_acl_matches_any_of_the_users_groups() {
        let acl = list(&["lab", "admins"]);
        assert!(acl_group_match(&acl, &list(&["users", "lab"])));
        assert!(!acl_group_match(&acl, &list(&["users"])));
    }
}
