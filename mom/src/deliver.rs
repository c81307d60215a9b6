//! Copying a finished job's spooled output to the paths the user asked for,
//! and keeping what cannot be copied (Torque's post-job file processing).
//!
//! The copy runs *as the job's user*, in a process that switches to the user's
//! uid, primary group and supplementary groups (`setgroups`, `setgid`,
//! `setuid`, umask 077), so the kernel decides what the user may write, and
//! every open uses `O_NOFOLLOW`: a symlink planted at the destination is never
//! written through (not by root, not even as the user). That process is, in
//! the normal case, a child the run's supervisor forks once the job has ended
//! ([`copy_in_child`]: the supervisor is single-threaded, so no exec is needed).
//! For a run this MOM process did not start (adopted after a restart), or when
//! that path fails, the MOM execs a copy helper as the user instead
//! (`capstan_supervisor --capstan-deliver`, see `supervisor::program`;
//! [`copy_with_helper`]), which gets the list of
//! copies as JSON on stdin and answers one result per copy on stdout. Forking
//! the MOM itself without an exec is not an option: it is multi-threaded.
//!
//! [`deliver`] does what is common to both: the checks before, skipping
//! `/dev/null` (nothing to copy, so no process at all), and what follows a
//! failed copy. A copy that fails leaves the spool file to the MOM, which
//! moves it (as root, without following anything, checking after the move
//! that what arrived is a regular file of the job's user) to
//! `DIR/undelivered/JOBID.OU`/`.ER` (directory 0711, file 0600, owned by the
//! user) and reports Torque's text:
//!
//! ```text
//! Unable to copy file SPOOL to USER@HOST:PATH
//! *** error from copy
//! cannot create regular file 'PATH': Permission denied
//! *** end error output
//! Output retained on that host in: DIR/undelivered/JOBID.OU
//! ```

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

use crate::launch::{self, Identity};
use crate::layout::Layout;
use crate::paths::Delivery;

/// First argument that makes `capstan_supervisor` (or `pbs_mom`) the copy helper.
pub const DELIVER_ARG: &str = "--capstan-deliver";

/// Everything needed after the job ends to deliver its output; persisted in
/// the run record so a restarted MOM delivers adopted runs' output too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryPlan {
    pub job_id: String,
    pub user_name: String,
    pub uid: u32,
    /// The identity the copy runs as (`None` when the MOM is not root: it
    /// already is the job's user).
    pub identity: Option<Identity>,
    /// `USER@HOST:` as Torque prints before a destination path.
    pub dest_prefix: String,
    pub files: Vec<Delivery>,
    /// The job's umask, which the copies run with (see `launch::ExecPlan::umask`).
    #[serde(default = "launch::default_umask")]
    pub umask: u32,
}

/// Nothing to deliver, with Torque's umask (never 0: the copies' files would be 0666).
impl Default for DeliveryPlan {
    fn default() -> Self {
        DeliveryPlan {
            job_id: String::new(),
            user_name: String::new(),
            uid: 0,
            identity: None,
            dest_prefix: String::new(),
            files: Vec::new(),
            umask: launch::DEFAULT_UMASK,
        }
    }
}

fn log_delivered(plan: &DeliveryPlan, d: &Delivery) {
    tracing::info!(job = %plan.job_id, "delivered {} to {}", d.spool.display(), d.dest.display());
}

/// Longest answer or line read from a helper: the copy helper's JSON answer
/// (one short error per file), and each line a supervisor sends (`held`,
/// `failed`, `exited`, `delivered`). Whoever writes it may run as the job's user, so
/// what is read is bounded.
pub(crate) const MAX_ANSWER: u64 = 1 << 20;

/// One result per copy, in order: `None` when the file was copied, else the
/// copy's error in `cp`'s words.
pub type CopyResults = Vec<Option<String>>;

/// Why the copying process itself could not run or answer.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("cannot start the copy helper {program}: {source}")]
    Spawn { program: PathBuf, source: io::Error },
    #[error("copy helper failed: {0}")]
    Helper(String),
    #[error("job supervisor: {0}")]
    Supervisor(String),
}

/// Copies every spooled file of `plan` to its destination as the user, with
/// `copy` (one of the two ways in the module comment), and returns Torque's
/// message for each file that could not be delivered (empty when all went
/// well). `copy` is not called when nothing needs copying. Blocking.
pub fn deliver<C>(plan: &DeliveryPlan, layout: &Layout, copy: C) -> Vec<String>
where
    C: FnOnce(&[Delivery]) -> Result<CopyResults, DeliverError>,
{
    let mut pending = Vec::new();
    let mut messages = Vec::new();
    for d in &plan.files {
        match std::fs::symlink_metadata(&d.spool) {
            // `/dev/null` is never copied to (Torque skips it too), so it needs no process.
            Ok(_) if is_null(d) => {
                log_delivered(plan, d);
            }
            Ok(_) => pending.push(d.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Already moved to undelivered/ by a MOM that stopped before
                // reporting, or removed by the user during the run.
                let kept = undelivered_path(layout, &d.spool);
                if kept.exists() {
                    messages.push(torque_message(
                        plan,
                        d,
                        "pbs_mom restarted during the copy",
                        Some(&kept),
                    ));
                } else {
                    tracing::warn!(job = %plan.job_id, "spool file {} is gone; nothing to copy", d.spool.display());
                }
            }
            Err(e) => {
                messages.push(torque_message(plan, d, &e.to_string(), None));
            }
        }
    }
    if pending.is_empty() {
        return messages;
    }
    // As many results as files (copy_all).
    let copied = copy_all(plan, &pending, copy);
    for (d, result) in pending.iter().zip(copied) {
        let Some(error) = result else {
            log_delivered(plan, d);
            continue;
        };
        let kept = retain(layout, plan.uid, &d.spool);
        match &kept {
            Ok(path) => {
                tracing::warn!(job = %plan.job_id, "cannot copy {} to {}: {error}; kept in {}", d.spool.display(), d.dest.display(), path.display())
            }
            Err(e) => {
                tracing::error!(job = %plan.job_id, "cannot copy {} to {}: {error}; and cannot keep it: {e}", d.spool.display(), d.dest.display())
            }
        }
        messages.push(torque_message(plan, d, &error, kept.ok().as_deref()));
    }
    messages
}

fn torque_message(plan: &DeliveryPlan, d: &Delivery, error: &str, kept: Option<&Path>) -> String {
    let mut m = format!(
        "Unable to copy file {} to {}{}\n*** error from copy\n{error}\n*** end error output",
        d.spool.display(),
        plan.dest_prefix,
        d.dest.display()
    );
    if let Some(k) = kept {
        m.push_str(&format!(
            "\nOutput retained on that host in: {}",
            k.display()
        ));
    }
    m
}

fn undelivered_path(layout: &Layout, spool: &Path) -> PathBuf {
    let name = spool
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    layout.undelivered_dir().join(name)
}

/// Moves a spool file into `undelivered/` (root's directory, so once there the
/// user cannot swap it), then checks that what arrived is a regular file owned
/// by `uid` with one link, and makes it 0600. Anything else is removed: the
/// spool directory belongs to the user, who could have replaced the file by a
/// symlink or a link to another file between the check and the move.
fn retain(layout: &Layout, uid: u32, spool: &Path) -> io::Result<PathBuf> {
    let dest = undelivered_path(layout, spool);
    let meta = std::fs::symlink_metadata(spool)?;
    if !meta.file_type().is_file() || meta.uid() != uid {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "spool file is not a regular file of the job's user",
        ));
    }
    std::fs::rename(spool, &dest)?;
    let checked = (|| -> io::Result<()> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&dest)?;
        let m = f.metadata()?;
        if !m.file_type().is_file() || m.uid() != uid || m.nlink() != 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "spool file changed: not a regular file of the job's user",
            ));
        }
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
    })();
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&dest);
        return Err(e);
    }
    Ok(dest)
}

/// Runs `copy` on `files`; one result per file, whatever happens.
fn copy_all<C>(plan: &DeliveryPlan, files: &[Delivery], copy: C) -> CopyResults
where
    C: FnOnce(&[Delivery]) -> Result<CopyResults, DeliverError>,
{
    let results = copy(files).and_then(|r| {
        if r.len() == files.len() {
            Ok(r)
        } else {
            Err(DeliverError::Helper(format!(
                "{} results for {} files",
                r.len(),
                files.len()
            )))
        }
    });
    results.unwrap_or_else(|e| {
        tracing::error!(job = %plan.job_id, "{e}");
        vec![Some(e.to_string()); files.len()]
    })
}

fn is_null(d: &Delivery) -> bool {
    d.dest == Path::new("/dev/null")
}

/// Copies `files` in a child of the calling process that switches to
/// `identity` first (as the helper does), and collects its results through a
/// pipe. Used by the run's supervisor, after the job has ended.
///
/// The caller must be single-threaded (the supervisor is): then the forked
/// child is a complete copy of it, may allocate and run the same copy code as
/// the helper, and needs no exec, which is what makes this path cheap.
pub fn copy_in_child(
    identity: Option<&Identity>,
    umask: u32,
    files: &[Delivery],
) -> Result<CopyResults, DeliverError> {
    let failed = |what: &str, e: nix::Error| DeliverError::Helper(format!("{what}: {e}"));
    let (from_child, to_parent) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed("pipe", e))?;
    // SAFETY: the caller is single-threaded (see above), so the child may do
    // anything the parent could; it never returns from this function.
    match unsafe { nix::unistd::fork() }.map_err(|e| failed("fork", e))? {
        nix::unistd::ForkResult::Child => {
            drop(from_child);
            // A panic must not unwind into the supervisor's code in this process.
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                copy_child(identity, umask, files, to_parent)
            }))
            .unwrap_or(3);
            // SAFETY: _exit ends the child without running the parent's
            // destructors or flushing its buffers twice.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(to_parent);
            let mut out = Vec::new();
            let read = File::from(from_child)
                .take(MAX_ANSWER)
                .read_to_end(&mut out);
            let status = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other,
                }
            };
            read.map_err(|e| DeliverError::Helper(e.to_string()))?;
            if out.is_empty() {
                // copy_child's exit code says which step failed.
                return Err(DeliverError::Helper(format!(
                    "the copy process gave no results ({status:?})"
                )));
            }
            serde_json::from_slice(&out)
                .map_err(|e| DeliverError::Helper(format!("{e} (exit {status:?})")))
        }
    }
}

/// The forked copier: gives up the supervisor's pipes to the MOM, becomes the
/// user, copies, writes the results. Returns its exit code: 2 when it could
/// not set itself up (nothing written), 1 when the results could not be sent.
fn copy_child(
    identity: Option<&Identity>,
    umask: u32,
    files: &[Delivery],
    results: OwnedFd,
) -> i32 {
    const DEV_NULL: &CStr = c"/dev/null";
    // SAFETY: plain system calls on valid, NUL-terminated data.
    unsafe {
        let null = libc::open(DEV_NULL.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null < 0 || libc::dup2(null, 0) < 0 || libc::dup2(null, 1) < 0 {
            return 2;
        }
        libc::close(null);
        if libc::chdir(c"/".as_ptr()) < 0 {
            return 2;
        }
    }
    if launch::become_user(identity, umask).is_err() {
        return 2;
    }
    copy_and_answer(files, File::from(results))
}

/// What both copying processes do once they are the user: copies each file
/// and writes the results to `out` as JSON. Returns the exit code (1 when the
/// results could not be written).
fn copy_and_answer(files: &[Delivery], mut out: impl Write) -> i32 {
    let results: CopyResults = files.iter().map(|d| copy_one(d).err()).collect();
    match serde_json::to_writer(&mut out, &results) {
        Ok(()) if out.flush().is_ok() => 0,
        _ => 1,
    }
}

/// Starts the exec'd helper as the job's user and exchanges JSON with it.
pub fn copy_with_helper(
    plan: &DeliveryPlan,
    files: &[Delivery],
    helper: &Path,
) -> Result<CopyResults, DeliverError> {
    let input = serde_json::to_vec(files).map_err(|e| DeliverError::Helper(e.to_string()))?;
    let mut cmd = crate::supervisor::helper_command(helper, DELIVER_ARG);
    cmd.current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let (identity, umask) = (plan.identity.clone(), plan.umask);
    // SAFETY: become_user makes only async-signal-safe calls on data prepared
    // before the fork.
    unsafe {
        cmd.pre_exec(move || launch::become_user(identity.as_ref(), umask));
    }
    let mut child = cmd.spawn().map_err(|source| DeliverError::Spawn {
        program: helper.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    let talk = (|| -> io::Result<()> {
        let mut stdin = child.stdin.take().ok_or(io::ErrorKind::BrokenPipe)?;
        stdin.write_all(&input)?;
        drop(stdin);
        // The helper runs as the user, who may make it say anything: bounded.
        child
            .stdout
            .take()
            .ok_or(io::ErrorKind::BrokenPipe)?
            .take(MAX_ANSWER)
            .read_to_end(&mut out)?;
        Ok(())
    })();
    let status = child.wait();
    talk.map_err(|e| DeliverError::Helper(e.to_string()))?;
    serde_json::from_slice(&out).map_err(|e| DeliverError::Helper(format!("{e} (exit {status:?})")))
}

/// Helper entry point (`--capstan-deliver`), already running as the
/// job's user: copies each file and prints the results; returns the exit code.
pub fn helper_main() -> i32 {
    let mut input = Vec::new();
    let files: Vec<Delivery> = match io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_slice(&input).map_err(|e| e.to_string()))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("bad copy list: {e}");
            return 1;
        }
    };
    copy_and_answer(&files, io::stdout().lock())
}

/// One copy, in `cp`'s words on failure. `/dev/null` is never copied to
/// (Torque skips it as well).
fn copy_one(d: &Delivery) -> Result<(), String> {
    if is_null(d) {
        return Ok(());
    }
    let mut src = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&d.spool)
        .map_err(|e| {
            format!(
                "cannot open '{}' for reading: {}",
                d.spool.display(),
                errno_text(&e)
            )
        })?;
    // O_NONBLOCK: a FIFO planted at the destination must not hang the copy.
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o666)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&d.dest)
        .map_err(|e| {
            format!(
                "cannot create regular file '{}': {}",
                d.dest.display(),
                errno_text(&e)
            )
        })?;
    io::copy(&mut src, &mut dst)
        .and_then(|_| dst.flush())
        .map_err(|e| format!("error writing '{}': {}", d.dest.display(), errno_text(&e)))
}

/// `strerror` text without Rust's " (os error N)".
fn errno_text(e: &io::Error) -> String {
    let text = e.to_string();
    match e.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .unwrap_or(&text)
            .to_string(),
        None => text,
    }
}

/// `USER@HOST:` for messages: the submission host from `PBS_O_HOST` when the
/// job carries it.
pub fn dest_prefix(user: &str, env: &[(String, String)]) -> String {
    match env.iter().find(|(k, _)| k == "PBS_O_HOST") {
        Some((_, host)) if !host.is_empty() => format!("{user}@{host}:"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(dir: &Path, dest: &str) -> Delivery {
        Delivery {
            spool: dir.join("1.vm.OU"),
            dest: dir.join(dest),
        }
    }

    #[test]
    fn copies_and_refuses_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("1.vm.OU"), "out\n").expect("spool");
        copy_one(&d(dir.path(), "a.out")).expect("copy");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.out")).expect("read"),
            "out\n"
        );
        std::fs::write(dir.path().join("victim"), "keep\n").expect("victim");
        std::os::unix::fs::symlink(dir.path().join("victim"), dir.path().join("link"))
            .expect("symlink");
        let err = copy_one(&d(dir.path(), "link")).expect_err("symlink refused");
        assert!(err.starts_with("cannot create regular file '"), "{err}");
        assert!(
            err.ends_with("link': Too many levels of symbolic links"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("victim")).expect("read"),
            "keep\n"
        );
        let err = copy_one(&d(dir.path(), "no/such/dir")).expect_err("missing dir");
        assert!(err.ends_with(": No such file or directory"), "{err}");
    }

    #[test]
    fn message_is_torques() {
        let plan = DeliveryPlan {
            dest_prefix: "u@h:".into(),
            ..Default::default()
        };
        let del = Delivery {
            spool: "/s/1.vm.OU".into(),
            dest: "/x/out".into(),
        };
        assert_eq!(
            torque_message(&plan, &del, "boom", Some(Path::new("/u/1.vm.OU"))),
            "Unable to copy file /s/1.vm.OU to u@h:/x/out\n*** error from copy\nboom\n*** end error output\nOutput retained on that host in: /u/1.vm.OU"
        );
        assert_eq!(
            dest_prefix("u", &[("PBS_O_HOST".into(), "h".into())]),
            "u@h:"
        );
        assert_eq!(dest_prefix("u", &[]), "");
    }

    #[test]
    fn copies_through_the_given_way_and_keeps_what_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path().join("home"));
        layout.ensure().expect("ensure");
        let spool = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, "x\n").expect("spool");
            p
        };
        let plan = DeliveryPlan {
            job_id: "1.vm".into(),
            uid: nix::unistd::getuid().as_raw(),
            files: vec![
                Delivery {
                    spool: spool("1.vm.OU"),
                    dest: "/dev/null".into(),
                },
                Delivery {
                    spool: spool("1.vm.ER"),
                    dest: dir.path().join("err"),
                },
            ],
            ..Default::default()
        };
        // /dev/null never reaches the copier; nothing to copy, no call at all.
        let only_null = DeliveryPlan {
            files: plan.files[..1].to_vec(),
            ..plan.clone()
        };
        let none: Vec<String> = deliver(&only_null, &layout, |_| panic!("no copy needed"));
        assert!(none.is_empty());
        let ok = deliver(&plan, &layout, |files| {
            assert_eq!(files, &plan.files[1..]);
            Ok(vec![None])
        });
        assert!(ok.is_empty());
        // A copy that fails is kept in undelivered/ and reported.
        let failed = deliver(&plan, &layout, |_| Ok(vec![Some("boom".into())]));
        assert_eq!(failed.len(), 1);
        assert!(failed[0].contains("\nboom\n"), "{failed:?}");
        assert!(layout.undelivered_dir().join("1.vm.ER").exists());
        // A copier that answers for the wrong number of files failed for each.
        std::fs::write(dir.path().join("1.vm.ER"), "x\n").expect("spool again");
        let miscounted = deliver(&plan, &layout, |_| Ok(vec![None, None]));
        assert_eq!(miscounted.len(), 1);
        assert!(
            miscounted[0].contains("copy helper failed: 2 results for 1 files"),
            "{miscounted:?}"
        );
    }

    #[test]
    fn retains_only_regular_files_of_the_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path());
        layout.ensure().expect("ensure");
        let uid = nix::unistd::getuid().as_raw();
        let spool = dir.path().join("1.vm.OU");
        std::fs::write(&spool, "out\n").expect("spool");
        let kept = retain(&layout, uid, &spool).expect("retained");
        assert_eq!(kept, layout.undelivered_dir().join("1.vm.OU"));
        let meta = std::fs::metadata(&kept).expect("meta");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(!spool.exists());
        std::os::unix::fs::symlink("/etc/passwd", &spool).expect("symlink");
        assert!(retain(&layout, uid, &spool).is_err());
    }
}
