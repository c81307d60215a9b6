//! The job script: is it a text script, and which `#PBS` directives does it carry?
//!
//! Torque's rules (qsub_functions.c `get_script`, `ispbsdir`, `isexecutable`, `make_argv`):
//! * Directives are read from the top of the script until the first executable line. A line
//!   is executable when, after leading white space, it is non-empty and does not start with
//!   `#`; a line starting with `:` or `#!` never is. Blank lines and comments don't stop the scan.
//! * A directive is a line whose first non-blank characters are the prefix (`#PBS`, or `-C`,
//!   or `$PBS_DPREFIX`); the rest of the line holds options as on the command line. A line
//!   ending in `\` continues on the next line.
//! * The options are split into words like a shell would: white space separates, quotes
//!   group, a backslash escapes the next character.

use super::error::QsubError;

/// Torque's message for a script that is not text (two spaces, as Torque prints it).
pub const NOT_TEXT: &str = "qsub:  file must be an ascii script";
/// Torque's message for a script file with DOS line ends.
pub const DOS_FORMAT: &str = "qsub:  script is written in DOS/Windows text format";
/// Capstan's message for an empty script (Torque has none; it would queue a job that does nothing).
pub const EMPTY: &str = "qsub: script file is empty";

/// Checks that `bytes` can be a job script. `from_file` enables Torque's DOS line-end check,
/// which Torque applies to script files but not to standard input.
pub fn check_script(bytes: &[u8], from_file: bool) -> Result<(), QsubError> {
    if bytes.is_empty() {
        return Err(QsubError::fatal(EMPTY, 1));
    }
    // Torque accepts only printable characters and white space. Capstan also accepts UTF-8
    // text (comments in other languages), but still refuses NUL and other control bytes.
    let text = std::str::from_utf8(bytes).map_err(|_| QsubError::fatal(NOT_TEXT, 1))?;
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
    {
        return Err(QsubError::fatal(NOT_TEXT, 1));
    }
    if from_file && text.contains("\r\n") {
        return Err(QsubError::fatal(DOS_FORMAT, 1));
    }
    Ok(())
}

/// C's `isspace` in the C locale.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Torque's `isexecutable`: does this line end the directive section?
fn is_executable(line: &str) -> bool {
    if line.starts_with(':') || line.starts_with("#!") {
        return false;
    }
    let trimmed = line.trim_start_matches(is_c_space);
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

/// The option text of every directive in `script`, in order, continuation lines joined.
pub fn directives(script: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    if prefix.is_empty() {
        return found;
    }
    let mut lines = script.split('\n');
    while let Some(raw) = lines.next() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let body = line.trim_start_matches(is_c_space);
        if let Some(rest) = body.strip_prefix(prefix) {
            let mut text = rest.to_string();
            while text.ends_with('\\') {
                text.pop();
                match lines.next() {
                    Some(next) => text.push_str(next.strip_suffix('\r').unwrap_or(next)),
                    None => break,
                }
            }
            found.push(text);
        } else if is_executable(line) {
            break;
        }
    }
    found
}

/// Splits a directive's option text into words: white space separates, single or double
/// quotes group (and are removed), a backslash outside quotes takes the next character
/// literally. An unterminated quote is an error, as in Torque (`qsub: unmatched`, exit 1).
pub fn split_words(text: &str) -> Result<Vec<String>, QsubError> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(other) => current.push(other),
                        None => {
                            return Err(QsubError::fatal(format!("qsub: unmatched {c}"), 1));
                        }
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            c if is_c_space(c) => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            other => {
                in_word = true;
                current.push(other);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_until_first_command() {
        let script = "#!/bin/bash\n#PBS -N first\n\n# a comment\n  #PBS -l walltime=10:00\n: noop\necho hi\n#PBS -N ignored\n";
        assert_eq!(
            directives(script, "#PBS"),
            vec![" -N first", " -l walltime=10:00"]
        );
    }

    #[test]
    fn custom_prefix_and_continuation() {
        let script = "#MYPBS -l nodes=1:ppn=2,\\\nwalltime=1:00\n#PBS -N notme\nsleep 1\n";
        assert_eq!(
            directives(script, "#MYPBS"),
            vec![" -l nodes=1:ppn=2,walltime=1:00"]
        );
        assert!(directives(script, "").is_empty());
    }

    #[test]
    fn crlf_lines_from_stdin_are_tolerated() {
        assert_eq!(directives("#PBS -N x\r\nls\r\n", "#PBS"), vec![" -N x"]);
    }

    #[test]
    fn word_splitting_with_quotes_and_escapes() {
        assert_eq!(
            split_words(r#"  -N "my job" -M 'a b'c -v X=a\ b  "#).unwrap(),
            vec!["-N", "my job", "-M", "a bc", "-v", "X=a b"]
        );
        assert_eq!(split_words("").unwrap(), Vec::<String>::new());
        assert_eq!(split_words(r#"-N """#).unwrap(), vec!["-N", ""]);
        let e = split_words(r#"-N "open"#).unwrap_err();
        assert_eq!(e.stderr_text(), "qsub: unmatched \"\n");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn text_checks() {
        assert!(check_script(b"echo hi\n", true).is_ok());
        assert!(check_script("# héllo\necho\n".as_bytes(), true).is_ok());
        for bad in [&b"\x7fELF\x02\x01\x01\x00"[..], b"echo\0hi", b"\xff\xfe"] {
            let e = check_script(bad, true).unwrap_err();
            assert_eq!(e.stderr_text(), "qsub:  file must be an ascii script\n");
            assert_eq!(e.exit_code(), 1);
        }
        let e = check_script(b"", false).unwrap_err();
        assert_eq!(e.stderr_text(), "qsub: script file is empty\n");
        let e = check_script(b"echo hi\r\n", true).unwrap_err();
        assert_eq!(
            e.stderr_text(),
            "qsub:  script is written in DOS/Windows text format\n"
        );
        assert!(check_script(b"echo hi\r\n", false).is_ok());
    }
}
