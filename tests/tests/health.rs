//! Torque's node health check through real daemons: `$node_check_script` output starting
//! with `ERROR` takes a node down (jobs go elsewhere, `pbsnodes` shows the message), a later
//! check brings it back; `jobstart` turns a job away from a sick node (the job is requeued,
//! not failed), `jobend` checks after each job.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_tests::*;

const T: Duration = Duration::from_secs(30);

/// A health check that prints what `verdict` holds (the test changes it).
fn health_check(c: &Cluster) -> (PathBuf, PathBuf) {
    let verdict = c.root.join("verdict");
    let script = c.root.join("healthy.sh");
    std::fs::write(&verdict, "all good\n").unwrap();
    std::fs::write(&script, format!("#!/bin/sh\ncat {}\n", verdict.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, verdict)
}

fn say(verdict: &Path, text: &str) {
    // Whole or not at all: the check may read it at any moment.
    let next = verdict.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, verdict).unwrap();
}

fn pbsnodes(c: &Cluster, node: &str) -> String {
    String::from_utf8_lossy(&c.run_as_root("pbsnodes", &[node]).stdout).to_string()
}

fn wait_node(c: &Cluster, node: &str, state: &str) {
    assert!(
        wait_until(T, || c.node_state(node).as_deref() == Some(state)),
        "{node} did not become {state}:\n{}\n{}",
        pbsnodes(c, node),
        tail(&c.mom_log(node), 20)
    );
}

#[test]
fn a_failing_health_check_keeps_jobs_off_its_node_until_it_passes() {
    let c = Cluster::start(&[NodeSpec::new("n1", "np=1"), NodeSpec::new("n2", "np=1")]);
    let (script, verdict) = health_check(&c);
    say(&verdict, "ERROR: /scratch is not mounted\n");
    c.reconfigure_mom(
        "n1",
        &format!(
            "$node_check_script {}\n$node_check_interval 1\n$status_update_time 1\n",
            script.display()
        ),
    );
    wait_node(&c, "n1", "down");
    assert_contains(
        &pbsnodes(&c, "n1"),
        ",message=ERROR: /scratch is not mounted,gres=,",
    );
    assert_contains(
        &c.mom_log("n1"),
        "Setting node to down. The node health script output the following message: ERROR: /scratch is not mounted",
    );

    // Jobs go to the healthy node; one more waits rather than go to the sick one.
    let first = c.qsub("first.sh", "sleep 60\n", &[]);
    c.wait_state(&first, "R", T);
    assert_eq!(c.job_attr(&first, "exec_host").as_deref(), Some("n2/0"));
    let second = c.qsub("second.sh", "true\n", &[]);
    c.wait_held_back(&second);

    // The check passes again: the node takes the waiting job.
    say(&verdict, "all good\n");
    wait_node(&c, "n1", "free");
    assert!(!pbsnodes(&c, "n1").contains("message="));
    c.wait_state(&second, "C", T);
    assert_eq!(c.job_attr(&second, "exec_host").as_deref(), Some("n1/0"));
    assert!(c.run("qdel", &[&first]).status.success());
    c.wait_state(&first, "C", T);

    // `jobstart`: the node looks healthy (no periodic check), the check before the start
    // fails, and the job is turned away, requeued rather than failed; the node is down
    // until a check passes (checked each period while down, though the interval is 0).
    c.reconfigure_mom(
        "n1",
        &format!(
            "$node_check_script {}\n$node_check_interval 0,jobstart\n$status_update_time 1\n",
            script.display()
        ),
    );
    wait_node(&c, "n1", "free");
    say(&verdict, "ERROR: GPU lost\n");
    let pinned = c.qsub(
        "pinned.sh",
        "echo ran on $(hostname)\n",
        &["-l", "nodes=n1"],
    );
    wait_node(&c, "n1", "down");
    assert!(
        wait_until(T, || c.mom_log("n1").contains(
            "job turned away: node health check failed: ERROR: GPU lost"
        )),
        "{}",
        tail(&c.mom_log("n1"), 20)
    );
    // Requeued, not failed: it waits for a node (the scheduler's comment replaces the
    // requeue's).
    c.wait_held_back(&pinned);
    say(&verdict, "EVENT: GPU replaced\n");
    wait_node(&c, "n1", "free");
    // A healthy node's EVENT: message is shown.
    assert_contains(&pbsnodes(&c, "n1"), ",message=EVENT: GPU replaced,");
    c.wait_state(&pinned, "C", T);
    assert_eq!(c.job_attr(&pinned, "exit_status").as_deref(), Some("0"));

    // `jobend`: the check runs when a job ends.
    c.reconfigure_mom(
        "n1",
        &format!(
            "$node_check_script {}\n$node_check_interval 0,jobend\n$status_update_time 1\n",
            script.display()
        ),
    );
    let go = c.work.join("go");
    let waiting = c.qsub(
        "waiting.sh",
        &format!(
            "for i in $(seq 600); do [ -e {} ] && exit 0; sleep 0.1; done; exit 1\n",
            go.display()
        ),
        &["-l", "nodes=n1"],
    );
    c.wait_state(&waiting, "R", T);
    say(&verdict, "ERROR: scratch full after the job\n");
    std::fs::write(&go, "").unwrap();
    c.wait_state(&waiting, "C", T);
    wait_node(&c, "n1", "down");
    assert_contains(
        &pbsnodes(&c, "n1"),
        "message=ERROR: scratch full after the job",
    );

    // No health check any more: the last verdict no longer stands.
    c.reconfigure_mom("n1", "");
    wait_node(&c, "n1", "free");
}
