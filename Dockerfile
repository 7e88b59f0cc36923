# syntax=docker/dockerfile:1
# The one ringrift image: every role (controller, agent, apiserver, up, the demo workload) is a
# subcommand of the one binary. Build and push (see docs/install.md):
#
#   docker build -t <registry>/ringrift:0.1.0 .
#   docker push <registry>/ringrift:0.1.0
#
# Multi-stage: the toolchain stays in the builder; the runtime image is Debian slim (the agent
# runs workloads as child processes, and the chart's init container uses chown) with the binary,
# CA certificates and an unprivileged user, 65532, that the chart runs everything as.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the crates and the build between image builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ringrift \
 && install -D -m 0755 target/release/ringrift /out/ringrift

FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ringrift" \
      org.opencontainers.image.description="RingRift Orchestrator: AlphaZero-style self-play training on a fleet of GPU nodes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# ca-certificates follows the Debian release: pinning its version would break the build at the
# next point release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 ringrift \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/ringrift --shell /usr/sbin/nologin ringrift \
 && install -d -o 65532 -g 65532 /var/lib/ringrift
COPY --from=build /out/ringrift /usr/local/bin/ringrift
USER 65532:65532
WORKDIR /var/lib/ringrift
# Agent REST API, gossip, controller admin port.
EXPOSE 8770/tcp 7946/udp 8081/tcp
ENTRYPOINT ["/usr/local/bin/ringrift"]
CMD ["--help"]
