# One image with both binaries: coffer-server (the S3 server StatefulSet) and
# coffer-operator (the controller Deployment). The chart picks the command.
#
#   docker build -t coffer:dev .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY server/Cargo.toml server/Cargo.toml
COPY operator/Cargo.toml operator/Cargo.toml
COPY testkit/Cargo.toml testkit/Cargo.toml
RUN for crate in server operator testkit; do \
      mkdir -p $crate/src && echo 'fn main() {}' > $crate/src/main.rs && touch $crate/src/lib.rs; \
    done \
 && cargo build --release --locked -p coffer-server -p coffer-operator || true
COPY server server
COPY operator operator
COPY testkit testkit
COPY crds crds
# Cached dependency builds are reused; the workspace crates are rebuilt from source.
RUN touch server/src/*.rs operator/src/*.rs testkit/src/*.rs \
 && cargo build --release --locked -p coffer-server -p coffer-operator \
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
ENV COFFER_LISTEN=0.0.0.0:9000 COFFER_DATA_DIR=/data
EXPOSE 9000 8080
VOLUME ["/data"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["coffer-server", "serve"]
