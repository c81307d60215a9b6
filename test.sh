#!/usr/bin/env bash
# Runs Capstan's checks and tests: formatting, clippy, unit tests, and the end-to-end tests
# (real pbs_server/pbs_mom processes on loopback). This is the README's test command and
# what CI runs.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v useradd >/dev/null || need_apt+=(passwd)
command -v ip >/dev/null || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
command -v cargo >/dev/null || { echo "test.sh: cargo is required" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy 2>/dev/null || true

# A fresh build and test run writes about 3 GB under target/; when the disk is short of
# that, say so up front rather than leave it to a linker's bus error.
avail_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "$avail_kb" -lt $((4 * 1024 * 1024)) ]; then
    echo "test.sh: warning: only $((avail_kb / 1024)) MB free here; a fresh build and test run needs about 3 GB" >&2
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The daemons and the commands as a cluster runs them (static musl commands when the
# toolchain can build them, see build.sh, which says on stderr which it built); the
# end-to-end tests start these.
CAPSTAN_BIN_DIR=$(./build.sh | tail -n 1)
export CAPSTAN_BIN_DIR
# Each end-to-end test starts its own cluster; two at a time suits a 2-core machine.
# (--all-targets: every unit and integration test; the crates have no doc tests.)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets -- --test-threads=2 2>&1 | tee "$log" || status=$?
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
