//! Job control and node administration: holds, releases, dependencies, who may act on a
//! job, and taking nodes offline.

use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn holds_and_releases() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let held = c.qsub("held.sh", "echo ran\n", &["-h"]);
    assert_eq!(c.job_state(&held).as_deref(), Some("H"));
    assert_eq!(c.job_attr(&held, "Hold_Types").as_deref(), Some("u"));
    // Bare sequence numbers work everywhere.
    let seq = Cluster::seq(&held).to_string();
    let out = c.run("qrls", &[&seq]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&held, "C", T);

    // qhold on a queued job that cannot run yet (the only slot is busy).
    let blocker = c.qsub("block.sh", "sleep 60\n", &[]);
    c.wait_state(&blocker, "R", T);
    let queued = c.qsub("q.sh", "true\n", &[]);
    assert!(c.run("qhold", &[&queued]).status.success());
    assert_eq!(c.job_state(&queued).as_deref(), Some("H"));
    // Releasing a job that is not held is refused with Torque's words.
    let out = c.run("qrls", &[&blocker]);
    assert_eq!(code(&out), 70, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!("qrls: The requested state or substate can't be set from the job's current state (slot limit in effect). {blocker}\n")
    );
    // qhold of an unknown job prints nothing, exit 153.
    let out = c.run("qhold", &["999"]);
    assert_eq!(code(&out), 153);
    assert_eq!(stderr(&out), "");
    // Several jobs: the exit status is the last one's answer, as Torque's.
    let out = c.run("qhold", &["999", &queued]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    let out = c.run("qhold", &[&queued, "999"]);
    assert_eq!((code(&out), stderr(&out)), (153, String::new()));
    // qrerun says so (Torque's qrerun tests `== PBSE_UNKJOBID` where qhold's is `!=`).
    let out = c.run_as_root("qrerun", &["999"]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            153,
            format!("qrerun: Unknown Job Id Error 999.{SERVER_NAME}\n")
        )
    );
    // qsig on a job that is not running.
    let out = c.run("qsig", &["-s", "USR1", &queued]);
    assert_eq!(code(&out), 170);
    assert_eq!(
        stderr(&out),
        format!("qsig: Request invalid for state of job {queued}\n")
    );
    // qdel of an unknown job.
    let out = c.run("qdel", &["999"]);
    assert_eq!(code(&out), 153);
    assert_eq!(
        stderr(&out),
        format!("qdel: nonexistent job id: 999.{SERVER_NAME}\n")
    );
    // qdel all removes the caller's remaining jobs.
    let out = c.run("qdel", &["all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&blocker, "C", T);
    c.wait_state(&queued, "C", T);
}

#[test]
fn dependencies_release_or_delete_dependents() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    let parent = c.qsub("parent.sh", "sleep 1\nexit 1\n", &[]);
    let ok = c.qsub(
        "ok.sh",
        "echo ok\n",
        &["-W", &format!("depend=afterok:{parent}")],
    );
    let any_seq = Cluster::seq(&parent).to_string();
    let any = c.qsub(
        "any.sh",
        "echo any\n",
        &["-W", &format!("depend=afterany:{any_seq}")],
    );
    assert_eq!(c.job_state(&ok).as_deref(), Some("H"));
    assert_eq!(c.job_attr(&ok, "Hold_Types").as_deref(), Some("s"));
    assert_eq!(c.job_attr(&ok, "depend"), Some(format!("afterok:{parent}")));
    c.wait_state(&parent, "C", T);
    c.wait_state(&any, "C", T);
    assert_eq!(c.job_attr(&any, "exit_status").as_deref(), Some("0"));
    c.wait_state(&ok, "C", T);
    assert_eq!(c.job_attr(&ok, "exit_status").as_deref(), Some("271"));
    assert_eq!(
        c.job_attr(&ok, "comment"),
        Some(format!(
            "Job deleted as result of dependency on job {parent}"
        ))
    );
    // A dependent released by hand runs; when its dependency then fails it is killed as qdel
    // would kill it (it was shown done while it ran on, and its slot given away).
    if is_root() {
        let held = c.qsub("held.sh", "true\n", &["-h"]);
        let pid_file = c.work.join("early.pid");
        let early = c.qsub(
            "early.sh",
            &Cluster::pid_then_sleep(&pid_file, 60),
            &["-W", &format!("depend=afterok:{held}")],
        );
        let out = c.run_as_root("qrls", &["-h", "s", &early]);
        assert!(out.status.success(), "{}", stderr(&out));
        c.wait_state(&early, "R", T);
        let shell = c.shell_proc(&pid_file);
        assert!(c.run("qdel", &[&held]).status.success());
        c.wait_state(&early, "C", T);
        // Completed only once its shell is gone.
        assert!(!shell.exists(), "{} still runs", shell.display());
        assert_eq!(c.job_attr(&early, "exit_status").as_deref(), Some("271"));
        assert_eq!(
            c.job_attr(&early, "comment"),
            Some(format!("Job deleted as result of dependency on job {held}"))
        );
        assert_eq!(c.node_state("n1").as_deref(), Some("free"));
    }
    // A dependency on a job that does not exist is refused.
    c.script("bad.sh", "true\n");
    let out = c.run("qsub", &["-W", "depend=afterok:999", "bad.sh"]);
    assert_eq!(code(&out), 208);
    assert_eq!(
        stderr(&out),
        "qsub: submit error (Invalid Job Dependency)\n"
    );
}

/// `qalter -W depend=...` sets a queued job's dependencies anew, as qsub would have set
/// them: a system hold until they are met (which its owner may not lift), deletion at once
/// when one never can be met, passed on to the jobs waiting on it.
#[test]
fn qalter_sets_a_queued_jobs_dependencies() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    let parent = c.qsub("parent.sh", "true\n", &["-h"]);
    // Held by its user, so that it waits for the qalter.
    let child = c.qsub("child.sh", "echo child\n", &["-h"]);
    let depend = format!("depend=afterok:{parent}");
    let out = c.run("qalter", &["-W", &depend, &child]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(
        c.job_attr(&child, "depend"),
        Some(format!("afterok:{parent}"))
    );
    assert!(c.run("qrls", &[&child]).status.success());
    assert_eq!(c.job_state(&child).as_deref(), Some("H"));
    assert_eq!(c.job_attr(&child, "Hold_Types").as_deref(), Some("s"));
    // Its owner may not lift the system hold its dependency placed.
    let out = c.run("qalter", &["-h", "n", &child]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (159, format!("qalter: Unauthorized Request  {child}\n"))
    );
    assert_eq!(c.job_attr(&child, "Hold_Types").as_deref(), Some("s"));
    assert!(c.run("qrls", &[&parent]).status.success());
    c.wait_state(&parent, "C", T);
    c.wait_state(&child, "C", T);
    assert_eq!(c.job_attr(&child, "exit_status").as_deref(), Some("0"));

    // A dependency that can no longer be met deletes the job at once, and with it the job
    // waiting on it succeeding.
    let failed = c.qsub("failed.sh", "exit 3\n", &[]);
    c.wait_state(&failed, "C", T);
    let late = c.qsub("late.sh", "true\n", &["-h"]);
    let after_late = c.qsub(
        "after.sh",
        "true\n",
        &["-W", &format!("depend=afterok:{late}")],
    );
    let out = c.run(
        "qalter",
        &["-W", &format!("depend=afterok:{failed}"), &late],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let deleted_for = |id: &str, parent: &str| {
        assert_eq!(c.job_state(id).as_deref(), Some("C"), "{id}");
        assert_eq!(
            c.job_attr(id, "exit_status").as_deref(),
            Some("271"),
            "{id}"
        );
        assert_eq!(
            c.job_attr(id, "comment"),
            Some(format!(
                "Job deleted as result of dependency on job {parent}"
            ))
        );
    };
    deleted_for(&late, &failed);
    deleted_for(&after_late, &late);

    // Refused, and nothing changed: an unknown parent, the job itself, a circle, bad syntax,
    // another -W attribute.
    let waiting = c.qsub("waiting.sh", "true\n", &["-h"]);
    let behind = c.qsub(
        "behind.sh",
        "true\n",
        &["-W", &format!("depend=afterany:{waiting}")],
    );
    let refused = format!("qalter: Invalid Job Dependency {waiting}\n");
    for value in [
        "depend=afterok:999".to_string(),
        format!("depend=afterok:{waiting}"),
        format!("depend=afterok:{behind}"),
    ] {
        let out = c.run("qalter", &["-W", &value, &waiting]);
        assert_eq!(
            (code(&out), stderr(&out)),
            (208, refused.clone()),
            "{value}"
        );
    }
    let out = c.run("qalter", &["-W", "depend=sometime:1", &waiting]);
    assert_eq!(code(&out), 2);
    assert_contains(&stderr(&out), "qalter: illegal -W value\nusage: qalter");
    for empty in ["depend=", "depend", ""] {
        let out = c.run("qalter", &["-W", empty, &waiting]);
        assert_eq!(code(&out), 2, "-W {empty:?}");
        assert_contains(&stderr(&out), "qalter: illegal -W value\nusage: qalter");
    }
    let out = c.run("qalter", &["-h", "un", &waiting]);
    assert_eq!(code(&out), 2);
    assert_contains(&stderr(&out), "qalter: illegal -h value\nusage: qalter");
    let out = c.run("qalter", &["-W", "umask=022", &waiting]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            2,
            "qalter: -W umask is not supported by Capstan (only -W depend=...)\n".to_string()
        )
    );
    // Only the job waiting on it, as Torque shows it.
    assert_eq!(
        c.job_attr(&waiting, "depend"),
        Some(format!("beforeany:{behind}"))
    );
    assert_eq!(c.job_attr(&waiting, "Hold_Types").as_deref(), Some("u"));

    // A system hold that is not the dependencies' (a manager's) is not theirs to lift.
    if is_root() {
        let done = c.qsub("done.sh", "true\n", &[]);
        c.wait_state(&done, "C", T);
        let out = c.run_as_root("qhold", &["-h", "s", &waiting]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(c.run("qrls", &[&waiting]).status.success());
        let out = c.run(
            "qalter",
            &["-W", &format!("depend=afterany:{done}"), &waiting],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(c.job_state(&waiting).as_deref(), Some("H"));
        assert_eq!(c.job_attr(&waiting, "Hold_Types").as_deref(), Some("s"));
    }
}

#[test]
fn other_users_cannot_touch_a_job() {
    let Some(other) = other_user() else {
        eprintln!("skipped: needs root to create a second user");
        return;
    };
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let id = c.qsub("mine.sh", "sleep 60\n", &[]);
    c.wait_state(&id, "R", T);
    for (cmd, args) in [
        ("qdel", vec![id.as_str()]),
        ("qhold", vec![id.as_str()]),
        ("qsig", vec!["-s", "USR1", id.as_str()]),
    ] {
        let out = c.run_as(&other, cmd, &args);
        assert_eq!(code(&out), 159, "{cmd}: {}", stderr(&out));
        assert_eq!(stderr(&out), format!("{cmd}: Unauthorized Request  {id}\n"));
    }
    let out = c.run("qrerun", &[&id]);
    assert_eq!(code(&out), 159);
    assert_eq!(
        stderr(&out),
        format!("qrerun: Unauthorized Request  MSG=additional permissions required (ATR_DFLAG_MGWR | ATR_DFLAG_OPWR) {id}\n")
    );
    assert_eq!(c.job_state(&id).as_deref(), Some("R"));
    // Root (the manager) may.
    let out = c.run_as_root("qdel", &[&id]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&id, "C", T);
    // qsub as root is refused, as in Torque.
    c.script("root.sh", "true\n");
    let out = c.run_as_root("qsub", &["root.sh"]);
    assert_eq!(code(&out), 1);
    assert_eq!(stderr(&out), "qsub can not be run as root\n");
}

#[test]
fn offline_nodes_take_no_work_until_cleared() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1 site=a fast")]);
    // `status` appears once the MOM's first report is in.
    assert!(wait_until(T, || stdout(
        &c.run_as_root("pbsnodes", &["n1"])
    )
    .contains("     status = ")));
    let text = stdout(&c.run_as_root("pbsnodes", &["n1"]));
    assert_contains(&text, "n1\n     state = free\n");
    assert_contains(&text, "     np = 1\n");
    assert_contains(&text, "     properties = fast\n");
    assert_contains(&text, "     site = a\n");
    assert_contains(&text, "     status = opsys=linux,");
    let out = c.run_as_root("pbsnodes", &["-o", "-N", "disk check", "n1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(c.node_state("n1").as_deref(), Some("offline"));
    let listed = stdout(&c.run_as_root("pbsnodes", &["-ln"]));
    assert_eq!(
        listed,
        format!("{:<20} {:<26} {}\n", "n1", "offline", "disk check")
    );
    // -A appends to the note after ", " (Torque 6's delimiter).
    let out = c.run_as_root("pbsnodes", &["-A", "fan noisy", "n1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let listed = stdout(&c.run_as_root("pbsnodes", &["-ln"]));
    assert_eq!(
        listed,
        format!(
            "{:<20} {:<26} {}\n",
            "n1", "offline", "disk check, fan noisy"
        )
    );
    let id = c.qsub("wait.sh", "true\n", &[]);
    c.wait_held_back(&id);
    let out = c.run_as_root("pbsnodes", &["-c", "n1"]);
    assert!(out.status.success());
    c.wait_state(&id, "C", T);
    assert_eq!(c.node_state("n1").as_deref(), Some("free"));
    // Unknown nodes.
    let out = c.run_as_root("pbsnodes", &["nosuch"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "pbsnodes: Unknown node  MSG=cannot locate specified node\n"
    );
    // qnodes is pbsnodes under Torque's other name.
    let out = c.run_as_root("qnodes", &["-l", "all"]);
    assert_eq!(
        stdout(&out),
        stdout(&c.run_as_root("pbsnodes", &["-l", "all"]))
    );
    let out = c.run_as_root("qnodes", &["nosuch"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "qnodes: Unknown node  MSG=cannot locate specified node\n"
    );
}

#[test]
fn manager_reruns_a_running_job_and_execution_time_waits() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    let marker = c.work.join("runs");
    let id = c.qsub(
        "rerun.sh",
        &format!("echo run >> {}\nsleep 60\n", marker.display()),
        &[],
    );
    c.wait_state(&id, "R", T);
    assert!(wait_until(T, || c.read_opt(&marker).lines().count() == 1));
    if is_root() {
        // Root is a manager: qrerun requeues the job and it starts again.
        let out = c.run_as_root("qrerun", &[&id]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(wait_until(T, || c.read_opt(&marker).lines().count() == 2));
        c.wait_state(&id, "R", T);
        assert_eq!(c.job_attr(&id, "start_count").as_deref(), Some("2"));
        // A job submitted with -r n is not rerun, and keeps running.
        let fixed = c.qsub("fixed.sh", "sleep 60\n", &["-r", "n"]);
        c.wait_state(&fixed, "R", T);
        let out = c.run_as_root("qrerun", &[&fixed]);
        assert_eq!(code(&out), 192);
        assert_eq!(
            stderr(&out),
            format!("qrerun: job is not rerunnable MSG=job {fixed} not rerunnable {fixed}\n")
        );
        assert_eq!(c.job_state(&fixed).as_deref(), Some("R"));
        assert_eq!(c.job_attr(&fixed, "start_count").as_deref(), Some("1"));
        assert!(c.run_as_root("qdel", &[&fixed]).status.success());
    }
    // -a: a job with an execution time in the future waits in state W.
    c.script("later.sh", "true\n");
    let out = c.run("qsub", &["-a", "2359", "later.sh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let later = stdout(&out).trim().to_string();
    let now = chrono_free_minutes_of_day();
    if now < 23 * 60 + 58 {
        assert_eq!(c.job_state(&later).as_deref(), Some("W"));
        assert!(c.job_attr(&later, "Execution_Time").is_some());
    }
    // -z: nothing on stdout, the job exists all the same.
    let out = c.run("qsub", &["-z", "-h", "later.sh"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "");
    let listed = stdout(&c.run("qstat", &[]));
    // Header, then rerun.sh, (as root: fixed.sh,) later.sh and the -z job.
    let jobs = if is_root() { 4 } else { 3 };
    assert_eq!(listed.lines().count(), 2 + jobs, "{listed}");
}

/// Minutes since local midnight, from `date` (the test crate has no date library).
fn chrono_free_minutes_of_day() -> u32 {
    let out = std::process::Command::new("date")
        .arg("+%H %M")
        .output()
        .expect("date");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text
        .split_whitespace()
        .map(|p| p.parse::<u32>().unwrap_or(0));
    parts.next().unwrap_or(0) * 60 + parts.next().unwrap_or(0)
}

/// `qorder JOB JOB` swaps two waiting jobs' places in line (and their queues, when they
/// are in different ones); the scheduler then starts them in the new order. Refusals are
/// Torque's `prt_job_err` lines with no job id, and change nothing.
#[test]
fn qorder_swaps_two_jobs_places_in_line() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let order_file = c.work.join("order.txt");
    let marker = c.work.join("go");
    // Holds the only slot until the marker appears, so the two wait in line behind it.
    let blocker = c.qsub(
        "blocker.sh",
        &format!("while [ ! -e {} ]; do sleep 0.05; done\n", marker.display()),
        &[],
    );
    c.wait_state(&blocker, "R", T);
    let note = |name: &str| format!("echo {name} >> {}\n", order_file.display());
    let first = c.qsub("first.sh", &note("first"), &[]);
    let second = c.qsub("second.sh", &note("second"), &[]);
    let out = c.run("qorder", &[&first, &second]);
    assert_eq!(
        (code(&out), stderr(&out), stdout(&out)),
        (0, String::new(), String::new())
    );

    // Refused, in Torque's words: a running job, an unknown one (looked for before either
    // job's state is judged), a bad command line.
    let out = c.run("qorder", &[&blocker, &first]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            170,
            "qorder: Request invalid for state of job \n".to_string()
        )
    );
    let out = c.run("qorder", &[&blocker, "999"]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (153, "qorder: Unknown Job Id Error \n".to_string())
    );
    let out = c.run("qorder", &[&first, "999"]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (153, "qorder: Unknown Job Id Error \n".to_string())
    );
    let out = c.run("qorder", &[&first]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            2,
            "usage: qorder job_identifier job_identifier\n".to_string()
        )
    );
    if let Some(other) = other_user() {
        let out = c.run_as(&other, "qorder", &[&first, &second]);
        assert_eq!(
            (code(&out), stderr(&out)),
            (159, "qorder: Unauthorized Request  \n".to_string())
        );
    }

    std::fs::write(&marker, "").expect("marker");
    c.wait_state(&first, "C", T);
    c.wait_state(&second, "C", T);
    assert_eq!(c.read(&order_file), "second\nfirst\n");

    // Jobs in different queues swap queues too.
    if is_root() {
        let out = c.run_as_root("qmgr", &["-c", "create queue dq"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = c.run_as_root("qmgr", &["-c", "set queue dq enabled = true"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let in_batch = c.qsub("b.sh", "true\n", &["-h"]);
        let in_dq = c.qsub("d.sh", "true\n", &["-h", "-q", "dq"]);
        let out = c.run("qorder", &[&in_batch, &in_dq]);
        assert_eq!((code(&out), stderr(&out)), (0, String::new()));
        assert_eq!(c.job_attr(&in_batch, "queue").as_deref(), Some("dq"));
        assert_eq!(c.job_attr(&in_dq, "queue").as_deref(), Some("batch"));
    }
}

/// `qmove DEST JOB...` moves jobs that have not started to another queue (its defaults fill
/// in, `qtime` restarts); a running job, an unknown or disabled queue are refused in Torque's
/// words and change nothing.
#[test]
fn qmove_moves_a_waiting_job_to_another_queue() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let qmgr = |command: &str| {
        let out = c.run_as_root("qmgr", &["-c", command]);
        assert!(
            out.status.success(),
            "qmgr -c '{command}': {}",
            stderr(&out)
        );
    };
    qmgr("create queue dq");
    qmgr("set queue dq enabled = true, started = true, resources_default.walltime = 00:20:00");
    qmgr("create queue off");
    let held = c.qsub("moved.sh", "echo moved\n", &["-h"]);
    let out = c.run("qmove", &["dq", &held]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(stdout(&out), "");
    assert_eq!(c.job_attr(&held, "queue").as_deref(), Some("dq"));
    // As Torque: what the old queue's defaults filled in goes, the new queue's fill in;
    // what the job asked for stays.
    assert_eq!(
        c.job_attr(&held, "Resource_List.walltime").as_deref(),
        Some("00:20:00")
    );
    let asked = c.qsub(
        "asked.sh",
        "true\n",
        &["-h", "-l", "walltime=00:05:00,procs=1"],
    );
    let out = c.run("qmove", &["dq", &asked]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(
        c.job_attr(&asked, "Resource_List.walltime").as_deref(),
        Some("00:05:00")
    );
    // A default `nodes` would override `procs`: it is not applied, as at submission.
    assert_eq!(c.job_attr(&asked, "Resource_List.nodes"), None);
    assert_eq!(
        c.job_attr(&asked, "Resource_List.procs").as_deref(),
        Some("1")
    );
    let out = c.run("qdel", &[&asked]);
    assert!(out.status.success());
    let seq = Cluster::seq(&held);
    let refused = |args: &[&str], want: String, exit: i32| {
        let out = c.run("qmove", args);
        assert_eq!(stderr(&out), want, "qmove {args:?}");
        assert_eq!(code(&out), exit, "qmove {args:?}");
    };
    refused(
        &["nosuch", &held],
        format!("qmove: Unknown queue {held}\n"),
        172,
    );
    refused(
        &["off", seq],
        format!("qmove: Queue is not enabled {held}\n"),
        175,
    );
    refused(&["dq", "999"], String::new(), 153);
    // Its own queue (PBSE_JOB_ALREADY_IN_QUEUE, 15127).
    refused(
        &["dq", &held],
        format!("qmove: Job is already in destination queue. {held}\n"),
        23,
    );
    refused(
        &["dq"],
        "usage: qmove destination job_identifier...\n".into(),
        2,
    );
    assert_eq!(c.job_attr(&held, "queue").as_deref(), Some("dq"));
    // Released, it runs from its new queue; once running it may not move.
    let out = c.run("qrls", &[&held]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&held, "C", T);
    assert_eq!(c.read(c.default_stdout("moved.sh", &held)), "moved\n");
    let running = c.qsub("busy.sh", "sleep 30\n", &[]);
    c.wait_state(&running, "R", T);
    refused(
        &["dq", &running],
        format!("qmove: Request invalid for state of job {running}\n"),
        170,
    );
    assert_eq!(c.job_attr(&running, "queue").as_deref(), Some("batch"));
    let out = c.run("qdel", &[&running]);
    assert!(out.status.success());
}

/// `qrun` (managers and operators) starts a queued job now, even with scheduling off, on
/// the nodes `-H` names when given; it says why when it cannot, and exits 2.
#[test]
fn qrun_starts_a_job_now_where_it_fits() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1"), NodeSpec::new("n2", "np=1")]);
    let off = c.run_as_root("qmgr", &["-c", "set server scheduling = false"]);
    assert!(off.status.success(), "{}", stderr(&off));
    let first = c.qsub("first.sh", "sleep 30\n", &[]);
    let second = c.qsub("second.sh", "sleep 30\n", &[]);
    let third = c.qsub("third.sh", "sleep 30\n", &[]);
    assert_eq!(c.job_state(&first).as_deref(), Some("Q"));
    let refused = |out: std::process::Output, want: String| {
        assert_eq!(stderr(&out), want);
        assert_eq!(code(&out), 2);
    };
    refused(
        c.run("qrun", &[&first]),
        format!("qrun: Unauthorized Request  {first}\n"),
    );
    // Where it is told to run, and nowhere else.
    let out = c.run_as_root("qrun", &["-H", "n2", &first]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(c.job_state(&first).as_deref(), Some("R"));
    assert_eq!(c.job_attr(&first, "exec_host").as_deref(), Some("n2/0"));
    refused(
        c.run_as_root("qrun", &["-H", "n2", &second]),
        format!(
            "qrun: Resource temporarily unavailable MSG=job allocation request exceeds \
             currently available cluster nodes, 1 requested, 0 available {second}\n"
        ),
    );
    let out = c.run_as_root("qrun", &[&second]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(c.job_attr(&second, "exec_host").as_deref(), Some("n1/0"));
    refused(
        c.run_as_root("qrun", &[&third]),
        format!(
            "qrun: Resource temporarily unavailable MSG=job allocation request exceeds \
             currently available cluster nodes, 1 requested, 0 available {third}\n"
        ),
    );
    refused(
        c.run_as_root("qrun", &["-H", "nosuch", &third]),
        format!("qrun: Unknown node  MSG=cannot locate node nosuch {third}\n"),
    );
    refused(
        c.run_as_root("qrun", &[&first]),
        format!("qrun: Request invalid for state of job MSG=job already running {first}\n"),
    );
    refused(
        c.run_as_root("qrun", &["999"]),
        format!("qrun: Unknown Job Id Error 999.{SERVER_NAME}\n"),
    );
    let out = c.run_as_root("qrun", &[]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (1, "Usage: qrun [-a] [-H host] job_id ...\n".into())
    );
    assert_eq!(c.job_state(&third).as_deref(), Some("Q"));
    // A held job is run too, as Torque's qrun runs it (once a slot is free).
    assert!(c.run("qhold", &[&third]).status.success());
    assert_eq!(c.job_state(&third).as_deref(), Some("H"));
    assert!(c.run("qdel", &[&second]).status.success());
    c.wait_state(&second, "C", T);
    let out = c.run_as_root("qrun", &["-a", &third]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(c.job_state(&third).as_deref(), Some("R"));
    for id in [&first, &third] {
        let out = c.run("qdel", &[id]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

#[test]
fn an_operator_suspends_and_resumes_a_job_whose_walltime_stops_meanwhile() {
    if !is_root() {
        eprintln!("skipped: needs root (the manager) and an unprivileged user");
        return;
    }
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let pid_file = c.work.join("job.pid");
    // Its sleep runs out while it is suspended: were the suspension counted, the 4 s
    // walltime limit would kill it.
    let body = format!("echo $$ > {}\nsleep 6\necho done\n", pid_file.display());
    let id = c.qsub("paused.sh", &body, &["-l", "walltime=00:00:04"]);
    c.wait_state(&id, "R", T);
    let shell = c.shell_proc(&pid_file);
    let proc_state = || proc_state(&shell);

    // Its owner may signal it, but not suspend it (Torque: operators and managers only).
    let out = c.run("qsig", &["-s", "suspend", &id]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (159, format!("qsig: Unauthorized Request  {id}\n"))
    );
    let out = c.run_as_root("qsig", &["-s", "suspend", &id]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    c.wait_state(&id, "S", T);
    assert!(
        wait_until(T, || proc_state() == Some('T')),
        "{:?}",
        proc_state()
    );
    // Suspended twice: refused, as Torque's MOM refuses.
    let out = c.run_as_root("qsig", &["-s", "suspend", &id]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            170,
            format!("qsig: Request invalid for state of job {id}\n")
        )
    );
    // Past its walltime limit on the clock, suspended all the while: never leaves S.
    let left_suspension = wait_until(Duration::from_secs(6), || {
        c.job_state(&id).as_deref() != Some("S")
    });
    assert!(!left_suspension, "not killed while suspended");
    let out = c.run_as_root("qsig", &["-s", "resume", &id]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
    let walltime = c
        .job_attr(&id, "resources_used.walltime")
        .expect("resources_used.walltime");
    let secs = capstan_proto::resources::parse_duration(&walltime).expect("a duration");
    assert!(secs < 4, "the suspension is not counted: {walltime}");
    assert_eq!(c.read(c.default_stdout("paused.sh", &id)), "done\n");
    // A job that is not running cannot be suspended.
    let out = c.run_as_root("qsig", &["-s", "resume", &id]);
    assert_eq!(code(&out), 170, "{}", stderr(&out));
}

#[test]
fn a_suspended_job_stays_suspended_across_its_moms_restart_and_a_sigcont_continues_it() {
    if !is_root() {
        eprintln!("skipped: needs root (the manager) and an unprivileged user");
        return;
    }
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let pid_file = c.work.join("job.pid");
    let id = c.qsub("paused.sh", &Cluster::pid_then_sleep(&pid_file, 300), &[]);
    c.wait_state(&id, "R", T);
    let shell = c.shell_proc(&pid_file);
    let proc_state = || proc_state(&shell);
    assert!(wait_until(T, || c.job_attr(&id, "session_id").is_some()));
    let out = c.run_as_root("qsig", &["-s", "suspend", &id]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert!(wait_until(T, || proc_state() == Some('T')));

    // Its MOM restarts: the job stays stopped, and shown suspended once the MOM reported in.
    c.restart_mom_adopting("n1");
    assert!(wait_until(T, || c
        .node_state("n1")
        .is_some_and(|s| !s.contains("down"))));
    assert_eq!(c.job_state(&id).as_deref(), Some("S"));
    assert_eq!(proc_state(), Some('T'));
    // With its MOM gone, it cannot be resumed: the server says so and changes nothing.
    c.kill_mom("n1");
    assert!(wait_until(T, || c.node_state("n1").as_deref() == Some("down")));
    let out = c.run_as_root("qsig", &["-s", "resume", &id]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (224, format!("qsig: Server could not connect to MOM {id}\n"))
    );
    // Nor can a plain signal be carried: refused alike, not lost.
    let out = c.run("qsig", &["-s", "CONT", &id]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (224, format!("qsig: Server could not connect to MOM {id}\n"))
    );
    assert_eq!(c.job_state(&id).as_deref(), Some("S"));
    c.restart_mom_adopting("n1");
    // Reported in (else the SIGCONT finds no MOM to carry it, and the MOM is continued by
    // the server's resume at its Hello instead, which the log line below would not show).
    assert!(wait_until(T, || c
        .node_state("n1")
        .is_some_and(|s| !s.contains("down"))));

    // Its owner's SIGCONT continues it: no longer suspended, on the server or on the node.
    let out = c.run("qsig", &["-s", "CONT", &id]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    c.wait_state(&id, "R", T);
    assert!(wait_until(T, || matches!(proc_state(), Some('S' | 'R'))));
    assert_contains(&c.mom_log("n1"), "signalling job");
}

#[test]
fn qmsg_writes_into_a_running_jobs_output_files() {
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let marker = c.work.join("release");
    let body = format!(
        "echo before\nwhile [ ! -e {} ]; do sleep 0.05; done\necho after\n",
        marker.display()
    );
    let id = c.qsub("told.sh", &body, &[]);
    c.wait_state(&id, "R", T);
    assert!(wait_until(T, || c.job_attr(&id, "session_id").is_some()));
    // The server restarts under it: the MOM tells the new one the job's session again.
    c.kill_server();
    c.start_server();
    assert!(wait_until(T, || c.job_attr(&id, "session_id").is_some()));
    // Its owner tells it: stderr by default, stdout with -O.
    for args in [vec!["to stderr", &id], vec!["-O", "to stdout", &id]] {
        let out = c.run("qmsg", &args);
        assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    }
    // The MOM writes them into the job's spooled files, as the job runs on.
    let spool = c.mom_home("n1").join("mom_priv/jobs").join(&id);
    let spooled = |suffix: &str, line: &str| {
        c.read_opt(spool.join(format!("{id}.{suffix}")))
            .contains(line)
    };
    assert!(wait_until(T, || spooled("OU", "to stdout")
        && spooled("ER", "to stderr")));
    std::fs::write(&marker, "").unwrap();
    c.wait_state(&id, "C", T);
    let seq = Cluster::seq(&id);
    assert_eq!(
        c.read(c.work.join(format!("told.sh.o{seq}"))),
        "before\nto stdout\nafter\n"
    );
    assert_eq!(
        c.read(c.work.join(format!("told.sh.e{seq}"))),
        "to stderr\n"
    );
    // Not running any more, or unknown: Torque's words.
    let out = c.run("qmsg", &["late", &id]);
    assert_eq!(code(&out), 170, "{}", stderr(&out));
    let out = c.run("qmsg", &["lost", "999"]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            153,
            format!("qmsg: Unknown Job Id Error 999.{SERVER_NAME}\n")
        )
    );
    let out = c.run("qmsg", &["no job"]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            2,
            "usage: qmsg [-O] [-E] msg_string job_identifier...\n".into()
        )
    );
}

/// `qdel -p` (a manager's) purges as Torque's forced_jobpurge: the job is gone at once, in
/// any state, a completed one too, and a running one's slots are free without waiting for
/// its MOM; Capstan's MOM, still connected, is told to kill what ran.
#[test]
fn qdel_p_purges_a_job_at_once_in_any_state() {
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    // Deaf to SIGTERM with a minute's kill delay: an ordinary qdel would take a minute.
    let pid_file = c.work.join("deaf.pid");
    let deaf = c.qsub(
        "deaf.sh",
        &format!(
            "trap '' TERM\necho $$ > {}\nsleep 120\n",
            pid_file.display()
        ),
        &["-K", "60"],
    );
    c.wait_state(&deaf, "R", T);
    assert!(wait_until(T, || c.read_opt(&pid_file).ends_with('\n')));
    let shell: u32 = c.read(&pid_file).trim().parse().expect("pid");
    let behind = c.qsub("behind.sh", "true\n", &[]);
    let held = c.qsub("held.sh", "true\n", &["-h"]);
    let out = c.run_as_root("qdel", &["-p", &deaf, &held]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    for id in [&deaf, &held] {
        let out = c.run("qstat", &[id.as_str()]);
        assert_eq!(
            (code(&out), stderr(&out)),
            (153, format!("qstat: Unknown Job Id Error {id}\n"))
        );
    }
    // The slot was freed by the purge itself, and the MOM killed the run.
    c.wait_state(&behind, "C", T);
    assert!(
        wait_until(T, || !std::path::Path::new(&format!("/proc/{shell}"))
            .exists()),
        "the purged job's shell {shell} still runs"
    );
    assert_contains(&c.server_log(), "purging job without checking MOM");
    // A completed job goes before keep_completed; a user may not purge.
    let out = c.run("qdel", &["-p", &behind]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (159, format!("qdel: Unauthorized Request  {behind}\n"))
    );
    let out = c.run_as_root("qdel", &["-p", &behind]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(code(&c.run("qstat", &[&behind])), 153);
    // A whole array is deleted as usual (Torque's req_deletearray ignores -p), one
    // sub-job purged.
    let array = c.qsub("arr.sh", "true\n", &["-h", "-t", "1-2"]);
    let (number, server) = array.split_once("[]").expect("array id");
    let (first, second) = (
        format!("{number}[1]{server}"),
        format!("{number}[2]{server}"),
    );
    let out = c.run_as_root("qdel", &["-p", &first]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(code(&c.run("qstat", &[&first])), 153);
    let out = c.run_as_root("qdel", &["-p", &array]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(c.job_state(&second).as_deref(), Some("C"));
    // Gone for good: not back after a restart.
    c.kill_server();
    c.start_server();
    for id in [&deaf, &held, &behind] {
        assert_eq!(code(&c.run("qstat", &[id.as_str()])), 153, "{id}");
    }
}

/// qdel's request extensions as Torque's req_deletejob judges them: `-m` and `-p` are for
/// operators and managers; `-W delay` sets this delete's SIGTERM-to-SIGKILL delay.
#[test]
fn qdel_message_purge_and_delay_are_judged_as_torques() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    // Deaf to SIGTERM, with a minute's kill delay of its own: only a SIGKILL ends it.
    let ready = c.work.join("deaf.ready");
    let deaf = c.qsub(
        "deaf.sh",
        &format!("trap '' TERM\ntouch {}\nsleep 120\n", ready.display()),
        &["-K", "60"],
    );
    c.wait_state(&deaf, "R", T);
    assert!(wait_until(T, || ready.exists()));
    let out = c.run("qdel", &["-m", "maintenance", &deaf]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            159,
            format!(
                "qdel: Unauthorized Request  MSG=must have operator or manager privilege \
                 to use -m parameter {deaf}\n"
            )
        )
    );
    let out = c.run("qdel", &["-p", &deaf]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (159, format!("qdel: Unauthorized Request  {deaf}\n"))
    );
    assert_eq!(c.job_state(&deaf).as_deref(), Some("R"));
    // The owner's -W 1 overrides the job's 60 s: over within seconds, as a delete.
    let started = std::time::Instant::now();
    let out = c.run("qdel", &["-W", "1", &deaf]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    c.wait_state(&deaf, "C", T);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.job_attr(&deaf, "exit_status").as_deref(), Some("271"));
    // A manager may use -m (the delete is an ordinary one).
    let other = c.qsub("other.sh", "sleep 60\n", &[]);
    c.wait_state(&other, "R", T);
    let out = c.run_as_root("qdel", &["-m", "maintenance", &other]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    c.wait_state(&other, "C", T);
}
