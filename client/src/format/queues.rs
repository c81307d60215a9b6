//! `qstat -Q`, `-Q -f`, `-q`, `-B` and `-B -f` (reference section 3.5).
//!
//! Unlike jobs, Torque prints queue and server attributes raw in the full listings (a
//! queue's `mtime` appears as epoch seconds), so these renderers ignore [`super::Kind`].

use super::wrap::attr_line;
use super::{cut, left, push_padded, right, Object};

/// Job counts parsed from a `state_count` value (`Transit:0 Queued:24 ... Complete:1 `),
/// as strings cut to 5 characters the way Torque's `states()` keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counts {
    queued: String,
    running: String,
    held: String,
    waiting: String,
    transit: String,
    exiting: String,
    complete: String,
}

impl Counts {
    fn parse(state_count: Option<&str>) -> Counts {
        let mut c = Counts {
            queued: "0".into(),
            running: "0".into(),
            held: "0".into(),
            waiting: "0".into(),
            transit: "0".into(),
            exiting: "0".into(),
            complete: "0".into(),
        };
        for item in state_count.unwrap_or("").split_whitespace() {
            let Some((key, value)) = item.split_once(':') else {
                continue;
            };
            let slot = match key {
                "Queued" => &mut c.queued,
                "Running" => &mut c.running,
                "Held" => &mut c.held,
                "Waiting" => &mut c.waiting,
                "Transit" => &mut c.transit,
                "Exiting" => &mut c.exiting,
                "Complete" => &mut c.complete,
                _ => continue,
            };
            *slot = cut(value, Some(5)).to_string();
        }
        c
    }

    fn number(s: &str) -> i64 {
        let digits: String = s
            .trim_start()
            .chars()
            .enumerate()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && *c == '-'))
            .map(|(_, c)| c)
            .collect();
        digits.parse().unwrap_or(0)
    }
}

/// Torque's `istrue`: `TRUE` in any case, or `1`.
fn is_true(v: &str) -> bool {
    v.eq_ignore_ascii_case("true") || v == "1"
}

/// Full listing of queues or servers: `KIND: NAME`, wrapped attribute lines (raw values),
/// an empty line after each.
fn full(kind: &str, objects: &[Object], linesize: usize) -> String {
    let mut out = String::new();
    for o in objects {
        out.push_str(&format!("{kind}: {}\n", o.name));
        for a in &o.attrs {
            out.push_str(&attr_line(&a.name, &a.resource, &a.value, linesize));
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// `qstat -Q -f`.
pub fn queue_full(queues: &[Object], linesize: usize) -> String {
    full("Queue", queues, linesize)
}

/// `qstat -B -f`.
pub fn server_full(servers: &[Object], linesize: usize) -> String {
    full("Server", servers, linesize)
}

/// One row of C `printf` `%Ws` columns separated by single spaces: a negative width is
/// left-aligned (`%-16s`), a positive one right-aligned (`%5s`).
fn printf_row(cols: &[&str], widths: &[isize]) -> String {
    let mut out = String::new();
    for (i, (col, &width)) in cols.iter().zip(widths).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_padded(&mut out, col, width.unsigned_abs(), width > 0);
    }
    out.push('\n');
    out
}

/// `%-16s %5s %6s %5s %5s %5s %5s %5s %5s %5s %5s %-1s %5s`
fn queue_row(cols: [&str; 13]) -> String {
    printf_row(&cols, &[-16, 5, 6, 5, 5, 5, 5, 5, 5, 5, 5, -1, 5])
}

/// `qstat -Q`: header (when `header`) and one row per queue; nothing for no queues.
pub fn queue_summary(queues: &[Object], header: bool) -> String {
    if queues.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    if header {
        out.push_str(&queue_row([
            "Queue", "Max", "Tot", "Ena", "Str", "Que", "Run", "Hld", "Wat", "Trn", "Ext", "T",
            "Cpt",
        ]));
        out.push_str(&queue_row([
            "----------------",
            "---",
            "----",
            "--",
            "--",
            "---",
            "---",
            "---",
            "---",
            "---",
            "---",
            "-",
            "---",
        ]));
    }
    for q in queues {
        let max = q.get("max_running").map_or("0", |v| cut(v, Some(5)));
        let tot = q.get("total_jobs").map_or("0", |v| cut(v, Some(6)));
        let yes_no = |name: &str| {
            if q.get(name).is_some_and(is_true) {
                "yes"
            } else {
                "no"
            }
        };
        let c = Counts::parse(q.get("state_count"));
        let kind = q
            .get("queue_type")
            .map_or("not defined", |t| cut(t, Some(1)));
        out.push_str(&queue_row([
            &q.name,
            max,
            tot,
            yes_no("enabled"),
            yes_no("started"),
            &c.queued,
            &c.running,
            &c.held,
            &c.waiting,
            &c.transit,
            &c.exiting,
            kind,
            &c.complete,
        ]));
    }
    out
}

/// `qstat -q`: the server line, header, one row per queue and the totals. Torque keeps
/// the enabled/started letters from the previous queue when a queue lacks the attribute
/// (observed: `dq` showed `R` with `started` unset); that carry-over is reproduced.
pub fn queue_limits(server: &str, queues: &[Object]) -> String {
    if queues.is_empty() {
        return String::new();
    }
    let mut out = format!("\nserver: {server}\n\n");
    out.push_str("Queue            Memory CPU Time Walltime Node  Run Que Lm  State\n");
    out.push_str("---------------- ------ -------- -------- ----  --- --- --  -----\n");
    let blank = "--   ";
    let mut enabled = ' ';
    let mut started = ' ';
    let (mut total_run, mut total_que) = (0i64, 0i64);
    for q in queues {
        if let Some(v) = q.get("enabled") {
            enabled = if v.starts_with('T') { 'E' } else { 'D' };
        }
        if let Some(v) = q.get("started") {
            started = if v.starts_with('T') { 'R' } else { 'S' };
        }
        let c = Counts::parse(q.get("state_count"));
        let jque = Counts::number(&c.queued) + Counts::number(&c.held) + Counts::number(&c.waiting);
        let jrun = Counts::number(&c.running);
        total_que += jque;
        total_run += jrun;
        let mem = q.get_res("resources_max", "mem").unwrap_or("--  ");
        let cput = q.get_res("resources_max", "cput").unwrap_or(blank);
        let wall = q.get_res("resources_max", "walltime").unwrap_or(blank);
        let nodect = q.get_res("resources_max", "nodect").unwrap_or("-- ");
        let jmax = q.get("max_running").unwrap_or(blank);
        // `%-16.16s %6.6s %8.8s %8.8s %5.5s ` then `%3d %3d %2.2s   %c %c`
        out.push_str(&format!(
            "{} {} {} {} {} {:>3} {:>3} {}   {} {}\n",
            left(&q.name, 16, Some(16)),
            right(mem, 6, Some(6)),
            right(cput, 8, Some(8)),
            right(wall, 8, Some(8)),
            right(nodect, 5, Some(5)),
            jrun,
            jque,
            right(jmax, 2, Some(2)),
            enabled,
            started,
        ));
    }
    out.push_str("                                               ----- -----\n");
    out.push_str(&format!(
        "                                               {total_run:>5} {total_que:>5}\n"
    ));
    out
}

/// `%-16s %5s %5s %5s %5s %5s %5s %5s %5s %5s %-10s`
fn server_row(cols: [&str; 11]) -> String {
    printf_row(&cols, &[-16, 5, 5, 5, 5, 5, 5, 5, 5, 5, -10])
}

/// `qstat -B`: header (when `header`) and one row per server.
pub fn server_summary(servers: &[Object], header: bool) -> String {
    if servers.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    if header {
        out.push_str(&server_row([
            "Server", "Max", "Tot", "Que", "Run", "Hld", "Wat", "Trn", "Ext", "Com", "Status",
        ]));
        out.push_str(&server_row([
            "----------------",
            "---",
            "---",
            "---",
            "---",
            "---",
            "---",
            "---",
            "---",
            "---",
            "----------",
        ]));
    }
    for s in servers {
        let c = Counts::parse(s.get("state_count"));
        out.push_str(&server_row([
            cut(&s.name, Some(16)),
            s.get("max_running").map_or("0", |v| cut(v, Some(5))),
            s.get("total_jobs").map_or("0", |v| cut(v, Some(5))),
            &c.queued,
            &c.running,
            &c.held,
            &c.waiting,
            &c.transit,
            &c.exiting,
            &c.complete,
            s.get("server_state").map_or("", |v| cut(v, Some(10))),
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::wrap::LINE_SIZE;
    use super::super::Attribute as A;
    use super::*;

    fn queue(name: &str, counts: &str, total: &str, started: Option<&str>) -> Object {
        let mut attrs = vec![
            A::text("queue_type", "Execution"),
            A::text("total_jobs", total),
            A::text("state_count", counts),
            A::res("resources_default", "walltime", "01:00:00"),
            A::text("mtime", "1795276983"),
            A::text("enabled", "True"),
        ];
        if let Some(s) = started {
            attrs.push(A::text("started", s));
        }
        Object::new(name, attrs)
    }

    fn reference_queues() -> Vec<Object> {
        vec![
            queue(
                "batch",
                "Transit:0 Queued:24 Held:12 Waiting:1 Running:2 Exiting:0 Complete:1 ",
                "40",
                Some("True"),
            ),
            queue(
                "dq",
                "Transit:0 Queued:0 Held:0 Waiting:0 Running:0 Exiting:0 Complete:1 ",
                "1",
                Some("False"),
            ),
        ]
    }

    #[test]
    fn queue_summary_matches_reference() {
        let expected =
            "Queue              Max    Tot   Ena   Str   Que   Run   Hld   Wat   Trn   Ext T   Cpt
----------------   ---   ----    --    --   ---   ---   ---   ---   ---   --- -   ---
batch                0     40   yes   yes    24     2    12     1     0     0 E     1
dq                   0      1   yes    no     0     0     0     0     0     0 E     1
";
        assert_eq!(queue_summary(&reference_queues(), true), expected);
        assert_eq!(queue_summary(&[], true), "");
    }

    #[test]
    fn queue_limits_matches_reference() {
        let mut queues = reference_queues();
        // Torque's quirk: `dq` without `started` shows the previous queue's `R`.
        queues[1].attrs.retain(|a| &*a.name != "started");
        queues[1].attrs.retain(|a| &*a.name != "state_count");
        let expected = "
server: vm

Queue            Memory CPU Time Walltime Node  Run Que Lm  State
---------------- ------ -------- -------- ----  --- --- --  -----
batch              --      --       --      --    2  37 --   E R
dq                 --      --       --      --    0   0 --   E R
                                               ----- -----
                                                   2    37
";
        assert_eq!(queue_limits("vm", &queues), expected);
    }

    #[test]
    fn queue_full_wraps_state_count() {
        let q = Object::new(
            "batch",
            vec![
                A::text("queue_type", "Execution"),
                A::text("total_jobs", "40"),
                A::text(
                    "state_count",
                    "Transit:0 Queued:24 Held:12 Waiting:1 Running:2 Exiting:0 Complete:1 ",
                ),
                A::res("resources_default", "walltime", "01:00:00"),
                A::res("resources_default", "nodes", "1"),
                A::time("mtime", 1_795_276_983),
                A::res("resources_assigned", "nodect", "2"),
                A::res("resources_assigned", "mem", "104857600b"),
                A::text("enabled", "True"),
                A::text("started", "True"),
            ],
        );
        let expected = "Queue: batch
    queue_type = Execution
    total_jobs = 40
    state_count = Transit:0 Queued:24 Held:12 Waiting:1 Running:2 Exiting:0 Co
\tmplete:1 \n    resources_default.walltime = 01:00:00
    resources_default.nodes = 1
    mtime = 1795276983
    resources_assigned.nodect = 2
    resources_assigned.mem = 104857600b
    enabled = True
    started = True

";
        assert_eq!(queue_full(&[q], LINE_SIZE), expected);
    }

    #[test]
    fn server_summary_matches_reference() {
        let s = Object::new(
            "vm",
            vec![
                A::text("server_state", "Active"),
                A::text("scheduling", "True"),
                A::text("total_jobs", "41"),
                A::text(
                    "state_count",
                    "Transit:0 Queued:24 Held:12 Waiting:1 Running:2 Exiting:0 Complete:2 ",
                ),
            ],
        );
        let expected =
            "Server             Max   Tot   Que   Run   Hld   Wat   Trn   Ext   Com Status   \x20
----------------   ---   ---   ---   ---   ---   ---   ---   ---   --- ----------
vm                   0    41    24     2    12     1     0     0     2 Active   \x20
";
        assert_eq!(server_summary(std::slice::from_ref(&s), true), expected);
        assert_eq!(
            server_full(&[s], LINE_SIZE),
            "Server: vm\n    server_state = Active\n    scheduling = True\n    total_jobs = 41\n    \
state_count = Transit:0 Queued:24 Held:12 Waiting:1 Running:2 Exiting:0 Co\n\tmplete:2 \n\n"
        );
    }
}
