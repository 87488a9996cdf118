#!/usr/bin/env bash
# The main job: build benchrun and run a benchmark on a local cluster.
# Usage: scripts/demo.sh   (or: make demo)
#
# Today it builds the binary, prints the CRD it would install and checks the sample
# runs with the admission rules. The local control plane, the simulators and a real
# run join it as they land (see the README's status section).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_rust
cargo build --locked --release
bin="$CARGO_TARGET_DIR/release/benchrun"
echo "== benchrun $("$bin" --version)"
echo "== the BenchmarkRun CRD (benchrun crd):"
"$bin" crd | grep -E '^  (group|names|scope)|^    (kind|plural|shortNames)|^    - br'
echo "== the sample runs, checked with the admission rules (benchrun validate):"
"$bin" validate config/samples/*.yaml
echo "== done: the local cluster demo arrives with the control-plane tooling (e2e/)."
