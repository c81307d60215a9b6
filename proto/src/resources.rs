//! The resources a job may ask for (`-l NAME=VALUE`) and the kind of value each takes:
//! the server checks and stores requests by it, and `qselect` compares by it.

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
