# syntax=docker/dockerfile:1
# Two stages: build the single static-ish binary (DuckDB is compiled in), then run it on a slim
# Debian with only CA certificates (for webhooks to HTTPS receivers) and curl (for the
# healthcheck). Building compiles DuckDB from source: expect 30–40 minutes on 2 cores.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && cp target/release/tally /usr/local/bin/tally

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/tally tally \
 && mkdir -p /var/lib/tally \
 && chown tally:tally /var/lib/tally
COPY --from=build /usr/local/bin/tally /usr/local/bin/tally
USER tally
# Listening beyond loopback requires TALLY_ADMIN_KEY; the server refuses to start without it.
# Two malloc arenas and a fixed mmap threshold keep resident memory bounded
# (docs/operations.md); set here, the server skips re-executing itself to set them.
ENV TALLY_LISTEN=0.0.0.0:8080 \
    TALLY_DATA_DIR=/var/lib/tally \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=131072
VOLUME ["/var/lib/tally"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
# SIGTERM drains the writer and checkpoints; give it time before a SIGKILL.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tally"]
CMD ["serve"]
