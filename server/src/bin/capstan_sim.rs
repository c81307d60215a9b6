//! `capstan-sim`: Capstan's scheduler on virtual time.
//!
//! Runs the very same [`Pipeline`] code the server runs, pass after pass, over a cluster
//! description (nodes-file syntax: `np=`, `site=`, `speed=`, `dedicated=false`, `window=`) and
//! a workload (a seeded generator, or a Standard Workload Format trace), and reports mean
//! wait, mean bounded slowdown, makespan, utilization, the share of multi-node jobs that
//! spanned sites and the core-hours lost when owners reclaimed workstations, for Capstan's
//! policy and for baseline policies written as pipeline configurations.
//!
//! Model: a job has a base run time at speed 1.0; on a set of nodes it runs at the slowest
//! node's speed, times `site_span_penalty` when its nodes span sites. Its walltime (the
//! user's over-estimate, at speed 1.0) is all the scheduler knows. A job still running on a
//! borrowed node when the node's lending window closes is killed and requeued; the core-hours
//! it had run are lost. `--bench` times one scheduling pass over a large backlog instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use capstan_server::nodes_file;
use capstan_server::resources::{Chunk, SlotRequest};
use capstan_server::scheduler::{
    Decision, Lending, NodeView, PendingJob, Pipeline, RunningJob, Settings, SitePolicy, Snapshot,
    Span,
};
use clap::Parser;

/// Capstan's scheduler on virtual time: policies compared on one workload.
#[derive(Debug, Parser)]
#[command(name = "capstan-sim")]
struct Args {
    /// Workload generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of generated jobs.
    #[arg(long, default_value_t = 1500)]
    jobs: usize,
    /// Offered load (work / capacity) of the generated workload.
    #[arg(long, default_value_t = 0.85)]
    load: f64,
    /// Share of parallel (whole-node, multi-node) jobs.
    #[arg(long, default_value_t = 0.4)]
    parallel: f64,
    /// Inter-site slowdown.
    #[arg(long, default_value_t = 1.5)]
    penalty: f64,
    /// Cluster description in nodes-file syntax (default: the built-in two-site cluster).
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// Replay a Standard Workload Format trace instead of generating jobs.
    #[arg(long)]
    swf: Option<PathBuf>,
    /// Time one pass with 10,000 pending jobs on 1,000 nodes in two sites, then exit.
    #[arg(long)]
    bench: bool,
    /// With --bench: the number of pending jobs.
    #[arg(long, default_value_t = 10_000)]
    bench_jobs: u64,
    /// With --bench: the number of sites the 1,000 nodes are split into.
    #[arg(long, default_value_t = 2)]
    bench_sites: u32,
}

/// The built-in cluster: site a, 12 dedicated 8-core nodes; site b, 6 dedicated nodes and 6
/// faster workstations lent on weeknights and weekends.
const DEFAULT_NODES: &str = "\
a01 np=8 site=a\na02 np=8 site=a\na03 np=8 site=a\na04 np=8 site=a\n\
a05 np=8 site=a\na06 np=8 site=a\na07 np=8 site=a\na08 np=8 site=a\n\
a09 np=8 site=a\na10 np=8 site=a\na11 np=8 site=a\na12 np=8 site=a\n\
b01 np=8 site=b\nb02 np=8 site=b\nb03 np=8 site=b\nb04 np=8 site=b\n\
b05 np=8 site=b\nb06 np=8 site=b\n\
w01 np=8 site=b speed=1.5 dedicated=false window=mon-fri@19:00-07:00,sat-sun\n\
w02 np=8 site=b speed=1.5 dedicated=false window=mon-fri@19:00-07:00,sat-sun\n\
w03 np=8 site=b speed=1.5 dedicated=false window=mon-fri@19:00-07:00,sat-sun\n\
w04 np=8 site=b speed=1.5 dedicated=false window=mon-fri@19:00-07:00,sat-sun\n\
w05 np=8 site=b speed=1.5 dedicated=false window=mon-fri@19:00-07:00,sat-sun\n\
w06 np=8 site=b speed=1.5 dedicated=false window=mon-fri@19:00-07:00,sat-sun\n";

/// Monday 2026-11-16 08:00 UTC: the simulated week starts on a working day.
const T0: i64 = 1_794_787_200 + 8 * 3600;

/// SplitMix64: a tiny, seeded, reproducible generator (no crate needed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform integer in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }
}

/// One job of the workload.
#[derive(Debug, Clone)]
struct SimJob {
    submit: i64,
    request: SlotRequest,
    /// Seconds at speed 1.0.
    base_runtime: i64,
    /// The user's estimate at speed 1.0.
    walltime: u64,
}

/// Seeded workload: Poisson arrivals scaled to `load`, serial jobs of 1-4 slots and parallel
/// jobs of 2..(largest site) whole nodes, log-uniform run times from 5 min to 4 h, walltimes
/// over-estimated 1-4x and rounded up to 15 minutes, as users do.
fn generate(args: &Args, nodes: &[NodeView]) -> Vec<SimJob> {
    let mut rng = Rng(args.seed);
    let mut per_site: HashMap<&str, u32> = HashMap::new();
    for n in nodes {
        *per_site.entry(n.site.as_str()).or_insert(0) += 1;
    }
    let largest_site = per_site.values().copied().max().unwrap_or(1).max(2);
    let ppn = nodes.iter().map(|n| n.np).min().unwrap_or(1);
    let capacity: u64 = nodes.iter().map(|n| u64::from(n.np)).sum();
    let mut jobs: Vec<SimJob> = (0..args.jobs)
        .map(|_| {
            let request = if rng.unit() < args.parallel {
                SlotRequest {
                    chunks: vec![Chunk::new(rng.range(2, largest_site), ppn)],
                    procs: false,
                }
            } else {
                SlotRequest {
                    chunks: vec![Chunk::new(1, rng.range(1, 4.min(ppn)))],
                    procs: false,
                }
            };
            let base = (300f64.ln() + rng.unit() * (14_400f64.ln() - 300f64.ln())).exp() as i64;
            let estimate = base as f64 * (1.0 + 3.0 * rng.unit());
            let walltime = ((estimate / 900.0).ceil() * 900.0) as u64;
            SimJob {
                submit: 0,
                request,
                base_runtime: base,
                walltime,
            }
        })
        .collect();
    let work: f64 = jobs
        .iter()
        .map(|j| f64::from(j.request.total_slots()) * j.base_runtime as f64)
        .sum();
    let mean_gap = work / (args.load * capacity as f64 * jobs.len() as f64);
    let mut t = T0 as f64;
    for j in &mut jobs {
        t += -mean_gap * (1.0 - rng.unit()).ln();
        j.submit = t as i64;
    }
    jobs
}

/// Standard Workload Format: `;` comments; fields 2 submit, 4 run time, 5 allocated procs,
/// 8 requested procs, 9 requested time. Jobs become `procs=N` requests.
fn read_swf(text: &str) -> Vec<SimJob> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        let f: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(-1.0))
            .collect();
        if f.len() < 9 {
            continue;
        }
        let (submit, run) = (f[1], f[3]);
        let procs = if f[7] > 0.0 { f[7] } else { f[4] };
        if submit < 0.0 || run <= 0.0 || procs <= 0.0 {
            continue;
        }
        let walltime = if f[8] >= run { f[8] } else { run };
        out.push(SimJob {
            submit: T0 + submit as i64,
            request: SlotRequest {
                chunks: vec![Chunk::new(procs as u32, 1)],
                procs: true,
            },
            base_runtime: run as i64,
            walltime: walltime as u64,
        });
    }
    out
}

/// A run in progress.
struct Run {
    job: usize,
    start: i64,
    /// Actual end (run time at the set's speed, penalty if spanned).
    end: i64,
    /// When the owner reclaims one of its nodes before `end`.
    killed_at: Option<i64>,
    /// What the scheduler was promised (walltime at the set's speed).
    expected_end: i64,
    placement: Vec<(usize, Vec<u32>)>,
    slots: u32,
}

#[derive(Debug, Default, Clone)]
struct Report {
    mean_wait: f64,
    mean_bsld: f64,
    makespan_h: f64,
    utilization: f64,
    spanned: f64,
    lost_core_h: f64,
    unfinished: usize,
}

/// Runs the workload under one pipeline. Utilization counts useful work (slots × run time
/// at speed 1.0 of completed runs) over capacity × makespan, so time lost to the inter-site
/// penalty and to reclaimed runs does not count as use.
fn simulate(pipeline: &Pipeline, base_nodes: &[NodeView], jobs: &[SimJob], penalty: f64) -> Report {
    let mut nodes: Vec<NodeView> = base_nodes.to_vec();
    let index: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    let settings = Settings {
        site_span_penalty: penalty,
        ..Settings::default()
    };
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| jobs[i].submit);
    let mut next_arrival = 0;
    let mut pending: Vec<usize> = Vec::new();
    let mut runs: Vec<Run> = Vec::new();
    let mut started_at: Vec<Option<i64>> = vec![None; jobs.len()];
    let mut finished_at: Vec<Option<i64>> = vec![None; jobs.len()];
    let mut run_time: Vec<i64> = vec![0; jobs.len()];
    let (mut multi, mut spanned) = (0usize, 0usize);
    let mut lost = 0.0;
    let mut useful = 0.0;
    let mut t = jobs.iter().map(|j| j.submit).min().unwrap_or(T0);
    let first_submit = t;
    let last_submit = jobs.iter().map(|j| j.submit).max().unwrap_or(T0);
    let mut guard = 0u64;
    loop {
        // Ends and reclaims up to t.
        let mut k = 0;
        while k < runs.len() {
            let r = &runs[k];
            let stop = r.killed_at.unwrap_or(r.end);
            if stop <= t {
                let r = runs.swap_remove(k);
                for (n, slots) in &r.placement {
                    for &s in slots {
                        nodes[*n].used[s as usize] = false;
                    }
                }
                if r.killed_at.is_some() {
                    lost += f64::from(r.slots) * (stop - r.start) as f64 / 3600.0;
                    pending.push(r.job);
                } else {
                    finished_at[r.job] = Some(r.end);
                    run_time[r.job] = r.end - r.start;
                    useful += f64::from(r.slots) * jobs[r.job].base_runtime as f64;
                }
            } else {
                k += 1;
            }
        }
        while next_arrival < order.len() && jobs[order[next_arrival]].submit <= t {
            pending.push(order[next_arrival]);
            next_arrival += 1;
        }
        if pending.is_empty() && runs.is_empty() && next_arrival == order.len() {
            break;
        }
        if !pending.is_empty() {
            let snapshot = Snapshot {
                now: t,
                jobs: pending
                    .iter()
                    .map(|&j| PendingJob {
                        seq: j as u64,
                        queue_priority: 0,
                        priority: 0,
                        qtime: jobs[j].submit,
                        // In submission order, as the server ranks jobs entering a queue.
                        rank: jobs[j].submit.max(0) as u64,
                        request: jobs[j].request.clone(),
                        walltime_secs: Some(jobs[j].walltime),
                        site: None,
                        span: Span::Default,
                        usage_share: 0.0,
                        owner: Default::default(),
                        exclusive: false,
                        array_slots: None,
                        awaiting_terminal: false,
                    })
                    .collect(),
                nodes: nodes.clone(),
                running: runs
                    .iter()
                    .map(|r| RunningJob {
                        seq: r.job as u64,
                        expected_end: r.expected_end,
                        placement: r
                            .placement
                            .iter()
                            .map(|(n, s)| capstan_server::scheduler::NodeSlots {
                                node: nodes[*n].name.clone(),
                                slots: s.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                settings: settings.clone(),
            };
            let decisions = pipeline.run(&snapshot);
            for d in decisions {
                let Decision::Start {
                    seq,
                    placement,
                    site,
                    ..
                } = d
                else {
                    continue;
                };
                let j = seq as usize;
                pending.retain(|&p| p != j);
                let placement: Vec<(usize, Vec<u32>)> = placement
                    .into_iter()
                    .map(|p| (index[&p.node], p.slots))
                    .collect();
                let speed = placement
                    .iter()
                    .map(|(n, _)| nodes[*n].speed)
                    .fold(f64::INFINITY, f64::min);
                let span = site.contains('+');
                let factor = if span { penalty } else { 1.0 } / speed;
                if placement.len() > 1 {
                    multi += 1;
                    spanned += usize::from(span);
                }
                let end = t + (jobs[j].base_runtime as f64 * factor).ceil() as i64;
                let expected_end = t + (jobs[j].walltime as f64 * factor).ceil() as i64;
                let killed_at = placement
                    .iter()
                    .filter_map(|(n, _)| match Lending::of(&nodes[*n], t, 0) {
                        Lending::Open { until } if until < end => Some(until),
                        _ => None,
                    })
                    .min();
                let mut slots = 0;
                for (n, ss) in &placement {
                    for &s in ss {
                        nodes[*n].used[s as usize] = true;
                    }
                    slots += ss.len() as u32;
                }
                started_at[j] = Some(t);
                runs.push(Run {
                    job: j,
                    start: t,
                    end,
                    killed_at,
                    expected_end,
                    placement,
                    slots,
                });
            }
        }
        // Next event: an arrival, an end or reclaim, or a periodic pass (windows open).
        let mut next = i64::MAX;
        if next_arrival < order.len() {
            next = next.min(jobs[order[next_arrival]].submit);
        }
        for r in &runs {
            next = next.min(r.killed_at.unwrap_or(r.end));
        }
        if !pending.is_empty() {
            next = next.min(t + 300);
        }
        if next == i64::MAX || (next_arrival == order.len() && t > last_submit + 60 * 86_400) {
            break;
        }
        t = next.max(t + 1);
        guard += 1;
        if guard > 10_000_000 {
            break;
        }
    }
    let done: Vec<usize> = (0..jobs.len())
        .filter(|&j| finished_at[j].is_some())
        .collect();
    let n = done.len().max(1) as f64;
    let waits: Vec<f64> = done
        .iter()
        .map(|&j| (started_at[j].unwrap_or(0) - jobs[j].submit) as f64)
        .collect();
    let bsld: f64 = done
        .iter()
        .zip(&waits)
        .map(|(&j, w)| {
            let run = run_time[j] as f64;
            ((w + run) / run.max(10.0)).max(1.0)
        })
        .sum();
    let makespan = done
        .iter()
        .filter_map(|&j| finished_at[j])
        .max()
        .unwrap_or(first_submit)
        - first_submit;
    let capacity: f64 = base_nodes.iter().map(|n| f64::from(n.np)).sum();
    Report {
        mean_wait: waits.iter().sum::<f64>() / n,
        mean_bsld: bsld / n,
        makespan_h: makespan as f64 / 3600.0,
        utilization: if makespan > 0 {
            useful / (capacity * makespan as f64)
        } else {
            0.0
        },
        spanned: if multi > 0 {
            spanned as f64 / multi as f64
        } else {
            0.0
        },
        lost_core_h: lost,
        unfinished: jobs.len() - done.len(),
    }
}

fn views(text: &str) -> anyhow::Result<Vec<NodeView>> {
    Ok(nodes_file::parse(text)?
        .into_iter()
        .map(|d| NodeView {
            used: vec![false; d.np as usize],
            name: d.name,
            site: d.site,
            np: d.np,
            properties: d.properties,
            available: true,
            physmem_kb: None,
            speed: d.speed,
            dedicated: d.dedicated,
            window: d.window,
            load: 0.0,
            access: d.access,
        })
        .collect())
}

/// The policies compared: Capstan's and the baselines, each a pipeline configuration.
fn policies() -> Vec<(&'static str, Pipeline)> {
    vec![
        (
            "Capstan (wait or span by expected completion)",
            Pipeline::standard(),
        ),
        (
            "FIFO first fit (Torque pbs_sched)",
            Pipeline::fifo_first_fit(),
        ),
        (
            "never span (HTCondor, PBS do_not_span_psets)",
            Pipeline::baseline(SitePolicy::NeverSpan),
        ),
        (
            "wait 300 s then span (Slurm --switches=1@300)",
            Pipeline::baseline(SitePolicy::WaitThenSpan(300)),
        ),
        (
            "span when it does not fit (PBS Pro default)",
            Pipeline::baseline(SitePolicy::SpanWhenNoFit),
        ),
    ]
}

/// One pass over `n_jobs` pending jobs on 1,000 16-slot nodes split into `n_sites` sites
/// (the first site a little larger), half full.
fn bench(n_jobs: u64, n_sites: u32) {
    let n_sites = n_sites.max(1);
    let mut nodes = Vec::new();
    for i in 0..1000u32 {
        let np = 16;
        let mut used = vec![false; np as usize];
        for u in used.iter_mut().take((i % 3 * 4) as usize) {
            *u = true;
        }
        nodes.push(NodeView {
            name: format!("n{i:04}"),
            site: if n_sites == 2 {
                // The historical two-site shape: 600 + 400 nodes.
                if i < 600 {
                    "a".into()
                } else {
                    "b".into()
                }
            } else {
                format!("s{}", i * n_sites / 1000)
            },
            np,
            used,
            properties: if i % 10 == 0 {
                vec!["bigmem".into()]
            } else {
                vec![]
            },
            available: i % 50 != 0,
            physmem_kb: None,
            speed: if i % 4 == 0 { 1.5 } else { 1.0 },
            dedicated: i % 5 != 0,
            window: None,
            load: f64::from(i % 7) / 10.0,
            access: Default::default(),
        });
    }
    let mut rng = Rng(7);
    let jobs: Vec<PendingJob> = (0..n_jobs)
        .map(|i| {
            let request = match i % 4 {
                0 | 1 => SlotRequest {
                    chunks: vec![Chunk::new(1, rng.range(1, 8))],
                    procs: false,
                },
                2 => SlotRequest {
                    chunks: vec![Chunk::new(rng.range(2, 64), rng.range(1, 16))],
                    procs: false,
                },
                _ => SlotRequest {
                    chunks: vec![Chunk::new(rng.range(1, 64), 1)],
                    procs: true,
                },
            };
            PendingJob {
                seq: i,
                queue_priority: 0,
                priority: (i % 11) as i64,
                qtime: T0 + i as i64,
                rank: i,
                request,
                walltime_secs: Some(u64::from(rng.range(1, 96)) * 900),
                site: None,
                span: Span::Default,
                usage_share: 0.0,
                owner: Default::default(),
                exclusive: false,
                array_slots: None,
                awaiting_terminal: false,
            }
        })
        .collect();
    let running: Vec<RunningJob> = nodes
        .iter()
        .filter(|n| n.used.iter().any(|u| *u))
        .enumerate()
        .map(|(k, n)| RunningJob {
            seq: 100_000 + k as u64,
            expected_end: T0 + 600 + (k as i64 % 97) * 300,
            placement: vec![capstan_server::scheduler::NodeSlots {
                node: n.name.clone(),
                slots: (0..n.used.iter().filter(|u| **u).count() as u32).collect(),
            }],
        })
        .collect();
    let snapshot = Snapshot {
        now: T0,
        jobs,
        nodes,
        running,
        settings: Settings::default(),
    };
    for (name, pipeline) in [
        ("Capstan", Pipeline::standard()),
        ("FIFO first fit", Pipeline::fifo_first_fit()),
    ] {
        let mut best = f64::INFINITY;
        let mut started = 0;
        for _ in 0..3 {
            let clock = Instant::now();
            let decisions = pipeline.run(&snapshot);
            best = best.min(clock.elapsed().as_secs_f64());
            started = decisions
                .iter()
                .filter(|d| matches!(d, Decision::Start { .. }))
                .count();
        }
        println!(
            "{name}: one pass, {n_jobs} pending jobs, 1000 nodes, {n_sites} sites: {:.1} ms (best of 3; {started} started)",
            best * 1000.0
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.bench {
        bench(args.bench_jobs, args.bench_sites);
        return Ok(());
    }
    let text = match &args.nodes {
        Some(p) => std::fs::read_to_string(p)?,
        None => DEFAULT_NODES.to_string(),
    };
    let nodes = views(&text)?;
    let jobs = match &args.swf {
        Some(p) => read_swf(&std::fs::read_to_string(p)?),
        None => generate(&args, &nodes),
    };
    let capacity: u32 = nodes.iter().map(|n| n.np).sum();
    let sites: std::collections::BTreeSet<&str> = nodes.iter().map(|n| n.site.as_str()).collect();
    println!(
        "{} jobs on {} nodes ({} slots, sites {}), seed {}, load {}, parallel share {}, span penalty {}\n",
        jobs.len(),
        nodes.len(),
        capacity,
        sites.into_iter().collect::<Vec<_>>().join("+"),
        args.seed,
        args.load,
        args.parallel,
        args.penalty
    );
    println!("| policy | mean wait (s) | mean bounded slowdown | makespan (h) | utilization | multi-node jobs spanned | core-h lost to owners | unfinished |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, pipeline) in policies() {
        let r = simulate(&pipeline, &nodes, &jobs, args.penalty);
        println!(
            "| {name} | {:.0} | {:.2} | {:.1} | {:.1}% | {:.1}% | {:.1} | {} |",
            r.mean_wait,
            r.mean_bsld,
            r.makespan_h,
            r.utilization * 100.0,
            r.spanned * 100.0,
            r.lost_core_h,
            r.unfinished
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_seeded_and_in_range() {
        let (mut a, mut b) = (Rng(3), Rng(3));
        for _ in 0..100 {
            let x = a.unit();
            assert_eq!(x, b.unit());
            assert!((0.0..1.0).contains(&x));
            let r = a.range(2, 5);
            b.range(2, 5);
            assert!((2..=5).contains(&r));
        }
    }

    #[test]
    fn swf_lines() {
        let jobs = read_swf(
            "; comment\n1 10 5 100 4 -1 -1 4 200 -1 1 1 1 1 1 -1 -1 -1\n2 20 0 -1 4 -1 -1 4 200\n",
        );
        assert_eq!(jobs.len(), 1, "a job without run time is skipped");
        assert_eq!(jobs[0].submit, T0 + 10);
        assert_eq!(jobs[0].base_runtime, 100);
        assert_eq!(jobs[0].walltime, 200);
        assert_eq!(jobs[0].request.total_slots(), 4);
    }

    #[test]
    fn small_workload_finishes_under_every_policy() {
        let nodes = views(DEFAULT_NODES).unwrap();
        let args = Args::parse_from(["capstan-sim", "--jobs", "60"]);
        let jobs = generate(&args, &nodes);
        for (name, pipeline) in policies() {
            let r = simulate(&pipeline, &nodes, &jobs, 1.5);
            assert_eq!(r.unfinished, 0, "{name}");
            assert!(r.utilization > 0.0 && r.utilization <= 1.0, "{name}: {r:?}");
        }
    }
}
