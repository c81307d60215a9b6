//! How qsub fails: Torque's words, Torque's exit statuses.
//!
//! Every message here is byte-compatible with Torque 6.1.3 (see the compatibility reference,
//! section 2.4); tools parse qsub's stderr, so spelling lives in this one place.

use capstan_proto::pbse;
use capstan_proto::v1::PbsError;

/// Torque's qsub usage text, printed after a bracketed option error. Several lines end in a
/// space, exactly as Torque prints them.
pub const USAGE: &str = "usage: qsub [-a date_time] [-A account_string] [-b secs]
    [-c [ none | { enabled | periodic | shutdown |
    depth=<int> | dir=<path> | interval=<minutes>}... ]
    [-C directive_prefix] [-d path] [-D path]
    [-e path] [-h] [-I] [-j oe|eo|n] [-k {oe}] [-K <kill delay seconds>] 
    [-l resource_list] [-m n|{abe}] [-M user_list] [-N jobname] [-o path] 
    [-p priority] [-P proxy_user [-J <jobid]] [-q queue] [-r y|n] 
    [-S path] [-t number_to_submit] [-T type]  [-u user_list] [-w] path
    [-W additional_attributes] [-v variable_list] [-V ] [-x] [-X] [-z] [script]
";

/// Why qsub stops before (or instead of) printing a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QsubError {
    /// An option error: Torque's `print_qsub_usage_exit`, i.e. `[MESSAGE]`, a blank line and
    /// the usage text on stderr, exit 2. `pre` is a line printed before it (glibc's getopt
    /// complaint for an unknown option).
    #[error("[{message}]")]
    Usage {
        pre: Option<String>,
        message: String,
    },
    /// Any other failure: `message` is printed as one line on stderr and qsub exits `code`.
    #[error("{message}")]
    Fatal { message: String, code: i32 },
}

impl QsubError {
    /// `[qsub: MESSAGE]` + usage, exit 2.
    pub fn usage(message: impl Into<String>) -> Self {
        QsubError::Usage {
            pre: None,
            message: message.into(),
        }
    }

    /// A one-line failure with the given exit status.
    pub fn fatal(message: impl Into<String>, code: i32) -> Self {
        QsubError::Fatal {
            message: message.into(),
            code,
        }
    }

    /// glibc's complaint (`qsub: invalid option -- 'Z'`) followed by `[exiting]` and usage.
    pub fn getopt(complaint: &str) -> Self {
        QsubError::Usage {
            pre: Some(format!("qsub: {complaint}")),
            message: "exiting".to_string(),
        }
    }

    /// The error's one line, without the brackets and usage text around a usage error.
    pub fn message(&self) -> &str {
        match self {
            QsubError::Usage { message, .. } | QsubError::Fatal { message, .. } => message,
        }
    }

    /// The same error as another command that shares qsub's option rules (`qalter`)
    /// reports it: a message's leading `qsub:` becomes `COMMAND:`; the rest, which may
    /// quote what the user typed, is left alone.
    pub fn for_command(mut self, command: &str) -> Self {
        let message = match &mut self {
            QsubError::Usage { message, .. } | QsubError::Fatal { message, .. } => message,
        };
        if let Some(rest) = message.strip_prefix("qsub:") {
            *message = format!("{command}:{rest}");
        }
        self
    }

    /// Everything qsub writes to stderr for this error.
    pub fn stderr_text(&self) -> String {
        match self {
            QsubError::Usage { pre, message } => {
                let mut out = String::new();
                if let Some(pre) = pre {
                    out.push_str(pre);
                    out.push('\n');
                }
                // Torque: fprintf(stderr, "[%s]\n\n%s%s\n", msg, usage, usage2).
                out.push_str(&format!("[{message}]\n\n{USAGE}\n"));
                out
            }
            QsubError::Fatal { message, .. } => format!("{message}\n"),
        }
    }

    /// qsub's exit status for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            QsubError::Usage { .. } => 2,
            QsubError::Fatal { code, .. } => *code,
        }
    }
}

/// The text inside `qsub: submit error (...)` for a server rejection.
///
/// Torque prints the PBSE text, then ` MSG=` and the server's detail when there is one. Two
/// errors name the offending attribute instead: `Illegal attribute or resource value for
/// Resource_List.walltime` and `Unknown resource type  Resource_List.foo` (the second text
/// ends in a space, hence two spaces).
pub fn server_error_text(err: &PbsError) -> String {
    let mut out = pbse::text(err.code).to_string();
    if matches!(err.code, pbse::BADATVAL | pbse::UNKRESC) && !err.object.is_empty() {
        out.push(' ');
        out.push_str(&err.object);
    }
    if !err.detail.is_empty() {
        out.push_str(" MSG=");
        out.push_str(&err.detail);
    }
    out
}

/// What qsub does with a server rejection: PBSE_BADUSER for root is Torque's client-side
/// refusal (`qsub can not be run as root`, exit 1); everything else is
/// `qsub: submit error (TEXT)` with the PBSE number modulo 256 as exit status.
pub fn submit_error(err: &PbsError, running_as_root: bool) -> QsubError {
    if err.code == pbse::BADUSER && running_as_root {
        return QsubError::fatal("qsub can not be run as root", 1);
    }
    QsubError::fatal(
        format!("qsub: submit error ({})", server_error_text(err)),
        pbse::exit_code(err.code),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: i32, detail: &str, object: &str) -> PbsError {
        PbsError {
            code,
            detail: detail.into(),
            object: object.into(),
        }
    }

    fn line(e: &PbsError) -> (String, i32) {
        let q = submit_error(e, false);
        (q.stderr_text(), q.exit_code())
    }

    #[test]
    fn reference_table_2_4_server_rows() {
        let rows: Vec<(PbsError, &str, i32)> = vec![
            (
                err(pbse::UNKQUE, "requested queue not found", "nosuch"),
                "qsub: submit error (Unknown queue MSG=requested queue not found)\n",
                172,
            ),
            (
                err(pbse::BADATVAL, "", "Resource_List.walltime"),
                "qsub: submit error (Illegal attribute or resource value for Resource_List.walltime)\n",
                168,
            ),
            (
                err(pbse::BADATVAL, "", "Resource_List.mem"),
                "qsub: submit error (Illegal attribute or resource value for Resource_List.mem)\n",
                168,
            ),
            (
                err(pbse::UNKRESC, "", "Resource_List.foo"),
                "qsub: submit error (Unknown resource type  Resource_List.foo)\n",
                189,
            ),
            (
                err(pbse::SYNTAX, "Invalid Syntax", ""),
                "qsub: submit error (Command syntax invalid MSG=Invalid Syntax)\n",
                27,
            ),
            (
                err(
                    pbse::EXCQRESC,
                    "cannot locate feasible nodes (nodes file is empty, all systems are busy, or no nodes have the requested feature)",
                    "",
                ),
                "qsub: submit error (Job exceeds queue resource limits MSG=cannot locate feasible nodes (nodes file is empty, all systems are busy, or no nodes have the requested feature))\n",
                190,
            ),
            (
                err(pbse::NOATTR, "detected presence of an unknown attribute", "foo"),
                "qsub: submit error (Undefined attribute  MSG=detected presence of an unknown attribute)\n",
                154,
            ),
            (
                err(pbse::BADDEPEND, "", ""),
                "qsub: submit error (Invalid Job Dependency)\n",
                208,
            ),
            (
                err(pbse::BAD_ARRAY_REQ, "", ""),
                "qsub: submit error (Bad Job Array Request)\n",
                235,
            ),
            (
                err(
                    pbse::QUNOENB,
                    "queue is disabled: user testuser@vm, queue dq",
                    "dq",
                ),
                "qsub: submit error (Queue is not enabled MSG=queue is disabled: user testuser@vm, queue dq)\n",
                175,
            ),
            (
                err(pbse::TIMEOUT, "", ""),
                "qsub: submit error (Time out)\n",
                237,
            ),
        ];
        for (e, text, code) in rows {
            assert_eq!(line(&e), (text.to_string(), code), "{e:?}");
        }
    }

    #[test]
    fn root_refusal() {
        let q = submit_error(&err(pbse::BADUSER, "", ""), true);
        assert_eq!(q.stderr_text(), "qsub can not be run as root\n");
        assert_eq!(q.exit_code(), 1);
        let q = submit_error(&err(pbse::BADUSER, "", ""), false);
        assert_eq!(
            q.stderr_text(),
            "qsub: submit error (Bad UID for job execution)\n"
        );
        assert_eq!(q.exit_code(), 177);
    }

    #[test]
    fn another_command_renames_only_the_prefix() {
        let q = QsubError::usage("qsub: illegal -N value").for_command("qalter");
        assert_eq!(q.message(), "qalter: illegal -N value");
        assert_eq!(q.exit_code(), 2);
        let text = "Cannot find an attr=value pair in comma separated value 'qsub:x]'";
        let q = QsubError::fatal(text, 1).for_command("qalter");
        assert_eq!(q.message(), text);
        assert_eq!(q.exit_code(), 1);
    }

    #[test]
    fn usage_error_layout() {
        let q = QsubError::usage("qsub: illegal -m value");
        let text = q.stderr_text();
        assert!(text.starts_with("[qsub: illegal -m value]\n\nusage: qsub [-a date_time]"));
        assert!(text.contains("[-K <kill delay seconds>] \n"));
        assert!(text.contains("[-o path] \n"));
        assert!(text.contains("[-r y|n] \n"));
        assert!(text.ends_with("[-z] [script]\n\n"));
        assert_eq!(q.exit_code(), 2);

        let q = QsubError::getopt("invalid option -- 'Z'");
        assert!(q
            .stderr_text()
            .starts_with("qsub: invalid option -- 'Z'\n[exiting]\n\nusage: qsub "));
        assert_eq!(q.exit_code(), 2);
    }
}
