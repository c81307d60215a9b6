//! Administration and authorization: qmgr, managers/operators, `query_other_jobs`, queue
//! ACLs, node restrictions, qalter, and `scheduling`.
//!
//! Most tests need two real users and root (the default manager), so they skip with a
//! message when not run as root.

use std::time::Duration;

use std::process::Output;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

/// Needs root and the second user; prints why a test is skipped.
fn root_and_other() -> Option<User> {
    let other = other_user();
    if other.is_none() {
        eprintln!("skipped: needs root to create a second user");
    }
    other
}

/// `qmgr < FILE`, as root: directives from standard input.
fn qmgr_reading(c: &Cluster, file: &std::path::Path) -> Output {
    let directives = std::fs::read(file).expect("read the directives");
    output_within(
        std::process::Command::new(bin_dir().join("qmgr")).env("PBS_HOME", &c.home),
        Some(&directives),
    )
}

fn qmgr_ok(c: &Cluster, command: &str) {
    let out = c.run_as_root("qmgr", &["-c", command]);
    assert!(
        out.status.success(),
        "qmgr -c '{command}': {}",
        stderr(&out)
    );
    assert_eq!(stderr(&out), "");
}

#[test]
fn qmgr_creates_lists_prints_and_refuses_in_torques_words() {
    let Some(_) = root_and_other() else { return };
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let h = host();

    // The server after first start: torque.setup's queue and managers.
    let printed = stdout(&c.run_as_root("qmgr", &["-c", "print server"]));
    assert_contains(&printed, "#\n# Create queues and set their attributes.\n#\n#\n# Create and define queue batch\n#\ncreate queue batch\nset queue batch queue_type = Execution\nset queue batch resources_default.walltime = 01:00:00\nset queue batch resources_default.nodes = 1\nset queue batch enabled = True\nset queue batch started = True\n#\n# Set server attributes.\n#\nset server scheduling = True\n");
    assert_contains(&printed, format!("set server managers = root@{h}\n"));
    assert_contains(&printed, format!("set server operators = root@{h}\n"));
    assert_contains(&printed, "set server default_queue = batch\n");

    qmgr_ok(&c, "create queue lab");
    qmgr_ok(
        &c,
        "set queue lab enabled = true, started = true, resources_default.walltime = 2:00:00",
    );
    qmgr_ok(&c, "set queue lab priority = 10");
    let listed = stdout(&c.run_as_root("qmgr", &["-c", "list queue lab"]));
    assert_contains(
        &listed,
        "Queue lab\n\tqueue_type = Execution\n\ttotal_jobs = 0\n",
    );
    assert_contains(&listed, "\tpriority = 10\n");
    assert_contains(&listed, "\tresources_default.walltime = 02:00:00\n");
    assert_contains(&listed, "\tenabled = True\n\tstarted = True\n\n");
    // Values are normalised; qstat -Q sees the same queue.
    let q = stdout(&c.run("qstat", &["-Q", "lab"]));
    assert_contains(&q, "lab ");

    // Errors, exit 2, nothing changed.
    let cases: &[(&str, String)] = &[
        (
            "set server nosuchattr = 1",
            "qmgr: Syntax error - cannot locate attribute\nset server nosuchattr = 1\n           ^\n"
                .to_string(),
        ),
        (
            "frobnicate server",
            "qmgr: Illegal operation: frobnicate\nTry 'help' if you are having trouble.\n"
                .to_string(),
        ),
        (
            "list queue nosuch",
            "qmgr obj=nosuch svr=default: Unknown queue MSG=cannot locate queue nosuch\n"
                .to_string(),
        ),
        (
            "create queue lab",
            "qmgr obj=lab svr=default: Queue already exists\n".to_string(),
        ),
        (
            "set queue lab enabled = maybe",
            "qmgr obj=lab svr=default: Illegal attribute or resource value for\n".to_string(),
        ),
        (
            "set server log_events = 255",
            "qmgr obj= svr=default: No support for requested service MSG=log_events: logging is set with RUST_LOG\n"
                .to_string(),
        ),
    ];
    for (command, want) in cases {
        let out = c.run_as_root("qmgr", &["-c", command]);
        assert_eq!(code(&out), 2, "{command}: {}", stderr(&out));
        assert_eq!(&stderr(&out), want, "{command}");
    }
    // Name by name: the queue that exists is listed, the unknown one refused.
    let out = c.run_as_root("qmgr", &["-c", "list queue lab,nosuch"]);
    assert_eq!(code(&out), 2);
    assert_eq!(stdout(&out), listed);
    assert_eq!(
        stderr(&out),
        "qmgr obj=nosuch svr=default: Unknown queue MSG=cannot locate queue nosuch\n"
    );

    // An ordinary user may look but not touch.
    let out = c.run("qmgr", &["-c", "set server scheduling = false"]);
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "qmgr obj= svr=default: Unauthorized Request  MSG=error in permissions (PERM_OPorMGR)\n"
    );
    let out = c.run("qmgr", &["-c", "list queue lab"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), listed);

    // A queue with jobs in it (even completed) is busy.
    let id = c.qsub("lab.sh", "true\n", &["-q", "lab"]);
    c.wait_state(&id, "C", T);
    let out = c.run_as_root("qmgr", &["-c", "delete queue lab"]);
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "qmgr obj=lab svr=default: Cannot delete busy queue\n"
    );
    qmgr_ok(&c, "create queue empty");
    qmgr_ok(&c, "delete queue empty");

    // Directives from standard input, as `qmgr < setup.txt`.
    let script = c.work.join("setup.qmgr");
    std::fs::write(
        &script,
        "# site setup\ncreate queue night\nset queue night enabled = true\n",
    )
    .unwrap();
    let out = qmgr_reading(&c, &script);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout(&c.run_as_root("qmgr", &["-c", "list queue night"]));
    assert_contains(&listed, "\tenabled = True\n");

    // A saved `print server` replays (queues exist already, so their `create` lines go).
    let saved: String = stdout(&c.run_as_root("qmgr", &["-c", "print server"]))
        .lines()
        .filter(|l| !l.starts_with("create queue"))
        .map(|l| format!("{l}\n"))
        .collect();
    let replay = c.work.join("replay.qmgr");
    std::fs::write(&replay, &saved).unwrap();
    let out = qmgr_reading(&c, &replay);
    assert!(out.status.success(), "{}", stderr(&out));
    let after: String = stdout(&c.run_as_root("qmgr", &["-c", "print server"]))
        .lines()
        .filter(|l| !l.starts_with("create queue"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(after, saved, "replaying print server changed the settings");

    // Settings survive a restart (they are in the database).
    c.kill_server();
    c.start_server();
    let listed = stdout(&c.run_as_root("qmgr", &["-c", "list queue lab"]));
    assert_contains(&listed, "\tpriority = 10\n");
}

#[test]
fn operators_act_on_every_job_and_managers_decide_who_they_are() {
    let Some(other) = root_and_other() else {
        return;
    };
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let h = host();
    let id = c.qsub("held.sh", "true\n", &["-h"]);

    let out = c.run_as(&other, "qdel", &[&id]);
    assert_eq!(code(&out), 159);
    assert_eq!(stderr(&out), format!("qdel: Unauthorized Request  {id}\n"));
    // Only a manager may make operators.
    let out = c.run_as(
        &other,
        "qmgr",
        &["-c", &format!("set server operators += {}@{h}", other.name)],
    );
    assert_eq!(code(&out), 2);
    qmgr_ok(&c, &format!("set server operators += {}@{h}", other.name));
    let printed = stdout(&c.run_as_root("qmgr", &["-c", "print server"]));
    assert_contains(
        &printed,
        format!(
            "set server operators = root@{h}\nset server operators += {}@{h}\n",
            other.name
        ),
    );
    // An operator may hold (o) and delete another user's job, but not make managers.
    let out = c.run_as(&other, "qhold", &["-h", "o", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(c.job_attr(&id, "Hold_Types").as_deref(), Some("uo"));
    let out = c.run_as(
        &other,
        "qmgr",
        &["-c", &format!("set server managers += {}@{h}", other.name)],
    );
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "qmgr obj= svr=default: Cannot set attribute, read only or insufficient permission  MSG=managers\n"
    );
    let out = c.run_as(&other, "qdel", &[&id]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&id, "C", T);
    // Removing them takes the rights away again.
    qmgr_ok(&c, &format!("set server operators -= {}@{h}", other.name));
    let id2 = c.qsub("held2.sh", "true\n", &["-h"]);
    let out = c.run_as(&other, "qdel", &[&id2]);
    assert_eq!(code(&out), 159);
}

#[test]
fn query_other_jobs_decides_who_sees_what() {
    let Some(other) = root_and_other() else {
        return;
    };
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let id = c.qsub("mine.sh", "true\n", &["-h"]);
    // Torque's default: users see their own jobs only.
    let out = c.run_as(&other, "qstat", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let out = c.run_as(&other, "qstat", &["-f", &id]);
    assert_eq!(code(&out), 159);
    assert_eq!(stderr(&out), format!("qstat: Unauthorized Request  {id}\n"));
    // The owner and the operators see it.
    assert_contains(&stdout(&c.run("qstat", &[])), Cluster::seq(&id));
    assert_contains(&stdout(&c.run_as_root("qstat", &[])), Cluster::seq(&id));
    qmgr_ok(&c, "set server query_other_jobs = true");
    assert_contains(&stdout(&c.run_as(&other, "qstat", &[])), Cluster::seq(&id));
    let out = c.run_as(&other, "qstat", &["-f", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Seeing is not touching.
    let out = c.run_as(&other, "qrls", &[&id]);
    assert_eq!(code(&out), 159);
}

#[test]
fn queue_acls_refuse_submissions_in_torques_words() {
    let Some(other) = root_and_other() else {
        return;
    };
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let h = host();
    let me = test_user();
    qmgr_ok(&c, "create queue lab");
    qmgr_ok(&c, "set queue lab enabled = true, started = true");
    qmgr_ok(
        &c,
        &format!(
            "set queue lab acl_user_enable = true, acl_users = {}",
            other.name
        ),
    );

    let out = c.submit_as(&me, &c.work, "a.sh", "true\n", &["-q", "lab"]);
    assert_eq!(code(&out), 159, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "qsub: submit error (Unauthorized Request  MSG=user ACL rejected the submitting user: user {}@{h}, queue lab)\n",
            me.name
        )
    );
    c.qsub_as(&other, &c.work, "b.sh", "true\n", &["-q", "lab"]);
    // The refused submission left nothing behind.
    let all = stdout(&c.run_as_root("qstat", &[]));
    assert_eq!(
        all.lines().filter(|l| l.contains("a.sh")).count(),
        0,
        "{all}"
    );

    // Groups: the submitter's primary group must be listed.
    qmgr_ok(&c, "set queue lab acl_user_enable = false");
    qmgr_ok(
        &c,
        "set queue lab acl_group_enable = true, acl_groups = nosuchgroup",
    );
    let out = c.submit_as(&other, &c.work, "c.sh", "true\n", &["-q", "lab"]);
    assert_eq!(code(&out), 159, "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        format!(
            "group ACL is not satisfied: user {}@{h}, queue lab",
            other.name
        ),
    );
    qmgr_ok(&c, "unset queue lab acl_group_enable");

    // Hosts: the host the identity was proven on, not what the client claims.
    qmgr_ok(
        &c,
        "set queue lab acl_host_enable = true, acl_hosts = login9",
    );
    let out = c.submit_as(&other, &c.work, "d.sh", "true\n", &["-q", "lab"]);
    assert_eq!(code(&out), 162, "{}", stderr(&out));
    assert_contains(
        &stderr(&out),
        format!(
            "Access from host not allowed, or unknown host MSG=host ACL rejected the submitting host: user {}@{h}, queue lab, host {h}",
            other.name
        ),
    );
    qmgr_ok(&c, &format!("set queue lab acl_hosts += {h}"));
    c.qsub_as(&other, &c.work, "e.sh", "true\n", &["-q", "lab"]);
}

#[test]
fn restricted_nodes_take_only_their_users_jobs() {
    let Some(other) = root_and_other() else {
        return;
    };
    let c = Cluster::start(&[
        NodeSpec::new("ws1", &format!("np=1 acl_users={}", other.name)),
        NodeSpec::new("n1", "np=1"),
    ]);
    let text = stdout(&c.run_as_root("pbsnodes", &["ws1"]));
    assert_contains(&text, format!("     acl_users = {}\n", other.name));
    // The test user's two jobs: one runs on n1, the other waits rather than use ws1.
    let first = c.qsub("one.sh", "sleep 30\n", &[]);
    c.wait_state(&first, "R", T);
    assert_eq!(c.job_attr(&first, "exec_host").as_deref(), Some("n1/0"));
    let second = c.qsub("two.sh", "true\n", &[]);
    c.wait_held_back(&second);
    // Asking for the restricted node by name can never be satisfied for this user.
    c.script("ws.sh", "true\n");
    let out = c.run("qsub", &["-l", "nodes=ws1", "ws.sh"]);
    assert_eq!(code(&out), 190, "{}", stderr(&out));
    // Its owner's job runs there.
    // (-k oe: their output goes to their home; the test's work directory is not theirs.)
    let theirs = c.qsub_as(&other, &c.work, "theirs.sh", "true\n", &["-k", "oe"]);
    c.wait_state(&theirs, "C", T);
    assert_eq!(c.job_attr(&theirs, "exec_host").as_deref(), Some("ws1/0"));
    let out = c.run_as_root("qdel", &[&first]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&second, "C", T);
}

#[test]
fn qalter_changes_what_the_owner_may_change() {
    let other = other_user();
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let id = c.qsub("alter.sh", "true\n", &["-h"]);
    let out = c.run("qalter", &["-N", "renamed", "-l", "walltime=00:05:00", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(c.job_attr(&id, "Job_Name").as_deref(), Some("renamed"));
    assert_eq!(
        c.job_attr(&id, "Resource_List.walltime").as_deref(),
        Some("00:05:00")
    );
    // A directory gets Torque's NAME.oSEQ, as at submission.
    let out = c.run("qalter", &["-o", "/tmp/qalter-out/", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        c.job_attr(&id, "Output_Path"),
        Some(format!(
            "{}:/tmp/qalter-out/renamed.o{}",
            host(),
            Cluster::seq(&id)
        ))
    );
    let out = c.run("qalter", &["-l", "walltime=xyz", &id]);
    assert_eq!(code(&out), 168);
    assert_eq!(
        stderr(&out),
        format!("qalter: Illegal attribute or resource value for {id}\n")
    );
    let out = c.run("qalter", &["-N", "x", "999"]);
    assert_eq!(code(&out), 153);
    assert_eq!(stderr(&out), "");
    let out = c.run("qalter", &["-N", "bad name", &id]);
    assert_eq!(code(&out), 2);
    assert_contains(&stderr(&out), "qalter: illegal -N value\n");
    if let Some(other) = other {
        let out = c.run_as(&other, "qalter", &["-N", "mine", &id]);
        assert_eq!(code(&out), 159);
        assert_eq!(
            stderr(&out),
            format!("qalter: Unauthorized Request  {id}\n")
        );
        assert_eq!(c.job_attr(&id, "Job_Name").as_deref(), Some("renamed"));
    }
    // A running job's resources are fixed for its owner.
    let running = c.qsub("run.sh", "sleep 30\n", &[]);
    c.wait_state(&running, "R", T);
    if is_root() {
        let out = c.run("qalter", &["-l", "walltime=00:50:00", &running]);
        assert_eq!(code(&out), 159);
        assert_eq!(
            stderr(&out),
            format!("qalter: Unauthorized Request  {running}\n")
        );
    }
    let out = c.run_as_root("qdel", &[&running]);
    assert!(out.status.success());
    c.wait_state(&running, "C", T);
    let out = c.run("qalter", &["-N", "late", &running]);
    assert_eq!(code(&out), 170);
}

#[test]
fn scheduling_false_and_stopped_queues_hold_back_new_starts() {
    if !is_root() {
        eprintln!("skipped: needs root (the default manager)");
        return;
    }
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    qmgr_ok(&c, "set server scheduling = false");
    let id = c.qsub("later.sh", "true\n", &[]);
    // The scheduler says why it waits instead of starting it.
    let comment = c.wait_held_back(&id);
    assert_eq!(
        comment,
        "Not Running: scheduling is off (server attribute scheduling = False)"
    );
    qmgr_ok(&c, "set server scheduling = true");
    c.wait_state(&id, "C", T);
    qmgr_ok(&c, "set queue batch started = false");
    let id = c.qsub("stopped.sh", "true\n", &[]);
    assert_eq!(c.wait_held_back(&id), "Not Running: Queue not started.");
    qmgr_ok(&c, "set queue batch started = true");
    c.wait_state(&id, "C", T);
}

/// `qmgr -c 'create node ...'`, `set node` and `delete node` change the cluster without a
/// restart, and the nodes file with it (line by line: comments stay), as Torque's server
/// rewrites it.
#[test]
fn qmgr_creates_changes_and_deletes_nodes_without_a_restart() {
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let nodes_file = c.home.join("server_priv/nodes");
    let original = c.read(&nodes_file);
    std::fs::write(&nodes_file, format!("# the lab's nodes\n{original}")).expect("comment");
    qmgr_ok(&c, "create node n2 np=2,properties=bigmem");
    assert_eq!(
        c.read(&nodes_file),
        format!("# the lab's nodes\n{original}n2 np=2 bigmem\n")
    );
    let shown = stdout(&c.run("pbsnodes", &["n2"]));
    assert_contains(&shown, "     np = 2\n");
    assert_contains(&shown, "     properties = bigmem\n");
    // Its MOM is welcome at once, and jobs go there.
    c.start_mom("n2");
    assert!(
        c.wait_nodes_up(&["n2".to_string()], T),
        "{}",
        c.pbsnodes_text()
    );
    let (id, out) = c.run_job("big.sh", "cat $PBS_NODEFILE\n", &["-l", "nodes=1:bigmem"]);
    assert_eq!(out, "n2\n", "{id}");
    qmgr_ok(&c, "set node n2 properties += ssd");
    qmgr_ok(&c, "set node n2 np = 4");
    qmgr_ok(&c, "set node n2 site = b");
    assert_contains(&c.read(&nodes_file), "n2 np=4 site=b bigmem ssd\n");
    // Its flags as pbsnodes -o/-N keep them, so `print node` replays.
    qmgr_ok(&c, "set node n2 state += offline");
    qmgr_ok(&c, "set node n2 note = \"new disk\"");
    let shown = stdout(&c.run("pbsnodes", &["n2"]));
    assert_contains(&shown, "     state = offline\n");
    assert_contains(&shown, "     site = b\n");
    assert_contains(&shown, "     note = new disk\n");
    let printed = stdout(&c.run_as_root("qmgr", &["-c", "print node n2"]));
    assert_contains(&printed, "set node n2 site = b\n");
    // Quoted, as it was typed, so that it reads back as one value.
    assert_contains(&printed, "set node n2 note = \"new disk\"\n");
    assert_contains(
        &printed,
        "set node n2 properties = bigmem\nset node n2 properties += ssd\n",
    );
    qmgr_ok(&c, "set node n2 state -= offline");
    qmgr_ok(&c, "unset node n2 note");
    let shown = stdout(&c.run("pbsnodes", &["n2"]));
    assert_contains(&shown, "     np = 4\n");
    assert_contains(&shown, "     properties = bigmem,ssd\n");
    assert!(
        !shown.contains("offline") && !shown.contains("note"),
        "{shown}"
    );
    // It survives a server restart: the file is the truth.
    c.kill_server();
    c.start_server();
    assert_contains(&stdout(&c.run("pbsnodes", &["n2"])), "     np = 4\n");
    assert!(
        c.wait_nodes_up(&["n2".to_string()], T),
        "{}",
        c.pbsnodes_text()
    );

    let refused = |command: &str, want: &str| {
        let out = c.run_as_root("qmgr", &["-c", command]);
        assert_eq!(code(&out), 2, "{command}: {}", stderr(&out));
        assert_eq!(stderr(&out), want, "{command}");
    };
    refused(
        "create node n1",
        "qmgr obj=n1 svr=default: Node name already exists\n",
    );
    refused(
        "set node n1 color = red",
        "qmgr: Syntax error - cannot locate attribute\nset node n1 color = red\n            ^\n",
    );
    refused("set node n1 np = 0", "qmgr obj=n1 svr=default: Illegal attribute or resource value for MSG=np is a number from 1 to 4096\n");
    refused("set node n1 np = 4294967295", "qmgr obj=n1 svr=default: Illegal attribute or resource value for MSG=np is a number from 1 to 4096\n");
    refused(
        "set node n1 properties = \"fast ghost\"",
        "qmgr obj=n1 svr=default: Illegal attribute or resource value for MSG=a property is one word, without = or #\n",
    );
    refused("create node -x", "qmgr obj=-x svr=default: Illegal attribute or resource value for MSG=invalid node name -x\n");
    refused(
        "delete node nosuch",
        "qmgr obj=nosuch svr=default: Unknown node \n",
    );
    refused(
        "delete node n2",
        "qmgr obj=n2 svr=default: Invalid request MSG=the pbs_mom of node n2 is connected; stop it first\n",
    );
    let user = c.run("qmgr", &["-c", "create node n3"]);
    assert_eq!(code(&user), 2);
    assert_contains(&stderr(&user), "Unauthorized Request");
    c.kill_mom("n2");
    assert!(wait_until(T, || c.node_state("n2").as_deref() == Some("down")));
    qmgr_ok(&c, "delete node n2");
    assert_eq!(
        c.read(&nodes_file),
        format!("# the lab's nodes\n{original}")
    );
    let out = c.run("pbsnodes", &["n2"]);
    assert_ne!(code(&out), 0);
}

/// A queue attribute as `qstat -Qf` prints it.
fn queue_attr(c: &Cluster, queue: &str, attr: &str) -> Option<String> {
    let out = c.run_as_root("qstat", &["-Qf", queue]);
    let prefix = format!("    {attr} = ");
    stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
}

#[test]
fn qenable_qdisable_qstart_qstop_switch_queues_in_torques_words() {
    if !is_root() {
        eprintln!("skipped: needs root (the manager) and an unprivileged user");
        return;
    }
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    qmgr_ok(&c, "create queue lab");
    let switch = |cmd: &str, operands: &[&str]| {
        let out = c.run_as_root(cmd, operands);
        (code(&out), stdout(&out), stderr(&out))
    };
    let quiet = (0, String::new(), String::new());

    assert_eq!(switch("qdisable", &["batch"]), quiet);
    assert_eq!(queue_attr(&c, "batch", "enabled").as_deref(), Some("False"));
    let out = c.submit_as(&c.user, &c.work, "refused.sh", "true\n", &[]);
    assert_ne!(code(&out), 0, "a disabled queue takes no job");
    assert_contains(&stderr(&out), "Queue is not enabled");
    assert_eq!(switch("qenable", &["batch"]), quiet);
    assert_eq!(queue_attr(&c, "batch", "enabled").as_deref(), Some("True"));

    // Stopped: jobs are taken but not run, until the queue is started.
    assert_eq!(switch("qstop", &["batch"]), quiet);
    assert_eq!(queue_attr(&c, "batch", "started").as_deref(), Some("False"));
    let id = c.qsub("waits.sh", "true\n", &[]);
    assert_eq!(c.wait_held_back(&id), "Not Running: Queue not started.");
    assert_eq!(switch("qstart", &["batch"]), quiet);
    c.wait_state(&id, "C", T);

    // No queue, only a server: every queue.
    assert_eq!(switch("qdisable", &[&format!("@{SERVER_NAME}")]), quiet);
    for queue in ["batch", "lab"] {
        assert_eq!(queue_attr(&c, queue, "enabled").as_deref(), Some("False"));
    }
    assert_eq!(switch("qenable", &["batch@tsrv", "lab"]), quiet);
    for queue in ["batch", "lab"] {
        assert_eq!(queue_attr(&c, queue, "enabled").as_deref(), Some("True"));
    }

    // Torque's refusals: each operand is tried; the last failure's status is the exit status.
    let usage = |cmd: &str| {
        (
            1,
            String::new(),
            format!("Usage: {cmd} [queue][@server] ...\n"),
        )
    };
    assert_eq!(switch("qenable", &[]), usage("qenable"));
    assert_eq!(switch("qstop", &["-x", "batch"]), usage("qstop"));
    assert_eq!(
        switch("qdisable", &["nosuch", "lab"]),
        (2, String::new(), "qdisable: Unknown queue nosuch\n".into())
    );
    assert_eq!(queue_attr(&c, "lab", "enabled").as_deref(), Some("False"));
    assert_eq!(
        switch("qenable", &["lab", "ba#d"]),
        (
            1,
            String::new(),
            "qenable: illegally formed destination: ba#d\n".into()
        )
    );
    assert_eq!(queue_attr(&c, "lab", "enabled").as_deref(), Some("True"));
    let out = c.run("qstop", &["batch@tsrv"]);
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "qstop: Unauthorized Request  MSG=error in permissions (PERM_OPorMGR) batch@tsrv\n"
    );
    assert_eq!(
        queue_attr(&c, "batch", "started").as_deref(),
        Some("True"),
        "unchanged"
    );
}

#[test]
fn qterm_stops_the_server_once_its_work_is_done_and_jobs_follow_the_type() {
    if !is_root() {
        eprintln!("skipped: needs root (the manager) and an unprivileged user");
        return;
    }
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=3")]);
    // Refused to a user, and for a bad type; the server goes on.
    let out = c.run("qterm", &[]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (2, "qterm: Unauthorized Request \n".into())
    );
    let out = c.run_as_root("qterm", &["-t", "soon"]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            1,
            "Usage: qterm [-t immediate|delay|quick] [server ...]\n".into()
        )
    );
    assert!(c.run("qstat", &[]).status.success(), "still serving");

    // quick (the default): the job runs on through the server's absence.
    let marker = c.work.join("quick.done");
    let body = format!("sleep 2\ntouch {}\n", marker.display());
    let quick = c.qsub("quick.sh", &body, &[]);
    c.wait_state(&quick, "R", T);
    let out = c.run_as_root("qterm", &[]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    // Answered once the server's work is done: its process is gone a moment later.
    assert!(
        c.wait_server_exit(Duration::from_secs(10)),
        "{}",
        c.server_log()
    );
    assert!(
        !c.home.join("capstan.sock").exists(),
        "the socket is removed"
    );
    c.start_server();
    c.wait_state(&quick, "C", T);
    assert_eq!(c.job_attr(&quick, "exit_status").as_deref(), Some("0"));
    assert!(marker.exists(), "the job ran to its end");

    // immediate: the rerunnable job is requeued (and runs again), the other one deleted.
    let again = c.qsub("again.sh", "sleep 30\n", &[]);
    let fixed = c.qsub("fixed.sh", "sleep 30\n", &["-r", "n"]);
    c.wait_state(&again, "R", T);
    c.wait_state(&fixed, "R", T);
    let out = c.run_as_root("qterm", &["-t", "immediate"]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    assert!(
        c.wait_server_exit(Duration::from_secs(10)),
        "{}",
        c.server_log()
    );
    c.start_server();
    c.wait_state(&fixed, "C", T);
    assert_eq!(c.job_attr(&fixed, "exit_status").as_deref(), Some("271"));
    assert!(
        wait_until(T, || c
            .job_attr(&again, "start_count")
            .is_some_and(|n| n == "2")),
        "requeued and started again: {:?}",
        c.job_attr(&again, "start_count")
    );

    // The next server may start as soon as qterm returns, even while the old process still
    // waits for an idle client to hang up: the socket is the new server's, and stays.
    let socket = c.home.join("capstan.sock");
    let idle = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let out = c.run_as_root("qterm", &[]);
    assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    let mut old = c.take_server().unwrap();
    c.start_server();
    // Still waiting for the idle client: the two servers overlap, which is the case tested.
    assert!(
        matches!(old.try_wait(), Ok(None)),
        "the old server exited early"
    );
    assert!(
        wait_until(T, || matches!(old.try_wait(), Ok(Some(_)))),
        "the old server did not exit"
    );
    drop(idle);
    assert!(
        socket.exists(),
        "the old server removed the new one's socket"
    );
    assert!(c.run("qstat", &[]).status.success());
}
