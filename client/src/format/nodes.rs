//! `pbsnodes` output (reference section 9): node blocks, `-l` / `-ln` lines, `-x`.
//!
//! Attributes are printed in the order the server sends them (Torque's order: state,
//! power_state, np, properties, ntype, jobs, status, note, mom_service_port,
//! mom_manager_port, gpus), so nothing here re-orders or knows attribute names beyond
//! `state` and `note`.

use super::{left, xml, Object};

/// `pbsnodes -a` / `pbsnodes NODE...`: the node name at column 0, `     NAME = VALUE` lines
/// (5 spaces, no wrapping), an empty line after each node. Like Torque, values starting
/// with `?` (unknown) are skipped.
pub fn blocks(nodes: &[Object]) -> String {
    let mut out = String::new();
    for n in nodes {
        out.push_str(&n.name);
        out.push('\n');
        for a in n.attrs.iter().filter(|a| !a.value.starts_with('?')) {
            out.push_str("     ");
            out.push_str(&a.name);
            if !a.resource.is_empty() {
                out.push('.');
                out.push_str(&a.resource);
            }
            out.push_str(" = ");
            out.push_str(&a.value);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// Which nodes `pbsnodes -l [STATE]` lists (Torque's `filterbystate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListState {
    /// No state given: down, offline or unknown nodes.
    Problem,
    Free,
    Offline,
    /// Down or unknown.
    Down,
    Reserve,
    JobExclusive,
    JobSharing,
    Busy,
    Unknown,
    TimeShared,
    /// Busy, job-exclusive or job-sharing.
    Active,
    All,
    /// Neither down, offline nor unknown.
    Up,
}

impl ListState {
    /// The state word accepted as `pbsnodes -l`'s first operand (case-insensitive).
    pub fn parse(word: &str) -> Option<ListState> {
        let w = word.to_ascii_lowercase();
        Some(match w.as_str() {
            "free" => ListState::Free,
            "offline" => ListState::Offline,
            "down" => ListState::Down,
            "reserve" => ListState::Reserve,
            "job-exclusive" => ListState::JobExclusive,
            "job-sharing" => ListState::JobSharing,
            "busy" => ListState::Busy,
            "state-unknown" => ListState::Unknown,
            "time-shared" => ListState::TimeShared,
            "active" => ListState::Active,
            "all" => ListState::All,
            "up" => ListState::Up,
            _ => return None,
        })
    }

    /// Whether a node whose `state` is `s` is listed (substring tests, as Torque does).
    pub fn matches(self, s: &str) -> bool {
        let has = |w: &str| s.contains(w);
        match self {
            ListState::Problem => has("down") || has("offline") || has("state-unknown"),
            ListState::Free => has("free"),
            ListState::Offline => has("offline"),
            ListState::Down => has("down") || has("state-unknown"),
            ListState::Reserve => has("reserve"),
            ListState::JobExclusive => has("job-exclusive"),
            ListState::JobSharing => has("job-sharing"),
            ListState::Busy => has("busy"),
            ListState::Unknown => has("state-unknown"),
            ListState::TimeShared => has("time-shared"),
            ListState::Active => has("busy") || has("job-exclusive") || has("job-sharing"),
            ListState::All => true,
            ListState::Up => !has("down") && !has("offline") && !has("state-unknown"),
        }
    }
}

/// `pbsnodes -l [STATE]` (`%-20.20s %s`) and, with `notes`, `-ln`: nodes with a note get
/// `%-20.20s %-26.26s %s`.
pub fn list(nodes: &[Object], which: ListState, notes: bool) -> String {
    let mut out = String::new();
    for n in nodes {
        let state = n.get("state").unwrap_or("");
        if !which.matches(state) {
            continue;
        }
        match n.get("note").filter(|_| notes) {
            Some(note) => out.push_str(&format!(
                "{} {} {note}\n",
                left(&n.name, 20, Some(20)),
                left(state, 26, Some(26))
            )),
            None => out.push_str(&format!("{} {state}\n", left(&n.name, 20, Some(20)))),
        }
    }
    out
}

/// `pbsnodes -x`: one line, no XML declaration.
pub fn xml(nodes: &[Object]) -> String {
    let mut out = String::from("<Data>");
    for n in nodes {
        out.push_str("<Node>");
        xml::element(&mut out, "name", &n.name);
        for a in &n.attrs {
            xml::element(&mut out, &a.name, &a.value);
        }
        out.push_str("</Node>");
    }
    out.push_str("</Data>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::Attribute as A;
    use super::*;

    const STATUS: &str = "opsys=linux,uname=Linux vm 6.18.44-fc-v669 #1 SMP PREEMPT_DYNAMIC @0 x86_64,sessions=2274,nsessions=1,nusers=1,idletime=126817,totmem=24684084kb,availmem=24268280kb,physmem=24684084kb,ncpus=2,loadave=3.44,gres=,netload=239732945,state=free,varattr= ,cpuclock=Fixed,version=6.1.3.h5,rectime=1795277301,jobs=";

    fn reference_nodes() -> Vec<Object> {
        vec![
            Object::new(
                "vm",
                vec![
                    A::text("state", "job-exclusive"),
                    A::text("power_state", "Running"),
                    A::text("np", "2"),
                    A::text("properties", "fast,ib"),
                    A::text("ntype", "cluster"),
                    A::text("jobs", "0-1/48.vm"),
                    A::text("status", STATUS),
                    A::text("note", "maint window"),
                    A::text("mom_service_port", "15002"),
                    A::text("mom_manager_port", "15003"),
                ],
            ),
            Object::new(
                "vm2",
                vec![
                    A::text("state", "down,offline,MOM-list-not-sent"),
                    A::text("power_state", "Running"),
                    A::text("np", "4"),
                    A::text("properties", "bigmem,ssd"),
                    A::text("ntype", "cluster"),
                    A::text("mom_service_port", "15002"),
                    A::text("mom_manager_port", "15003"),
                    A::text("gpus", "2"),
                ],
            ),
        ]
    }

    #[test]
    fn blocks_match_reference() {
        let expected = format!(
            "vm
     state = job-exclusive
     power_state = Running
     np = 2
     properties = fast,ib
     ntype = cluster
     jobs = 0-1/48.vm
     status = {STATUS}
     note = maint window
     mom_service_port = 15002
     mom_manager_port = 15003

vm2
     state = down,offline,MOM-list-not-sent
     power_state = Running
     np = 4
     properties = bigmem,ssd
     ntype = cluster
     mom_service_port = 15002
     mom_manager_port = 15003
     gpus = 2

"
        );
        assert_eq!(blocks(&reference_nodes()), expected);
    }

    #[test]
    fn list_formats_match_reference() {
        let mut nodes = reference_nodes();
        assert_eq!(
            list(&nodes, ListState::Problem, false),
            "vm2                  down,offline,MOM-list-not-sent\n"
        );
        nodes[0].attrs[0].value = "busy".into();
        assert_eq!(
            list(&nodes, ListState::parse("ALL").unwrap(), false),
            "vm                   busy\nvm2                  down,offline,MOM-list-not-sent\n"
        );
        nodes[0].attrs[0].value = "offline,busy".into();
        nodes[1].attrs.push(A::text("note", "disk failure"));
        assert_eq!(
            list(&nodes, ListState::Problem, true),
            "vm                   offline,busy               maint window\n\
vm2                  down,offline,MOM-list-not- disk failure\n"
        );
    }

    #[test]
    fn list_without_note_uses_the_short_form() {
        let nodes = reference_nodes();
        assert_eq!(
            list(&nodes[1..], ListState::Problem, true),
            "vm2                  down,offline,MOM-list-not-sent\n"
        );
    }

    #[test]
    fn xml_is_one_line_without_declaration() {
        let n = Object::new(
            "vm",
            vec![
                A::text("state", "busy"),
                A::text("np", "2"),
                A::text("note", "a&b"),
            ],
        );
        assert_eq!(
            xml(&[n]),
            "<Data><Node><name>vm</name><state>busy</state><np>2</np><note>a&amp;b</note></Node></Data>\n"
        );
    }
}
