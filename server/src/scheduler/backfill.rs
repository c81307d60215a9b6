//! EASY backfill: reservations computed from running jobs' walltimes.
//!
//! The first job of a pass that cannot start gets a reservation: the earliest time its
//! nodes are free, found by replaying the expected ends of running jobs (and of jobs started
//! earlier in the pass) as slot releases, with the very same filters and selection as a
//! start now. Later jobs may still start (backfill), but the [`Reserved`] filter lets a job
//! use the reserved slots only if it ends (walltime at the node's speed) before the
//! reservation starts. The same computation gives the single-site start time the site policy
//! compares with spanning ([`super::sites`]).
//!
//! Availability only grows as releases accumulate, so the earliest time is found by binary
//! search over the distinct release times: a handful of selections, not one per release.

use super::{
    select::Cluster, speed, NodeFilter, NodeState, PendingJob, Pipeline, Reason, Settings,
    SitePolicy, Span,
};
use crate::resources::Chunk;

/// Slots that come back at `end` (expected, from a walltime).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Release {
    pub end: i64,
    pub node: usize,
    pub slots: u32,
}

/// Where and when a waiting job is expected to start.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub start: i64,
    /// Node index and slots, as a start would take them.
    pub picks: Vec<(usize, u32)>,
    /// The slowest chosen node's speed (the job runs at it).
    pub speed: f64,
}

impl Reservation {
    /// Marks the reserved slots on the pass's nodes.
    pub fn apply(&self, cluster: &mut Cluster<'_>) {
        for &(i, n) in &self.picks {
            let node = cluster.node_mut(i);
            node.reserved_from = Some(node.reserved_from.map_or(self.start, |f| f.min(self.start)));
            node.reserved_slots += n;
        }
    }
}

/// Filter: reserved slots go only to jobs that end before the reservation starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reserved;

impl NodeFilter for Reserved {
    fn name(&self) -> &'static str {
        "backfill"
    }

    fn feasible(
        &self,
        job: &PendingJob,
        chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        match node.reserved_from {
            // An exclusive job takes every slot, the reserved ones too.
            Some(from)
                if node.now.saturating_add(node.duration(job)) > from
                    && node.free
                        < job
                            .slots_on(node.view.np, chunk.ppn.max(1))
                            .saturating_add(node.reserved_slots) =>
            {
                Err("slots reserved for a waiting job".into())
            }
            _ => Ok(()),
        }
    }
}

/// The earliest start of `job` in the sites of `scope` taken as one set.
pub fn earliest_in_scope(
    pipeline: &Pipeline,
    cluster: &Cluster<'_>,
    releases: &[Release],
    job: &PendingJob,
    scope: &[usize],
    settings: &Settings,
) -> Option<Reservation> {
    let nodes = cluster.nodes();
    let members: Vec<usize> = (0..nodes.len())
        .filter(|&i| scope.contains(&cluster.site_of(i)))
        .collect();
    let mut local = vec![usize::MAX; nodes.len()];
    for (l, &i) in members.iter().enumerate() {
        local[i] = l;
    }
    let mine: Vec<&Release> = releases
        .iter()
        .filter(|r| local[r.node] != usize::MAX)
        .collect();
    let mut times: Vec<i64> = mine.iter().map(|r| r.end).collect();
    times.sort_unstable();
    times.dedup();
    let fits = |t: i64| -> Option<Vec<(usize, u32)>> {
        let mut released = vec![0u32; members.len()];
        for r in mine.iter().filter(|r| r.end <= t) {
            released[local[r.node]] += r.slots;
        }
        let states: Vec<NodeState<'_>> = members
            .iter()
            .zip(&released)
            .map(|(&i, &extra)| {
                let now = &nodes[i];
                let mut s = NodeState::at(now.view, t, settings.utc_offset_secs);
                s.available = now.available;
                s.free = (now.free + extra).min(now.view.np);
                s
            })
            .collect();
        Cluster::from_states(states)
            .find(pipeline, job)
            .map(|p| p.into_iter().map(|(l, n)| (members[l], n)).collect())
    };
    let last = *times.last()?;
    fits(last)?;
    let (mut lo, mut hi) = (0, times.len() - 1);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fits(times[mid]).is_some() {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    // An exclusive job's reservation holds its nodes whole, as its start will.
    let picks = fits(times[lo])?
        .into_iter()
        .map(|(i, n)| (i, job.slots_on(nodes[i].view.np, n)))
        .collect::<Vec<_>>();
    Some(Reservation {
        start: times[lo],
        speed: speed::slowest(cluster, &picks),
        picks,
    })
}

/// The earliest single-site start over the job's allowed sites (best completion), with the
/// site's name.
pub fn earliest_in_sites(
    pipeline: &Pipeline,
    cluster: &Cluster<'_>,
    releases: &[Release],
    job: &PendingJob,
    settings: &Settings,
) -> Option<(Reservation, String)> {
    let sites: Vec<usize> = match &job.site {
        Some(name) => vec![cluster.site_index(name)?],
        None => cluster.all_sites(),
    };
    sites
        .into_iter()
        .filter_map(|s| {
            earliest_in_scope(pipeline, cluster, releases, job, &[s], settings)
                .map(|r| (r, cluster.sites()[s].to_string()))
        })
        .min_by(|(a, _), (b, _)| {
            let end = |r: &Reservation| r.start as f64 + job.walltime() as f64 / r.speed;
            end(a).total_cmp(&end(b))
        })
}

/// The head job's reservation: single-site unless sites are ignored or the job spans freely.
pub fn earliest(
    pipeline: &Pipeline,
    cluster: &Cluster<'_>,
    releases: &[Release],
    job: &PendingJob,
    settings: &Settings,
) -> Option<Reservation> {
    if pipeline.sites == SitePolicy::Ignore || job.span == Span::Free {
        let scope = match &job.site {
            Some(name) => vec![cluster.site_index(name)?],
            None => cluster.all_sites(),
        };
        earliest_in_scope(pipeline, cluster, releases, job, &scope, settings)
    } else {
        earliest_in_sites(pipeline, cluster, releases, job, settings).map(|(r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Decision, NodeSlots, RunningJob, Snapshot};
    use super::*;

    #[test]
    fn reserved_filter_table() {
        let view = node("a", 4);
        let c = chunk(1, 1);
        // (name, reserved from, reserved slots, free, walltime, feasible)
        type Case<'a> = (&'a str, Option<i64>, u32, u32, u64, bool);
        let cases: &[Case<'_>] = &[
            ("no reservation", None, 0, 4, 10_000, true),
            ("ends before it", Some(100), 4, 4, 100, true),
            ("ends after, no spare slot", Some(100), 4, 4, 101, false),
            ("ends after, spare slot", Some(100), 2, 4, 10_000, true),
            (
                "ends after, spare slot used up",
                Some(100),
                2,
                2,
                10_000,
                false,
            ),
        ];
        for &(name, from, slots, free, wall, want) in cases {
            let mut s = NodeState::current(&view);
            s.reserved_from = from;
            s.reserved_slots = slots;
            s.free = free;
            let j = PendingJob {
                walltime_secs: Some(wall),
                ..job(0, nodes_req(vec![chunk(1, 1)]))
            };
            assert_eq!(Reserved.feasible(&j, &c, &s).is_ok(), want, "{name}");
        }
    }

    fn snapshot(jobs: Vec<PendingJob>, running: Vec<RunningJob>) -> Snapshot {
        Snapshot {
            now: 0,
            jobs,
            nodes: vec![with_used(node("a", 4), &[0, 1, 2]), node("b", 2)],
            running,
            settings: Settings::default(),
        }
    }

    fn wall(seq: u64, slots: u32, wall: u64) -> PendingJob {
        PendingJob {
            walltime_secs: Some(wall),
            ..job(seq, nodes_req(vec![chunk(1, slots)]))
        }
    }

    #[test]
    fn easy_backfill_table() {
        let running = vec![RunningJob {
            seq: 9,
            expected_end: 1000,
            placement: vec![NodeSlots {
                node: "a".into(),
                slots: vec![0, 1, 2],
            }],
        }];
        // Head needs 4 slots on one node: a at t=1000. b is free now.
        // (name, later job, starts)
        let cases: &[(&str, PendingJob, bool)] = &[
            (
                "short job on the reserved node fits in the hole",
                wall(2, 1, 500),
                true,
            ),
            (
                "long job avoids the reserved node: b",
                wall(2, 2, 5000),
                true,
            ),
        ];
        for (name, later, starts) in cases {
            let got = Pipeline::standard().run(&snapshot(
                vec![wall(1, 4, 100), later.clone()],
                running.clone(),
            ));
            match &got[0] {
                Decision::Wait { reason, .. } => assert!(
                    reason.contains("expected start in 1000 s on site default"),
                    "{name}: {reason}"
                ),
                d => panic!("{name}: head started: {d:?}"),
            }
            assert_eq!(
                matches!(got[1], Decision::Start { .. }),
                *starts,
                "{name}: {:?}",
                got[1]
            );
        }
        // Without the reservation (FIFO) the long job would take a's last slot.
        let got = Pipeline::fifo_first_fit().run(&snapshot(
            vec![wall(1, 4, 100), wall(2, 1, 5000)],
            running.clone(),
        ));
        assert!(matches!(got[1], Decision::Start { .. }));
        // Capstan: a 1-slot long job goes to b, not to a's last slot.
        let got =
            Pipeline::standard().run(&snapshot(vec![wall(1, 4, 100), wall(2, 1, 5000)], running));
        match &got[1] {
            Decision::Start { placement, .. } => assert_eq!(placement[0].node, "b"),
            d => panic!("{d:?}"),
        }
    }
}
