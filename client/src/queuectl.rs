//! qenable, qdisable, qstart and qstop: switch a queue's `enabled` (whether it takes new jobs)
//! or `started` (whether its jobs are scheduled), as Torque's commands do. Each is a qmgr
//! `set queue Q enabled = TRUE` (Torque's `pbs_manager`, MGR_CMD_SET on the queue) for each
//! operand `queue[@server]`, with Torque's texts and exit statuses:
//!
//! * no operand, or a first operand starting with `-`: `Usage: qenable [queue][@server] ...`,
//!   exit 1;
//! * an operand that is not a destination: `qenable: illegally formed destination: OP`;
//! * the server's refusal: `qenable: TEXT[ MSG=DETAIL] QUEUE[@SERVER]`, e.g. `qenable: Unknown
//!   queue nosuch`;
//! * nothing on success. Every operand is tried; the exit status is the last failure's (1 for
//!   a malformed operand, 2 for a refusal or no server), else 0.
//!
//! An operand with no queue (`@server`) means every queue, as Torque's server reads an empty
//! queue name. Capstan has one server: a `@server` part is printed back, not used to choose.

use std::io::Write;

use capstan_proto::pbse;
use capstan_proto::v1::batch_client::BatchClient;
use capstan_proto::v1::{ManageAttr, ManageCommand, ManageObject, ManageOp, ManageRequest};
use tonic::transport::Channel;

use crate::connect;

/// Torque's PBS_MAXQUEUENAME: the longest queue name a destination may carry.
const MAX_QUEUE_NAME: usize = 15;
/// Torque's longest server part: PBS_MAXSERVERNAME + PBS_MAXPORTNUM + 2.
const MAX_SERVER_NAME: usize = 1024 + 5 + 2;

/// Which of the four commands, and so which switch it turns which way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Enable,
    Disable,
    Start,
    Stop,
}

impl Switch {
    fn command(self) -> &'static str {
        match self {
            Switch::Enable => "qenable",
            Switch::Disable => "qdisable",
            Switch::Start => "qstart",
            Switch::Stop => "qstop",
        }
    }

    /// The queue attribute and the value set (Torque sends these spellings).
    fn attribute(self) -> (&'static str, &'static str) {
        match self {
            Switch::Enable => ("enabled", "TRUE"),
            Switch::Disable => ("enabled", "FALSE"),
            Switch::Start => ("started", "TRUE"),
            Switch::Stop => ("started", "FALSE"),
        }
    }

    fn request(self, queue: &str) -> ManageRequest {
        let (name, value) = self.attribute();
        ManageRequest {
            command: ManageCommand::Set as i32,
            object: ManageObject::Queue as i32,
            name: queue.to_string(),
            attrs: vec![ManageAttr {
                name: name.to_string(),
                resource: String::new(),
                value: value.to_string(),
                op: ManageOp::Set as i32,
            }],
        }
    }
}

/// A destination operand, `[queue][@server]`, split as Torque's `parse_destination_id` does:
/// leading white space skipped; a queue of up to 15 name characters (printable, not `#` nor
/// `@`); then nothing, or `@` and a server of 1 to 1031 name characters. `None` when the
/// operand is not that.
pub fn parse_destination(operand: &str) -> Option<(&str, &str)> {
    let is_name_char = |c: char| c.is_ascii_graphic() && c != '#' && c != '@';
    // C's isspace: space, \t, \n, \v, \f, \r.
    let text = operand.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let queue_end = text.find(|c| !is_name_char(c)).unwrap_or(text.len());
    let (queue, rest) = text.split_at(queue_end);
    if queue.len() > MAX_QUEUE_NAME {
        return None;
    }
    if rest.is_empty() {
        return Some((queue, ""));
    }
    let server = rest.strip_prefix('@')?;
    (!server.is_empty() && server.len() <= MAX_SERVER_NAME && server.chars().all(is_name_char))
        .then_some((queue, server))
}

/// The line Torque prints when the server refuses a destination: `CMD: TEXT[ MSG=DETAIL]
/// QUEUE[@SERVER]`.
pub fn refusal_line(command: &str, code: i32, detail: &str, queue: &str, server: &str) -> String {
    let mut line = format!("{command}: {}", crate::format::pbse_message(code, detail));
    line.push(' ');
    line.push_str(queue);
    if !server.is_empty() {
        line.push('@');
        line.push_str(server);
    }
    line.push('\n');
    line
}

/// Runs the command on `args` (without the program name); returns the exit status.
pub fn run(switch: Switch, args: &[String]) -> i32 {
    let command = switch.command();
    if args.first().is_none_or(|first| first.starts_with('-')) {
        eprintln!("Usage: {command} [queue][@server] ...");
        return 1;
    }
    let work = async {
        let mut client: Option<BatchClient<Channel>> = None;
        let mut status = 0;
        for operand in args {
            let Some((queue, server)) = parse_destination(operand) else {
                eprintln!("{command}: illegally formed destination: {operand}");
                status = 1;
                continue;
            };
            if client.is_none() {
                match connect::connect().await {
                    Ok(c) => client = Some(c),
                    Err(e) => {
                        eprintln!("{}", e.torque_message(command));
                        status = 2;
                        continue;
                    }
                }
            }
            let Some(c) = client.as_mut() else {
                continue;
            };
            let line = match c.manage(switch.request(queue)).await {
                Ok(reply) => match reply.into_inner().error {
                    Some(e) if e.code != 0 => {
                        Some(refusal_line(command, e.code, &e.detail, queue, server))
                    }
                    _ => None,
                },
                Err(status) => Some(connect::rpc_failure_line(command, &status, |message| {
                    refusal_line(command, pbse::SYSTEM, message, queue, server)
                })),
            };
            if let Some(line) = line {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                status = 2;
            }
        }
        status
    };
    connect::exit_status_of(command, work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_split_as_torques() {
        assert_eq!(parse_destination("batch"), Some(("batch", "")));
        assert_eq!(parse_destination("  batch@vm"), Some(("batch", "vm")));
        assert_eq!(parse_destination("@vm"), Some(("", "vm")));
        assert_eq!(parse_destination(""), Some(("", "")));
        assert_eq!(parse_destination("batch@"), None, "an empty server");
        assert_eq!(
            parse_destination("ba#tch"),
            None,
            "a character no queue has"
        );
        assert_eq!(parse_destination("batch@vm@x"), None);
        assert_eq!(parse_destination("batch extra"), None);
        assert_eq!(
            parse_destination("q23456789012345"),
            Some(("q23456789012345", ""))
        );
        assert_eq!(parse_destination("q234567890123456"), None, "16 characters");
        assert_eq!(
            parse_destination("\n\tbatch"),
            Some(("batch", "")),
            "C's isspace"
        );
        assert_eq!(parse_destination("batch@s#x"), None);
        let longest = "s".repeat(MAX_SERVER_NAME);
        assert_eq!(
            parse_destination(&format!("b@{longest}")),
            Some(("b", longest.as_str()))
        );
        assert_eq!(parse_destination(&format!("b@{longest}s")), None);
    }

    #[test]
    fn refusals_are_worded_as_torques() {
        assert_eq!(
            refusal_line("qenable", pbse::UNKQUE, "", "nosuch", ""),
            "qenable: Unknown queue nosuch\n"
        );
        assert_eq!(
            refusal_line(
                "qstop",
                pbse::PERM,
                "error in permissions (PERM_OPorMGR)",
                "batch",
                "vm"
            ),
            "qstop: Unauthorized Request  MSG=error in permissions (PERM_OPorMGR) batch@vm\n"
        );
    }

    #[test]
    fn each_command_sets_its_switch() {
        let set = |s: Switch| {
            let r = s.request("batch");
            (r.name, r.attrs[0].name.clone(), r.attrs[0].value.clone())
        };
        assert_eq!(
            set(Switch::Enable),
            ("batch".into(), "enabled".into(), "TRUE".into())
        );
        assert_eq!(
            set(Switch::Disable),
            ("batch".into(), "enabled".into(), "FALSE".into())
        );
        assert_eq!(
            set(Switch::Start),
            ("batch".into(), "started".into(), "TRUE".into())
        );
        assert_eq!(
            set(Switch::Stop),
            ("batch".into(), "started".into(), "FALSE".into())
        );
    }
}
