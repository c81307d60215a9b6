#!/usr/bin/env bash
# Compares two builds by the drain of bench/throughput.sh, alternating them on fresh
# clusters so that both see the same machine: this VM's speed drifts by 15% and more over an
# afternoon, so two builds measured an hour apart cannot be compared.
#
#   bench/ab.sh [--rounds N] [--plain] [--jobs N] DIR_A DIR_B
#     DIR_A, DIR_B: directories as build.sh fills them (target/capstan/release, or a copy
#       under /tmp: when run as root, the jobs' user capstanbench runs the commands from it)
#     --rounds N: drains per build (default 3); A first in odd rounds, B first in even ones
#     --plain: the MOMs run `$source_login_batch false` (plain shells)
#     --jobs N: drain N jobs (default 1000; more, for a deeper queue)
#
# Each drain is throughput.sh's `--drain-only`: on a fresh server, so its figures are not
# those of the full run's table (whose drain follows the qsub and latency steps).
# Prints each drain, then per build the mean rate and CPU per job (machine, pbs_server, the
# MOMs), and B's mean rate as a ratio of A's.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=3 plain=() jobs=() dirs=()
usage="usage: $0 [--rounds N] [--plain] [--jobs N] DIR_A DIR_B"
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=${2:?--rounds needs a number}; shift ;;
        --plain) plain=(--plain) ;;
        --jobs) jobs=(--jobs "${2:?--jobs needs a number}"); shift ;;
        -*) echo "$usage" >&2; exit 2 ;;
        *) dirs+=("$1") ;;
    esac
    shift
done
[ ${#dirs[@]} = 2 ] || { echo "$usage" >&2; exit 2; }
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "$0: --rounds needs a positive integer" >&2; exit 2; }
for i in 0 1; do
    # Absolute: throughput.sh puts it on PATH and then works from its own directory.
    dirs[i]=$(cd "${dirs[i]}" && pwd) || { echo "$0: no directory ${dirs[i]}" >&2; exit 1; }
    for program in pbs_server pbs_mom capstan_supervisor qsub; do
        [ -x "${dirs[i]}/$program" ] || { echo "$0: ${dirs[i]} has no $program" >&2; exit 1; }
    done
    if [ "$(id -u)" = 0 ] && id capstanbench >/dev/null 2>&1 &&
        ! runuser -u capstanbench -- test -x "${dirs[i]}/qsub"; then
        echo "$0: capstanbench, who runs the jobs, cannot run ${dirs[i]}/qsub" >&2
        exit 1
    fi
done

results=()
for round in $(seq 1 "$rounds"); do
    order=(0 1)
    [ $((round % 2)) = 1 ] || order=(1 0)
    for i in "${order[@]}"; do
        line=$(CAPSTAN_BIN_DIR=${dirs[$i]} "$repo/bench/throughput.sh" --drain-only "${plain[@]}" "${jobs[@]}" |
            grep '^drain_s=') || { echo "$0: the drain of ${dirs[$i]} failed" >&2; exit 1; }
        label=$([ "$i" = 0 ] && echo A || echo B)
        echo "round $round $label ${dirs[$i]}: $line"
        results+=("$label $line")
    done
done
printf '%s\n' "${results[@]}" | awk '
    { label = $1
      for (f = 2; f <= NF; f++) { split($f, kv, "="); v[label, kv[1]] += kv[2] }
      n[label]++ }
    END {
      for (l = 0; l < 2; l++) {
        label = l ? "B" : "A"
        printf "%s: %.1f jobs/s; CPU ms per job: machine %.2f, pbs_server %.2f, MOMs %.2f\n", label,
          v[label, "drain_rate"] / n[label], v[label, "drain_cpu"] / n[label],
          v[label, "server_cpu"] / n[label], v[label, "moms_cpu"] / n[label]
      }
      printf "B/A: %.3f\n", v["B", "drain_rate"] / n["B"] / (v["A", "drain_rate"] / n["A"])
    }'
