//! The resources a job may ask for (`-l NAME=VALUE`), the kind of value each takes, and
//! Torque's grammar for durations and sizes: the server checks and stores requests by them,
//! and `qselect` compares by them, so both read a value alike.

/// How a resource's value is checked and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// `[[HH:]MM:]SS[.fff]`, stored `HH:MM:SS`.
    Duration,
    /// Torque size, stored in `from_size` form.
    Size,
    /// Non-negative integer (counts).
    Count,
    /// Signed integer (`nice`).
    Signed,
    /// Torque node spec, stored verbatim.
    Nodes,
    /// PBS Pro select statement, stored verbatim.
    Select,
    /// PBS Pro placement (`scatter`, `pack:excl`, `group=site`), stored verbatim.
    Place,
    /// Free text (gres, software, paths, ...), stored verbatim; must not be empty.
    Text,
}

/// The resources Torque 6.x's server defines for users (`src/server/resc_def_all.c`, including
/// the Cray and Moab extension names that old job scripts still carry, such as `qos`,
/// `partition` or `feature`), plus PBS Pro's `select`/`place` and Capstan's `site`; anything
/// else is PBSE_UNKRESC. Names Torque reserves for the server (`procct`, `gpus`, `taskspn`,
/// `cpupercent`, ...) are unknown here too: a user cannot set them.
pub fn kind_of(name: &str) -> Option<ResourceKind> {
    Some(match name {
        "walltime" | "cput" | "pcput" | "mppt" | "pmppt" | "mpptime" => ResourceKind::Duration,
        "mem" | "vmem" | "pmem" | "pvmem" | "file" | "pf" | "ppf" | "sds" | "psds" | "mppmem"
        | "srfs_tmp" | "srfs_big" | "srfs_fast" => ResourceKind::Size,
        "procs" | "ncpus" | "nodect" | "size" | "mppe" | "mppwidth" | "mppdepth" | "mppnppn"
        | "mta" | "mtb" | "mtc" | "mtd" | "mte" | "mtf" | "mtg" | "mth" => ResourceKind::Count,
        "nice" => ResourceKind::Signed,
        "nodes" => ResourceKind::Nodes,
        "select" => ResourceKind::Select,
        "place" => ResourceKind::Place,
        "site" | "host" | "arch" | "other" | "software" | "neednodes" | "tokens" | "mpplabel"
        | "mpplabels" | "mppnodes" | "mpphost" | "mpparch" | "cpapartitionid"
        | "cpaalloccookie" | "cpaadmincookie" | "advres" | "deadline" | "depend" | "ddisk"
        | "dmem" | "epilogue" | "feature" | "flags" | "gattr" | "geometry" | "gmetric" | "gres"
        | "hostlist" | "image" | "jgroup" | "jobflags" | "latency" | "loglevel"
        | "minprocspeed" | "minpreempttime" | "minwclimit" | "naccesspolicy" | "nallocpolicy"
        | "nodeset" | "opsys" | "os" | "partition" | "pref" | "procs_bitmap" | "prologue"
        | "qos" | "queuejob" | "reqattr" | "retrycount" | "retrycc" | "rmtype" | "sid"
        | "signal" | "stagein" | "spriority" | "subnode" | "subnode_list" | "taskdistpolicy"
        | "template" | "termsig" | "termtime" | "tid" | "tpn" | "trig" | "trl" | "var"
        | "vcores" | "wcrequeue" => ResourceKind::Text,
        _ => return None,
    })
}

/// `[[HH:]MM:]SS` → seconds.
///
/// As Torque's `decode_time`: fields may exceed 59 (`90` is 1m30s), an empty field counts as 0
/// (`1::5`), and a fraction of a second is rounded (`.5` and up rounds up). At least one digit
/// is required and at most two colons are allowed (`1:2:3:4:5` is illegal).
pub fn parse_duration(text: &str) -> Option<u64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let fields: Vec<&str> = whole.split(':').collect();
    if fields.len() > 3 || !whole.bytes().any(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut secs: u64 = 0;
    for field in fields {
        if !field.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n: u64 = if field.is_empty() {
            0
        } else {
            field.parse().ok()?
        };
        secs = secs.checked_mul(60)?.checked_add(n)?;
    }
    if let Some(f) = fraction {
        if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Torque looks at milliseconds only: `.5` → 500 ms, `.4999` → 499 ms.
        if f.as_bytes().first().is_some_and(|d| *d >= b'5') {
            secs = secs.checked_add(1)?;
        }
    }
    // Torque keeps durations in a C long.
    (secs < i64::MAX as u64).then_some(secs)
}

/// Torque size (`512mb`, `2gb`, `100kb`, `1024`, `10w`) → kilobytes, rounded up so that a
/// request for `1b` still counts as needing memory.
pub fn parse_size_kb(text: &str) -> Option<u64> {
    parse_size(text)?.kilobytes()
}

/// Bytes in a `w` (word) unit. PBS documents a word as the machine word, 8 bytes on the 64-bit
/// hosts Capstan runs on.
const WORD_BYTES: u64 = 8;

/// A decoded Torque size: `num << shift` bytes or words, as Torque's `struct size_value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    num: u64,
    shift: u32,
    words: bool,
}

impl Size {
    /// The form Torque's `from_size` prints.
    pub fn canonical(&self) -> String {
        let prefix = match self.shift {
            10 => "k",
            20 => "m",
            30 => "g",
            40 => "t",
            50 => "p",
            _ => "",
        };
        format!(
            "{}{}{}",
            self.num,
            prefix,
            if self.words { "w" } else { "b" }
        )
    }

    /// Kilobytes, rounded up; `None` when that does not fit in 64 bits.
    pub fn kilobytes(&self) -> Option<u64> {
        u64::try_from(self.bytes()?.div_ceil(1024)).ok()
    }

    /// Bytes (a word is [`WORD_BYTES`]).
    pub fn bytes(&self) -> Option<u128> {
        let unit: u128 = if self.words { WORD_BYTES as u128 } else { 1 };
        (self.num as u128)
            .checked_mul(unit)?
            .checked_mul(1u128 << self.shift)
    }
}

/// Digits, then an optional multiplier `k m g t p` and an optional `b`/`w`, case-insensitive.
pub fn parse_size(text: &str) -> Option<Size> {
    let digits_end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return None;
    }
    let num: u64 = text[..digits_end].parse().ok()?;
    let suffix = text[digits_end..].to_ascii_lowercase();
    let mut rest = suffix.as_str();
    let shift = match rest.chars().next() {
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        _ => 0,
    };
    if shift != 0 {
        rest = &rest[1..];
    }
    let words = match rest {
        "" | "b" => false,
        "w" => true,
        _ => return None,
    };
    let size = Size { num, shift, words };
    // Refuse sizes that do not fit in 64 bits of kilobytes: they cannot be compared with
    // anything a node has.
    size.kilobytes()?;
    Some(size)
}
