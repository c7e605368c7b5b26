# Agent image: one static (musl) binary on an empty base image.
#
#   docker build -t lagent:dev .
#
# Build context is the workspace root: the agent needs wire/ and the workspace
# manifest, and Cargo loads every member's manifest. Needs BuildKit (default
# since Docker 23) for the cache mounts.
ARG RUST_IMAGE=rust:1.95-alpine

FROM ${RUST_IMAGE} AS build
# Alpine's Rust targets x86_64/aarch64-unknown-linux-musl, linked statically.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    RUSTFLAGS="-C target-feature=+crt-static"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p agent --bin agent \
 && install -D -m 0755 target/release/agent /out/agent

FROM scratch
COPY --from=build /out/agent /usr/local/bin/agent
# Non-root by default. The Helm chart runs the agent as uid 0 with every
# capability dropped, because kubelet's pod log files are root:root 0640.
USER 65532:65532
EXPOSE 12345
ENTRYPOINT ["/usr/local/bin/agent"]
CMD ["--help"]
