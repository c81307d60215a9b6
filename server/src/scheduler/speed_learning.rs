//! Learned node speed: how fast a node really is, from the walltimes of completed jobs.
//!
//! The same job (same `Job_Name` and the same nodes/ppn/walltime request: its *shape*) run on
//! different nodes is a measurement: a node where it took half the usual time is twice as
//! fast. For each shape seen on at least 2 different nodes, a node's ratio is (mean walltime
//! of the shape over the nodes that ran it) / (its own mean walltime for that shape); the
//! node's learned speed is the median of its ratios, once it has [`MIN_SAMPLES`] samples in
//! such shapes ("enough evidence"); otherwise there is none and the configured `speed=` holds.
//!
//! Pure: the server records samples (successful single-node jobs) in the store and here, and
//! puts the learned value into the snapshot's node speed.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Samples kept per (node, shape): the most recent ones.
pub const KEEP_PER_NODE_SHAPE: usize = 20;
/// Samples a node needs (in shapes seen on at least 2 nodes) before its speed is learned.
pub const MIN_SAMPLES: usize = 3;

/// The shape of a job: its name and normalised resource request, e.g.
/// `bench.sh|nodes=1:ppn=2|ppn=|walltime=3600`.
pub fn shape_key(
    name: &str,
    nodes: Option<&str>,
    ppn: Option<&str>,
    walltime_secs: Option<u64>,
) -> String {
    let norm = |v: Option<&str>| v.map(|s| s.trim().to_ascii_lowercase()).unwrap_or_default();
    format!(
        "{}|nodes={}|ppn={}|walltime={}",
        name.trim(),
        norm(nodes),
        norm(ppn),
        walltime_secs.map(|w| w.to_string()).unwrap_or_default()
    )
}

/// Walltime samples (seconds) by shape, then node, newest last, each list bounded.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    by_shape: BTreeMap<String, BTreeMap<String, VecDeque<u64>>>,
}

impl Samples {
    /// Records one completed run; a zero walltime says nothing and is ignored.
    pub fn add(&mut self, shape: &str, node: &str, walltime_secs: u64) {
        if walltime_secs == 0 {
            return;
        }
        let list = self
            .by_shape
            .entry(shape.to_string())
            .or_default()
            .entry(node.to_string())
            .or_default();
        list.push_back(walltime_secs);
        while list.len() > KEEP_PER_NODE_SHAPE {
            list.pop_front();
        }
    }

    /// The learned speed of every node with enough evidence.
    pub fn speeds(&self) -> HashMap<String, f64> {
        let mut ratios: HashMap<&str, (Vec<f64>, usize)> = HashMap::new();
        for per_node in self.by_shape.values() {
            // A node is listed only once it has a sample (`add`).
            if per_node.len() < 2 {
                continue;
            }
            let means: Vec<(&str, f64, usize)> = per_node
                .iter()
                .map(|(n, l)| {
                    (
                        n.as_str(),
                        // In f64: a sum of u64 walltimes could overflow.
                        l.iter().map(|w| *w as f64).sum::<f64>() / l.len() as f64,
                        l.len(),
                    )
                })
                .collect();
            let overall = means.iter().map(|m| m.1).sum::<f64>() / means.len() as f64;
            for (node, mean, count) in means {
                let entry = ratios.entry(node).or_default();
                entry.0.push(overall / mean);
                entry.1 += count;
            }
        }
        ratios
            .into_iter()
            .filter(|(_, (_, count))| *count >= MIN_SAMPLES)
            .map(|(node, (mut r, _))| (node.to_string(), median(&mut r)))
            .collect()
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_table() {
        // (name, samples as (shape, node, walltime), expected speeds as (node, speed))
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str, u64)], &'a [(&'a str, f64)]);
        let cases: &[Case<'_>] = &[
            ("nothing", &[], &[]),
            (
                "one node only: no comparison",
                &[("s", "a", 100), ("s", "a", 100), ("s", "a", 100)],
                &[],
            ),
            (
                "two nodes but too few samples",
                &[("s", "a", 100), ("s", "b", 50)],
                &[],
            ),
            (
                // mean over nodes = 75: a 75/100, b 75/50.
                "b twice as fast as a",
                &[
                    ("s", "a", 100),
                    ("s", "a", 100),
                    ("s", "a", 100),
                    ("s", "b", 50),
                    ("s", "b", 50),
                    ("s", "b", 50),
                ],
                &[("a", 0.75), ("b", 1.5)],
            ),
            (
                "a shape on one node does not count as evidence",
                &[
                    ("s", "a", 100),
                    ("s", "b", 50),
                    ("solo", "b", 10),
                    ("solo", "b", 10),
                    ("solo", "b", 10),
                ],
                &[],
            ),
            (
                // t1: mean 150 → a 1.5, c 0.75; t2: mean 20 → a 2, c 0.667; t3: mean 12.5
                // → a 0.625, c 2.5. Median: a 1.5, c 0.75.
                "median over shapes resists one outlier",
                &[
                    ("t1", "a", 100),
                    ("t1", "c", 200),
                    ("t2", "a", 10),
                    ("t2", "c", 30),
                    ("t3", "a", 20),
                    ("t3", "c", 5),
                ],
                &[("a", 1.5), ("c", 0.75)],
            ),
            (
                "zero walltimes are ignored",
                &[("s", "a", 0), ("s", "a", 0), ("s", "a", 0), ("s", "b", 5)],
                &[],
            ),
        ];
        for (name, samples, want) in cases {
            let mut s = Samples::default();
            for (shape, node, w) in *samples {
                s.add(shape, node, *w);
            }
            let got = s.speeds();
            assert_eq!(got.len(), want.len(), "{name}: {got:?}");
            for (node, speed) in *want {
                let g = got.get(*node).copied().unwrap_or(f64::NAN);
                assert!((g - speed).abs() < 1e-9, "{name}: {node} = {g}");
            }
        }
    }

    #[test]
    fn keeps_the_newest_samples_only() {
        let mut s = Samples::default();
        for w in 1..=(KEEP_PER_NODE_SHAPE as u64 + 5) {
            s.add("s", "a", w);
        }
        let list = &s.by_shape["s"]["a"];
        assert_eq!(list.len(), KEEP_PER_NODE_SHAPE);
        assert_eq!(list.front(), Some(&6));
    }

    #[test]
    fn shape_key_normalises_the_request() {
        assert_eq!(
            shape_key(" run.sh", Some("1:PPN=2 "), None, Some(3600)),
            "run.sh|nodes=1:ppn=2|ppn=|walltime=3600"
        );
        assert_eq!(
            shape_key("run.sh", Some("1:ppn=2"), None, Some(3600)),
            shape_key("run.sh", Some("1:ppn=2"), None, Some(3600))
        );
        assert_ne!(
            shape_key("run.sh", Some("1"), None, Some(60)),
            shape_key("run.sh", Some("1"), None, Some(120))
        );
    }
}
