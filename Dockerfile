# syntax=docker/dockerfile:1
#
# meshd container image.
#
#   docker build -t meshd .
#   docker volume create meshd
#   docker run --rm -v meshd:/var/lib/meshd meshd keys generate --out /var/lib/meshd/keys/gateway.key
#   docker run --rm -v meshd:/var/lib/meshd meshd keys show /var/lib/meshd/keys/gateway.key
#   docker run --rm meshd config check /etc/meshd/meshd.toml
#
# The volume /var/lib/meshd holds the key file (keys/) and the data (data/):
# back it up, and never bake a key into an image.

# ---- build: the pinned toolchain of rust-toolchain.toml, on Debian 12 ----
FROM rust:1.95.0-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and the build between image builds;
# the binary is copied out because the cached target dir is not in the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p meshd \
 && install -m 0755 target/release/meshd /usr/local/bin/meshd

# ---- runtime: slim Debian 12 with the one binary, as an unprivileged user ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 meshd \
 && useradd --system --uid 10001 --gid meshd --home-dir /var/lib/meshd --shell /usr/sbin/nologin meshd \
 && install -d -o meshd -g meshd -m 0750 /var/lib/meshd /var/lib/meshd/data \
 && install -d -o meshd -g meshd -m 0700 /var/lib/meshd/keys
COPY --from=build /usr/local/bin/meshd /usr/local/bin/meshd
# The documented defaults, as `meshd config default` prints them; their paths
# (/var/lib/meshd/keys/gateway.key, /var/lib/meshd/data) are in the volume.
RUN install -d /etc/meshd && meshd config default > /etc/meshd/meshd.toml

# Inside the container the API must listen on every interface to be
# published; publish it on the host's loopback only: -p 127.0.0.1:4180:4180.
ENV MESHD_API__LISTEN=0.0.0.0:4180
# p2p (TCP and QUIC) and the local API.
EXPOSE 4170/tcp 4170/udp 4180/tcp

USER meshd:meshd
WORKDIR /var/lib/meshd
VOLUME ["/var/lib/meshd"]

ENTRYPOINT ["/usr/local/bin/meshd"]
CMD ["--help"]
