//! The site's prologue and epilogue scripts (Torque reference section 8): their
//! arguments, environment and output, and what a failing or hung prologue, or a qdel
//! during one, does to the job.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

fn one_node() -> Vec<NodeSpec> {
    vec![NodeSpec::new("n1", "np=2")]
}

/// Installs `mom_priv/NAME` on n1 with `mode`, owned by whoever runs the tests (the MOM's
/// user).
fn install(c: &Cluster, name: &str, mode: u32, body: &str) -> PathBuf {
    let path = c.mom_home("n1").join("mom_priv").join(name);
    std::fs::write(&path, body).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// A directory the scripts (root's and the user's) may leave notes in.
fn notes(c: &Cluster) -> PathBuf {
    let dir = c.root.join("notes");
    std::fs::create_dir_all(&dir).expect("notes dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// A prologue body that exits with `first` the first time it runs and 0 after, counting
/// its runs in `counter`.
fn fails_once(counter: &Path, first: &str) -> String {
    format!(
        "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0)\nn=$((n+1))\necho $n > {c}\n\
         if [ $n = 1 ]; then {first}; fi\nexit 0\n",
        c = counter.display()
    )
}

#[test]
fn prologue_and_epilogue_bracket_the_job_with_torques_arguments() {
    let c = Cluster::start(&one_node());
    let notes = notes(&c);
    let mom_priv = c.mom_home("n1").join("mom_priv");
    install(
        &c,
        "prologue",
        0o500,
        &format!(
            "#!/bin/sh\necho \"prologue $#: $*\"\necho \"prologue in $(pwd) as $(id -u)\"\n\
             [ -r \"$8\" ] && echo 'prologue reads the script'\n\
             env > {}/prologue.env\necho 'prologue to stderr' >&2\n",
            notes.display()
        ),
    );
    install(
        &c,
        "prologue.user",
        0o555,
        "#!/bin/sh\necho \"prologue.user as $(id -un) in $(pwd)\"\n",
    );
    install(
        &c,
        "epilogue.user",
        0o555,
        "#!/bin/sh\necho \"epilogue.user $#: ${10}\"\n",
    );
    install(
        &c,
        "epilogue",
        0o500,
        "#!/bin/sh\necho \"epilogue $#: $*\"\n",
    );
    let id = c.qsub(
        "pelog.sh",
        "echo 'the job itself'\n",
        &[
            "-N",
            "pelog",
            "-A",
            "myacct",
            "-l",
            "nodes=1:ppn=2,walltime=00:02:00",
        ],
    );
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
    let out = c.read(c.work.join(format!("pelog.o{}", Cluster::seq(&id))));
    let lines: Vec<&str> = out.lines().collect();
    let limits = "nodes=1:ppn=2,walltime=00:02:00,neednodes=1:ppn=2";
    let user = &c.user.name;
    // argv: id, user, group, name, limits, queue, account, script.
    let prologue = lines[0].strip_prefix("prologue 8: ").expect(&out);
    let prologue_args: Vec<&str> = prologue.split(' ').collect();
    let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(c.user.gid))
        .ok()
        .flatten()
        .expect("the test user's group")
        .name;
    assert_eq!(
        prologue_args[..7],
        [
            id.as_str(),
            user,
            &group,
            "pelog",
            limits,
            "batch",
            "myacct"
        ]
    );
    assert!(
        Path::new(prologue_args[7]).starts_with(&mom_priv),
        "script path {}",
        prologue_args[7]
    );
    // As the MOM's user (root on a real node).
    let mom_uid = nix::unistd::geteuid();
    assert_eq!(
        lines[1],
        format!("prologue in {} as {mom_uid}", mom_priv.display())
    );
    assert_eq!(lines[2], "prologue reads the script");
    assert_eq!(
        lines[3],
        format!("prologue.user as {user} in {}", c.user.home.display())
    );
    let job_line = lines
        .iter()
        .position(|l| *l == "the job itself")
        .expect("job output");
    assert!(job_line > 3, "{out}");
    // After the job: the user's epilogue (told the exit status), then root's, with 11 args:
    // id, user, group, name, session, limits, used, queue, account, exit status, script.
    assert_eq!(lines[job_line + 1], "epilogue.user 11: 0");
    let epilogue = lines[job_line + 2]
        .strip_prefix("epilogue 11: ")
        .expect(&out);
    let epilogue_args: Vec<&str> = epilogue.split(' ').collect();
    let session = c.job_attr(&id, "session_id").expect("session_id");
    assert_eq!(epilogue_args[4], session);
    assert_eq!(epilogue_args[5], limits);
    assert!(epilogue_args[6].starts_with("cput=") && epilogue_args[6].ends_with(",energy_used=0"));
    assert_eq!(epilogue_args[7..10], ["batch", "myacct", "0"]);
    assert_eq!(lines.len(), job_line + 3, "{out}");
    let err = c.read(c.work.join(format!("pelog.e{}", Cluster::seq(&id))));
    assert_eq!(err, "prologue to stderr\n");
    // Torque's small environment, nothing of the job's own.
    let env = c.read(notes.join("prologue.env"));
    let pbs: Vec<&str> = env.lines().filter(|l| l.starts_with("PBS_")).collect();
    let mut pbs = pbs;
    pbs.sort();
    assert_eq!(
        pbs,
        [
            "PBS_MSHOST=n1".to_string(),
            format!("PBS_NODEFILE={}", c.mom_home("n1").join("aux").display()) + "//" + &id,
            "PBS_NODENUM=0".to_string(),
            "PBS_NP=2".to_string(),
            "PBS_NUM_NODES=1".to_string(),
            "PBS_NUM_PPN=2".to_string(),
            format!("PBS_O_WORKDIR={}", c.work.display()),
            "PBS_RESOURCE_NODES=1:ppn=2".to_string(),
        ]
    );
    assert!(env.lines().any(|l| l == "PATH=/bin:/usr/bin"), "{env}");
    assert!(
        !env.contains("PBS_JOBID") && !env.contains("HOME="),
        "{env}"
    );
}

#[test]
fn a_prologue_exiting_1_aborts_the_job_with_minus_2() {
    let c = Cluster::start(&one_node());
    let notes = notes(&c);
    install(
        &c,
        "prologue",
        0o500,
        "#!/bin/sh\necho 'no scratch space here'\nexit 1\n",
    );
    install(
        &c,
        "epilogue",
        0o500,
        "#!/bin/sh\necho \"epilogue after exit status ${10}\"\n",
    );
    let marker = notes.join("ran");
    let id = c.qsub("aborted.sh", &format!("touch {}\n", marker.display()), &[]);
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("-2"));
    // No session ever started: Torque shows 0.
    assert_eq!(c.job_attr(&id, "session_id").as_deref(), Some("0"));
    assert!(!marker.exists(), "the script ran");
    // The prologue's output is delivered, with the epilogue Torque still runs.
    assert_eq!(
        c.read(c.default_stdout("aborted.sh", &id)),
        "no scratch space here\nepilogue after exit status -2\n"
    );
    assert_contains(&c.mom_log("n1"), "prolog/epilog failed, file: ");
}

#[test]
fn a_prologue_failing_otherwise_requeues_the_job_which_runs_on_the_next_try() {
    let c = Cluster::start(&one_node());
    let notes = notes(&c);
    let counter = notes.join("count");
    install(&c, "prologue", 0o500, &fails_once(&counter, "exit 2"));
    let (id, out) = c.run_job("retried.sh", "echo 'ran at last'\n", &[]);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
    assert_eq!(out, "ran at last\n");
    assert_eq!(c.read(&counter).trim(), "2");
    assert_eq!(c.job_attr(&id, "start_count").as_deref(), Some("2"));
}

#[test]
fn a_prologue_past_prologalarm_is_killed_and_the_job_requeued() {
    let c = Cluster::start(&one_node());
    let notes = notes(&c);
    let counter = notes.join("count");
    let pid_file = notes.join("sleeper");
    install(
        &c,
        "prologue",
        0o500,
        &fails_once(
            &counter,
            &format!("sleep 120 & echo $! > {}; wait", pid_file.display()),
        ),
    );
    let loaded = c.reconfigure_mom("n1", "$prologalarm 1\n");
    assert_contains(&loaded, "prolog_alarm_secs: 1,");
    let started = Instant::now();
    let (id, out) = c.run_job("slow.sh", "echo done\n", &[]);
    assert_eq!(out, "done\n");
    assert_eq!(c.read(&counter).trim(), "2");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
    // The hung prologue's whole session went, its background sleep included.
    let sleeper = c.read(&pid_file);
    assert!(
        wait_until(T, || !Path::new(&format!("/proc/{}", sleeper.trim()))
            .exists()),
        "the prologue's sleep {} still runs",
        sleeper.trim()
    );
    assert_contains(&c.mom_log("n1"), "$prologalarm reached");
}

#[test]
fn qdel_during_the_prologue_kills_it_and_the_script_never_runs() {
    let c = Cluster::start(&one_node());
    let notes = notes(&c);
    let pid_file = notes.join("prologue.pid");
    install(
        &c,
        "prologue",
        0o500,
        &format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 120\n",
            pid_file.display()
        ),
    );
    // Never reached: the qdel stops the prologues as well as the job.
    let user_ran = notes.join("user-ran");
    install(
        &c,
        "prologue.user",
        0o555,
        &format!("#!/bin/sh\ntouch {}\n", user_ran.display()),
    );
    let marker = notes.join("ran");
    let id = c.qsub("deleted.sh", &format!("touch {}\n", marker.display()), &[]);
    assert!(
        wait_until(T, || pid_file.exists() && !c.read(&pid_file).is_empty()),
        "no prologue"
    );
    let prologue = c.read(&pid_file).trim().to_string();
    let out = c.run("qdel", &[&id]);
    assert!(out.status.success(), "qdel: {}", stderr(&out));
    c.wait_state(&id, "C", Duration::from_secs(10));
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("271"));
    assert!(!marker.exists(), "the script ran");
    assert!(!user_ran.exists(), "prologue.user ran after the qdel");
    assert!(
        wait_until(T, || !Path::new(&format!("/proc/{prologue}")).exists()),
        "the prologue {prologue} still runs\n{}",
        tail(&c.mom_log("n1"), 30)
    );
}

#[test]
fn a_prologue_others_may_change_is_never_run_and_the_job_is_held_after_the_retries() {
    let c = Cluster::start(&one_node());
    let notes = notes(&c);
    let ran = notes.join("ran");
    install(
        &c,
        "prologue",
        0o570,
        &format!("#!/bin/sh\ntouch {}\n", ran.display()),
    );
    let id = c.qsub("guarded.sh", "echo never\n", &[]);
    // Each start fails as -1 ("permission Error", JOB_EXEC_RETRY_PROLOGUE), until the
    // server holds the job rather than start it again.
    let held = wait_until(T, || c.job_attr(&id, "Hold_Types").as_deref() == Some("s"));
    assert!(
        held,
        "not held: {:?}\n{}",
        c.job_attr(&id, "comment"),
        tail(&c.server_log(), 30)
    );
    let comment = c.job_attr(&id, "comment").unwrap_or_default();
    assert_contains(&comment, "permission Error");
    assert!(!ran.exists(), "the prologue ran");
}

#[test]
fn a_jobs_own_prologue_and_epilogue_run_as_its_user_around_the_site_ones() {
    let c = Cluster::start(&one_node());
    install(&c, "prologue", 0o500, "#!/bin/sh\necho 'site prologue'\n");
    install(&c, "epilogue", 0o500, "#!/bin/sh\necho 'site epilogue'\n");
    // The job's scripts, its user's, given relative to the submission directory.
    for (name, word) in [("pre.sh", "job prologue"), ("post.sh", "job epilogue")] {
        let path = c.script(
            name,
            &format!("#!/bin/sh\necho \"{word} as $(id -un): $1\"\n"),
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    }
    let (id, out) = c.run_job(
        "own.sh",
        "echo 'the job itself'\n",
        &["-l", "prologue=pre.sh,epilogue=post.sh"],
    );
    let user = &c.user.name;
    assert_eq!(
        out,
        format!(
            "site prologue\njob prologue as {user}: {id}\nthe job itself\n\
             job epilogue as {user}: {id}\nsite epilogue\n"
        )
    );
}

#[test]
fn the_jobs_walltime_starts_after_its_prologue() {
    let c = Cluster::start(&one_node());
    install(&c, "prologue", 0o500, "#!/bin/sh\nsleep 3\n");
    // 3 s of prologue and 2 s of job: over the 3 s limit only if the prologue counted.
    let (id, out) = c.run_job(
        "timed.sh",
        "sleep 2\necho finished\n",
        &["-l", "walltime=3"],
    );
    assert_eq!(out, "finished\n");
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
}

#[test]
fn a_mom_restarted_during_the_epilogue_does_not_run_it_again() {
    let mut c = Cluster::start(&one_node());
    let notes = notes(&c);
    let log = notes.join("epilogue.log");
    install(
        &c,
        "epilogue",
        0o500,
        &format!(
            "#!/bin/sh\necho \"$1\" >> {}\nsleep 3\necho 'epilogue done'\n",
            log.display()
        ),
    );
    let id = c.qsub("ended.sh", "echo 'the job'\n", &[]);
    assert!(wait_until(T, || log.exists()), "the epilogue did not start");
    c.kill_mom("n1");
    c.start_mom("n1");
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("0"));
    assert_eq!(c.read(&log), format!("{id}\n"), "the epilogue ran again");
    assert_contains(&c.read(c.default_stdout("ended.sh", &id)), "the job\n");
}

#[test]
fn a_mom_restarted_during_a_prologue_kills_it_before_the_job_is_tried_again() {
    let mut c = Cluster::start(&one_node());
    let notes = notes(&c);
    let pids = notes.join("prologue.pids");
    // Hangs the first time only; records each run's pid.
    install(
        &c,
        "prologue",
        0o500,
        &format!(
            "#!/bin/sh\necho $$ >> {p}\n[ $(wc -l < {p}) = 1 ] && exec sleep 120\nexit 0\n",
            p = pids.display()
        ),
    );
    let id = c.qsub("restarted.sh", "echo 'ran once'\n", &[]);
    // Killed once its MOM has the prologue on record (a MOM killed in the instant between
    // starting the script and saving its session cannot know it).
    assert!(
        wait_until(T, || {
            c.mom_log("n1").contains("prologue running (recorded)")
                && !c.read_opt(&pids).trim().is_empty()
        }),
        "no prologue"
    );
    let first = c.read(&pids).trim().to_string();
    c.kill_mom("n1");
    c.start_mom("n1");
    c.wait_state(&id, "C", T);
    assert_eq!(c.read(c.default_stdout("restarted.sh", &id)), "ran once\n");
    assert!(
        wait_until(T, || !Path::new(&format!("/proc/{first}")).exists()),
        "the first prologue {first} still runs beside the retry"
    );
}

#[test]
fn a_mom_restarted_during_a_failed_prologues_epilogue_still_ends_the_job_minus_2() {
    let mut c = Cluster::start(&one_node());
    let notes = notes(&c);
    let log = notes.join("epilogue.log");
    install(&c, "prologue", 0o500, "#!/bin/sh\nexit 1\n");
    install(
        &c,
        "epilogue",
        0o500,
        &format!(
            "#!/bin/sh\necho \"${{10}}\" >> {}\nsleep 3\n",
            log.display()
        ),
    );
    let marker = notes.join("ran");
    let id = c.qsub("never.sh", &format!("touch {}\n", marker.display()), &[]);
    assert!(wait_until(T, || log.exists()), "the epilogue did not start");
    c.kill_mom("n1");
    c.start_mom("n1");
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("-2"));
    assert!(!marker.exists(), "the script ran");
    assert_eq!(c.read(&log), "-2\n", "the epilogue ran again");
}

#[test]
fn the_tmpdir_of_a_job_whose_prologue_failed_is_removed_too() {
    let c = Cluster::start(&one_node());
    let scratch = c.root.join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let loaded = c.reconfigure_mom("n1", &format!("$tmpdir {}\n", scratch.display()));
    assert_contains(&loaded, "tmpdir: Some(");
    install(&c, "prologue", 0o500, "#!/bin/sh\nexit 1\n");
    let id = c.qsub("aborted.sh", "true\n", &[]);
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("-2"));
    assert!(
        wait_until(T, || std::fs::read_dir(&scratch)
            .is_ok_and(|mut d| d.next().is_none())),
        "left in {}: {:?}",
        scratch.display(),
        std::fs::read_dir(&scratch).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
}
