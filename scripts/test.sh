#!/usr/bin/env bash
# The test command: format and lint checks, then every test of the workspace.
# Usage: scripts/test.sh   (or: make test)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_rust
mkdir -p "$CARGO_TARGET_DIR"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --all-targets
