//! Interactive jobs (`qsub -I`): the job's shell runs on a worker with the user's terminal,
//! carried through the server; qsub says what Torque's says; the job goes with its qsub.

use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

/// What qsub -I asks on Ctrl-C while its job waits (Torque's words).
const CTRL_C_QUESTION: &str = "Do you wish to terminate the job and exit (y|[n])? ";

/// Ctrl-C to a waiting qsub -I, and `answer` once it has asked.
fn answer_ctrl_c(terminal: &mut Terminal, answer: &str) {
    terminal.type_keys("\x03");
    terminal.expect(CTRL_C_QUESTION, T);
    terminal.type_keys(&format!("{answer}\n"));
}

/// The id in `qsub: waiting for job ID to start`, once it is on the screen.
fn waiting_for(terminal: &Terminal) -> String {
    let screen = terminal.expect(" to start", T);
    let after = screen
        .split("qsub: waiting for job ")
        .nth(1)
        .expect("the waiting line");
    after.split(' ').next().expect("a job id").to_string()
}

/// Waits for `ready`, then for the shell's prompt (`$ ` ends bash's, whatever the profile
/// makes of it): keys typed earlier would reach the terminal before the shell reads it.
fn at_prompt(terminal: &Terminal) {
    terminal.expect("ready\r\n\r\n", T);
    assert!(
        wait_until(T, || {
            let screen = terminal.text();
            screen
                .split("ready\r\n\r\n")
                .nth(1)
                .is_some_and(|shell| shell.contains("$ "))
        }),
        "no prompt:\n{}",
        terminal.text()
    );
}

#[test]
fn an_interactive_job_runs_a_login_shell_on_the_users_terminal() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    let mut terminal = c.on_terminal("qsub", &["-I"]);
    let id = waiting_for(&terminal);
    terminal.expect(&format!("qsub: job {id} ready\r\n\r\n"), T);
    at_prompt(&terminal);

    // The job is running, interactive, not rerunnable, and named as Torque names it.
    assert_eq!(c.job_state(&id).as_deref(), Some("R"));
    assert_eq!(c.job_attr(&id, "interactive").as_deref(), Some("True"));
    assert_eq!(c.job_attr(&id, "Rerunable").as_deref(), Some("False"));
    assert_eq!(c.job_attr(&id, "Job_Name").as_deref(), Some("STDIN"));

    // The shell is the user's, at home, on a terminal of qsub's size and type, with the
    // interactive environment.
    terminal.type_keys(
        "echo \"E=$PBS_ENVIRONMENT T=$TERM W=$PWD U=$(id -un) J=$PBS_JOBID S=$(stty size) B=${ENVIRONMENT:-none}.\"\n",
    );
    let user = test_user();
    terminal.expect(
        &format!(
            "E=PBS_INTERACTIVE T=capstan-test-term W={} U={} J={id} S=24 80 B=none.",
            user.home.display(),
            user.name
        ),
        T,
    );
    // qmsg reaches the terminal: it is the job's stdout and stderr.
    let out = c.run("qmsg", &["a word from the operator", &id]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    terminal.expect("a word from the operator", T);

    terminal.type_keys("exit 3\n");
    terminal.expect(&format!("\r\nqsub: job {id} completed\r\n"), T);
    // qsub's status is 0 whatever the job's, as Torque's; the job's is recorded.
    assert_eq!(terminal.wait(T).code(), Some(0));
    assert_eq!(c.job_attr(&id, "exit_status").as_deref(), Some("3"));
    // Its output went to the terminal: no output files.
    let seq = Cluster::seq(&id);
    for dir in [&c.work, &user.home] {
        assert!(
            !dir.join(format!("STDIN.o{seq}")).exists(),
            "{}",
            dir.display()
        );
        assert!(
            !dir.join(format!("STDIN.e{seq}")).exists(),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn an_interactive_job_goes_with_its_qsub() {
    let mut c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);

    // Ctrl-C while it waits: Torque's question; "n" keeps waiting (and qsub gone, the job
    // goes too), "y" deletes the job.
    let mut terminal = c.on_terminal("qsub", &["-I", "-h"]);
    let kept = waiting_for(&terminal);
    answer_ctrl_c(&mut terminal, "n");
    terminal.expect(&format!("{CTRL_C_QUESTION}n\r\n"), T);
    // qsub went on waiting: released, the job starts on its terminal.
    assert_eq!(code(&c.run("qrls", &[&kept])), 0);
    terminal.expect(&format!("qsub: job {kept} ready"), T);
    drop(terminal);
    c.wait_state(&kept, "C", T);

    let mut terminal = c.on_terminal("qsub", &["-I", "-h"]);
    let held = waiting_for(&terminal);
    answer_ctrl_c(&mut terminal, "y");
    terminal.expect(&format!("Job {held} is being deleted"), T);
    assert_eq!(terminal.wait(T).code(), Some(0));
    assert_eq!(c.job_state(&held).as_deref(), Some("C"));

    // Its terminal goes with its run: it may not be made rerunnable.
    let mut terminal = c.on_terminal("qsub", &["-I", "-h"]);
    let kept = waiting_for(&terminal);
    let out = c.run("qalter", &["-r", "y", &kept]);
    assert_ne!(
        code(&out),
        0,
        "qalter -r y of an interactive job must be refused"
    );
    assert_contains(&stderr(&out), "an interactive job is not rerunable");
    assert_eq!(c.job_attr(&kept, "Rerunable").as_deref(), Some("False"));
    terminal.child.kill().expect("kill qsub");
    c.wait_state(&kept, "C", T);

    // Deleted by someone else while it waits: Torque's "apparently deleted", status 1.
    let mut terminal = c.on_terminal("qsub", &["-I", "-h"]);
    let deleted = waiting_for(&terminal);
    assert_eq!(code(&c.run("qdel", &[&deleted])), 0);
    terminal.expect(&format!("qsub: job {deleted} apparently deleted"), T);
    assert_eq!(terminal.wait(T).code(), Some(1));

    // While it waits for a node, it waits for its qsub too: gone, the job is deleted.
    let blocker = c.qsub("block.sh", "sleep 600\n", &[]);
    c.wait_state(&blocker, "R", T);
    let terminal = c.on_terminal("qsub", &["-I"]);
    let queued = waiting_for(&terminal);
    assert_eq!(c.job_state(&queued).as_deref(), Some("Q"));
    drop(terminal);
    c.wait_state(&queued, "C", T);
    assert_eq!(code(&c.run("qdel", &[&blocker])), 0);
    c.wait_state(&blocker, "C", T);

    // Running, its qsub killed: the job's terminal hangs up and the job ends.
    let mut terminal = c.on_terminal("qsub", &["-I"]);
    let running = waiting_for(&terminal);
    at_prompt(&terminal);
    terminal.type_keys("echo busy-$((2 + 2)); sleep 600\n");
    terminal.expect("busy-4", T);
    terminal.child.kill().expect("kill qsub");
    c.wait_state(&running, "C", T);

    // Keys still arriving when the shell exits (a paste it never read) are dropped, and the
    // session ends as usual.
    let mut terminal = c.on_terminal("qsub", &["-I"]);
    let pasted = waiting_for(&terminal);
    at_prompt(&terminal);
    terminal.type_keys("sleep 2; exit 7\n");
    terminal.type_in_background(format!("{}\n", "x".repeat(1023)).repeat(2048));
    terminal.expect(&format!("qsub: job {pasted} completed"), T);
    assert_eq!(terminal.wait(T).code(), Some(0));
    assert_eq!(c.job_attr(&pasted, "exit_status").as_deref(), Some("7"));

    // A paste larger than every buffer on the way, echoed back as it is typed: keys and
    // output move at once, neither waits for the other.
    let mut terminal = c.on_terminal("qsub", &["-I"]);
    let echoed = waiting_for(&terminal);
    at_prompt(&terminal);
    // (What is expected is what the shell prints, not the typed line it echoes.)
    terminal.type_keys("cat > /dev/null; echo cat-$((1 + 1))-done\n");
    let line = format!("{}\n", "p".repeat(1023));
    terminal.type_in_background(line.repeat(4096) + "\x04");
    terminal.expect("cat-2-done", Duration::from_secs(60));
    terminal.type_keys("exit\n");
    terminal.expect(&format!("qsub: job {echoed} completed"), T);
    assert_eq!(terminal.wait(T).code(), Some(0));

    // Walltime is enforced, and the kill notice shown on the terminal.
    let mut terminal = c.on_terminal("qsub", &["-I", "-l", "walltime=1"]);
    let timed = waiting_for(&terminal);
    at_prompt(&terminal);
    terminal.type_keys("sleep 600\n");
    terminal.expect("=>> PBS: job killed: walltime", T);
    terminal.expect(&format!("qsub: job {timed} completed"), T);
    assert_eq!(terminal.wait(T).code(), Some(0));
    assert_eq!(c.job_attr(&timed, "exit_status").as_deref(), Some("-11"));

    // A waiting interactive job does not outlive the server its qsub was attached to.
    let terminal = c.on_terminal("qsub", &["-I", "-h"]);
    let orphan = waiting_for(&terminal);
    c.kill_server();
    drop(terminal);
    c.start_server();
    c.wait_state(&orphan, "C", T);
}

#[test]
fn qsub_refuses_interactive_jobs_it_cannot_run_and_x_runs_a_command() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1")]);
    // No terminal: Torque's words.
    let out = c.run_with_input("qsub", &["-I"], b"");
    assert_eq!(code(&out), 1);
    assert_eq!(
        stderr(&out),
        "qsub:\tstandard input and output must be a terminal for \n\tinteractive job submission\n"
    );
    let out = c.run_with_input("qsub", &["-I", "-t", "1-2"], b"");
    assert_eq!(code(&out), 2);
    assert_eq!(
        stderr(&out),
        "qsub: interactive job can not be job array.\n"
    );
    assert_eq!(stdout(&c.run("qselect", &[])), "", "nothing was submitted");

    // -x: the script runs as the shell's command, also without a terminal.
    let script = c.script(
        "hello.sh",
        "#!/bin/sh\necho \"hello from $PBS_ENVIRONMENT\"\n",
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let out = c.run_with_input("qsub", &["-I", "-x", script.to_str().unwrap()], b"");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("qsub: waiting for job "), "{text}");
    assert_contains(&text, "hello from PBS_INTERACTIVE");
    assert_contains(&text, " completed\n");
}
