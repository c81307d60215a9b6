//! Set scorer: pack sites, keep whole sites free for parallel jobs.
//!
//! Among sites that can hold a job, prefer the one left fullest afterwards (best fit at site
//! level): small jobs fill the site that is already busy, so the other site stays whole for
//! the next parallel job, which then need neither wait nor span. Costs nothing when both
//! sites have room.

use super::{select::Cluster, PendingJob, SetScorer};

/// `1 - free slots left / slots`, over the sites the placement touches.
#[derive(Debug, Clone, Copy, Default)]
pub struct SitePacking;

impl SetScorer for SitePacking {
    fn name(&self) -> &'static str {
        "site-packing"
    }
    fn score(&self, _job: &PendingJob, cluster: &Cluster<'_>, picks: &[(usize, u32)]) -> f64 {
        let mut sites: Vec<usize> = picks.iter().map(|&(i, _)| cluster.site_of(i)).collect();
        sites.sort_unstable();
        sites.dedup();
        let total: u64 = sites.iter().map(|&s| cluster.site_slots(s)).sum();
        if total == 0 {
            return 0.0;
        }
        let free: u64 = sites.iter().map(|&s| cluster.site_free(s)).sum();
        let taken: u64 = picks.iter().map(|&(_, n)| u64::from(n)).sum();
        1.0 - free.saturating_sub(taken) as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    #[test]
    fn table() {
        let views = vec![
            in_site(with_used(node("a1", 4), &[0, 1]), "a"),
            in_site(node("a2", 4), "a"),
            in_site(node("b1", 4), "b"),
            in_site(node("b2", 4), "b"),
        ];
        let cluster = Cluster::current(&views);
        let j = job(0, nodes_req(vec![chunk(1, 1)]));
        type Case<'a> = (&'a str, &'a [(usize, u32)], f64);
        let cases: &[Case<'_>] = &[
            ("busier site a", &[(0, 2)], 1.0 - 4.0 / 8.0),
            ("empty site b", &[(2, 2)], 1.0 - 6.0 / 8.0),
            ("fills site a", &[(0, 2), (1, 4)], 1.0),
        ];
        for (name, picks, want) in cases {
            assert_eq!(SitePacking.score(&j, &cluster, picks), *want, "{name}");
        }
    }
}
