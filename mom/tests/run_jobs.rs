//! Runs real jobs as the current user (no identity switch when the uid
//! matches) through the runner, and checks what Torque users rely on: the
//! environment, the node file, the output files and the exit status.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capstan_mom::job::{Event, RunResult, RunSpec};
use capstan_mom::leftovers::Leftovers;
use capstan_mom::runner::Runner;
use tokio::sync::mpsc;

mod common;

use common::{current_user, supervisor_exe, Bed};

/// A [`Bed`] with a runner on it and the runner's events.
struct Fixture {
    bed: Bed,
    runner: Arc<Runner>,
    events: mpsc::UnboundedReceiver<Event>,
}

impl std::ops::Deref for Fixture {
    type Target = Bed;
    fn deref(&self) -> &Bed {
        &self.bed
    }
}

fn fixture() -> Fixture {
    let bed = common::bed();
    let (tx, events) = mpsc::unbounded_channel();
    let runner = Runner::new(bed.layout.clone(), "node1".into(), tx, supervisor_exe());
    Fixture {
        bed,
        runner,
        events,
    }
}

impl Fixture {
    async fn start(&self, spec: RunSpec) {
        let r = Arc::clone(&self.runner);
        tokio::task::spawn_blocking(move || r.start(spec))
            .await
            .expect("start");
    }

    async fn started(&mut self, run_id: u64) -> i32 {
        match self.next_event().await {
            Event::Started {
                run_id: id,
                session_id,
                ..
            } if id == run_id => session_id,
            other => panic!("expected Started for {run_id}, got {other:?}"),
        }
    }

    async fn ended(&mut self, run_id: u64) -> RunResult {
        loop {
            match self.next_event().await {
                Event::Ended { run_id: id, result } if id == run_id => return result,
                Event::Started { .. } => continue,
                other => panic!("expected Ended for {run_id}, got {other:?}"),
            }
        }
    }

    async fn next_event(&mut self) -> Event {
        common::next_event(&mut self.events).await
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_job_with_torque_environment() {
    let mut f = fixture();
    let script = "echo \"JOBID=$PBS_JOBID\"\necho \"NODEFILE=$PBS_NODEFILE\"\ncat \"$PBS_NODEFILE\"\necho \"ENVIRONMENT=$ENVIRONMENT\"\necho \"PWD=$(pwd)\"\necho \"UMASK=$(umask)\"\necho \"LEAK=${CARGO_MANIFEST_DIR-unset}\"\necho \"TASK=$PBS_TASKNUM\"\nexit 3\n";
    f.start(f.spec(1, "0", script)).await;
    let sid = f.started(1).await;
    assert!(sid > 1);
    let r = f.ended(1).await;
    assert_eq!(r.exit_status, 3, "{r:?}");
    assert_eq!(r.session_id, sid);
    let out = f.read("job.sh.o0");
    let home = f.layout.home().display().to_string();
    assert!(out.contains("JOBID=0.vm\n"), "{out}");
    assert!(
        out.contains(&format!("NODEFILE={home}/aux//0.vm\nnode1\nnode1\n")),
        "{out}"
    );
    assert!(out.contains("ENVIRONMENT=BATCH\n"), "{out}");
    assert!(
        out.contains(&format!("PWD={}\n", f.work.display())),
        "{out}"
    );
    assert!(out.contains("UMASK=0077\n"), "{out}");
    // Nothing of the MOM's own environment reaches the job.
    assert!(out.contains("LEAK=unset\n"), "{out}");
    assert!(out.contains("TASK=1\n"), "{out}");
    assert_eq!(f.read("job.sh.e0"), "");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(f.work.join("job.sh.o0"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The shell left nothing behind, and its supervisor said so (no sweep).
    let exit = capstan_mom::supervisor::read_exit_file(&f.layout.exit_file(1)).expect("exit file");
    assert_eq!(exit.leftovers, Leftovers::Nothing);

    // The result is held on disk until acknowledged; a repeat is ignored.
    assert!(f.layout.record(1).exists());
    f.start(f.spec(1, "0", "exit 9\n")).await;
    assert!(f.events.try_recv().is_err());
    assert!(f.runner.held().iter().any(|h| h.run_id == 1 && h.finished));
    let r = Arc::clone(&f.runner);
    tokio::task::spawn_blocking(move || r.ack(&[1]))
        .await
        .expect("ack");
    assert!(!f.layout.record(1).exists());
    assert!(!f.layout.nodefile("0.vm").exists());
    assert!(!f.layout.spool_dir("0.vm").exists());
    assert!(f.runner.held().is_empty());
}

/// What a job leaves running is killed when its shell exits, by its
/// supervisor (the orphans' subreaper): in the job's process group, in another
/// session (`setsid`), orphaned while the shell still ran, in another process
/// group (job control). The job still ends promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_are_killed_when_the_shell_exits() {
    let mut f = fixture();
    let pids = f.work.join("pids");
    let script = format!(
        "sleep 300 &\necho $! >>{p}\nsetsid sleep 300 &\necho $! >>{p}\n(sleep 300 & echo $! >>{p}) &\nwait $!\nbash -c 'set -m; sleep 300 & echo $! >>{p}'\necho out\nexit 6\n",
        p = pids.display()
    );
    let t0 = std::time::Instant::now();
    f.start(f.spec(15, "15", &script)).await;
    let r = f.ended(15).await;
    assert_eq!(r.exit_status, 6, "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(f.read("job.sh.o15"), "out\n");
    let left: Vec<i32> = f
        .read("pids")
        .lines()
        .map(|l| l.parse().expect("pid"))
        .collect();
    assert_eq!(left.len(), 4, "{left:?}");
    for pid in left {
        assert!(
            capstan_mom::procfs::stat_of(pid).is_none(),
            "process {pid} of the job is still there"
        );
    }
    let exit = capstan_mom::supervisor::read_exit_file(&f.layout.exit_file(15)).expect("exit file");
    assert_eq!(exit.leftovers, Leftovers::Killed);
}

/// An orphan that exits while the job still runs is reaped by the supervisor (its
/// subreaper) at once, not left a zombie until the job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_exiting_during_the_job_are_reaped() {
    let mut f = fixture();
    let script = "(true & echo $! >orphan)
p=$(cat orphan)
\
        for _ in $(seq 200); do [ -e /proc/$p ] || break; sleep 0.05; done
\
        if [ -e /proc/$p ]; then echo zombie; else echo reaped; fi
";
    f.start(f.spec(16, "16", script)).await;
    let r = f.ended(16).await;
    assert_eq!(r.exit_status, 0, "{r:?}");
    assert_eq!(f.read("job.sh.o16"), "reaped\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_shell_is_254_with_torque_message() {
    let mut f = fixture();
    let mut spec = f.spec(2, "1", "echo hi\n");
    spec.shell = "/nonexistent/shell".into();
    f.start(spec).await;
    let r = f.ended(2).await;
    assert_eq!(r.exit_status, 254);
    assert_eq!(
        f.read("job.sh.e1"),
        "PBS: exec of shell '/nonexistent/shell' failed\n"
    );
    assert_eq!(f.read("job.sh.o1"), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_oe_writes_one_file() {
    let mut f = fixture();
    let mut spec = f.spec(3, "2", "echo out\necho err >&2\n");
    spec.join_path = "oe".into();
    f.start(spec).await;
    assert_eq!(f.ended(3).await.exit_status, 0);
    assert_eq!(f.read("job.sh.o2"), "out\nerr\n");
    assert!(!f.work.join("job.sh.e2").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walltime_kills_promptly_with_minus_11() {
    let mut f = fixture();
    let mut spec = f.spec(4, "3", "sleep 30\n");
    spec.walltime_limit_secs = 1;
    let t0 = std::time::Instant::now();
    f.start(spec).await;
    let r = f.ended(4).await;
    assert_eq!(r.exit_status, -11);
    assert!(t0.elapsed() < Duration::from_secs(10));
    let err = f.read("job.sh.e3");
    assert!(
        err.starts_with("=>> PBS: job killed: walltime ") && err.ends_with(" exceeded limit 1\n"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qdel_is_271_and_qsig_is_256_plus() {
    let mut f = fixture();
    f.start(f.spec(5, "4", "sleep 30\n")).await;
    f.started(5).await;
    f.runner.signal(5, libc::SIGTERM, true, 1);
    assert_eq!(f.ended(5).await.exit_status, 271);

    f.start(f.spec(6, "5", "sleep 30\n")).await;
    f.started(6).await;
    f.runner.signal(6, libc::SIGUSR1, false, 0);
    assert_eq!(f.ended(6).await.exit_status, 266);

    // A signal the MOM did not deliver: the shell's 128+N convention.
    f.start(f.spec(7, "6", "kill -9 $$\n")).await;
    assert_eq!(f.ended(7).await.exit_status, 137);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_and_forgets() {
    let mut f = fixture();
    f.start(f.spec(8, "7", "sleep 30\n")).await;
    let sid = f.started(8).await;
    let r = Arc::clone(&f.runner);
    tokio::task::spawn_blocking(move || r.cancel(&[8]))
        .await
        .expect("cancel");
    // The run is forgotten once its shell is gone; no RunEnded is sent.
    assert!(common::wait_until(Duration::from_secs(5), || f.runner.held().is_empty()).await);
    assert!(!f.layout.record(8).exists());
    assert!(
        !Path::new(&format!("/proc/{sid}")).exists()
            || capstan_mom::procfs::stat_of(sid).is_none_or(|s| s.state == 'Z')
    );
    assert!(f.events.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_fails_with_minus_1() {
    let mut f = fixture();
    let mut spec = f.spec(9, "8", "true\n");
    spec.euser = "no-such-user-capstan".into();
    f.start(spec).await;
    let r = f.ended(9).await;
    assert_eq!(r.exit_status, -1);
    assert!(r.message.contains("no-such-user-capstan"), "{}", r.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_restart() {
    let mut f = fixture();
    f.start(f.spec(10, "9", "exit 5\n")).await;
    assert_eq!(f.ended(10).await.exit_status, 5);
    let (again, _rx) = f.restart().await;
    let fin = again.finished();
    assert_eq!(fin.len(), 1);
    assert_eq!(fin[0].0, 10);
    assert_eq!(fin[0].1.exit_status, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_running_job_after_restart() {
    use capstan_mom::job::{Phase, RunRecord};
    use std::os::unix::process::CommandExt;
    let f = fixture();
    // A job left running by an earlier MOM process: its own session, not our waiter's.
    let mut cmd = std::process::Command::new("sleep");
    cmd.arg("30");
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn sleep");
    let pid = child.id() as i32;
    let spec = RunSpec {
        run_id: 11,
        job_id: "10.vm".into(),
        euser: current_user(),
        ..Default::default()
    };
    let record = RunRecord {
        uid: nix::unistd::Uid::current().as_raw(),
        session_id: pid,
        phase: Phase::Running,
        ..RunRecord::starting(&spec, capstan_mom::status::now_secs())
    };
    let (mom, mut rx) = f.adopt(&record).await;
    assert_eq!(mom.held().len(), 1);
    assert!(!mom.held()[0].finished);
    mom.signal(11, libc::SIGTERM, true, 1);
    let ev = common::next_event(&mut rx).await;
    let _ = child.wait();
    match ev {
        Event::Ended { run_id: 11, result } => assert_eq!(result.exit_status, 271),
        other => panic!("{other:?}"),
    }
}

/// As root, a job runs as its user: uid, groups, file ownership, and the MOM
/// does not write through paths the user controls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_mom_switches_to_the_jobs_user() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !nix::unistd::Uid::effective().is_root() {
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        return;
    };
    let mut f = fixture();
    // The job's user must reach its script and write its output.
    std::fs::set_permissions(f.tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&f.work, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let mut spec = f.spec(
        12,
        "11",
        "id -u\nid -g\necho \"$USER $LOGNAME $HOME\"\ncat \"$PBS_NODEFILE\"\n",
    );
    spec.euser = "nobody".into();
    spec.allow_root = false;
    f.start(spec).await;
    let r = f.ended(12).await;
    assert_eq!(r.exit_status, 0, "{r:?}");
    let out = f.read("job.sh.o11");
    assert_eq!(
        out,
        format!(
            "{}\n{}\nnobody nobody {}\nnode1\nnode1\n",
            nobody.uid,
            nobody.gid,
            nobody.dir.display()
        )
    );
    let meta = std::fs::metadata(f.work.join("job.sh.o11")).expect("meta");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (nobody.uid.as_raw(), 0o600)
    );
    let meta = std::fs::metadata(f.layout.spool_dir("11.vm")).expect("spool");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (nobody.uid.as_raw(), 0o700)
    );

    // A user's symlink in place of the stderr file is not followed: the job
    // runs, its stderr is kept in undelivered/ and the result says so.
    let target = f.work.join("victim");
    std::fs::write(&target, "keep\n").expect("victim");
    std::os::unix::fs::symlink(&target, f.work.join("job.sh.e13")).expect("symlink");
    let mut spec = f.spec(13, "13", "echo x\necho y >&2\n");
    spec.euser = "nobody".into();
    f.start(spec).await;
    let r = f.ended(13).await;
    assert_eq!(r.exit_status, 0, "{r:?}");
    assert_eq!(f.read("job.sh.o13"), "x\n");
    assert_eq!(std::fs::read_to_string(&target).expect("victim"), "keep\n");
    let kept = f.layout.undelivered_dir().join("13.vm.ER");
    assert_eq!(r.copy_errors.len(), 1, "{r:?}");
    let text = &r.copy_errors[0];
    assert!(
        text.starts_with(&format!(
            "Unable to copy file {} to ",
            f.layout.spool_dir("13.vm").join("13.vm.ER").display()
        )),
        "{text}"
    );
    assert!(
        text.contains("job.sh.e13': Too many levels of symbolic links\n*** end error output\n"),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "Output retained on that host in: {}",
            kept.display()
        )),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&kept).expect("kept"), "y\n");
    let meta = std::fs::symlink_metadata(&kept).expect("kept meta");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o777),
        (nobody.uid.as_raw(), 0o600)
    );

    // root jobs are refused unless the server allows them.
    let mut spec = f.spec(14, "14", "true\n");
    spec.euser = "root".into();
    spec.allow_root = false;
    f.start(spec).await;
    let r = f.ended(14).await;
    assert_eq!(r.exit_status, -1);
}
