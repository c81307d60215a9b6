//! `pbsnodes` (and `qnodes`, the same program under another name, as Torque installs it):
//! list nodes, mark them offline or clear that, set their notes.
//!
//! Option handling and messages follow Torque's `src/cmds/pbsnodes.c` (6.1.3's usage text),
//! which names itself by `argv[0]`; printing is done by `capstan_client::format::nodes`.

use std::process::ExitCode;

use capstan_client::connect::{self, ConnectError};
use capstan_client::format::nodes::{self, ListState};
use capstan_client::format::{emit, Object, ServerError};
use capstan_client::getopt::{getopt, Item};
use capstan_proto::v1::batch_client::BatchClient;
use capstan_proto::v1::{ModifyNodesRequest, NodeOp, StatNodesRequest};
use tonic::transport::Channel;

/// Torque 6.1.3's option string, `-:` included for `--version`.
const OPTSTRING: &str = "aA:cdlm:opqrs:x-:N:n";

/// Torque's usage text, `{}` being the program's name.
fn usage() -> String {
    let name = progname();
    format!("usage:\t{name} [-{{c|d|l|o|p|r}}] [-s server] [-n] [-N \"note\"] [-A \"append note\"] [-q] [-m standby|suspend|sleep|hibernate|shutdown] node ...\n\
\t{name} [-{{a|x}}] [-s server] [-q] [node]\n")
}

/// The name this program was called by (`pbsnodes` or `qnodes`), for its messages.
fn progname() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(std::path::Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "pbsnodes".into())
}

/// What to do (Torque's `flag`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// `-a` (default) and `-x`: show nodes.
    All,
    /// `-l`: list nodes by state.
    List,
    /// `-c`: clear offline.
    Clear,
    /// `-o`: mark offline.
    Offline,
    /// `-r`: reset (clear offline).
    Reset,
    /// `-N` alone: only set the note.
    Note,
    /// `-d`, `-p`: accepted, nothing done (not implemented in Torque either).
    Nothing,
}

/// What `-N` or `-A` does to the nodes' notes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NoteEdit {
    /// `-N TEXT`: the note becomes TEXT; `Set("")` clears it (`-N n`).
    Set(String),
    /// `-A TEXT`: TEXT is appended to the note, after ", ".
    Append(String),
}

struct Options {
    action: Action,
    xml: bool,
    quiet: bool,
    /// `-N` or `-A`.
    note: Option<NoteEdit>,
    /// `-n` (with `-l`): show notes.
    list_notes: bool,
    operands: Vec<String>,
}

enum Parse {
    Run(Options),
    Exit(ExitCode),
}

fn parse(args: &[String]) -> Parse {
    let parsed = getopt(args, OPTSTRING);
    let mut errflg = false;
    let mut o = Options {
        action: Action::All,
        xml: false,
        quiet: false,
        note: None,
        list_notes: false,
        operands: parsed.operands,
    };
    for item in parsed.items {
        let (c, arg) = match item {
            Item::Opt(c, arg) => (c, arg),
            Item::Error(msg) => {
                eprintln!("{}: {msg}", progname());
                errflg = true;
                continue;
            }
        };
        match c {
            'a' => o.action = Action::All,
            'c' => o.action = Action::Clear,
            'd' | 'p' => o.action = Action::Nothing,
            'l' => o.action = Action::List,
            'o' => o.action = Action::Offline,
            'q' => o.quiet = true,
            'r' => o.action = Action::Reset,
            's' => {} // Capstan commands always talk to the local server's socket.
            'x' => {
                o.action = Action::All;
                o.xml = true;
            }
            'N' | 'A' => {
                // -N and -A combine with -o, -c, ...; alone they only change the note.
                if o.action == Action::All {
                    o.action = Action::Note;
                }
                let text = arg.unwrap_or_default();
                if text.contains('\n') {
                    eprintln!("Warning: note contains a newline - server may reject it...");
                }
                o.note = Some(match c {
                    'A' => NoteEdit::Append(text),
                    // `-N n` is the same as `-N ""`: it clears the note.
                    _ if text == "n" => NoteEdit::Set(String::new()),
                    _ => NoteEdit::Set(text),
                });
            }
            'n' => o.list_notes = true,
            'm' => {
                eprintln!(
                    "{}: option -{c} is not supported by this server",
                    progname()
                );
                return Parse::Exit(ExitCode::from(1));
            }
            '-' => {
                if arg.as_deref() == Some("version") {
                    // Torque prints its git commit; Capstan names its crate version instead.
                    eprintln!(
                        "Version: {}\nCommit: capstan-{}",
                        capstan_proto::PBS_VERSION,
                        env!("CARGO_PKG_VERSION")
                    );
                    return Parse::Exit(ExitCode::SUCCESS);
                }
                errflg = true;
            }
            _ => errflg = true,
        }
    }
    if o.list_notes && o.action != Action::List {
        eprintln!("Error: -n requires -l");
        errflg = true;
    }
    if o.operands.iter().any(String::is_empty) {
        errflg = true;
    }
    if errflg {
        if !o.quiet {
            eprint!("{}", usage());
        }
        return Parse::Exit(ExitCode::from(1));
    }
    Parse::Run(o)
}

/// How the command ended early.
enum Failure {
    Connect(ConnectError),
    Rpc(tonic::Status),
    /// Already reported; exit with this status.
    Exit(u8),
}

/// Torque's `statnode()`: the nodes for one operand (`""` = all); an error is printed and
/// ends the command with status 1, an empty answer with `No nodes found` and status 2.
async fn stat(
    client: &mut BatchClient<Channel>,
    name: &str,
    quiet: bool,
) -> Result<Vec<Object>, Failure> {
    let names = if name.is_empty() {
        vec![]
    } else {
        vec![name.to_string()]
    };
    let reply = client
        .stat_nodes(StatNodesRequest { names })
        .await
        .map_err(Failure::Rpc)?
        .into_inner();
    if let Some(e) = reply.errors.into_iter().next() {
        if !quiet {
            eprintln!("{}: {}", progname(), ServerError::from(e).message());
        }
        return Err(Failure::Exit(1));
    }
    if reply.objects.is_empty() {
        if !quiet {
            eprintln!("{}: No nodes found", progname());
        }
        return Err(Failure::Exit(2));
    }
    Ok(reply.objects.into_iter().map(Object::from).collect())
}

async fn run(o: Options) -> Result<(), Failure> {
    let mut client = connect::connect().await.map_err(Failure::Connect)?;

    // `-l` takes an optional state word before the node names.
    let mut operands = o.operands.clone();
    let mut which = ListState::Problem;
    if o.action == Action::List {
        if let Some(state) = operands.first().and_then(|w| ListState::parse(w)) {
            which = state;
            operands.remove(0);
        }
    }

    let op = match o.action {
        Action::Offline => Some(NodeOp::Offline),
        Action::Clear => Some(NodeOp::Clear),
        Action::Reset => Some(NodeOp::Reset),
        Action::Note => Some(NodeOp::NoteOnly),
        _ if o.note.is_some() => Some(NodeOp::NoteOnly),
        _ => None,
    };
    if let Some(op) = op {
        if !operands.is_empty() {
            modify(&mut client, &operands, op, o.note.clone(), o.quiet).await?;
        }
    }

    match o.action {
        Action::All | Action::List => {
            let targets = if operands.is_empty() {
                vec![String::new()]
            } else {
                operands
            };
            let mut found = Vec::new();
            for name in &targets {
                let nodes = stat(&mut client, name, o.quiet).await;
                match nodes {
                    Ok(nodes) => {
                        // Torque prints each operand's nodes as it goes, except XML,
                        // which is written once at the end.
                        if o.action == Action::List {
                            emit(&nodes::list(&nodes, which, o.list_notes));
                        } else if o.xml {
                            found.extend(nodes);
                        } else {
                            emit(&nodes::blocks(&nodes));
                        }
                    }
                    Err(f) => return Err(f),
                }
            }
            if o.xml {
                emit(&nodes::xml(&found));
            }
        }
        _ => {}
    }
    Ok(())
}

/// `-o`, `-c`, `-r`, `-N`, `-A`: errors are reported per node in Torque's words and, as in
/// Torque, do not change the exit status.
async fn modify(
    client: &mut BatchClient<Channel>,
    names: &[String],
    op: NodeOp,
    note: Option<NoteEdit>,
    quiet: bool,
) -> Result<(), Failure> {
    let has_note = note.is_some();
    let (note, append_note) = match note {
        Some(NoteEdit::Set(text)) => (Some(text), false),
        Some(NoteEdit::Append(text)) => (Some(text), true),
        None => (None, false),
    };
    let reply = client
        .modify_nodes(ModifyNodesRequest {
            names: names.to_vec(),
            op: op as i32,
            note,
            append_note,
        })
        .await
        .map_err(Failure::Rpc)?
        .into_inner();
    if quiet {
        return Ok(());
    }
    for mut e in reply.errors.into_iter().map(ServerError::from) {
        if e.object.is_empty() && names.len() == 1 {
            e.object = names[0].clone();
        }
        // Torque sets the note and the state in two requests, each reporting its failure.
        if has_note {
            eprintln!(
                "Error setting note attribute for {} - {}",
                e.object,
                e.message()
            );
        }
        if op != NodeOp::NoteOnly {
            eprintln!("Error marking node {} - {}", e.object, e.message());
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
pub async fn main() -> ExitCode {
    // Lossy, as every command's: an argument that is not UTF-8 must not panic.
    let args = capstan_client::getopt::args();
    let options = match parse(&args) {
        Parse::Run(o) => o,
        Parse::Exit(code) => return code,
    };
    let quiet = options.quiet;
    // A refusal (host not in submit_hosts, ...) is reported as Torque reports it: at connect.
    let result = run(options).await.map_err(|f| match f {
        Failure::Rpc(status) => ConnectError::from_status(&status)
            .map(Failure::Connect)
            .unwrap_or(Failure::Rpc(status)),
        other => other,
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Exit(code)) => ExitCode::from(code),
        Err(Failure::Connect(err)) => {
            if !quiet {
                let errno = err.errno().unwrap_or(libc::ECONNREFUSED);
                eprintln!(
                    "{}: cannot connect to server {}, error={errno} ({})",
                    progname(),
                    err.server(),
                    ConnectError::reason(errno)
                );
            }
            ExitCode::from(1)
        }
        Err(Failure::Rpc(status)) => {
            if !quiet {
                eprintln!("{}: {}", progname(), status.message());
            }
            ExitCode::from(1)
        }
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
    fn actions_and_notes() {
        let o = run_parse(&["-o", "-N", "maint window", "vm"]).unwrap();
        assert_eq!(o.action, Action::Offline);
        assert_eq!(o.note, Some(NoteEdit::Set("maint window".into())));
        let o = run_parse(&["-N", "n", "vm"]).unwrap();
        assert_eq!(o.action, Action::Note);
        assert_eq!(o.note, Some(NoteEdit::Set(String::new())));
        let o = run_parse(&["-ln", "all"]).unwrap();
        assert_eq!(o.action, Action::List);
        assert!(o.list_notes);
        assert!(run_parse(&["-x"]).unwrap().xml);
        let o = run_parse(&["-A", "n", "vm"]).unwrap();
        assert_eq!(o.action, Action::Note);
        assert_eq!(o.note, Some(NoteEdit::Append("n".into())));
        let o = run_parse(&["-c", "-A", "fan ok", "vm"]).unwrap();
        assert_eq!(o.action, Action::Clear);
        assert_eq!(o.note, Some(NoteEdit::Append("fan ok".into())));
    }

    #[test]
    fn usage_errors() {
        assert!(run_parse(&["--help"]).is_none());
        assert!(run_parse(&["-n"]).is_none());
        assert!(run_parse(&["-Z"]).is_none());
        assert!(run_parse(&["-a", ""]).is_none());
        let usage = usage().replace(&progname(), "pbsnodes");
        assert!(usage.starts_with("usage:\tpbsnodes [-{c|d|l|o|p|r}] [-s server] [-n]"));
        assert!(usage.ends_with("\n\tpbsnodes [-{a|x}] [-s server] [-q] [node]\n"));
    }
}
