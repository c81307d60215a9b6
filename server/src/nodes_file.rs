//! Parser for `server_priv/nodes`, Torque's node list, plus Capstan's `site=`, `speed=`,
//! `dedicated=false` and `window=mon-fri@19:00-07:00,sat-sun` (see `scheduler::window`).
//!
//! Administrators describe nodes the Torque way (`node01 np=4 bigmem`), so the file stays the
//! place where nodes are defined; the database only keeps what changes at run time (offline,
//! note). Pure parsing, no I/O besides reading the file in [`load`].

use std::path::Path;

use crate::model::NodeDef;
use crate::scheduler::Window;

/// A line the server cannot accept.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NodesFileError {
    #[error("nodes file line {line}: {message}")]
    Invalid { line: usize, message: String },
    #[error("cannot read nodes file {path}: {message}")]
    Io { path: String, message: String },
}

/// Reads and parses the nodes file; a missing file means no nodes.
pub fn load(path: &Path) -> Result<Vec<NodeDef>, NodesFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(NodesFileError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Parses `name [np=N] [site=NAME] [speed=F] [dedicated=false] [window=W] [gpus=N]
/// [mom_service_port=N] [mom_manager_port=N]
/// [acl_users=U,...] [acl_groups=G,...] [key=value ...] [prop ...]` lines.
/// `#` starts a comment; Torque keys Capstan does not use (`TTL=`, `requestid=`, ...)
/// are accepted and ignored. A repeated name is an error.
pub fn parse(text: &str) -> Result<Vec<NodeDef>, NodesFileError> {
    let mut nodes: Vec<NodeDef> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let invalid = |message: String| NodesFileError::Invalid {
            line: line_no,
            message,
        };
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else { continue };
        if name.contains('=') {
            return Err(invalid(format!("expected a node name, found `{name}`")));
        }
        let mut node = NodeDef {
            name: name.to_string(),
            np: 1,
            site: "default".to_string(),
            speed: 1.0,
            dedicated: true,
            window: None,
            gpus: 0,
            properties: Vec::new(),
            access: Default::default(),
            mom_ports: crate::model::DEFAULT_MOM_PORTS,
        };
        for word in words {
            match word.split_once('=') {
                Some(("np", v)) => {
                    node.np = v
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid(format!("bad np value `{v}`")))?;
                }
                Some(("gpus", v)) => {
                    node.gpus = v
                        .parse()
                        .map_err(|_| invalid(format!("bad gpus value `{v}`")))?;
                }
                Some(("site", v)) => {
                    if v.is_empty() {
                        return Err(invalid("empty site".to_string()));
                    }
                    node.site = v.to_string();
                }
                Some(("speed", v)) => {
                    node.speed = v
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s > 0.0)
                        .ok_or_else(|| invalid(format!("bad speed value `{v}`")))?;
                }
                Some(("dedicated", v)) => {
                    node.dedicated = match v.to_ascii_lowercase().as_str() {
                        "true" | "yes" | "1" => true,
                        "false" | "no" | "0" => false,
                        _ => return Err(invalid(format!("bad dedicated value `{v}`"))),
                    };
                }
                Some(("window", v)) => {
                    node.window = Some(
                        Window::parse(v).map_err(|e| invalid(format!("bad window `{v}`: {e}")))?,
                    );
                }
                Some(("acl_users", v)) => node.access.users = name_list(v, "acl_users", &invalid)?,
                Some(("acl_groups", v)) => {
                    node.access.groups = name_list(v, "acl_groups", &invalid)?
                }
                Some(("mom_service_port", v)) => node.mom_ports.0 = port(v, &invalid)?,
                Some(("mom_manager_port", v)) => node.mom_ports.1 = port(v, &invalid)?,
                Some((_, _)) => {}
                None => node.properties.push(word.to_string()),
            }
        }
        if nodes.iter().any(|n| n.name == node.name) {
            return Err(invalid(format!("node `{}` listed twice", node.name)));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

/// `a,b,c` → names; an empty list or an empty name is a mistake worth stopping for, since it
/// would silently open or close a lent node.
fn name_list(
    value: &str,
    key: &str,
    invalid: &dyn Fn(String) -> NodesFileError,
) -> Result<Vec<String>, NodesFileError> {
    let names: Vec<String> = value.split(',').map(str::to_string).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(invalid(format!("bad {key} value `{value}`")));
    }
    Ok(names)
}

/// A TCP port number, not 0.
fn port(value: &str, invalid: &dyn Fn(String) -> NodesFileError) -> Result<u16, NodesFileError> {
    value
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(format!("bad port `{value}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_torque_lines_with_defaults() {
        let nodes = parse("# cluster\nvm np=2 fast ib\nvm2 np=4 gpus=2 bigmem ssd site=lab speed=1.5\n\nbare # comment\n").unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].name, "vm");
        assert_eq!(nodes[0].np, 2);
        assert_eq!(nodes[0].properties, vec!["fast", "ib"]);
        assert_eq!(nodes[0].site, "default");
        assert_eq!(nodes[1].gpus, 2);
        assert_eq!(nodes[1].site, "lab");
        assert_eq!(nodes[1].speed, 1.5);
        assert_eq!(nodes[1].properties, vec!["bigmem", "ssd"]);
        assert_eq!(nodes[2].np, 1);
        assert!(nodes[2].properties.is_empty());
    }

    #[test]
    fn rejects_bad_values_and_duplicates() {
        assert!(matches!(
            parse("a np=x"),
            Err(NodesFileError::Invalid { line: 1, .. })
        ));
        assert!(matches!(
            parse("a\na"),
            Err(NodesFileError::Invalid { line: 2, .. })
        ));
        assert!(parse("a np=0").is_err());
        assert!(parse("a speed=-1").is_err());
    }

    #[test]
    fn dedicated_and_window_table() {
        // (line, dedicated, window text, ok)
        let cases: &[(&str, bool, Option<&str>, bool)] = &[
            ("ws", true, None, true),
            ("ws dedicated=false", false, None, true),
            (
                "ws dedicated=no window=mon-fri@19:00-07:00,sat-sun",
                false,
                Some("mon-fri@19:00-07:00,sat-sun"),
                true,
            ),
            ("ws dedicated=maybe", true, None, false),
            ("ws window=someday", true, None, false),
        ];
        for (line, dedicated, window, ok) in cases {
            match parse(line) {
                Ok(nodes) => {
                    assert!(ok, "{line}");
                    assert_eq!(nodes[0].dedicated, *dedicated, "{line}");
                    assert_eq!(
                        nodes[0].window.as_ref().map(|w| w.to_string()).as_deref(),
                        *window,
                        "{line}"
                    );
                }
                Err(_) => assert!(!ok, "{line}"),
            }
        }
    }

    #[test]
    fn ignores_unused_torque_keys() {
        let nodes = parse("n1 np=2 TTL=x requestid=7").unwrap();
        assert_eq!(nodes[0].np, 2);
        assert!(nodes[0].properties.is_empty());
    }

    #[test]
    fn mom_ports_are_kept_for_pbsnodes() {
        let nodes = parse("n1\nn2 mom_service_port=16002 mom_manager_port=16003\n").unwrap();
        assert_eq!(nodes[0].mom_ports, crate::model::DEFAULT_MOM_PORTS);
        assert_eq!(nodes[1].mom_ports, (16002, 16003));
        for bad in [
            "mom_service_port=0",
            "mom_manager_port=x",
            "mom_service_port=70000",
        ] {
            assert!(parse(&format!("n1 {bad}")).is_err(), "{bad}");
        }
    }
}
