#!/usr/bin/env bash
# Fuzzes the exposition parser and the telemetry engines for a bounded time
# (libFuzzer through cargo-fuzz), seeded with the captured /metrics payloads.
# Usage: scripts/fuzz.sh [SECONDS]   (default 60; FUZZ_SECONDS works too)
# A crash leaves its input under fuzz/artifacts/ and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_rust
seconds="${1:-${FUZZ_SECONDS:-60}}"
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
corpus="$BENCHRUN_CACHE/fuzz-corpus/exposition"
mkdir -p "$corpus"
fixtures="${BENCHRUN_FIXTURES:-../shared/fixtures/metrics}"
if [ -d "$fixtures" ]; then cp "$fixtures"/*.txt "$corpus"/; fi
# libFuzzer's instrumentation needs unstable rustc flags; RUSTC_BOOTSTRAP lets
# the stable toolchain take them. No sanitizer: safe Rust, and the build stays
# within reach of a 2-core machine.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$BENCHRUN_CACHE/fuzz-target"
echo "== fuzzing the exposition parser for ${seconds}s"
cd fuzz
cargo fuzz run exposition --sanitizer none "$corpus" -- \
  -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12
