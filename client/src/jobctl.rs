//! The job-control commands: `qdel`, `qhold`, `qrls`, `qsig`, `qrerun`, `qmove`, `qmsg`, and
//! `qrun` (its own request, and its own exits; see [`qrun`]).
//!
//! They share one shape (Torque's `qdel.c`, `qhold.c`, ...): getopt options, one or more job
//! ids, one server request, and per failed job a line `CMD: TEXT[ MSG=DETAIL] JOBID` on
//! stderr. The exit status is the last failure's PBSE number modulo 256 (Torque exits with
//! the raw number), 0 when everything succeeded. Quirks kept from Torque 6.1.3: `qhold`,
//! `qrls`, `qsig` and `qrerun` print nothing for an unknown job id (but still exit 153);
//! `qdel` says `qdel: nonexistent job id: ID`; failures while expanding `qdel all` do not
//! change the exit status. Usage errors print Torque's usage line and exit 2. `qmove` takes no
//! options (Torque's parses none): `qmove DESTINATION JOBID...`. `qmsg [-O] [-E] MESSAGE
//! JOBID...` writes MESSAGE (its first 256 bytes, as Torque's) into running jobs' stderr
//! (`-E`, the default) and/or stdout (`-O`) files; it does report an unknown job id.
//!
//! Options are parsed by hand with getopt semantics ([`crate::getopt`]) because Torque's
//! messages and usage lines must be reproduced exactly.

use std::io::Write;

use capstan_proto::pbse;
use capstan_proto::v1::{JobActionRequest, JobActionResult, JobOp, PbsError, RunJobsRequest};

use crate::connect;
use crate::getopt::{getopt, Item};

/// One of the job-control commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Qdel,
    Qhold,
    Qrls,
    Qsig,
    Qrerun,
    Qmove,
    Qmsg,
}

impl Command {
    /// The program name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Command::Qdel => "qdel",
            Command::Qhold => "qhold",
            Command::Qrls => "qrls",
            Command::Qsig => "qsig",
            Command::Qrerun => "qrerun",
            Command::Qmove => "qmove",
            Command::Qmsg => "qmsg",
        }
    }

    /// Torque's usage text (stderr, exit 2).
    pub fn usage(self) -> &'static str {
        match self {
            Command::Qdel => {
                // Torque 6's text (its -c and -t are not built: `invalid option`).
                "usage: qdel [{ -a | -c | -p | -t | -W delay | -m message}] [<JOBID>[<JOBID>]|'all'|'ALL']...\n       -a -c, -m, -p, -t, and -W are mutually exclusive\n"
            }
            Command::Qhold => "usage: qhold [-h hold_list] [-t array_range] job_identifier...\n",
            Command::Qrls => "usage: qrls [-h {uos}] [-t array_range] job_identifier...\n",
            Command::Qsig => "usage: qsig [-a] [-s signal] job_identifier...\n",
            Command::Qrerun => "usage: qrerun [-f] <JOBID>[ <JOBID>]...\n",
            Command::Qmove => "usage: qmove destination job_identifier...\n",
            Command::Qmsg => "usage: qmsg [-O] [-E] msg_string job_identifier...\n",
        }
    }

    fn optstring(self) -> &'static str {
        match self {
            Command::Qdel => "am:pt:W:",
            Command::Qhold | Command::Qrls => "h:t:",
            Command::Qsig => "as:",
            Command::Qrerun => "m:f",
            Command::Qmove => "",
            Command::Qmsg => "EO",
        }
    }

    fn op(self) -> JobOp {
        match self {
            Command::Qdel => JobOp::Delete,
            Command::Qhold => JobOp::Hold,
            Command::Qrls => JobOp::Release,
            Command::Qsig => JobOp::Signal,
            Command::Qrerun => JobOp::Rerun,
            Command::Qmove => JobOp::Move,
            Command::Qmsg => JobOp::Message,
        }
    }
}

/// A command line that cannot be run: the lines to print before the usage text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
    /// Complaints printed before the usage text (each ends in a newline).
    pub preamble: String,
}

/// A parsed command line: the request to send, and the operands in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub command: Command,
    pub hold_types: String,
    pub signal: String,
    /// qmove's destination.
    pub destination: String,
    /// qmsg's message, and its files (`-O`, `-E`; neither: stderr, the server decides).
    pub message: String,
    pub message_stdout: bool,
    pub message_stderr: bool,
    /// qdel `-m`, `-p`, `-W` (Torque's request extensions).
    pub delete_message: String,
    pub purge: bool,
    pub delete_delay_secs: Option<u32>,
    /// qdel/qhold/qrls `-t`: which indices of the arrays named (empty: all).
    pub array_range: String,
    pub ids: Vec<String>,
}

/// Torque's qmsg keeps this many bytes of its message.
const MAX_QMSG_BYTES: usize = 256;

/// Parses `args` (without the program name) Torque's way.
pub fn parse_args(command: Command, args: &[String]) -> Result<Invocation, UsageError> {
    if command == Command::Qmove {
        // Torque's qmove parses no options: the destination, then the job ids.
        return match args {
            [destination, ids @ ..] if !ids.is_empty() => Ok(Invocation {
                command,
                hold_types: String::new(),
                signal: String::new(),
                destination: destination.clone(),
                message: String::new(),
                message_stdout: false,
                message_stderr: false,
                delete_message: String::new(),
                purge: false,
                delete_delay_secs: None,
                array_range: String::new(),
                ids: ids.to_vec(),
            }),
            _ => Err(UsageError {
                preamble: String::new(),
            }),
        };
    }
    let name = command.name();
    let parsed = getopt(args, command.optstring());
    let mut preamble = String::new();
    let mut errors = 0;
    let mut extension_given = false;
    let (mut delete_message, mut purge, mut delete_delay_secs) = (String::new(), false, None);
    let mut hold_types = String::new();
    let mut signal = String::new();
    let (mut message_stdout, mut message_stderr) = (false, false);
    let mut array_range = String::new();
    for item in &parsed.items {
        match item {
            Item::Error(complaint) => {
                preamble.push_str(&format!("{name}: {complaint}\n"));
                errors += 1;
            }
            Item::Opt(letter, arg) => {
                let arg = arg.as_deref().unwrap_or("");
                match (command, letter) {
                    // qdel -m/-p/-W and qrerun -m/-f are mutually exclusive "extensions";
                    // Capstan accepts them (a delete is always a delete) but keeps Torque's checks.
                    (Command::Qdel | Command::Qrerun, 'm') => {
                        if extension_given || arg.contains('=') {
                            errors += 1;
                        }
                        extension_given = true;
                        if command == Command::Qdel {
                            delete_message = arg.to_string();
                        }
                    }
                    (Command::Qdel, 'p') | (Command::Qrerun, 'f') => {
                        if extension_given {
                            errors += 1;
                        }
                        extension_given = true;
                        purge = command == Command::Qdel;
                    }
                    // Asynchronous: Capstan's qdel answers once the delete is committed anyway.
                    (Command::Qdel, 'a') => {
                        if extension_given {
                            errors += 1;
                        }
                        extension_given = true;
                    }
                    (Command::Qdel, 'W') => {
                        if extension_given {
                            errors += 1;
                        } else if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
                            preamble.push_str("qdel: illegal -W value\n");
                            errors += 1;
                        }
                        extension_given = true;
                        // (A delay beyond u32 is the longest one; the server caps it anyway.)
                        delete_delay_secs = Some(arg.parse().unwrap_or(u32::MAX));
                    }
                    (Command::Qhold | Command::Qrls, 'h') => {
                        let value = arg.trim_start();
                        if value.is_empty() || !value.chars().all(|c| matches!(c, 'u' | 'o' | 's'))
                        {
                            preamble.push_str(&format!("{name}: illegal -h value\n"));
                            errors += 1;
                        }
                        hold_types = value.to_string();
                    }
                    // An array's indices; qdel's -t excludes its other extensions.
                    (Command::Qdel | Command::Qhold | Command::Qrls, 't') => {
                        if command == Command::Qdel {
                            if extension_given {
                                errors += 1;
                            }
                            extension_given = true;
                        }
                        if arg.is_empty() {
                            preamble.push_str(&format!(
                                "{name}: illegal -t value (array range cannot be zero length)\n"
                            ));
                            errors += 1;
                        }
                        array_range = arg.to_string();
                    }
                    (Command::Qsig, 'a') => {}
                    (Command::Qsig, 's') => signal = arg.to_string(),
                    (Command::Qmsg, 'O') => message_stdout = true,
                    (Command::Qmsg, 'E') => message_stderr = true,
                    _ => errors += 1,
                }
            }
        }
    }
    let mut operands = parsed.operands;
    // qmsg: the message first, then at least one job.
    let message = if command == Command::Qmsg && operands.len() >= 2 {
        let mut message = operands.remove(0);
        let mut end = message.len().min(MAX_QMSG_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message
    } else if command == Command::Qmsg {
        operands.clear();
        String::new()
    } else {
        String::new()
    };
    if errors > 0 || operands.is_empty() {
        return Err(UsageError { preamble });
    }
    Ok(Invocation {
        command,
        hold_types,
        signal,
        destination: String::new(),
        message,
        message_stdout,
        message_stderr,
        delete_message,
        purge,
        delete_delay_secs,
        array_range,
        ids: operands,
    })
}

/// Whether an operand means "every job" (`qdel all`).
fn is_all(command: Command, id: &str) -> bool {
    command == Command::Qdel && (id == "all" || id == "ALL")
}

/// The requests to send, in operand order: consecutive job ids go together; `qdel all` is a
/// request of its own so its results can be told apart.
pub fn requests(inv: &Invocation) -> Vec<(bool, JobActionRequest)> {
    let mut out: Vec<(bool, JobActionRequest)> = Vec::new();
    for id in &inv.ids {
        let all = is_all(inv.command, id);
        match out.last_mut() {
            Some((false, req)) if !all => req.ids.push(id.clone()),
            _ => out.push((
                all,
                JobActionRequest {
                    op: inv.command.op() as i32,
                    ids: vec![if all { "all".to_string() } else { id.clone() }],
                    hold_types: inv.hold_types.clone(),
                    signal: inv.signal.clone(),
                    destination: inv.destination.clone(),
                    message: inv.message.clone(),
                    message_stdout: inv.message_stdout,
                    message_stderr: inv.message_stderr,
                    delete_message: inv.delete_message.clone(),
                    purge: inv.purge,
                    delete_delay_secs: inv.delete_delay_secs,
                    array_range: inv.array_range.clone(),
                },
            )),
        }
    }
    out
}

/// What to print and how to exit for one result. `from_all`: the result comes from
/// expanding `qdel all`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Text for stdout (Torque's `Deletion Error:` line for `qdel all`).
    pub stdout: String,
    /// Text for stderr.
    pub stderr: String,
    /// The exit status this result contributes (0: leaves the status alone).
    pub exit_code: i32,
}

/// Torque's report of one job's failure (or nothing for a success).
pub fn outcome(command: Command, result: &JobActionResult, from_all: bool) -> Outcome {
    outcome_for(command.name(), result, from_all)
}

/// [`outcome`] for any command by name (qalter shares the job-control wording).
pub fn outcome_for(name: &str, result: &JobActionResult, from_all: bool) -> Outcome {
    let mut out = Outcome {
        stdout: String::new(),
        stderr: String::new(),
        exit_code: 0,
    };
    let Some(err) = result.error.as_ref().filter(|e| e.code != 0) else {
        return out;
    };
    let id = failed_id(result, err);
    let text = pbse::text(err.code);
    let line = complaint_line(name, result, err);
    if from_all {
        // qdel_all skips jobs that vanished or are finishing, reports the rest, and never
        // changes the exit status.
        if err.code != pbse::UNKJOBID && err.code != pbse::BADSTATE {
            out.stdout = format!("Deletion Error: {} ({text})\n", err.code);
            out.stderr = line;
        }
        return out;
    }
    out.exit_code = pbse::exit_code(err.code);
    if err.code == pbse::UNKJOBID {
        if name == "qdel" {
            out.stderr = format!("qdel: nonexistent job id: {id}\n");
        } else if name == "qmsg" || name == "qrerun" {
            // Torque's qmsg looks for the job elsewhere first, then reports it; qrerun
            // reports it (its test is `== PBSE_UNKJOBID` where qhold's is `!=`).
            out.stderr = line;
        }
        return out;
    }
    out.stderr = line;
    out
}

/// Runs a job-control command: `args` without the program name; returns the exit status.
pub fn run(command: Command, args: &[String]) -> i32 {
    let inv = match parse_args(command, args) {
        Ok(inv) => inv,
        Err(usage) => {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "{}{}", usage.preamble, command.usage());
            return 2;
        }
    };
    connect::exit_status_of(command.name(), execute(&inv))
}

async fn execute(inv: &Invocation) -> i32 {
    let name = inv.command.name();
    let mut client = match connect::connect().await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("{}", e.torque_message(name));
            return e.exit_code();
        }
    };
    let mut exit_code = 0;
    for (from_all, req) in requests(inv) {
        let reply = match client.job_action(req).await {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                // A refusal (host not in submit_hosts, ...) reads as Torque reports it.
                if let Some(err) = crate::connect::ConnectError::from_status(&status) {
                    eprintln!("{}", err.torque_message(name));
                    return err.exit_code();
                }
                eprintln!(
                    "{name}: {} MSG={}",
                    pbse::text(pbse::SYSTEM),
                    status.message()
                );
                exit_code = pbse::exit_code(pbse::SYSTEM);
                continue;
            }
        };
        for result in &reply.results {
            let o = outcome(inv.command, result, from_all);
            if !o.stdout.is_empty() {
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(o.stdout.as_bytes());
                let _ = stdout.flush();
            }
            if !o.stderr.is_empty() {
                let _ = std::io::stderr().lock().write_all(o.stderr.as_bytes());
            }
            // Torque's commands exit with the LAST job's answer (each reply sets
            // pbs_errno, 0 on success): `qhold 999 3` exits 0. qdel keeps the last
            // failure (its 6.1.3 source was not at hand to say otherwise).
            if o.exit_code != 0 || inv.command != Command::Qdel {
                exit_code = o.exit_code;
            }
        }
    }
    exit_code
}

/// Torque's qrun usage (stderr, exit 1).
pub const QRUN_USAGE: &str = "Usage: qrun [-a] [-H host] job_id ...\n";

/// What `qrun` was asked: the jobs, and `-H`'s hosts (empty: wherever they fit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrunInvocation {
    pub hosts: String,
    pub ids: Vec<String>,
}

/// Parses qrun's command line (Torque's `qrun.c`: `-H host`, and Torque 6's `-a`, which
/// asks for no wait and changes nothing here); `Err` holds what to print before the usage.
pub fn parse_qrun(args: &[String]) -> Result<QrunInvocation, String> {
    let parsed = getopt(args, "aH:");
    let mut preamble = String::new();
    let mut errors = 0;
    let mut hosts = String::new();
    for item in &parsed.items {
        match item {
            Item::Error(complaint) => {
                preamble.push_str(&format!("qrun: {complaint}\n"));
                errors += 1;
            }
            Item::Opt('H', arg) => {
                let arg = arg.as_deref().unwrap_or("");
                if arg.is_empty() {
                    preamble.push_str("qrun: illegal -H value\n");
                    errors += 1;
                }
                hosts = arg.to_string();
            }
            Item::Opt(_, _) => {}
        }
    }
    if errors > 0 || parsed.operands.is_empty() {
        return Err(preamble);
    }
    Ok(QrunInvocation {
        hosts,
        ids: parsed.operands,
    })
}

/// Torque's report of one qrun failure: `qrun: TEXT[ MSG=DETAIL] JOBID`, an unknown job
/// included (qrun, unlike qhold, says so).
pub fn qrun_complaint(result: &JobActionResult) -> Option<String> {
    let err = result.error.as_ref().filter(|e| e.code != 0)?;
    Some(complaint_line("qrun", result, err))
}

/// The job a failure is about: the one the server names, else the operand.
fn failed_id<'r>(result: &'r JobActionResult, err: &'r PbsError) -> &'r str {
    if err.object.is_empty() {
        &result.id
    } else {
        &err.object
    }
}

/// Torque's `CMD: TEXT[ MSG=DETAIL] JOBID` line for one failed job.
fn complaint_line(name: &str, result: &JobActionResult, err: &PbsError) -> String {
    let id = failed_id(result, err);
    let text = pbse::text(err.code);
    if err.detail.is_empty() {
        format!("{name}: {text} {id}\n")
    } else {
        format!("{name}: {text} MSG={} {id}\n", err.detail)
    }
}

/// Runs `qrun`: `args` without the program name; returns the exit status (Torque's: 1 for
/// a bad command line, 2 if any job could not be run).
pub fn qrun(args: &[String]) -> i32 {
    let inv = match parse_qrun(args) {
        Ok(inv) => inv,
        Err(preamble) => {
            let _ = write!(std::io::stderr().lock(), "{preamble}{QRUN_USAGE}");
            return 1;
        }
    };
    let run = async {
        let mut client = match connect::connect().await {
            Ok(client) => client,
            Err(e) => {
                eprintln!("{}", e.torque_message("qrun"));
                return 2;
            }
        };
        let request = RunJobsRequest {
            ids: inv.ids.clone(),
            hosts: inv.hosts.clone(),
        };
        let reply = match client.run_jobs(request).await {
            Ok(reply) => reply.into_inner(),
            Err(status) => {
                let line = connect::rpc_failure_line("qrun", &status, |message| {
                    format!("qrun: {} MSG={message}\n", pbse::text(pbse::SYSTEM))
                });
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                return 2;
            }
        };
        let mut status = 0;
        for result in &reply.results {
            if let Some(line) = qrun_complaint(result) {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                status = 2;
            }
        }
        status
    };
    connect::exit_status_of("qrun", run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_proto::v1::PbsError;

    #[test]
    fn qrun_parses_torques_options_and_words_its_failures() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_qrun(&args(&["-H", "n1+n2", "4", "5.vm"])),
            Ok(QrunInvocation {
                hosts: "n1+n2".into(),
                ids: args(&["4", "5.vm"]),
            })
        );
        assert_eq!(
            parse_qrun(&args(&["-a", "4"])).map(|i| i.ids),
            Ok(args(&["4"]))
        );
        assert_eq!(parse_qrun(&args(&[])), Err(String::new()));
        assert_eq!(
            parse_qrun(&args(&["-H", "", "4"])),
            Err("qrun: illegal -H value\n".into())
        );
        assert_eq!(
            parse_qrun(&args(&["-x", "4"])),
            Err("qrun: invalid option -- 'x'\n".into())
        );
        let failed = |code, detail: &str| JobActionResult {
            id: "18.vm".into(),
            error: Some(PbsError {
                code,
                detail: detail.into(),
                object: String::new(),
            }),
        };
        assert_eq!(
            qrun_complaint(&failed(pbse::PERM, "")).as_deref(),
            Some("qrun: Unauthorized Request  18.vm\n")
        );
        assert_eq!(
            qrun_complaint(&failed(
                pbse::RESCUNAV,
                "job allocation request exceeds currently available cluster nodes, 1 requested, 0 available"
            ))
            .as_deref(),
            Some("qrun: Resource temporarily unavailable MSG=job allocation request exceeds currently available cluster nodes, 1 requested, 0 available 18.vm\n")
        );
        assert_eq!(
            qrun_complaint(&failed(pbse::UNKJOBID, "")).as_deref(),
            Some("qrun: Unknown Job Id Error 18.vm\n")
        );
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn failed(id: &str, code: i32, detail: &str) -> JobActionResult {
        JobActionResult {
            id: id.to_string(),
            error: Some(PbsError {
                code,
                detail: detail.to_string(),
                object: String::new(),
            }),
        }
    }

    fn report(command: Command, result: &JobActionResult) -> (String, i32) {
        let o = outcome(command, result, false);
        (o.stderr, o.exit_code)
    }

    #[test]
    fn qmsg_takes_its_message_then_jobs_and_reports_unknown_ids() {
        let inv = parse_args(
            Command::Qmsg,
            &args(&["-O", "-E", "hello there", "1", "2.vm"]),
        )
        .unwrap();
        assert_eq!(inv.message, "hello there");
        assert!(inv.message_stdout && inv.message_stderr);
        assert_eq!(inv.ids, vec!["1", "2.vm"]);
        let inv = parse_args(Command::Qmsg, &args(&["hi", "1"])).unwrap();
        assert!(
            !inv.message_stdout && !inv.message_stderr,
            "the server's default: stderr"
        );
        let long = "é".repeat(200);
        let inv = parse_args(Command::Qmsg, &args(&[&long, "1"])).unwrap();
        assert_eq!(
            inv.message,
            "é".repeat(128),
            "256 bytes, on a character's boundary"
        );
        assert!(parse_args(Command::Qmsg, &args(&["only a message"])).is_err());
        assert!(parse_args(Command::Qmsg, &args(&["-x", "m", "1"])).is_err());
        assert_eq!(
            Command::Qmsg.usage(),
            "usage: qmsg [-O] [-E] msg_string job_identifier...\n"
        );
        assert_eq!(
            report(Command::Qmsg, &failed("99.vm", pbse::UNKJOBID, "")),
            ("qmsg: Unknown Job Id Error 99.vm\n".to_string(), 153)
        );
        let request = &requests(&parse_args(Command::Qmsg, &args(&["-O", "m", "1"])).unwrap())[0].1;
        assert_eq!(
            (
                request.op,
                request.message.as_str(),
                request.message_stdout,
                request.message_stderr
            ),
            (JobOp::Message as i32, "m", true, false)
        );
    }

    #[test]
    fn reference_section_5_messages() {
        assert_eq!(
            report(Command::Qdel, &failed("999.vm", pbse::UNKJOBID, "")),
            ("qdel: nonexistent job id: 999.vm\n".to_string(), 153)
        );
        assert_eq!(
            report(
                Command::Qdel,
                &failed("0.vm", pbse::BADSTATE, "invalid state for job - COMPLETE")
            ),
            (
                "qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE 0.vm\n"
                    .to_string(),
                170
            )
        );
        assert_eq!(
            report(
                Command::Qhold,
                &failed("0.vm", pbse::BADSTATE, "invalid state for job - COMPLETE")
            ),
            (
                "qhold: Request invalid for state of job MSG=invalid state for job - COMPLETE 0.vm\n"
                    .to_string(),
                170
            )
        );
        assert_eq!(
            report(Command::Qhold, &failed("999.vm", pbse::UNKJOBID, "")),
            (String::new(), 153)
        );
        assert_eq!(
            report(Command::Qhold, &failed("25.vm", pbse::PERM, "")),
            ("qhold: Unauthorized Request  25.vm\n".to_string(), 159)
        );
        assert_eq!(
            report(Command::Qrls, &failed("25.vm", pbse::BAD_STATE_TRANSITION, "")),
            (
                "qrls: The requested state or substate can't be set from the job's current state (slot limit in effect). 25.vm\n"
                    .to_string(),
                70
            )
        );
        assert_eq!(
            report(Command::Qrls, &failed("25.vm", pbse::PERM, "")),
            ("qrls: Unauthorized Request  25.vm\n".to_string(), 159)
        );
        assert_eq!(
            report(Command::Qsig, &failed("18.vm", pbse::BADSTATE, "")),
            (
                "qsig: Request invalid for state of job 18.vm\n".to_string(),
                170
            )
        );
        assert_eq!(
            report(
                Command::Qrerun,
                &failed(
                    "14.vm",
                    pbse::PERM,
                    "additional permissions required (ATR_DFLAG_MGWR | ATR_DFLAG_OPWR)"
                )
            ),
            (
                "qrerun: Unauthorized Request  MSG=additional permissions required (ATR_DFLAG_MGWR | ATR_DFLAG_OPWR) 14.vm\n"
                    .to_string(),
                159
            )
        );
        let ok = JobActionResult {
            id: "1.vm".into(),
            error: None,
        };
        assert_eq!(report(Command::Qdel, &ok), (String::new(), 0));
    }

    #[test]
    fn error_object_names_the_job() {
        let mut r = failed("999", pbse::UNKJOBID, "");
        if let Some(e) = r.error.as_mut() {
            e.object = "999.vm".into();
        }
        assert_eq!(
            report(Command::Qdel, &r).0,
            "qdel: nonexistent job id: 999.vm\n"
        );
    }

    #[test]
    fn qdel_all_failures() {
        let o = outcome(Command::Qdel, &failed("3.vm", pbse::BADSTATE, "x"), true);
        assert_eq!(
            (o.stdout.as_str(), o.stderr.as_str(), o.exit_code),
            ("", "", 0)
        );
        let o = outcome(Command::Qdel, &failed("3.vm", pbse::PERM, ""), true);
        assert_eq!(o.stdout, "Deletion Error: 15007 (Unauthorized Request )\n");
        assert_eq!(o.stderr, "qdel: Unauthorized Request  3.vm\n");
        assert_eq!(o.exit_code, 0);
    }

    #[test]
    fn option_parsing_and_usage() {
        let inv = parse_args(Command::Qhold, &args(&["-h", "uo", "1", "2.vm"])).unwrap();
        assert_eq!(inv.hold_types, "uo");
        assert_eq!(inv.ids, vec!["1", "2.vm"]);
        let inv = parse_args(Command::Qsig, &args(&["-s", "USR1", "14.vm"])).unwrap();
        assert_eq!(inv.signal, "USR1");

        let e = parse_args(Command::Qhold, &args(&["-h", "x", "1"])).unwrap_err();
        assert_eq!(e.preamble, "qhold: illegal -h value\n");
        let e = parse_args(Command::Qdel, &args(&["-Z", "1"])).unwrap_err();
        assert_eq!(e.preamble, "qdel: invalid option -- 'Z'\n");
        let e = parse_args(Command::Qsig, &args(&["-s"])).unwrap_err();
        assert_eq!(e.preamble, "qsig: option requires an argument -- 's'\n");
        let e = parse_args(Command::Qrerun, &args(&[])).unwrap_err();
        assert_eq!(e.preamble, "");
        assert!(parse_args(Command::Qdel, &args(&["-p", "-W", "5", "1"])).is_err());
        assert!(parse_args(Command::Qdel, &args(&["-W", "x", "1"])).is_err());
        assert!(parse_args(Command::Qdel, &args(&["-p", "1"])).is_ok());
        assert!(parse_args(Command::Qdel, &args(&["-a", "-p", "1"])).is_err());
        let inv = parse_args(Command::Qdel, &args(&["-W", "30", "1"])).unwrap();
        assert_eq!((inv.delete_delay_secs, inv.purge), (Some(30), false));
        let inv = parse_args(Command::Qdel, &args(&["-m", "maintenance", "1"])).unwrap();
        assert_eq!(inv.delete_message, "maintenance");
        assert!(parse_args(Command::Qdel, &args(&["-a", "1"])).is_ok());
        assert_eq!(
            Command::Qdel.usage(),
            "usage: qdel [{ -a | -c | -p | -t | -W delay | -m message}] [<JOBID>[<JOBID>]|'all'|'ALL']...\n       -a -c, -m, -p, -t, and -W are mutually exclusive\n"
        );
    }

    #[test]
    fn requests_group_ids_and_isolate_all() {
        let inv = parse_args(Command::Qdel, &args(&["1", "2", "all", "3"])).unwrap();
        let reqs = requests(&inv);
        let shape: Vec<(bool, Vec<String>)> =
            reqs.iter().map(|(all, r)| (*all, r.ids.clone())).collect();
        assert_eq!(
            shape,
            vec![
                (false, args(&["1", "2"])),
                (true, args(&["all"])),
                (false, args(&["3"])),
            ]
        );
        assert!(reqs.iter().all(|(_, r)| r.op == JobOp::Delete as i32));
        // `all` is only special for qdel.
        let inv = parse_args(Command::Qhold, &args(&["all"])).unwrap();
        assert!(!requests(&inv)[0].0);
    }
}
