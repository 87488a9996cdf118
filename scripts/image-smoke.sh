#!/usr/bin/env bash
# The images' binaries without a container runtime: each built exactly as the
# Dockerfile builds it (scripts/image-build.sh, which its stages run), then
# started in the roles its image has.
#   both:   --help, `crd` equal to crds/, and nothing linked that its base image
#           lacks (static: no shared library at all; glibc: only glibc's own and
#           libgcc_s, which distroless/cc carries)
#   static: `gpu-exporter` fails at once and names the image that can load NVML
#   glibc:  `gpu-exporter` without libnvidia-ml.so.1 names the library and the
#           fix; with the fake library (tests/fake_nvml) on its library path it
#           loads it and serves the GPU on /metrics
# Usage: scripts/image-smoke.sh   (make test runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ensure_rust
work="$(mktemp -d "${TMPDIR:-/tmp}/benchrun-image-smoke.XXXXXX")"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "image smoke check: $*" >&2
  exit 1
}

for kind in static glibc; do
  grep -q "scripts/image-build.sh $kind /out/benchrun" Dockerfile \
    || fail "the Dockerfile no longer builds its $kind binary with scripts/image-build.sh"
done

for kind in static glibc; do
  echo "== image binary: $kind"
  bin="$(bash scripts/image-build.sh "$kind" "$work/$kind/benchrun" | tail -n 1)"
  "$bin" --help >/dev/null || fail "$kind: --help failed"
  "$bin" crd | cmp -s - crds/benchmarkruns.benchrun.dev.yaml \
    || fail "$kind: \`benchrun crd\` differs from crds/ (run make crd)"
done

static="$work/static/benchrun"
glibc="$work/glibc/benchrun"
needed() { readelf -d "$1" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'; }
[ -z "$(needed "$static")" ] || fail "the static binary links $(needed "$static" | tr '\n' ' ')"
! readelf -l "$static" | grep -q 'INTERP' || fail "the static binary asks for a dynamic loader"
for lib in $(needed "$glibc"); do
  case "$lib" in
    libc.so.6 | libm.so.6 | libgcc_s.so.1 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-*) ;;
    *) fail "the glibc binary links $lib, which distroless/cc does not have" ;;
  esac
done

echo "== gpu-exporter: the static binary refuses and names the gpu-exporter image"
if out="$("$static" gpu-exporter --no-pod-labels 2>&1)"; then fail "static gpu-exporter started"; fi
grep -q "statically linked" <<<"$out" && grep -q "gpu-exporter image" <<<"$out" \
  || fail "static gpu-exporter said: $out"

echo "== gpu-exporter: the glibc binary without libnvidia-ml.so.1 names it and the fix"
if out="$(env -u LD_LIBRARY_PATH "$glibc" gpu-exporter --no-pod-labels 2>&1)"; then
  fail "gpu-exporter started without libnvidia-ml.so.1 (is an NVIDIA driver installed here?)"
fi
grep -q "libnvidia-ml.so.1 could not be loaded" <<<"$out" && grep -q "NVIDIA container runtime" <<<"$out" \
  || fail "glibc gpu-exporter without NVML said: $out"

echo "== gpu-exporter: the glibc binary loads libnvidia-ml.so.1 (the fake) and serves it"
mkdir -p "$work/lib"
"${CC:-cc}" -shared -fPIC -O1 -o "$work/lib/libnvidia-ml.so.1" tests/fake_nvml/fake_nvml.c -lpthread
printf '%s\n' "driver 570.124.06" "gpus 1" "gpu0.name NVIDIA H200" \
  "gpu0.uuid GPU-5e1f0c2a-7d3b-4a8e-9f61-0c2d4e6a8b1f" "gpu0.bus_id 00000000:19:00.0" \
  "gpu0.power_mw 300500" "gpu0.energy_mj 1000000" >"$work/state"
LD_LIBRARY_PATH="$work/lib" FAKE_NVML_STATE="$work/state" \
  "$glibc" gpu-exporter --host 127.0.0.1 --port 0 --no-pod-labels 2>"$work/log" &
pid=$!
addr=""
for _ in $(seq 300); do
  addr="$(sed -n 's/.*serving on \(http:[^ ]*\).*/\1/p' "$work/log")"
  [ -n "$addr" ] && break
  kill -0 "$pid" 2>/dev/null || fail "gpu-exporter with the fake NVML exited: $(cat "$work/log")"
  sleep 0.1
done
[ -n "$addr" ] || fail "gpu-exporter with the fake NVML did not serve: $(cat "$work/log")"
page="$(curl -fsS "$addr/metrics")" || fail "GET $addr/metrics failed"
grep -q '^DCGM_FI_DEV_POWER_USAGE{.*UUID="GPU-5e1f0c2a-7d3b-4a8e-9f61-0c2d4e6a8b1f".*} 300.5$' <<<"$page" \
  || fail "the page lacks the fake GPU's power: $page"
grep -q '^DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{.*} 1000000$' <<<"$page" \
  || fail "the page lacks the fake GPU's energy: $page"
echo "== image smoke check passed"
