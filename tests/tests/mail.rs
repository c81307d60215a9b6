//! Job mail through a real `pbs_server`: `qsub -m abe -M ...`, the forced mail Torque
//! sends (a limit kill, a qdel by someone else), the server's mail attributes, and a failing
//! sendmail. The server is given a stand-in sendmail (`--sendmail`) that keeps each message
//! it is handed, with its arguments, as a file.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

/// A stand-in sendmail: each message, its arguments first (`ARGS: ...`), in a file of its
/// own under `box`, numbered in the order sendmail ran (the server runs one at a time) and
/// renamed into place once whole; refuses `fail@lab.example`.
fn fake_sendmail(root: &Path) -> (PathBuf, PathBuf) {
    let mailbox = root.join("mailbox");
    std::fs::create_dir_all(&mailbox).unwrap();
    let program = root.join("sendmail");
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\n\
             case \" $* \" in *' fail@lab.example '*) exit 75;; esac\n\
             n=$(cat {box}/count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {box}/count\n\
             f={box}/$(printf %06d $n)\n\
             {{ echo \"ARGS: $*\"; cat; }} > \"$f\" && mv \"$f\" \"$f.mail\"\n",
            box = mailbox.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    (program, mailbox)
}

/// Every message delivered so far, in the order sendmail was run.
fn messages(mailbox: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(mailbox)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "mail"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// The messages once there are `n`; panics with the server's log if they do not come.
fn wait_messages(c: &Cluster, mailbox: &Path, n: usize) -> Vec<String> {
    assert!(
        wait_until(T, || messages(mailbox).len() >= n),
        "expected {n} messages, have {:?}\n{}",
        messages(mailbox),
        tail(&c.server_log(), 40)
    );
    messages(mailbox)
}

#[test]
fn jobs_mail_their_owners_as_torque_does() {
    let root = tempfile::tempdir().unwrap();
    let (sendmail, mailbox) = fake_sendmail(root.path());
    let c = Cluster::start_with(
        &[NodeSpec::new("n1", "np=2")],
        &["--sendmail", sendmail.to_str().unwrap()],
    );
    let user = c.user.name.clone();

    // -m abe to two addresses: a begin mail and an end mail with the exit status and usage.
    let id = c.qsub(
        "abe.sh",
        "exit 3\n",
        &["-m", "abe", "-M", "ann@lab.example,bob@lab.example"],
    );
    c.wait_state(&id, "C", T);
    let mail = wait_messages(&c, &mailbox, 2);
    assert_eq!(
        mail[0],
        format!(
            "ARGS: -f adm ann@lab.example bob@lab.example\n\
             To: ann@lab.example,bob@lab.example\nSubject: PBS JOB {id}\nPrecedence: bulk\n\n\
             PBS Job Id: {id}\nJob Name:   abe.sh\nExec host:  n1/0\nBegun execution\n"
        )
    );
    let out = c.job_attr(&id, "Output_Path").unwrap();
    let err = c.job_attr(&id, "Error_Path").unwrap();
    let end = &mail[1];
    let head = format!(
        "ARGS: -f adm ann@lab.example bob@lab.example\n\
         To: ann@lab.example,bob@lab.example\nSubject: PBS JOB {id}\nPrecedence: bulk\n\n\
         PBS Job Id: {id}\nJob Name:   abe.sh\nExec host:  n1/0\nExecution terminated\n\
         Exit_status=3\nresources_used.cput="
    );
    assert!(end.starts_with(&head), "{end}");
    assert!(end.contains("\nresources_used.walltime="), "{end}");
    assert!(
        end.ends_with(&format!("\nError_Path: {err}\nOutput_Path: {out}\n")),
        "{end}"
    );

    // What sendmail could take for an option, or a header, is refused at submission.
    for bad in ["-oQ/tmp", "ann@lab.example,\nBcc: eve@lab.example"] {
        let out = c.submit_as(&c.user, &c.work, "bad.sh", "true\n", &["-M", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("Mail_Users"),
            "{bad:?}: {err}"
        );
    }

    // Torque's default Mail_Points is `a`: no begin mail; a walltime kill is an abort, sent
    // to the owner at the host it submitted from.
    let killed = c.qsub("long.sh", "sleep 60\n", &["-l", "walltime=00:00:01"]);
    c.wait_state(&killed, "C", T);
    let mail = wait_messages(&c, &mailbox, 3);
    let abort = &mail[2];
    let owner = format!("{user}@{}", host());
    assert!(
        abort.starts_with(&format!(
            "ARGS: -f adm {owner}\nTo: {owner}\nSubject: PBS JOB {killed}\nPrecedence: bulk\n\n\
             PBS Job Id: {killed}\nJob Name:   long.sh\nExec host:  n1/0\n\
             Aborted by PBS Server \n\
             Job exceeded its walltime limit. Job was aborted\nSee Administrator for help\n\
             Exit_status=-11\n"
        )),
        "{abort}"
    );
    assert!(!abort.contains("Output_Path"), "{abort}");

    // Output that cannot be delivered: a forced mail with the MOM's words, whatever
    // Mail_Points says.
    let locked = c.root.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let lost = c.qsub(
        "undelivered.sh",
        "echo hello\n",
        &["-o", &locked.join("out").display().to_string()],
    );
    c.wait_state(&lost, "C", T);
    let mail = wait_messages(&c, &mailbox, 4);
    let other = &mail[3];
    assert!(
        other.starts_with(&format!(
            "ARGS: -f adm {owner}\nTo: {owner}\nSubject: PBS JOB {lost}\nPrecedence: bulk\n\n\
             PBS Job Id: {lost}\nJob Name:   undelivered.sh\nExec host:  n1/0\n\
             An error has occurred processing your job, see below.\n\
             Post job file processing error; job {lost} on host n1\n\
             Unable to copy file "
        )),
        "{other}"
    );
    assert!(other.contains("\n*** error from copy\n"), "{other}");
    assert!(
        other.contains("\nOutput retained on that host in: "),
        "{other}"
    );

    if !is_root() {
        eprintln!("the rest needs root: a qdel by someone else, and qmgr");
        return;
    }
    // The server's mail attributes, set by a manager and shown as Torque shows them.
    for command in [
        "set server mail_domain = lab.example",
        "set server mail_from = pbs@lab.example",
        "set server mail_subject_fmt = \"[lab] job %i (%j)\"",
    ] {
        let out = c.run_as_root("qmgr", &["-c", command]);
        assert!(out.status.success(), "{command}: {out:?}");
    }
    let server =
        String::from_utf8_lossy(&c.run_as_root("qmgr", &["-c", "print server"]).stdout).to_string();
    for line in [
        "set server mail_from = pbs@lab.example\n",
        "set server mail_domain = lab.example\n",
        "set server mail_subject_fmt = \"[lab] job %i (%j)\"\n",
    ] {
        assert!(server.contains(line), "{server}");
    }
    // Never an option for the sendmail the server runs as root.
    let refused = c.run_as_root("qmgr", &["-c", "set server mail_from = -oQ/tmp"]);
    assert!(!refused.status.success());

    // The owner deleting their own queued job gets no mail (even with -m a); root deleting
    // one gets a forced mail, at the mail domain, with qdel's message. The postman sends in
    // order, so the second message's arrival shows the first delete sent none.
    let own = c.qsub("own.sh", "true\n", &["-h"]);
    assert!(c.run("qdel", &[&own]).status.success());
    let theirs = c.qsub("theirs.sh", "true\n", &["-h", "-m", "n"]);
    let out = c.run_as_root("qdel", &["-m", "node n1 is being repaired", &theirs]);
    assert!(out.status.success(), "{out:?}");
    let mail = wait_messages(&c, &mailbox, 5);
    assert_eq!(mail.len(), 5, "{mail:?}");
    assert_eq!(
        mail[4],
        format!(
            "ARGS: -f pbs@lab.example {user}@lab.example\nTo: {user}@lab.example\n\
             Subject: [lab] job {theirs} (theirs.sh)\nPrecedence: bulk\n\n\
             PBS Job Id: {theirs}\nJob Name:   theirs.sh\njob deleted\n\
             Job deleted at request of root@{}\nnode n1 is being repaired\n",
            host()
        )
    );

    // A sendmail that fails is logged in Torque's words, and the job is unaffected.
    let failing = c.qsub("fail.sh", "true\n", &["-m", "e", "-M", "fail@lab.example"]);
    c.wait_state(&failing, "C", T);
    assert!(
        wait_until(T, || c
            .server_log()
            .contains("Email 'e' to fail@lab.example failed: Child process")),
        "{}",
        tail(&c.server_log(), 20)
    );
    assert!(c.server_log().contains("returned 75"));
    assert_eq!(c.job_attr(&failing, "exit_status").as_deref(), Some("0"));

    // `mail_domain = never`: nothing at all, forced mail included; the job after it, under
    // a domain again, shows the postman got past it.
    assert!(c
        .run_as_root("qmgr", &["-c", "set server mail_domain = never"])
        .status
        .success());
    let silent = c.qsub("silent.sh", "true\n", &["-h"]);
    assert!(c.run_as_root("qdel", &[&silent]).status.success());
    assert!(c
        .run_as_root("qmgr", &["-c", "unset server mail_domain"])
        .status
        .success());
    let last = c.qsub("last.sh", "true\n", &["-h"]);
    assert!(c.run_as_root("qdel", &[&last]).status.success());
    let mail = wait_messages(&c, &mailbox, 6);
    assert_eq!(mail.len(), 6, "{mail:?}");
    assert!(
        mail[5].starts_with(&format!("ARGS: -f pbs@lab.example {owner}\n")),
        "{}",
        mail[5]
    );
    assert!(mail[5].contains(&format!("PBS Job Id: {last}\n")));
}
