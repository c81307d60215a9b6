//! qstat and pbsnodes output on a live cluster, byte for byte where Torque is fixed.

use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn qstat_formats() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    let done = c.qsub("first.sh", "true\n", &[]);
    c.wait_state(&done, "C", T);
    let held = c.qsub(
        "a_rather_long_job_name.sh",
        "true\n",
        &["-h", "-l", "mem=100mb,walltime=00:30:00"],
    );
    let user = &c.user.name;

    let out = stdout(&c.run("qstat", &[]));
    let expected = format!(
        "Job ID                    Name             User            Time Use S Queue\n\
         ------------------------- ---------------- --------------- -------- - -----\n\
         {:<26} {:<16} {:<15} {:>8} {} {:<15}\n\
         {:<26} {:<16} {:<15} {:>8} {} {:<15}\n",
        done,
        "first.sh",
        user,
        "00:00:00",
        "C",
        "batch",
        held,
        "...g_job_name.sh",
        user,
        "0",
        "H",
        "batch"
    );
    assert_eq!(out, expected);

    let out = stdout(&c.run("qstat", &["-a", &held]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "");
    assert_eq!(lines[1], format!("{SERVER_NAME}: "));
    assert_eq!(
        lines[2],
        "                                                                                  Req'd       Req'd       Elap"
    );
    assert_eq!(
        lines[3],
        "Job ID                  Username    Queue    Jobname          SessID  NDS   TSK   Memory      Time    S   Time"
    );
    assert_eq!(
        lines[5],
        format!(
            "{:<23} {:<11.11} {:<8} {:<16} {:>6} {:>5} {:>6} {:>9} {:>9} {} {:>9}",
            held,
            user,
            "batch",
            "a_rather_long_jo",
            " -- ",
            "1",
            "1",
            "100mb",
            "00:30:00",
            "H",
            " -- "
        )
    );

    let full = stdout(&c.run("qstat", &["-f", &held]));
    assert!(
        full.starts_with(&format!(
            "Job Id: {held}\n    Job_Name = a_rather_long_job_name.sh\n    Job_Owner = {user}@"
        )),
        "{full}"
    );
    assert_contains(&full, "    job_state = H\n");
    assert_contains(&full, "    Resource_List.mem = 100mb\n");
    assert_contains(&full, "    Resource_List.walltime = 00:30:00\n");
    assert_contains(&full, "    Hold_Types = u\n");
    assert!(full.ends_with("\n\n"));
    for line in full.lines() {
        assert!(line.len() <= 80, "unwrapped line in qstat -f: {line:?}");
    }

    let xml = stdout(&c.run("qstat", &["-x", &held]));
    assert!(
        xml.starts_with("<?xml version=\"1.0\"?>\n<Data><Job><Job_Id>"),
        "{xml}"
    );
    assert!(xml.ends_with("</Job></Data>\n"), "{xml}");
    assert_contains(&xml, "<Resource_List><mem>100mb</mem>");

    let q = stdout(&c.run("qstat", &["-Q"]));
    assert_eq!(
        q,
        "Queue              Max    Tot   Ena   Str   Que   Run   Hld   Wat   Trn   Ext T   Cpt\n\
         ----------------   ---   ----    --    --   ---   ---   ---   ---   ---   --- -   ---\n\
         batch                0      2   yes   yes     0     0     1     0     0     0 E     1\n"
    );
    let b = stdout(&c.run("qstat", &["-B"]));
    assert_eq!(
        b,
        format!(
            "Server             Max   Tot   Que   Run   Hld   Wat   Trn   Ext   Com Status    \n\
             ----------------   ---   ---   ---   ---   ---   ---   ---   ---   --- ----------\n\
             {:<16}     0     2     0     0     1     0     0     0     1 Active    \n",
            SERVER_NAME
        )
    );

    // A running job: what only running jobs show.
    let running = c.qsub(
        "run.sh",
        "sleep 30\n",
        &["-l", "mem=100mb,walltime=00:10:00"],
    );
    c.wait_state(&running, "R", T);
    let xml = stdout(&c.run("qstat", &["-x", &running]));
    assert_contains(&xml, "<Walltime><Remaining>");
    let full = stdout(&c.run("qstat", &["-f", &running]));
    assert_contains(&full, "    Walltime.Remaining = ");
    let queues = stdout(&c.run("qstat", &["-Q", "-f"]));
    assert_contains(
        &queues,
        "    resources_assigned.nodect = 1\n    resources_assigned.mem = 104857600b\n",
    );
    let out = stdout(&c.run("qstat", &["-R", &running]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[3],
        "Job ID                  Username    Queue    NDS   TSK    Memory    Time      S Time       BIG  FAST   PFS"
    );
    assert!(
        lines[5].starts_with(&format!(
            "{:<23} {:<11.11} {:<8} {:>5} {:>6} {:>9} {:>9} R ",
            running, user, "batch", "1", "1", "100mb", "00:10:00"
        )),
        "{out}"
    );
    assert!(lines[5].ends_with("   --    --    -- "), "{out}");
    assert!(c.run("qdel", &[&running]).status.success());

    // A queue with no resource defaults: a bare job asked for no nodes, and Torque shows no
    // node count (NDS and TSK `--`, reference 3.2's 13.vm).
    for command in [
        "create queue dq",
        "set queue dq enabled = true, started = true",
    ] {
        let out = c.run_as_root("qmgr", &["-c", command]);
        assert!(out.status.success(), "{command}: {}", stderr(&out));
    }
    let bare = c.qsub("bare.sh", "true\n", &["-h", "-q", "dq"]);
    let out = stdout(&c.run("qstat", &["-a", &bare]));
    let row: Vec<&str> = out.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(&row[4..7], ["--", "--", "--"], "{out}");
    assert_eq!(c.job_attr(&bare, "Resource_List.nodect"), None);
    assert!(c.run("qdel", &[&bare]).status.success());
}

#[test]
fn qstat_with_many_jobs_stays_complete() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    c.script("h.sh", "true\n");
    for _ in 0..50 {
        assert!(c.run("qsub", &["-h", "h.sh"]).status.success());
    }
    let out = stdout(&c.run("qstat", &[]));
    assert_eq!(out.lines().count(), 52);
    let out = c.run("qdel", &["all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stdout(&c.run("qstat", &["-i"]));
    assert_eq!(out, "");
}

/// `qselect` prints the ids of the jobs matching every criterion, one per line, in the
/// server's order; bad criteria get Torque's message and usage, and change nothing.
#[test]
fn qselect_prints_the_matching_job_ids() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    let done = c.qsub("done.sh", "true\n", &["-N", "done"]);
    c.wait_state(&done, "C", T);
    let alpha = c.qsub("a.sh", "true\n", &["-h", "-N", "alpha", "-p", "5"]);
    let beta = c.qsub(
        "b.sh",
        "true\n",
        &["-h", "-N", "beta", "-l", "walltime=02:00:00", "-r", "n"],
    );
    let user = c.user.name.clone();
    let select = |args: &[&str]| {
        let out = c.run("qselect", args);
        assert_eq!(code(&out), 0, "qselect {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let ids = |list: &[&String]| list.iter().map(|id| format!("{id}\n")).collect::<String>();
    assert_eq!(select(&[]), ids(&[&done, &alpha, &beta]));
    assert_eq!(select(&["-s", "H"]), ids(&[&alpha, &beta]));
    assert_eq!(select(&["-s", ".ne.C", "-N", "beta"]), ids(&[&beta]));
    assert_eq!(select(&["-p", ".gt.0"]), ids(&[&alpha]));
    assert_eq!(select(&["-h", "u"]), ids(&[&alpha, &beta]));
    assert_eq!(select(&["-l", "walltime.gt.01:00:00"]), ids(&[&beta]));
    assert_eq!(select(&["-r", "n"]), ids(&[&beta]));
    assert_eq!(
        select(&["-u", &user, "-q", "batch", "-s", "C"]),
        ids(&[&done])
    );
    assert_eq!(select(&["-u", "nobody"]), "");
    // The idiom it exists for: act on the selected jobs.
    let out = c.run("qrls", &[&alpha, &beta]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    c.wait_state(&beta, "C", T);
    assert_eq!(select(&["-s", "H"]), "");

    let out = c.run("qselect", &["-s", "X"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with("qselect: illegal -s value\nusage: qselect "),
        "{}",
        stderr(&out)
    );
    let out = c.run("qselect", &["-q", "nosuch"]);
    assert_eq!(stderr(&out), "qselect: Unknown queue\n");
    assert_eq!(code(&out), 172);
    // What Torque's server refuses: an unknown resource, a value its kind does not take.
    let out = c.run("qselect", &["-l", "nosuch.lt.1"]);
    assert_eq!(
        (stderr(&out), code(&out)),
        ("qselect: Unknown resource type \n".into(), 189)
    );
    let out = c.run("qselect", &["-l", "walltime.gt.soon"]);
    assert_eq!(
        (stderr(&out), code(&out)),
        (
            "qselect: Illegal attribute or resource value for\n".into(),
            168
        )
    );
}
