//! Where a job's stdout and stderr go: Torque's rules for Output_Path,
//! Error_Path, Join_Path and Keep_Files (reference 7.3), as a pure function so
//! every case is unit-tested without running a job.
//!
//! The server stores the paths as `HOST:/abs/path` and sends them without the
//! host. As Torque does, a job writes its streams into the MOM's spool (here the
//! job's own spool directory, `mom_priv/jobs/JOBID/JOBID.OU`/`.ER`, 0700 and
//! owned by the user) and the MOM copies them to the requested paths when the
//! job ends (a local copy, Torque's `$usecp` setup), as the user (see
//! `deliver`). A stream kept with `-k` is written straight into `$HOME`.
//! [`spool`] turns the final destinations into what the job opens and what is
//! copied where afterwards.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the job's standard streams are opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Streams {
    /// `-j n`: two files.
    Separate { stdout: PathBuf, stderr: PathBuf },
    /// `-j oe`: stderr is merged into the stdout file; no stderr file.
    IntoStdout(PathBuf),
    /// `-j eo`: stdout is merged into the stderr file; no stdout file.
    IntoStderr(PathBuf),
}

impl Streams {
    /// The file the job's fd 2 writes to: where MOM messages such as the
    /// walltime notice are appended.
    pub fn stderr_target(&self) -> &Path {
        match self {
            Streams::Separate { stderr, .. } => stderr,
            Streams::IntoStdout(p) | Streams::IntoStderr(p) => p,
        }
    }

    /// The file the job's fd 1 writes to (qmsg -O).
    pub fn stdout_target(&self) -> &Path {
        match self {
            Streams::Separate { stdout, .. } => stdout,
            Streams::IntoStdout(p) | Streams::IntoStderr(p) => p,
        }
    }
}

/// What `StartRun` says about output, plus what only the MOM knows (the home dir).
#[derive(Debug, Clone, Copy)]
pub struct OutputRequest<'a> {
    pub output_path: &'a str,
    pub error_path: &'a str,
    pub join_path: &'a str,
    pub keep_files: &'a str,
    pub job_name: &'a str,
    pub job_seq: &'a str,
    /// The user's home directory (for `-k` and for missing paths).
    pub home: &'a Path,
}

/// Resolves the output files.
///
/// * an empty path means the default `NAME.oSEQ` / `NAME.eSEQ` in `$HOME`
///   (the server normally sends the full default path in the submit dir);
/// * a path ending in `/` is a directory: the default name is appended;
/// * Keep_Files `o`/`e` sends that stream to `$HOME` with the same file name;
/// * Join_Path `oe` keeps only the stdout file, `eo` only the stderr file.
pub fn resolve(req: &OutputRequest<'_>) -> Streams {
    let out_name = format!("{}.o{}", req.job_name, req.job_seq);
    let err_name = format!("{}.e{}", req.job_name, req.job_seq);
    let keep_o = req.keep_files.contains('o');
    let keep_e = req.keep_files.contains('e');
    let stdout = place(req.output_path, &out_name, keep_o, req.home);
    let stderr = place(req.error_path, &err_name, keep_e, req.home);
    match req.join_path {
        "oe" => Streams::IntoStdout(stdout),
        "eo" => Streams::IntoStderr(stderr),
        _ => Streams::Separate { stdout, stderr },
    }
}

/// One stream to copy from the spool to where the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The spool file the job wrote.
    pub spool: PathBuf,
    /// The requested path.
    pub dest: PathBuf,
}

/// What the job's shell opens, and what is copied after it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub open: Streams,
    pub deliveries: Vec<Delivery>,
}

/// Torque's spool suffixes: `.OU` for stdout (and `-j oe`), `.ER` for stderr (and `-j eo`).
pub fn spool(final_streams: &Streams, keep_files: &str, spool_dir: &Path, job_id: &str) -> Spooled {
    let mut deliveries = Vec::new();
    let mut route = |dest: &Path, kept: bool, suffix: &str| -> PathBuf {
        if kept {
            return dest.to_path_buf();
        }
        let spool = spool_dir.join(format!("{job_id}.{suffix}"));
        deliveries.push(Delivery {
            spool: spool.clone(),
            dest: dest.to_path_buf(),
        });
        spool
    };
    let keep_o = keep_files.contains('o');
    let keep_e = keep_files.contains('e');
    let open = match final_streams {
        Streams::Separate { stdout, stderr } => Streams::Separate {
            stdout: route(stdout, keep_o, "OU"),
            stderr: route(stderr, keep_e, "ER"),
        },
        Streams::IntoStdout(p) => Streams::IntoStdout(route(p, keep_o, "OU")),
        Streams::IntoStderr(p) => Streams::IntoStderr(route(p, keep_e, "ER")),
    };
    Spooled { open, deliveries }
}

/// A kept stream (`-k`) is always `$HOME/JOBNAME.oSEQ` (or `.eSEQ`), whatever `-o`/`-e`
/// said: Torque's `std_file_name` ("if so use default name in Home directory").
fn place(given: &str, default_name: &str, keep: bool, home: &Path) -> PathBuf {
    if keep || given.is_empty() {
        home.join(default_name)
    } else if given.ends_with('/') {
        Path::new(given).join(default_name)
    } else {
        PathBuf::from(given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(o: &'a str, e: &'a str, j: &'a str, k: &'a str) -> OutputRequest<'a> {
        OutputRequest {
            output_path: o,
            error_path: e,
            join_path: j,
            keep_files: k,
            job_name: "job.sh",
            job_seq: "12",
            home: Path::new("/home/u"),
        }
    }

    fn sep(o: &str, e: &str) -> Streams {
        Streams::Separate {
            stdout: o.into(),
            stderr: e.into(),
        }
    }

    #[test]
    fn default_paths_from_server() {
        let s = resolve(&req("/w/job.sh.o12", "/w/job.sh.e12", "n", "n"));
        assert_eq!(s, sep("/w/job.sh.o12", "/w/job.sh.e12"));
        assert_eq!(s.stderr_target(), Path::new("/w/job.sh.e12"));
    }

    #[test]
    fn empty_paths_and_flags_default_to_home() {
        let s = resolve(&req("", "", "", ""));
        assert_eq!(s, sep("/home/u/job.sh.o12", "/home/u/job.sh.e12"));
    }

    #[test]
    fn explicit_file_and_directory() {
        let s = resolve(&req("/tmp/myout.txt", "/scratch/", "n", "n"));
        assert_eq!(s, sep("/tmp/myout.txt", "/scratch/job.sh.e12"));
    }

    #[test]
    fn join_oe_keeps_only_stdout() {
        let s = resolve(&req("/w/job.sh.o12", "/w/job.sh.e12", "oe", "n"));
        assert_eq!(s, Streams::IntoStdout("/w/job.sh.o12".into()));
        assert_eq!(s.stderr_target(), Path::new("/w/job.sh.o12"));
    }

    #[test]
    fn join_eo_keeps_only_stderr() {
        let s = resolve(&req("/w/job.sh.o12", "/w/job.sh.e12", "eo", "n"));
        assert_eq!(s, Streams::IntoStderr("/w/job.sh.e12".into()));
    }

    #[test]
    fn keep_oe_writes_to_home() {
        let s = resolve(&req("/w/job.sh.o12", "/w/job.sh.e12", "n", "oe"));
        assert_eq!(s, sep("/home/u/job.sh.o12", "/home/u/job.sh.e12"));
    }

    #[test]
    fn keep_one_stream_only() {
        // The kept stream takes the default name, not the basename of its -o/-e path.
        let s = resolve(&req("/w/a.out", "/w/a.err", "n", "o"));
        assert_eq!(s, sep("/home/u/job.sh.o12", "/w/a.err"));
        let s = resolve(&req("/w/a.out", "/w/a.err", "n", "e"));
        assert_eq!(s, sep("/w/a.out", "/home/u/job.sh.e12"));
        let s = resolve(&req("/w/outs/", "/w/a.err", "n", "oe"));
        assert_eq!(s, sep("/home/u/job.sh.o12", "/home/u/job.sh.e12"));
    }

    #[test]
    fn streams_are_spooled_unless_kept() {
        let spool_dir = Path::new("/m/jobs/12.vm");
        let s = spool(&sep("/w/a.out", "/w/a.err"), "n", spool_dir, "12.vm");
        assert_eq!(
            s.open,
            sep("/m/jobs/12.vm/12.vm.OU", "/m/jobs/12.vm/12.vm.ER")
        );
        assert_eq!(
            s.deliveries,
            vec![
                Delivery {
                    spool: "/m/jobs/12.vm/12.vm.OU".into(),
                    dest: "/w/a.out".into()
                },
                Delivery {
                    spool: "/m/jobs/12.vm/12.vm.ER".into(),
                    dest: "/w/a.err".into()
                },
            ]
        );
        let s = spool(&sep("/home/u/a.out", "/w/a.err"), "o", spool_dir, "12.vm");
        assert_eq!(s.open, sep("/home/u/a.out", "/m/jobs/12.vm/12.vm.ER"));
        assert_eq!(s.deliveries.len(), 1);
        let s = spool(
            &Streams::IntoStderr("/w/a.err".into()),
            "n",
            spool_dir,
            "12.vm",
        );
        assert_eq!(s.open, Streams::IntoStderr("/m/jobs/12.vm/12.vm.ER".into()));
        assert_eq!(s.deliveries[0].dest, Path::new("/w/a.err"));
    }

    #[test]
    fn keep_with_join_goes_home() {
        let s = resolve(&req("/w/job.sh.o12", "/w/job.sh.e12", "oe", "o"));
        assert_eq!(s, Streams::IntoStdout("/home/u/job.sh.o12".into()));
    }
}
