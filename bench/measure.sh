#!/usr/bin/env bash
# The measurements of bench/throughput.sh, run in the job work directory as the submitting
# user against the cluster throughput.sh started. Prints shell assignments of the results.
set -euo pipefail
# A failure inside $(...) (cpu_mark's) stops the script too.
shopt -s inherit_errexit
n_qsub=$N_QSUB n_lat=$N_LAT n_drain=$N_DRAIN n_qstat=$N_QSTAT qstat_reps=$QSTAT_REPS

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# Where the CPU goes, because jobs/s alone says little on a shared VM: a mark is the
# machine's busy and stolen jiffies (/proc/stat) and the CPU of pbs_server, of the MOMs, and
# of the runs' supervisors with the job shells they reaped: what the MOMs reaped, and their
# children (the job spawner, which forks and reaps the supervisors), from /proc/PID/stat of
# $SERVER_PID, $MOM_PIDS and the children /proc lists for each MOM thread.
cpu_mark() {
    local _ u n s i w q sq st pid kid a b server moms=0 reaped=0
    read -r _ u n s i w q sq st _ </proc/stat
    read -r server _ < <(proc_cpu "$SERVER_PID")
    for pid in $MOM_PIDS; do
        read -r a b < <(proc_cpu "$pid")
        moms=$((moms + a)) reaped=$((reaped + b))
        # (Needs CONFIG_PROC_CHILDREN; without it the spawners' share would read 0.)
        [ -r "/proc/$pid/task/$pid/children" ] ||
            { echo "measure.sh: /proc/$pid/task/$pid/children is missing" >&2; exit 1; }
        for kid in $(cat /proc/"$pid"/task/*/children 2>/dev/null || true); do   # threads come and go
            # A child that exits meanwhile counts nothing (its parent's reaped time has it).
            read -r a b < <(proc_cpu "$kid" 2>/dev/null) || { a=0; b=0; }
            reaped=$((reaped + a + b))
        done
    done
    echo "$((u + n + s + q + sq)) $((i + w)) $st $server $moms $reaped"
}
# proc_cpu PID: "OWN REAPED" clock ticks (utime+stime, cutime+cstime); fields counted after
# the command name's closing parenthesis, which may hide spaces. Prints nothing and fails if
# PID is unreadable (so `read < <(proc_cpu PID)` fails, and stops the script unless handled).
proc_cpu() {
    local stat
    stat=$(cat "/proc/$1/stat") || { echo "measure.sh: cannot read /proc/$1/stat" >&2; return 1; }
    echo "${stat##*) }" | awk '{print $12 + $13, $14 + $15}'
}
# cpu_per_job MARK0 MARK1: "MACHINE_MS SERVER_MS MOMS_MS REAPED_MS STEAL_PCT" per job.
cpu_per_job() {
    awk -v a="$1" -v b="$2" -v n="$n_drain" -v hz="$(getconf CLK_TCK)" 'BEGIN {
        split(a, x, " "); split(b, y, " "); for (k = 1; k <= 6; k++) d[k] = y[k] - x[k]
        ms = 1000 / hz / n; all = d[1] + d[2] + d[3]
        printf "%.2f %.2f %.2f %.2f %.0f\n", d[1] * ms, d[4] * ms, d[5] * ms, d[6] * ms,
            (all > 0 ? 100 * d[3] / all : 0) }'
}

# count_unfinished <QSTAT_B_OUTPUT: sets `left` to the jobs the server counts queued,
# running, held, waiting, in transit or exiting; fails on output it cannot read.
count_unfinished() {
    local _ que run hld wat trn ext
    { read -r _ && read -r _ && read -r _ _ _ que run hld wat trn ext _; } || return 1
    left=$((que + run + hld + wat + trn + ext))
}
# A FIFO nobody writes: `read -t` on it is a sleep that starts no process.
[ -p pause.fifo ] || mkfifo pause.fifo
exec {pause}<>pause.fifo

# Drain (step 3): submit held trivial jobs, release them all at once, time until all are
# complete. Prints "SECONDS RATE" and then cpu_per_job's figures.
drain() {
    local ids=() t0 t1 m0 m1
    for _ in $(seq 1 "$n_drain"); do ids+=("$(qsub -h -j oe -o /dev/null held.sh)"); done
    m0=$(cpu_mark)
    t0=$(now_us)
    qrls "${ids[@]}"
    # Until no job is left unfinished (every job but the drain's is complete by now):
    # `qstat -B`'s counts, one exec per round and no other process, so the poller takes
    # little of the CPU it measures. Each look costs about a millisecond of CPU, so the
    # pause shrinks with what is left (1 ms per 4 jobs, at most 250 ms): about 25 looks in a
    # drain of 1000, and one every 20 ms over its last 80 jobs, which is when it ends.
    local left=1 pause_s
    for _ in $(seq 1 60000); do
        qstat -B >counts.txt && count_unfinished <counts.txt ||
            { echo "measure.sh: cannot read qstat -B" >&2; exit 1; }
        [ "$left" = 0 ] && break
        pause_s=$(( left / 4 )); pause_s=$(( pause_s < 20 ? 20 : pause_s > 250 ? 250 : pause_s ))
        read -r -t "0.$(printf %03d "$pause_s")" -u "$pause" || true
    done
    t1=$(now_us)
    [ "$left" = 0 ] || { echo "measure.sh: the drain did not finish in time" >&2; exit 1; }
    m1=$(cpu_mark)
    echo "$(awk -v d=$((t1 - t0)) -v n="$n_drain" 'BEGIN {printf "%.2f %.0f", d / 1e6, n / (d / 1e6)}') $(cpu_per_job "$m0" "$m1")"
}

# The floor under such a drain on this machine: start the same jobs' shells directly (as
# the MOM would: a login shell, `-l`, unless $source_login_batch is false), one per core at
# a time, as many as the drain ran, no scheduler, no daemon. Prints the rate and the
# machine's CPU ms per shell. (The shell gets the script as its argument here; the MOM, as
# Torque's, writes the script's path on the shell's stdin, and the shell runs it in a child:
# one fork per job more than this floor counts.)
floor() {
    local user_shell t0 t1 m0 m1
    user_shell=$(getent passwd "$(id -un)" | cut -d: -f7)
    m0=$(cpu_mark)
    t0=$(now_us)
    seq 1 "$n_drain" | xargs -P "$(nproc)" -I{} "${user_shell:-/bin/sh}" "$@" held.sh >/dev/null 2>&1
    t1=$(now_us)
    m1=$(cpu_mark)
    echo "$(awk -v d=$((t1 - t0)) -v n="$n_drain" 'BEGIN {printf "%.0f", n / (d / 1e6)}') $(cpu_per_job "$m0" "$m1" | cut -d' ' -f1)"
}

echo 'true' >held.sh
if [ "${MEASURE:-all}" = drain ]; then
    # Only the drain (bench/ab.sh compares builds by it): rate and CPU per job by component.
    read -r drain_s drain_rate drain_cpu server_cpu moms_cpu reaped_cpu drain_steal < <(drain)
    echo "drain_s=$drain_s drain_rate=$drain_rate drain_cpu=$drain_cpu server_cpu=$server_cpu" \
        "moms_cpu=$moms_cpu reaped_cpu=$reaped_cpu drain_steal=$drain_steal"
    exit 0
fi
if [ "${MEASURE:-all}" = plain-drain ]; then
    # The MOMs now run with `$source_login_batch false`: the same drain with plain shells,
    # after the held jobs of step 4 are deleted. The server knows more completed jobs now
    # (~6000 against ~1000 in step 3); its indexes keep them out of scheduling passes.
    qdel all >/dev/null 2>&1 || true
    read -r plain_drain_s plain_drain_rate plain_cpu plain_server_cpu plain_moms_cpu \
        plain_reaped_cpu plain_steal < <(drain)
    read -r plain_floor_rate plain_floor_cpu < <(floor)
    echo "plain_drain_s=$plain_drain_s plain_drain_rate=$plain_drain_rate plain_floor_rate=$plain_floor_rate" \
        "plain_cpu=$plain_cpu plain_server_cpu=$plain_server_cpu plain_moms_cpu=$plain_moms_cpu" \
        "plain_reaped_cpu=$plain_reaped_cpu plain_steal=$plain_steal plain_floor_cpu=$plain_floor_cpu"
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

# 2b. An interactive job's round trip on an idle cluster: `qsub -I -x` of a script that
# prints a line, from the call to its return (submission, the job started on a pseudo-terminal,
# its line relayed back through the server, its end).
printf '#!/bin/sh\necho interactive-ok\n' >inter.sh
chmod 755 inter.sh
its=()
for _ in $(seq 1 "$n_lat"); do
    a=$(now_us)
    out=$(timeout 60 qsub -I -x "$PWD/inter.sh" </dev/null) ||
        { echo "measure.sh: qsub -I -x failed: $out" >&2; exit 1; }
    b=$(now_us)
    [[ $out == *interactive-ok* ]] || { echo "measure.sh: qsub -I -x printed: $out" >&2; exit 1; }
    its+=("$((b - a))")
done
inter_ms=$(printf '%s\n' "${its[@]}" | median | awk '{printf "%.1f", $1 / 1000}')

# 3. Drain, with the MOMs' default login shells, and its floor.
read -r drain_s drain_rate drain_cpu server_cpu moms_cpu reaped_cpu drain_steal < <(drain)
read -r floor_rate floor_cpu < <(floor -l)

# 4. qstat with n_qstat jobs known (completed drain jobs plus held ones).
known=$(qstat | tail -n +3 | wc -l)
for _ in $(seq 1 $((n_qstat - known))); do qsub -h held.sh >/dev/null; done
known=$(qstat | tail -n +3 | wc -l)
qts=()
for _ in $(seq 1 "$qstat_reps"); do
    a=$(now_us); qstat >/dev/null; b=$(now_us); qts+=("$((b - a))")
done
qstat_ms=$(printf '%s\n' "${qts[@]}" | median | awk '{printf "%.1f", $1 / 1000}')

echo "qsub_ms=$qsub_ms lat_ms=$lat_ms inter_ms=$inter_ms drain_s=$drain_s drain_rate=$drain_rate floor_rate=$floor_rate known=$known qstat_ms=$qstat_ms" \
    "drain_cpu=$drain_cpu server_cpu=$server_cpu moms_cpu=$moms_cpu reaped_cpu=$reaped_cpu drain_steal=$drain_steal floor_cpu=$floor_cpu"
