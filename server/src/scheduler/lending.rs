//! Filter: owners come first on non-dedicated nodes (design principle 7).
//!
//! A borrowed workstation takes new work only inside its lending window, and (with
//! `overrun`) only jobs whose walltime, at the node's speed, ends before the window does: a
//! job still running when the owner comes back is lost work. Node state `busy` (owner active)
//! is folded into `available` by the server and refused by [`super::node_state`].

use super::{NodeFilter, NodeState, NodeView, PendingJob, Reason};
use crate::resources::Chunk;

/// Owner availability of a node at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lending {
    /// A dedicated compute node.
    Dedicated,
    /// Lent until this epoch second (`i64::MAX`: no end in sight).
    Open { until: i64 },
    /// Outside its lending window.
    Closed,
}

impl Lending {
    /// The node's lending at `now` (`utc_offset` turns epoch into local time).
    pub fn of(view: &NodeView, now: i64, utc_offset: i64) -> Lending {
        match &view.window {
            None if view.dedicated => Lending::Dedicated,
            None => Lending::Open { until: i64::MAX },
            Some(w) => match w.open_until(now + utc_offset) {
                None => Lending::Closed,
                Some(i64::MAX) => Lending::Open { until: i64::MAX },
                Some(local) => Lending::Open {
                    until: local - utc_offset,
                },
            },
        }
    }
}

/// Would a job placed on `picks` from `now` for `duration` seconds (at the set's slowest
/// speed, with any span penalty) outlast one of the nodes' lending windows? The per-node
/// filter only knows the node's own speed; a set runs at its slowest member's.
pub fn set_overruns(
    cluster: &super::select::Cluster<'_>,
    picks: &[(usize, u32)],
    now: i64,
    duration: f64,
) -> bool {
    let end = now.saturating_add(duration.ceil() as i64);
    picks
        .iter()
        .any(|&(i, _)| match cluster.nodes()[i].lending {
            Lending::Open { until } => end > until,
            Lending::Closed => true,
            Lending::Dedicated => false,
        })
}

/// Refuses nodes outside their window and, with `overrun`, jobs that would outlast it.
#[derive(Debug, Clone, Copy, Default)]
pub struct LendingWindow {
    pub overrun: bool,
}

impl NodeFilter for LendingWindow {
    fn name(&self) -> &'static str {
        "lending-window"
    }

    fn feasible(
        &self,
        job: &PendingJob,
        _chunk: &Chunk,
        node: &NodeState<'_>,
    ) -> Result<(), Reason> {
        match node.lending {
            Lending::Closed => Err("outside its lending window".into()),
            Lending::Open { until }
                if self.overrun && node.now.saturating_add(node.duration(job)) > until =>
            {
                Err("its lending window ends before the job would".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::Window;
    use super::*;

    /// Monday 2026-11-16 00:00 UTC.
    const MON: i64 = 1_794_787_200;

    #[test]
    fn table() {
        let lent = |w: &str| {
            let mut v = node("ws", 2);
            v.dedicated = false;
            v.window = Some(Window::parse(w).unwrap());
            v
        };
        // (name, node, now, walltime, overrun filter?, feasible, lending)
        let cases: Vec<(&str, NodeView, i64, u64, bool, bool, Lending)> = vec![
            (
                "dedicated",
                node("d", 2),
                MON,
                99_999,
                true,
                true,
                Lending::Dedicated,
            ),
            (
                "lent, no window",
                {
                    let mut v = node("w", 2);
                    v.dedicated = false;
                    v
                },
                MON,
                99_999,
                true,
                true,
                Lending::Open { until: i64::MAX },
            ),
            (
                "monday noon: closed",
                lent("mon-fri@19:00-07:00"),
                MON + 12 * 3600,
                60,
                true,
                false,
                Lending::Closed,
            ),
            (
                "monday 20:00, 1 h job",
                lent("mon-fri@19:00-07:00"),
                MON + 20 * 3600,
                3600,
                true,
                true,
                Lending::Open {
                    until: MON + 31 * 3600,
                },
            ),
            (
                "monday 20:00, 12 h job overruns",
                lent("mon-fri@19:00-07:00"),
                MON + 20 * 3600,
                12 * 3600,
                true,
                false,
                Lending::Open {
                    until: MON + 31 * 3600,
                },
            ),
            (
                "overrun allowed by baselines",
                lent("mon-fri@19:00-07:00"),
                MON + 20 * 3600,
                12 * 3600,
                false,
                true,
                Lending::Open {
                    until: MON + 31 * 3600,
                },
            ),
        ];
        for (name, view, now, wall, overrun, want, lending) in cases {
            let state = NodeState::at(&view, now, 0);
            assert_eq!(state.lending, lending, "{name}");
            let j = PendingJob {
                walltime_secs: Some(wall),
                ..job(0, nodes_req(vec![chunk(1, 1)]))
            };
            assert_eq!(
                LendingWindow { overrun }
                    .feasible(&j, &chunk(1, 1), &state)
                    .is_ok(),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn set_overruns_at_the_slowest_speed() {
        let mut ws = node("ws", 1);
        ws.dedicated = false;
        ws.window = Some(Window::parse("mon@19:00-20:00").unwrap());
        let views = vec![node("d", 1), ws];
        let at = MON + 19 * 3600;
        let cluster = super::super::select::Cluster::at(&views, at, 0);
        // (name, picks, duration, overruns)
        type Case<'a> = (&'a str, &'a [(usize, u32)], f64, bool);
        let cases: &[Case<'_>] = &[
            ("dedicated only", &[(0, 1)], 1e6, false),
            ("fits the hour", &[(0, 1), (1, 1)], 3600.0, false),
            ("one second too long", &[(0, 1), (1, 1)], 3601.0, true),
        ];
        for (name, picks, duration, want) in cases {
            assert_eq!(
                set_overruns(&cluster, picks, at, *duration),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn utc_offset_shifts_the_window() {
        let mut v = node("ws", 1);
        v.dedicated = false;
        v.window = Some(Window::parse("mon@19:00-20:00").unwrap());
        // 18:30 UTC is 19:30 at UTC+1: open until 20:00 local = 19:00 UTC.
        let t = MON + 18 * 3600 + 1800;
        assert_eq!(
            Lending::of(&v, t, 3600),
            Lending::Open {
                until: MON + 19 * 3600
            }
        );
        assert_eq!(Lending::of(&v, t, 0), Lending::Closed);
    }
}
