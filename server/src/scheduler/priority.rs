//! Job ordering: which pending job is considered first.
//!
//! Torque's `pbs_sched` (FIFO) sorts by queue priority, then job priority (`qsub -p`), then
//! submission order. Placement walks jobs in this order, so it is the whole of today's fairness
//! policy; fair share or age boosts would be further keys here, each with its own test.

use std::cmp::{Ordering, Reverse};

use super::PendingJob;

/// Compares two jobs: the one that should be considered first is `Less`.
///
/// Keys: queue priority (higher first), `-p` priority (higher first), qtime (older first),
/// job number (lower first). The job number makes the order total, so a pass is deterministic
/// even when jobs share a second of qtime.
pub fn compare(a: &PendingJob, b: &PendingJob) -> Ordering {
    let key = |j: &PendingJob| {
        (
            Reverse(j.queue_priority),
            Reverse(j.priority),
            j.qtime,
            j.seq,
        )
    };
    key(a).cmp(&key(b))
}

/// Indices into `jobs` in the order they are to be considered.
pub fn order(jobs: &[PendingJob]) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..jobs.len()).collect();
    indices.sort_by(|&a, &b| compare(&jobs[a], &jobs[b]));
    indices
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{chunk, job, nodes_req};
    use super::*;

    fn pj(seq: u64, queue_priority: i64, priority: i64, qtime: i64) -> PendingJob {
        PendingJob {
            queue_priority,
            priority,
            qtime,
            ..job(seq, nodes_req(vec![chunk(1, 1)]))
        }
    }

    #[test]
    fn order_table() {
        // (name, jobs as (seq, queue_priority, priority, qtime), expected seq order)
        type Case<'a> = (&'a str, &'a [(u64, i64, i64, i64)], &'a [u64]);
        let cases: &[Case<'_>] = &[
            ("empty", &[], &[]),
            ("fifo by qtime", &[(1, 0, 0, 20), (2, 0, 0, 10)], &[2, 1]),
            (
                "seq breaks qtime ties",
                &[(5, 0, 0, 10), (3, 0, 0, 10)],
                &[3, 5],
            ),
            ("-p beats age", &[(1, 0, 0, 10), (2, 0, 5, 20)], &[2, 1]),
            (
                "negative -p goes last",
                &[(1, 0, -1, 10), (2, 0, 0, 20)],
                &[2, 1],
            ),
            (
                "queue priority beats -p",
                &[(1, 0, 1023, 10), (2, 1, -1024, 20)],
                &[2, 1],
            ),
            (
                "all keys",
                &[
                    (1, 0, 0, 10),
                    (2, 1, 0, 30),
                    (3, 1, 5, 40),
                    (4, 0, 5, 5),
                    (5, 1, 0, 30),
                ],
                &[3, 2, 5, 4, 1],
            ),
        ];
        for (name, spec, want) in cases {
            let jobs: Vec<PendingJob> = spec.iter().map(|&(s, q, p, t)| pj(s, q, p, t)).collect();
            let got: Vec<u64> = order(&jobs).into_iter().map(|i| jobs[i].seq).collect();
            assert_eq!(got, *want, "{name}");
        }
    }
}
