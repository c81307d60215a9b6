//! `qstat`: show jobs, queues or the server, in Torque 6.1.3's exact formats.
//!
//! Option handling follows Torque's `src/cmds/qstat.c` (its option string, its conflict
//! rules, its usage text and exit statuses); printing is done by the pure renderers in
//! `capstan_client::format`. This file only parses, asks the server, renders and exits.

use std::process::ExitCode;

use capstan_client::connect::{self, ConnectError};
use capstan_client::format::jobs::{self, AltOptions, Filter, MemUnit};
use capstan_client::format::table::{MalformedTable, Table};
use capstan_client::format::wrap::{LINE_SIZE, NO_WRAP};
use capstan_client::format::{emit, queues, Object, ServerError};
use capstan_client::getopt::{getopt, Item};
use capstan_proto::pbse;
use capstan_proto::text::before_at;
use capstan_proto::v1::batch_client::BatchClient;
use capstan_proto::v1::{StatJobsRequest, StatQueuesRequest, StatReply, StatServerRequest};
use tonic::transport::Channel;

/// Torque's option string (`src/cmds/qstat.c`), `-:` included for `--version`.
const OPTSTRING: &str = "aeE:filn1qrstu:xGMQRBW:-:";

/// Torque's usage text, byte for byte (note the space after `usage:`).
const USAGE: &str = concat!(
    "usage: \n",
    "                          qstat [-f [-1]] [-W site_specific] [-x] [ job_identifier... | destination... ]\n",
    "                          qstat [-a|-i|-r|-e] [-u user] [-n [-1]] [-s] [-t] [-G|-M] [-R] [job_id... | destination...]\n",
    "                          qstat -Q [-f [-1]] [-W site_specific] [ destination... ]\n",
    "                          qstat -q [-G|-M] [ destination... ]\n",
    "                          qstat -B [-f [-1]] [-W site_specific] [ server_name... ]\n",
    "                          qstat -t\n",
);

const CONFLICT: &str = "qstat: conflicting options.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Jobs,
    Queues,
    Servers,
}

/// Torque's `alt_opt` bits that select the alternative job listing.
#[derive(Debug, Default, Clone)]
struct Alt {
    a: bool,
    i: bool,
    r: bool,
    u: bool,
    n: bool,
    s: bool,
    q: bool,
    big_r: bool,
    g: bool,
    m: bool,
    one: bool,
}

impl Alt {
    /// Whether an alternative-display option other than `-u` was given (`-f` accepts `-u`).
    fn any_but_user(&self) -> bool {
        Alt {
            u: false,
            ..self.clone()
        }
        .any()
    }

    /// Whether any alternative-display option was given (Torque's `alt_opt != 0`).
    /// `-1` alone is not one: it only modifies `-n` (hosts on the row) or `-f` (no wrapping).
    fn any(&self) -> bool {
        self.a
            || self.i
            || self.r
            || self.u
            || self.n
            || self.s
            || self.q
            || self.big_r
            || self.g
            || self.m
    }
}

#[derive(Debug)]
struct Options {
    mode: Mode,
    alt: Alt,
    full: bool,
    xml: bool,
    expand_arrays: bool,
    exec_only: bool,
    users: Vec<String>,
    operands: Vec<String>,
}

/// What the command line asks for, or how to exit right away.
enum Parse {
    Run(Options),
    Exit(ExitCode),
}

fn parse(args: &[String]) -> Parse {
    let parsed = getopt(args, OPTSTRING);
    let mut errflg = false;
    let mut o = Options {
        mode: Mode::Jobs,
        alt: Alt::default(),
        full: false,
        xml: false,
        expand_arrays: false,
        exec_only: std::env::var_os("PBS_QSTAT_EXECONLY").is_some(),
        users: Vec::new(),
        operands: parsed.operands,
    };
    let (mut b_opt, mut q_opt) = (false, false);

    for item in parsed.items {
        let (c, arg) = match item {
            Item::Opt(c, arg) => (c, arg),
            Item::Error(msg) => {
                eprintln!("qstat: {msg}");
                errflg = true;
                continue;
            }
        };
        match c {
            '1' => o.alt.one = true,
            'a' => o.alt.a = true,
            'e' => o.exec_only = true,
            'E' => {} // Torque's extension options: nothing to extend here.
            'i' => o.alt.i = true,
            'n' => o.alt.n = true,
            'q' => {
                o.alt.q = true;
                o.mode = Mode::Queues;
            }
            'r' => o.alt.r = true,
            's' => o.alt.s = true,
            't' => o.expand_arrays = true,
            'u' => {
                o.alt.u = true;
                o.users.extend(users(arg.as_deref().unwrap_or("")));
            }
            'R' => o.alt.big_r = true,
            'G' => o.alt.g = true,
            'M' => o.alt.m = true,
            'f' => {
                if o.alt.any_but_user() {
                    return incompatible('f');
                }
                o.full = true;
            }
            'x' => o.xml = true,
            'B' => {
                b_opt = true;
                o.mode = Mode::Servers;
                if q_opt || o.alt.any() {
                    return incompatible('B');
                }
            }
            'l' => {} // Torque's alias display; Capstan job ids have no alias part.
            'Q' => {
                q_opt = true;
                o.mode = Mode::Queues;
                if b_opt || o.alt.any() {
                    return incompatible('Q');
                }
            }
            '-' => {
                if arg.as_deref() == Some("version") {
                    // Torque prints its git commit here; Capstan has none to offer at build
                    // time, so it names its own crate version instead.
                    eprintln!(
                        "Version: {}\nCommit: capstan-{}",
                        capstan_proto::PBS_VERSION,
                        env!("CARGO_PKG_VERSION")
                    );
                    return Parse::Exit(ExitCode::SUCCESS);
                }
                errflg = true;
            }
            'W' => {
                // Site-specific letters, as Torque's `-W` handling reads them.
                let spec = arg.unwrap_or_default();
                let mut chars = spec.chars();
                while let Some(w) = chars.next() {
                    match w {
                        'a' => o.alt.a = true,
                        'i' => o.alt.i = true,
                        'r' => o.alt.r = true,
                        'u' => {
                            // The rest of the string is the user list.
                            o.alt.u = true;
                            let rest: String = chars.by_ref().collect();
                            o.users.extend(users(rest.trim_start()));
                        }
                        'n' => o.alt.n = true,
                        's' => o.alt.s = true,
                        'q' => {
                            o.alt.q = true;
                            o.mode = Mode::Queues;
                        }
                        'R' => o.alt.big_r = true,
                        'G' => o.alt.g = true,
                        'M' => o.alt.m = true,
                        ' ' => {}
                        _ => errflg = true,
                    }
                }
            }
            _ => errflg = true,
        }
    }

    // Combinations Torque refuses.
    let selectors = [o.alt.a, o.alt.i, o.alt.r, o.alt.q];
    if selectors.iter().filter(|b| **b).count() > 1 {
        eprintln!("{CONFLICT}");
        errflg = true;
    }
    if o.alt.m && o.alt.g {
        eprintln!("{CONFLICT}");
        errflg = true;
    }
    if o.alt.q && o.full {
        eprintln!("{CONFLICT}");
        errflg = true;
    }
    if o.alt.one && !(o.alt.n || o.full) {
        eprintln!("{CONFLICT}");
        errflg = true;
    }
    if errflg {
        eprint!("{USAGE}");
        return Parse::Exit(ExitCode::from(2));
    }
    if o.full && o.alt.u {
        // Torque's quirk: with -f, -u is accepted and then not applied.
        o.alt.u = false;
        o.users.clear();
    }
    Parse::Run(o)
}

/// `-f`, `-B` or `-Q` after an option it does not combine with: Torque stops parsing there.
fn incompatible(option: char) -> Parse {
    eprintln!("{CONFLICT}\n -{option} incompatible with one or more options. Read qstat man page");
    eprint!("{USAGE}");
    Parse::Exit(ExitCode::from(2))
}

/// A `-u` user list: `bob,al` (a `@host` part is ignored, as owners are matched by name).
fn users(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(|u| before_at(u).trim().to_string())
        .filter(|u| !u.is_empty())
}

/// How a failed call ends the command.
enum Failure {
    Connect(ConnectError),
    Rpc(tonic::Status),
    Malformed(MalformedTable),
}

impl Failure {
    fn report(&self) -> ExitCode {
        match self {
            Failure::Connect(err) => eprintln!("{}", err.torque_message("qstat")),
            // A refusal (host not in submit_hosts, ...) reads as Torque reports it: at connect.
            Failure::Rpc(status) => match ConnectError::from_status(status) {
                Some(err) => eprintln!("{}", err.torque_message("qstat")),
                None => eprintln!(
                    "qstat: cannot connect to server {} (errno=0) {}",
                    connect::default_server_name(),
                    status.message()
                ),
            },
            Failure::Malformed(err) => eprintln!("qstat: {err}"),
        }
        ExitCode::from(1)
    }
}

/// Exit status for a list of server errors: the last one's, as Torque exits with the
/// status of its last failed request; success when there is none.
fn exit_for(errors: &[ServerError]) -> ExitCode {
    match errors.last() {
        Some(e) => ExitCode::from(e.exit_code() as u8),
        None => ExitCode::SUCCESS,
    }
}

/// The attributes a listing prints, so the server sends only those (Torque's `attrl`);
/// `-f` and `-x` print everything.
fn wanted_attributes(o: &Options) -> Vec<String> {
    // Only what the listing prints: in a 5,000-job listing every attribute is 5,000 strings
    // built, sent and decoded.
    const DEFAULT: &[&str] = &[
        "Job_Name",
        "Job_Owner",
        "resources_used.cput",
        "job_state",
        "queue",
    ];
    const ALT_EXTRA: &[&str] = &[
        "resources_used",
        "session_id",
        "Resource_List",
        "exec_host",
        "comment",
    ];
    if o.full || o.xml {
        return Vec::new();
    }
    let mut names: Vec<&str> = DEFAULT.to_vec();
    if o.alt.any() {
        names.extend_from_slice(ALT_EXTRA);
    }
    if o.exec_only {
        names.push("queue_type");
    }
    names.into_iter().map(String::from).collect()
}

/// A queue or server reply: its objects and errors.
fn split_reply(reply: StatReply) -> (String, Vec<Object>, Vec<ServerError>) {
    (
        reply.server_name,
        reply.objects.into_iter().map(Object::from).collect(),
        reply.errors.into_iter().map(ServerError::from).collect(),
    )
}

async fn jobs_mode(client: &mut BatchClient<Channel>, o: &Options) -> Result<ExitCode, Failure> {
    let reply = client
        .stat_jobs(StatJobsRequest {
            operands: o.operands.clone(),
            attributes: wanted_attributes(o),
            // Torque's qstat summarises arrays only without -t and -e.
            expand_arrays: o.expand_arrays || o.exec_only,
        })
        .await
        .map_err(Failure::Rpc)?
        .into_inner();
    let errors: Vec<ServerError> = reply.errors.into_iter().map(ServerError::from).collect();
    let table = match reply.table.map(Table::try_from).transpose() {
        Ok(table) => table.unwrap_or_default(),
        Err(malformed) => return Err(Failure::Malformed(malformed)),
    };
    let filter = Filter {
        users: o.users.clone(),
        idle: o.alt.i,
        running: o.alt.r,
        exec_only: o.exec_only,
    };

    let text = if o.alt.any() || o.xml || o.full {
        let selected = jobs::select(table.into_objects(), &filter);
        let text = if o.alt.any() {
            let comment = if selected.is_empty() {
                None
            } else {
                server_comment(client).await
            };
            let opts = AltOptions {
                nodes: o.alt.n,
                one_line: o.alt.one,
                comments: o.alt.s,
                srfs: o.alt.big_r,
                mem_unit: if o.alt.g {
                    MemUnit::Gigabytes
                } else if o.alt.m {
                    MemUnit::Megawords
                } else {
                    MemUnit::AsGiven
                },
            };
            jobs::alt_listing(
                &reply.server_name,
                comment.as_deref(),
                &selected,
                &opts,
                true,
            )
        } else if o.xml {
            jobs::xml_listing(&selected)
        } else {
            let linesize = if o.alt.one { NO_WRAP } else { LINE_SIZE };
            jobs::full_listing(&selected, linesize, &chrono::Local)
        };
        // The process ends right after this listing: freeing thousands of objects one by
        // one would cost more than building them, so let the exit reclaim them.
        std::mem::forget(selected);
        text
    } else {
        // The default listing prints straight from the reply's packed buffers.
        jobs::default_listing(&jobs::select(table.rows().collect(), &filter), true)
    };
    emit(&text);

    for e in &errors {
        if e.code == pbse::UNKQUE {
            // Torque words a bad destination operand this way (`nosuchq@vm` -> `nosuchq`).
            let queue = before_at(&e.object);
            eprintln!("qstat: Unknown queue destination {queue}");
        } else if e.code == pbse::UNKJOBID || e.detail.is_empty() {
            // Torque prints the raw text: `qstat: Unauthorized Request  12.vm` (two spaces).
            eprintln!("qstat: {} {}", pbse::text(e.code), e.object);
        } else {
            eprintln!("qstat: {} {}", e.message(), e.object);
        }
    }
    Ok(exit_for(&errors))
}

/// The server's `comment`, printed after `SERVER: ` by the alternative listing.
async fn server_comment(client: &mut BatchClient<Channel>) -> Option<String> {
    let reply = client
        .stat_server(StatServerRequest {})
        .await
        .ok()?
        .into_inner();
    let server = reply.objects.into_iter().next().map(Object::from)?;
    server.get("comment").map(str::to_string)
}

async fn queues_mode(client: &mut BatchClient<Channel>, o: &Options) -> Result<ExitCode, Failure> {
    // Torque asks once per operand; `@server` (or no operand) means every queue.
    let names: Vec<String> = if o.operands.is_empty() {
        vec![String::new()]
    } else {
        o.operands
            .iter()
            .map(|d| before_at(d).to_string())
            .collect()
    };
    let mut header = true;
    let mut status = ExitCode::SUCCESS;
    for name in names {
        let request = StatQueuesRequest {
            names: if name.is_empty() {
                vec![]
            } else {
                vec![name.clone()]
            },
        };
        let reply = client
            .stat_queues(request)
            .await
            .map_err(Failure::Rpc)?
            .into_inner();
        let (server, objects, errors) = split_reply(reply);
        let text = if o.alt.q {
            queues::queue_limits(&server, &objects)
        } else if o.full {
            let linesize = if o.alt.one { NO_WRAP } else { LINE_SIZE };
            queues::queue_full(&objects, linesize)
        } else {
            queues::queue_summary(&objects, header)
        };
        if !objects.is_empty() {
            header = false;
        }
        emit(&text);
        for e in &errors {
            let object = if e.object.is_empty() {
                name.as_str()
            } else {
                e.object.as_str()
            };
            eprintln!("qstat: {} {object}", e.message());
        }
        status = exit_for(&errors);
    }
    Ok(status)
}

async fn servers_mode(client: &mut BatchClient<Channel>, o: &Options) -> Result<ExitCode, Failure> {
    let count = o.operands.len().max(1);
    let mut header = true;
    let mut status = ExitCode::SUCCESS;
    for i in 0..count {
        let reply = client
            .stat_server(StatServerRequest {})
            .await
            .map_err(Failure::Rpc)?
            .into_inner();
        let (_, objects, errors) = split_reply(reply);
        let text = if o.full {
            let linesize = if o.alt.one { NO_WRAP } else { LINE_SIZE };
            queues::server_full(&objects, linesize)
        } else {
            queues::server_summary(&objects, header)
        };
        if !objects.is_empty() {
            header = false;
        }
        emit(&text);
        let operand = o.operands.get(i).map(String::as_str).unwrap_or("");
        for e in &errors {
            eprintln!("qstat: {} {operand}", e.message());
        }
        status = exit_for(&errors);
    }
    Ok(status)
}

async fn run(o: Options) -> Result<ExitCode, Failure> {
    let mut client = connect::connect().await.map_err(Failure::Connect)?;
    match o.mode {
        Mode::Jobs => jobs_mode(&mut client, &o).await,
        Mode::Queues => queues_mode(&mut client, &o).await,
        Mode::Servers => servers_mode(&mut client, &o).await,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Parse::Run(o) => o,
        Parse::Exit(code) => return code,
    };
    match run(options).await {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_parse(args: &[&str]) -> Option<Options> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&args) {
            Parse::Run(o) => Some(o),
            Parse::Exit(_) => None,
        }
    }

    #[test]
    fn usage_text_is_torques() {
        let lines: Vec<&str> = USAGE.lines().collect();
        assert_eq!(lines[0], "usage: ");
        assert_eq!(lines.len(), 7);
        assert!(lines[1..]
            .iter()
            .all(|l| l.starts_with(&format!("{}qstat ", " ".repeat(26)))));
    }

    #[test]
    fn modes_and_filters() {
        let o = run_parse(&["-u", "bob,al@vm", "-n", "-1", "12"]).unwrap();
        assert_eq!(o.mode, Mode::Jobs);
        assert!(o.alt.u && o.alt.n && o.alt.one);
        assert_eq!(o.users, ["bob", "al"]);
        assert_eq!(o.operands, ["12"]);
        assert_eq!(run_parse(&["-Q", "-f"]).unwrap().mode, Mode::Queues);
        assert_eq!(run_parse(&["-q"]).unwrap().mode, Mode::Queues);
        assert_eq!(run_parse(&["-B"]).unwrap().mode, Mode::Servers);
        assert!(run_parse(&["-f", "-1", "-x"]).unwrap().xml);
        assert!(run_parse(&["-W", "u bob"]).unwrap().users == ["bob"]);
    }

    #[test]
    fn conflicts_and_bad_options_stop() {
        assert!(run_parse(&["-a", "-f"]).is_none());
        assert!(run_parse(&["-a", "-r"]).is_none());
        assert!(run_parse(&["-G", "-M"]).is_none());
        assert!(run_parse(&["-q", "-f"]).is_none());
        assert!(run_parse(&["-1"]).is_none());
        assert!(run_parse(&["-Q", "-B"]).is_none());
        assert!(run_parse(&["-Z"]).is_none());
        assert!(run_parse(&["--bogus"]).is_none());
        // Torque checks `-f` against options seen so far, so `-f -a` is accepted.
        assert!(run_parse(&["-f", "-a"]).is_some());
        // -u goes with -f, and is then not applied (Torque drops the filter).
        for args in [&["-u", "bob", "-f"], &["-f", "-u", "bob"]] {
            let o = run_parse(args).unwrap();
            assert!(o.full && !o.alt.u && o.users.is_empty(), "{args:?}");
        }
        assert!(run_parse(&["-u", "bob", "-n", "-f"]).is_none());
    }
}
