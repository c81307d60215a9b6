//! `qsub`: submit a batch job, with Torque 6.1.3's options, directives, messages and exits.
//!
//! The work is split so that everything but the final call is pure and unit-tested:
//! * [`script`]: is the script text, and which `#PBS` directives does it carry;
//! * [`options`]: option validation and the override rules (directives first, command line last);
//! * [`exectime`]: `-a` dates;
//! * [`request`]: the attributes Torque's qsub sends (`Variable_List` order, paths, ...);
//! * [`error`]: every message and exit status, client-side and for server rejections.
//!
//! Options are parsed by hand with getopt semantics ([`crate::getopt`]) rather than with an
//! argument-parsing crate, because Torque's exact messages and usage text are part of the
//! interface that scripts depend on, and clap cannot produce them.
//!
//! Exit statuses where Torque gives none: an empty script exits 1; an unreachable server
//! exits with the OS error number like Torque's `exit(errno)` (111 refused, 2 no socket; 1 if
//! none); a gRPC failure after connecting prints `qsub: submit error (Internal Server Error
//! MSG=...)` and exits 1; a malformed `-t` gets the server's `Bad Job Array Request` (235)
//! before the script is sent, as Torque would.
//!
//! `-I` ([`interactive`]) submits the same request over a stream that then carries the job's
//! terminal; without a script operand it reads no script (Torque's `STDIN` job of no lines).
//!
//! Deliberate differences from Torque 6.1.3: scripts may be UTF-8 (Torque refuses any byte
//! outside printable ASCII); quotes in directives are removed when the line is split into
//! words (Torque keeps them and lets each option's parser drop them); an unterminated quote
//! prints `qsub: unmatched "` (Torque prints a NUL byte in place of the quote); several `-v`
//! options accumulate instead of the last one replacing the others.

pub mod error;
pub mod exectime;
pub mod interactive;
pub mod options;
pub mod request;
pub mod script;

use std::io::{Read, Write};

use capstan_proto::v1::PbsError;
use capstan_proto::{pbse, PBS_VERSION};

use crate::connect;
use crate::getopt::{getopt, Item, Parsed};
use error::QsubError;
use options::{valid_job_name, Context, JobOptions, QSUB_OPTSTRING};

/// Where the script comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptSource {
    Stdin,
    File(String),
}

/// The directive prefix: the last `-C` on the command line, else `$PBS_DPREFIX`, else `#PBS`.
pub fn directive_prefix(cmdline: &Parsed, ctx: &Context) -> String {
    cmdline
        .items
        .iter()
        .rev()
        .find_map(|item| match item {
            Item::Opt('C', Some(prefix)) => Some(prefix.clone()),
            _ => None,
        })
        .or_else(|| {
            ctx.getenv("PBS_DPREFIX")
                .filter(|p| !p.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "#PBS".to_string())
}

/// The script operand: none or `-` means standard input.
pub fn script_source(cmdline: &Parsed) -> ScriptSource {
    match cmdline.operands.first().map(String::as_str) {
        None | Some("-") => ScriptSource::Stdin,
        Some(path) => ScriptSource::File(path.to_string()),
    }
}

/// The default `Job_Name` for a script: `STDIN`, or the file's base name (which must be a
/// valid job name).
pub fn default_job_name(source: &ScriptSource) -> Result<String, QsubError> {
    match source {
        ScriptSource::Stdin => Ok("STDIN".to_string()),
        ScriptSource::File(path) => {
            let base = path.rsplit('/').next().unwrap_or(path);
            if valid_job_name(base) {
                Ok(base.to_string())
            } else {
                Err(QsubError::usage(
                    "qsub: cannot form a valid job name from the script name",
                ))
            }
        }
    }
}

/// Applies the script's directives, then the command line, and checks what may only be
/// checked once everything is known. Pure: the script's bytes are already loaded.
pub fn resolve_options(
    cmdline: &Parsed,
    script_text: &str,
    job_name: &str,
    ctx: &Context,
) -> Result<JobOptions, QsubError> {
    let mut opts = JobOptions::new(job_name);
    let prefix = directive_prefix(cmdline, ctx);
    for directive in script::directives(script_text, &prefix) {
        let words = script::split_words(&directive)?;
        opts.apply_items(&getopt(&words, QSUB_OPTSTRING).items, ctx)?;
    }
    opts.apply_items(&cmdline.items, ctx)?;
    if cmdline.operands.len() > 1 {
        return Err(QsubError::usage("index issues"));
    }
    check_refused(&opts)?;
    Ok(opts)
}

/// What qsub refuses before sending anything: `-I` with `-t` (Torque's words), and a
/// malformed array request (`-t`), with the server's answer, by the rules the server applies.
fn check_refused(opts: &JobOptions) -> Result<(), QsubError> {
    if opts.interactive && opts.array_request.is_some() {
        return Err(QsubError::fatal(
            "qsub: interactive job can not be job array.",
            2,
        ));
    }
    if let Some(request) = &opts.array_request {
        use capstan_proto::array::{parse, ArrayRequestError, MAX_ARRAY_SIZE};
        let detail = match parse(request) {
            Ok(_) => return Ok(()),
            Err(ArrayRequestError::TooManyJobs) => {
                format!("Requested array size too large, limit is {MAX_ARRAY_SIZE}")
            }
            Err(ArrayRequestError::Malformed | ArrayRequestError::IndexTooHigh) => String::new(),
        };
        return Err(error::submit_error(
            &PbsError {
                code: pbse::BAD_ARRAY_REQ,
                detail,
                object: String::new(),
            },
            false,
        ));
    }
    Ok(())
}

/// Reads the script, Torque's way: a missing file is `cannot be loaded - REASON`.
fn load_script(source: &ScriptSource) -> Result<Vec<u8>, QsubError> {
    match source {
        ScriptSource::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
                QsubError::fatal(format!("qsub: error reading script file: {e}"), 1)
            })?;
            Ok(bytes)
        }
        ScriptSource::File(path) => {
            let cannot = |e: std::io::Error| {
                let reason = match e.raw_os_error() {
                    Some(code) => connect::strerror(code).to_string(),
                    None => e.to_string(),
                };
                QsubError::fatal(
                    format!("qsub: script file '{path}' cannot be loaded - {reason}"),
                    1,
                )
            };
            let meta = std::fs::metadata(path).map_err(cannot)?;
            if !meta.is_file() {
                return Err(QsubError::fatal("qsub: script not a file", 1));
            }
            std::fs::read(path).map_err(cannot)
        }
    }
}

/// The submission environment as [`Context`] wants it.
pub fn current_context() -> Context {
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    let cwd = std::env::current_dir()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/".to_string());
    Context {
        cwd,
        env,
        host: connect::short_hostname(),
        server: connect::default_server_name(),
        now: chrono::Local::now(),
    }
}

/// Whether the command line asks for an interactive job (`-I`, `-W interactive=true`): then
/// no script is read from stdin, which is the user's terminal.
fn asks_interactive(cmdline: &Parsed) -> bool {
    cmdline.items.iter().any(|i| match i {
        Item::Opt('I', _) => true,
        Item::Opt('W', Some(w)) => w.split(',').any(|kv| kv.trim() == "interactive=true"),
        _ => false,
    })
}

/// Everything up to (not including) the server call.
fn prepare(args: &[String]) -> Result<(JobOptions, capstan_proto::v1::SubmitRequest), QsubError> {
    let cmdline = getopt(args, QSUB_OPTSTRING);
    let ctx = current_context();
    let source = script_source(&cmdline);
    let job_name = default_job_name(&source)?;
    let bytes = match source {
        ScriptSource::Stdin if asks_interactive(&cmdline) => Vec::new(),
        _ => {
            let bytes = load_script(&source)?;
            script::check_script(&bytes, matches!(source, ScriptSource::File(_)))?;
            bytes
        }
    };
    // check_script guarantees UTF-8.
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let opts = resolve_options(&cmdline, &text, &job_name, &ctx)?;
    let req = request::build_request(&opts, &ctx, args, bytes);
    Ok((opts, req))
}

/// Sends the job; returns the job id.
async fn submit(req: capstan_proto::v1::SubmitRequest) -> Result<String, QsubError> {
    let mut client = connect::connect()
        .await
        .map_err(|e| QsubError::fatal(e.torque_message("qsub"), e.exit_code()))?;
    let reply = client
        .submit(req)
        .await
        .map_err(|status| {
            // A refusal (host not in submit_hosts, ...) reads as Torque reports it: at connect.
            if let Some(err) = connect::ConnectError::from_status(&status) {
                return QsubError::fatal(err.torque_message("qsub"), err.exit_code());
            }
            QsubError::fatal(
                format!(
                    "qsub: submit error ({} MSG={})",
                    pbse::text(pbse::SYSTEM),
                    status.message()
                ),
                1,
            )
        })?
        .into_inner();
    // qsub exits right after submitting: dropping the client (its channel and the buffer
    // behind it) would only spend time the exit spends anyway.
    std::mem::forget(client);
    submitted_job_id(reply)
}

/// The id a submission's answer gives, or the refusal in Torque's words (also `qsub -I`'s).
pub(crate) fn submitted_job_id(reply: capstan_proto::v1::SubmitReply) -> Result<String, QsubError> {
    if let Some(err) = reply.error.filter(|e| e.code != 0) {
        return Err(error::submit_error(&err, nix::unistd::getuid().is_root()));
    }
    if reply.job_id.is_empty() {
        return Err(QsubError::fatal(
            format!(
                "qsub: submit error ({} MSG=no job id returned)",
                pbse::text(pbse::SYSTEM)
            ),
            1,
        ));
    }
    Ok(reply.job_id)
}

/// qsub's main: `args` without the program name; returns the exit status.
pub fn run(args: &[String]) -> i32 {
    if args.iter().any(|a| a == "--version") {
        eprintln!("Version: {PBS_VERSION}");
        eprintln!("Commit: capstan-{}", env!("CARGO_PKG_VERSION"));
        return 0;
    }
    let prepared = prepare(args).and_then(|(opts, req)| {
        if !opts.interactive {
            return Ok((opts, req, None));
        }
        // Torque's checks, in its order: -t above, then -x's script, then the terminal.
        let operand = getopt(args, QSUB_OPTSTRING).operands.first().cloned();
        let command = match (opts.run_command, operand) {
            (false, _) => None,
            (true, Some(command)) if command != "-" => Some(command),
            (true, _) => {
                return Err(QsubError::usage(
                    "qsub: '-x' used without a script specified",
                ))
            }
        };
        let terminal = interactive::have_terminal();
        if !terminal && command.is_none() {
            return Err(interactive::no_terminal());
        }
        Ok((opts, req, Some((command, terminal))))
    });
    let outcome = match prepared {
        Ok((_, req, Some((command, terminal)))) => {
            return connect::exit_status_of("qsub", interactive::run(req, command, terminal));
        }
        Ok((opts, req, None)) => Ok((opts, req)),
        Err(e) => Err(e),
    };
    let outcome = outcome.and_then(|(opts, req)| {
        let job_id = connect::block_on(submit(req))
            .map_err(|e| QsubError::fatal(format!("qsub: cannot start runtime: {e}"), 1))??;
        Ok((opts, job_id))
    });
    match outcome {
        Ok((opts, job_id)) => {
            if !opts.quiet {
                let mut out = std::io::stdout().lock();
                // A closed stdout must not turn a durable submission into a crash.
                let _ = writeln!(out, "{job_id}");
                let _ = out.flush();
            }
            0
        }
        Err(err) => {
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(err.stderr_text().as_bytes());
            err.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Local;

    fn ctx() -> Context {
        Context {
            cwd: "/home/u".into(),
            env: vec![("HOME".into(), "/home/u".into())],
            host: "vm".into(),
            server: "vm".into(),
            now: Local::now(),
        }
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn directives_apply_and_command_line_overrides() {
        let script = "#!/bin/sh\n#PBS -N fromscript\n#PBS -l walltime=10:00 -m abe\n#PBS -q dq\necho\n#PBS -N late\n";
        let cmd = getopt(&args(&["-N", "cmd", "job.sh"]), QSUB_OPTSTRING);
        let opts = resolve_options(&cmd, script, "job.sh", &ctx()).unwrap();
        assert_eq!(opts.attr("Job_Name"), Some("cmd"));
        assert_eq!(opts.attr("Mail_Points"), Some("abe"));
        assert_eq!(opts.destination.as_deref(), Some("dq"));
        assert_eq!(
            opts.resources,
            vec![("walltime".to_string(), "10:00".to_string())]
        );
        let cmd = getopt(&args(&["job.sh"]), QSUB_OPTSTRING);
        let opts = resolve_options(&cmd, script, "job.sh", &ctx()).unwrap();
        assert_eq!(opts.attr("Job_Name"), Some("fromscript"));
    }

    #[test]
    fn prefix_from_c_option_or_environment() {
        let script = "#MY -N mine\n#PBS -N pbs\nls\n";
        let cmd = getopt(&args(&["-C", "#MY", "job.sh"]), QSUB_OPTSTRING);
        let opts = resolve_options(&cmd, script, "job.sh", &ctx()).unwrap();
        assert_eq!(opts.attr("Job_Name"), Some("mine"));
        let mut env_ctx = ctx();
        env_ctx.env.push(("PBS_DPREFIX".into(), "#MY".into()));
        let cmd = getopt(&args(&["job.sh"]), QSUB_OPTSTRING);
        assert_eq!(directive_prefix(&cmd, &env_ctx), "#MY");
        let opts = resolve_options(&cmd, script, "job.sh", &env_ctx).unwrap();
        assert_eq!(opts.attr("Job_Name"), Some("mine"));
        assert_eq!(directive_prefix(&cmd, &ctx()), "#PBS");
    }

    #[test]
    fn quoted_directive_values() {
        let script = "#PBS -M \"a@b,c@d\" -v 'X=1 2'\ntrue\n";
        let cmd = getopt(&args(&[]), QSUB_OPTSTRING);
        let opts = resolve_options(&cmd, script, "STDIN", &ctx()).unwrap();
        assert_eq!(opts.attr("Mail_Users"), Some("a@b,c@d"));
        assert_eq!(opts.variables, vec![("X".to_string(), "1 2".to_string())]);
    }

    #[test]
    fn malformed_directive_is_an_option_error() {
        let script = "#PBS -m xyz\necho\n";
        let cmd = getopt(&args(&["job.sh"]), QSUB_OPTSTRING);
        let err = resolve_options(&cmd, script, "job.sh", &ctx()).unwrap_err();
        assert!(err
            .stderr_text()
            .starts_with("[qsub: illegal -m value]\n\nusage: qsub"));
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn extra_operands_arrays_and_interactive() {
        let cmd = getopt(&args(&["a.sh", "b.sh"]), QSUB_OPTSTRING);
        let err = resolve_options(&cmd, "true\n", "a.sh", &ctx()).unwrap_err();
        assert!(err.stderr_text().starts_with("[index issues]\n"));

        let cmd = getopt(&args(&["-t", "abc", "a.sh"]), QSUB_OPTSTRING);
        let err = resolve_options(&cmd, "true\n", "a.sh", &ctx()).unwrap_err();
        assert_eq!(
            err.stderr_text(),
            "qsub: submit error (Bad Job Array Request)\n"
        );
        assert_eq!(err.exit_code(), 235);

        let cmd = getopt(&args(&["-t", "0-10000", "a.sh"]), QSUB_OPTSTRING);
        let err = resolve_options(&cmd, "true\n", "a.sh", &ctx()).unwrap_err();
        assert_eq!(
            err.stderr_text(),
            "qsub: submit error (Bad Job Array Request MSG=Requested array size too large, limit is 10000)\n"
        );
        assert_eq!(err.exit_code(), 235);

        let cmd = getopt(&args(&["-t", "1-3%2", "a.sh"]), QSUB_OPTSTRING);
        let opts = resolve_options(&cmd, "true\n", "a.sh", &ctx()).unwrap();
        assert_eq!(opts.attr("job_array_request"), Some("1-3%2"));

        let cmd = getopt(&args(&["a.sh"]), QSUB_OPTSTRING);
        let opts = resolve_options(&cmd, "#PBS -I\ntrue\n", "a.sh", &ctx()).unwrap();
        assert!(opts.interactive);
        let cmd = getopt(&args(&["-I", "-t", "1-3", "a.sh"]), QSUB_OPTSTRING);
        let err = resolve_options(&cmd, "true\n", "a.sh", &ctx()).unwrap_err();
        assert_eq!(
            err.stderr_text(),
            "qsub: interactive job can not be job array.\n"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn script_sources_and_names() {
        let cmd = getopt(&args(&["-N", "x"]), QSUB_OPTSTRING);
        assert_eq!(script_source(&cmd), ScriptSource::Stdin);
        let cmd = getopt(&args(&["-"]), QSUB_OPTSTRING);
        assert_eq!(script_source(&cmd), ScriptSource::Stdin);
        let cmd = getopt(&args(&["dir/job.sh", "-N", "x"]), QSUB_OPTSTRING);
        let source = script_source(&cmd);
        assert_eq!(source, ScriptSource::File("dir/job.sh".into()));
        assert_eq!(default_job_name(&source).unwrap(), "job.sh");
        assert_eq!(default_job_name(&ScriptSource::Stdin).unwrap(), "STDIN");
        let err = default_job_name(&ScriptSource::File("my job.sh".into())).unwrap_err();
        assert!(err
            .stderr_text()
            .starts_with("[qsub: cannot form a valid job name from the script name]"));
    }

    #[test]
    fn missing_script_file_message() {
        let err = load_script(&ScriptSource::File("nosuchfile.sh".into())).unwrap_err();
        assert_eq!(
            err.stderr_text(),
            "qsub: script file 'nosuchfile.sh' cannot be loaded - No such file or directory\n"
        );
        assert_eq!(err.exit_code(), 1);
    }
}
