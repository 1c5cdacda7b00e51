# syntax=docker/dockerfile:1
# One image with both binaries: coffer-server (the S3 server StatefulSet) and
# coffer-operator (the controller Deployment). The chart picks the command.
#
#   docker build -t coffer:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# BuildKit caches keep the registry and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p coffer-server -p coffer-operator \
 && install -D -m 0755 target/release/coffer-server /out/coffer-server \
 && install -D -m 0755 target/release/coffer-operator /out/coffer-operator

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 coffer \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data coffer \
 && mkdir -p /data && chown coffer:coffer /data
COPY --from=build /out/coffer-server /out/coffer-operator /usr/local/bin/
USER 10001:10001
WORKDIR /data
# Two glibc malloc arenas instead of eight per core: the server's RSS over a
# 10-minute mixed run stays flat at ~60 MiB instead of creeping from 96 to
# 112 MiB (docs/benchmarks.md, "Memory").
ENV COFFER_LISTEN=0.0.0.0:9000 COFFER_DATA_DIR=/data MALLOC_ARENA_MAX=2
EXPOSE 9000 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["coffer-server", "serve"]
