#!/usr/bin/env bash
# Builds Capstan and gathers one directory that holds everything a cluster runs:
#
#   ./build.sh [--release]     -> target/capstan/debug/   or   target/capstan/release/
#
# The daemons (pbs_server, pbs_mom, capstan_supervisor, trqauthd) and the tools are the
# workspace's ordinary build, linked against the host's glibc: they resolve users and groups
# through NSS (LDAP, sssd), which they need. The user commands (qsub, qstat, qdel, ...) are
# built as static musl binaries when the toolchain can: a command is a short process, and a
# glibc process spends most of a short life starting up (loading libraries, and probing the
# CPU's caches with dozens of `cpuid` instructions, each a trap to the hypervisor on a VM).
# On the 2-core VM of bench/throughput.sh, `qsub --version` takes 1.2 ms as a glibc binary
# and 0.35 ms as a musl one. The commands need no NSS: the server names the caller from the
# socket's peer credentials.
#
# Building for musl needs the Rust target (added with rustup if missing) and a C compiler for
# it (`musl-gcc`, Debian's musl-tools, installed here when running as root). Without them the
# commands are the glibc build: the same programs, slower to start; a line on stderr says so.
# The last line of stdout names the directory and how the commands were linked.
set -euo pipefail
cd "$(dirname "$0")"

profile=debug cargo_profile=()
case "${1:-}" in
    --release) profile=release cargo_profile=(--release) ;;
    "") ;;
    *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac
commands=(qsub qstat qdel qhold qrls qsig qrerun qalter qmgr pbsnodes)

cargo build "${cargo_profile[@]}" --workspace --bins

# The musl twin of the host's triple (x86_64-unknown-linux-gnu -> x86_64-unknown-linux-musl).
host=$(rustc -vV | sed -n 's/^host: //p')
musl=${host%-gnu}-musl
why_not=''
if [[ $host != *-linux-gnu ]]; then
    why_not="the host ($host) is not a glibc Linux"
elif ! rustup target list --installed 2>/dev/null | grep -qx "$musl" &&
    ! rustup target add "$musl" >/dev/null 2>&1; then
    why_not="the Rust target $musl is not installed and rustup could not add it"
elif ! command -v musl-gcc >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get install -y -qq musl-tools >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq musl-tools >/dev/null 2>&1; } || true
    fi
    command -v musl-gcc >/dev/null || why_not="musl-gcc (Debian's musl-tools) is missing"
fi
linked=glibc
if [ -z "$why_not" ]; then
    # ring (TLS, in the client library) compiles C for the target.
    cc_var="CC_${musl//-/_}"
    if env "$cc_var=musl-gcc" cargo build "${cargo_profile[@]}" --target "$musl" \
        -p capstan-client "${commands[@]/#/--bin=}"; then
        linked=musl
    else
        why_not="the musl build failed (see above)"
    fi
fi
[ -z "$why_not" ] || echo "build.sh: the commands are linked against glibc: $why_not" >&2

out=target/capstan/$profile
mkdir -p "$out"
# Hard links: cargo replaces its outputs by new files, so these never change under a
# running cluster and cost no space.
for path in target/"$profile"/*; do
    [ -f "$path" ] && [ -x "$path" ] || continue
    ln -f "$path" "$out/" 2>/dev/null || cp -f "$path" "$out/"
done
if [ "$linked" = musl ]; then
    for name in "${commands[@]}"; do
        ln -f "target/$musl/$profile/$name" "$out/$name" 2>/dev/null ||
            cp -f "target/$musl/$profile/$name" "$out/$name"
    done
fi
echo "$out (commands: $linked)"
