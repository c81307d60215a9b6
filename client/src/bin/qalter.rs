//! `qalter`: change a job's attributes (Torque-compatible).
//!
//! Options mean what they mean to qsub and are validated by the same code
//! (`capstan_client::qsub::options`), except `-h`, which takes a hold list here;
//! `-W depend=...` sets the job's dependencies anew. The server
//! decides who may change what (owner, operators, managers) and in which state; its refusals
//! are printed in Torque's words, `qalter: Unauthorized Request  14.vm`, and an unknown job id
//! prints nothing and exits 153, as Torque's qalter does.

use capstan_client::connect::{self, ConnectError};
use capstan_client::getopt::{getopt, Item};
use capstan_client::jobctl::outcome_for;
use capstan_client::qsub::options::{name_value, valid_hold_list, JobOptions};
use capstan_client::qsub::request::text_attr;
use capstan_proto::v1::{AlterRequest, Attr, JobActionResult};

/// Torque 6.1's qalter option string.
const OPTSTRING: &str = "a:A:c:e:h:j:k:l:m:M:N:o:p:r:S:u:v:W:";

const USAGE: &str = "usage: qalter [-a date_time] [-A account_string] [-c interval] [-e path]\n\
\t[-h hold_list] [-j y|n] [-k keep] [-l resource_list] [-m mail_options]\n\
\t[-M user_list] [-N jobname] [-o path] [-p priority] [-r y|n] [-S path]\n\
\t[-u user_list] [-W dependency_list] job_identifier...\n";

fn main() {
    let args = capstan_client::getopt::args();
    std::process::exit(run(&args));
}

fn usage(message: Option<&str>) -> i32 {
    if let Some(m) = message {
        eprintln!("{m}");
    }
    eprint!("{USAGE}");
    2
}

fn run(args: &[String]) -> i32 {
    let parsed = getopt(args, OPTSTRING);
    let ctx = capstan_client::qsub::current_context();
    let mut opts = JobOptions::default();
    let mut hold: Option<String> = None;
    for item in &parsed.items {
        match item {
            Item::Error(msg) => return usage(Some(&format!("qalter: {msg}"))),
            Item::Opt('h', arg) => {
                let list = arg.clone().unwrap_or_default();
                if !valid_hold_list(&list) {
                    return usage(Some("qalter: illegal -h value"));
                }
                hold = Some(list);
            }
            Item::Opt('v' | 'u', _) => {
                // Variable lists and user lists are fixed at submission in Capstan.
                eprintln!("qalter: this option is not supported by Capstan");
                return 2;
            }
            Item::Opt('W', Some(arg)) => match name_value(arg) {
                Some((name, _)) if name != "depend" => {
                    // Only dependencies: the other `-W` attributes are fixed at submission.
                    eprintln!("qalter: -W {name} is not supported by Capstan (only -W depend=...)");
                    return 2;
                }
                // Torque's qalter says only this of a `-W` with no `name=value` or a
                // dependency list it cannot parse.
                Some(_) if opts.apply('W', arg, &ctx).is_ok() => {}
                _ => return usage(Some("qalter: illegal -W value")),
            },
            Item::Opt(letter, arg) => {
                if let Err(e) = opts.apply(*letter, arg.as_deref().unwrap_or(""), &ctx) {
                    return usage(Some(e.for_command("qalter").message()));
                }
            }
        }
    }
    if parsed.operands.is_empty() {
        return usage(None);
    }
    let mut attrs: Vec<Attr> = opts
        .attrs
        .iter()
        .map(|(name, value)| text_attr(name, "", value))
        .collect();
    attrs.extend(
        opts.resources
            .iter()
            .map(|(name, value)| text_attr("Resource_List", name, value)),
    );
    if let Some(h) = hold {
        attrs.push(text_attr("Hold_Types", "", &h));
    }
    connect::exit_status_of("qalter", alter(&parsed.operands, attrs))
}

async fn alter(ids: &[String], attrs: Vec<Attr>) -> i32 {
    let mut client = match connect::connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.torque_message("qalter"));
            return e.exit_code();
        }
    };
    let mut exit_code = 0;
    for id in ids {
        let reply = client
            .alter(AlterRequest {
                id: id.clone(),
                attrs: attrs.clone(),
            })
            .await;
        let results: Vec<JobActionResult> = match reply {
            Ok(r) => r.into_inner().results,
            Err(status) => {
                let err = ConnectError::from_status(&status);
                match err {
                    Some(e) => {
                        eprintln!("{}", e.torque_message("qalter"));
                        return e.exit_code();
                    }
                    None => {
                        eprintln!("qalter: {}", status.message());
                        exit_code = 1;
                        continue;
                    }
                }
            }
        };
        for result in &results {
            let o = outcome_for("qalter", result, false);
            eprint!("{}", o.stderr);
            // The last job's answer, as Torque's (see jobctl::run).
            exit_code = o.exit_code;
        }
    }
    exit_code
}
