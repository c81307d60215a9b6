//! `qstat` job listings: the default table, the alternative table (`-a`, `-u`, `-i`, `-r`,
//! `-n`, `-s`, `-1`, `-G`, `-M`), the full listing (`-f`) and XML (`-x`).
//!
//! Widths, headers and quirks follow the compatibility reference (section 3), which was
//! observed on Torque 6.1.3.h5 and cross-checked with Torque's `src/cmds/qstat.c`.

use chrono::TimeZone;

use super::wrap::{attr_line, LINE_SIZE, NO_WRAP};
use super::xml;
use capstan_proto::text::before_at;
use std::borrow::Cow;

use super::{cut, left, push_padded, right, AttrView, Kind, Object};

/// Client-side selection of jobs (Torque asks the server with `pbs_selstat`; our server
/// returns every job for the operands and the command filters, with the same rules).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// `-u`: owners (user part of `Job_Owner`); empty means everyone.
    pub users: Vec<String>,
    /// `-i`: Torque selects states `E H Q T W`.
    pub idle: bool,
    /// `-r`: Torque selects states `R S`.
    pub running: bool,
    /// `-e`: only jobs in execution queues (`queue_type = E`).
    pub exec_only: bool,
}

/// Applies `filter` to `jobs` (objects, or rows of a reply's table), keeping the server's
/// order. (Arrays come from the server already as `-t` asked: `StatJobsRequest`'s
/// `expand_arrays`.)
pub fn select<J: AttrView>(jobs: Vec<J>, filter: &Filter) -> Vec<J> {
    jobs.into_iter()
        .filter(|j| {
            filter.users.is_empty() || {
                let owner = j.get("Job_Owner").unwrap_or("");
                let user = before_at(owner);
                filter.users.iter().any(|u| u == user)
            }
        })
        .filter(|j| {
            let state = j.get("job_state").unwrap_or("");
            let idle = !filter.idle || (!state.is_empty() && "EHQTW".contains(state));
            let running = !filter.running || (!state.is_empty() && "RS".contains(state));
            idle && running
        })
        .filter(|j| !filter.exec_only || j.get("queue_type").is_none_or(|t| t.starts_with('E')))
        .collect()
}

// ---------------------------------------------------------------------------
// Default listing (reference 3.1)
// ---------------------------------------------------------------------------

const DEFAULT_HEADER: &str =
    "Job ID                    Name             User            Time Use S Queue\n\
------------------------- ---------------- --------------- -------- - -----\n";

/// `qstat` / `qstat JOBID`: the header (unless `header` is false, as for later servers)
/// and one row per job. Empty input renders as nothing at all.
pub fn default_listing<J: AttrView>(jobs: &[J], header: bool) -> String {
    if jobs.is_empty() {
        return String::new();
    }
    // About 80 bytes a row.
    let mut out = String::with_capacity(DEFAULT_HEADER.len() + jobs.len() * 84);
    if header {
        out.push_str(DEFAULT_HEADER);
    }
    // `%-26s %-16s %-15s %8s %1s %-15s`, written in place from borrowed values: this loop
    // runs once per job of a listing that may hold thousands.
    for job in jobs {
        let name = job.get("Job_Name").map(short_job_name).unwrap_or_default();
        let owner = job
            .get("Job_Owner")
            .map_or("", |o| cut(before_at(o), Some(15)));
        let time_use = job
            .get_res("resources_used", "cput")
            .map_or("0", |t| cut(t, Some(8)));
        let state = job.get("job_state").map_or("", |s| cut(s, Some(1)));
        let queue = job.get("queue").map_or("", |q| cut(before_at(q), Some(15)));
        push_padded(&mut out, short_job_id(job.name()), 26, false);
        out.push(' ');
        push_padded(&mut out, &name, 16, false);
        out.push(' ');
        push_padded(&mut out, owner, 15, false);
        out.push(' ');
        push_padded(&mut out, time_use, 8, true);
        out.push(' ');
        push_padded(&mut out, state, 1, true);
        out.push(' ');
        push_padded(&mut out, queue, 15, false);
        out.push('\n');
    }
    out
}

/// The job id as the default listing shows it: cut after the first component of the
/// server name (`0.vm.example.com` -> `0.vm`), and ids over 23 characters cut to 29.
/// Always a prefix of the id.
fn short_job_id(id: &str) -> &str {
    let shown = match id.match_indices('.').nth(1) {
        Some((second_dot, _)) => &id[..second_dot],
        None => id,
    };
    if shown.chars().count() > 23 {
        cut(shown, Some(29))
    } else {
        shown
    }
}

/// Names over 16 characters: `...` and the tail, starting at a `/` when there is one in
/// the last 13 characters (Torque keeps path-like names readable), else the last 13.
fn short_job_name(name: &str) -> Cow<'_, str> {
    let count = name.chars().count();
    if count <= 16 {
        return Cow::Borrowed(name);
    }
    // count > 16, so the 13th character from the end exists.
    let from = name.char_indices().nth(count - 13).map_or(0, |(i, _)| i);
    let tail = &name[from..];
    let start = tail.find('/').unwrap_or(0);
    Cow::Owned(format!("...{}", &tail[start..]))
}

// ---------------------------------------------------------------------------
// Alternative listing (reference 3.2)
// ---------------------------------------------------------------------------

/// Display switches of the alternative listing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AltOptions {
    /// `-n`: the job's hosts after the row.
    pub nodes: bool,
    /// `-1` (with `-n`): hosts on the row's line.
    pub one_line: bool,
    /// `-s`: the job's comment on its own line.
    pub comments: bool,
    /// `-R`: the SRFS columns (BIG, FAST, PFS) in place of Jobname and SessID.
    pub srfs: bool,
    /// `-G` / `-M`: memory in gigabytes / megawords.
    pub mem_unit: MemUnit,
}

/// Unit of the Memory column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MemUnit {
    /// As the job requested it.
    #[default]
    AsGiven,
    /// `-G`
    Gigabytes,
    /// `-M`
    Megawords,
}

const ALT_HEADER: &str = "\n                                                                                  Req'd       Req'd       Elap\n\
Job ID                  Username    Queue    Jobname          SessID  NDS   TSK   Memory      Time    S   Time\n\
----------------------- ----------- -------- ---------------- ------ ----- ------ --------- --------- - ---------\n";

/// Torque's header under `-R` (its underline really starts `----   `, out of step with the
/// 23-character Job ID column).
const ALT_HEADER_SRFS: &str = "\n                                                          Req'd     Req'd       Elap\n\
Job ID                  Username    Queue    NDS   TSK    Memory    Time      S Time       BIG  FAST   PFS\n\
----   ---------------- ----------- -------- ----- ------ --------- --------- - --------- ----- ----- -----\n";

/// What Torque prints for a missing value in the alternative listing.
const BLANK: &str = " -- ";

/// The alternative listing: an empty line, `SERVER: ` (+ the server's comment), the header
/// (when `header`), and one row per job with its optional host and comment lines.
pub fn alt_listing(
    server: &str,
    server_comment: Option<&str>,
    jobs: &[Object],
    opts: &AltOptions,
    header: bool,
) -> String {
    if jobs.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    if header {
        out.push_str(&format!("\n{server}: {}", server_comment.unwrap_or("")));
        out.push_str(if opts.srfs {
            ALT_HEADER_SRFS
        } else {
            ALT_HEADER
        });
    }
    for job in jobs {
        out.push_str(&alt_row(job, opts));
        if opts.nodes {
            let hosts = job.get("exec_host").unwrap_or(BLANK);
            let linesize = if opts.one_line { NO_WRAP } else { LINE_SIZE };
            out.push_str(&host_lines(hosts, linesize));
        }
        if opts.comments {
            // As Torque: a job without a comment shows ` -- `; only an empty one shows nothing.
            let comment = job.get("comment").unwrap_or(BLANK);
            if !comment.is_empty() {
                out.push_str(&format!("   {comment}\n"));
            }
        }
    }
    out
}

/// One row, `%-23.22s %-11.11s %-8.8s %-16.16s %6.6s %5.5s %6.6s %9.9s %9.9s %1.1s %9.9s`
/// (under `-R`: `%-23.22s %-11.11s %-8.8s %5.5s %6.6s %9.9s %9.9s %1.1s %9.9s %5.5s %5.5s
/// %5.5s`, ending with `srfs_big`, `srfs_fast` and `piofs`), followed by a newline unless
/// `-n -1` puts the hosts on the same line.
fn alt_row(job: &Object, opts: &AltOptions) -> String {
    let user = job.get("Job_Owner").map(before_at).unwrap_or("");
    let queue = job.get("queue").unwrap_or("");
    let name = job.get("Job_Name").unwrap_or("");
    let sess = job.get("session_id").unwrap_or(BLANK);
    let nodect = job.get_res("Resource_List", "nodect").unwrap_or(BLANK);
    let tasks = tasks(job).unwrap_or_else(|| BLANK.to_string());
    let mem = job
        .get_res("Resource_List", "mem")
        .or_else(|| job.get_res("Resource_List", "vmem"))
        .map(|m| convert_size(m, opts.mem_unit))
        .unwrap_or_else(|| BLANK.to_string());
    let state = job.get("job_state").unwrap_or(BLANK);

    // Req'd Time is the walltime request, else the cput request (then Elap is cput used).
    let (req, used) = match job.get_res("Resource_List", "walltime") {
        Some(w) => (Some(w), job.get_res("resources_used", "walltime")),
        None => match job.get_res("Resource_List", "cput") {
            Some(c) => (Some(c), job.get_res("resources_used", "cput")),
            None => (None, job.get_res("resources_used", "walltime")),
        },
    };
    let elapsed = match state {
        "R" | "E" | "S" => used,
        // Observed on 6.1.3.h5: a job waiting for its -a time shows its requested time.
        "W" => req,
        _ => None,
    };

    let mut row = format!(
        "{} {} {} ",
        left(&job.name, 23, Some(22)),
        left(user, 11, Some(11)),
        left(queue, 8, Some(8)),
    );
    if !opts.srfs {
        row.push_str(&format!(
            "{} {} ",
            left(name, 16, Some(16)),
            right(sess, 6, Some(6)),
        ));
    }
    row.push_str(&format!(
        "{} {} {} {} {} {}",
        right(nodect, 5, Some(5)),
        right(&tasks, 6, Some(6)),
        right(&mem, 9, Some(9)),
        right(req.unwrap_or(BLANK), 9, Some(9)),
        right(state, 1, Some(1)),
        right(elapsed.unwrap_or(BLANK), 9, Some(9)),
    ));
    if opts.srfs {
        for resource in ["srfs_big", "srfs_fast", "piofs"] {
            let size = job
                .get_res("Resource_List", resource)
                .map(|v| convert_size(v, opts.mem_unit))
                .unwrap_or_else(|| BLANK.to_string());
            row.push(' ');
            row.push_str(&right(&size, 5, Some(5)));
        }
    }
    if !(opts.nodes && opts.one_line) {
        row.push('\n');
    }
    row
}

/// TSK: tasks from the `nodes` request (sum of count x ppn over `+` parts; a host name
/// counts as one node), else `procs`, else a non-zero `ncpus`.
fn tasks(job: &Object) -> Option<String> {
    if let Some(spec) = job.get_res("Resource_List", "nodes") {
        let mut total: u64 = 0;
        for part in spec.split('+') {
            let mut fields = part.split(':');
            let first = fields.next().unwrap_or("");
            let count = if !first.is_empty() && first.chars().all(|c| c.is_ascii_digit()) {
                first.parse().unwrap_or(1)
            } else {
                1
            };
            let ppn = fields
                .find_map(|f| f.strip_prefix("ppn="))
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            total = total.saturating_add(count * ppn);
        }
        return Some(total.to_string());
    }
    if let Some(procs) = job.get_res("Resource_List", "procs") {
        return Some(procs.to_string());
    }
    job.get_res("Resource_List", "ncpus")
        .filter(|n| *n != "0")
        .map(str::to_string)
}

/// Torque's `cnv_size`: a size such as `100mb` in the unit of `-G` / `-M` (rounded up).
fn convert_size(value: &str, unit: MemUnit) -> String {
    let (out, suffix) = match unit {
        MemUnit::AsGiven => return value.to_string(),
        MemUnit::Megawords => (1, "mw"),
        MemUnit::Gigabytes => (2, "gb"),
    };
    const SHIFT: [[i32; 5]; 3] = [
        [-20, -10, 0, 10, 20],
        [-23, -13, -3, 7, 17],
        [-30, -20, -10, 0, 10],
    ];
    let digits: String = value.chars().take_while(|c| c.is_ascii_digit()).collect();
    let rest = &value[digits.len()..];
    let mut n: u64 = digits.parse().unwrap_or(0);
    let mut rest_chars = rest.chars();
    let first = rest_chars.next();
    let input = match first {
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        _ => 0,
    };
    if first == Some('w') || rest_chars.next() == Some('w') {
        n <<= 3;
    }
    let shift = SHIFT[out][input];
    if shift < 0 {
        let s = (-shift) as u32;
        n = (n + ((1u64 << s) - 1)) >> s;
    } else {
        n <<= shift as u32;
    }
    format!("{n}{suffix}")
}

/// Torque's `prt_nodes`: `exec_host` on lines indented 3 spaces, broken at `+` before
/// `linesize`; a host's domain is dropped together with the rest of that `+` element.
fn host_lines(hosts: &str, linesize: usize) -> String {
    let bytes: Vec<char> = hosts.chars().collect();
    let mut out = String::new();
    let mut line = String::new();
    let mut nodes = 0; // start of the pending chunk
    let mut stp = 0; // scan position
    while nodes < bytes.len() {
        let at = bytes.get(stp).copied();
        if matches!(at, Some('.') | Some('+') | None) {
            let chunk: String = bytes[nodes..stp].iter().collect();
            if line.chars().count() + (stp - nodes) >= linesize {
                out.push_str(&format!("   {line}\n"));
                line.clear();
            }
            line.push_str(&chunk);
            // Skip a domain (and whatever follows it) up to the next `+`.
            while stp < bytes.len() && bytes[stp] != '+' {
                stp += 1;
            }
            nodes = stp;
            stp += 1;
        } else {
            stp += 1;
        }
    }
    if !line.is_empty() {
        out.push_str(&format!("   {line}\n"));
    }
    out
}

// ---------------------------------------------------------------------------
// Full listing (reference 3.3) and XML (3.4)
// ---------------------------------------------------------------------------

/// `qstat -f`: `Job Id: ID`, wrapped attribute lines, an empty line after each job.
/// Time attributes are printed `ctime(3)` style in `tz`; `linesize` is
/// [`super::wrap::LINE_SIZE`] or [`super::wrap::NO_WRAP`] for `-1`.
pub fn full_listing<Tz: TimeZone>(jobs: &[Object], linesize: usize, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mut out = String::new();
    for job in jobs {
        out.push_str(&format!("Job Id: {}\n", job.name));
        for a in &job.attrs {
            let time = match a.kind {
                Kind::Time => a
                    .value
                    .trim()
                    .parse::<i64>()
                    .ok()
                    .and_then(|e| super::ctime(e, tz)),
                Kind::Text => None,
            };
            match time {
                // Torque hands ctime()'s string, newline included, to the wrapper and adds
                // no newline of its own; the newline counts toward the width check.
                Some(t) => out.push_str(&attr_line(
                    &a.name,
                    &a.resource,
                    &format!("{t}\n"),
                    linesize,
                )),
                None => {
                    // A negative remaining walltime is shown as `Walltime.Exceeded`.
                    let resource = if &*a.name == "Walltime" && a.value.starts_with('-') {
                        "Exceeded"
                    } else {
                        &*a.resource
                    };
                    out.push_str(&attr_line(&a.name, resource, &a.value, linesize));
                    out.push('\n');
                }
            }
        }
        out.push('\n');
    }
    out
}

/// `qstat -x` / `qstat -f -x`: the XML declaration, then every job on one line. Resources
/// of one attribute nest in one element (`<Resource_List><walltime>..</walltime>..`);
/// times stay epoch seconds. Empty input renders as nothing.
pub fn xml_listing(jobs: &[Object]) -> String {
    if jobs.is_empty() {
        return String::new();
    }
    let mut out = String::from("<?xml version=\"1.0\"?>\n<Data>");
    for job in jobs {
        out.push_str("<Job>");
        xml::element(&mut out, "Job_Id", &job.name);
        let mut open: Option<&str> = None;
        for a in &job.attrs {
            if a.resource.is_empty() {
                if let Some(group) = open.take() {
                    out.push_str(&format!("</{group}>"));
                }
                xml::element(&mut out, &a.name, &a.value);
            } else {
                if open != Some(&*a.name) {
                    if let Some(group) = open.take() {
                        out.push_str(&format!("</{group}>"));
                    }
                    out.push_str(&format!("<{}>", a.name));
                    open = Some(&*a.name);
                }
                xml::element(&mut out, &a.resource, &a.value);
            }
        }
        if let Some(group) = open {
            out.push_str(&format!("</{group}>"));
        }
        out.push_str("</Job>");
    }
    out.push_str("</Data>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::Attribute as A;
    use super::*;

    fn job(id: &str, attrs: Vec<A>) -> Object {
        Object::new(id, attrs)
    }

    /// A job as the default and alternative listings see it.
    #[allow(clippy::too_many_arguments)]
    fn brief(
        id: &str,
        name: &str,
        state: &str,
        queue: &str,
        cput: Option<&str>,
        session: Option<&str>,
        resources: &[(&str, &str)],
        used_wall: Option<&str>,
    ) -> Object {
        let mut attrs = vec![
            A::text("Job_Name", name),
            A::text("Job_Owner", "testuser@vm"),
        ];
        if let Some(c) = cput {
            attrs.push(A::res("resources_used", "cput", c));
        }
        if let Some(w) = used_wall {
            attrs.push(A::res("resources_used", "walltime", w));
        }
        attrs.push(A::text("job_state", state));
        attrs.push(A::text("queue", queue));
        for (r, v) in resources {
            attrs.push(A::res("Resource_List", r, v));
        }
        if let Some(s) = session {
            attrs.push(A::text("session_id", s));
        }
        job(id, attrs)
    }

    #[test]
    fn default_listing_matches_reference() {
        let jobs = vec![
            brief(
                "0.vm",
                "job.sh",
                "C",
                "batch",
                Some("00:00:00"),
                None,
                &[],
                None,
            ),
            brief("14.vm", "run1", "R", "batch", None, None, &[], None),
            brief("20[].vm", "arr", "Q", "batch", None, None, &[], None),
        ];
        let expected = "Job ID                    Name             User            Time Use S Queue
------------------------- ---------------- --------------- -------- - -----
0.vm                       job.sh           testuser        00:00:00 C batch          \n\
14.vm                      run1             testuser               0 R batch          \n\
20[].vm                    arr              testuser               0 Q batch          \n";
        assert_eq!(default_listing(&jobs, true), expected);
        assert_eq!(default_listing::<Object>(&[], true), "");
    }

    #[test]
    fn default_listing_shortens_long_names_and_ids() {
        assert_eq!(
            short_job_name("a_very_long_job_name.sh"),
            "...g_job_name.sh"
        );
        assert_eq!(short_job_name("exactly16chars__"), "exactly16chars__");
        assert_eq!(short_job_id("12.vm.example.com"), "12.vm");
        assert_eq!(
            short_job_id("123456789012[1234567].server-name-long"),
            "123456789012[1234567].server-"
        );
    }

    fn reference_alt_jobs() -> Vec<Object> {
        vec![
            brief(
                "0.vm",
                "job.sh",
                "C",
                "batch",
                None,
                Some("25540"),
                &[("walltime", "01:00:00"), ("nodes", "1"), ("nodect", "1")],
                Some("00:00:00"),
            ),
            brief("13.vm", "job.sh", "C", "dq", None, None, &[], None),
            brief(
                "14.vm",
                "run1",
                "R",
                "batch",
                None,
                Some("30215"),
                &[("walltime", "00:20:00"), ("nodes", "1"), ("nodect", "1")],
                Some("00:00:21"),
            ),
            brief(
                "15.vm",
                "run2",
                "R",
                "batch",
                None,
                Some("30701"),
                &[
                    ("walltime", "00:30:00"),
                    ("mem", "100mb"),
                    ("nodes", "1"),
                    ("nodect", "1"),
                ],
                Some("00:00:20"),
            ),
            brief(
                "23.vm",
                "future1",
                "W",
                "batch",
                None,
                None,
                &[("walltime", "01:00:00"), ("nodes", "1"), ("nodect", "1")],
                None,
            ),
            brief(
                "29.vm",
                "multi",
                "Q",
                "batch",
                None,
                None,
                &[
                    ("walltime", "01:00:00"),
                    ("mem", "2gb"),
                    ("nodes", "1:ppn=1"),
                    ("nodect", "1"),
                ],
                None,
            ),
            brief(
                "30.vm",
                "procs",
                "Q",
                "batch",
                None,
                None,
                &[("walltime", "01:00:00"), ("procs", "2")],
                None,
            ),
        ]
    }

    #[test]
    fn alt_listing_matches_reference() {
        let expected = "
vm:\x20
                                                                                  Req'd       Req'd       Elap
Job ID                  Username    Queue    Jobname          SessID  NDS   TSK   Memory      Time    S   Time
----------------------- ----------- -------- ---------------- ------ ----- ------ --------- --------- - ---------
0.vm                    testuser    batch    job.sh            25540     1      1       --   01:00:00 C       -- \n\
13.vm                   testuser    dq       job.sh              --    --     --        --        --  C       -- \n\
14.vm                   testuser    batch    run1              30215     1      1       --   00:20:00 R  00:00:21
15.vm                   testuser    batch    run2              30701     1      1     100mb  00:30:00 R  00:00:20
23.vm                   testuser    batch    future1             --      1      1       --   01:00:00 W  01:00:00
29.vm                   testuser    batch    multi               --      1      1       2gb  01:00:00 Q       -- \n\
30.vm                   testuser    batch    procs               --    --       2       --   01:00:00 Q       -- \n";
        assert_eq!(
            alt_listing(
                "vm",
                None,
                &reference_alt_jobs(),
                &AltOptions::default(),
                true
            ),
            expected
        );
        assert_eq!(
            alt_listing("vm", None, &[], &AltOptions::default(), true),
            ""
        );
    }

    #[test]
    fn alt_listing_server_comment_follows_the_name() {
        let out = alt_listing(
            "vm",
            Some("hello"),
            &reference_alt_jobs()[..1],
            &AltOptions::default(),
            true,
        );
        assert!(out.starts_with("\nvm: hello\n      "));
    }

    #[test]
    fn alt_listing_hosts_and_comments() {
        let mut running = reference_alt_jobs()[2].clone();
        running.attrs.push(A::text("exec_host", "vm/0-1"));
        running
            .attrs
            .push(A::text("comment", "Job started on Sat Nov 21 at 16:03"));
        let queued = reference_alt_jobs()[5].clone();
        let row14 = "14.vm                   testuser    batch    run1              30215     1      1       --   00:20:00 R  00:00:21";
        let row29 = "29.vm                   testuser    batch    multi               --      1      1       2gb  01:00:00 Q       -- ";

        let opts = AltOptions {
            nodes: true,
            ..Default::default()
        };
        let out = alt_listing("vm", None, &[running.clone(), queued.clone()], &opts, false);
        assert_eq!(out, format!("{row14}\n   vm/0-1\n{row29}\n    -- \n"));

        let opts = AltOptions {
            nodes: true,
            one_line: true,
            ..Default::default()
        };
        let out = alt_listing("vm", None, &[running.clone(), queued.clone()], &opts, false);
        assert_eq!(out, format!("{row14}   vm/0-1\n{row29}    -- \n"));

        let opts = AltOptions {
            comments: true,
            ..Default::default()
        };
        let mut empty = queued.clone();
        empty.attrs.push(A::text("comment", ""));
        let out = alt_listing("vm", None, &[running, queued, empty], &opts, false);
        // No comment shows ` -- ` (Torque starts from it); an empty one shows nothing.
        assert_eq!(
            out,
            format!("{row14}\n   Job started on Sat Nov 21 at 16:03\n{row29}\n    -- \n{row29}\n")
        );
    }

    #[test]
    fn alt_listing_with_srfs_columns() {
        let jobs = reference_alt_jobs();
        let mut big = jobs[5].clone();
        big.attrs.push(A::res("Resource_List", "srfs_big", "10gb"));
        let opts = AltOptions {
            srfs: true,
            ..Default::default()
        };
        let out = alt_listing("vm", None, &[jobs[2].clone(), big], &opts, true);
        let want = "\nvm: \n                                                          Req'd     Req'd       Elap\n\
Job ID                  Username    Queue    NDS   TSK    Memory    Time      S Time       BIG  FAST   PFS\n\
----   ---------------- ----------- -------- ----- ------ --------- --------- - --------- ----- ----- -----\n\
14.vm                   testuser    batch        1      1       --   00:20:00 R  00:00:21   --    --    -- \n\
29.vm                   testuser    batch        1      1       2gb  01:00:00 Q       --   10gb   --    -- \n";
        assert_eq!(out, want);
    }

    #[test]
    fn host_lines_strip_domains_and_wrap() {
        assert_eq!(host_lines("vm/0-1", 77), "   vm/0-1\n");
        assert_eq!(host_lines("vm/0+vm2/1", 77), "   vm/0+vm2/1\n");
        // Torque drops the domain together with the slot part.
        assert_eq!(
            host_lines("vm.example.com/0+b.example.com/1", 77),
            "   vm+b\n"
        );
        let many: Vec<String> = (0..12).map(|i| format!("node{i:02}/0-3")).collect();
        let out = host_lines(&many.join("+"), 77);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() <= 80));
        assert_eq!(
            lines[1],
            "   +node07/0-3+node08/0-3+node09/0-3+node10/0-3+node11/0-3"
        );
    }

    #[test]
    fn tasks_from_nodes_procs_and_ncpus() {
        let t = |r: &[(&str, &str)]| tasks(&brief("1.vm", "x", "Q", "b", None, None, r, None));
        assert_eq!(t(&[("nodes", "1:ppn=2")]).as_deref(), Some("2"));
        assert_eq!(t(&[("nodes", "2:ppn=4+vm:ppn=2")]).as_deref(), Some("10"));
        assert_eq!(t(&[("nodes", "vm")]).as_deref(), Some("1"));
        assert_eq!(t(&[("procs", "2")]).as_deref(), Some("2"));
        assert_eq!(t(&[("ncpus", "0")]), None);
        assert_eq!(t(&[]), None);
    }

    #[test]
    fn memory_units() {
        assert_eq!(convert_size("100mb", MemUnit::Gigabytes), "1gb");
        assert_eq!(convert_size("2gb", MemUnit::Gigabytes), "2gb");
        assert_eq!(convert_size("1gb", MemUnit::Megawords), "128mw");
        assert_eq!(convert_size("100mb", MemUnit::AsGiven), "100mb");
    }

    #[test]
    fn filters_follow_torques_selection() {
        let jobs = reference_alt_jobs();
        let ids = |f: &Filter| -> Vec<String> {
            select(jobs.clone(), f)
                .into_iter()
                .map(|j| j.name)
                .collect()
        };
        assert_eq!(
            ids(&Filter {
                running: true,
                ..Default::default()
            }),
            ["14.vm", "15.vm"]
        );
        assert_eq!(
            ids(&Filter {
                idle: true,
                ..Default::default()
            }),
            ["23.vm", "29.vm", "30.vm"]
        );
        assert_eq!(
            ids(&Filter {
                users: vec!["nobody".into()],
                ..Default::default()
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(&Filter {
                users: vec!["testuser".into()],
                ..Default::default()
            })
            .len(),
            7
        );
    }

    fn full_job() -> Object {
        job(
            "48.vm",
            vec![
                A::text("Job_Name", "full"),
                A::text("Job_Owner", "testuser@vm"),
                A::text("job_state", "R"),
                A::time("ctime", 1_795_277_303),
                A::res("Resource_List", "nodes", "1:ppn=2"),
                A::res("Resource_List", "walltime", "01:00:00"),
                A::text(
                    "comment",
                    "Not Running: Not enough of the right type of nodes are available",
                ),
                A::res("Walltime", "Remaining", "3596"),
            ],
        )
    }

    #[test]
    fn full_listing_blocks_times_and_wrapping() {
        let expected = "Job Id: 48.vm
    Job_Name = full
    Job_Owner = testuser@vm
    job_state = R
    ctime = Sat Nov 21 16:08:23 2026
    Resource_List.nodes = 1:ppn=2
    Resource_List.walltime = 01:00:00
    comment = Not Running: Not enough of the right type of nodes are available
\t
    Walltime.Remaining = 3596

";
        assert_eq!(
            full_listing(&[full_job()], LINE_SIZE, &chrono::Utc),
            expected
        );
        let unwrapped = full_listing(&[full_job()], NO_WRAP, &chrono::Utc);
        assert!(unwrapped.contains("are available\n    Walltime.Remaining = 3596\n\n"));
    }

    #[test]
    fn full_listing_shows_exceeded_walltime() {
        let j = job("1.vm", vec![A::res("Walltime", "Remaining", "-5")]);
        assert_eq!(
            full_listing(&[j], LINE_SIZE, &chrono::Utc),
            "Job Id: 1.vm\n    Walltime.Exceeded = -5\n\n"
        );
    }

    #[test]
    fn xml_nests_resources_and_keeps_epochs() {
        let j = job(
            "14.vm",
            vec![
                A::text("Job_Name", "run1"),
                A::text("Job_Owner", "testuser@vm"),
                A::text("job_state", "R"),
                A::res("Resource_List", "walltime", "01:00:00"),
                A::res("Resource_List", "nodes", "1"),
                A::res("Resource_List", "nodect", "1"),
                A::time("ctime", 1_795_277_015),
                A::text("comment", "a<b & c>d"),
            ],
        );
        assert_eq!(
            xml_listing(&[j]),
            "<?xml version=\"1.0\"?>\n<Data><Job><Job_Id>14.vm</Job_Id><Job_Name>run1</Job_Name>\
<Job_Owner>testuser@vm</Job_Owner><job_state>R</job_state><Resource_List><walltime>01:00:00</walltime>\
<nodes>1</nodes><nodect>1</nodect></Resource_List><ctime>1795277015</ctime>\
<comment>a&lt;b &amp; c&gt;d</comment></Job></Data>\n"
        );
        assert_eq!(xml_listing(&[]), "");
    }
}
