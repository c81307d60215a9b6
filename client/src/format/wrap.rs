//! Torque's `prt_attr`: how `qstat -f`, `-Q -f` and `-B -f` print one attribute.
//!
//! Tools parse these listings and users diff them, so the wrapping must match Torque's
//! byte for byte, quirks included (commas that do not count toward the column, a long
//! token chopped mid-word, a dangling `\n\t` when a value overruns at its last character).

/// Torque's default line size for `-f` listings.
pub const LINE_SIZE: usize = 77;

/// The line size Torque switches to for `-1` (Torque's `maxlinesize`): in practice, no wrapping.
pub const NO_WRAP: usize = 65536;

/// One attribute line, `    NAME[.RESOURCE] = VALUE`, wrapped at `linesize`, *without* the
/// final newline (the caller adds it, as Torque's callers do).
///
/// The algorithm, from Torque's `src/cmds/qstat.c`:
/// 1. the value is split on commas (empty tokens vanish, as with `strtok`); commas are
///    printed between tokens but do not advance the column counter;
/// 2. the counter starts at `len(name) + 7` (`+ len(resource) + 1` with a resource);
/// 3. a token that fits (`counter + len < linesize`) is printed whole;
/// 4. otherwise, unless it is the first token, `\n\t` is printed and the counter set to 9;
///    then the token is printed character by character and whenever the counter exceeds
///    `linesize`, `\n\t` is printed and the counter set to 8.
pub fn attr_line(name: &str, resource: &str, value: &str, linesize: usize) -> String {
    let mut out = String::with_capacity(value.len() + name.len() + 16);
    let mut start = name.chars().count() + 7;
    out.push_str("    ");
    out.push_str(name);
    if !resource.is_empty() {
        start += resource.chars().count() + 1;
        out.push('.');
        out.push_str(resource);
    }
    out.push_str(" = ");

    let mut first = true;
    for (i, token) in value.split(',').filter(|t| !t.is_empty()).enumerate() {
        if i > 0 {
            first = false;
            out.push(',');
        }
        let len = token.chars().count();
        if len + start < linesize {
            out.push_str(token);
            start += len;
        } else {
            if !first {
                out.push_str("\n\t");
                start = 9;
            }
            for c in token.chars() {
                out.push(c);
                start += 1;
                if start > linesize {
                    start = 8;
                    out.push_str("\n\t");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_unchanged() {
        assert_eq!(
            attr_line("Job_Name", "", "full", LINE_SIZE),
            "    Job_Name = full"
        );
        assert_eq!(
            attr_line("Resource_List", "walltime", "01:00:00", LINE_SIZE),
            "    Resource_List.walltime = 01:00:00"
        );
        assert_eq!(attr_line("note", "", "", LINE_SIZE), "    note = ");
    }

    /// The reference's Variable_List sample: commas do not count, a token that does not fit
    /// starts a new line, and the PATH token is chopped mid-word (`/usr/local/to` `rque/bin`).
    #[test]
    fn variable_list_wraps_and_chops_the_path() {
        let value = "PBS_O_QUEUE=batch,PBS_O_HOME=/home/testuser,PBS_O_LOGNAME=testuser,\
PBS_O_PATH=/home/testuser/bin:/usr/local/sbin:/usr/sbin:/usr/local/torque/bin:/usr/bin:/bin,\
PBS_O_MAIL=/var/mail/testuser,PBS_O_SHELL=/bin/bash,PBS_O_WORKDIR=/home/testuser,\
PBS_O_HOST=vm,PBS_O_SERVER=vm";
        let expected = "    Variable_List = PBS_O_QUEUE=batch,PBS_O_HOME=/home/testuser,\n\
\tPBS_O_LOGNAME=testuser,\n\
\tPBS_O_PATH=/home/testuser/bin:/usr/local/sbin:/usr/sbin:/usr/local/to\n\
\trque/bin:/usr/bin:/bin,PBS_O_MAIL=/var/mail/testuser,\n\
\tPBS_O_SHELL=/bin/bash,PBS_O_WORKDIR=/home/testuser,PBS_O_HOST=vm,\n\
\tPBS_O_SERVER=vm";
        assert_eq!(attr_line("Variable_List", "", value, LINE_SIZE), expected);
    }

    /// A value that overruns exactly at its last character leaves a line holding only a tab.
    #[test]
    fn comment_overrunning_at_its_end_leaves_a_dangling_tab() {
        let value = "Not Running: Not enough of the right type of nodes are available";
        assert_eq!(
            format!("{}\n", attr_line("comment", "", value, LINE_SIZE)),
            "    comment = Not Running: Not enough of the right type of nodes are available\n\t\n"
        );
    }

    #[test]
    fn state_count_is_chopped_mid_word() {
        let value = "Transit:0 Queued:24 Held:12 Waiting:1 Running:2 Exiting:0 Complete:1 ";
        assert_eq!(
            attr_line("state_count", "", value, LINE_SIZE),
            "    state_count = Transit:0 Queued:24 Held:12 Waiting:1 Running:2 Exiting:0 Co\n\tmplete:1 "
        );
    }

    #[test]
    fn submit_args_split_at_a_comma() {
        let value = "-N run2 -M testuser@example.org -l walltime=00:30:00,mem=100mb sleeper.sh";
        assert_eq!(
            attr_line("submit_args", "", value, LINE_SIZE),
            "    submit_args = -N run2 -M testuser@example.org -l walltime=00:30:00,\n\
\tmem=100mb sleeper.sh"
        );
    }

    #[test]
    fn no_wrap_line_size_keeps_one_line() {
        let value = "Not Running: Not enough of the right type of nodes are available";
        assert_eq!(
            attr_line("comment", "", value, NO_WRAP),
            format!("    comment = {value}")
        );
    }

    #[test]
    fn empty_tokens_vanish() {
        assert_eq!(attr_line("x", "", ",a,,b,", LINE_SIZE), "    x = a,b");
    }
}
