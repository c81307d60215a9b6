#!/usr/bin/env bash
# The measurements of bench/throughput.sh, run in the job work directory as the submitting
# user against the cluster throughput.sh started. Prints shell assignments of the results.
set -euo pipefail
n_qsub=$N_QSUB n_lat=$N_LAT n_drain=$N_DRAIN n_qstat=$N_QSTAT qstat_reps=$QSTAT_REPS

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Drain (step 3): submit held trivial jobs, release them all at once, time until all are
# complete. Prints "SECONDS RATE".
drain() {
    local ids=() t0 t1 left
    for _ in $(seq 1 "$n_drain"); do ids+=("$(qsub -h -j oe -o /dev/null held.sh)"); done
    t0=$(now_us)
    qrls "${ids[@]}"
    for _ in $(seq 1 60000); do
        left=$(qstat "${ids[@]}" 2>/dev/null | awk 'NR>2 && $5 != "C"' | wc -l)
        [ "$left" = 0 ] && break
        sleep 0.02
    done
    t1=$(now_us)
    awk -v d=$((t1 - t0)) -v n="$n_drain" 'BEGIN {printf "%.2f %.0f\n", d / 1e6, n / (d / 1e6)}'
}

# The floor under such a drain on this machine: start the same jobs' shells directly (as
# the MOM would: a login shell, `-l`, unless $source_login_batch is false), one per core at
# a time, as many as the drain ran, no scheduler, no daemon. Prints the rate.
floor() {
    local user_shell t0 t1
    user_shell=$(getent passwd "$(id -un)" | cut -d: -f7)
    t0=$(now_us)
    seq 1 "$n_drain" | xargs -P "$(nproc)" -I{} "${user_shell:-/bin/sh}" "$@" held.sh >/dev/null 2>&1
    t1=$(now_us)
    awk -v d=$((t1 - t0)) -v n="$n_drain" 'BEGIN {printf "%.0f\n", n / (d / 1e6)}'
}

echo 'true' >held.sh
if [ "${MEASURE:-all}" = plain-drain ]; then
    # The MOMs now run with `$source_login_batch false`: the same drain with plain shells,
    # after the held jobs of step 4 are deleted. The server knows more completed jobs now
    # (~6000 against ~1000 in step 3); its indexes keep them out of scheduling passes.
    qdel all >/dev/null 2>&1 || true
    read -r plain_drain_s plain_drain_rate < <(drain)
    plain_floor_rate=$(floor)
    echo "plain_drain_s=$plain_drain_s plain_drain_rate=$plain_drain_rate plain_floor_rate=$plain_floor_rate"
    exit 0
fi

# 1. Sequential qsub (held jobs, so the scheduler does not compete for the CPU).
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

# 3. Drain, with the MOMs' default login shells, and its floor.
read -r drain_s drain_rate < <(drain)
floor_rate=$(floor -l)

# 4. qstat with n_qstat jobs known (completed drain jobs plus held ones).
known=$(qstat | tail -n +3 | wc -l)
for _ in $(seq 1 $((n_qstat - known))); do qsub -h held.sh >/dev/null; done
known=$(qstat | tail -n +3 | wc -l)
qts=()
for _ in $(seq 1 "$qstat_reps"); do
    a=$(now_us); qstat >/dev/null; b=$(now_us); qts+=("$((b - a))")
done
qstat_ms=$(printf '%s\n' "${qts[@]}" | median | awk '{printf "%.1f", $1 / 1000}')

echo "qsub_ms=$qsub_ms lat_ms=$lat_ms drain_s=$drain_s drain_rate=$drain_rate floor_rate=$floor_rate known=$known qstat_ms=$qstat_ms"
