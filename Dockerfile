# syntax=docker/dockerfile:1
# Two images from one source (README, "Images"):
#   benchrun (the default target): a static musl binary on distroless/static,
#     non-root: the controller, the load generator and the simulators;
#   gpu-exporter: the same program built against glibc on distroless/cc, so that
#     `benchrun gpu-exporter` can load the driver's libnvidia-ml.so.1 (a static
#     musl binary cannot load a glibc shared library).
# scripts/image-build.sh fixes each binary's target and flags; `make test` runs
# it too and starts what it builds (scripts/image-smoke.sh).
# Multi-arch (linux/amd64, linux/arm64): `make push` (docker buildx or buildah).
# Each platform's stages run as that platform (natively, or under emulation).
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
ENV CARGO_TARGET_DIR=/target
COPY . .

FROM build AS build-static
RUN bash scripts/image-build.sh static /out/benchrun

FROM build AS build-glibc
RUN bash scripts/image-build.sh glibc /out/benchrun

FROM gcr.io/distroless/cc-debian12:nonroot AS gpu-exporter
COPY --from=build-glibc /out/benchrun /usr/local/bin/benchrun
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/benchrun"]
CMD ["gpu-exporter"]

FROM gcr.io/distroless/static-debian12:nonroot AS benchrun
COPY --from=build-static /out/benchrun /usr/local/bin/benchrun
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/benchrun"]
