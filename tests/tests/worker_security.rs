//! A user on a worker node: what the MOM's launch and output paths let them do, and what
//! they refuse. Real `pbs_server`/`pbs_mom` processes over real TLS; when the tests run as
//! root, jobs run as the users `capstantest` (A) and `capstanother` (B) through the MOM's
//! setuid path. Tests that need two real users (or root to own a file) skip with a message
//! when not root.

use std::fs;
use std::os::unix::fs::{chown, lchown, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

fn one_node() -> Vec<NodeSpec> {
    vec![NodeSpec::new("n1", "np=4")]
}

fn skip_unless_root(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("skipped {test}: needs root to run jobs as other users and own files as root");
    true
}

/// The path after Torque's `Output retained on that host in: ` in a comment.
fn retained_path(comment: &str) -> PathBuf {
    let marker = "Output retained on that host in: ";
    let at = comment
        .find(marker)
        .unwrap_or_else(|| panic!("no retained path in {comment:?}"));
    let rest = &comment[at + marker.len()..];
    PathBuf::from(rest.split_whitespace().next().unwrap_or(""))
}

/// Waits for the job to complete and returns its comment (empty if none).
fn completed_comment(c: &Cluster, id: &str) -> String {
    c.wait_state(id, "C", T);
    c.job_attr(id, "comment").unwrap_or_default()
}

/// Checks a retained copy: its content, that it belongs to `uid` with mode 0600, and that
/// the directory holding it cannot be listed or read by others.
fn assert_retained(path: &Path, content: &str, uid: u32) {
    assert_eq!(
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        content
    );
    let meta = fs::symlink_metadata(path).expect("retained meta");
    assert!(
        meta.file_type().is_file(),
        "{} is a regular file",
        path.display()
    );
    assert_eq!(meta.uid(), uid, "{} owner", path.display());
    assert_eq!(meta.mode() & 0o777, 0o600, "{} mode", path.display());
    let dir = fs::metadata(path.parent().expect("parent")).expect("dir meta");
    // undelivered/ is the MOM's (root's in production), not the user's.
    assert_eq!(
        dir.uid(),
        nix::unistd::geteuid().as_raw(),
        "undelivered/ owner"
    );
    assert_eq!(
        dir.mode() & 0o066,
        0,
        "undelivered/ must not be listable or writable by others"
    );
}

/// A directory under the cluster's temp dir owned by `user`, mode 0700.
fn private_dir(c: &Cluster, user: &User, name: &str) -> PathBuf {
    let dir = c.root.join(name);
    fs::create_dir_all(&dir).expect("mkdir");
    chown(&dir, Some(user.uid), Some(user.gid)).expect("chown");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// A path the user cannot write: a directory of root's (0755) when root; when not root, a
/// directory of ours without write permission.
#[test]
fn unwritable_output_path_keeps_a_copy_and_says_so() {
    let c = Cluster::start(&one_node());
    let locked = c.root.join("locked");
    fs::create_dir(&locked).expect("mkdir");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).expect("chmod");
    let dest = locked.join("out");
    let id = c.qsub(
        "unwritable.sh",
        "echo \"output of $PBS_JOBID\"\n",
        &["-o", &dest.display().to_string()],
    );
    let comment = completed_comment(&c, &id);
    // The job ran; only the copy failed.
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
    assert!(!dest.exists(), "nothing may appear in the locked directory");
    let mom = c.mom_home("n1");
    let spool = mom.join(format!("mom_priv/jobs/{id}/{id}.OU"));
    let kept = mom.join(format!("undelivered/{id}.OU"));
    assert!(
        comment.starts_with(&format!("Unable to copy file {} to ", spool.display())),
        "{comment}"
    );
    assert_contains(
        &comment,
        format!(
            ":{d} *** error from copy cannot create regular file '{d}': Permission denied \
             *** end error output Output retained on that host in: {k}",
            d = dest.display(),
            k = kept.display()
        ),
    );
    assert_eq!(retained_path(&comment), kept);
    assert_retained(&kept, &format!("output of {id}\n"), c.user.uid);
    // The stderr file had a writable path and was delivered as usual.
    assert_eq!(
        c.read(c.work.join(format!("unwritable.sh.e{}", Cluster::seq(&id)))),
        ""
    );
    // The owner sees the comment in their own qstat -f.
    let out = c.run("qstat", &["-f", "-1", &id]);
    assert_contains(&stdout(&out), "Output retained on that host in: ");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod back");
}

/// A symlink planted at the output path, pointing at a root-owned file: root never writes
/// through it, the job's output is not delivered through it, and the record says so.
#[test]
fn planted_symlink_at_output_path_is_not_written_through() {
    if skip_unless_root("planted_symlink_at_output_path_is_not_written_through") {
        return;
    }
    let c = Cluster::start(&one_node());
    let etc = c.root.join("etc-like");
    fs::create_dir(&etc).expect("mkdir");
    let target = etc.join("shadow-like");
    fs::write(&target, "root:original\n").expect("target");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");
    // The user plants the link in their own work directory.
    let link = c.work.join("planted.out");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    lchown(&link, Some(c.user.uid), Some(c.user.gid)).expect("lchown");
    let id = c.qsub(
        "planted.sh",
        "echo overwritten-by-job\n",
        &["-o", &link.display().to_string()],
    );
    let comment = completed_comment(&c, &id);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
    assert_eq!(c.read(&target), "root:original\n", "target changed");
    let meta = fs::metadata(&target).expect("target meta");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o644));
    assert!(fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert_contains(&comment, "Unable to copy file ");
    assert_contains(
        &comment,
        format!(
            "cannot create regular file '{}': Too many levels of symbolic links",
            link.display()
        ),
    );
    let kept = retained_path(&comment);
    assert_eq!(kept, c.mom_home("n1").join(format!("undelivered/{id}.OU")));
    assert_retained(&kept, "overwritten-by-job\n", c.user.uid);
}

/// User B's job tries to read user A's running job's spool (script, spooled output, the
/// spool directory listing), node file and environment: each is refused with EACCES.
#[test]
fn other_users_job_cannot_read_a_running_jobs_files() {
    if skip_unless_root("other_users_job_cannot_read_a_running_jobs_files") {
        return;
    }
    let b = other_user().expect("root has a second user");
    let c = Cluster::start(&one_node());
    let a_id = c.qsub(
        "secret.sh",
        "# SECRET-SCRIPT-A\necho SECRET-OUTPUT-A\nexport SECRET_ENV_A=1\nsleep 300\n",
        &["-v", "SECRET_VAR_A=SECRET-ENV-A"],
    );
    c.wait_state(&a_id, "R", T);
    let mom = c.mom_home("n1");
    let spool_dir = mom.join(format!("mom_priv/jobs/{a_id}"));
    let script = spool_dir.join(format!("{a_id}.SC"));
    let spooled_out = spool_dir.join(format!("{a_id}.OU"));
    let nodefile = mom.join(format!("aux/{a_id}"));
    // The files B goes after are real: A's job has written its output to the spool.
    assert!(wait_until(T, || c.read_opt(&spooled_out) == "SECRET-OUTPUT-A\n"));
    assert_contains(&c.read(&script), "SECRET-SCRIPT-A");
    // R is shown once the server has sent the start; the session id comes with the MOM's
    // RunStarted, which may follow.
    let mut session: Option<i32> = None;
    assert!(
        wait_until(T, || {
            session = c.job_attr(&a_id, "session_id").and_then(|s| s.parse().ok());
            session.is_some()
        }),
        "no session_id for A's job"
    );
    let session = session.unwrap_or_default();
    let environ = format!("/proc/{session}/environ");
    assert_contains(&c.read_opt(&environ), "SECRET-ENV-A");

    let b_dir = private_dir(&c, &b, "b-home");
    let b_out = b_dir.join("probe.out");
    let probe = format!(
        "for f in {script} {out} {nodefile} {environ}; do cat \"$f\"; echo \"rc=$?\"; done\n\
         ls {dir}; echo \"rc=$?\"\nls {jobs}; echo \"rc=$?\"\n",
        script = script.display(),
        out = spooled_out.display(),
        nodefile = nodefile.display(),
        dir = spool_dir.display(),
        jobs = mom.join("mom_priv/jobs").display(),
    );
    let b_id = c.qsub_as(
        &b,
        &b_dir,
        "probe.sh",
        &probe,
        &["-j", "oe", "-o", &b_out.display().to_string()],
    );
    c.wait_state(&b_id, "C", T);
    let out = c.read(&b_out);
    for path in [&script, &spooled_out, &nodefile] {
        assert_contains(&out, format!("cat: {}: Permission denied", path.display()));
    }
    assert_contains(&out, format!("cat: {environ}: Permission denied"));
    assert_contains(
        &out,
        format!(
            "ls: cannot open directory '{}': Permission denied",
            spool_dir.display()
        ),
    );
    assert_contains(
        &out,
        format!(
            "ls: cannot open directory '{}': Permission denied",
            mom.join("mom_priv/jobs").display()
        ),
    );
    assert_eq!(out.matches("rc=0").count(), 0, "{out}");
    assert!(!out.contains("SECRET"), "B read A's secrets:\n{out}");
    // On disk: A's spool directory, script and node file are A's alone.
    let mode_owner = |p: &Path| {
        let m = fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        (m.uid(), m.mode() & 0o777)
    };
    assert_eq!(mode_owner(&spool_dir), (c.user.uid, 0o700));
    assert_eq!(mode_owner(&script).0, c.user.uid);
    assert_eq!(mode_owner(&script).1 & 0o077, 0);
    assert_eq!(mode_owner(&nodefile), (c.user.uid, 0o600));
    assert!(c.run("qdel", &[&a_id]).status.success());
    c.wait_state(&a_id, "C", T);
}

/// User B (a job of theirs, on the worker) cannot read the output file of user A's job.
#[test]
fn other_user_cannot_read_a_jobs_output() {
    if skip_unless_root("other_user_cannot_read_a_jobs_output") {
        return;
    }
    let b = other_user().expect("root has a second user");
    let c = Cluster::start(&one_node());
    let a_id = c.qsub("private.sh", "echo PRIVATE-RESULT-A\n", &[]);
    c.wait_state(&a_id, "C", T);
    let a_out = c.default_stdout("private.sh", &a_id);
    assert_eq!(c.read(&a_out), "PRIVATE-RESULT-A\n");
    let meta = fs::metadata(&a_out).expect("meta");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (c.user.uid, 0o600));
    // The work directory itself is readable by B (0755): only the file's mode protects it.
    let b_dir = private_dir(&c, &b, "b-home");
    let b_out = b_dir.join("reader.out");
    let b_id = c.qsub_as(
        &b,
        &b_dir,
        "reader.sh",
        &format!("cat {}; echo \"rc=$?\"\n", a_out.display()),
        &["-j", "oe", "-o", &b_out.display().to_string()],
    );
    c.wait_state(&b_id, "C", T);
    let out = c.read(&b_out);
    assert_contains(&out, format!("cat: {}: Permission denied", a_out.display()));
    assert_contains(&out, "rc=1");
    assert!(!out.contains("PRIVATE-RESULT-A"), "{out}");
    // And directly as B, outside any job.
    let direct = Command::new("cat")
        .arg(&a_out)
        .uid(b.uid)
        .gid(b.gid)
        .output()
        .expect("cat as B");
    assert!(!direct.status.success());
    assert_contains(&stderr(&direct), "Permission denied");
}

/// The MOM's own environment (`LD_PRELOAD`, a secret) never reaches a job: only Torque's
/// variables and what the user asked for with `-v`.
#[test]
fn job_environment_does_not_carry_the_moms() {
    let mut c = Cluster::start_custom(&one_node(), &[], "127.0.0.1", &[]);
    c.start_mom_under(
        "n1",
        Some(&["env", "LD_PRELOAD=/nonexistent.so", "CAPSTAN_SECRET=x"]),
    );
    assert!(
        c.wait_nodes_up(&["n1".to_string()], T),
        "MOM did not come up:\n{}",
        c.mom_log("n1")
    );
    let (id, out) = c.run_job("env.sh", "env\n", &["-v", "ASKED_FOR=yes"]);
    let names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(!names.contains(&"LD_PRELOAD"), "LD_PRELOAD leaked:\n{out}");
    assert!(
        !names.contains(&"CAPSTAN_SECRET"),
        "MOM secret leaked:\n{out}"
    );
    assert!(!out.contains("/nonexistent.so"), "{out}");
    assert_contains(&out, "ASKED_FOR=yes\n");
    assert_contains(&out, format!("PBS_JOBID={id}\n"));
    assert_contains(&out, format!("USER={}\n", c.user.name));
    // Everything else is Torque's or the user's login shell's own.
    let allowed_prefixes = ["PBS_", "ASKED_FOR"];
    let allowed = [
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PATH",
        "ENVIRONMENT",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
        "MAIL",
        "LANG",
        "TERM",
        "HOSTNAME",
        "LS_COLORS",
        "MOTD_SHOWN",
    ];
    for n in names {
        assert!(
            allowed.contains(&n) || allowed_prefixes.iter().any(|p| n.starts_with(p)),
            "unexpected variable {n} in the job's environment:\n{out}"
        );
    }
}

/// Removes a group created by the test, even when the test fails.
struct GroupGuard(String);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = Command::new("groupdel").arg(&self.0).status();
    }
}

/// A job runs with its user's supplementary groups (initgroups), not root's or none.
#[test]
fn job_gets_its_users_supplementary_groups() {
    if skip_unless_root("job_gets_its_users_supplementary_groups") {
        return;
    }
    let user = test_user();
    let group = format!("capsupp{}", std::process::id() % 100_000);
    let made = Command::new("groupadd")
        .arg(&group)
        .status()
        .expect("groupadd");
    assert!(made.success(), "groupadd {group}");
    let _guard = GroupGuard(group.clone());
    let added = Command::new("usermod")
        .args(["-a", "-G", &group, &user.name])
        .status()
        .expect("usermod");
    assert!(added.success(), "usermod -a -G {group} {}", user.name);
    let gid = nix::unistd::Group::from_name(&group)
        .ok()
        .flatten()
        .expect("group exists")
        .gid
        .as_raw();
    let c = Cluster::start(&one_node());
    let (_, out) = c.run_job("groups.sh", "id -G\nid -g\nid -u\n", &[]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let groups: Vec<u32> = lines[0]
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect();
    assert!(
        groups.contains(&gid),
        "supplementary group {group} ({gid}) missing: {out}"
    );
    assert!(!groups.contains(&0), "root's group leaked: {out}");
    assert_eq!(lines[1], user.gid.to_string());
    assert_eq!(lines[2], user.uid.to_string());
}

/// Root-only state is root's: on the worker, mom_priv/jobs is not listable and run records
/// are private; on the server, server_priv is 0700 and the database 0600.
#[test]
fn daemon_state_is_private() {
    let c = Cluster::start(&one_node());
    // A record is held while its run lasts (an ended run's goes once the server has it).
    let running = c.qsub("running.sh", "sleep 300\n", &[]);
    c.wait_state(&running, "R", T);
    let mode = |p: &Path| {
        fs::metadata(p)
            .map(|m| m.mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let mom = c.mom_home("n1");
    assert_eq!(
        mode(&mom.join("mom_priv/jobs")) & 0o044,
        0,
        "jobs/ listable"
    );
    assert_eq!(
        mode(&mom.join("undelivered")) & 0o066,
        0,
        "undelivered/ open"
    );
    assert_eq!(mode(&mom.join("mom_priv/tls")), 0o700);
    let records = || -> Vec<PathBuf> {
        fs::read_dir(mom.join("mom_priv/jobs"))
            .expect("jobs dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "exit"))
            .collect()
    };
    // The server says R once it has sent the start; the MOM writes the record on receipt.
    assert!(
        wait_until(T, || !records().is_empty()),
        "no run record to check in mom_priv/jobs"
    );
    for p in records() {
        assert_eq!(mode(&p) & 0o077, 0, "{} readable by others", p.display());
    }
    let server_priv = c.home.join("server_priv");
    assert_eq!(mode(&server_priv), 0o700, "server_priv");
    assert_eq!(mode(&server_priv.join("capstan.db")) & 0o077, 0, "database");
}

/// Root's jobs are refused unless the server was started with `--allow-root-jobs` (the MOM
/// refuses a root run the server did not allow as well: `mom/tests/run_jobs.rs`).
#[test]
fn root_jobs_are_refused_unless_the_server_allows_them() {
    if skip_unless_root("root_jobs_are_refused_unless_the_server_allows_them") {
        return;
    }
    let c = Cluster::start(&one_node());
    let script = c.script("asroot.sh", "id -u\n");
    let out = c.run_as_root("qsub", &[&script.display().to_string()]);
    assert_ne!(code(&out), 0, "root's job accepted: {}", stdout(&out));
    // The server answers PBSE_BADUSER; qsub prints Torque's client-side words for it.
    assert_eq!(stderr(&out), "qsub can not be run as root\n");
    assert!(stdout(&out).trim().is_empty());
    drop(c);

    let c = Cluster::start_with(&one_node(), &["--allow-root-jobs"]);
    let script = c.script("asroot.sh", "id -u\n");
    let out = c.run_as_root("qsub", &[&script.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    c.wait_state(&id, "C", T);
    let output = c.default_stdout("asroot.sh", &id);
    assert_eq!(c.read(&output), "0\n");
}
