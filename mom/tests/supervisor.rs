//! The per-run supervisor as the MOM sees it: the real `pbs_mom` binary
//! started as a supervisor (the MOM's fallback when `capstan_supervisor` is not
//! beside it; the other MOM tests use that one), spoken to over its pipes with
//! the MOM's `Link` (see `capstan_mom::supervisor`). Runs as the current user (no identity
//! switch when the uid matches).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use capstan_mom::job::{Event, Phase, RunRecord};
use capstan_mom::launch::{self, ExecPlan};
use capstan_mom::leftovers::Leftovers;
use capstan_mom::procfs;
use capstan_mom::spawner::Spawner;
use capstan_mom::supervisor::{self, Link, Started};

/// How these runs start: login shells, nothing else from a MOM config.
fn login() -> launch::StartOptions {
    launch::StartOptions {
        login: true,
        ..Default::default()
    }
}

mod common;

use common::{bed, mom_exe, Bed};

/// Starts a supervisor for `plan` as the MOM does and releases the shell;
/// the shell's pid.
fn supervise(b: &Bed, run_id: u64, plan: &ExecPlan) -> (Child, Link, i32) {
    let (child, mut link, pid) = supervise_held(b, run_id, plan);
    link.go().expect("release");
    (child, link, pid)
}

/// [`supervise`] without the release: the shell is set up and held before exec.
fn supervise_held(b: &Bed, run_id: u64, plan: &ExecPlan) -> (Child, Link, i32) {
    let (child, mut link) = launch::spawn_supervisor(&mom_exe(), &b.layout.exit_file(run_id))
        .expect("spawn supervisor");
    let json = serde_json::to_vec(plan).expect("plan");
    let pid = match link.start(&json) {
        Ok(Started::Held { pid, .. }) => pid,
        other => panic!("supervisor did not hold the job's shell: {other:?}"),
    };
    (child, link, pid)
}

/// Until the MOM has recorded the run, the job's shell waits before exec; a MOM
/// that goes away first (EOF instead of the release) leaves a run that never
/// ran a line of its script.
#[test]
fn a_shell_without_the_release_never_runs_the_script() {
    let b = bed();
    let marker = b.work.join("ran");
    let script = format!("touch {}\necho out\n", marker.display());
    let plan =
        launch::prepare(&b.spec(5, "5", &script), &b.layout, "node1", &login()).expect("prepare");
    let (mut child, link, shell) = supervise_held(&b, 5, &plan);
    // Set up as the job (its own session, its output files open) but not the shell yet:
    // still the supervisor's image.
    let stat = capstan_mom::procfs::stat_of(shell).expect("the held shell's stat");
    assert_eq!(stat.session, shell);
    let comm = std::fs::read_to_string(format!("/proc/{shell}/comm")).expect("comm");
    assert_eq!(comm.trim_end(), "capstan_supervi");
    let spooled = b.layout.spool_dir("5.vm").join("5.vm.OU");
    drop(link);
    assert!(child.wait().expect("reaped").success());
    assert!(!marker.exists(), "the script ran without the release");
    let exit = supervisor::read_exit_file(&b.layout.exit_file(5)).expect("exit file");
    assert!(exit.held_back, "{exit:?}");
    assert!(
        capstan_mom::procfs::stat_of(shell).is_none(),
        "the held shell was not reaped"
    );
    assert_eq!(
        std::fs::metadata(&spooled).expect("spooled output").len(),
        0
    );
}

/// What a released job's shell starts with: stdin the pipe that held its command line
/// (Torque's way of handing the shell the script), no other pipe or socket (neither the
/// supervisor's to the MOM nor one the test harness passed down, such as cargo's
/// jobserver), and SIGPIPE not ignored (Rust ignores it in the supervisor, and an ignored
/// signal stays ignored across exec).
#[test]
fn a_released_shell_inherits_nothing_else() {
    let b = bed();
    let script = "ls -l /proc/$$/fd > fds.txt\n\
        echo \"pipes: $(grep -v ' 0 -> ' fds.txt | grep -c -E ' (pipe|socket):')\"\n\
        readlink /proc/$$/fd/0\n\
        sed -n 's/^SigIgn:\\t//p' /proc/$$/status\n";
    let plan =
        launch::prepare(&b.spec(7, "7", script), &b.layout, "node1", &login()).expect("prepare");
    // A pipe the MOM would pass down (no close-on-exec), open until the job has ended.
    let _inheritable = nix::unistd::pipe().expect("pipe");
    let (mut child, mut link, _) = supervise(&b, 7, &plan);
    assert!(link.exited());
    let results = link.deliver(&plan.delivery.files).expect("delivered");
    assert!(results.iter().all(Option::is_none), "{results:?}");
    drop(link);
    assert!(child.wait().expect("reaped").success());
    let out = std::fs::read_to_string(b.out("7")).expect("out");
    let fds = std::fs::read_to_string(b.work.join("fds.txt")).unwrap_or_default();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pipes: 0", "{out}{fds}");
    assert!(lines[1].starts_with("pipe:"), "stdin: {out}{fds}");
    let ignored = u64::from_str_radix(lines[2], 16).expect("SigIgn mask");
    assert_eq!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {out}"
    );
}

/// Supervisors forked by the MOM's spawner (see `capstan_mom::spawner`): the
/// job starts as under an exec'd supervisor, inheriting neither the spawner's
/// socket and signalfd nor its blocked SIGCHLD; the spawner reaps the
/// supervisor; a spawner that died is replaced at the next launch; and one
/// whose MOM is gone exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawner_forks_supervisors_and_is_replaced_when_it_dies() {
    let b = bed();
    let spawner = Spawner::new(mom_exe());
    let first = run_through_spawner(&b, &spawner, 8).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let second = run_through_spawner(&b, &spawner, 9).await;
    assert_ne!(first, second, "the dead spawner was not replaced");
    // The MOM gone (its end of the socket closed), the spawner exits: left a
    // zombie of this process, which started it.
    drop(spawner);
    let ended = common::wait_until(Duration::from_secs(10), || {
        procfs::stat_of(second).is_none_or(|s| s.state == 'Z')
    });
    assert!(ended.await, "the spawner outlived its MOM");
}

/// Runs one job through `spawner` and checks what it started with and that its
/// supervisor was reaped; the pid of the spawner that forked the supervisor. The shell reads
/// its own signal mask with a builtin: while it forks a command it blocks every signal for a
/// moment, which a command reading its status could see.
async fn run_through_spawner(b: &Bed, spawner: &Spawner, run_id: u64) -> i32 {
    let script = "ls -l /proc/$$/fd > fds.$PBS_JOBID\n\
        echo \"pipes: $(grep -v ' 0 -> ' fds.$PBS_JOBID | grep -c -E ' (pipe|socket|anon_inode):')\"\n\
        while read -r k v; do [ \"$k\" = SigBlk: ] && echo \"$v\"; done < /proc/$$/status\n";
    let seq = run_id.to_string();
    let plan = launch::prepare(&b.spec(run_id, &seq, script), &b.layout, "node1", &login())
        .expect("prepare");
    let (sup, mut link) = spawner.spawn(&b.layout.exit_file(run_id)).expect("spawn");
    let parent = procfs::stat_of(sup.pid)
        .expect("the supervisor's stat")
        .ppid;
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).expect("comm");
    let spawner_name = capstan_mom::spawner::SPAWNER_NAME.to_str().expect("ascii");
    assert_eq!(comm.trim_end(), spawner_name, "exec'd, not forked");
    let json = serde_json::to_vec(&plan).expect("plan");
    assert!(matches!(link.start(&json), Ok(Started::Held { .. })));
    link.go().expect("release");
    assert!(link.exited());
    let results = link.deliver(&plan.delivery.files).expect("delivered");
    assert!(results.iter().all(Option::is_none), "{results:?}");
    link.close();
    let reaped = common::wait_until(Duration::from_secs(10), || {
        procfs::stat_of(sup.pid).is_none()
    });
    assert!(reaped.await, "the spawner left its supervisor a zombie");
    let out = std::fs::read_to_string(b.out(&seq)).expect("out");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["pipes: 0", "0000000000000000"]
    );
    parent
}

/// Recorded as running, but the MOM died before the release: the next MOM
/// adopts the run, finds the exit file saying the shell was held back, and
/// reports it as never started (JOB_EXEC_RETRY, nothing to copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_recorded_but_never_released_is_reported_unstarted() {
    let b = bed();
    let spec = b.spec(6, "6", "echo out\n");
    let plan = launch::prepare(&spec, &b.layout, "node1", &login()).expect("prepare");
    let (child, link, shell) = supervise_held(&b, 6, &plan);
    drop(link);
    let status = common::reap(child, Duration::from_secs(20)).await;
    assert!(status.expect("reaped in time").success());
    let record = RunRecord {
        uid: plan.uid,
        session_id: shell,
        supervisor_pid: 0,
        stderr_target: Some(plan.streams.stderr_target().to_path_buf()),
        delivery: plan.delivery.clone(),
        phase: Phase::Running,
        ..RunRecord::starting(&spec, capstan_mom::status::now_secs())
    };
    let (_mom, mut rx) = b.adopt(&record).await;
    let ev = common::next_event(&mut rx).await;
    match ev {
        Event::Ended { run_id: 6, result } => {
            assert_eq!(result.exit_status, capstan_proto::job_exec::RETRY);
            assert_eq!(result.message, "pbs_mom restarted while starting the job");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !b.out("6").exists(),
        "output of a run that never ran was delivered"
    );
}

#[test]
fn copies_the_output_when_the_mom_says_so() {
    let b = bed();
    let plan = launch::prepare(
        &b.spec(1, "1", "echo out\necho err >&2\nexit 2\n"),
        &b.layout,
        "node1",
        &login(),
    )
    .expect("prepare");
    let (mut child, mut link, _pid) = supervise(&b, 1, &plan);
    // Its own session (it called setsid: posix_spawn cannot).
    let sup = child.id() as i32;
    let stat = capstan_mom::procfs::stat_of(sup).expect("supervisor's stat");
    assert_eq!(stat.session, sup);
    assert!(link.exited());
    let exit = supervisor::read_exit_file(&b.layout.exit_file(1)).expect("exit file");
    assert_eq!(
        capstan_mom::exit::Termination::from_wait_status(exit.status),
        capstan_mom::exit::Termination::Exited(2)
    );
    assert_eq!(exit.leftovers, Leftovers::Nothing);
    // Nothing is copied before the go-ahead.
    assert!(!b.out("1").exists());
    let mut files = plan.delivery.files.clone();
    files.push(capstan_mom::paths::Delivery {
        spool: b.layout.spool_dir("1.vm").join("1.vm.OU"),
        dest: b.work.join("no/such/dir"),
    });
    let results = link.deliver(&files).expect("delivered");
    assert_eq!(results.len(), 3);
    assert_eq!(&results[..2], &[None, None]);
    let err = results[2].as_deref().expect("an error for the bad path");
    assert!(
        err.starts_with("cannot create regular file '")
            && err.ends_with(": No such file or directory"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(b.out("1")).expect("out"), "out\n");
    assert_eq!(
        std::fs::read_to_string(b.work.join("job.sh.e1")).expect("err"),
        "err\n"
    );
    assert!(child.wait().expect("reaped").success());
}

#[test]
fn copies_nothing_when_the_mom_hangs_up() {
    let b = bed();
    let plan = launch::prepare(&b.spec(2, "2", "echo out\n"), &b.layout, "node1", &login())
        .expect("prepare");
    let (mut child, mut link, _) = supervise(&b, 2, &plan);
    assert!(link.exited());
    drop(link);
    assert!(child.wait().expect("reaped").success());
    assert!(!b.out("2").exists());
    assert!(b.layout.spool_dir("2.vm").join("2.vm.OU").exists());
}

/// The MOM dies while the job runs: the supervisor finishes the job, writes
/// the exit file and exits without copying (nobody to tell); the next MOM
/// adopts the run and delivers the output with the exec'd helper.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_mom_delivers_what_the_supervisor_could_not() {
    let b = bed();
    // The job outlives its MOM: it ends only when the test says so, after the adoption.
    let go = b.work.join("go");
    let script = format!(
        "for _ in $(seq 400); do [ -e {} ] && break; sleep 0.05; done\necho late\n",
        go.display()
    );
    let spec = b.spec(3, "3", &script);
    let plan = launch::prepare(&spec, &b.layout, "node1", &login()).expect("prepare");
    let (child, link, pid) = supervise(&b, 3, &plan);
    drop(link);
    // As today's MOMs record it: pid and start time (run_jobs.rs keeps an older record,
    // without the start time, which the MOM checks by command line).
    let supervisor_started = capstan_mom::procfs::stat_of(child.id() as i32)
        .expect("the supervisor's stat")
        .start_ticks;
    let record = RunRecord {
        uid: plan.uid,
        session_id: pid,
        supervisor_pid: child.id() as i32,
        supervisor_started,
        stderr_target: Some(plan.streams.stderr_target().to_path_buf()),
        delivery: plan.delivery.clone(),
        phase: Phase::Running,
        ..RunRecord::starting(&spec, capstan_mom::status::now_secs())
    };
    let (_mom, mut rx) = b.adopt(&record).await;
    assert!(
        capstan_mom::procfs::stat_of(pid).is_some_and(|s| s.state != 'Z'),
        "the job ended before the new MOM adopted it"
    );
    std::fs::write(&go, b"").expect("let the job end");
    let ev = common::next_event(&mut rx).await;
    match ev {
        Event::Ended { run_id: 3, result } => {
            assert_eq!(result.exit_status, 0, "{result:?}");
            assert!(result.copy_errors.is_empty(), "{result:?}");
        }
        other => panic!("{other:?}"),
    }
    let status = common::reap(child, Duration::from_secs(20)).await;
    assert!(status.expect("reaped in time").success());
    assert_eq!(
        std::fs::read_to_string(b.out("3")).expect("delivered by the helper"),
        "late\n"
    );
    assert!(Path::new(&b.layout.exit_file(3)).exists());
}

/// The MOM dies after starting a supervisor but before recording the start:
/// the next MOM stops the supervisor and the job's shell it holds (never
/// released), and reports the run as never run, for the server to requeue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_no_mom_recorded_is_stopped_and_never_ran() {
    let ended = stop_unrecorded_launch(false).await;
    assert_eq!(ended.exit_status, capstan_proto::job_exec::RETRY);
}

/// The same with a record of an older MOM, whose shells ran at once: the
/// running shell is killed with its supervisor, and the run is reported as
/// failed (-1), not requeued, since its script may have run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_moms_unrecorded_launch_is_stopped() {
    let ended = stop_unrecorded_launch(true).await;
    assert_eq!(ended.exit_status, capstan_proto::job_exec::FAIL1);
}

/// A supervisor runs `sleep 300`, the dead MOM's record says Starting; a new MOM
/// recovers. With `older_mom`, the record lacks `gated` and the shell already
/// runs, as an older MOM's did; else the shell is still held. The run's end,
/// once the supervisor is known killed and the shell gone.
async fn stop_unrecorded_launch(older_mom: bool) -> capstan_mom::job::RunResult {
    let b = bed();
    let spec = b.spec(4, "4", "sleep 300\n");
    let plan = launch::prepare(&spec, &b.layout, "node1", &login()).expect("prepare");
    let (child, link, shell) = if older_mom {
        supervise(&b, 4, &plan)
    } else {
        supervise_held(&b, 4, &plan)
    };
    let supervisor_pid = child.id() as i32;
    // The record as the dead MOM left it: Starting, no supervisor or session known.
    let record = RunRecord {
        gated: !older_mom,
        ..RunRecord::starting(&spec, capstan_mom::status::now_secs())
    };
    let (mom, _events) = b.adopt(&record).await;
    let (_, ended) = mom.finished().pop().expect("an ended run");
    // Both gone: the supervisor killed (reaped here, its parent), the shell with it.
    let status = common::reap(child, Duration::from_secs(10)).await;
    let kill_shell = || {
        let kill = nix::sys::signal::Signal::SIGKILL;
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(shell), kill);
    };
    let Some(status) = status else {
        // Leave nothing behind: the job's session, then its supervisor.
        kill_shell();
        let kill = nix::sys::signal::Signal::SIGKILL;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(supervisor_pid), kill);
        panic!("the supervisor still runs");
    };
    assert!(!status.success(), "{status:?}");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    // The link stays open until then, so a held shell cannot have left on its own (EOF):
    // the new MOM killed it.
    let shell_gone = || capstan_mom::procfs::stat_of(shell).is_none_or(|s| s.state == 'Z');
    let gone = common::wait_until(Duration::from_secs(10), shell_gone).await;
    if !gone {
        kill_shell();
    }
    drop(link);
    assert!(gone, "the job's shell still runs");
    ended
}
