//! Job ordering: which pending job is considered first.
//!
//! Torque's `pbs_sched` (FIFO) sorts by queue priority, then job priority (`qsub -p`), then
//! submission order. Capstan combines the same keys, plus age and fair share, into one value,
//! `queue × w_queue + p × w_priority + age_hours × w_age − usage_share × w_fairshare`, each
//! weight a server setting ([`Weights`]). The default weights (queue far above `-p`, no age,
//! no fair share) give exactly Torque's order; ties fall back to the queue rank (the order
//! jobs entered their queues, which qorder swaps), then job number, so a pass is
//! deterministic.

use std::cmp::Ordering;

use super::PendingJob;

/// Weights of the priority terms (server settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub queue: f64,
    pub priority: f64,
    /// Per hour waited.
    pub age_per_hour: f64,
    /// Subtracted times the owner's share of recent use (`0..=1`).
    pub fairshare: f64,
}

impl Default for Weights {
    /// Torque's order: any queue priority step outweighs the whole `-p` range.
    fn default() -> Self {
        Weights {
            queue: 10_000.0,
            priority: 1.0,
            age_per_hour: 0.0,
            fairshare: 0.0,
        }
    }
}

/// The combined priority of `job` at `now` (higher runs first).
pub fn value(job: &PendingJob, now: i64, w: &Weights) -> f64 {
    combined(
        job.queue_priority,
        job.priority,
        job.qtime,
        job.usage_share,
        now,
        w,
    )
}

fn combined(
    queue_priority: i64,
    priority: i64,
    qtime: i64,
    usage_share: f64,
    now: i64,
    w: &Weights,
) -> f64 {
    let age_hours = (now - qtime).max(0) as f64 / 3600.0;
    queue_priority as f64 * w.queue + priority as f64 * w.priority + age_hours * w.age_per_hour
        - usage_share.clamp(0.0, 1.0) * w.fairshare
}

/// Where a job stands in line at one moment: its combined value, then its queue rank (the
/// order jobs entered their queues, as qorder leaves it), then job number. Built from the
/// job's fields, so the dispatcher can rank a deep queue before it builds a [`PendingJob`]
/// for each job it will show the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    value: f64,
    rank: u64,
    seq: u64,
}

impl Key {
    pub fn new(
        (seq, rank): (u64, u64),
        (queue_priority, priority, qtime): (i64, i64, i64),
        usage_share: f64,
        now: i64,
        w: &Weights,
    ) -> Key {
        Key {
            value: combined(queue_priority, priority, qtime, usage_share, now, w),
            rank,
            seq,
        }
    }

    pub fn of(job: &PendingJob, now: i64, w: &Weights) -> Key {
        Key {
            value: value(job, now, w),
            rank: job.rank,
            seq: job.seq,
        }
    }
}

/// The job to consider first is the lesser.
impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        other
            .value
            .total_cmp(&self.value)
            .then(self.rank.cmp(&other.rank))
            .then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

/// Compares two jobs: the one that should be considered first is `Less`.
pub fn compare(a: &PendingJob, b: &PendingJob, now: i64, w: &Weights) -> Ordering {
    Key::of(a, now, w).cmp(&Key::of(b, now, w))
}

/// Indices into `jobs` in the order they are to be considered.
pub fn order(jobs: &[PendingJob], now: i64, w: &Weights) -> Vec<usize> {
    let keys: Vec<Key> = jobs.iter().map(|j| Key::of(j, now, w)).collect();
    let mut indices: Vec<usize> = (0..jobs.len()).collect();
    indices.sort_by_key(|&i| keys[i]);
    indices
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{chunk, job, nodes_req};
    use super::*;

    /// A job that entered its queue at `qtime`, ranked in that order.
    fn pj(seq: u64, queue_priority: i64, priority: i64, qtime: i64) -> PendingJob {
        PendingJob {
            queue_priority,
            priority,
            qtime,
            rank: qtime as u64,
            ..job(seq, nodes_req(vec![chunk(1, 1)]))
        }
    }

    /// qorder swaps two jobs' ranks, not their queue times: the rank decides among equals.
    #[test]
    fn the_rank_not_the_queue_time_decides_among_equals() {
        let first_in = PendingJob {
            rank: 20,
            ..pj(1, 0, 0, 10)
        };
        let second_in = PendingJob {
            rank: 10,
            ..pj(2, 0, 0, 20)
        };
        let jobs = [first_in, second_in];
        let got: Vec<u64> = order(&jobs, 0, &Weights::default())
            .into_iter()
            .map(|i| jobs[i].seq)
            .collect();
        assert_eq!(got, [2, 1]);
    }

    #[test]
    fn order_table() {
        // (name, jobs as (seq, queue_priority, priority, qtime), expected seq order)
        type Case<'a> = (&'a str, &'a [(u64, i64, i64, i64)], &'a [u64]);
        let cases: &[Case<'_>] = &[
            ("empty", &[], &[]),
            (
                "fifo by queue rank",
                &[(1, 0, 0, 20), (2, 0, 0, 10)],
                &[2, 1],
            ),
            (
                "seq breaks rank ties",
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
            let got: Vec<u64> = order(&jobs, 0, &Weights::default())
                .into_iter()
                .map(|i| jobs[i].seq)
                .collect();
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn a_key_from_the_jobs_fields_orders_as_the_scheduler_does() {
        let w = Weights {
            age_per_hour: 10.0,
            fairshare: 100.0,
            ..Weights::default()
        };
        let jobs: Vec<PendingJob> = [
            (1, 0, 0, 0, 0.9),
            (2, 0, 0, 30_000, 0.0),
            (3, 1, -5, 20_000, 0.5),
            (4, 0, 200, 36_000, 0.1),
            (5, 0, 0, 30_000, 0.0),
        ]
        .into_iter()
        .map(|(seq, q, p, t, share)| PendingJob {
            usage_share: share,
            ..pj(seq, q, p, t)
        })
        .collect();
        let mut by_key: Vec<(Key, u64)> = jobs
            .iter()
            .map(|j| {
                let fields = (j.queue_priority, j.priority, j.qtime);
                let ids = (j.seq, j.rank);
                (Key::new(ids, fields, j.usage_share, 36_000, &w), j.seq)
            })
            .collect();
        by_key.sort();
        let scheduler: Vec<u64> = order(&jobs, 36_000, &w)
            .into_iter()
            .map(|i| jobs[i].seq)
            .collect();
        assert_eq!(
            by_key.into_iter().map(|(_, seq)| seq).collect::<Vec<_>>(),
            scheduler
        );
        assert_eq!(scheduler, [3, 4, 2, 5, 1]);
    }

    #[test]
    fn age_and_fairshare_table() {
        let w = Weights {
            age_per_hour: 10.0,
            fairshare: 100.0,
            ..Weights::default()
        };
        let heavy = |seq, qtime, p| PendingJob {
            usage_share: 0.9,
            owner: Default::default(),
            ..pj(seq, 0, p, qtime)
        };
        // (name, jobs, expected seq order) at now = 36000
        let cases: Vec<(&str, Vec<PendingJob>, Vec<u64>)> = vec![
            (
                "fair share lowers the heavy user",
                vec![heavy(1, 0, 0), pj(2, 0, 0, 30_000)],
                vec![2, 1],
            ),
            (
                "ten hours of age outweigh a share of 0.9",
                vec![heavy(1, 0, 0), pj(2, 0, 0, 36_000)],
                vec![1, 2],
            ),
            (
                "-p still counts",
                vec![pj(1, 0, 0, 0), pj(2, 0, 200, 36_000)],
                vec![2, 1],
            ),
        ];
        for (name, jobs, want) in cases {
            let got: Vec<u64> = order(&jobs, 36_000, &w)
                .into_iter()
                .map(|i| jobs[i].seq)
                .collect();
            assert_eq!(got, want, "{name}");
        }
        assert_eq!(
            compare(&pj(1, 1, 0, 0), &pj(2, 0, 1023, 0), 0, &Weights::default()),
            Ordering::Less
        );
    }
}
