#!/usr/bin/env bash
# Builds Capstan and gathers one directory that holds everything a cluster runs:
#
#   ./build.sh [--release]     -> TARGET/capstan/debug/   or   TARGET/capstan/release/
#
# (TARGET: cargo's target directory, ./target unless configured otherwise.) The last line of
# stdout is that directory, alone; a line on stderr says how the commands were linked.
#
# The daemons (pbs_server, pbs_mom, capstan_supervisor, trqauthd) are the workspace's ordinary
# build, linked against the host's glibc: they resolve users and groups through NSS (LDAP,
# sssd), which they need. The user commands (the client crate's other binaries: qsub, qstat,
# qdel, ...) are built as static musl binaries when the toolchain can: a command is a short
# process, and a glibc process spends much of a short life starting up (loading libraries, and
# probing the CPU's caches with dozens of `cpuid` instructions, each a trap to the hypervisor
# on a VM). On the 2-core VM of bench/throughput.sh, `qsub --version` takes 1.2 ms as a glibc
# binary and 0.35 ms as a musl one, and a submission 2.4 ms against 1.5. The commands need no
# NSS: the server names the caller from the socket's peer credentials.
#
# Building for musl needs a C compiler for it (`musl-gcc`, Debian's musl-tools, installed here
# when running as root; ring, the TLS library, compiles C) and the Rust target (added with
# rustup if missing). Without them the commands are the glibc build: the same programs, slower
# to start, and stderr says why.
set -euo pipefail
cd "$(dirname "$0")"

profile=debug cargo_profile=()
case "${1:-}" in
    --release) profile=release cargo_profile=(--release) ;;
    "") ;;
    *) echo "usage: $0 [--release]" >&2; exit 2 ;;
esac
daemons=(pbs_server pbs_mom capstan_supervisor trqauthd)
# The commands: every [[bin]] of the client crate but the login node's agent.
mapfile -t commands < <(awk '/^\[\[bin\]\]/ { in_bin = 1; next }
    in_bin && /^name *=/ { gsub(/^name *= *"|".*$/, ""); if ($0 != "trqauthd") print; in_bin = 0 }' \
    client/Cargo.toml)
[ ${#commands[@]} -gt 0 ] || { echo "build.sh: no [[bin]] found in client/Cargo.toml" >&2; exit 1; }

cargo build "${cargo_profile[@]}" --workspace --bins
target=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -d "$target" ] || { echo "build.sh: cannot tell cargo's target directory" >&2; exit 1; }

# The musl twin of the host's triple (x86_64-unknown-linux-gnu -> x86_64-unknown-linux-musl).
host=$(rustc -vV | sed -n 's/^host: //p')
musl=${host%-gnu}-musl
why_not=''
if [[ $host != *-linux-gnu ]]; then
    why_not="the host ($host) is not a glibc Linux"
else
    if ! command -v musl-gcc >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        timeout 300 apt-get install -y -qq musl-tools >/dev/null 2>&1 ||
            { timeout 300 apt-get update -qq >/dev/null 2>&1 &&
                timeout 300 apt-get install -y -qq musl-tools >/dev/null 2>&1; } || true
    fi
    if ! command -v musl-gcc >/dev/null; then
        why_not="musl-gcc (Debian's musl-tools) is missing"
    elif ! rustup target list --installed 2>/dev/null | grep -x "$musl" >/dev/null &&
        ! timeout 300 rustup target add "$musl" >/dev/null 2>&1; then
        why_not="the Rust target $musl is not installed and rustup could not add it"
    fi
fi
commands_dir=$target/$profile
if [ -z "$why_not" ]; then
    if env "CC_${musl//-/_}=musl-gcc" cargo build "${cargo_profile[@]}" --target "$musl" \
        -p capstan-client "${commands[@]/#/--bin=}"; then
        commands_dir=$target/$musl/$profile
    else
        why_not="the musl build failed (see above)"
    fi
fi

out=$target/capstan/$profile
mkdir -p "$out"
# Exactly these names: what a renamed binary or an earlier build left there goes.
wanted=" ${daemons[*]} ${commands[*]} "
for path in "$out"/*; do
    [ -e "$path" ] && [[ $wanted != *" ${path##*/} "* ]] && rm -rf "$path"
done
# Hard links: cargo replaces its outputs by new files, so these never change under a
# running cluster and cost no space.
gather() { ln -f "$1" "$out/" 2>/dev/null || cp -f "$1" "$out/"; }
for name in "${daemons[@]}"; do gather "$target/$profile/$name"; done
for name in "${commands[@]}"; do gather "$commands_dir/$name"; done
if [ -z "$why_not" ]; then
    echo "build.sh: $out: the commands are static musl binaries" >&2
else
    echo "build.sh: $out: the commands are linked against glibc: $why_not" >&2
fi
echo "$out"
