//! qsub's options, validated the way Torque's `process_opts` does.
//!
//! Options come from `#PBS` directives first and from the command line last; each later
//! occurrence replaces an earlier one (so the command line overrides the script), except
//! that `-l` resources and `-v` variables accumulate name by name. Validation errors use
//! Torque's messages: `[qsub: illegal -m value]` and the usage text, exit 2.

use std::path::Path;

use chrono::{DateTime, Local};

use super::error::QsubError;
use super::exectime::parse_exec_time;
use crate::getopt::Item;

/// Torque 6.1's getopt string for qsub (`-K` added as the 6.1.3 usage text lists it).
pub const QSUB_OPTSTRING: &str =
    "a:A:b:c:C:d:D:e:EfF:hIj:J:k:K:l:m:M:nN:o:p:P:q:r:S:t:T:u:v:Vw:W:Xxz-:";

/// What option handling needs from the outside world, gathered once so the logic stays pure.
#[derive(Debug, Clone)]
pub struct Context {
    /// The submission directory (relative paths are made absolute against it).
    pub cwd: String,
    /// The submission environment, in `environ` order.
    pub env: Vec<(String, String)>,
    /// This host's short name (`submit_host`, `PBS_O_HOST`, the host part of `-o`/`-e`).
    pub host: String,
    /// The server's name (`PBS_O_SERVER`).
    pub server: String,
    /// The clock, for `-a`.
    pub now: DateTime<Local>,
}

impl Context {
    /// The value of an environment variable, if set.
    pub fn getenv(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `path` made absolute against the submission directory (no normalisation, as Torque).
    pub fn absolute(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else if self.cwd.ends_with('/') {
            format!("{}{path}", self.cwd)
        } else {
            format!("{}/{path}", self.cwd)
        }
    }
}

/// The job as the options describe it so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// Plain job attributes (`Job_Name`, `Mail_Points`, ...) in first-set order.
    pub attrs: Vec<(String, String)>,
    /// `Resource_List` entries in first-set order.
    pub resources: Vec<(String, String)>,
    /// `-v` variables in first-set order.
    pub variables: Vec<(String, String)>,
    /// `-q`.
    pub destination: Option<String>,
    /// `-d`, absolute.
    pub init_dir: Option<String>,
    /// `-w`, absolute.
    pub work_dir: Option<String>,
    /// `-V`.
    pub export_all: bool,
    /// `-z`.
    pub quiet: bool,
    /// `-I` (or `-W interactive=true`).
    pub interactive: bool,
    /// `-x`: the interactive job runs the script operand as a command line, not a shell.
    pub run_command: bool,
    /// `-t` (or `-W t=...`).
    pub array_request: Option<String>,
    proxy_user: bool,
    proxy_job: bool,
}

fn set(list: &mut Vec<(String, String)>, name: &str, value: &str) {
    match list.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 = value.to_string(),
        None => list.push((name.to_string(), value.to_string())),
    }
}

fn get<'a>(list: &'a [(String, String)], name: &str) -> Option<&'a str> {
    list.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn illegal(letter: char) -> QsubError {
    QsubError::usage(format!("qsub: illegal -{letter} value"))
}

/// Torque's `check_job_name`: at most 256 visible ASCII characters.
pub fn valid_job_name(name: &str) -> bool {
    name.len() <= 256 && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Torque's `parse_at_list`: a comma-separated `name[@host]` list with no empty item;
/// with `absolute`, every name must be an absolute path (`-S`).
fn valid_at_list(list: &str, absolute: bool) -> bool {
    !list.is_empty()
        && list.split(',').all(|item| {
            let name = capstan_proto::text::before_at(item.trim());
            !name.is_empty() && (!absolute || name.starts_with('/'))
        })
}

/// Torque's `prepare_path` for `-o`/`-e`: `[HOST:]PATH` becomes `HOST:/absolute/path`.
pub fn prepare_path(arg: &str, ctx: &Context) -> Option<String> {
    let (host, path) = match arg.split_once(':') {
        Some((h, p)) if !h.contains('/') => (h, p),
        _ => (ctx.host.as_str(), arg),
    };
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{host}:{}", ctx.absolute(path)))
}

/// Parses one `-l` value into resources, as Torque's `add_verify_resources`:
/// comma-separated `name=value` pairs, a value may be quoted to contain commas, and
/// `gpus=N` is shorthand for `gres=gpus:N`. A name without `=` is fatal (exit 1) with
/// Torque's message; other malformed lists are `[qsub: illegal -l value]`.
pub fn parse_resources(list: &str) -> Result<Vec<(String, String)>, QsubError> {
    if list.contains(",procs=") && list.contains("nodes=") {
        return Err(illegal('l'));
    }
    let b = list.as_bytes();
    let len = b.len();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut r = 0;
    while r < len {
        while r < len && b[r].is_ascii_whitespace() {
            r += 1;
        }
        let mut eq = r;
        while eq < len && b[eq] != b'=' && b[eq] != b',' {
            eq += 1;
        }
        if r == eq {
            return Err(illegal('l'));
        }
        let name_end = (r..eq).find(|&i| b[i].is_ascii_whitespace()).unwrap_or(eq);
        let name = &list[r..name_end];
        if eq == len || b[eq] == b',' {
            return Err(QsubError::fatal(
                format!(
                    "Cannot find an attr=value pair in comma separated value '{}'",
                    &list[r..]
                ),
                1,
            ));
        }
        let mut v = eq + 1;
        while v < len && b[v].is_ascii_whitespace() {
            v += 1;
        }
        let comma = list[v..].find(',').map(|i| v + i);
        let quote = ['\'', '"']
            .iter()
            .filter_map(|q| list[v..].find(*q).map(|i| v + i))
            .find(|&qi| comma.is_none_or(|c| qi < c));
        let quoted = quote.is_some();
        if let Some(qi) = quote {
            v = qi + 1;
        }
        let mut e = v;
        while e < len {
            if quoted {
                if b[e] == b'\'' || b[e] == b'"' {
                    break;
                }
            } else if b[e] == b',' {
                break;
            }
            e += 1;
        }
        let value = &list[v..e];
        if name.starts_with("gpus") {
            set(&mut out, "gres", &format!("gpus:{value}"));
        } else {
            set(&mut out, name, value);
        }
        if quoted {
            while e < len && (b[e] == b'\'' || b[e] == b'"') {
                e += 1;
            }
        }
        r = e;
        if r < len && b[r] == b',' {
            r += 1;
            if r == len {
                return Err(illegal('l'));
            }
        }
    }
    Ok(out)
}

/// The dependency types Torque's `parse_depend_list` knows.
const DEPEND_TYPES: &[&str] = &[
    "on",
    "after",
    "afterok",
    "afternotok",
    "afterany",
    "before",
    "beforeok",
    "beforenotok",
    "beforeany",
    "synccount",
    "syncwith",
    "afterstartarray",
    "afterokarray",
    "afternotokarray",
    "afteranyarray",
    "beforestartarray",
    "beforeokarray",
    "beforenotokarray",
    "beforeanyarray",
];

/// Whether `-W depend=VALUE` is well formed: `type:id[:id...][,type:...]`, with a count for
/// `on` and `synccount`. Whether the jobs exist is the server's question (PBSE_BADDEPEND).
pub fn valid_depend(value: &str) -> bool {
    !value.is_empty()
        && value.split(',').all(|item| {
            let mut parts = item.split(':');
            let kind = parts.next().unwrap_or("");
            let rest: Vec<&str> = parts.collect();
            if !DEPEND_TYPES.contains(&kind) || rest.is_empty() || rest.iter().any(|p| p.is_empty())
            {
                return false;
            }
            match kind {
                "on" | "synccount" => {
                    rest.len() == 1 && rest[0].bytes().all(|c| c.is_ascii_digit())
                }
                _ => true,
            }
        })
}

/// Torque's hold list (`qalter -h`, `qselect -h`): letters of `uosn`, and `n` only alone.
pub fn valid_hold_list(text: &str) -> bool {
    let letters_ok = !text.is_empty() && text.chars().all(|c| "uosn".contains(c));
    letters_ok && (!text.contains('n') || text.chars().all(|c| c == 'n'))
}

/// Torque's `get_name_value` for `-W`: `name = value`, quotes dropped, value non-empty.
pub fn name_value(text: &str) -> Option<(String, String)> {
    let token: String = text.chars().filter(|c| *c != '\'' && *c != '"').collect();
    if token.is_empty() || token.starts_with('=') {
        return None;
    }
    let token = token.trim_start();
    let name_end = token
        .find(|c: char| c.is_ascii_whitespace() || c == '=')
        .unwrap_or(token.len());
    let name = &token[..name_end];
    let after = token[name_end..].trim_start();
    let value = after.strip_prefix('=')?.trim_start();
    if name.is_empty() || value.is_empty() {
        return None;
    }
    Some((name.to_string(), value.to_string()))
}

/// `-v` list items: `NAME=value`, or `NAME` / `NAME=` taking the value from the environment.
/// Commas inside quotes or after a backslash do not separate items. Unlike Torque 6.1, whose
/// later `-v` replaces an earlier one wholesale, variables accumulate name by name, like `-l`.
fn parse_variables(list: &str, ctx: &Context) -> Result<Vec<(String, String)>, QsubError> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ',') => items.push(std::mem::take(&mut current)),
            (_, c) => current.push(c),
        }
    }
    items.push(current);
    let mut out = Vec::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.trim(), v),
            None => (item, ""),
        };
        if name.is_empty() {
            // Torque's parse_variable_list: message and exit status 3.
            return Err(QsubError::fatal("invalid -v syntax", 3));
        }
        // `NAME` and `NAME=` take the submitter's value (empty when unset), as in Torque.
        let value = if value.is_empty() {
            ctx.getenv(name).unwrap_or("")
        } else {
            value
        };
        out.push((name.to_string(), value.to_string()));
    }
    Ok(out)
}

const CHECKPOINT_WORDS: &[&str] = &[
    "n", "c", "s", "u", "none", "shutdown", "periodic", "enabled", "interval", "depth", "dir",
];

impl JobOptions {
    /// Options for a script whose default `Job_Name` is `job_name`.
    pub fn new(job_name: &str) -> Self {
        let mut opts = JobOptions::default();
        set(&mut opts.attrs, "Job_Name", job_name);
        opts
    }

    /// A plain attribute's value, if set.
    pub fn attr(&self, name: &str) -> Option<&str> {
        get(&self.attrs, name)
    }

    fn set_attr(&mut self, name: &str, value: &str) {
        set(&mut self.attrs, name, value);
    }

    /// Applies one getopt pass (a directive line or the command line), in order.
    pub fn apply_items(&mut self, items: &[Item], ctx: &Context) -> Result<(), QsubError> {
        for item in items {
            match item {
                Item::Error(complaint) => return Err(QsubError::getopt(complaint)),
                Item::Opt(letter, arg) => self.apply(*letter, arg.as_deref().unwrap_or(""), ctx)?,
            }
        }
        if self.proxy_job && !self.proxy_user {
            return Err(QsubError::usage(
                "The -J option can only be used in conjunction with -P",
            ));
        }
        Ok(())
    }

    /// Applies one option.
    pub fn apply(&mut self, letter: char, arg: &str, ctx: &Context) -> Result<(), QsubError> {
        match letter {
            '-' => return Err(QsubError::usage("a single - is not a valid option")),
            'a' => {
                let epoch = parse_exec_time(arg, &ctx.now).ok_or_else(|| illegal('a'))?;
                self.set_attr("Execution_Time", &epoch.to_string());
            }
            'A' => self.set_attr("Account_Name", arg),
            // -b (server retry seconds) and -D (root directory) have no meaning here.
            'b' | 'D' | 'C' => {}
            'c' => {
                let trimmed = arg.trim_start();
                let ok = !trimmed.is_empty()
                    && trimmed.split(',').all(|item| {
                        let word = item.split('=').next().unwrap_or("").trim_end();
                        CHECKPOINT_WORDS.contains(&word)
                    });
                if !ok {
                    return Err(illegal('c'));
                }
                self.set_attr("Checkpoint", trimmed);
            }
            'd' => {
                let dir = ctx.absolute(arg);
                if arg.is_empty() || !Path::new(&dir).is_dir() {
                    return Err(illegal('d'));
                }
                self.init_dir = Some(dir);
            }
            'e' | 'o' => {
                let path = prepare_path(arg, ctx).ok_or_else(|| illegal(letter))?;
                let name = if letter == 'e' {
                    "Error_Path"
                } else {
                    "Output_Path"
                };
                self.set_attr(name, &path);
            }
            'E' | 'n' => self.set_attr("node_exclusive", "TRUE"),
            'f' => self.set_attr("fault_tolerant", "TRUE"),
            'F' => self.set_attr("job_arguments", arg),
            'h' => self.set_attr("Hold_Types", "u"),
            'I' => self.interactive = true,
            'j' => {
                if !matches!(arg, "oe" | "eo" | "n") {
                    return Err(illegal('j'));
                }
                self.set_attr("Join_Path", arg);
            }
            'J' => {
                self.proxy_job = true;
                self.set_attr("job_id", arg);
            }
            'k' => {
                if !matches!(arg, "o" | "e" | "oe" | "eo" | "n") {
                    return Err(illegal('k'));
                }
                self.set_attr("Keep_Files", arg);
            }
            'K' => {
                if arg.is_empty() || !arg.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(illegal('K'));
                }
                self.set_attr("kill_delay", arg);
            }
            'l' => {
                for (name, value) in parse_resources(arg)? {
                    set(&mut self.resources, &name, &value);
                }
            }
            'm' => {
                let value = arg.trim_start();
                let ok = value == "n"
                    || (!value.is_empty() && value.chars().all(|c| matches!(c, 'a' | 'b' | 'e')));
                if !ok {
                    return Err(illegal('m'));
                }
                self.set_attr("Mail_Points", value);
            }
            'M' => {
                if !valid_at_list(arg, false) {
                    return Err(illegal('M'));
                }
                self.set_attr("Mail_Users", arg);
            }
            'N' => {
                if !valid_job_name(arg) {
                    return Err(illegal('N'));
                }
                self.set_attr("Job_Name", arg);
            }
            'p' => {
                let value = arg.trim_start();
                let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(illegal('p'));
                }
                let priority: i64 = value
                    .trim_start_matches('+')
                    .parse()
                    .map_err(|_| illegal('p'))?;
                if !(-1024..=1023).contains(&priority) {
                    return Err(illegal('p'));
                }
                self.set_attr("Priority", &priority.to_string());
            }
            'P' => {
                if arg.is_empty() {
                    return Err(QsubError::usage("qsub: -P requires a user name"));
                }
                let (user, group) = match arg.split_once(':') {
                    Some((u, g)) => (u, Some(g)),
                    None => (arg, None),
                };
                if let Some(group) = group {
                    self.set_attr("group_list", group);
                }
                self.set_attr("proxy_user", user);
                self.proxy_user = true;
            }
            'q' => self.destination = Some(arg.to_string()),
            'r' => {
                let value = match arg {
                    "y" => "True",
                    "n" => "False",
                    _ => return Err(QsubError::usage("qsub: illegal -r value (y/n)")),
                };
                self.set_attr("Rerunable", value);
            }
            'S' => {
                if !valid_at_list(arg, true) {
                    return Err(illegal('S'));
                }
                self.set_attr("Shell_Path_List", arg);
            }
            't' => {
                self.array_request = Some(arg.to_string());
                self.set_attr("job_array_request", arg);
            }
            'T' => self.set_attr("jobtype", arg),
            'u' => {
                if !valid_at_list(arg, false) {
                    return Err(illegal('u'));
                }
                self.set_attr("User_List", arg);
            }
            'v' => {
                for (name, value) in parse_variables(arg, ctx)? {
                    set(&mut self.variables, &name, &value);
                }
            }
            'V' => self.export_all = true,
            'w' => {
                if arg.is_empty() {
                    return Err(illegal('w'));
                }
                self.work_dir = Some(ctx.absolute(arg));
            }
            'W' => self.apply_w(arg)?,
            'X' => {
                if ctx.getenv("DISPLAY").is_none() {
                    return Err(QsubError::usage("qsub: DISPLAY not set"));
                }
            }
            'x' => {
                if !self.interactive {
                    return Err(QsubError::usage(
                        "qsub: '-x' invalid on non-interactive job",
                    ));
                }
                self.run_command = true;
            }
            'z' => self.quiet = true,
            other => {
                // Unreachable with QSUB_OPTSTRING; worded like Torque's default branch.
                return Err(QsubError::usage(format!(
                    "qsub: invalid attribute flag ({other}) value: {arg}"
                )));
            }
        }
        Ok(())
    }

    /// `-W name=value`: `depend` is checked here, a few names have meaning to qsub itself,
    /// and everything else goes to the server as attribute `name` (which answers
    /// `Undefined attribute` for names it does not know). Without `=`, Torque treats the
    /// whole value as a resource-manager extension attribute named `x`.
    fn apply_w(&mut self, arg: &str) -> Result<(), QsubError> {
        let text = arg.trim_start();
        if text.is_empty() {
            return Err(illegal('W'));
        }
        let (name, value) = name_value(text)
            .or_else(|| name_value(&format!("x={text}")))
            .ok_or_else(|| illegal('W'))?;
        match name.as_str() {
            "depend" => {
                if !valid_depend(&value) {
                    return Err(QsubError::usage(format!(
                        "qsub: illegal -W dependency value: '{value}'"
                    )));
                }
                self.set_attr("depend", &value);
            }
            "interactive" => {
                if value != "true" {
                    return Err(illegal('W'));
                }
                self.interactive = true;
            }
            "t" => {
                self.set_attr("job_array_request", &value);
                self.array_request = Some(value);
            }
            "umask" => {
                let digits = value.strip_prefix('0').unwrap_or(&value);
                if digits.len() > 3 {
                    return Err(QsubError::usage(format!(
                        "qsub: Invalid umask value, too many digits: {value}"
                    )));
                }
                let stored = if value.starts_with('0') {
                    i64::from_str_radix(&value, 8)
                        .map(|m| m.to_string())
                        .unwrap_or(value.clone())
                } else {
                    value.clone()
                };
                self.set_attr("umask", &stored);
            }
            "fault_tolerant" => {
                let stored = match value.chars().next() {
                    Some('T' | 't' | 'Y' | 'y' | '1') => "TRUE",
                    Some('F' | 'f' | 'N' | 'n' | '0') => "FALSE",
                    _ => {
                        return Err(QsubError::usage(format!(
                            "qsub: invalid fault_tolerant value: {value}"
                        )))
                    }
                };
                self.set_attr("fault_tolerant", stored);
            }
            "stagein" | "stageout" => {
                let joined = match self.attr(&name) {
                    Some(old) => format!("{old},{value}"),
                    None => value.clone(),
                };
                self.set_attr(&name, &joined);
            }
            _ => {
                let joined = match self.attr(&name) {
                    Some(old) => format!("{old};{value}"),
                    None => value.clone(),
                };
                self.set_attr(&name, &joined);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::getopt::getopt;

    pub(crate) fn ctx() -> Context {
        Context {
            cwd: "/home/u/work".into(),
            env: vec![
                ("HOME".into(), "/home/u".into()),
                ("FOO".into(), "from-env".into()),
            ],
            host: "login1".into(),
            server: "vm".into(),
            now: Local::now(),
        }
    }

    fn apply(args: &[&str]) -> Result<JobOptions, QsubError> {
        let mut opts = JobOptions::new("job.sh");
        let parsed = getopt(args, QSUB_OPTSTRING);
        opts.apply_items(&parsed.items, &ctx())?;
        Ok(opts)
    }

    fn usage_message(args: &[&str]) -> String {
        match apply(args).unwrap_err() {
            QsubError::Usage { message, .. } => message,
            other => panic!("not a usage error: {other:?}"),
        }
    }

    #[test]
    fn client_side_errors_match_torque() {
        let cases: &[(&[&str], &str)] = &[
            (&["-m", "xyz"], "qsub: illegal -m value"),
            (&["-m", ""], "qsub: illegal -m value"),
            (&["-m", "an"], "qsub: illegal -m value"),
            (&["-j", "x"], "qsub: illegal -j value"),
            (&["-k", "x"], "qsub: illegal -k value"),
            (&["-a", "tomorrow"], "qsub: illegal -a value"),
            (&["-p", "5000"], "qsub: illegal -p value"),
            (&["-p", "-1025"], "qsub: illegal -p value"),
            (&["-p", "1x"], "qsub: illegal -p value"),
            (&["-d", "/nonexistent/dir"], "qsub: illegal -d value"),
            (
                &["-W", "depend=bogus:1"],
                "qsub: illegal -W dependency value: 'bogus:1'",
            ),
            (
                &["-W", "depend=afterok"],
                "qsub: illegal -W dependency value: 'afterok'",
            ),
            (&["-W", ""], "qsub: illegal -W value"),
            (&["-r", "x"], "qsub: illegal -r value (y/n)"),
            (&["-x"], "qsub: '-x' invalid on non-interactive job"),
            (&["-N", "has space"], "qsub: illegal -N value"),
            (&["-S", "bash"], "qsub: illegal -S value"),
            (&["-c", "bogus"], "qsub: illegal -c value"),
            (&["-l", "nodes=1,procs=2"], "qsub: illegal -l value"),
            (&["-l", "=5"], "qsub: illegal -l value"),
            (&["-l", "mem=1gb,"], "qsub: illegal -l value"),
            (&["--foo"], "a single - is not a valid option"),
            (
                &["-J", "1"],
                "The -J option can only be used in conjunction with -P",
            ),
        ];
        for (args, message) in cases {
            assert_eq!(usage_message(args), *message, "{args:?}");
        }
    }

    #[test]
    fn unknown_flag_is_getopt_then_exiting() {
        let e = apply(&["-Z"]).unwrap_err();
        assert!(e
            .stderr_text()
            .starts_with("qsub: invalid option -- 'Z'\n[exiting]\n\nusage: qsub"));
        assert_eq!(e.exit_code(), 2);
        let e = apply(&["-N"]).unwrap_err();
        assert!(e
            .stderr_text()
            .starts_with("qsub: option requires an argument -- 'N'\n[exiting]\n\n"));
    }

    #[test]
    fn resource_without_value_is_fatal_exit_1() {
        let e = apply(&["-l", "walltime"]).unwrap_err();
        assert_eq!(
            e.stderr_text(),
            "Cannot find an attr=value pair in comma separated value 'walltime'\n"
        );
        assert_eq!(e.exit_code(), 1);
        let e = parse_resources("mem=1gb,walltime,ncpus=2").unwrap_err();
        assert_eq!(
            e.stderr_text(),
            "Cannot find an attr=value pair in comma separated value 'walltime,ncpus=2'\n"
        );
    }

    #[test]
    fn resources_parse_and_accumulate() {
        assert_eq!(
            parse_resources("nodes=2:ppn=4+1:ppn=2:gpu,walltime=00:10:00").unwrap(),
            vec![
                ("nodes".to_string(), "2:ppn=4+1:ppn=2:gpu".to_string()),
                ("walltime".to_string(), "00:10:00".to_string()),
            ]
        );
        assert_eq!(
            parse_resources(r#"other="a,b",mem=1gb"#).unwrap(),
            vec![
                ("other".to_string(), "a,b".to_string()),
                ("mem".to_string(), "1gb".to_string()),
            ]
        );
        assert_eq!(
            parse_resources("gpus=2").unwrap(),
            vec![("gres".to_string(), "gpus:2".to_string())]
        );
        let opts = apply(&[
            "-l",
            "walltime=1:00,mem=1gb",
            "-l",
            "nodes=1:ppn=2",
            "-l",
            "walltime=2:00",
        ])
        .unwrap();
        assert_eq!(
            opts.resources,
            vec![
                ("walltime".to_string(), "2:00".to_string()),
                ("mem".to_string(), "1gb".to_string()),
                ("nodes".to_string(), "1:ppn=2".to_string()),
            ]
        );
    }

    #[test]
    fn attributes_from_options() {
        let opts = apply(&[
            "-N",
            "run1",
            "-m",
            "abe",
            "-M",
            "u@x",
            "-j",
            "oe",
            "-k",
            "oe",
            "-h",
            "-p",
            "100",
            "-r",
            "n",
            "-A",
            "acct",
            "-S",
            "/bin/sh",
            "-o",
            "out/",
            "-e",
            "/tmp/err",
            "-q",
            "dq",
            "-W",
            "depend=afterok:12",
            "-W",
            "foo=bar",
            "-z",
            "-V",
        ])
        .unwrap();
        let want = [
            ("Job_Name", "run1"),
            ("Mail_Points", "abe"),
            ("Mail_Users", "u@x"),
            ("Join_Path", "oe"),
            ("Keep_Files", "oe"),
            ("Hold_Types", "u"),
            ("Priority", "100"),
            ("Rerunable", "False"),
            ("Account_Name", "acct"),
            ("Shell_Path_List", "/bin/sh"),
            ("Output_Path", "login1:/home/u/work/out/"),
            ("Error_Path", "login1:/tmp/err"),
            ("depend", "afterok:12"),
            ("foo", "bar"),
        ];
        for (name, value) in want {
            assert_eq!(opts.attr(name), Some(value), "{name}");
        }
        assert_eq!(opts.destination.as_deref(), Some("dq"));
        assert!(opts.quiet && opts.export_all);
        let opts = apply(&["-m", "n", "-r", "y", "-p", "-1024", "-W", "noequals"]).unwrap();
        assert_eq!(opts.attr("Mail_Points"), Some("n"));
        assert_eq!(opts.attr("Rerunable"), Some("True"));
        assert_eq!(opts.attr("Priority"), Some("-1024"));
        assert_eq!(opts.attr("x"), Some("noequals"));
    }

    #[test]
    fn dirs_paths_and_exec_time() {
        let opts = apply(&["-d", "/", "-w", "sub", "-o", "host2:/abs/o"]).unwrap();
        assert_eq!(opts.init_dir.as_deref(), Some("/"));
        assert_eq!(opts.work_dir.as_deref(), Some("/home/u/work/sub"));
        assert_eq!(opts.attr("Output_Path"), Some("host2:/abs/o"));
        let opts = apply(&["-a", "2359"]).unwrap();
        let epoch: i64 = opts.attr("Execution_Time").unwrap().parse().unwrap();
        assert!(epoch > Local::now().timestamp());
    }

    #[test]
    fn variables_accumulate_with_env_lookup() {
        let e = apply(&["-v", "=x"]).unwrap_err();
        assert_eq!(
            (e.stderr_text().as_str(), e.exit_code()),
            ("invalid -v syntax\n", 3)
        );
        let opts = apply(&["-v", "A=1,FOO,B='x,y'", "-v", "A=2,MISSING,HOME="]).unwrap();
        assert_eq!(
            opts.variables,
            vec![
                ("A".to_string(), "2".to_string()),
                ("FOO".to_string(), "from-env".to_string()),
                ("B".to_string(), "x,y".to_string()),
                ("MISSING".to_string(), String::new()),
                ("HOME".to_string(), "/home/u".to_string()),
            ]
        );
    }

    #[test]
    fn depend_and_array_syntax() {
        assert!(valid_depend("afterok:12"));
        assert!(valid_depend("afterok:12.vm:13,afterany:14"));
        assert!(valid_depend("on:2"));
        assert!(!valid_depend("on:x"));
        assert!(!valid_depend("bogus:1"));
        assert!(!valid_depend("afterok:"));
    }

    #[test]
    fn later_options_override_earlier() {
        let mut opts = JobOptions::new("job.sh");
        let c = ctx();
        let directive = getopt(
            &["-N", "fromscript", "-l", "mem=1gb", "-m", "abe"],
            QSUB_OPTSTRING,
        );
        opts.apply_items(&directive.items, &c).unwrap();
        let cmdline = getopt(
            &["-N", "fromcmd", "-l", "mem=2gb,walltime=5"],
            QSUB_OPTSTRING,
        );
        opts.apply_items(&cmdline.items, &c).unwrap();
        assert_eq!(opts.attr("Job_Name"), Some("fromcmd"));
        assert_eq!(opts.attr("Mail_Points"), Some("abe"));
        assert_eq!(
            opts.resources,
            vec![
                ("mem".to_string(), "2gb".to_string()),
                ("walltime".to_string(), "5".to_string()),
            ]
        );
    }
}
