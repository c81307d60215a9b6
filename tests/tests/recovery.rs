//! Crashes: the server killed with -9 mid-job, a MOM killed with -9.

use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn server_restart_keeps_queued_and_running_jobs() {
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let marker = c.work.join("release");
    let running = c.qsub(
        "running.sh",
        &format!(
            "while [ ! -e {} ]; do sleep 0.1; done\necho finished\n",
            marker.display()
        ),
        &[],
    );
    c.wait_state(&running, "R", T);
    let queued = c.qsub("queued.sh", "echo second\n", &[]);
    let held = c.qsub("held.sh", "true\n", &["-h"]);
    c.kill_server();
    c.start_server();
    assert_eq!(c.job_state(&running).as_deref(), Some("R"));
    assert_eq!(c.job_state(&queued).as_deref(), Some("Q"));
    assert_eq!(c.job_state(&held).as_deref(), Some("H"));
    // The job finishes while the MOM is reconnected to the new server: its result is recorded.
    std::fs::write(&marker, "").unwrap();
    c.wait_state(&running, "C", T);
    assert_eq!(c.job_attr(&running, "exit_status").as_deref(), Some("0"));
    assert_eq!(c.job_attr(&running, "start_count").as_deref(), Some("1"));
    c.wait_state(&queued, "C", T);
    let out = c.read(c.default_stdout("running.sh", &running));
    assert_eq!(out, "finished\n", "ran exactly once");
    // Numbering continues after the restart.
    let next = c.qsub("next.sh", "true\n", &[]);
    assert_eq!(next, format!("3.{SERVER_NAME}"));
}

#[test]
fn a_restarted_mom_adopts_its_running_job_and_delivers_its_output() {
    // kill -9: the job's supervisor, in a session of its own, keeps the job running.
    adopted_across(Cluster::kill_mom);
}

/// `systemctl restart pbs_mom` under the shipped unit: SIGTERM to the MOM alone
/// (`KillMode=process`). It stops without touching its jobs, and the next MOM adopts them.
#[test]
fn a_mom_stopped_by_sigterm_leaves_its_job_to_the_next_one() {
    adopted_across(Cluster::stop_mom);
}

/// A job running across a MOM restart (the old one stopped by `stop`): adopted, it ends
/// normally and its output is delivered.
fn adopted_across(stop: fn(&mut Cluster, &str)) {
    // Runs of a node down for two status intervals (4 s) are lost, and a supervisor whose
    // MOM is gone kills its job a second before that (at 3 s) unless a new MOM adopts it.
    let mut c = Cluster::start_with(&[NodeSpec::new("n1", "np=1")], &["--status-interval", "2"]);
    let (started, marker) = (c.work.join("started"), c.work.join("release"));
    let id = c.qsub(
        "adopted.sh",
        &format!(
            "touch {}\nfor _ in $(seq 600); do [ -e {m} ] && break; sleep 0.05; done\n\
             [ -e {m} ] && echo finished\n",
            started.display(),
            m = marker.display()
        ),
        &[],
    );
    assert!(wait_until(T, || started.exists()), "the job did not start");
    // RunStarted (the job's session_id) is sent once the MOM's record says Running.
    assert!(
        wait_until(T, || c.job_attr(&id, "session_id").is_some()),
        "the MOM did not report the start"
    );
    c.restart_mom_after("n1", stop);
    // Past the supervisor's deadline: adopted, the job is not killed.
    std::thread::sleep(Duration::from_secs(4));
    std::fs::write(&marker, "").unwrap();
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
    assert_eq!(c.job_attr(&id, "start_count").as_deref(), Some("1"));
    // The job saw the marker, so it was alive when the new MOM adopted it. The supervisor
    // had no MOM to tell; the new MOM's copy helper, as the job's user, delivered the output.
    assert_eq!(c.read(c.default_stdout("adopted.sh", &id)), "finished\n");
}

#[test]
fn a_job_whose_adopting_mom_dies_too_is_killed_before_it_is_requeued() {
    let mut c = Cluster::start_with(&[NodeSpec::new("n1", "np=1")], &["--status-interval", "2"]);
    let pid_file = c.work.join("job.pid");
    let id = c.qsub("twice.sh", &Cluster::pid_then_sleep(&pid_file, 300), &[]);
    c.wait_state(&id, "R", T);
    let shell = c.shell_proc(&pid_file);
    c.restart_mom_adopting("n1");
    // The adopting MOM goes too, for good: the supervisor, watching it, kills the job before
    // the server counts the run lost and requeues the job.
    c.kill_mom("n1");
    c.wait_state(&id, "Q", T);
    assert!(!shell.exists(), "{} still runs", shell.display());
}

#[test]
fn losing_a_mom_marks_its_node_down_and_requeues_its_jobs() {
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1"), NodeSpec::new("n2", "np=1")]);
    let pid_file = |name: &str| c.work.join(format!("{name}.pid"));
    let script = |name: &str| Cluster::pid_then_sleep(&pid_file(name), 300);
    let rerunnable = c.qsub("re.sh", &script("re"), &["-l", "nodes=n1"]);
    let fixed = c.qsub("fixed.sh", &script("fixed"), &["-r", "n", "-l", "nodes=n2"]);
    c.wait_state(&rerunnable, "R", T);
    c.wait_state(&fixed, "R", T);
    let shells: Vec<_> = ["re", "fixed"]
        .iter()
        .map(|name| c.shell_proc(&pid_file(name)))
        .collect();
    c.kill_mom("n1");
    c.kill_mom("n2");
    assert!(
        wait_until(Duration::from_secs(15), || {
            c.node_state("n1").is_some_and(|s| s.contains("down"))
                && c.node_state("n2").is_some_and(|s| s.contains("down"))
        }),
        "nodes not marked down:\n{}",
        c.pbsnodes_text()
    );
    c.wait_state(&rerunnable, "Q", T);
    c.wait_state(&fixed, "C", T);
    let status = c.job_attr(&fixed, "exit_status").unwrap();
    assert!(status.starts_with('-'), "exit_status {status}");
    // Their supervisors, with no MOM to come back, killed both jobs before the server
    // counted the runs lost: the requeued job cannot run twice at once.
    for shell in &shells {
        assert!(!shell.exists(), "{} still runs", shell.display());
    }
    // The MOMs come back: the requeued job runs again, and n2 is told to drop the run the
    // server has ended, so nothing runs twice.
    c.start_mom("n1");
    c.start_mom("n2");
    c.wait_state(&rerunnable, "R", T);
    assert_eq!(c.job_attr(&rerunnable, "start_count").as_deref(), Some("2"));
    assert_eq!(c.job_state(&fixed).as_deref(), Some("C"));
}

#[test]
fn learned_speed_and_fair_share_survive_a_restart() {
    let mut c = Cluster::start_with(
        &[NodeSpec::new("n1", "np=1"), NodeSpec::new("n2", "np=1")],
        &["--priority-weight-fairshare", "100"],
    );
    // The same job shape on both nodes, three times each: enough evidence for both.
    for _ in 0..3 {
        let a = c.qsub("same.sh", "sleep 1\n", &[]);
        let b = c.qsub("same.sh", "sleep 1\n", &[]);
        c.wait_state(&a, "C", T);
        c.wait_state(&b, "C", T);
    }
    let learned = |c: &Cluster| {
        c.pbsnodes_text()
            .lines()
            .filter(|l| l.starts_with("     learned_speed = "))
            .count()
    };
    assert_eq!(learned(&c), 2, "{}", c.pbsnodes_text());
    c.kill_server();
    c.start_server();
    assert!(c.wait_nodes_up(&["n1".into(), "n2".into()], T));
    assert_eq!(learned(&c), 2, "{}", c.pbsnodes_text());
    // Only this user ran anything: a share of 1, restored from the store, costs 100 points.
    for n in ["n1", "n2"] {
        assert!(c.run_as_root("pbsnodes", &["-o", n]).status.success());
    }
    let id = c.qsub("waits.sh", "true\n", &[]);
    assert!(
        wait_until(T, || c.job_attr(&id, "start_priority").is_some()),
        "no start_priority"
    );
    assert_eq!(
        c.job_attr(&id, "start_priority").as_deref(),
        Some("-100.00")
    );
}

#[test]
fn after_a_reboot_the_mom_reports_its_runs_lost_and_the_server_requeues_or_ends_them() {
    if !is_root() {
        eprintln!("skipped: needs root (a mount namespace to give the MOM another boot id)");
        return;
    }
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    let work = c.work.clone();
    let pid_file = |name: &str| work.join(format!("{name}.pid"));
    let script = |name: &str| Cluster::pid_then_sleep(&pid_file(name), 300);
    let rerunnable = c.qsub("re.sh", &script("re"), &[]);
    let fixed = c.qsub("fixed.sh", &script("fixed"), &["-r", "n"]);
    for id in [&rerunnable, &fixed] {
        c.wait_state(id, "R", T);
        assert!(wait_until(T, || c.job_attr(id, "session_id").is_some()));
    }
    // A power loss: the MOM, the runs' supervisors and the jobs all go at once.
    c.kill_mom("n1");
    for name in ["re", "fixed"] {
        let shell_dir = c.shell_proc(&pid_file(name));
        let supervisor = proc_parent(&shell_dir).unwrap_or(0);
        let shell: i32 = c.read(pid_file(name)).trim().parse().unwrap();
        assert!(supervisor > 1, "the shell of {name} has its supervisor");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(supervisor),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(shell),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // The node comes back in another boot: its MOM sees another boot id, so its records
    // (not synced) may lack their last versions and none of their processes exist.
    let fake_boot = c.root.join("boot_id");
    std::fs::write(&fake_boot, "11111111-2222-3333-4444-555555555555\n").unwrap();
    let mount = format!(
        "mount --bind {} /proc/sys/kernel/random/boot_id && exec \"$@\"",
        fake_boot.display()
    );
    c.start_mom_under(
        "n1",
        Some(&["unshare", "--mount", "--", "sh", "-c", &mount, "sh"]),
    );
    c.wait_state(&fixed, "C", T);
    assert_eq!(c.job_attr(&fixed, "exit_status").as_deref(), Some("-4"));
    assert!(
        wait_until(T, || c
            .job_attr(&rerunnable, "start_count")
            .is_some_and(|n| n == "2")),
        "requeued and started again: {:?}",
        c.job_attr(&rerunnable, "comment")
    );
    assert_eq!(
        c.mom_log("n1")
            .matches("run record from before a reboot")
            .count(),
        2,
        "{}",
        c.mom_log("n1")
    );
    assert_eq!(
        c.server_log_count(
            "Job requeued: run lost on n1: the node rebooted while the job was starting or running"
        ),
        1,
        "{}",
        c.server_log()
    );
}

/// The MOM polices a job's `-l cput` on its own: with the server gone, a job over its limit
/// is still killed, and the server, once back, records Torque's -12.
#[test]
fn limits_are_enforced_while_the_server_is_away() {
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let pid_file = c.work.join("burner.pid");
    let body = format!("echo $$ > {}\nwhile :; do :; done\n", pid_file.display());
    let id = c.qsub("burn.sh", &body, &["-l", "cput=2"]);
    c.wait_state(&id, "R", T);
    let shell = c.shell_proc(&pid_file);
    c.kill_server();
    // Not yet past its limit: what ends it below is the MOM's own check, the server gone.
    assert!(shell.exists(), "the job ended before the server went away");
    assert!(
        wait_until(T, || !shell.exists()),
        "the job ran on past its cput with the server gone"
    );
    c.start_server();
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("-12"));
    let err = c.read(c.work.join(format!("burn.sh.e{}", Cluster::seq(&id))));
    assert_contains(&err, " exceeded limit 2\n");
    // Charged at least the CPU it was judged on, though no status report sampled it.
    c.assert_charged_the_notices_cput(&id, &err);
}
