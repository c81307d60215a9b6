//! Torque's resource-list grammar (`-l name=value,...`), validated the way Torque's server does.
//!
//! Pure functions, no I/O. The API layer calls [`normalize`] for every `Resource_List.*`
//! attribute of a submission (errors become PBSE codes there), and [`slot_request`] turns the
//! normalised list into the placement request the scheduler works on.
//!
//! Each resource has a value *kind* (duration, size, integer, node spec, ...) that decides how
//! it is checked and how it is stored, mirroring Torque's per-type `decode_*`/`encode_*`
//! functions: durations are stored as `HH:MM:SS` (`encode_time`), sizes as number + lower-case
//! unit + `b`/`w` (`from_size`: `512MB` → `512mb`, `1024` → `1024b`), integers without leading
//! zeros (`encode_l`), and node specs verbatim. Where Torque is laxer than necessary (it ignores
//! garbage after a size's unit, accepts hex sizes through `strtol`, or `walltime=:`) we refuse:
//! a typo must not silently become a different request.

use capstan_proto::resources::{kind_of, ResourceKind as Kind};
pub use capstan_proto::resources::{parse_duration, parse_size, parse_size_kb};
use std::collections::BTreeMap;

/// Why a resource was refused; the API layer maps each to Torque's PBSE error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// PBSE_UNKRESC (15037): `Unknown resource type  Resource_List.foo`.
    #[error("Unknown resource type  Resource_List.{0}")]
    Unknown(String),
    /// PBSE_BADATVAL (15016): `Illegal attribute or resource value for Resource_List.walltime`.
    #[error("Illegal attribute or resource value for Resource_List.{0}")]
    IllegalValue(String),
    /// PBSE_SYNTAX (15131) with `MSG=Invalid Syntax`: a malformed `nodes` spec such as `abc:ppn=x`.
    #[error("Command syntax invalid MSG=Invalid Syntax")]
    Syntax,
}

/// One chunk of a node request: `count` nodes (or the named `host`), each giving `ppn` slots,
/// each having all `properties`, each with at least `mem_kb` memory if given.
///
/// `Hash` lets the scheduler remember, within one pass, which requests already failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chunk {
    pub count: u32,
    pub host: Option<String>,
    pub ppn: u32,
    pub properties: Vec<String>,
    pub mem_kb: Option<u64>,
}

impl Chunk {
    /// `count` units of `ppn` slots each, asking for no host, property or memory.
    pub fn new(count: u32, ppn: u32) -> Chunk {
        Chunk {
            count,
            host: None,
            ppn,
            properties: Vec::new(),
            mem_kb: None,
        }
    }
}

/// What a job asks of the nodes: a list of chunks (`nodes=2:ppn=2+node05`, `select=2:ncpus=4`,
/// `procs=8` as one chunk of 8 one-slot units that may share nodes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SlotRequest {
    pub chunks: Vec<Chunk>,
    /// `procs=N`: N slots anywhere, not bound to a node count.
    pub procs: bool,
}

impl SlotRequest {
    /// `Resource_List.nodect`: the number of nodes requested (sum of chunk counts; for
    /// `procs=N` that is N, the most nodes the job can touch).
    pub fn nodect(&self) -> u32 {
        self.chunks
            .iter()
            .fold(0u32, |acc, c| acc.saturating_add(c.count))
    }
    /// Total slots (TSK column, PBS_NP).
    pub fn total_slots(&self) -> u32 {
        self.chunks.iter().fold(0u32, |acc, c| {
            acc.saturating_add(c.count.saturating_mul(c.ppn))
        })
    }
}

/// Validates one resource and returns its normalised value as Torque stores it
/// (`walltime=10:00` → `00:10:00`, `cput` likewise; `mem=512mb` kept, `mem=512MB` → `512mb`,
/// `mem=1024` → `1024b` as Torque's `from_size` prints it).
///
/// Errors: unknown name → [`ResourceError::Unknown`]; a malformed `nodes` spec →
/// [`ResourceError::Syntax`]; any other bad value → [`ResourceError::IllegalValue`].
pub fn normalize(name: &str, value: &str) -> Result<String, ResourceError> {
    let kind = kind_of(name).ok_or_else(|| ResourceError::Unknown(name.to_string()))?;
    let illegal = || ResourceError::IllegalValue(name.to_string());
    match kind {
        Kind::Duration => parse_duration(value)
            .map(format_duration)
            .ok_or_else(illegal),
        Kind::Size => parse_size(value).map(|s| s.canonical()).ok_or_else(illegal),
        Kind::Count => parse_count(value)
            .map(|n| n.to_string())
            .ok_or_else(illegal),
        Kind::Signed => parse_signed(value)
            .map(|n| n.to_string())
            .ok_or_else(illegal),
        Kind::Nodes => parse_nodes(value).map(|_| value.to_string()),
        Kind::Select => parse_select(value)
            .map(|_| value.to_string())
            .ok_or_else(illegal),
        Kind::Place => {
            if valid_place(value) {
                Ok(value.to_string())
            } else {
                Err(illegal())
            }
        }
        Kind::Text => {
            if value.is_empty() || value.chars().any(char::is_control) {
                Err(illegal())
            } else {
                Ok(value.to_string())
            }
        }
    }
}

/// Derives the placement request from a job's (normalised) Resource_List.
///
/// Precedence follows what decides placement in Torque: `nodes`, then `procs`, then PBS Pro's
/// `select`, then `ncpus` (slots on one node), else one slot on one node. Values are re-checked,
/// so a list read back from storage that no longer parses is refused rather than guessed at.
pub fn slot_request(resources: &BTreeMap<String, String>) -> Result<SlotRequest, ResourceError> {
    let illegal = |name: &str| ResourceError::IllegalValue(name.to_string());
    if let Some(spec) = resources.get("nodes") {
        return Ok(SlotRequest {
            chunks: parse_nodes(spec)?,
            procs: false,
        });
    }
    if let Some(v) = resources.get("procs") {
        let n = parse_count(v)
            .filter(|n| *n > 0)
            .ok_or_else(|| illegal("procs"))?;
        return Ok(SlotRequest {
            chunks: vec![Chunk::new(n, 1)],
            procs: true,
        });
    }
    if let Some(v) = resources.get("select") {
        return Ok(SlotRequest {
            chunks: parse_select(v).ok_or_else(|| illegal("select"))?,
            procs: false,
        });
    }
    let ppn = match resources.get("ncpus") {
        Some(v) => parse_count(v)
            .filter(|n| *n > 0)
            .ok_or_else(|| illegal("ncpus"))?,
        None => 1,
    };
    Ok(SlotRequest {
        chunks: vec![Chunk::new(1, ppn)],
        procs: false,
    })
}

/// Seconds → `HH:MM:SS` (hours may exceed 99).
pub fn format_duration(secs: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// A non-negative decimal integer that fits in 32 bits (counts of nodes, processors, tasks).
fn parse_count(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A decimal integer with optional sign (`nice=-5`).
fn parse_signed(text: &str) -> Option<i64> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Host names and property names: `[A-Za-z][A-Za-z0-9._-]*`.
fn is_name(word: &str) -> bool {
    let mut bytes = word.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A positive count inside a spec (`ppn=2`, the leading `2` of `2:ppn=2`).
fn positive(text: &str) -> Option<u32> {
    parse_count(text).filter(|n| *n > 0)
}

/// Torque's node spec: `spec[+spec...]`, each `N` or `HOST`, then `:ppn=N`, `:gpus=N` or
/// `:PROPERTY` items; a trailing `#shared`/`#excl` access suffix is accepted and ignored.
/// Any deviation is PBSE_SYNTAX, as Torque's server answers.
fn parse_nodes(spec: &str) -> Result<Vec<Chunk>, ResourceError> {
    let body = match spec.split_once('#') {
        Some((body, access)) if is_name(access) => body,
        Some(_) => return Err(ResourceError::Syntax),
        None => spec,
    };
    body.split('+').map(parse_node_chunk).collect()
}

/// Words that follow `gpus=N` in a Torque node spec to pick the GPU compute mode.
const GPU_MODES: &[&str] = &[
    "exclusive_thread",
    "exclusive_process",
    "exclusive",
    "default",
    "shared",
    "reseterr",
];

fn parse_node_chunk(text: &str) -> Result<Chunk, ResourceError> {
    let mut items = text.split(':');
    let head = items.next().unwrap_or_default();
    let (count, host) = if head.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
        (positive(head).ok_or(ResourceError::Syntax)?, None)
    } else if is_name(head) {
        (1, Some(head.to_string()))
    } else {
        return Err(ResourceError::Syntax);
    };
    let mut chunk = Chunk {
        host,
        ..Chunk::new(count, 1)
    };
    let mut seen_ppn = false;
    let mut seen_gpus = false;
    for item in items {
        match item.split_once('=') {
            Some(("ppn", n)) if !seen_ppn => {
                chunk.ppn = positive(n).ok_or(ResourceError::Syntax)?;
                seen_ppn = true;
            }
            // GPUs and MICs are not scheduled yet; the value must still be well formed.
            Some(("gpus" | "mics", n)) => {
                parse_count(n).ok_or(ResourceError::Syntax)?;
                seen_gpus |= item.starts_with("gpus");
            }
            Some(_) => return Err(ResourceError::Syntax),
            // Torque's GPU compute modes (`gpus=1:exclusive_process`) are not properties.
            None if seen_gpus && GPU_MODES.contains(&item) => {}
            None if is_name(item) => chunk.properties.push(item.to_string()),
            None => return Err(ResourceError::Syntax),
        }
    }
    Ok(chunk)
}

/// `PBS_NUM_NODES` and `PBS_NUM_PPN` as Torque's MOM reads them from a `nodes` request
/// (get_num_nodes_ppn): each `+` part counts its leading number, or one for a host name;
/// the ppn is the first `ppn=` anywhere in the request, else 1. `nodes=2:ppn=2+1:ppn=1` is
/// 3 nodes of 2. None for a part that is neither, or a count past `i64`.
pub fn num_nodes_ppn(nodes: &str) -> Option<(u64, u64)> {
    let leading = |text: &str| -> Option<u64> {
        let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        text[..digits]
            .parse()
            .ok()
            .filter(|n| *n <= i64::MAX as u64)
    };
    let mut count: u64 = 0;
    for part in nodes.split('+') {
        let in_part = if part.starts_with(|c: char| c.is_ascii_digit()) {
            leading(part)?
        } else if part.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            1
        } else {
            return None;
        };
        count = count.checked_add(in_part)?;
    }
    let ppn = match nodes.find("ppn=") {
        Some(at) => leading(&nodes[at + 4..])?,
        None => 1,
    };
    Some((count, ppn))
}

/// PBS Pro select: `[N:]res=val[:res=val...]` chunks joined by `+`. Understood resources:
/// `ncpus` (slots per node), `mem` (memory per node), `host`; counts such as `mpiprocs`,
/// `ompthreads`, `ngpus` and sizes such as `vmem` are checked and otherwise ignored;
/// `NAME=true` asks for a node property, as PBS Pro's boolean resources do.
fn parse_select(spec: &str) -> Option<Vec<Chunk>> {
    spec.split('+').map(parse_select_chunk).collect()
}

fn parse_select_chunk(text: &str) -> Option<Chunk> {
    let mut items = text.split(':').peekable();
    let count = match items.peek() {
        Some(first) if !first.contains('=') => {
            let n = positive(first)?;
            items.next();
            n
        }
        _ => 1,
    };
    let mut chunk = Chunk::new(count, 1);
    let mut any = false;
    for item in items {
        let (key, value) = item.split_once('=')?;
        match key {
            "ncpus" => chunk.ppn = positive(value)?,
            "mem" => chunk.mem_kb = Some(parse_size_kb(value)?),
            "host" | "vnode" if is_name(value) => chunk.host = Some(value.to_string()),
            "vmem" | "pmem" | "pvmem" => {
                parse_size(value)?;
            }
            "mpiprocs" | "ompthreads" | "ngpus" | "nmics" => {
                parse_count(value)?;
            }
            prop if is_name(prop) && value.eq_ignore_ascii_case("true") => {
                chunk.properties.push(prop.to_string())
            }
            _ => return None,
        }
        any = true;
    }
    // PBS Pro requires at least one resource in a chunk (`select=2` alone is an error).
    any.then_some(chunk)
}

/// PBS Pro place: up to one arrangement (`free`, `pack`, `scatter`, `vscatter`), one sharing
/// (`excl`, `shared`, `exclhost`) and one grouping (`group=RESOURCE`), joined by `:`.
fn valid_place(value: &str) -> bool {
    let (mut arrangement, mut sharing, mut grouping) = (false, false, false);
    for item in value.split(':') {
        let slot = match item {
            "free" | "pack" | "scatter" | "vscatter" => &mut arrangement,
            "excl" | "shared" | "exclhost" => &mut sharing,
            _ => match item.strip_prefix("group=") {
                Some(resource) if is_name(resource) => &mut grouping,
                _ => return false,
            },
        };
        if std::mem::replace(slot, true) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    /// Torque's own cases for get_num_nodes_ppn (src/resmom/test/start_exec).
    #[test]
    fn nodes_and_ppn_are_counted_as_torques_mom_counts_them() {
        use super::num_nodes_ppn;
        for (nodes, expected) in [
            ("a", Some((1, 1))),
            ("20:ppn=10", Some((20, 10))),
            ("myhost:ppn=24", Some((1, 24))),
            ("myhost:ppn=24+myhost2+myhost3", Some((3, 24))),
            ("myhost:ppn=24+100+200", Some((301, 24))),
            ("500:ppn=48+100+200+myhost", Some((801, 48))),
            ("500:ppn=29+myhost1+100+200+myhost2", Some((802, 29))),
            ("2:ppn=2+1:ppn=1", Some((3, 2))),
            ("2:bigmem:ppn=1", Some((2, 1))),
            ("!:ppn=10", None),
            ("20:ppn=10+*", None),
            ("9223372036854775808", None),
            ("1:ppn=9223372036854775808", None),
        ] {
            assert_eq!(num_nodes_ppn(nodes), expected, "{nodes}");
        }
    }

    use super::*;

    fn unknown(name: &str) -> Result<String, ResourceError> {
        Err(ResourceError::Unknown(name.to_string()))
    }
    fn illegal(name: &str) -> Result<String, ResourceError> {
        Err(ResourceError::IllegalValue(name.to_string()))
    }
    fn ok(v: &str) -> Result<String, ResourceError> {
        Ok(v.to_string())
    }

    #[test]
    fn normalize_table() {
        let cases: &[(&str, &str, Result<String, ResourceError>)] = &[
            // Durations (reference 2.2 / 2.4).
            ("walltime", "00:10:00", ok("00:10:00")),
            ("walltime", "10:00", ok("00:10:00")),
            ("walltime", "1:00:00", ok("01:00:00")),
            ("walltime", "3600", ok("01:00:00")),
            ("walltime", "90", ok("00:01:30")),
            ("walltime", "100:00:00", ok("100:00:00")),
            ("walltime", "0:0:59.5", ok("00:01:00")),
            ("walltime", "abc", illegal("walltime")),
            ("walltime", "1:2:3:4:5", illegal("walltime")),
            ("walltime", "1:2:3:4", illegal("walltime")),
            ("walltime", "", illegal("walltime")),
            ("walltime", ":", illegal("walltime")),
            ("walltime", "-5", illegal("walltime")),
            ("walltime", "10:00 ", illegal("walltime")),
            ("cput", "1:00:00", ok("01:00:00")),
            ("cput", "30", ok("00:00:30")),
            ("pcput", "5:00", ok("00:05:00")),
            // Sizes.
            ("mem", "512mb", ok("512mb")),
            ("mem", "512MB", ok("512mb")),
            ("mem", "2gb", ok("2gb")),
            ("mem", "1024", ok("1024b")),
            ("mem", "100kb", ok("100kb")),
            ("mem", "10w", ok("10w")),
            ("mem", "4kw", ok("4kw")),
            ("mem", "1t", ok("1tb")),
            ("mem", "1pb", ok("1pb")),
            ("mem", "12zz", illegal("mem")),
            ("mem", "mb", illegal("mem")),
            ("mem", "12mbx", illegal("mem")),
            ("mem", "12bw", illegal("mem")),
            ("mem", "-1mb", illegal("mem")),
            ("mem", "0x10", illegal("mem")),
            ("vmem", "2gb", ok("2gb")),
            ("pmem", "1gb", ok("1gb")),
            ("pvmem", "1gb", ok("1gb")),
            ("file", "1gb", ok("1gb")),
            // Integers.
            ("procs", "2", ok("2")),
            ("procs", "02", ok("2")),
            ("procs", "x", illegal("procs")),
            ("procs", "-1", illegal("procs")),
            ("ncpus", "4", ok("4")),
            ("nodect", "1", ok("1")),
            ("nice", "-5", ok("-5")),
            ("nice", "+3", ok("3")),
            ("nice", "x", illegal("nice")),
            // Node specs: stored verbatim, bad ones are syntax errors.
            ("nodes", "1", ok("1")),
            ("nodes", "1:ppn=2", ok("1:ppn=2")),
            ("nodes", "vm:ppn=1", ok("vm:ppn=1")),
            ("nodes", "vm", ok("vm")),
            ("nodes", "node01+node02:ppn=1", ok("node01+node02:ppn=1")),
            ("nodes", "2:bigmem:ppn=1", ok("2:bigmem:ppn=1")),
            ("nodes", "1:ppn=2:fast", ok("1:ppn=2:fast")),
            ("nodes", "1:ppn=1:gpus=2", ok("1:ppn=1:gpus=2")),
            ("nodes", "2:ppn=1#excl", ok("2:ppn=1#excl")),
            ("nodes", "abc:ppn=x", Err(ResourceError::Syntax)),
            ("nodes", "1:ppn=x", Err(ResourceError::Syntax)),
            ("nodes", "2x:ppn=1", Err(ResourceError::Syntax)),
            ("nodes", "0:ppn=1", Err(ResourceError::Syntax)),
            ("nodes", "1:ppn=0", Err(ResourceError::Syntax)),
            ("nodes", "1:ppn=1:ppn=2", Err(ResourceError::Syntax)),
            ("nodes", "1:foo=3", Err(ResourceError::Syntax)),
            ("nodes", "1+", Err(ResourceError::Syntax)),
            ("nodes", "", Err(ResourceError::Syntax)),
            ("nodes", "1::ppn=1", Err(ResourceError::Syntax)),
            ("nodes", "-1", Err(ResourceError::Syntax)),
            // PBS Pro select/place.
            ("select", "2:ncpus=4", ok("2:ncpus=4")),
            (
                "select",
                "1:ncpus=2:mem=4gb+2:ncpus=1",
                ok("1:ncpus=2:mem=4gb+2:ncpus=1"),
            ),
            ("select", "ncpus=2", ok("ncpus=2")),
            ("select", "2", illegal("select")),
            ("select", "2:ncpus=x", illegal("select")),
            ("select", "2:mem=12zz", illegal("select")),
            ("select", "2:bogus", illegal("select")),
            ("place", "scatter", ok("scatter")),
            ("place", "pack", ok("pack")),
            ("place", "free", ok("free")),
            ("place", "group=site", ok("group=site")),
            (
                "place",
                "scatter:excl:group=site",
                ok("scatter:excl:group=site"),
            ),
            ("place", "pack:scatter", illegal("place")),
            ("place", "sideways", illegal("place")),
            // Text resources.
            ("site", "labA", ok("labA")),
            ("gres", "matlab:1", ok("matlab:1")),
            ("naccesspolicy", "singlejob", ok("singlejob")),
            ("qos", "high", ok("high")),
            ("partition", "labA", ok("labA")),
            ("tpn", "4", ok("4")),
            ("mppwidth", "x", illegal("mppwidth")),
            ("pf", "1gb", ok("1gb")),
            ("software", "abaqus", ok("abaqus")),
            ("epilogue", "/bin/true", ok("/bin/true")),
            ("gres", "", illegal("gres")),
            // Unknown names.
            ("foo", "bar", unknown("foo")),
            ("ppn", "2", unknown("ppn")),
            ("procct", "2", unknown("procct")),
            ("Walltime", "1:00", unknown("Walltime")),
        ];
        for (name, value, want) in cases {
            assert_eq!(&normalize(name, value), want, "{name}={value}");
        }
    }

    #[test]
    fn error_messages_are_torques() {
        let msg = |r: Result<String, ResourceError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(normalize("walltime", "abc")),
            "Illegal attribute or resource value for Resource_List.walltime"
        );
        assert_eq!(
            msg(normalize("foo", "bar")),
            "Unknown resource type  Resource_List.foo"
        );
        assert_eq!(
            msg(normalize("nodes", "abc:ppn=x")),
            "Command syntax invalid MSG=Invalid Syntax"
        );
    }

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("0", Some(0)),
            ("59", Some(59)),
            ("1:00", Some(60)),
            ("10:00", Some(600)),
            ("1:00:00", Some(3600)),
            ("1::5", Some(3605)),
            ("100:00:00", Some(360_000)),
            ("1.4", Some(1)),
            ("1.5", Some(2)),
            ("1.", None),
            ("1.x", None),
            ("", None),
            ("abc", None),
            ("1:2:3:4", None),
            ("99999999999999999999", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), *want, "{text}");
        }
        let formats: &[(u64, &str)] = &[
            (0, "00:00:00"),
            (59, "00:00:59"),
            (600, "00:10:00"),
            (3661, "01:01:01"),
            (360_000, "100:00:00"),
        ];
        for (secs, want) in formats {
            assert_eq!(format_duration(*secs), *want);
        }
    }

    #[test]
    fn sizes_in_kb() {
        let cases: &[(&str, Option<u64>)] = &[
            ("1024", Some(1)),
            ("1", Some(1)),
            ("1b", Some(1)),
            ("2048b", Some(2)),
            ("100kb", Some(100)),
            ("100KB", Some(100)),
            ("512mb", Some(512 * 1024)),
            ("2gb", Some(2 * 1024 * 1024)),
            ("2g", Some(2 * 1024 * 1024)),
            ("1tb", Some(1 << 30)),
            ("1pb", Some(1 << 40)),
            ("128w", Some(1)),
            ("1kw", Some(8)),
            ("0", Some(0)),
            ("12zz", None),
            ("", None),
            ("kb", None),
            ("18446744073709551615pb", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size_kb(text), *want, "{text}");
        }
    }

    fn chunk(count: u32, host: Option<&str>, ppn: u32, props: &[&str]) -> Chunk {
        Chunk {
            count,
            host: host.map(str::to_string),
            ppn,
            properties: props.iter().map(|p| p.to_string()).collect(),
            mem_kb: None,
        }
    }

    fn list(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn slot_requests() {
        let nodes = |chunks: Vec<Chunk>| SlotRequest {
            chunks,
            procs: false,
        };
        /// (resource list, expected request, nodect, total slots)
        type Case<'a> = (Vec<(&'a str, &'a str)>, SlotRequest, u32, u32);
        let cases: Vec<Case<'_>> = vec![
            (vec![], nodes(vec![chunk(1, None, 1, &[])]), 1, 1),
            (
                vec![("nodes", "1"), ("walltime", "01:00:00")],
                nodes(vec![chunk(1, None, 1, &[])]),
                1,
                1,
            ),
            (
                vec![("nodes", "1:ppn=2")],
                nodes(vec![chunk(1, None, 2, &[])]),
                1,
                2,
            ),
            (
                vec![("nodes", "2:ppn=4")],
                nodes(vec![chunk(2, None, 4, &[])]),
                2,
                8,
            ),
            (
                vec![("nodes", "vm:ppn=1")],
                nodes(vec![chunk(1, Some("vm"), 1, &[])]),
                1,
                1,
            ),
            (
                vec![("nodes", "node01+node02:ppn=2")],
                nodes(vec![
                    chunk(1, Some("node01"), 1, &[]),
                    chunk(1, Some("node02"), 2, &[]),
                ]),
                2,
                3,
            ),
            (
                vec![("nodes", "2:bigmem:ppn=1+1:ppn=2:fast")],
                nodes(vec![
                    chunk(2, None, 1, &["bigmem"]),
                    chunk(1, None, 2, &["fast"]),
                ]),
                3,
                4,
            ),
            // GPU mode words are not properties; other words before gpus= are.
            (
                vec![("nodes", "1:ppn=2:gpus=1:exclusive_process+1:shared")],
                nodes(vec![chunk(1, None, 2, &[]), chunk(1, None, 1, &["shared"])]),
                2,
                3,
            ),
            // nodes wins over procs/select/ncpus.
            (
                vec![("nodes", "1:ppn=2"), ("procs", "8"), ("ncpus", "4")],
                nodes(vec![chunk(1, None, 2, &[])]),
                1,
                2,
            ),
            (
                vec![("procs", "3")],
                SlotRequest {
                    chunks: vec![chunk(3, None, 1, &[])],
                    procs: true,
                },
                3,
                3,
            ),
            (
                vec![("select", "2:ncpus=4:mem=1gb")],
                nodes(vec![Chunk {
                    mem_kb: Some(1024 * 1024),
                    ..chunk(2, None, 4, &[])
                }]),
                2,
                8,
            ),
            (
                vec![("select", "1:ncpus=2:host=n1+ncpus=1:ssd=true")],
                nodes(vec![
                    chunk(1, Some("n1"), 2, &[]),
                    chunk(1, None, 1, &["ssd"]),
                ]),
                2,
                3,
            ),
            (
                vec![("ncpus", "4")],
                nodes(vec![chunk(1, None, 4, &[])]),
                1,
                4,
            ),
            // Job-level mem does not bind a chunk.
            (
                vec![("mem", "512mb")],
                nodes(vec![chunk(1, None, 1, &[])]),
                1,
                1,
            ),
        ];
        for (pairs, want, nodect, slots) in cases {
            let got = slot_request(&list(&pairs)).unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
            assert_eq!(got, want, "{pairs:?}");
            assert_eq!(got.nodect(), nodect, "nodect {pairs:?}");
            assert_eq!(got.total_slots(), slots, "slots {pairs:?}");
        }
    }

    #[test]
    fn slot_request_refuses_corrupt_lists() {
        let cases: &[(&[(&str, &str)], ResourceError)] = &[
            (&[("nodes", "abc:ppn=x")], ResourceError::Syntax),
            (
                &[("procs", "0")],
                ResourceError::IllegalValue("procs".into()),
            ),
            (
                &[("select", "2")],
                ResourceError::IllegalValue("select".into()),
            ),
            (
                &[("ncpus", "many")],
                ResourceError::IllegalValue("ncpus".into()),
            ),
        ];
        for (pairs, want) in cases {
            assert_eq!(slot_request(&list(pairs)).as_ref(), Err(want), "{pairs:?}");
        }
    }

    #[test]
    fn totals_saturate() {
        let req = SlotRequest {
            chunks: vec![chunk(u32::MAX, None, u32::MAX, &[]), chunk(5, None, 1, &[])],
            procs: false,
        };
        assert_eq!(req.nodect(), u32::MAX);
        assert_eq!(req.total_slots(), u32::MAX);
    }
}
