#!/usr/bin/env bash
# Capstan throughput benchmark, on this machine, against a fresh demo-shaped cluster
# (one pbs_server, four pbs_mom: a1 a2 b1 b2, np=2 each, enrolled and talking TLS 1.3 as in
# production) in a temporary directory.
#
# Measures:
#   1. sequential qsub: N held jobs submitted one after another (each durable on return)
#   2. qsub -> running: on an idle cluster, from qsub returning to the job's first line; and
#      an interactive job's round trip (`qsub -I -x` of a script printing a line, against
#      Slurm's `srun` of it)
#   3. drain: 1000 trivial jobs released at once, until the last is complete; and, as the
#      reference for it, the rate at which this machine can merely start those jobs' login
#      shells (Torque runs each job through one) with no scheduler at all. Then, after the
#      other measurements, the same with the MOMs set to `$source_login_batch false` (plain
#      shells), against the plain shells' own floor
#   4. qstat with 5000 jobs known
#   and, for each drain, where the CPU went per job (pbs_server, MOMs, supervisors and
#   shells, the whole machine) and how much of the VM's time its host stole.
#
#   bench/throughput.sh [--quick] [--no-reference] [--drain-only [--plain] [--jobs N]]
#     --quick: smaller counts, for a smoke run
#     --drain-only: only the drain (step 3, without its floor), on the fresh server, printed
#       as one line of `name=value` pairs: what bench/ab.sh compares builds by (not comparable
#       with the full run's drain, which follows steps 1 and 2)
#     --plain: with --drain-only, the MOMs run `$source_login_batch false` from the start
#     --jobs N: with --drain-only, drain N jobs instead of 1000 (a deeper queue)
#     --no-reference: skip the Slurm reference (bench/slurm_reference.sh, Slurm from Debian's
#       packages on the same machine, same counts), run after Capstan's own measurements;
#       ratios are Capstan against that same-run reference.
#
# Needs bash >= 5 (EPOCHREALTIME). Stops only the processes it started.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
n_qsub=1000; n_lat=30; n_drain=1000; n_qstat=5000; qstat_reps=30
quick=() reference=1 drain_only= plain= jobs=
usage="usage: $0 [--quick] [--no-reference] [--drain-only [--plain] [--jobs N]]"
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=(--quick); n_qsub=100; n_lat=5; n_drain=100; n_qstat=500; qstat_reps=5 ;;
        --no-reference) reference= ;;
        --drain-only) drain_only=1 ;;
        --plain) plain=1 ;;
        --jobs) jobs=${2:-}; shift || true ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
    shift
done
[ -z "$plain" ] || [ -n "$drain_only" ] || { echo "$0: --plain goes with --drain-only" >&2; exit 2; }
if [ -n "$jobs" ]; then
    [ -n "$drain_only" ] || { echo "$0: --jobs goes with --drain-only" >&2; exit 2; }
    [[ $jobs =~ ^[1-9][0-9]{0,5}$ ]] || { echo "$0: --jobs needs a number of jobs (1-999999)" >&2; exit 2; }
    n_drain=$jobs
fi

if [ -n "${CAPSTAN_BIN_DIR:-}" ]; then
    # Someone else's build, measured as it is; it must be complete.
    bin=$CAPSTAN_BIN_DIR
    [ -x "$bin/pbs_server" ] && [ -x "$bin/capstan_supervisor" ] ||
        { echo "$0: $bin lacks pbs_server or capstan_supervisor" >&2; exit 1; }
else
    # The workspace as it is now (build.sh's last line names the directory it filled).
    bin=$("$repo/build.sh" --release | tail -n 1)
fi
# How the commands being measured were linked (build.sh makes them static musl binaries when
# it can): a glibc command spends most of a qsub starting up.
commands_linked=$(file -L "$bin/qsub" 2>/dev/null | grep -o -e 'static-pie linked' -e 'statically linked' \
    -e 'dynamically linked' || echo 'unknown (no file command)')
dir=$(mktemp -d /tmp/capstan-bench.XXXXXX)
chmod 755 "$dir"
server_pid='' mom_pids=()
cleanup() {
    for pid in $server_pid "${mom_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$dir/server/server_priv" "$dir/work"
chmod 755 "$dir/server"
printf 'a1 np=2 site=a\na2 np=2 site=a\nb1 np=2 site=b\nb2 np=2 site=b\n' >"$dir/server/server_priv/nodes"
for n in a1 a2 b1 b2; do   # enrol: the MOMs use TLS 1.3 with client certificates
    mkdir -p "$dir/mom-$n"
    "$bin/pbs_server" --home "$dir/server" enroll "$n" --out "$dir/$n.bundle" 2>/dev/null
    "$bin/pbs_mom" --home "$dir/mom-$n" install-cert "$dir/$n.bundle" 2>/dev/null
    if [ -n "$plain" ]; then
        mkdir -p "$dir/mom-$n/mom_priv"
        echo '$source_login_batch false' >"$dir/mom-$n/mom_priv/config"
    fi
done
RUST_LOG=warn "$bin/pbs_server" --home "$dir/server" --mom-listen "127.0.0.1:$port" \
    >"$dir/server.log" 2>&1 &
server_pid=$!
start_moms() {
    for n in a1 a2 b1 b2; do
        RUST_LOG=warn "$bin/pbs_mom" --home "$dir/mom-$n" --server "127.0.0.1:$port" \
            --node-name "$n" >>"$dir/mom-$n.log" 2>&1 &
        mom_pids+=($!)
    done
}
# wait_nodes N STATE: until N nodes show STATE in pbsnodes (at most 20 s).
wait_nodes() {
    for _ in $(seq 1 400); do
        [ "$(pbsnodes -a 2>/dev/null | grep -c "^     state = $2" || true)" = "$1" ] && return 0
        sleep 0.05
    done
    echo "nodes did not become $2" >&2
    return 1
}
start_moms
export PBS_HOME=$dir/server PATH=$bin:$PATH
# Jobs run as an ordinary user, as on a real cluster: when we are root, the measurements
# run as a dedicated unprivileged user (created if missing).
as_user=()
if [ "$(id -u)" = 0 ]; then
    id capstanbench >/dev/null 2>&1 || useradd --create-home --shell /bin/bash capstanbench
    chown capstanbench "$dir/work"
    as_user=(runuser -u capstanbench --)
fi
cd "$dir/work"
wait_nodes 4 free
measure() {
    "${as_user[@]}" env PBS_HOME="$PBS_HOME" PATH="$PATH" N_QSUB=$n_qsub N_LAT=$n_lat \
        N_DRAIN=$n_drain N_QSTAT=$n_qstat QSTAT_REPS=$qstat_reps MEASURE="$1" \
        SERVER_PID=$server_pid MOM_PIDS="${mom_pids[*]}" \
        bash "$repo/bench/measure.sh"
}
if [ -n "$drain_only" ]; then
    measure drain
    exit 0
fi
results=$(measure all)
eval "$results"

# The drain again with `$source_login_batch false` (Torque's MOM option: plain shells that
# read no profile), which a site running many short jobs would set. The MOMs are restarted
# with it: stopped (the server sees their nodes down), then started again.
for n in a1 a2 b1 b2; do echo '$source_login_batch false' >"$dir/mom-$n/mom_priv/config"; done
for pid in "${mom_pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" || true; done
mom_pids=()
wait_nodes 4 down
start_moms
wait_nodes 4 free
results=$(measure plain-drain)
eval "$results"

# Stop Capstan before the reference runs, so the two never share the CPU.
cd "$repo"
cleanup
trap - EXIT
slurm_qsub_ms=- slurm_latency_ms=- slurm_interactive_ms=- slurm_drain_jobs_per_s=- slurm_qstat_ms=-
ref_note="reference skipped (--no-reference)"
if [ -n "$reference" ]; then
    if ref=$("$repo/bench/slurm_reference.sh" "${quick[@]}" 2>"/tmp/capstan-slurm-ref.$$.log"); then
        eval "$(printf '%s\n' "$ref" | grep -E '^slurm_[a-z_]+=[0-9.]+$')"
        ref_note=$(printf '%s\n' "$ref" | grep '^Slurm ' || true)
    else
        ref_note="Slurm reference unavailable (see /tmp/capstan-slurm-ref.$$.log)"
    fi
fi
# ratio A B: how many times better Capstan is (lower-is-better: B/A; rate: A/B).
ratio() { awk -v a="$1" -v b="$2" -v inv="$3" 'BEGIN { if (a+0 <= 0 || b+0 <= 0) { print "-"; exit }
    r = inv ? a / b : b / a; printf "%.1fx", r }'; }

# share A B: A as a percentage of B.
share() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }'; }

cat <<TABLE

Capstan throughput on $(nproc) cores ($(uname -r)), cluster: 4 MOMs x np=2 on loopback, TLS;
commands linked $commands_linked
| measure | Capstan | Slurm (same run) | Capstan vs Slurm | target |
|---|---|---|---|---|
| sequential qsub, ms per call (n=$n_qsub) | $qsub_ms | $slurm_qsub_ms | $(ratio "$qsub_ms" "$slurm_qsub_ms" 0) faster | <= 2 |
| qsub returned -> job running, ms (median of $n_lat) | $lat_ms | $slurm_latency_ms | $(ratio "$lat_ms" "$slurm_latency_ms" 0) faster | <= 20 |
| interactive round trip, \`qsub -I -x\` vs \`srun\`, ms (median of $n_lat) | $inter_ms | $slurm_interactive_ms | $(ratio "$inter_ms" "$slurm_interactive_ms" 0) faster | - |
| drain $n_drain trivial jobs, jobs/s | $drain_rate ($drain_s s) | $slurm_drain_jobs_per_s | $(ratio "$drain_rate" "$slurm_drain_jobs_per_s" 1) the rate | >= 500 |
| qstat with $known jobs, ms (median of $qstat_reps) | $qstat_ms | $slurm_qstat_ms | $(ratio "$qstat_ms" "$slurm_qstat_ms" 0) faster | <= 15 |
| floor: the same $n_drain jobs' login shells, no scheduler, jobs/s | $floor_rate | - | Capstan's drain: $(share "$drain_rate" "$floor_rate") of it | - |
| drain $n_drain trivial jobs, \$source_login_batch false, jobs/s | $plain_drain_rate ($plain_drain_s s) | - | - | - |
| floor: the same $n_drain jobs' plain shells, no scheduler, jobs/s | $plain_floor_rate | - | Capstan's drain: $(share "$plain_drain_rate" "$plain_floor_rate") of it | - |
$ref_note

Where the drains' CPU went, ms per job (the machine's busy time over the drain, divided by
the jobs; steal: the share of the VM's time its host took; a floor's shell alone for scale)
| drain | machine | pbs_server | the 4 pbs_moms | supervisors + job shells | floor: one shell | steal |
|---|---|---|---|---|---|---|
| login shells | $drain_cpu | $server_cpu | $moms_cpu | $reaped_cpu | $floor_cpu | $drain_steal% |
| plain shells | $plain_cpu | $plain_server_cpu | $plain_moms_cpu | $plain_reaped_cpu | $plain_floor_cpu | $plain_steal% |
TABLE
