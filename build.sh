#!/usr/bin/env bash
# Builds Capstan and gathers one directory that holds everything a cluster runs:
#
#   ./build.sh [--release]     -> TARGET/capstan/debug/   or   TARGET/capstan/release/
#
# (TARGET: cargo's target directory, ./target unless configured otherwise.)
# The daemons (pbs_server, pbs_mom, capstan_supervisor, trqauthd) are the workspace's ordinary
# build, linked against the host's glibc: they resolve users and groups through NSS (LDAP,
# sssd), which they need. The user commands (every other binary of the client crate: qsub,
# qstat, qdel, ...) are built as static musl binaries when the toolchain can: a command is a
# short process, and a glibc process spends most of a short life starting up (loading
# libraries, and probing the CPU's caches with dozens of `cpuid` instructions, each a trap to
# the hypervisor on a VM). On the 2-core VM of bench/throughput.sh, `qsub --version` takes
# 1.2 ms as a glibc binary and 0.35 ms as a musl one. The commands need no NSS: the server
# names the caller from the socket's peer credentials.
#
# Building for musl needs a C compiler for it (`musl-gcc`, Debian's musl-tools, installed here
# when running as root; ring, the TLS library, compiles C) and the Rust target (added with
# rustup if missing). Without them the commands are the glibc build: the same programs, slower
# to start; a line on stderr says so. The last line of stdout names the directory and how the
# commands were linked.
set -euo pipefail
cd "$(dirname "$0")"

profile=debug cargo_profile=()
case "${1:-}" in
    --release) profile=release cargo_profile=(--release) ;;
    "") ;;
    *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac
daemons=(pbs_server pbs_mom capstan_supervisor trqauthd)

cargo build "${cargo_profile[@]}" --workspace --bins

# The target directory and the client crate's binaries, from cargo itself.
read -r target commands_line < <(cargo metadata --format-version 1 --no-deps | python3 -c '
import json, sys
meta = json.load(sys.stdin)
client = next(p for p in meta["packages"] if p["name"] == "capstan-client")
bins = [t["name"] for t in client["targets"] if "bin" in t["kind"]]
print(meta["target_directory"], " ".join(sorted(b for b in bins if b != "trqauthd")))')
read -r -a commands <<<"$commands_line"

# The musl twin of the host's triple (x86_64-unknown-linux-gnu -> x86_64-unknown-linux-musl).
host=$(rustc -vV | sed -n 's/^host: //p')
musl=${host%-gnu}-musl
why_not=''
if [[ $host != *-linux-gnu ]]; then
    why_not="the host ($host) is not a glibc Linux"
else
    if ! command -v musl-gcc >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq musl-tools >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq musl-tools >/dev/null 2>&1; } ||
            true
    fi
    if ! command -v musl-gcc >/dev/null; then
        why_not="musl-gcc (Debian's musl-tools) is missing"
    elif ! rustup target list --installed 2>/dev/null | grep -qx "$musl" &&
        ! timeout 300 rustup target add "$musl" >/dev/null 2>&1; then
        why_not="the Rust target $musl is not installed and rustup could not add it"
    fi
fi
linked=glibc
if [ -z "$why_not" ]; then
    if env "CC_${musl//-/_}=musl-gcc" cargo build "${cargo_profile[@]}" --target "$musl" \
        -p capstan-client "${commands[@]/#/--bin=}"; then
        linked=musl
    else
        why_not="the musl build failed (see above)"
    fi
fi
[ -z "$why_not" ] || echo "build.sh: the commands are linked against glibc: $why_not" >&2

built=$target/$profile
[ "$linked" = glibc ] || built_commands=$target/$musl/$profile
out=$target/capstan/$profile
mkdir -p "$out"
# Exactly these names: what a renamed binary or an earlier build left there goes.
wanted=" ${daemons[*]} ${commands[*]} "
for path in "$out"/*; do
    [ -e "$path" ] && [[ $wanted != *" ${path##*/} "* ]] && rm -f "$path"
done
# Hard links: cargo replaces its outputs by new files, so these never change under a
# running cluster and cost no space.
gather() { ln -f "$1" "$out/" 2>/dev/null || cp -f "$1" "$out/"; }
for name in "${daemons[@]}"; do gather "$built/$name"; done
for name in "${commands[@]}"; do gather "${built_commands:-$built}/$name"; done
echo "$out (commands: $linked)"
