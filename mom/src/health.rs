//! Torque's node health check: `$node_check_script PATH` in `mom_priv/config` names a
//! program the MOM runs now and then (`$node_check_interval N[,jobstart][,jobend]`: every
//! N status periods, and before each job starts or after each ends); output beginning with
//! `ERROR` (any case) marks the node down, with that line as its `message`, until a later
//! check says otherwise. Output beginning with `EVENT:` is shown as the message of a healthy
//! node; anything else means healthy. Administrators use it to keep jobs off a node whose
//! scratch disk is full or whose file server is gone, without taking it offline by hand.
//!
//! Why its own module: the verdict is a pure function of the script's output ([`judge`]),
//! tested without I/O; running the script ([`check`]) is bounded in time, since a check that
//! hangs (a dead NFS mount) must not hang the MOM. The session decides when to run it and
//! reports the result with the node's status (see `session.rs`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// How long a check may run. One that takes longer is killed and judged a failure: what
/// hangs a health check (a dead file server) would hang jobs too.
pub const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Torque's message buffer (MAXLINE): output past it is not read.
const MAX_OUTPUT: u64 = 1023;

/// What `$node_check_script` and `$node_check_interval` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCheck {
    pub script: PathBuf,
    /// Every this many status periods (`$status_update_time`); 0: never periodically.
    pub every: u32,
    /// `jobstart`: before a job starts; a failing check turns the job away.
    pub on_job_start: bool,
    /// `jobend`: after a job ends.
    pub on_job_end: bool,
}

/// What the last check said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// The node takes no new jobs (reported `down`).
    pub down: bool,
    /// Shown in the node's status as `message=`.
    pub message: Option<String>,
}

/// Torque's `check_state` verdict on a check's output: its first line counts, from its
/// first character.
pub fn judge(output: &str) -> Health {
    let line = output.lines().next().unwrap_or("").trim_end();
    let starts = |prefix: &str| {
        line.get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
    };
    if starts("ERROR") {
        Health {
            down: true,
            message: Some(line.to_string()),
        }
    } else if starts("EVENT:") {
        Health {
            down: false,
            message: Some(line.to_string()),
        }
    } else {
        Health::default()
    }
}

/// Why a check gave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot run {script}: {source}")]
    Spawn {
        script: String,
        source: std::io::Error,
    },
    #[error("reading {script}'s output: {source}")]
    Read {
        script: String,
        source: std::io::Error,
    },
}

/// Runs `script` (no arguments, standard input empty, standard error discarded) and judges
/// its output. A script that cannot be run gives no verdict (Torque leaves the node up and
/// logs it); one that outlives [`CHECK_LIMIT`] (or leaves a process holding its output
/// open that long) is killed with everything it started, and marks the node down.
pub async fn check(script: &Path) -> Result<Health, CheckError> {
    let shown = script.display().to_string();
    let mut child = tokio::process::Command::new(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // A group of its own, so that what it started can be killed with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CheckError::Spawn {
            script: shown.clone(),
            source,
        })?;
    let group = child.id().map(|pid| nix::unistd::Pid::from_raw(pid as i32));
    let Some(stdout) = child.stdout.take() else {
        return Ok(Health::default());
    };
    let run = async {
        let mut output = Vec::new();
        stdout
            .take(MAX_OUTPUT)
            .read_to_end(&mut output)
            .await
            .map_err(|source| CheckError::Read {
                script: shown.clone(),
                source,
            })?;
        // Its exit status says nothing (Torque reads only the output); it is reaped here.
        let _ = child.wait().await;
        Ok(output)
    };
    let outcome = tokio::time::timeout(CHECK_LIMIT, run).await;
    if let (Err(_), Some(group)) = (&outcome, group) {
        // Its children too (a `df` stuck on a dead mount, anything it put in the background).
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
    match outcome {
        Ok(output) => Ok(judge(&String::from_utf8_lossy(&output?))),
        Err(_) => Ok(Health {
            down: true,
            message: Some(format!(
                "ERROR: node health check {shown} did not finish within {} s",
                CHECK_LIMIT.as_secs()
            )),
        }),
    }
}

/// Parses `$node_check_interval`'s value: a number of periods and/or `jobstart`, `jobend`,
/// comma-separated (Torque's `setnodecheckinterval`, whose `strtol` makes a value without a
/// number 0: checks only around jobs). `None` when a part is none of these.
pub fn parse_interval(value: &str) -> Option<(u32, bool, bool)> {
    let (mut every, mut start, mut end) = (0, false, false);
    for part in value.split(',').map(str::trim) {
        match part {
            "" => {}
            "jobstart" => start = true,
            "jobend" => end = true,
            n => every = n.parse::<u32>().ok()?,
        }
    }
    Some((every, start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_output_marks_the_node_down_with_its_first_line() {
        assert_eq!(
            judge("ERROR: /scratch is not mounted\nmore detail\n"),
            Health {
                down: true,
                message: Some("ERROR: /scratch is not mounted".into())
            }
        );
        // Torque compares without case.
        assert!(judge("error disk full").down);
        assert!(!judge("  ERROR indented").down);
    }

    #[test]
    fn event_output_is_shown_and_anything_else_is_healthy() {
        assert_eq!(
            judge("EVENT: fan replaced\n"),
            Health {
                down: false,
                message: Some("EVENT: fan replaced".into())
            }
        );
        assert_eq!(judge("all good\n"), Health::default());
        assert_eq!(judge(""), Health::default());
        assert_eq!(judge("ERR"), Health::default());
        assert_eq!(judge("The ERROR is elsewhere"), Health::default());
    }

    #[test]
    fn the_interval_takes_a_count_and_the_job_points() {
        assert_eq!(parse_interval("5"), Some((5, false, false)));
        // As Torque's strtol: no number is 0, around jobs only.
        assert_eq!(parse_interval("jobstart"), Some((0, true, false)));
        assert_eq!(parse_interval("2,jobstart,jobend"), Some((2, true, true)));
        assert_eq!(parse_interval("0,jobend"), Some((0, false, true)));
        assert_eq!(parse_interval("1,,jobstart"), Some((1, true, false)));
        assert_eq!(parse_interval("often"), None);
        assert_eq!(parse_interval("-1"), None);
    }

    #[tokio::test]
    async fn a_script_is_run_and_judged_and_a_missing_one_gives_no_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("check");
        std::fs::write(&script, "#!/bin/sh\necho 'ERROR: no scratch'\nexit 0\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let health = check(&script).await.unwrap();
        assert_eq!(health.message.as_deref(), Some("ERROR: no scratch"));
        assert!(check(&dir.path().join("missing")).await.is_err());
    }
}
