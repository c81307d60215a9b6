//! qterm: stop the server (operators and managers), as Torque's does:
//!
//! * `-t quick` (the default): running jobs keep running on their nodes, and the restarted
//!   server finds them; `-t immediate`: rerunnable jobs are requeued, the others deleted;
//!   `-t delay`: rerunnable jobs are requeued, the others keep running (the type is read in
//!   any case). No job is checkpointed: Capstan has no checkpointing.
//! * a bad option or type: glibc's complaint, then `Usage: qterm [-t
//!   immediate|delay|quick] [server ...]`, exit 1;
//! * one request per `server` operand (none: the default server), each answered once the
//!   server has stopped its work, so the next `pbs_server` may start as soon as qterm returns;
//!   nothing printed on success;
//! * a refusal: `qterm: TEXT[ MSG=DETAIL]SERVER` (Torque prints the operand right after the
//!   text, whose own trailing space separates them), exit 2.
//!
//! Capstan has one server: a server operand is printed back, not used to choose.

use std::io::Write;

use capstan_proto::pbse;
use capstan_proto::v1::{ShutdownType, TerminateRequest};

use crate::connect;
use crate::getopt::{getopt, Item};

const USAGE: &str = "Usage: qterm [-t immediate|delay|quick] [server ...]\n";

/// What the command line asks for: the shutdown type and the servers named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub kind: ShutdownType,
    pub servers: Vec<String>,
}

/// Parses qterm's command line; `Err` holds what to print before the usage.
pub fn parse(args: &[String]) -> Result<Invocation, String> {
    let parsed = getopt(args, "t:");
    let mut preamble = String::new();
    let mut bad = false;
    let mut kind = ShutdownType::Quick;
    for item in &parsed.items {
        match item {
            Item::Error(complaint) => {
                preamble.push_str(&format!("qterm: {complaint}\n"));
                bad = true;
            }
            Item::Opt('t', arg) => {
                let arg = arg.as_deref().unwrap_or("");
                kind = match arg.to_ascii_lowercase().as_str() {
                    "quick" => ShutdownType::Quick,
                    "immediate" => ShutdownType::Immediate,
                    "delay" => ShutdownType::Delay,
                    _ => {
                        bad = true;
                        kind
                    }
                };
            }
            Item::Opt(_, _) => {}
        }
    }
    if bad {
        return Err(preamble);
    }
    let servers = if parsed.operands.is_empty() {
        vec![String::new()]
    } else {
        parsed.operands
    };
    Ok(Invocation { kind, servers })
}

/// Torque's line for a refused request: `qterm: TEXT[ MSG=DETAIL]SERVER`.
pub fn refusal_line(code: i32, detail: &str, server: &str) -> String {
    let mut line = format!("qterm: {}", crate::format::pbse_message(code, detail));
    line.push_str(server);
    line.push('\n');
    line
}

/// Runs qterm on `args` (without the program name); returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let inv = match parse(args) {
        Ok(inv) => inv,
        Err(preamble) => {
            let _ = write!(std::io::stderr().lock(), "{preamble}{USAGE}");
            return 1;
        }
    };
    let work = async {
        let mut status = 0;
        for server in &inv.servers {
            let mut client = match connect::connect().await {
                Ok(client) => client,
                Err(e) => {
                    eprintln!("{}", e.torque_message("qterm"));
                    status = 2;
                    continue;
                }
            };
            let request = TerminateRequest {
                r#type: inv.kind as i32,
            };
            let line = match client.terminate(request).await {
                Ok(reply) => reply
                    .into_inner()
                    .error
                    .filter(|e| e.code != 0)
                    .map(|e| refusal_line(e.code, &e.detail, server)),
                Err(status) => Some(connect::rpc_failure_line("qterm", &status, |message| {
                    refusal_line(pbse::SYSTEM, message, server)
                })),
            };
            if let Some(line) = line {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                status = 2;
            }
        }
        status
    };
    connect::exit_status_of("qterm", work)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_torques_command_line() {
        assert_eq!(
            parse(&args(&[])),
            Ok(Invocation {
                kind: ShutdownType::Quick,
                servers: vec![String::new()],
            })
        );
        assert_eq!(
            parse(&args(&["-t", "IMMEDIATE", "vm"])),
            Ok(Invocation {
                kind: ShutdownType::Immediate,
                servers: vec!["vm".into()],
            })
        );
        assert_eq!(
            parse(&args(&["-tdelay"])).map(|i| i.kind),
            Ok(ShutdownType::Delay)
        );
        assert_eq!(parse(&args(&["-t", "soon"])), Err(String::new()));
        assert_eq!(
            parse(&args(&["-x"])),
            Err("qterm: invalid option -- 'x'\n".into())
        );
    }

    #[test]
    fn refusals_are_worded_as_torques() {
        assert_eq!(
            refusal_line(pbse::PERM, "", ""),
            "qterm: Unauthorized Request \n"
        );
        assert_eq!(
            refusal_line(pbse::PERM, "", "vm"),
            "qterm: Unauthorized Request vm\n"
        );
    }
}
