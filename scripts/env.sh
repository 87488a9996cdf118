# Shared settings of the project's scripts. Sourced, not run.
# Caches live outside the clone so that a fresh clone builds in minutes.
export BENCHRUN_CACHE="${BENCHRUN_CACHE:-$HOME/.cache/benchrun}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$BENCHRUN_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Incremental caches grow by gigabytes with every change to the crate and do
# not help a build from a fresh clone; set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Two cores: keep test binaries from fighting the build for them.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: installing the stable toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    . "$HOME/.cargo/env"
  fi
}
