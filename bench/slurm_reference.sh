#!/usr/bin/env bash
# Slurm reference for bench/throughput.sh: the same four measures, taken with Debian's Slurm
# on this machine in the same run, so Capstan's figures can be reported as ratios.
#
#   bench/slurm_reference.sh [--quick]     (--quick: the smaller counts of throughput.sh --quick)
#
# Measures (counts as in throughput.sh):
#   1. sequential submit: N `sbatch -H` one after another, ms per call
#   2. submit -> running: on an idle cluster, from `sbatch` returning to the job's first line
#      (which writes ${EPOCHREALTIME/./}), median in ms; and the interactive round trip:
#      `srun` of a script that prints a line, from the call to its return, median in ms
#   3. drain: N trivial held jobs released at once with one `scontrol release`, jobs/s until
#      none is pending, configuring, running or completing
#   4. status listing: `squeue -t all` (all known jobs, completed ones included, as qstat
#      lists them) with n_qstat jobs known, median in ms
# and prints, as its last lines, one human line and then exactly these five:
#   slurm_qsub_ms=.. slurm_latency_ms=.. slurm_interactive_ms=.. slurm_drain_jobs_per_s=..
#   slurm_qstat_ms=..  (slurm_interactive_ms is `-` when this Slurm cannot launch steps)
#
# The cluster, all in a temporary directory of its own (removed on exit):
#   - a private munged (own key from mungekey, own socket/pid/log/seed files), never the
#     system's /run/munge;
#   - slurmctld plus four slurmd (a1 a2 b1 b2, CPUs=2 each: 8 slots, the shape of Capstan's
#     demo cluster of 4 pbs_mom x np=2). The four slurmd run on this one host through Slurm's
#     multiple-slurmd mode (`slurmd -N NAME`, one Port= per node), which Debian's build
#     supports; like Capstan's four MOMs they all share this machine's 2 cores.
#   - loopback only: when `unshare -n` works (root, with iproute2), everything runs in a fresh
#     network namespace whose only interface is lo (127.0.0.1 plus 127.0.0.2, which Slurm's
#     AI_ADDRCONFIG lookups need), so nothing can reach any other address; without it
#     the daemons still talk only to 127.0.0.1 (SlurmctldHost=<hostname>(127.0.0.1),
#     NodeAddr=127.0.0.1) on ports picked free on 127.0.0.1, though Slurm binds its listening
#     sockets to the wildcard address.
#   - stock settings otherwise: sched/backfill with default SchedulerParameters, select/cons_tres
#     (CR_CPU), proctrack/linuxproc, task/none (no cgroups), no accounting, default log level
#     (info). One deviation: MinJobAge=3600 (default 300) so that finished jobs stay known for
#     the listing measure, as completed jobs do in Capstan's qstat.
#     SLURM_REF_SCHEDULER_PARAMETERS, when set, adds a SchedulerParameters= line (for a tuned
#     comparison; the reference proper leaves it unset).
#
# What the stock defaults mean for the figures (seen in slurmctld's log, not from its source):
# slurmctld does not start a batch job at submission or release but on a later scheduling
# pass; with the defaults those passes come every ~3 s (presumably batch_sched_delay=3), plus
# some passes triggered by job completions. Measure 2 submits each probe right after the
# previous one completed, i.e. just after a pass, so it sees nearly the whole 3 s (a random
# arrival would wait anywhere from 0 to 3 s); measure 3 is mostly bounded by the same cadence,
# not by CPU (polling once a second instead of every 20 ms gave the same rate). `scontrol
# release` of N ids is N RPCs (~4 ms each here), counted in the drain time as qrls is in
# throughput.sh.
#
# Exit status: 0 with the numbers; 3 when Slurm cannot be installed, does not come up in a
# bounded time, or a measurement fails or times out (the caller then reports "reference
# unavailable"); 2 on bad usage. Needs bash >= 5 (EPOCHREALTIME); installs slurmctld, slurmd,
# slurm-client and munge with apt-get when missing (needs root). Stops only the processes it
# started, by PID. SLURM_REF_TIMEOUT (seconds) bounds the whole run after installation.
set -Eeuo pipefail
PATH=$PATH:/usr/sbin:/sbin   # slurmctld, slurmd, munged, ip live there

die() { echo "slurm_reference: $*" >&2; exit 3; }
quick=
case "${1:-}" in
    --quick) quick=1 ;;
    "") ;;
    *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac
[ -n "${EPOCHREALTIME:-}" ] || die "needs bash >= 5 (EPOCHREALTIME)"

# ---------------------------------------------------------------- outer part: install, then run
if [ -z "${SLURM_REF_INNER:-}" ]; then
    missing=0
    for c in slurmctld slurmd sbatch squeue scontrol scancel sinfo munged; do
        command -v "$c" >/dev/null 2>&1 || missing=1
    done
    if [ "$missing" = 1 ]; then
        [ "$(id -u)" = 0 ] || die "Slurm is not installed and installing it needs root"
        command -v apt-get >/dev/null 2>&1 || die "Slurm is not installed and there is no apt-get"
        echo "slurm_reference: installing slurmctld slurmd slurm-client munge" >&2
        timeout 900 apt-get update -qq >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -q --no-install-recommends \
            slurmctld slurmd slurm-client munge >&2 || die "apt-get install of Slurm failed"
        for c in slurmctld slurmd sbatch squeue scontrol scancel sinfo munged; do
            command -v "$c" >/dev/null 2>&1 || die "$c still missing after installation"
        done
    fi
    command -v python3 >/dev/null 2>&1 || die "needs python3 (to pick free ports)"
    limit=${SLURM_REF_TIMEOUT:-$([ -n "$quick" ] && echo 600 || echo 2400)}
    netns=()
    if [ "$(id -u)" = 0 ] && command -v ip >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
        netns=(unshare -n --)
    fi
    export SLURM_REF_INNER=1 SLURM_REF_NETNS=${#netns[@]}
    # timeout puts the run in its own process group; on expiry the run's TERM trap cleans up
    # (bounded at about 45 s), and whatever is left after 90 s more gets SIGKILL.
    timeout -k 90 "$limit" "${netns[@]}" "$BASH" "$0" "$@" &
    tpid=$!
    # A signal to this script reaches the run too, so that it cleans up before we exit.
    trap 'kill -TERM "$tpid" 2>/dev/null || true' TERM INT HUP
    rc=0
    for _ in 1 2 3 4 5; do   # wait returns early when a trapped signal arrives
        wait "$tpid" && rc=0 || rc=$?
        kill -0 "$tpid" 2>/dev/null || break
    done
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "slurm_reference: timed out after ${limit}s" >&2; rc=3
    elif [ "$rc" != 0 ] && [ "$rc" != 3 ]; then
        rc=3
    fi
    exit "$rc"
fi

# ---------------------------------------------------------------- inner part: cluster + measures
n_qsub=1000; n_lat=30; n_drain=1000; n_qstat=5000; qstat_reps=30
if [ -n "$quick" ]; then n_qsub=100; n_lat=5; n_drain=100; n_qstat=500; qstat_reps=5; fi

# Nothing from a caller's Slurm environment may steer these clients.
for v in ${!SLURM_@} ${!SBATCH_@} ${!SQUEUE_@} ${!SINFO_@} ${!SCONTROL_@} ${!SCANCEL_@}; do
    case "$v" in SLURM_REF_*) ;; *) unset "$v" ;; esac
done

dir=
pids=()
phase=setup
now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

show_logs() {  # the last lines of each daemon's log, for a failed run
    [ -n "$dir" ] && [ -d "$dir/log" ] || return 0
    local f
    for f in "$dir"/log/*; do
        [ -s "$f" ] || continue
        # a daemon's *.out (its stderr) repeats its log, unless the log never got written
        case "$f" in *.out) [ -s "${f%.out}.log" ] && continue ;; esac
        echo "--- ${f##*/} (last lines)" >&2
        tail -n 6 "$f" >&2
    done
}

alive() { kill -0 "$1" 2>/dev/null; }

stop_pids() {  # stop_pids SECONDS PID...: TERM them, wait up to SECONDS, then KILL what is left
    local secs=$1 p left
    shift
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 1 $((secs * 10))); do
        left=0
        for p in "$@"; do alive "$p" && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for p in "$@"; do
        if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    done
}

tagged_pids() {  # processes carrying this run's tag (daemons, slurmstepd, job scripts)
    local f p
    for f in /proc/[0-9]*/environ; do
        p=${f#/proc/}; p=${p%/environ}
        [ "$p" = "$$" ] && continue
        grep -qzxF "SREF_TAG=$dir" "$f" 2>/dev/null && echo "$p"
    done
    return 0
}

cleanup() {  # bounded: about 45 s at worst
    local rc=$?
    set +eE
    trap - ERR TERM INT HUP
    if [ "$rc" != 0 ] && [ "$phase" != finished ]; then show_logs; fi
    if [ -n "${SLURM_CONF:-}" ] && [ "${#pids[@]}" -gt 1 ] && alive "${pids[1]}"; then
        # Let Slurm end any job still running before its daemons go (at most ~15 s).
        timeout 5 scancel --state=RUNNING -u "$(id -un)" >/dev/null 2>&1
        local stop_by=$(($(now_us) + 10000000))
        while [ "$(now_us)" -lt "$stop_by" ]; do
            [ -z "$(timeout 3 squeue -h -t R,CG,CF -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    # pids: [0] munged, [1] slurmctld, [2..] slurmd. slurmd first, then slurmctld, then munged.
    [ "${#pids[@]}" -gt 2 ] && stop_pids 10 "${pids[@]:2}"
    [ "${#pids[@]}" -gt 1 ] && stop_pids 10 "${pids[1]}"
    [ "${#pids[@]}" -gt 0 ] && stop_pids 5 "${pids[0]}"
    if [ -n "$dir" ]; then
        # Anything else of this run (slurmstepd, job scripts) carries its tag.
        local left
        left=$(tagged_pids)
        # shellcheck disable=SC2086
        [ -n "$left" ] && stop_pids 5 $left
    fi
    wait 2>/dev/null
    [ -n "$dir" ] && rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "slurm_reference: interrupted" >&2; exit 3' TERM INT HUP
trap 'echo "slurm_reference: failed (line $LINENO: $BASH_COMMAND)" >&2; exit 3' ERR

if [ "${SLURM_REF_NETNS:-0}" != 0 ]; then
    # lo up, plus a second loopback address: Slurm resolves with AI_ADDRCONFIG, which glibc
    # answers only when some IPv4 address other than 127.0.0.1 is configured.
    { ip link set lo up && ip addr add 127.0.0.2/8 dev lo; } 2>/dev/null \
        || die "cannot set up lo in the private network namespace"
fi

dir=$(mktemp -d /tmp/slurm-ref.XXXXXX)
chmod 755 "$dir"   # munged wants every directory above its socket searchable by all
mkdir -p "$dir/munge" "$dir/state" "$dir/spool" "$dir/log" "$dir/run" "$dir/work"
chmod 755 "$dir/munge"

# munge: own key, socket, pid, log and seed files.
if ! mungekey -c -k "$dir/munge/munge.key" >/dev/null 2>&1; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1 count=1024 status=none
fi
chmod 600 "$dir/munge/munge.key"
env SREF_TAG="$dir" munged -F --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed" >"$dir/log/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -S "$dir/munge/munge.sock" ] && break; alive "${pids[0]}" || break; sleep 0.1; done
[ -S "$dir/munge/munge.sock" ] || die "munged did not come up"

read -r p_ctld p_a1 p_a2 p_b1 p_b2 < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
host=$(hostname -s)
nodes=(a1 a2 b1 b2)
cat >"$dir/slurm.conf" <<CONF
ClusterName=capstanref
SlurmctldHost=$host(127.0.0.1)
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
SlurmctldPort=$p_ctld
SlurmdPort=$p_a1
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
NodeName=a1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$p_a1 CPUs=2 RealMemory=1024 State=UNKNOWN
NodeName=a2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$p_a2 CPUs=2 RealMemory=1024 State=UNKNOWN
NodeName=b1 NodeHostname=$host NodeAddr=127.0.0.1 Port=$p_b1 CPUs=2 RealMemory=1024 State=UNKNOWN
NodeName=b2 NodeHostname=$host NodeAddr=127.0.0.1 Port=$p_b2 CPUs=2 RealMemory=1024 State=UNKNOWN
PartitionName=batch Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
if [ -n "${SLURM_REF_SCHEDULER_PARAMETERS:-}" ]; then
    echo "SchedulerParameters=$SLURM_REF_SCHEDULER_PARAMETERS" >>"$dir/slurm.conf"
fi
export SLURM_CONF=$dir/slurm.conf

env SREF_TAG="$dir" slurmctld -D -i -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
pids+=($!)
up=
for _ in $(seq 1 150); do   # up to ~30 s
    alive "${pids[1]}" || break
    if timeout 5 scontrol ping 2>/dev/null | grep -q 'is UP'; then up=1; break; fi
    sleep 0.2
done
if [ -z "$up" ]; then
    alive "${pids[1]}" || die "slurmctld exited at start-up"
    die "slurmctld did not answer within 30 s"
fi

for n in "${nodes[@]}"; do
    env SREF_TAG="$dir" slurmd -D -N "$n" -f "$SLURM_CONF" >"$dir/log/slurmd-$n.out" 2>&1 &
    pids+=($!)
done
idle=0
for _ in $(seq 1 300); do   # up to ~60 s
    for ((i = 2; i < ${#pids[@]}; i++)); do alive "${pids[i]}" || die "slurmd ${nodes[i - 2]} exited"; done
    idle=$(timeout 5 sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l || true)
    [ "$idle" = "${#nodes[@]}" ] && break
    sleep 0.2
done
[ "$idle" = "${#nodes[@]}" ] || die "only $idle of ${#nodes[@]} slurmd nodes became idle within 60 s"
phase=measure

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
me=$(id -un)
cd "$dir/work"
printf '#!/bin/sh\ntrue\n' >held.sh

# 1. Sequential submit (held jobs, so the scheduler does not compete for the CPU).
t0=$(now_us)
for _ in $(seq 1 "$n_qsub"); do sbatch -H held.sh >/dev/null; done
t1=$(now_us)
qsub_ms=$(awk -v d=$((t1 - t0)) -v n="$n_qsub" 'BEGIN {printf "%.2f", d / n / 1000}')
scancel -u "$me"

# 2. Submit -> running latency on an idle cluster.
cat >lat.sh <<'JOB'
#!/bin/bash
echo "${EPOCHREALTIME/./}" > "$SLURM_SUBMIT_DIR/started.$SLURM_JOB_ID"
JOB
lats=()
for _ in $(seq 1 "$n_lat"); do
    id=$(sbatch --parsable -o /dev/null lat.sh)
    id=${id%%;*}
    t_ret=$(now_us)
    deadline=$((t_ret + 60000000))
    while ! [ -s "started.$id" ]; do
        [ "$(now_us)" -lt "$deadline" ] || die "job $id did not start within 60 s"
        sleep 0.001
    done
    t_run=$(cat "started.$id")
    lats+=("$((t_run - t_ret))")
    deadline=$(($(now_us) + 60000000))
    while [ "$(squeue -h -j "$id" -t all -o %T 2>/dev/null)" != COMPLETED ]; do
        [ "$(now_us)" -lt "$deadline" ] || die "job $id did not complete within 60 s"
        sleep 0.005
    done
done
lat_ms=$(printf '%s\n' "${lats[@]}" | median | awk '{printf "%.1f", $1 / 1000}')

# 2b. Interactive round trip: `srun` of a script that prints a line, from the call to its
# return (allocation, step launch, the line back to srun, the end): what `qsub -I -x` is
# measured against. Not every Slurm set-up launches steps; then the row says so.
printf '#!/bin/sh\necho interactive-ok\n' >inter.sh
chmod 755 inter.sh
its=()
interactive_ms=-
for _ in $(seq 1 "$n_lat"); do
    a=$(now_us)
    out=$(timeout 60 srun -N1 -n1 "$PWD/inter.sh" </dev/null 2>>srun.err) || break
    b=$(now_us)
    [[ $out == *interactive-ok* ]] || break
    its+=("$((b - a))")
done
if [ "${#its[@]}" = "$n_lat" ]; then
    interactive_ms=$(printf '%s\n' "${its[@]}" | median | awk '{printf "%.1f", $1 / 1000}')
else
    echo "slurm_reference: srun failed; no interactive reference: $(tail -n 3 srun.err 2>/dev/null)" >&2
fi

# 3. Drain: held trivial jobs, released all at once, until none is left unfinished.
ids=()
for _ in $(seq 1 "$n_drain"); do
    id=$(sbatch -H --parsable -o /dev/null held.sh)
    ids+=("${id%%;*}")
done
idlist=$(IFS=,; echo "${ids[*]}")
t0=$(now_us)
scontrol release "$idlist"
deadline=$((t0 + 1200000000))
while :; do
    left=$(squeue -h -t PD,CF,R,CG,S -o %i | wc -l)
    [ "$left" = 0 ] && break
    [ "$(now_us)" -lt "$deadline" ] || die "drain: $left jobs still unfinished after 1200 s"
    sleep 0.02
done
t1=$(now_us)
failed=$(squeue -h -t all -j "$idlist" -o %T | grep -vc '^COMPLETED$' || true)
[ "$failed" = 0 ] || die "drain: $failed of $n_drain jobs did not end COMPLETED"
drain_s=$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.2f", d / 1e6}')
drain_rate=$(awk -v d=$((t1 - t0)) -v n="$n_drain" 'BEGIN {printf "%.1f", n / (d / 1e6)}')

# 4. Listing with n_qstat jobs known (completed and cancelled jobs plus held ones).
known=$(squeue -h -t all | wc -l)
for _ in $(seq 1 $((n_qstat - known))); do sbatch -H held.sh >/dev/null; done
known=$(squeue -h -t all | wc -l)
qts=()
for _ in $(seq 1 "$qstat_reps"); do
    a=$(now_us); squeue -t all >/dev/null; b=$(now_us); qts+=("$((b - a))")
done
qstat_ms=$(printf '%s\n' "${qts[@]}" | median | awk '{printf "%.1f", $1 / 1000}')
phase=finished

version=$(sbatch --version | awk '{print $2}')
where=$([ "${SLURM_REF_NETNS:-0}" != 0 ] && echo "private net namespace, lo only" || echo "loopback")
sched=${SLURM_REF_SCHEDULER_PARAMETERS:+, SchedulerParameters=$SLURM_REF_SCHEDULER_PARAMETERS}
echo "Slurm $version reference on $(nproc) cores ($where; 4 slurmd x CPUs=2$sched): sbatch ${qsub_ms} ms/call (n=$n_qsub), sbatch->running ${lat_ms} ms (median of $n_lat), srun round trip ${interactive_ms} ms (median of $n_lat), drain $n_drain jobs ${drain_rate} jobs/s (${drain_s} s), squeue -t all with $known jobs ${qstat_ms} ms (median of $qstat_reps)"
echo "slurm_qsub_ms=$qsub_ms"
echo "slurm_latency_ms=$lat_ms"
echo "slurm_interactive_ms=$interactive_ms"
echo "slurm_drain_jobs_per_s=$drain_rate"
echo "slurm_qstat_ms=$qstat_ms"
