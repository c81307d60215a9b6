//! Renderers for `qstat` and `pbsnodes`, byte-compatible with Torque 6.1.3.
//!
//! Everything here is a pure function from a small domain type ([`Object`]) to a `String`,
//! so every format is tested against the samples in the compatibility reference without a
//! server. The binaries convert the wire types once ([`Object::from`]), call a renderer
//! and print the result.
//!
//! * [`wrap`]: Torque's `prt_attr` line wrapping used by every `-f` listing.
//! * [`jobs`]: `qstat` job listings (default, alternative `-a`..., full `-f`, XML `-x`).
//! * [`queues`]: `qstat -Q`, `-Q -f`, `-q`, `-B`, `-B -f`.
//! * [`nodes`]: `pbsnodes` blocks, `-l`/`-ln` lines and `-x`.
//! * [`table`]: a job listing as the server packs it, read in place.
//! * [`xml`]: element writing and escaping for the `-x` outputs.

pub mod jobs;
pub mod nodes;
pub mod queues;
pub mod table;
pub mod wrap;
pub mod xml;

use std::sync::Arc;

use capstan_proto::text::same_text;
use capstan_proto::v1 as pb;
use chrono::TimeZone;

/// How a value is rendered by the full listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Printed as is.
    Text,
    /// Epoch seconds: `ctime(3)` style in `qstat -f`, the number itself in XML.
    Time,
}

/// One Torque attribute: `name` or `name.resource` = `value`.
///
/// Name and resource are shared (`Arc<str>`): a job listing arrives as a table whose
/// columns name each attribute once, and thousands of rows point at the same names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: Arc<str>,
    /// Empty when the attribute has no resource part.
    pub resource: Arc<str>,
    pub value: String,
    pub kind: Kind,
}

impl Attribute {
    /// A plain text attribute.
    pub fn text(name: &str, value: &str) -> Self {
        Self::res(name, "", value)
    }

    /// A text attribute with a resource part (`Resource_List.walltime`).
    pub fn res(name: &str, resource: &str, value: &str) -> Self {
        Attribute {
            name: name.into(),
            resource: resource.into(),
            value: value.to_string(),
            kind: Kind::Text,
        }
    }

    /// A time attribute holding epoch seconds.
    pub fn time(name: &str, epoch: i64) -> Self {
        Attribute {
            name: name.into(),
            resource: "".into(),
            value: epoch.to_string(),
            kind: Kind::Time,
        }
    }
}

/// A job, queue, server or node: a name and its attributes in the server's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub name: String,
    pub attrs: Vec<Attribute>,
}

impl Object {
    pub fn new(name: &str, attrs: Vec<Attribute>) -> Self {
        Object {
            name: name.to_string(),
            attrs,
        }
    }

    /// The value of the first attribute `name` without a resource part.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_res(name, "")
    }

    /// The value of the first attribute `name.resource`.
    pub fn get_res(&self, name: &str, resource: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| &*a.name == name && same_text(&a.resource, resource))
            .map(|a| a.value.as_str())
    }
}

/// A job's attributes, read in place: an [`Object`], or a [`table::Row`] of a reply, which
/// the default listing of thousands of jobs prints from without copying a value.
pub trait AttrView {
    /// The job id.
    fn name(&self) -> &str;

    /// The value of the first attribute `name.resource` (`resource` empty for none).
    fn get_res(&self, name: &str, resource: &str) -> Option<&str>;

    /// The value of the first attribute `name` without a resource part.
    fn get(&self, name: &str) -> Option<&str> {
        self.get_res(name, "")
    }
}

impl AttrView for Object {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_res(&self, name: &str, resource: &str) -> Option<&str> {
        Object::get_res(self, name, resource)
    }
}

impl From<pb::StatObject> for Object {
    fn from(o: pb::StatObject) -> Self {
        Object {
            name: o.name,
            attrs: o.attrs.into_iter().map(Attribute::from).collect(),
        }
    }
}

impl From<pb::Attr> for Attribute {
    fn from(a: pb::Attr) -> Self {
        Attribute {
            kind: kind_from_wire(a.kind),
            name: a.name.into(),
            resource: a.resource.into(),
            value: a.value,
        }
    }
}

fn kind_from_wire(kind: i32) -> Kind {
    if kind == pb::AttrKind::Time as i32 {
        Kind::Time
    } else {
        Kind::Text
    }
}

/// A server error as the commands print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// PBSE number.
    pub code: i32,
    /// What Torque prints after `MSG=`; may be empty.
    pub detail: String,
    /// The job, queue or node the error is about.
    pub object: String,
}

impl From<pb::PbsError> for ServerError {
    fn from(e: pb::PbsError) -> Self {
        ServerError {
            code: e.code,
            detail: e.detail,
            object: e.object,
        }
    }
}

impl ServerError {
    /// Torque's `pbs_geterrmsg()` text: the PBSE text, plus ` MSG=detail` when the server
    /// gave one. The PBSE texts keep their trailing spaces, which is where Torque's double
    /// space before `MSG=` comes from (`Unknown node  MSG=cannot locate specified node`).
    pub fn message(&self) -> String {
        self.full_message().trim_end().to_string()
    }

    /// [`ServerError::message`] with the PBSE text's trailing space kept when there is no
    /// `MSG=`, as qmgr prints it (`qmgr obj=x svr=default: Unknown node `).
    pub fn full_message(&self) -> String {
        pbse_message(self.code, &self.detail)
    }

    /// The process exit status Torque uses for this error.
    pub fn exit_code(&self) -> i32 {
        capstan_proto::pbse::exit_code(self.code)
    }
}

/// Torque's `TEXT[ MSG=DETAIL]` for PBSE `code` (the text's trailing space kept when there
/// is no detail): [`ServerError::full_message`] for a code and detail at hand.
pub fn pbse_message(code: i32, detail: &str) -> String {
    let text = capstan_proto::pbse::text(code);
    if detail.is_empty() {
        text.to_string()
    } else {
        format!("{text} MSG={detail}")
    }
}

/// `ctime(3)` without the newline: `Sat Nov 21 16:08:23 2026` (day padded with a space).
pub fn ctime<Tz: TimeZone>(epoch: i64, tz: &Tz) -> Option<String>
where
    Tz::Offset: std::fmt::Display,
{
    let t = tz.timestamp_opt(epoch, 0).single()?;
    Some(t.format("%a %b %e %H:%M:%S %Y").to_string())
}

/// C `printf("%-W.Ps")`: cut to `precision` characters, pad on the right to `width`.
pub(crate) fn left(s: &str, width: usize, precision: Option<usize>) -> String {
    let mut out = String::new();
    push_padded(&mut out, cut(s, precision), width, false);
    out
}

/// C `printf("%W.Ps")`: cut to `precision` characters, pad on the left to `width`.
pub(crate) fn right(s: &str, width: usize, precision: Option<usize>) -> String {
    let mut out = String::new();
    push_padded(&mut out, cut(s, precision), width, true);
    out
}

/// C `printf("%-Ws")` (or `%Ws` when `right_align`) appended to `out`, without building a
/// string per column: the default job listing writes thousands of rows this way.
pub(crate) fn push_padded(out: &mut String, s: &str, width: usize, right_align: bool) {
    let pad = width.saturating_sub(s.chars().count());
    if right_align {
        push_spaces(out, pad);
        out.push_str(s);
    } else {
        out.push_str(s);
        push_spaces(out, pad);
    }
}

fn push_spaces(out: &mut String, mut n: usize) {
    const SPACES: &str = "                                ";
    while n > 0 {
        let k = n.min(SPACES.len());
        out.push_str(&SPACES[..k]);
        n -= k;
    }
}

/// The first `precision` characters of `s` (all of it for `None`).
pub(crate) fn cut(s: &str, precision: Option<usize>) -> &str {
    match precision {
        Some(p) => match s.char_indices().nth(p) {
            Some((i, _)) => &s[..i],
            None => s,
        },
        None => s,
    }
}

/// Prints a rendered block to stdout. A closed pipe (`qstat | head`) is not an error worth a
/// message, so write errors are ignored, as Torque's `printf` ignores them.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printf_helpers_pad_and_cut() {
        assert_eq!(left("abc", 5, None), "abc  ");
        assert_eq!(left("abcdef", 3, Some(3)), "abc");
        assert_eq!(right(" -- ", 9, Some(9)), "      -- ");
        assert_eq!(right("abcdef", 2, None), "abcdef");
        assert_eq!(left("x", 40, None), format!("x{}", " ".repeat(39)));
    }

    #[test]
    fn ctime_pads_the_day_with_a_space() {
        // 2026-11-01 16:08:23 UTC
        assert_eq!(
            ctime(1_793_549_303, &chrono::Utc).as_deref(),
            Some("Sun Nov  1 16:08:23 2026")
        );
    }

    #[test]
    fn error_messages_keep_torques_double_space() {
        let e = ServerError {
            code: capstan_proto::pbse::UNKNODE,
            detail: "cannot locate specified node".into(),
            object: "x".into(),
        };
        assert_eq!(
            e.message(),
            "Unknown node  MSG=cannot locate specified node"
        );
        let e = ServerError {
            code: capstan_proto::pbse::UNKJOBID,
            detail: String::new(),
            object: "999.vm".into(),
        };
        assert_eq!(e.message(), "Unknown Job Id Error");
        assert_eq!(e.exit_code(), 153);
    }
}
