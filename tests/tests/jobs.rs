//! A job's life on a real cluster: submission, output files, environment, nodefile,
//! multi-node slot accounting, and how jobs end (exit codes, qdel, qsig, walltime).

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

fn one_node() -> Vec<NodeSpec> {
    vec![NodeSpec::new("n1", "np=2")]
}

#[test]
fn job_runs_as_its_user_and_writes_torque_output_files() {
    let c = Cluster::start(&one_node());
    let id = c.qsub(
        "hello.sh",
        "#!/bin/bash\necho \"hello from $PBS_JOBID as $(id -un)\"\necho oops >&2\nexit 3\n",
        &[],
    );
    assert_eq!(id, format!("0.{SERVER_NAME}"), "first job id");
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("3"));
    let out = c.work.join("hello.sh.o0");
    let err = c.work.join("hello.sh.e0");
    assert_eq!(
        c.read(&out),
        format!("hello from {id} as {}\n", c.user.name)
    );
    assert_eq!(c.read(&err), "oops\n");
    for file in [&out, &err] {
        let meta = std::fs::metadata(file).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "{} mode", file.display());
        assert_eq!(meta.uid(), c.user.uid, "{} owner", file.display());
    }
    assert_eq!(
        c.job_attr(&id, "Job_Owner"),
        Some(format!("{}@{}", c.user.name, hostname()))
    );
    assert_eq!(
        c.job_attr(&id, "euser").as_deref(),
        Some(c.user.name.as_str())
    );
}

#[test]
fn umask_arguments_kill_delay_group_and_user_options_are_applied() {
    let c = Cluster::start(&one_node());
    let group = nix::unistd::Group::from_gid(c.user.gid.into())
        .unwrap()
        .expect("the test user's group")
        .name;
    let group_list = format!("group_list={group}");
    let (id, out) = c.run_job(
        "opts.sh",
        "umask\necho \"args: $1|$2|$#\"\ntouch \"$PBS_O_WORKDIR/made\"\nid -gn\n",
        &[
            "-W",
            "umask=022",
            "-F",
            "one two",
            "-K",
            "5",
            "-f",
            "-W",
            &group_list,
        ],
    );
    assert_eq!(out, format!("0022\nargs: one|two|2\n{group}\n"));
    // The job's umask: for what the job creates and for its delivered output.
    for (file, mode) in [
        (c.work.join("made"), 0o644),
        (c.default_stdout("opts.sh", &id), 0o644),
    ] {
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o777, mode, "{} mode", file.display());
    }
    assert_eq!(c.job_attr(&id, "umask").as_deref(), Some("18"));
    assert_eq!(c.job_attr(&id, "job_arguments").as_deref(), Some("one two"));
    assert_eq!(c.job_attr(&id, "kill_delay").as_deref(), Some("5"));
    assert_eq!(c.job_attr(&id, "fault_tolerant").as_deref(), Some("True"));
    assert_eq!(c.job_attr(&id, "group_list"), Some(group.clone()));
    assert_eq!(c.job_attr(&id, "egroup"), Some(group));

    // Another user's account, or a group the user is not in: Torque's refusals, nothing kept.
    let script = c.script("refused.sh", "true\n");
    let script = script.to_str().unwrap();
    let out = c.run("qsub", &["-u", "root", script]);
    assert_eq!(code(&out), 177, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "qsub: submit error (Bad UID for job execution MSG={} may not run jobs as root)\n",
            c.user.name
        )
    );
    // A kill delay that would keep every qdel (a manager's too) waiting for hours.
    let out = c.run("qsub", &["-K", "601", script]);
    assert_eq!(code(&out), 168, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "qsub: submit error (Illegal attribute or resource value for kill_delay)\n"
    );
    // Arguments go to the job's shell on one line: a newline in them is refused.
    let out = c.run("qsub", &["-F", "a\nb", script]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            168,
            "qsub: submit error (Illegal attribute or resource value for job_arguments)\n"
                .to_string()
        )
    );
    for list in ["group_list=nosuchgroup", "group_list=root"] {
        let out = c.run("qsub", &["-W", list, script]);
        assert_eq!(code(&out), 199, "{list}: {}", stderr(&out));
        assert_contains(&stderr(&out), "Bad GID for job execution");
    }
    let listed = stdout(&c.run("qstat", &[]));
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

#[test]
fn an_exclusive_job_has_its_node_to_itself() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    let alone = c.qsub("alone.sh", "sleep 60\n", &["-n"]);
    c.wait_state(&alone, "R", T);
    assert_eq!(
        c.job_attr(&alone, "node_exclusive").as_deref(),
        Some("True")
    );
    // It asked for one slot and got one, but the node takes nothing else meanwhile.
    assert_eq!(c.job_attr(&alone, "exec_host"), Some("n1/0".to_string()));
    assert_eq!(c.node_state("n1").as_deref(), Some("job-exclusive"));
    assert_contains(&c.pbsnodes_text(), format!("     jobs = 0/{alone}\n"));
    let shared = c.qsub("shared.sh", "true\n", &[]);
    c.wait_held_back(&shared);
    assert!(c.run("qdel", &[&alone]).status.success());
    c.wait_state(&shared, "C", T);
    assert_eq!(c.job_attr(&shared, "exec_host"), Some("n1/0".to_string()));
    // Moab's spelling, which Torque sites use: the same.
    let single = c.qsub(
        "single.sh",
        "sleep 60\n",
        &["-l", "naccesspolicy=singlejob"],
    );
    c.wait_state(&single, "R", T);
    assert_eq!(c.node_state("n1").as_deref(), Some("job-exclusive"));
    assert!(c.run("qdel", &[&single]).status.success());
    c.wait_state(&single, "C", T);
}

#[test]
fn the_accounting_log_records_each_jobs_queue_start_end_and_deletion() {
    let c = Cluster::start(&one_node());
    let ran = c.qsub("acct.sh", "exit 3\n", &["-h", "-N", "acct"]);
    let dependency = format!("depend=afterok:{ran}");
    let after = c.qsub("after.sh", "true\n", &["-W", &dependency]);
    assert!(c.run("qrls", &[&ran]).status.success());
    c.wait_state(&ran, "C", T);
    c.wait_state(&after, "C", T);
    let held = c.qsub("held.sh", "true\n", &["-h"]);
    assert!(c.run("qdel", &[&held]).status.success());
    c.wait_state(&held, "C", T);
    // A file per day, `server_priv/accounting/YYYYMMDD`, as Torque's (two if the test ran
    // across midnight).
    let dir = c.home.join("server_priv/accounting");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.iter().all(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            name.len() == 8 && name.bytes().all(|b| b.is_ascii_digit())
        }),
        "{files:?}"
    );
    let text: String = files.iter().map(|f| c.read(f)).collect();
    let records: Vec<(&str, &str, &str)> = text
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ';');
            let _when = parts.next().unwrap();
            (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            )
        })
        .collect();
    let kinds: Vec<(&str, &str)> = records.iter().map(|(k, id, _)| (*k, *id)).collect();
    assert_eq!(
        kinds,
        [
            ("Q", ran.as_str()),
            ("Q", after.as_str()),
            ("S", ran.as_str()),
            ("E", ran.as_str()),
            // Its dependency failed: it never runs, and nobody deleted it.
            ("A", after.as_str()),
            ("Q", held.as_str()),
            ("D", held.as_str())
        ],
        "{text}"
    );
    let end = records[3].2;
    for field in [
        format!("user={} ", c.user.name),
        "jobname=acct ".to_string(),
        "exec_host=n1/0 ".to_string(),
        "Exit_status=3 ".to_string(),
        "resources_used.walltime=".to_string(),
    ] {
        assert_contains(end, field);
    }
    assert_eq!(records[0].2, "queue=batch");
    assert_eq!(records[4].2, "queue=batch");
    assert_eq!(
        records[6].2,
        format!("requestor={}@{}", c.user.name, hostname())
    );
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .split('.')
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn stdin_script_is_named_stdin_and_join_and_paths_are_honoured() {
    let c = Cluster::start(&one_node());
    let out = c.run_with_input("qsub", &[], b"echo from stdin\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    c.wait_state(&id, "C", T);
    assert_eq!(c.job_attr(&id, "Job_Name").as_deref(), Some("STDIN"));
    let seq = Cluster::seq(&id);
    assert_eq!(c.read(c.work.join(format!("STDIN.o{seq}"))), "from stdin\n");

    // -j oe: one file with both streams; -o into a directory with a trailing slash.
    let outdir = c.work.join("outdir");
    std::fs::create_dir(&outdir).unwrap();
    std::os::unix::fs::chown(&outdir, Some(c.user.uid), Some(c.user.gid)).unwrap();
    let id = c.qsub(
        "joined.sh",
        "#PBS -N joined\n#PBS -j oe\necho out\necho err >&2\n",
        &["-o", &format!("{}/", outdir.display())],
    );
    c.wait_state(&id, "C", T);
    let seq = Cluster::seq(&id);
    let joined = c.read(outdir.join(format!("joined.o{seq}")));
    assert!(
        joined.contains("out\n") && joined.contains("err\n"),
        "{joined}"
    );
    assert!(!outdir.join(format!("joined.e{seq}")).exists());
    assert!(!c.work.join(format!("joined.e{seq}")).exists());
}

#[test]
fn job_environment_and_nodefile_follow_torque() {
    let c = Cluster::start(&one_node());
    let id = c.qsub(
        "env.sh",
        "#PBS -l nodes=1:ppn=2,walltime=00:02:00\n#PBS -N envjob\nenv | sort\necho UMASK=$(umask)\necho NODEFILE_BEGIN\ncat $PBS_NODEFILE\necho NODEFILE_END\n",
        &["-v", "FOO=bar,BAZ=qux,HOSTNAME=submithost"],
    );
    c.wait_state(&id, "C", T);
    let out = c.read(c.default_stdout("envjob", &id));
    let var = |name: &str| -> Option<String> {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")).map(|v| v.to_string()))
    };
    assert_eq!(var("PBS_JOBID"), Some(id.clone()));
    assert_eq!(var("PBS_JOBNAME").as_deref(), Some("envjob"));
    assert_eq!(var("PBS_QUEUE").as_deref(), Some("batch"));
    assert_eq!(var("PBS_O_QUEUE").as_deref(), Some("batch"));
    assert_eq!(var("PBS_ENVIRONMENT").as_deref(), Some("PBS_BATCH"));
    assert_eq!(var("PBS_NP").as_deref(), Some("2"));
    assert_eq!(var("PBS_NUM_NODES").as_deref(), Some("1"));
    assert_eq!(var("PBS_NUM_PPN").as_deref(), Some("2"));
    // The MOM's name, over the one the job brought (Torque's InitUserEnv).
    assert_eq!(var("HOSTNAME").as_deref(), Some("n1"));
    assert_eq!(var("PBS_WALLTIME").as_deref(), Some("120"));
    assert_eq!(var("PBS_NODENUM").as_deref(), Some("0"));
    assert_eq!(var("PBS_O_WORKDIR"), Some(c.work.display().to_string()));
    assert_eq!(var("PBS_O_SERVER").as_deref(), Some(SERVER_NAME));
    assert_eq!(var("FOO").as_deref(), Some("bar"));
    assert_eq!(var("BAZ").as_deref(), Some("qux"));
    assert_eq!(var("ENVIRONMENT").as_deref(), Some("BATCH"));
    assert_eq!(var("USER"), Some(c.user.name.clone()));
    assert_eq!(var("HOME"), Some(c.user.home.display().to_string()));
    assert_eq!(var("UMASK").as_deref(), Some("0077"));
    let cookie = var("PBS_JOBCOOKIE").expect("PBS_JOBCOOKIE");
    assert_eq!(cookie.len(), 32);
    assert!(cookie
        .chars()
        .all(|ch| ch.is_ascii_digit() || ch.is_ascii_uppercase()));
    assert!(var("PBS_NODEFILE").is_some());
    assert!(var("LD_PRELOAD").is_none(), "MOM environment leaked");
    let nodefile: Vec<&str> = out
        .split("NODEFILE_BEGIN\n")
        .nth(1)
        .and_then(|rest| rest.split("NODEFILE_END").next())
        .unwrap()
        .lines()
        .collect();
    assert_eq!(nodefile, vec!["n1", "n1"]);
    assert_eq!(c.job_attr(&id, "exec_host").as_deref(), Some("n1/0-1"));
    // The job started in the user's home (no -d), Torque's default.
    assert_eq!(var("PWD"), Some(c.user.home.display().to_string()));
}

/// The job's shell is a login shell (`-bash`, which reads the profiles), as in Torque,
/// until the MOM's config says `$source_login_batch false`; a SIGHUP applies it.
#[test]
fn source_login_batch_decides_whether_the_shell_is_a_login_shell() {
    let c = Cluster::start(&one_node());
    let argv0 = |name: &str| {
        let (_, out) = c.run_job(
            name,
            "head -c 100 /proc/$$/cmdline | tr '\\0' '\\n' | head -n 1\n",
            &[],
        );
        // The last line: a login profile may print before the script runs.
        out.lines().last().unwrap_or_default().to_string()
    };
    let login = argv0("login.sh");
    assert!(login.starts_with('-'), "not a login shell: {login:?}");

    let loaded = c.reconfigure_mom("n1", "$source_login_batch false\n");
    assert_contains(&loaded, "source_login_batch: false");
    let plain = argv0("plain.sh");
    assert_eq!(plain, login.trim_start_matches('-'), "still a login shell");
}

/// `DIR/pbs_environment`, read when the MOM starts, as Torque's: every job's environment
/// starts from its variables (`NAME=value`, or a bare `NAME` for the MOM's own value), and
/// the job's own variables override them.
#[test]
fn pbs_environment_is_the_base_of_every_jobs_environment() {
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::start(&one_node());
    c.kill_mom("n1");
    let file = c.mom_home("n1").join("pbs_environment");
    std::fs::write(
        &file,
        "PATH=/bin:/usr/bin\n# the site's zone\nTZ=Pacific/Auckland\nCAPSTAN_SITE=lab one\nRUST_LOG\n",
    )
    .expect("pbs_environment");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    c.start_mom("n1");
    assert!(
        wait_until(T, || c.server_log_count("MOM connected node=n1") >= 2),
        "the MOM did not come back:\n{}",
        c.mom_log("n1")
    );
    // RUST_LOG: the MOM's own value (the test harness starts it with `info`).
    let show = "echo \"$TZ|$CAPSTAN_SITE|$RUST_LOG|${MINE-}\"\n";
    let (_, out) = c.run_job("site.sh", show, &[]);
    assert_eq!(out.lines().last(), Some("Pacific/Auckland|lab one|info|"));
    let (_, out) = c.run_job("mine.sh", show, &["-v", "MINE=x,TZ=UTC"]);
    assert_eq!(out.lines().last(), Some("UTC|lab one|info|x"));

    // Root's prologue sees it: a file others may write is refused, and the MOM does not start.
    c.kill_mom("n1");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    c.start_mom("n1");
    let pid = c.mom_pid("n1").expect("the MOM's pid");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    assert!(
        wait_until(T, || matches!(proc_state(&proc_dir), None | Some('Z'))),
        "the MOM took a world-writable pbs_environment:\n{}",
        c.mom_log("n1")
    );
    assert_contains(
        &c.mom_log("n1"),
        "pbs_environment must be a regular file owned by root",
    );
}

/// `$tmpdir DIR` in the MOM's config gives each job a directory of its own, `DIR/JOBID`
/// (0700, the user's), as `TMPDIR`; it goes with the job's other files once the server has
/// the job's result.
#[test]
fn tmpdir_gives_each_job_its_own_directory_removed_after_the_job() {
    let mut c = Cluster::start(&one_node());
    let scratch = c.root.join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    let loaded = c.reconfigure_mom("n1", &format!("$tmpdir {}\n", scratch.display()));
    assert_contains(&loaded, "tmpdir: Some(");
    let (id, out) = c.run_job(
        "tmp.sh",
        "echo \"$TMPDIR\"\nstat -c '%U %a' \"$TMPDIR\"\necho kept > \"$TMPDIR/f\"\n",
        &[],
    );
    let dir = scratch.join(&id);
    assert_eq!(out, format!("{}\n{} 700\n", dir.display(), c.user.name));
    assert!(
        wait_until(T, || !dir.exists()),
        "{} is still there",
        dir.display()
    );
    // A directory someone else made under the job's name (ids are predictable) is neither
    // used nor removed: the job cannot start.
    let next = c.qsub("squatted.sh", "echo ran\n", &["-h"]);
    let squatted = scratch.join(&next);
    std::fs::create_dir(&squatted).expect("squat");
    std::fs::write(squatted.join("keep"), "mine").expect("squat file");
    let out = c.run("qrls", &[&next]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&next, "C", T);
    assert_eq!(c.job_attr(&next, "exit_status").as_deref(), Some("-1"));
    assert_eq!(c.read(squatted.join("keep")), "mine");
    assert_contains(&c.mom_log("n1"), "exists and is not the job user's");
    // What a MOM set aside for removal and did not get to remove (it stopped first) goes
    // when the next one starts.
    let leftover = scratch.join(".capstan-removing-0123456789abcdef-7.tsrv");
    std::fs::create_dir_all(leftover.join("deep")).expect("leftover");
    c.kill_mom("n1");
    c.start_mom("n1");
    assert!(
        wait_until(T, || !leftover.exists()),
        "{} is still there",
        leftover.display()
    );
    assert!(squatted.exists(), "another user's directory was removed");
}

#[test]
fn the_job_shell_is_the_child_of_the_small_supervisor_beside_pbs_mom() {
    let c = Cluster::start(&one_node());
    // The supervisor's name, command line and size of program text (all public in /proc):
    // the parent of the job's shell, which is the script's parent ($PPID).
    let (_, out) = c.run_job(
        "parent.sh",
        "sup=$(awk '{print $4}' /proc/$PPID/stat)\ncat /proc/$sup/comm\ntr '\\0' ' ' < /proc/$sup/cmdline; echo\nawk '/^VmExe/ {print $2}' /proc/$sup/status\n",
        &[],
    );
    let lines: Vec<&str> = out.lines().collect();
    let [.., comm, cmdline, text_kb] = lines[..] else {
        panic!("job output: {out:?}");
    };
    // What ps, top and pgrep show.
    assert_eq!(comm, "capstan_supervi");
    // Forked by the MOM's job spawner, whose command line it keeps.
    assert!(
        cmdline.starts_with("capstan_supervisor --capstan-spawner "),
        "the shell's parent is {cmdline:?}"
    );
    // capstan_supervisor, not pbs_mom re-executed under that name.
    let text_kb: u64 = text_kb.parse().expect("VmExe");
    let mom = c.mom_pid("n1").expect("n1's MOM");
    let mom_status = std::fs::read_to_string(format!("/proc/{mom}/status")).expect("status");
    let mom_text_kb: u64 = mom_status
        .lines()
        .find_map(|l| l.strip_prefix("VmExe:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .expect("the MOM's VmExe");
    assert!(
        text_kb * 3 < mom_text_kb,
        "supervisor text {text_kb} kB, pbs_mom's {mom_text_kb} kB"
    );
}

#[test]
fn multi_node_jobs_hold_slots_on_every_node() {
    let c = Cluster::start(&two_site_nodes());
    let first = c.qsub(
        "mpi.sh",
        "echo $PBS_NUM_NODES $PBS_NUM_PPN $PBS_NP $HOSTNAME > env.$PBS_JOBID\n\
         cat $PBS_NODEFILE > nodes.$PBS_JOBID\nsleep 30\n",
        &["-l", "nodes=2:ppn=2", "-d", &c.work.display().to_string()],
    );
    c.wait_state(&first, "R", T);
    let exec_host = c.job_attr(&first, "exec_host").unwrap();
    let hosts: Vec<&str> = exec_host.split('+').collect();
    assert_eq!(hosts.len(), 2, "{exec_host}");
    // Both nodes come from one site, and the comment says which and why it won.
    let site_of = |node: &str| if node.starts_with('a') { "a" } else { "b" };
    let site = site_of(hosts[0]);
    assert_eq!(site_of(hosts[1]), site, "{exec_host} spans sites");
    let comment = c.job_attr(&first, "comment").unwrap();
    assert!(comment.starts_with("Job started on "), "{comment}");
    assert_contains(&comment, format!(" on site {site} (score "));
    assert_contains(&comment, "site-packing ");
    for h in &hosts {
        assert!(h.ends_with("/0-1"), "{exec_host}");
    }
    let nodefile_path = c.work.join(format!("nodes.{first}"));
    assert!(wait_until(T, || c.read_opt(&nodefile_path).lines().count() == 4));
    let mother = hosts[0].split('/').next().unwrap();
    let sister = hosts[1].split('/').next().unwrap();
    // Torque's counts from the request, and the mother superior's own name.
    assert_eq!(
        c.read(c.work.join(format!("env.{first}"))),
        format!("2 2 4 {mother}\n")
    );
    let lines: Vec<String> = c
        .read(&nodefile_path)
        .lines()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(lines, vec![mother, mother, sister, sister]);
    // Slots are accounted on the sister too.
    for node in [mother, sister] {
        assert_eq!(c.node_state(node).as_deref(), Some("job-exclusive"));
        let text = stdout(&c.run_as_root("pbsnodes", &[node]));
        assert_contains(&text, format!("     jobs = 0-1/{first}\n"));
    }
    // Another 2x2 fits on the other two nodes; a third must wait.
    let second = c.qsub("mpi2.sh", "sleep 30\n", &["-l", "nodes=2:ppn=2"]);
    c.wait_state(&second, "R", T);
    let third = c.qsub("mpi3.sh", "sleep 1\n", &["-l", "nodes=1:ppn=1"]);
    c.wait_held_back(&third);
    // Freeing the first job's nodes lets the third run.
    assert!(c.run("qdel", &[&first]).status.success());
    c.wait_state(&third, "C", T);
    assert_eq!(c.job_attr(&first, "exit_status").as_deref(), Some("271"));
}

/// The batch queue's default `nodes=1` must not override a request for slots made another way.
#[test]
fn procs_select_and_ncpus_jobs_get_the_slots_they_ask_for() {
    let c = Cluster::start(&two_site_nodes());
    let slots = |exec_host: &str| -> usize {
        exec_host
            .split('+')
            .map(|h| {
                let range = h.split('/').nth(1).unwrap();
                range
                    .split(',')
                    .map(|r| match r.split_once('-') {
                        Some((a, b)) => {
                            b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1
                        }
                        None => 1,
                    })
                    .sum::<usize>()
            })
            .sum()
    };
    let cases = [
        ("procs=3", 3, 0),
        ("select=2:ncpus=2", 4, 2),
        ("ncpus=2", 2, 1),
    ];
    for (request, want_slots, want_nodes) in cases {
        let id = c.qsub("slots.sh", "sleep 30\n", &["-l", request]);
        c.wait_state(&id, "R", T);
        let exec_host = c.job_attr(&id, "exec_host").unwrap();
        assert_eq!(slots(&exec_host), want_slots, "{request}: {exec_host}");
        assert_eq!(c.job_attr(&id, "Resource_List.nodes"), None, "{request}");
        let nodect = c.job_attr(&id, "Resource_List.nodect");
        if want_nodes == 0 {
            // Torque shows a procs job with no node count: NDS `--`, TSK from procs.
            assert_eq!(nodect, None, "{request}");
            let listing = stdout(&c.run("qstat", &["-a", &id]));
            let row = listing.lines().last().unwrap();
            let columns: Vec<&str> = row.split_whitespace().collect();
            assert_eq!(&columns[5..7], ["--", "3"], "{row}");
        } else {
            assert_eq!(nodect, Some(want_nodes.to_string()), "{request}");
        }
        assert!(c.run("qdel", &[&id]).status.success());
        c.wait_state(&id, "C", T);
    }
}

#[test]
fn qsig_kill_is_a_sigterm_first_as_torques_mom_sends_it() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=3")]);
    // The script runs in a child of the job's shell (Torque's way: the shell reads the
    // script's path on its stdin). The SIGTERM ends the shell, 271 as Torque records a qsig
    // -s KILL, and reaches the script too: one that cleans up on SIGTERM gets to.
    let ready = c.work.join("trap.ready");
    let trapping = c.qsub(
        "trap.sh",
        &format!(
            "trap 'echo cleaned up; exit 3' TERM\ntouch {}\nsleep 60 &\nwait\n",
            ready.display()
        ),
        &[],
    );
    let plain = c.qsub("plain.sh", "sleep 60\n", &[]);
    // A script that ignores SIGTERM is killed once its shell has ended (the leftovers'
    // SIGTERM, then their SIGKILL 5 s later).
    let deaf_ready = c.work.join("deaf.ready");
    let deaf = c.qsub(
        "deaf.sh",
        &format!("trap '' TERM\ntouch {}\nsleep 60\n", deaf_ready.display()),
        &[],
    );
    for id in [&trapping, &plain, &deaf] {
        c.wait_state(id, "R", T);
    }
    let out_file = c.work.join(format!("trap.sh.o{}", Cluster::seq(&trapping)));
    // The traps are set once the scripts have made their files.
    assert!(wait_until(T, || ready.exists() && deaf_ready.exists()));
    for id in [&trapping, &plain, &deaf] {
        let out = c.run("qsig", &["-s", "KILL", id]);
        assert_eq!((code(&out), stderr(&out)), (0, String::new()));
    }
    c.wait_state(&trapping, "C", T);
    c.wait_state(&plain, "C", T);
    assert_eq!(c.job_attr(&trapping, "exit_status").as_deref(), Some("271"));
    assert_eq!(c.job_attr(&plain, "exit_status").as_deref(), Some("271"));
    c.wait_state(&deaf, "C", T);
    assert_eq!(c.job_attr(&deaf, "exit_status").as_deref(), Some("271"));
    assert_contains(&c.read(out_file), "cleaned up\n");
}

/// `-l` limits as Torque's MOM applies them: `pcput`, `file`, `pmem`, `vmem` and `nice` are
/// set on the job's shell (so `ulimit` and `nice` inside the job read them); `cput` and
/// `vmem` are job-wide totals the MOM checks as it samples the job, killing it with Torque's
/// notice and JOB_EXEC_OVERLIMIT_CPUT (-12) or _MEM (-10); `$ignvmem` turns vmem off.
#[test]
fn l_limits_are_set_on_the_job_and_its_totals_enforced() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=4")]);
    // The MOM's own niceness and limits, which it has from this test (a CI that runs the
    // tests niced or limited must not fail them).
    // SAFETY: getpriority has no preconditions.
    let own_nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let own_limit = |resource| match nix::sys::resource::getrlimit(resource) {
        Ok((soft, _)) if soft != libc::RLIM_INFINITY => (soft / 1024).to_string(),
        _ => "unlimited".to_string(),
    };
    let (_, out) = c.run_job(
        "lim.sh",
        "ulimit -t; ulimit -f; ulimit -d; ulimit -m; ulimit -v; nice\n",
        &["-l", "pcput=30,file=1mb,pmem=100mb,vmem=200mb,nice=5"],
    );
    // Seconds, then KiB (bash's units).
    let nice = (own_nice + 5).min(19);
    assert_eq!(out, format!("30\n1024\n102400\n102400\n204800\n{nice}\n"));
    // A job asking nothing gets nothing more than the MOM has.
    let (_, out) = c.run_job("free.sh", "ulimit -v; nice\n", &[]);
    let vmem = own_limit(nix::sys::resource::Resource::RLIMIT_AS);
    assert_eq!(out, format!("{vmem}\n{own_nice}\n"));
    // Over the file size limit: the write stops there (SIGXFSZ ends the writer).
    let (_, out) = c.run_job(
        "big.sh",
        "head -c 4096 /dev/zero > big.out; wc -c < big.out\n",
        &["-l", "file=1kb"],
    );
    assert_eq!(out, "1024\n");

    // Over the job's CPU time: a busy loop, killed at a sample once past one second.
    let burner = c.qsub("burn.sh", "while :; do :; done\n", &["-l", "cput=1"]);
    // Ten sleeps of ~3 MB each (and two shells of ~4): every process under the 20 MB
    // address-space limit, the job's total over it.
    let sleeps = "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 60 & done\nwait\n";
    let fat = c.qsub("fat.sh", sleeps, &["-l", "vmem=20mb"]);
    c.wait_state(&burner, "C", T);
    c.wait_state(&fat, "C", T);
    assert_eq!(c.job_attr(&burner, "exit_status").as_deref(), Some("-12"));
    let err = c.read(c.work.join(format!("burn.sh.e{}", Cluster::seq(&burner))));
    assert_contains(&err, "=>> PBS: job killed: cput ");
    assert_contains(&err, " exceeded limit 1\n");
    // The CPU the kill was judged on is what the job is charged, at least.
    c.assert_charged_the_notices_cput(&burner, &err);
    assert_eq!(c.job_attr(&fat, "exit_status").as_deref(), Some("-10"));
    let err = c.read(c.work.join(format!("fat.sh.e{}", Cluster::seq(&fat))));
    assert_contains(&err, "=>> PBS: job killed: vmem ");
    assert_contains(&err, format!(" exceeded limit {}\n", 20 << 20));

    // `$ignvmem`: no address-space limit for jobs started from now on.
    let loaded = c.reconfigure_mom("n1", "$ignvmem true\n$check_poll_time 45\n");
    assert_contains(&loaded, "vmem: true");
    assert_contains(&loaded, "check_poll_secs: 45");
    let (_, out) = c.run_job("novm.sh", "ulimit -v\n", &["-l", "vmem=40mb"]);
    assert_eq!(out, "unlimited\n");
}

#[test]
fn qdel_qsig_and_walltime_end_jobs_with_torque_exit_statuses() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=4")]);
    let deleted = c.qsub("del.sh", "sleep 60\n", &[]);
    let signalled = c.qsub("sig.sh", "sleep 60\n", &[]);
    let timed = c.qsub("wall.sh", "sleep 60\n", &["-l", "walltime=2"]);
    for id in [&deleted, &signalled, &timed] {
        c.wait_state(id, "R", T);
    }
    let out = c.run("qdel", &[&deleted]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    // A name outside Torque's signal table: refused in its words, the job untouched.
    let out = c.run("qsig", &["-s", "SIGPWR", &signalled]);
    assert_eq!(
        (code(&out), stderr(&out)),
        (
            167,
            format!("qsig: Unknown/illegal signal name {signalled}\n")
        )
    );
    assert_eq!(c.job_state(&signalled).as_deref(), Some("R"));
    let out = c.run("qsig", &["-s", "USR1", &signalled]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&deleted, "C", T);
    c.wait_state(&signalled, "C", T);
    c.wait_state(&timed, "C", T);
    assert_eq!(c.job_attr(&deleted, "exit_status").as_deref(), Some("271"));
    assert_eq!(
        c.job_attr(&signalled, "exit_status").as_deref(),
        Some("266")
    );
    assert_eq!(c.job_attr(&timed, "exit_status").as_deref(), Some("-11"));
    let err = c.read(c.work.join(format!("wall.sh.e{}", Cluster::seq(&timed))));
    assert_contains(&err, "=>> PBS: job killed: walltime ");
    assert_contains(&err, " exceeded limit 2\n");
    // Walltime is enforced promptly, not on a 45 s poll.
    let used = c.job_attr(&timed, "resources_used.walltime").unwrap();
    assert!(
        used.as_str() <= "00:00:05",
        "walltime kill took too long: {used}"
    );
    // A completed job cannot be deleted again.
    let out = c.run("qdel", &[&deleted]);
    assert_eq!(code(&out), 170);
    assert_eq!(
        stderr(&out),
        format!("qdel: Request invalid for state of job MSG=invalid state for job - COMPLETE {deleted}\n")
    );
}

#[test]
fn keep_files_writes_into_home() {
    let c = Cluster::start(&one_node());
    let id = c.qsub(
        "keep.sh",
        "echo kept\n",
        &["-k", "oe", "-N", "keepjob", "-h"],
    );
    let seq = Cluster::seq(&id);
    let kept = c.user.home.join(format!("keepjob.o{seq}"));
    // A file already there (an earlier run's, say) is appended to, as Torque's MOM opens
    // it, not truncated.
    std::fs::write(&kept, "earlier\n").expect("kept file");
    std::os::unix::fs::chown(&kept, Some(c.user.uid), Some(c.user.gid)).expect("chown");
    assert!(c.run("qrls", &[&id]).status.success());
    c.wait_state(&id, "C", T);
    assert_eq!(c.read(&kept), "earlier\nkept\n");
    assert!(c.user.home.join(format!("keepjob.e{seq}")).exists());
    assert!(!c.work.join(format!("keepjob.o{seq}")).exists());
    let _ = std::fs::remove_file(kept);
    let _ = std::fs::remove_file(c.user.home.join(format!("keepjob.e{seq}")));
}

/// The script reaches the job's shell as Torque's MOM hands it over, its path on the
/// shell's stdin, so its `#!` line chooses the interpreter (an awk, Python or Perl job
/// script runs as such), and `-F`'s arguments reach it.
#[test]
fn a_job_script_runs_under_its_interpreter_line() {
    let c = Cluster::start(&one_node());
    let (_, out) = c.run_job(
        "awk.sh",
        "#!/usr/bin/awk -f\nBEGIN { print \"awk ran me with\", ARGV[1], ARGV[2] }\n",
        &["-F", "one two"],
    );
    assert_eq!(out, "awk ran me with one two\n");
}
