# syntax=docker/dockerfile:1
# A static musl binary on distroless/static, running as nonroot (65532).
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl && apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/benchrun /benchrun

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /benchrun /usr/local/bin/benchrun
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/benchrun"]
