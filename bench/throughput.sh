#!/usr/bin/env bash
# Capstan throughput benchmark, on this machine, against a fresh demo-shaped cluster
# (one pbs_server, four pbs_mom: a1 a2 b1 b2, np=2 each) in a temporary directory.
#
# Measures:
#   1. sequential qsub: N held jobs submitted one after another (each durable on return)
#   2. qsub -> running: on an idle cluster, from qsub returning to the job's first line
#   3. drain: 1000 trivial jobs released at once, until the last is complete
#   4. qstat with 5000 jobs known
#
#   bench/throughput.sh [--quick]     (--quick: smaller counts, for a smoke run)
#
# Needs bash >= 5 (EPOCHREALTIME). Stops only the processes it started.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${CAPSTAN_BIN_DIR:-$repo/target/release}
n_qsub=1000; n_lat=30; n_drain=1000; n_qstat=5000; qstat_reps=30
if [ "${1:-}" = --quick ]; then n_qsub=100; n_lat=5; n_drain=100; n_qstat=500; qstat_reps=5; fi

[ -x "$bin/pbs_server" ] || cargo build --release --workspace --bins --manifest-path "$repo/Cargo.toml"
dir=$(mktemp -d /tmp/capstan-bench.XXXXXX)
chmod 755 "$dir"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/server/server_priv" "$dir/work"
chmod 755 "$dir/server"
printf 'a1 np=2 site=a\na2 np=2 site=a\nb1 np=2 site=b\nb2 np=2 site=b\n' >"$dir/server/server_priv/nodes"
extra=()
[ "$(id -u)" = 0 ] && extra+=(--allow-root-jobs)
RUST_LOG=warn "$bin/pbs_server" --home "$dir/server" --mom-listen "127.0.0.1:$port" "${extra[@]}" \
    >"$dir/server.log" 2>&1 &
pids+=($!)
for n in a1 a2 b1 b2; do
    mkdir -p "$dir/mom-$n"
    RUST_LOG=warn "$bin/pbs_mom" --home "$dir/mom-$n" --server "127.0.0.1:$port" --node-name "$n" \
        >"$dir/mom-$n.log" 2>&1 &
    pids+=($!)
done
export PBS_HOME=$dir/server PATH=$bin:$PATH
cd "$dir/work"
for _ in $(seq 1 400); do
    [ "$(pbsnodes -a 2>/dev/null | grep -c '^     state = free' || true)" = 4 ] && break
    sleep 0.05
done
[ "$(pbsnodes -a | grep -c '^     state = free')" = 4 ] || { echo "nodes did not come up" >&2; exit 1; }

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# 1. Sequential qsub (held jobs, so the scheduler does not compete for the CPU).
echo 'true' >held.sh
t0=$(now_us)
for _ in $(seq 1 "$n_qsub"); do qsub -h held.sh >/dev/null; done
t1=$(now_us)
qsub_ms=$(awk -v d=$((t1 - t0)) -v n="$n_qsub" 'BEGIN {printf "%.2f", d / n / 1000}')
qdel all >/dev/null

# 2. qsub -> running latency on an idle cluster.
cat >lat.sh <<'JOB'
#!/bin/bash
echo "${EPOCHREALTIME/./}" > "$PBS_O_WORKDIR/started.$PBS_JOBID"
JOB
lats=()
for _ in $(seq 1 "$n_lat"); do
    id=$(qsub -j oe -o /dev/null lat.sh)
    t_ret=$(now_us)
    for _ in $(seq 1 5000); do [ -s "started.$id" ] && break; sleep 0.001; done
    t_run=$(cat "started.$id")
    lats+=("$(( (t_run - t_ret) ))")
    for _ in $(seq 1 2000); do [ "$(qstat "$id" | awk 'NR==3 {print $5}')" = C ] && break; sleep 0.005; done
done
lat_ms=$(printf '%s\n' "${lats[@]}" | median | awk '{printf "%.1f", $1 / 1000}')

# 3. Drain: submit held trivial jobs, release them all at once, time until all complete.
ids=()
for _ in $(seq 1 "$n_drain"); do ids+=("$(qsub -h -j oe -o /dev/null held.sh)"); done
t0=$(now_us)
qrls "${ids[@]}"
last=${ids[-1]}
for _ in $(seq 1 60000); do
    left=$(qstat "${ids[@]}" 2>/dev/null | awk 'NR>2 && $5 != "C"' | wc -l)
    [ "$left" = 0 ] && break
    sleep 0.02
done
t1=$(now_us)
drain_s=$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.2f", d / 1e6}')
drain_rate=$(awk -v d=$((t1 - t0)) -v n="$n_drain" 'BEGIN {printf "%.0f", n / (d / 1e6)}')

# 4. qstat with n_qstat jobs known (completed drain jobs plus held ones).
known=$(qstat | tail -n +3 | wc -l)
for _ in $(seq 1 $((n_qstat - known))); do qsub -h held.sh >/dev/null; done
known=$(qstat | tail -n +3 | wc -l)
qts=()
for _ in $(seq 1 "$qstat_reps"); do
    a=$(now_us); qstat >/dev/null; b=$(now_us); qts+=("$((b - a))")
done
qstat_ms=$(printf '%s\n' "${qts[@]}" | median | awk '{printf "%.1f", $1 / 1000}')

cat <<TABLE

Capstan throughput on $(nproc) cores ($(uname -r)), cluster: 4 MOMs x np=2 on loopback
| measure                               | Capstan      | target    | Slurm 22.05* | Torque 6.1.3* |
|---------------------------------------|--------------|-----------|--------------|---------------|
| sequential qsub, ms per call (n=$n_qsub)  | $qsub_ms | <= 2      | 11           | 8-25          |
| qsub returned -> job running, ms (median of $n_lat) | $lat_ms | <= 20 | 1900 | ~1000 |
| drain $n_drain trivial jobs, jobs/s       | $drain_rate ($drain_s s) | >= 500 | 44 | < 10 |
| qstat with $known jobs, ms (median of $qstat_reps) | $qstat_ms | <= 15 | - | 19-28 (1,240 jobs) |
* reference figures quoted in the issue (measured earlier on this kind of machine), not re-measured by this script.
TABLE
