//! glibc `getopt(3)` semantics, written by hand.
//!
//! Torque's commands are C programs that parse their arguments with glibc's `getopt`, and
//! scripts and tools depend on exactly what that does: clustered flags (`-hz`), attached
//! arguments (`-Nname`), options after operands (GNU permutation: `qsub job.sh -N x`), `--`
//! ending the options, and glibc's own complaints (`qsub: invalid option -- 'Z'`). Torque then
//! prints its own bracketed message and usage text. An argument-parsing crate such as clap
//! cannot reproduce those bytes, so the commands tokenise with this module and word every
//! message themselves.

/// The command's arguments without the program name. Arguments that are not UTF-8 are
/// converted lossily instead of aborting the command (`std::env::args` would panic).
pub fn args() -> Vec<String> {
    std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// One result of scanning the arguments, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// An option letter and its argument (`None` for a flag).
    Opt(char, Option<String>),
    /// What glibc would print for a bad option, without the leading `CMD: `
    /// (`invalid option -- 'Z'`, `option requires an argument -- 'N'`).
    Error(String),
}

/// Options and operands of one command line (or one `#PBS` directive line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Options in the order given.
    pub items: Vec<Item>,
    /// Non-option arguments in the order given (GNU getopt moves them after the options).
    pub operands: Vec<String>,
}

/// Whether `letter` is an option in `spec` and, if so, whether it takes an argument.
/// `spec` uses getopt's syntax: `"h:t:"` means `-h ARG` and `-t ARG`.
fn lookup(spec: &str, letter: char) -> Option<bool> {
    if letter == ':' {
        return None;
    }
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        let takes_arg = chars.peek() == Some(&':');
        if takes_arg {
            chars.next();
        }
        if c == letter {
            return Some(takes_arg);
        }
    }
    None
}

/// Scans `args` (without the program name) the way glibc's `getopt(argc, argv, spec)` loop
/// does, permuting operands to the end. Errors are recorded in place and scanning goes on,
/// so the caller decides, in order, what to do with each item.
pub fn getopt<S: AsRef<str>>(args: &[S], spec: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_ref();
        i += 1;
        if arg == "--" {
            parsed
                .operands
                .extend(args[i..].iter().map(|a| a.as_ref().to_string()));
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            parsed.operands.push(arg.to_string());
            continue;
        }
        // A cluster of option letters after the dash.
        let body = &arg[1..];
        for (pos, letter) in body.char_indices() {
            match lookup(spec, letter) {
                None => {
                    parsed
                        .items
                        .push(Item::Error(format!("invalid option -- '{letter}'")));
                }
                Some(false) => parsed.items.push(Item::Opt(letter, None)),
                Some(true) => {
                    let rest = &body[pos + letter.len_utf8()..];
                    if !rest.is_empty() {
                        parsed.items.push(Item::Opt(letter, Some(rest.to_string())));
                    } else if i < args.len() {
                        parsed
                            .items
                            .push(Item::Opt(letter, Some(args[i].as_ref().to_string())));
                        i += 1;
                    } else {
                        parsed.items.push(Item::Error(format!(
                            "option requires an argument -- '{letter}'"
                        )));
                    }
                    break;
                }
            }
        }
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(c: char, a: Option<&str>) -> Item {
        Item::Opt(c, a.map(str::to_string))
    }

    #[test]
    fn clusters_attached_and_separate_arguments() {
        let p = getopt(&["-hz", "-Nname", "-l", "walltime=1", "job.sh"], "hzN:l:");
        assert_eq!(
            p.items,
            vec![
                opt('h', None),
                opt('z', None),
                opt('N', Some("name")),
                opt('l', Some("walltime=1")),
            ]
        );
        assert_eq!(p.operands, vec!["job.sh"]);
    }

    #[test]
    fn permutes_operands_and_stops_at_double_dash() {
        let p = getopt(&["job.sh", "-N", "x", "--", "-h"], "hN:");
        assert_eq!(p.items, vec![opt('N', Some("x"))]);
        assert_eq!(p.operands, vec!["job.sh", "-h"]);
    }

    #[test]
    fn single_dash_is_an_operand() {
        let p = getopt(&["-"], "h");
        assert!(p.items.is_empty());
        assert_eq!(p.operands, vec!["-"]);
    }

    #[test]
    fn glibc_error_wording() {
        let p = getopt(&["-Z", "-N"], "N:");
        assert_eq!(
            p.items,
            vec![
                Item::Error("invalid option -- 'Z'".into()),
                Item::Error("option requires an argument -- 'N'".into()),
            ]
        );
    }

    #[test]
    fn dash_as_option_letter_takes_long_names() {
        let p = getopt(&["--foo"], "h-:");
        assert_eq!(p.items, vec![opt('-', Some("foo"))]);
    }
}
