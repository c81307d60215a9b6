//! An interactive job (`qsub -I`) starts only while its qsub is attached: its shell runs on
//! the terminal that qsub holds, and a job started with no one at the terminal would run an
//! interactive shell for no one (see `crate::interactive`). A rule on the job, asked before
//! any node is looked at, so such a job takes no reservation.

use super::PendingJob;

/// Why `job` may not start now, if it waits for its qsub.
pub fn refusal(job: &PendingJob) -> Option<String> {
    job.awaiting_terminal
        .then(|| "Not Running: its interactive qsub is not connected".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{chunk, job, node, nodes_req};
    use crate::scheduler::{schedule, Decision, Reach, Settings, Snapshot};

    #[test]
    fn an_interactive_job_without_its_qsub_waits_and_others_go_on() {
        let waiting = PendingJob {
            awaiting_terminal: true,
            ..job(1, nodes_req(vec![chunk(1, 1)]))
        };
        let snapshot = Snapshot {
            now: 0,
            jobs: vec![waiting, job(2, nodes_req(vec![chunk(1, 1)]))],
            nodes: vec![node("n1", 1)],
            running: Vec::new(),
            settings: Settings::default(),
        };
        let decisions = schedule(&snapshot, Reach::AllJobs);
        assert!(matches!(
            &decisions[0],
            Decision::Wait { seq: 1, reason } if reason == "Not Running: its interactive qsub is not connected"
        ));
        assert!(matches!(&decisions[1], Decision::Start { seq: 2, .. }));
        assert!(refusal(&job(3, nodes_req(vec![chunk(1, 1)]))).is_none());
    }
}
