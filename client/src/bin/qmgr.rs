//! `qmgr`: administer the server and its queues (Torque-compatible).
//!
//! `qmgr -c 'DIRECTIVE'` runs one directive; without `-c`, directives are read from standard
//! input, one per line (a prompt is shown when it is a terminal). Options: `-a` stop at the
//! first error, `-e` echo each directive, `-n` check syntax only, `-z` no error messages.
//! The language and layouts are in `capstan_client::qmgr`; the server decides permissions.

use std::io::{BufRead, IsTerminal, Write};

use capstan_client::connect::{self, ConnectError};
use capstan_client::format::{emit, Object, ServerError};
use capstan_client::getopt::{getopt, Item};
use capstan_client::qmgr::{self, AttrOp, Directive, ObjectKind, Verb};
use capstan_proto::v1::batch_client::BatchClient;
use capstan_proto::v1::{
    ManageAttr, ManageCommand, ManageObject, ManageOp, ManageRequest, StatNodesRequest,
    StatQueuesRequest, StatServerRequest,
};
use tonic::transport::Channel;

const USAGE: &str = "Usage: qmgr [-a] [-c command] [-e] [-n] [-z] [server...]\n";

/// qmgr's exit status when a directive fails.
const EXIT_ERROR: i32 = 2;

struct Options {
    abort_on_error: bool,
    echo: bool,
    syntax_only: bool,
    quiet: bool,
    command: Option<String>,
}

fn main() {
    let args = capstan_client::getopt::args();
    let parsed = getopt(&args, "ac:enz");
    let mut o = Options {
        abort_on_error: false,
        echo: false,
        syntax_only: false,
        quiet: false,
        command: None,
    };
    let mut bad = false;
    for item in parsed.items {
        match item {
            Item::Opt('a', _) => o.abort_on_error = true,
            Item::Opt('c', arg) => o.command = arg,
            Item::Opt('e', _) => o.echo = true,
            Item::Opt('n', _) => o.syntax_only = true,
            Item::Opt('z', _) => o.quiet = true,
            Item::Opt(..) => bad = true,
            Item::Error(msg) => {
                eprintln!("qmgr: {msg}");
                bad = true;
            }
        }
    }
    if bad {
        eprint!("{USAGE}");
        std::process::exit(EXIT_ERROR);
    }
    let code = match connect::block_on(run(o)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("qmgr: cannot start: {e}");
            EXIT_ERROR
        }
    };
    std::process::exit(code);
}

/// Runs every directive; the exit status is that of the last failure (0 if none).
async fn run(o: Options) -> i32 {
    let lines: Box<dyn Iterator<Item = String>> = match &o.command {
        Some(c) => Box::new(std::iter::once(c.clone())),
        None => {
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            Box::new(Prompted {
                lines: stdin.lock().lines(),
                interactive,
            })
        }
    };
    let mut client: Option<BatchClient<Channel>> = None;
    let mut status = 0;
    for line in lines {
        let word = line.trim().to_ascii_lowercase();
        if word == "quit" || word == "exit" || word == "q" {
            break;
        }
        if word == "help" || word == "?" {
            print!("{}", HELP);
            continue;
        }
        if o.echo {
            println!("{}", line.trim());
        }
        let directive = match qmgr::parse(&line) {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => {
                if !o.quiet {
                    eprint!("{}", e.message());
                }
                status = EXIT_ERROR;
                if o.abort_on_error {
                    break;
                }
                continue;
            }
        };
        if o.syntax_only {
            continue;
        }
        // Connected at the first directive that needs the server.
        let c = match client {
            Some(ref mut c) => c,
            None => match connect::connect().await {
                Ok(c) => client.insert(c),
                Err(e) => {
                    eprintln!("{}", e.torque_message("qmgr"));
                    return e.exit_code();
                }
            },
        };
        if let Err(message) = execute(c, &directive).await {
            if !o.quiet {
                eprintln!("{message}");
            }
            status = EXIT_ERROR;
            if o.abort_on_error {
                break;
            }
        }
    }
    status
}

const HELP: &str = "\
Directives: create|delete|set|unset|list|print  server|queue|node  [name[,name...]]  [attr OP value[, ...]]
  OP is =, += (add to a list) or -= (remove from a list).
  e.g.  set server managers += alice@login1
        create queue lab
        set queue lab acl_user_enable = true, acl_users = alice,bob
        print server
quit or exit leaves qmgr.
";

/// Standard input as directives, with Torque's `Qmgr: ` prompt on a terminal.
struct Prompted<L> {
    lines: L,
    interactive: bool,
}

impl<L: Iterator<Item = std::io::Result<String>>> Iterator for Prompted<L> {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.interactive {
            print!("Qmgr: ");
            let _ = std::io::stdout().flush();
        }
        self.lines.next()?.ok()
    }
}

/// `qmgr obj=NAME svr=default: MESSAGE`, Torque's error line for a refused directive.
fn server_error(object: &str, e: ServerError) -> String {
    let object = if e.object.is_empty() {
        object
    } else {
        &e.object
    };
    format!("qmgr obj={object} svr=default: {}", e.full_message())
}

/// How a failed call reads: a refusal as Torque's `cannot connect to server` line.
fn rpc_error(s: tonic::Status) -> String {
    match ConnectError::from_status(&s) {
        Some(e) => e.torque_message("qmgr"),
        None => format!("qmgr: {}", s.message()),
    }
}

async fn execute(client: &mut BatchClient<Channel>, d: &Directive) -> Result<(), String> {
    let command = match d.verb {
        Verb::List => {
            // Name by name, as Torque: a name that exists is listed even when another in the
            // list is unknown; the first refusal is the directive's error.
            let mut refused = None;
            for names in one_by_one(&d.names) {
                match stat(client, d.object, &names).await {
                    Ok(objects) => emit(&qmgr::list(d.object, &objects, &chrono::Local)),
                    Err(e) => {
                        refused.get_or_insert(e);
                    }
                }
            }
            return refused.map_or(Ok(()), Err);
        }
        Verb::Print => {
            let objects = stat(client, d.object, &d.names).await?;
            let text: String = match d.object {
                ObjectKind::Server => {
                    let queues = stat(client, ObjectKind::Queue, &[]).await?;
                    objects
                        .iter()
                        .map(|s| qmgr::print_server(s, &queues))
                        .collect()
                }
                ObjectKind::Queue => objects.iter().map(qmgr::print_queue).collect(),
                ObjectKind::Node => qmgr::print_nodes(&objects),
            };
            emit(&text);
            return Ok(());
        }
        Verb::Create => ManageCommand::Create,
        Verb::Delete => ManageCommand::Delete,
        Verb::Set => ManageCommand::Set,
        Verb::Unset => ManageCommand::Unset,
    };
    let object = match d.object {
        ObjectKind::Server => ManageObject::Server,
        ObjectKind::Queue => ManageObject::Queue,
        ObjectKind::Node => ManageObject::Node,
    };
    let attrs: Vec<ManageAttr> = d
        .attrs
        .iter()
        .map(|a| ManageAttr {
            name: a.name.clone(),
            resource: a.resource.clone(),
            value: a.value.clone(),
            op: match a.op {
                AttrOp::Set => ManageOp::Set,
                AttrOp::Incr => ManageOp::Incr,
                AttrOp::Decr => ManageOp::Decr,
            } as i32,
        })
        .collect();
    // The server is the one object without a name.
    let names = if d.names.is_empty() {
        vec![String::new()]
    } else {
        d.names.clone()
    };
    for name in names {
        let reply = client
            .manage(ManageRequest {
                command: command as i32,
                object: object as i32,
                name: name.clone(),
                attrs: attrs.clone(),
            })
            .await
            .map_err(rpc_error)?
            .into_inner();
        if let Some(e) = reply.error {
            return Err(server_error(&name, ServerError::from(e)));
        }
    }
    Ok(())
}

/// Each name on its own (or, with none, everything in one request).
fn one_by_one(names: &[String]) -> Vec<Vec<String>> {
    if names.is_empty() {
        vec![Vec::new()]
    } else {
        names.chunks(1).map(<[String]>::to_vec).collect()
    }
}

/// The objects of `kind` named `names` (all of them when none is named). An unknown name is
/// Torque's `Unknown queue`/`Unknown node` line.
async fn stat(
    client: &mut BatchClient<Channel>,
    kind: ObjectKind,
    names: &[String],
) -> Result<Vec<Object>, String> {
    let names = names.to_vec();
    let reply = match kind {
        ObjectKind::Server => client.stat_server(StatServerRequest {}).await,
        ObjectKind::Queue => client.stat_queues(StatQueuesRequest { names }).await,
        ObjectKind::Node => client.stat_nodes(StatNodesRequest { names }).await,
    }
    .map_err(rpc_error)?
    .into_inner();
    if let Some(mut e) = reply.errors.into_iter().next() {
        // Torque: `Unknown queue MSG=cannot locate queue NAME`.
        if kind == ObjectKind::Queue && e.detail.is_empty() {
            e.detail = format!("cannot locate queue {}", e.object);
        }
        let e = ServerError::from(e);
        return Err(server_error("", e));
    }
    Ok(reply.objects.into_iter().map(Object::from).collect())
}
