//! Candidate node sets and the wait-or-span decision.
//!
//! A parallel job spread over the VPN runs at the speed of the slow link, so the candidate
//! sets of a job are its allowed sites, one at a time (Kubernetes' `PlacementGenerate`); the
//! set scorers pick the best site that has room. When no single site can hold the job now, the
//! [`SitePolicy`] decides between waiting for one site and spanning. Capstan's own policy
//! decides from numbers: the earliest start on one site (a reservation computed from running
//! jobs' walltimes, [`backfill::earliest`]) plus the run time at that site's speed, against
//! starting now across sites with the run time multiplied by `site_span_penalty`, and takes
//! the earlier expected completion, unless the single-site start is beyond `max_wait_secs`.
//! The fixed rules of other schedulers are the baselines.

use super::{
    backfill, lending, select::Cluster, speed, PendingJob, Pipeline, SetScore, Settings, Span,
    NOT_ENOUGH_NODES,
};

/// What to do when no single site can hold a multi-node job now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SitePolicy {
    /// Sites are ignored: all allowed nodes form one set (Torque `pbs_sched`).
    Ignore,
    /// Wait for one site (HTCondor parallel universe, PBS `do_not_span_psets`).
    NeverSpan,
    /// Span at once (PBS Pro default).
    SpanWhenNoFit,
    /// Wait up to this many seconds since submission, then span (Slurm `--switches=1@300`).
    WaitThenSpan(i64),
    /// Compare expected completions (this module).
    Capstan,
}

/// One job's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Start {
        picks: Vec<(usize, u32)>,
        spanned: bool,
        score: SetScore,
    },
    Wait {
        reason: String,
        /// The single-site start the decision was based on, when one was computed.
        reservation: Option<backfill::Reservation>,
        /// True when no allowed set has room now (independent of policy and age).
        cacheable: bool,
    },
}

fn wait(reason: String, cacheable: bool) -> Outcome {
    Outcome::Wait {
        reason,
        reservation: None,
        cacheable,
    }
}

/// `a`, or `a+b` for a placement over several sites (in site order).
pub fn label(cluster: &Cluster<'_>, picks: &[(usize, u32)]) -> String {
    let mut sites: Vec<usize> = picks.iter().map(|&(i, _)| cluster.site_of(i)).collect();
    sites.sort_unstable();
    sites.dedup();
    sites
        .iter()
        .map(|&s| cluster.sites()[s])
        .collect::<Vec<_>>()
        .join("+")
}

/// The sites `job` may use.
fn allowed(cluster: &Cluster<'_>, job: &PendingJob) -> Result<Vec<usize>, String> {
    match &job.site {
        Some(name) => cluster
            .site_index(name)
            .map(|s| vec![s])
            .ok_or_else(|| format!("Not Running: no node in site {name}")),
        None => Ok(cluster.all_sites()),
    }
}

/// Room for `job` in the sites of `scope` taken as one set. With `guard_windows`, a set that
/// would outlast a lending window (at its slowest speed, times `penalty`) does not count.
fn find(
    pipeline: &Pipeline,
    cluster: &Cluster<'_>,
    job: &PendingJob,
    scope: &[usize],
    now: i64,
    penalty: f64,
) -> Option<Vec<(usize, u32)>> {
    if !cluster.might_fit_in(scope, &job.request) {
        return None;
    }
    let picks = cluster.find_in(pipeline, job, scope)?;
    if pipeline.guard_windows {
        let duration = job.walltime() as f64 / speed::slowest(cluster, &picks) * penalty;
        if lending::set_overruns(cluster, &picks, now, duration) {
            return None;
        }
    }
    Some(picks)
}

/// Decides one job against the cluster as it stands in this pass.
pub fn decide(
    pipeline: &Pipeline,
    cluster: &Cluster<'_>,
    releases: &[backfill::Release],
    job: &PendingJob,
    now: i64,
    settings: &Settings,
) -> Outcome {
    let allowed = match allowed(cluster, job) {
        Ok(a) => a,
        Err(reason) => return wait(reason, true),
    };
    let start = |picks: Vec<(usize, u32)>, spanned: bool| {
        let score = pipeline.set_score(job, cluster, &picks);
        Outcome::Start {
            picks,
            spanned,
            score,
        }
    };
    if pipeline.sites == SitePolicy::Ignore || job.span == Span::Free || allowed.len() == 1 {
        let penalty = if allowed.len() > 1 {
            settings.site_span_penalty
        } else {
            1.0
        };
        return match find(pipeline, cluster, job, &allowed, now, penalty) {
            Some(picks) => {
                let spanned = label(cluster, &picks).contains('+');
                start(picks, spanned)
            }
            None => wait(NOT_ENOUGH_NODES.to_string(), true),
        };
    }
    // One candidate set per site; the best score wins, ties go to the earlier site.
    let mut best: Option<(SetScore, Vec<(usize, u32)>)> = None;
    for &site in &allowed {
        if let Some(picks) = find(pipeline, cluster, job, &[site], now, 1.0) {
            let score = pipeline.set_score(job, cluster, &picks);
            if best.as_ref().is_none_or(|(b, _)| score.mean > b.mean) {
                best = Some((score, picks));
            }
        }
    }
    if let Some((score, picks)) = best {
        return Outcome::Start {
            picks,
            spanned: false,
            score,
        };
    }
    if !job.multi_node() || job.span == Span::Never || pipeline.sites == SitePolicy::NeverSpan {
        let reason = if job.span == Span::Never {
            "Not Running: waiting for one site to hold the job (place=group=site)".to_string()
        } else {
            NOT_ENOUGH_NODES.to_string()
        };
        return wait(reason, true);
    }
    let Some(cross) = find(
        pipeline,
        cluster,
        job,
        &allowed,
        now,
        settings.site_span_penalty,
    ) else {
        return wait(NOT_ENOUGH_NODES.to_string(), true);
    };
    match pipeline.sites {
        SitePolicy::WaitThenSpan(limit) => {
            let waited = now - job.qtime;
            if waited >= limit {
                start(cross, true)
            } else {
                wait(
                    format!(
                        "Not Running: waiting up to {limit} s for one site (waited {waited} s)"
                    ),
                    false,
                )
            }
        }
        SitePolicy::Capstan => {
            let span_end = now as f64
                + job.walltime() as f64 / speed::slowest(cluster, &cross)
                    * settings.site_span_penalty;
            let single = backfill::earliest_in_sites(pipeline, cluster, releases, job, settings);
            match choose(single.as_ref(), span_end, now, job, settings) {
                Choice::Span => start(cross, true),
                Choice::Wait(reason) => Outcome::Wait {
                    reason,
                    reservation: single.map(|(r, _)| r),
                    cacheable: false,
                },
            }
        }
        _ => start(cross, true),
    }
}

/// Capstan's comparison, on numbers only.
#[derive(Debug, Clone, PartialEq)]
enum Choice {
    Span,
    Wait(String),
}

/// `single`: the earliest single-site reservation and the site's name. Waiting wins ties:
/// equal completion on one site leaves the link and the other site free.
fn choose(
    single: Option<&(backfill::Reservation, String)>,
    span_end: f64,
    now: i64,
    job: &PendingJob,
    settings: &Settings,
) -> Choice {
    let Some((r, site)) = single else {
        return Choice::Span;
    };
    let wait_secs = r.start - now;
    if wait_secs > settings.max_wait_secs {
        return Choice::Span;
    }
    let single_end = r.start as f64 + job.walltime() as f64 / r.speed;
    if single_end <= span_end {
        Choice::Wait(format!(
            "Not Running: waiting for site {site} (expected start in {wait_secs} s; spanning would finish later)"
        ))
    } else {
        Choice::Span
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{Decision, NodeSlots, NodeView, RunningJob, Snapshot};
    use super::*;

    fn reservation(start: i64, speed: f64) -> (backfill::Reservation, String) {
        (
            backfill::Reservation {
                start,
                picks: vec![],
                speed,
            },
            "a".to_string(),
        )
    }

    #[test]
    fn choose_table() {
        let job = PendingJob {
            walltime_secs: Some(1000),
            ..job(0, nodes_req(vec![chunk(2, 1)]))
        };
        let settings = Settings::default();
        // (name, single-site start and speed, span completion, want span)
        type Case<'a> = (&'a str, Option<(i64, f64)>, f64, bool);
        let cases: &[Case<'_>] = &[
            ("no single site ever", None, 1500.0, true),
            ("site frees soon: wait", Some((100, 1.0)), 1500.0, false),
            ("site frees late: span", Some((600, 1.0)), 1500.0, true),
            ("equal completion: wait", Some((500, 1.0)), 1500.0, false),
            ("slow site: span", Some((100, 0.5)), 1500.0, true),
            ("beyond max wait: span", Some((90_000, 1.0)), 1e9, true),
        ];
        for (name, single, span_end, want_span) in cases {
            let single = single.map(|(s, v)| reservation(s, v));
            let got = choose(single.as_ref(), *span_end, 0, &job, &settings);
            assert_eq!(got == Choice::Span, *want_span, "{name}: {got:?}");
        }
    }

    fn two_sites() -> Vec<NodeView> {
        vec![
            in_site(node("a1", 2), "a"),
            in_site(node("a2", 2), "a"),
            in_site(node("b1", 2), "b"),
            in_site(node("b2", 2), "b"),
        ]
    }

    fn snap(jobs: Vec<PendingJob>, nodes: Vec<NodeView>, running: Vec<RunningJob>) -> Snapshot {
        Snapshot {
            now: 1_000_000,
            jobs,
            nodes,
            running,
            settings: Settings::default(),
        }
    }

    fn running(seq: u64, end: i64, nodes: &[&str]) -> RunningJob {
        RunningJob {
            seq,
            expected_end: end,
            placement: nodes
                .iter()
                .map(|n| NodeSlots {
                    node: n.to_string(),
                    slots: vec![0, 1],
                })
                .collect(),
        }
    }

    fn outcome(d: &Decision) -> String {
        match d {
            Decision::Start { site, .. } => format!("start {site}"),
            Decision::Wait { reason, .. } => reason.clone(),
        }
    }

    #[test]
    fn policy_table() {
        let now = 1_000_000;
        let busy = |mut n: NodeView| {
            n.used = vec![true; n.np as usize];
            n
        };
        // a2 and b1 busy: a 2-node job fits in no single site, but across a1+b2.
        let split = vec![
            in_site(node("a1", 2), "a"),
            busy(in_site(node("a2", 2), "a")),
            busy(in_site(node("b1", 2), "b")),
            in_site(node("b2", 2), "b"),
        ];
        let mpi = |wall: u64| PendingJob {
            walltime_secs: Some(wall),
            ..job(0, nodes_req(vec![chunk(2, 2)]))
        };
        let soon = vec![
            running(1, now + 60, &["a2"]),
            running(2, now + 7200, &["b1"]),
        ];
        let late = vec![
            running(1, now + 7200, &["a2"]),
            running(2, now + 7200, &["b1"]),
        ];
        // (name, pipeline, job, nodes, running, want)
        type Case = (
            &'static str,
            Pipeline,
            PendingJob,
            Vec<NodeView>,
            Vec<RunningJob>,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("one site has room: stay inside it", Pipeline::standard(), mpi(3600), two_sites(), vec![], "start a"),
            ("site a frees in 60 s: wait for it", Pipeline::standard(), mpi(3600), split.clone(), soon.clone(),
             "Not Running: waiting for site a (expected start in 60 s; spanning would finish later)"),
            ("sites free in 2 h, job is 1 h: span now", Pipeline::standard(), mpi(3600), split.clone(), late.clone(), "start a+b"),
            ("100 s job: spanning now (150 s) beats 60 s + 100 s", Pipeline::standard(), mpi(100), split.clone(), soon.clone(), "start a+b"),
            ("place=group=site never spans", Pipeline::standard(), PendingJob { span: Span::Never, ..mpi(3600) }, split.clone(), late.clone(),
             "Not Running: waiting for one site to hold the job (place=group=site)"),
            ("place=free spans at once", Pipeline::standard(), PendingJob { span: Span::Free, ..mpi(3600) }, split.clone(), soon.clone(), "start a+b"),
            ("site=b only", Pipeline::standard(), PendingJob { site: Some("b".into()), ..mpi(3600) }, two_sites(), vec![], "start b"),
            ("unknown site", Pipeline::standard(), PendingJob { site: Some("z".into()), ..mpi(3600) }, two_sites(), vec![], "Not Running: no node in site z"),
            ("never-span baseline waits", Pipeline::baseline(SitePolicy::NeverSpan), mpi(3600), split.clone(), late.clone(), NOT_ENOUGH_NODES),
            ("span-when-no-fit baseline spans", Pipeline::baseline(SitePolicy::SpanWhenNoFit), mpi(3600), split.clone(), soon.clone(), "start a+b"),
            ("wait-then-span: too young", Pipeline::baseline(SitePolicy::WaitThenSpan(300)), PendingJob { qtime: now - 10, ..mpi(3600) }, split.clone(), soon.clone(),
             "Not Running: waiting up to 300 s for one site (waited 10 s)"),
            ("wait-then-span: old enough", Pipeline::baseline(SitePolicy::WaitThenSpan(300)), PendingJob { qtime: now - 400, ..mpi(3600) }, split.clone(), late.clone(), "start a+b"),
            ("fifo ignores sites", Pipeline::fifo_first_fit(), mpi(3600), split.clone(), soon.clone(), "start a+b"),
        ];
        for (name, pipeline, job, nodes, running, want) in cases {
            let got = pipeline.run(&snap(vec![job], nodes, running));
            assert!(outcome(&got[0]).starts_with(want), "{name}: {:?}", got[0]);
        }
    }

    #[test]
    fn packing_keeps_a_whole_site_free() {
        // Site a is partly used; a 1-slot job goes there and b stays whole for a parallel job.
        let mut nodes = two_sites();
        nodes[0].used = vec![true, false];
        let got = Pipeline::standard().run(&snap(
            vec![
                job(0, nodes_req(vec![chunk(1, 1)])),
                job(1, nodes_req(vec![chunk(2, 2)])),
            ],
            nodes,
            vec![],
        ));
        assert_eq!(outcome(&got[0]), "start a");
        assert_eq!(outcome(&got[1]), "start b");
    }
}
