//! A job array's slot limit (`qsub -t 1-100%5`): at most that many of its sub-jobs run at
//! once. A rule on the job, not on nodes, so it is asked before any node is looked at: a
//! sub-job held back by it waits for its siblings, not for nodes, and takes no reservation.

use std::collections::HashMap;

use super::PendingJob;

/// A sub-job's array and its limit, as the snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArraySlots {
    /// The array's number.
    pub array: u64,
    /// `%N`.
    pub limit: u32,
    /// Sub-jobs of the array running when the snapshot was taken.
    pub running: u32,
}

/// Starts decided so far in this pass, per array.
pub type StartsThisPass = HashMap<u64, u32>;

/// Why `job` may not start now, if its array is at its limit.
pub fn refusal(job: &PendingJob, starts: &StartsThisPass) -> Option<String> {
    let slots = job.array_slots?;
    let running = slots.running + starts.get(&slots.array).copied().unwrap_or(0);
    (running >= slots.limit).then(|| {
        format!(
            "Not Running: array slot limit is {} and {running} of its jobs are running",
            slots.limit
        )
    })
}

/// Counts a start of `job` against its array's limit.
pub fn started(job: &PendingJob, starts: &mut StartsThisPass) {
    if let Some(slots) = job.array_slots {
        *starts.entry(slots.array).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::testutil::{chunk, job, node, nodes_req};
    use crate::scheduler::{schedule, Decision, Reach, Settings, Snapshot};

    fn sub_job(seq: u64, limit: u32, running: u32) -> PendingJob {
        PendingJob {
            array_slots: Some(ArraySlots {
                array: 7,
                limit,
                running,
            }),
            ..job(seq, nodes_req(vec![chunk(1, 1)]))
        }
    }

    #[test]
    fn counts_the_running_and_this_pass_starts() {
        let mut starts = StartsThisPass::new();
        assert_eq!(refusal(&sub_job(1, 2, 1), &starts), None);
        started(&sub_job(1, 2, 1), &mut starts);
        assert_eq!(
            refusal(&sub_job(2, 2, 1), &starts).as_deref(),
            Some("Not Running: array slot limit is 2 and 2 of its jobs are running")
        );
        // Another array, and a job in none, are not counted against it.
        let other = PendingJob {
            array_slots: Some(ArraySlots {
                array: 8,
                limit: 1,
                running: 0,
            }),
            ..job(3, nodes_req(vec![chunk(1, 1)]))
        };
        assert_eq!(refusal(&other, &starts), None);
        assert_eq!(
            refusal(&job(4, nodes_req(vec![chunk(1, 1)])), &starts),
            None
        );
    }

    #[test]
    fn a_pass_starts_no_more_than_the_limit_and_the_rest_wait_without_holding_nodes() {
        let snapshot = Snapshot {
            now: 0,
            // Limit 2, one running: one more starts; then a job of no array still starts.
            jobs: vec![
                sub_job(1, 2, 1),
                sub_job(2, 2, 1),
                sub_job(3, 2, 1),
                job(4, nodes_req(vec![chunk(1, 1)])),
            ],
            nodes: vec![node("n1", 4)],
            running: Vec::new(),
            settings: Settings::default(),
        };
        let outcome: Vec<(u64, bool)> = schedule(&snapshot, Reach::AllJobs)
            .iter()
            .map(|d| (d.seq(), matches!(d, Decision::Start { .. })))
            .collect();
        assert_eq!(outcome, [(1, true), (2, false), (3, false), (4, true)]);
    }
}
