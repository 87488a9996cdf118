#!/usr/bin/env bash
# Builds or pushes benchrun's two images (see the Dockerfile):
#   $REGISTRY/benchrun:$TAG               target benchrun (controller, load generator)
#   $REGISTRY/benchrun-gpu-exporter:$TAG  target gpu-exporter (NVML, glibc)
#
#   scripts/image.sh build [--dry-run]  both, for this machine's platform, into the
#                                       local engine (make image)
#   scripts/image.sh push [--dry-run]   both, for every platform in $PLATFORMS, as
#                                       multi-arch manifests pushed to $REGISTRY
#                                       (make push REGISTRY=...)
#
# REGISTRY  default ghcr.io/benchrun (log in to yours first: docker/buildah login)
# TAG       default the chart's appVersion, which the chart's images default to
# PLATFORMS default linux/amd64,linux/arm64 (a platform other than the builder's
#           is emulated: docker needs buildx with QEMU binfmt, buildah qemu-user-static)
# ENGINE    docker or buildah; default the first one found
# --dry-run prints the commands instead of running them.
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:?usage: scripts/image.sh build|push [--dry-run]}"
dry=""
[ "${2:-}" = --dry-run ] && dry=1
registry="${REGISTRY:-ghcr.io/benchrun}"
registry="${registry%/}"
tag="${TAG:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/benchrun/Chart.yaml)}"
platforms="${PLATFORMS:-linux/amd64,linux/arm64}"
engine="${ENGINE:-}"
if [ -z "$engine" ]; then
  for e in docker buildah podman; do
    if command -v "$e" >/dev/null 2>&1; then engine="$e"; break; fi
  done
fi
[ -n "$engine" ] || { echo "scripts/image.sh: neither docker nor buildah (nor podman) is installed" >&2; exit 1; }

run() {
  if [ -n "$dry" ]; then echo "$*"; else echo "+ $*" >&2; "$@"; fi
}

for target in benchrun gpu-exporter; do
  ref="$registry/$([ "$target" = benchrun ] && echo benchrun || echo benchrun-gpu-exporter):$tag"
  case "$engine:$action" in
    docker:build)
      run docker build --target "$target" --tag "$ref" . ;;
    docker:push)
      run docker buildx build --platform "$platforms" --target "$target" --tag "$ref" --push . ;;
    buildah:build | podman:build)
      run "$engine" build --target "$target" --tag "$ref" . ;;
    buildah:push | podman:push)
      # A manifest list with one image per platform, pushed whole.
      run "$engine" manifest rm "$ref" 2>/dev/null || true
      run "$engine" build --platform "$platforms" --target "$target" --manifest "$ref" .
      run "$engine" manifest push --all "$ref" "docker://$ref" ;;
    *)
      echo "scripts/image.sh: unknown action $action for $engine (build or push)" >&2
      exit 2 ;;
  esac
done
if [ "$action" = push ]; then
  echo "Install with these images:" >&2
  echo "  helm install benchrun charts/benchrun --namespace benchrun-system --create-namespace \\" >&2
  echo "    --set image.repository=$registry/benchrun --set image.tag=$tag \\" >&2
  echo "    --set gpuExporter.image.repository=$registry/benchrun-gpu-exporter --set gpuExporter.image.tag=$tag" >&2
fi
