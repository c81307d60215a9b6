//! Bad input gets Torque's message and exit status (reference table 2.4) and changes nothing.

use capstan_tests::*;

const USAGE: &str = "usage: qsub [-a date_time] [-A account_string] [-b secs]
    [-c [ none | { enabled | periodic | shutdown |
    depth=<int> | dir=<path> | interval=<minutes>}... ]
    [-C directive_prefix] [-d path] [-D path]
    [-e path] [-h] [-I] [-j oe|eo|n] [-k {oe}] [-K <kill delay seconds>] 
    [-l resource_list] [-m n|{abe}] [-M user_list] [-N jobname] [-o path] 
    [-p priority] [-P proxy_user [-J <jobid]] [-q queue] [-r y|n] 
    [-S path] [-t number_to_submit] [-T type]  [-u user_list] [-w] path
    [-W additional_attributes] [-v variable_list] [-V ] [-x] [-X] [-z] [script]
";

#[test]
fn submit_errors_match_torque_and_leave_the_server_unchanged() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=2")]);
    c.script("job.sh", "sleep 0\n");
    let feasible = "qsub: submit error (Job exceeds queue resource limits MSG=cannot locate feasible nodes (nodes file is empty, all systems are busy, or no nodes have the requested feature))\n";
    let cases: &[(&[&str], &str, i32)] = &[
        (&["-q", "nosuch"], "qsub: submit error (Unknown queue MSG=requested queue not found)\n", 172),
        (&["-l", "walltime=abc"], "qsub: submit error (Illegal attribute or resource value for Resource_List.walltime)\n", 168),
        (&["-l", "walltime=1:2:3:4:5"], "qsub: submit error (Illegal attribute or resource value for Resource_List.walltime)\n", 168),
        (&["-l", "mem=12zz"], "qsub: submit error (Illegal attribute or resource value for Resource_List.mem)\n", 168),
        (&["-l", "foo=bar"], "qsub: submit error (Unknown resource type  Resource_List.foo)\n", 189),
        (&["-l", "nodes=abc:ppn=x"], "qsub: submit error (Command syntax invalid MSG=Invalid Syntax)\n", 27),
        (&["-l", "nodes=2:ppn=4"], feasible, 190),
        (&["-l", "nodes=1:ppn=4"], feasible, 190),
        (&["-W", "foo=bar"], "qsub: submit error (Undefined attribute  MSG=detected presence of an unknown attribute)\n", 154),
        (&["-W", "depend=afterok:999.tsrv"], "qsub: submit error (Invalid Job Dependency)\n", 208),
        (&["-l", "walltime"], "Cannot find an attr=value pair in comma separated value 'walltime'\n", 1),
    ];
    for (args, message, exit) in cases {
        let mut all = args.to_vec();
        all.push("job.sh");
        let out = c.run("qsub", &all);
        assert_eq!(stderr(&out), *message, "qsub {all:?}");
        assert_eq!(code(&out), *exit, "qsub {all:?}");
        assert_eq!(stdout(&out), "", "qsub {all:?}");
    }
    let out = c.run("qsub", &["nosuchfile.sh"]);
    assert_eq!(
        stderr(&out),
        "qsub: script file 'nosuchfile.sh' cannot be loaded - No such file or directory\n"
    );
    assert_eq!(code(&out), 1);

    // Client-side option errors: Torque's bracketed message, a blank line, the usage, exit 2.
    for (args, message) in [
        (vec!["-m", "xyz"], "[qsub: illegal -m value]"),
        (vec!["-j", "xx"], "[qsub: illegal -j value]"),
        (vec!["-p", "5000"], "[qsub: illegal -p value]"),
        (vec!["-a", "notatime"], "[qsub: illegal -a value]"),
        (vec!["-d", "/nonexistent/dir"], "[qsub: illegal -d value]"),
        (
            vec!["-W", "depend=bogus:1"],
            "[qsub: illegal -W dependency value: 'bogus:1']",
        ),
    ] {
        let mut all = args.clone();
        all.push("job.sh");
        let out = c.run("qsub", &all);
        assert_eq!(code(&out), 2, "qsub {all:?}: {}", stderr(&out));
        // Torque prints "[%s]\n\n%s%s\n": the message, a blank line, the usage, a newline.
        assert_eq!(
            stderr(&out),
            format!("{message}\n\n{USAGE}\n"),
            "qsub {all:?}"
        );
    }

    // A malformed directive is an error too.
    c.script("baddirective.sh", "#PBS -m xyz\ntrue\n");
    let out = c.run("qsub", &["baddirective.sh"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // An empty script and a binary file are refused before they reach the server.
    c.script("empty.sh", "");
    let out = c.run("qsub", &["empty.sh"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("qsub: "), "{}", stderr(&out));
    std::fs::write(c.work.join("binary.sh"), b"\x7fELF\x00\x01\x02").unwrap();
    let out = c.run("qsub", &["binary.sh"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(stderr(&out).starts_with("qsub: "), "{}", stderr(&out));

    // Nothing was created: no job is listed, and the next job runs normally.
    let out = c.run("qstat", &[]);
    assert_eq!(stdout(&out), "", "qstat after rejected submissions");
    assert!(out.status.success());
    let id = c.qsub("job.sh", "true\n", &[]);
    c.wait_state(&id, "C", std::time::Duration::from_secs(30));
}

#[test]
fn qstat_errors_and_empty_listing() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let out = c.run("qstat", &[]);
    assert_eq!(stdout(&out), "");
    assert_eq!(code(&out), 0);
    let out = c.run("qstat", &["999"]);
    assert_eq!(
        stderr(&out),
        format!("qstat: Unknown Job Id Error 999.{SERVER_NAME}\n")
    );
    assert_eq!(code(&out), 153);
    let out = c.run("qstat", &["nosuchq@tsrv"]);
    assert_eq!(stderr(&out), "qstat: Unknown queue destination nosuchq\n");
    assert_eq!(code(&out), 172);
    let out = c.run("qstat", &["-Z"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).starts_with("qstat: invalid option -- 'Z'\n"));
}
