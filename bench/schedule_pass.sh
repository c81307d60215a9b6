#!/usr/bin/env bash
# One scheduling pass, timed: 10,000 pending jobs (serial, multi-node, procs) on 1,000 nodes
# in two sites (16 slots each, a third of them partly busy, mixed speeds, some borrowed), with
# running jobs to compute reservations from. Runs the same `Pipeline` code as pbs_server, in
# a release build, and prints the best of three passes for Capstan's policy and for the FIFO
# first-fit baseline. Not a test: a number to read (design.md "Measuring").
#
#   bench/schedule_pass.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
cargo build --release -q -p capstan-server --bin capstan-sim
"$repo/target/release/capstan-sim" --bench
# How the cost grows with jobs x sites (the per-site index should keep it at most linear).
echo
echo "scaling (Capstan policy, best of 3 per cell):"
for sites in 1 2 4; do
    for jobs in 5000 10000 20000; do
        "$repo/target/release/capstan-sim" --bench --bench-jobs "$jobs" --bench-sites "$sites" |
            grep '^Capstan:'
    done
done
