# syntax=docker/dockerfile:1
# Sluice container image: a distributed worker by default.
#   docker build -t sluice:0.1.0 --build-arg GIT_COMMIT="$(git rev-parse --short HEAD)" .
#   docker run --rm -e SLUICE_BOOTSTRAP_SERVERS=kafka:9092 -e SLUICE_REST_ALLOW_UNAUTHENTICATED=true -p 8083:8083 sluice:0.1.0
# The runtime stage holds the tree scripts/image-layout.sh assembles (the tests check that tree
# without a Docker engine: scripts/check-image-layout.sh); only its empty data dir is made here
# instead, owned by the image's user.
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# libpq-dev: the Postgres replication connection (pg_walstream); pkg-config and zlib1g-dev: the
# bundled librdkafka build (rdkafka's default features compile librdkafka from source with make);
# libssl-dev: librdkafka's TLS and SASL/SCRAM (rdkafka's `ssl` feature links the system OpenSSL).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpq-dev libssl-dev pkg-config zlib1g-dev make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG GIT_COMMIT=unknown
ENV SLUICE_GIT_COMMIT=${GIT_COMMIT} CARGO_TARGET_DIR=/src/target
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice --bin sluice \
 && scripts/image-layout.sh /layout target/release/sluice \
 && strip --strip-debug /layout/usr/local/bin/sluice

FROM debian:${DEBIAN_RELEASE}-slim
# Only the shared libraries the binary links beyond the base image's libc6/libgcc-s1
# (scripts/check-image-layout.sh fails when the binary starts to need another one), and CA
# certificates for TLS to HTTP endpoints and object stores.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpq5 libssl3 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sluice \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sluice --no-create-home \
      --shell /usr/sbin/nologin sluice \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/sluice
COPY --from=build /layout/usr/ /usr/
COPY --from=build /layout/etc/sluice/ /etc/sluice/
# The data dir (standalone offsets) and the WebAssembly compile cache: the only writable paths, so
# the root file system can be mounted read-only (the Helm chart puts an emptyDir here).
ENV SLUICE_DATA_DIR=/var/lib/sluice \
    XDG_CACHE_HOME=/var/lib/sluice/cache \
    SLUICE_REST_LISTEN=0.0.0.0:8083
USER 10001:10001
WORKDIR /var/lib/sluice
EXPOSE 8083
ENTRYPOINT ["sluice"]
CMD ["worker", "/etc/sluice/worker.yaml"]
