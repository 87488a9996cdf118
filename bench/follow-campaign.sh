#!/usr/bin/env bash
# A recorded campaign (not part of CI) of the follow machine's fault
# schedules (src/measure/follow/tests.rs): seeded random run shapes (1-4
# steps, 1-4 workers, warmups, cool-downs) under random faults (workers
# killed with or without the cluster saying so, stops asked or SIGTERM,
# failed pulls and checkpoint writes, a controller crash and a successor
# from its checkpoint; a GPU exporter of random refresh period with late
# answers, outages and counter resets), every invariant checked after every
# transition and each step's energy against the GPU's truth.
# `cargo test` runs schedules 0..3000; this runs others.
# Usage: bench/follow-campaign.sh [SCHEDULES] [FIRST]
#   (default 1000000 schedules from seed 1000000)
# Prints the machine, the schedules run, what they exercised and the wall
# time; figures go into docs/benchmarks.md. A failure prints its seed and
# how to replay it (FOLLOW_SEED=<seed>).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
n="${1:-1000000}"
first="${2:-1000000}"
echo "== machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
cargo test --locked --release --lib --no-run >/dev/null 2>&1
start=$(date +%s)
FOLLOW_SCHEDULES="$n" FOLLOW_FIRST="$first" FOLLOW_STATS=1 \
  cargo test --locked --release --lib measure::follow::tests::thousands_of_fault_schedules_keep_every_invariant \
  -- --exact --nocapture 2>&1 | grep -E '^(== |schedule|replay|test result)'
end=$(date +%s)
echo "== schedules $first..$((first + n)), wall time: $((end - start)) s"
