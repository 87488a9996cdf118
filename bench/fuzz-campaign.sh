#!/usr/bin/env bash
# A recorded fuzzing campaign (not part of CI): the exposition parser and both
# telemetry engines (fuzz/fuzz_targets/exposition.rs) for a number of
# executions, the corpus kept and grown in the cache between campaigns.
# Usage: bench/fuzz-campaign.sh [RUNS]   (default 10000000; MAX_LEN, default 4096)
# Prints libFuzzer's final statistics; figures go into docs/benchmarks.md.
# Inputs are capped at MAX_LEN bytes: an exposition page's structure repeats
# per line, so short inputs reach the parser's and the engines' states many
# times faster; whole captured pages are the bounded run's seeds (64 KiB).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
runs="${1:-10000000}"
max_len="${MAX_LEN:-4096}"
# The bounded run builds the target and seeds the corpus; reuse both.
FUZZ_SECONDS=1 scripts/fuzz.sh >/dev/null
corpus="$BENCHRUN_CACHE/fuzz-corpus/exposition"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$BENCHRUN_CACHE/fuzz-target"
log="$BENCHRUN_CACHE/fuzz-campaign-$(date -u +%Y%m%dT%H%M%SZ).log"
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "== corpus before: $(find "$corpus" -type f | wc -l) inputs"
echo "== fuzzing for $runs executions, inputs up to $max_len bytes (log: $log)"
start=$(date +%s)
cd fuzz
cargo fuzz run exposition --sanitizer none "$corpus" -- \
  -runs="$runs" -max_len="$max_len" -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || {
  tail -n 40 "$log"
  echo "== a crash: its input is under fuzz/artifacts/"
  exit 1
}
end=$(date +%s)
grep -E '^stat::|^Done' "$log" || true
tail -n 3 "$log" | grep -E 'cov:|ft:' || grep -E '#[0-9]+' "$log" | tail -n 1
echo "== wall time: $((end - start)) s"
echo "== corpus after: $(find "$corpus" -type f | wc -l) inputs"
