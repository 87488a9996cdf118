#!/usr/bin/env bash
# How each image's binary is built: its target and flags, in one place. The
# Dockerfile runs this, and so does `make test` (scripts/image-smoke.sh, and the
# end-to-end cluster, which runs the glibc binary), so the binary the tests
# start is the binary an image ships.
#
#   scripts/image-build.sh static [OUT]  static musl binary (the `benchrun` image:
#                                        controller, load generator, simulators)
#   scripts/image-build.sh glibc [OUT]   glibc binary, which can load the driver's
#                                        libnvidia-ml.so.1 (the `gpu-exporter` image)
#
# Builds for this machine's architecture (x86_64 or aarch64; in a multi-arch
# image build each platform's stage runs on, or is emulated as, that platform),
# copies the binary to OUT when given, and prints its path last.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:?usage: scripts/image-build.sh static|glibc [OUT]}"
out="${2:-}"
arch="$(uname -m)"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
case "$kind" in
  static)
    triple="$arch-unknown-linux-musl"
    if ! command -v musl-gcc >/dev/null 2>&1; then
      echo "== installing musl-tools (ring's C and assembly are compiled with musl-gcc)" >&2
      if [ "$(id -u)" = 0 ]; then
        apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends musl-tools >&2
      else
        sudo apt-get update -qq >&2 && sudo apt-get install -y -qq --no-install-recommends musl-tools >&2
      fi
    fi
    if ! rustup target list --installed | grep -qx "$triple"; then
      rustup target add "$triple" >&2
    fi
    # cc-rs would look for "$arch-linux-musl-gcc", which Debian does not ship.
    export "CC_${arch}_unknown_linux_musl=musl-gcc"
    cargo build --release --locked -p benchrun --bin benchrun --target "$triple" >&2
    bin="$target_dir/$triple/release/benchrun"
    ;;
  glibc)
    cargo build --release --locked -p benchrun --bin benchrun >&2
    bin="$target_dir/release/benchrun"
    ;;
  *)
    echo "scripts/image-build.sh: unknown kind $kind (static or glibc)" >&2
    exit 2
    ;;
esac
if [ -n "$out" ]; then
  mkdir -p "$(dirname "$out")"
  cp "$bin" "$out"
  bin="$out"
fi
echo "$bin"
