#!/usr/bin/env bash
# The test command: format and lint checks, the unit, integration and property
# tests (criterion benches run once each as tests), a bounded fuzzing run of the
# exposition parser (scripts/fuzz.sh), the images' binaries built and started
# (scripts/image-smoke.sh), then the end-to-end suite on a real control plane
# (scripts/e2e.sh), which runs the gpu-exporter image's binary.
# Usage: scripts/test.sh   (or: make test)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_rust
mkdir -p "$CARGO_TARGET_DIR"
bash scripts/prune-target.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test (unit and integration)"
cargo test --locked -p benchrun --all-targets
cargo test --locked -p benchrun-e2e --lib --bins
echo "== fuzzing (bounded)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
echo "== the images' binaries (built as the Dockerfile builds them, started without a container engine)"
bash scripts/image-smoke.sh
echo "== end-to-end suite"
bash scripts/e2e.sh
