//! Parser for `server_priv/nodes`, Torque's node list, plus Capstan's `site=`, `speed=`,
//! `dedicated=false` and `window=mon-fri@19:00-07:00,sat-sun` (see `scheduler::window`).
//!
//! Administrators describe nodes the Torque way (`node01 np=4 bigmem`), so the file stays the
//! place where nodes are defined; the database only keeps what changes at run time (offline,
//! note). `qmgr -c 'create node ...'`, `set node` and `delete node` change the file as
//! Torque's server does, but line by line ([`NodeLine`]): the administrator's comments, blank
//! lines and keys Capstan ignores stay. Pure, no I/O besides [`load`] and [`save`].

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

/// The most slots (or GPUs) one node may have: the server keeps a slot table per node, so a
/// typo of a few more digits must not cost it gigabytes.
pub const MAX_NP: u32 = 4096;

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
                        .filter(|n| (1..=MAX_NP).contains(n))
                        .ok_or_else(|| invalid(format!("bad np value `{v}` (1 to {MAX_NP})")))?;
                }
                Some(("gpus", v)) => {
                    node.gpus = v
                        .parse()
                        .ok()
                        .filter(|n| *n <= MAX_NP)
                        .ok_or_else(|| invalid(format!("bad gpus value `{v}`")))?;
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

/// One node's line of the file, as words: edited by qmgr without disturbing the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub name: String,
    /// `key=value` words, in order.
    keyed: Vec<(String, String)>,
    /// Bare words: the node's properties, in order.
    pub properties: Vec<String>,
    /// What followed `#`, kept.
    comment: Option<String>,
}

impl NodeLine {
    /// A new node's line.
    pub fn new(name: &str) -> NodeLine {
        NodeLine {
            name: name.to_string(),
            keyed: Vec::new(),
            properties: Vec::new(),
            comment: None,
        }
    }

    /// The line that defines a node, if `raw` is one.
    fn parse(raw: &str) -> Option<NodeLine> {
        let (code, comment) = match raw.split_once('#') {
            Some((code, comment)) => (code, Some(comment.to_string())),
            None => (raw, None),
        };
        let mut words = code.split_whitespace();
        let name = words.next()?.to_string();
        let mut line = NodeLine {
            name,
            keyed: Vec::new(),
            properties: Vec::new(),
            comment,
        };
        for word in words {
            match word.split_once('=') {
                Some((k, v)) => line.keyed.push((k.to_string(), v.to_string())),
                None => line.properties.push(word.to_string()),
            }
        }
        Some(line)
    }

    /// Sets `key=value`, in place of the key's first word when there is one (and without
    /// its repeats, which the parser would read last).
    pub fn set(&mut self, key: &str, value: &str) {
        match self.keyed.iter().position(|(k, _)| k == key) {
            Some(first) => {
                self.keyed[first].1 = value.to_string();
                let mut index = 0;
                self.keyed.retain(|(k, _)| {
                    index += 1;
                    index - 1 == first || k != key
                });
            }
            None => self.keyed.push((key.to_string(), value.to_string())),
        }
    }

    /// Removes `key` (its default applies again).
    pub fn unset(&mut self, key: &str) {
        self.keyed.retain(|(k, _)| k != key);
    }

    /// The line as written: name, `key=value` words, properties, comment.
    pub fn render(&self) -> String {
        let mut out = self.name.clone();
        for (k, v) in &self.keyed {
            out.push_str(&format!(" {k}={v}"));
        }
        for p in &self.properties {
            out.push(' ');
            out.push_str(p);
        }
        if let Some(comment) = &self.comment {
            out.push_str(" #");
            out.push_str(comment);
        }
        out
    }
}

/// The file's text with node `name`'s line changed by `edit` (`None`: no such line).
pub fn edit_node(text: &str, name: &str, edit: impl FnOnce(&mut NodeLine)) -> Option<String> {
    let mut edit = Some(edit);
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(
            |raw| match NodeLine::parse(raw).filter(|l| l.name == name && !found) {
                Some(mut line) => {
                    found = true;
                    if let Some(edit) = edit.take() {
                        edit(&mut line);
                    }
                    line.render()
                }
                None => raw.to_string(),
            },
        )
        .collect();
    found.then(|| joined(&lines))
}

/// The file's text without node `name`'s line (`None`: no such line).
pub fn remove_node(text: &str, name: &str) -> Option<String> {
    let before = text.lines().count();
    let lines: Vec<String> = text
        .lines()
        .filter(|raw| NodeLine::parse(raw).is_none_or(|l| l.name != name))
        .map(str::to_string)
        .collect();
    (lines.len() < before).then(|| joined(&lines))
}

/// The file's text with `line` added at the end.
pub fn add_node(text: &str, line: &NodeLine) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.push(line.render());
    joined(&lines)
}

fn joined(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Writes the file whole and durably: a new file beside it (with the old one's permissions;
/// a symlinked file is written where the link points), synced, renamed over it, and the
/// directory synced, so a crash leaves the old file or the new one.
pub fn save(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = &std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mode = std::fs::metadata(path).map_or(0o644, |m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o7777
    });
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".new");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
    fn node_lines_are_edited_in_place_keeping_the_rest() {
        let text = "# lab cluster\nvm np=2 fast ib TTL=2026-01-01T00:00:00Z # rack 3\n\nvm2 np=4\n";
        let edited = edit_node(text, "vm", |l| {
            l.set("np", "8");
            l.properties.retain(|p| p != "ib");
            l.properties.push("ssd".into());
        })
        .unwrap();
        assert_eq!(
            edited,
            "# lab cluster\nvm np=8 TTL=2026-01-01T00:00:00Z fast ssd # rack 3\n\nvm2 np=4\n"
        );
        assert_eq!(parse(&edited).unwrap()[0].np, 8);
        assert!(edit_node(text, "nosuch", |_| {}).is_none());
        let mut line = NodeLine::new("ws07");
        line.set("np", "8");
        line.set("site", "b");
        line.properties.push("gpu".into());
        let added = add_node(text, &line);
        assert!(
            added.ends_with("vm2 np=4\nws07 np=8 site=b gpu\n"),
            "{added}"
        );
        assert_eq!(parse(&added).unwrap()[2].site, "b");
        assert_eq!(
            remove_node(&added, "vm").unwrap(),
            "# lab cluster\n\nvm2 np=4\nws07 np=8 site=b gpu\n"
        );
        assert!(remove_node(text, "nosuch").is_none());
        // A name in a comment is not a node.
        assert!(edit_node("# vm np=2\n", "vm", |_| {}).is_none());
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
        assert!(parse("a np=4294967295").is_err());
        let mut line = NodeLine::parse("n1 np=2 fast np=2").unwrap();
        line.set("np", "8");
        assert_eq!(line.render(), "n1 np=8 fast");
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
