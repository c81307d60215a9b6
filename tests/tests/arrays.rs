//! Job arrays (`qsub -t`): one submission, one job number, a sub-job per index, each run as
//! a job of its own; `qstat` shows the array as one `NN[]` line unless `-t` expands it; a
//! slot limit (`%N`) bounds how many sub-jobs run at once; `NN[]` names every sub-job (or
//! `-t`'s) to qdel, qhold and qrls.

use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

/// `12[].srv` → (`12`, `srv`).
fn number_and_server(array_id: &str) -> (String, String) {
    let (local, server) = array_id.split_once('.').expect("qualified id");
    let number = local.strip_suffix("[]").expect("an array id");
    (number.to_string(), server.to_string())
}

#[test]
fn an_array_runs_each_index_as_a_job_of_its_own() {
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=2"), NodeSpec::new("n2", "np=2")]);
    let body = "echo \"$PBS_ARRAYID $PBS_JOBID $PBS_JOBNAME $(wc -l < $PBS_NODEFILE)\"\n";
    let array = c.qsub("arr.sh", body, &["-t", "1-3,7"]);
    let (number, server) = number_and_server(&array);
    let sub = |index: u32| format!("{number}[{index}].{server}");
    c.wait_state(&array, "C", T);

    // Each index ran once, as `NUMBER[INDEX]`, named `NAME-INDEX`, its output in
    // `NAME.oNUMBER-INDEX`.
    for index in [1, 2, 3, 7] {
        let out = c.read(c.work.join(format!("arr.sh.o{number}-{index}")));
        assert_eq!(out, format!("{index} {} arr.sh-{index} 1\n", sub(index)));
        assert_eq!(c.job_attr(&sub(index), "exit_status").as_deref(), Some("0"));
        assert_eq!(
            c.job_attr(&sub(index), "job_array_id"),
            Some(index.to_string())
        );
        assert_eq!(c.job_attr(&sub(index), "job_array_request"), None);
    }
    assert!(!c.work.join(format!("arr.sh.o{number}-4")).exists());

    // The summary row: the array's name, request and paths, no run of its own.
    assert_eq!(
        c.job_attr(&array, "job_array_request").as_deref(),
        Some("1-3,7")
    );
    assert_eq!(c.job_attr(&array, "job_array_id"), None);
    assert_eq!(c.job_attr(&array, "Job_Name").as_deref(), Some("arr.sh"));
    let output = c.job_attr(&array, "Output_Path").unwrap_or_default();
    assert!(output.ends_with(&format!("/arr.sh.o{number}")), "{output}");
    assert_eq!(c.job_attr(&array, "exec_host"), None);
    let variables = c.job_attr(&array, "Variable_List").unwrap_or_default();
    assert!(!variables.contains("PBS_ARRAYID"), "{variables}");
    assert!(c
        .job_attr(&sub(7), "Variable_List")
        .unwrap_or_default()
        .ends_with(",PBS_ARRAYID=7"));

    // One line without -t, the sub-jobs (and not the summary) with it; qselect lists
    // sub-jobs.
    let plain = stdout(&c.run("qstat", &[]));
    let ids = |text: &str| -> Vec<String> {
        text.lines()
            .skip(2)
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(ids(&plain), std::slice::from_ref(&array));
    assert!(
        plain.lines().nth(2).unwrap_or("").contains(" arr.sh "),
        "{plain}"
    );
    let expanded: Vec<String> = [1, 2, 3, 7].map(sub).to_vec();
    assert_eq!(ids(&stdout(&c.run("qstat", &["-t"]))), expanded);
    assert_eq!(ids(&stdout(&c.run("qstat", &["-t", &array]))), expanded);
    assert_eq!(ids(&stdout(&c.run("qstat", &[&sub(2)]))), [sub(2)]);
    let selected: Vec<String> = stdout(&c.run("qselect", &[]))
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(selected, expanded);

    // The array used one job number; the next job takes the one after it.
    let next = c.qsub("next.sh", "true\n", &[]);
    let expected_next: u64 = number.parse::<u64>().expect("number") + 1;
    assert_eq!(Cluster::seq(&next), expected_next.to_string());

    // What is not there is unknown, in Torque's words.
    let missing = sub(4);
    let out = c.run("qstat", &[&missing]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (153, format!("qstat: Unknown Job Id Error {missing}\n"))
    );

    // Malformed requests are refused as Torque's server refuses them, and take nothing.
    for (request, message) in [
        ("3-1", "qsub: submit error (Bad Job Array Request)\n"),
        ("1-x", "qsub: submit error (Bad Job Array Request)\n"),
        ("100000", "qsub: submit error (Bad Job Array Request)\n"),
        (
            "0-10000",
            "qsub: submit error (Bad Job Array Request MSG=Requested array size too large, limit is 10000)\n",
        ),
    ] {
        let out = c.submit_as(&c.user, &c.work, "bad.sh", "true\n", &["-t", request]);
        assert_eq!((code(&out), stderr(&out).as_str()), (235, message), "-t {request}");
    }

    // The server restarts with the array as it was.
    c.kill_server();
    c.start_server();
    assert_eq!(ids(&stdout(&c.run("qstat", &["-t", &array]))), expanded);
    assert_eq!(c.job_state(&array).as_deref(), Some("C"));
    let after = c.qsub("after.sh", "true\n", &[]);
    assert_eq!(Cluster::seq(&after), (expected_next + 1).to_string());
}

#[test]
fn a_slot_limit_bounds_how_many_sub_jobs_run_at_once() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=4")]);
    let marker = c.work.join("go");
    let wait_for_marker = format!("while [ ! -e {} ]; do sleep 0.05; done\n", marker.display());
    let array = c.qsub("lim.sh", &wait_for_marker, &["-t", "1-4%2"]);
    let (number, server) = number_and_server(&array);
    let sub = |index: u32| format!("{number}[{index}].{server}");
    c.wait_state(&sub(1), "R", T);
    c.wait_state(&sub(2), "R", T);
    assert_eq!(c.job_state(&array).as_deref(), Some("R"));
    // The others wait for their siblings, though the node has room: a job of no array runs.
    for index in [3, 4] {
        assert_eq!(
            c.wait_held_back(&sub(index)),
            "Not Running: array slot limit is 2 and 2 of its jobs are running"
        );
    }
    let other = c.qsub("other.sh", "true\n", &[]);
    c.wait_state(&other, "C", T);
    // Jobs that wait on the whole array, which will succeed: `*array` conditions are met
    // or fail once every sub-job has ended; a plain kind cannot name an array.
    let after_ok = c.qsub(
        "ok.sh",
        "true\n",
        &["-W", &format!("depend=afterokarray:{array}")],
    );
    let after_not_ok = c.qsub(
        "notok.sh",
        "true\n",
        &["-W", &format!("depend=afternotokarray:{number}[]")],
    );
    assert_eq!(c.job_state(&after_ok).as_deref(), Some("H"));
    assert_eq!(
        c.job_attr(&after_ok, "depend"),
        Some(format!("afterokarray:{array}"))
    );
    let depend = c.job_attr(&array, "depend").unwrap_or_default();
    assert!(
        depend.contains(&format!("beforeokarray:{after_ok}")),
        "{depend}"
    );
    let out = c.submit_as(
        &c.user,
        &c.work,
        "bad.sh",
        "true\n",
        &["-W", &format!("depend=afterok:{array}")],
    );
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            208,
            "qsub: submit error (Invalid Job Dependency)\n".to_string()
        )
    );
    // Even qrun keeps the limit (Torque's words).
    if is_root() {
        let out = c.run_as_root("qrun", &[&sub(3)]);
        assert_ne!(code(&out), 0);
        assert!(
            stderr(&out).contains(
                "Cannot run job. Array slot limit is 2 and there are already 2 jobs running"
            ),
            "{}",
            stderr(&out)
        );
        let out = c.run_as_root("qrun", &[&array]);
        assert_ne!(code(&out), 0, "qrun of a whole array must fail");
        assert!(
            stderr(&out).contains("cannot run a job array"),
            "{}",
            stderr(&out)
        );
    }
    std::fs::write(&marker, "").expect("marker");
    c.wait_state(&array, "C", T);
    for index in 1..=4 {
        assert_eq!(c.job_attr(&sub(index), "exit_status").as_deref(), Some("0"));
    }
    c.wait_state(&after_ok, "C", T);
    assert_eq!(c.job_attr(&after_ok, "exit_status").as_deref(), Some("0"));
    c.wait_state(&after_not_ok, "C", T);
    assert_eq!(
        c.job_attr(&after_not_ok, "comment"),
        Some(format!(
            "Job deleted as result of dependency on job {array}"
        ))
    );
    assert_eq!(
        c.job_attr(&after_not_ok, "exit_status").as_deref(),
        Some("271")
    );
}

#[test]
fn a_whole_array_is_held_released_and_deleted_by_its_id() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    // Held at submission: the sub-jobs show H, the array Q (Torque's summary).
    let array = c.qsub("h.sh", "sleep 60\n", &["-h", "-t", "0-2"]);
    let (number, server) = number_and_server(&array);
    let sub = |index: u32| format!("{number}[{index}].{server}");
    for index in 0..=2 {
        assert_eq!(c.job_state(&sub(index)).as_deref(), Some("H"));
    }
    assert_eq!(c.job_state(&array).as_deref(), Some("Q"));

    // One sub-job is held again on its own; the array's release frees the others, of which
    // the node runs two.
    let out = c.run("qrls", &[&array]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    c.wait_state(&sub(0), "R", T);
    c.wait_state(&sub(1), "R", T);
    c.wait_state(&sub(2), "Q", T);
    let out = c.run("qhold", &[&sub(2)]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(c.job_state(&sub(2)).as_deref(), Some("H"));

    // qalter of the array changes the sub-jobs that take the change: a user may not
    // change a running job's resources, so only the held one gets the new walltime.
    let walltime = |index| c.job_attr(&sub(index), "Resource_List.walltime");
    let before = walltime(0);
    let out = c.run("qalter", &["-l", "walltime=00:20:00", &array]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(walltime(2).as_deref(), Some("00:20:00"));
    assert_eq!((walltime(0), walltime(1)), (before.clone(), before));
    // Every one refusing is the array's answer (a value no sub-job can take).
    let out = c.run("qalter", &["-l", "walltime=soon", &array]);
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(walltime(2).as_deref(), Some("00:20:00"));

    // Commands that take one job refuse a whole array and say why; unknown arrays and
    // indices are unknown jobs.
    let out = c.run("qorder", &[&array, &sub(2)]);
    assert_ne!(code(&out), 0);
    assert!(
        stderr(&out).contains("not a whole job array"),
        "{}",
        stderr(&out)
    );
    let out = c.run("qdel", &["99[]"]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (153, format!("qdel: nonexistent job id: 99[].{server}\n"))
    );
    let out = c.run("qdel", &[&format!("{number}[9]")]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (153, format!("qdel: nonexistent job id: {}\n", sub(9)))
    );

    // qdel of the array ends every sub-job, each as qdel ends a job: the running ones
    // killed (271), the held one completed without running.
    let out = c.run("qdel", &[&array]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    c.wait_state(&array, "C", T);
    for index in 0..=1 {
        assert_eq!(
            c.job_attr(&sub(index), "exit_status").as_deref(),
            Some("271")
        );
    }
    assert_eq!(c.job_state(&sub(2)).as_deref(), Some("C"));
    assert_eq!(c.job_attr(&sub(2), "start_time"), None);
    // Again, with every sub-job complete: nothing to do, and no error (Torque's).
    let out = c.run("qdel", &[&array]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    // `-t` picks indices: those the array lacks pass in silence, a malformed range is
    // refused (Torque's words) and changes nothing.
    let picked = c.qsub("p.sh", "true\n", &["-h", "-t", "1-3"]);
    let (picked_number, _) = number_and_server(&picked);
    let pick = |index: u32| format!("{picked_number}[{index}].{server}");
    let out = c.run("qrls", &["-t", "2,5-9", &picked]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    c.wait_state(&pick(2), "C", T);
    let out = c.run("qdel", &["-t", "1-x", &picked]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            156,
            format!("qdel: Invalid request MSG=Error in specified array range {picked}\n")
        )
    );
    let out = c.run("qdel", &["-t", "1", &picked]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(c.job_state(&pick(1)).as_deref(), Some("C"));
    assert_eq!(c.job_state(&pick(3)).as_deref(), Some("H"));
    // A directory given to qalter names the file as submission does: NAME.oSEQ-INDEX.
    let out = c.run("qalter", &["-o", "outdir/", &pick(3)]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    let output = c.job_attr(&pick(3), "Output_Path").unwrap_or_default();
    assert!(
        output.ends_with(&format!("/outdir/p.sh.o{picked_number}-3")),
        "{output}"
    );

    // Another user may not touch it.
    if let Some(other) = other_user() {
        let held = c.qsub("o.sh", "true\n", &["-h", "-t", "1-2"]);
        let out = c.run_as(&other, "qrls", &[&held]);
        assert_eq!(code(&out), 159, "{}", stderr(&out));
        // Also when -t picks no sub-job: the array's owner is judged first.
        let out = c.run_as(&other, "qdel", &["-t", "99", &held]);
        assert_eq!(code(&out), 159, "{}", stderr(&out));
        // (The summary shows Q held or not: its sub-jobs say whether the qrls went through.)
        let (number, server) = number_and_server(&held);
        for index in [1, 2] {
            let sub = format!("{number}[{index}].{server}");
            assert_eq!(c.job_state(&sub).as_deref(), Some("H"), "{sub}");
        }
    }
}

/// An `afterokarray` condition counts every sub-job, also one that failed long before the
/// last ended: while a condition waits on an array, its ended sub-jobs outlive
/// `keep_completed`. And a condition may not close a circle through an array.
#[test]
fn an_array_condition_counts_sub_jobs_that_ended_long_before() {
    let c = Cluster::start_with(&[NodeSpec::new("n1", "np=2")], &["--keep-completed", "3"]);
    let marker = c.work.join("go");
    let body = format!(
        "[ \"$PBS_ARRAYID\" = 1 ] && exit 1\nwhile [ ! -e {} ]; do sleep 0.05; done\n",
        marker.display()
    );
    let array = c.qsub("g.sh", &body, &["-t", "1-2"]);
    let (number, server) = number_and_server(&array);
    let failed = format!("{number}[1].{server}");
    let dependent = c.qsub(
        "d.sh",
        "true\n",
        &["-W", &format!("depend=afterokarray:{array}")],
    );
    c.wait_state(&failed, "C", T);

    // A sub-job may not wait on its own array (held, so only the circle can refuse it).
    let held = c.qsub("h.sh", "true\n", &["-h", "-t", "1-2"]);
    let held_sub = format!("{}[1].{server}", number_and_server(&held).0);
    let out = c.run(
        "qalter",
        &["-W", &format!("depend=afterokarray:{held}"), &held_sub],
    );
    assert_eq!(
        (code(&out), stderr(&out)),
        (208, format!("qalter: Invalid Job Dependency {held_sub}\n"))
    );
    assert_eq!(c.job_attr(&held_sub, "depend"), None);

    // A job that ended after the failed sub-job is purged; the sub-job is kept.
    let witness = c.qsub("w.sh", "true\n", &[]);
    c.wait_state(&witness, "C", T);
    assert!(
        wait_until(T, || c.job_state(&witness).is_none()),
        "the witness was never purged"
    );
    assert_eq!(c.job_state(&failed).as_deref(), Some("C"));
    // Nor does a manager's qdel -p forget it while the condition waits (the array would
    // then look all successful).
    let out = c.run_as_root("qdel", &["-p", &failed]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert_eq!(c.job_state(&failed).as_deref(), Some("C"));

    std::fs::write(&marker, "").expect("marker");
    c.wait_state(&dependent, "C", T);
    assert_eq!(
        c.job_attr(&dependent, "exit_status").as_deref(),
        Some("271")
    );
}
