#!/usr/bin/env bash
# Capstan demo: builds everything, starts a two-site cluster on this machine (one pbs_server
# and four pbs_mom on loopback: a1, a2 in site a; b1, b2 in site b), submits a sample job,
# shows qstat, pbsnodes and the job's output, and leaves the cluster running.
#
#   ./demo.sh          build, (re)start the cluster, run the sample job
#   ./demo.sh stop     stop the cluster this script started (by the PIDs it recorded)
#
# State lives in $CAPSTAN_DEMO_DIR (default: ./demo-cluster). Works as root and as an
# ordinary user; as root the demo server allows root jobs (never the default).
set -euo pipefail

repo=$(cd "$(dirname "$0")" && pwd)
demo=${CAPSTAN_DEMO_DIR:-$repo/demo-cluster}
port=${CAPSTAN_DEMO_PORT:-15001}
bin=$repo/target/capstan/release

stop_cluster() {
    [ -f "$demo/pids" ] || return 0
    local stopping=()
    while read -r pid; do
        # Only a PID this script recorded, and only while it is still one of ours.
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
            grep -q -e pbs_server -e pbs_mom "/proc/$pid/cmdline" 2>/dev/null; then
            kill "$pid" && stopping+=("$pid")
        fi
    done <"$demo/pids"
    # Until they have shut down (a restart right after must find the port and database
    # free), for at most 10 s.
    local pid
    for pid in "${stopping[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    rm -f "$demo/pids"
}

if [ "${1:-}" = stop ]; then
    stop_cluster
    echo "Capstan demo cluster stopped (state kept in $demo)."
    exit 0
fi

if command -v cargo >/dev/null; then
    echo "==> Building Capstan (release)"
    # build.sh's last line names the directory it filled.
    bin=$("$repo/build.sh" --release | tail -n 1)
elif [ -x "$bin/pbs_server" ]; then
    echo "==> cargo not found: using the existing build in $bin"
else
    echo "demo.sh: cargo is required to build Capstan (https://rustup.rs)" >&2
    exit 1
fi

stop_cluster
rm -rf "$demo"
mkdir -p "$demo/server/server_priv" "$demo/work"
chmod 755 "$demo" "$demo/server"
cat >"$demo/server/server_priv/nodes" <<NODES
# name  slots  site    properties
a1      np=2   site=a  bigmem
a2      np=2   site=a
b1      np=2   site=b
b2      np=2   site=b  fast
NODES

# Enrol every node: the server's CA (created on first use in server/server_priv/ca/) issues
# a certificate naming the node, and the node installs it (the bundle is deleted). The MOMs
# then talk to the server over TLS 1.3 with mutual authentication, as in production.
echo "==> Enrolling a1 a2 b1 b2 (pbs_server enroll NODE; pbs_mom install-cert BUNDLE)"
for node in a1 a2 b1 b2; do
    mkdir -p "$demo/mom-$node"
    { "$bin/pbs_server" --home "$demo/server" enroll "$node" --out "$demo/$node.bundle" &&
        "$bin/pbs_mom" --home "$demo/mom-$node" install-cert "$demo/$node.bundle"; } \
        2>>"$demo/enroll.log" || { echo "demo.sh: enrolling $node failed; see $demo/enroll.log" >&2; exit 1; }
done

server_args=(--home "$demo/server" --mom-listen "127.0.0.1:$port")
if [ "$(id -u)" = 0 ]; then
    echo "==> Running as root: this demo server allows root jobs (--allow-root-jobs)."
    server_args+=(--allow-root-jobs)
fi
echo "==> Starting pbs_server (MOM port 127.0.0.1:$port over TLS, state in $demo/server)"
"$bin/pbs_server" "${server_args[@]}" >"$demo/server.log" 2>&1 &
echo $! >>"$demo/pids"
for node in a1 a2 b1 b2; do
    "$bin/pbs_mom" --home "$demo/mom-$node" --server "127.0.0.1:$port" --node-name "$node" \
        >"$demo/mom-$node.log" 2>&1 &
    echo $! >>"$demo/pids"
done

export PBS_HOME=$demo/server
export PATH=$bin:$PATH

# Wait (bounded) until the four nodes report in.
for _ in $(seq 1 200); do
    up=$(pbsnodes -a 2>/dev/null | grep -c '^     state = free' || true)
    [ "$up" = 4 ] && break
    sleep 0.05
done
if [ "${up:-0}" != 4 ]; then
    echo "demo.sh: the nodes did not come up; see $demo/*.log" >&2
    pbsnodes -a >&2 || true
    exit 1
fi

cat >"$demo/work/sample.sh" <<'JOB'
#!/bin/bash
#PBS -N sample
#PBS -l nodes=2:ppn=1,walltime=00:05:00
#PBS -j oe
echo "Hello from $PBS_JOBID ($PBS_JOBNAME) in queue $PBS_QUEUE"
echo "Mother superior: $(hostname) as node $(head -1 "$PBS_NODEFILE"), user $(id -un)"
echo "PBS_NODEFILE ($PBS_NP slots on $PBS_NUM_NODES nodes):"
sed 's/^/  /' "$PBS_NODEFILE"
JOB
cd "$demo/work"
echo
echo "\$ qsub sample.sh"
id=$(qsub sample.sh)
echo "$id"
for _ in $(seq 1 200); do
    state=$(qstat -f -1 "$id" | sed -n 's/^    job_state = //p')
    [ "$state" = C ] && break
    sleep 0.05
done
echo
echo "\$ qstat -a"
qstat -a
echo
echo "\$ pbsnodes -a"
pbsnodes -a
seq=${id%%.*}
stop_cmd="$repo/demo.sh stop"
[ "$demo" = "$repo/demo-cluster" ] || stop_cmd="CAPSTAN_DEMO_DIR=$demo $stop_cmd"
echo "\$ cat $demo/work/sample.o$seq"
cat "$demo/work/sample.o$seq"
cat <<DONE

The demo cluster is running. To use it in this shell:
    export PBS_HOME=$demo/server PATH=$bin:\$PATH
    qsub job.sh; qstat; pbsnodes -a
Stop it with: $stop_cmd
DONE
