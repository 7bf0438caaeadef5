# One Dockerfile for every svckit service (and example): pick it with SERVICE.
#
#   docker build --build-arg SERVICE=products -t svckit/products .
#   docker run -p 8082:8080 -e JWT_SECRET=... svckit/products
#
# Build context: the repository root. Stage 1 compiles on Debian 12 with
# Debian's libraries; stage 2 is FROM scratch: the stripped program, a tiny
# healthcheck probe, and exactly the shared objects the program loads (none if
# it links fully static); see docker/build.sh and docs/deploy.md.
#
# Build arguments:
#   SERVICE   required: a folder of services/ (or examples/)
#   LINK      auto (default: fully static when the program links that way,
#             else Debian's .a archives plus the shared objects of the rest,
#             i.e. libnats and what it needs), static, mixed or dynamic
#   GIT_REV   shown in build info (the context has no .git)
#   TLS       1: TLS to NATS linked in (mbed TLS, about 0.6 MB more; see
#             docs/deploy.md); default 0, and the image carries no TLS code
#   PG        1: the store on PostgreSQL (DATABASE_URL) linked in: libpq and
#             its shared libraries in the image, a dynamic link
#             (docs/store-postgres.md); default 0
#
# On a machine without a registry, scripts/base-image.sh makes the local
# debian:bookworm-slim this starts from; elsewhere it comes from Docker Hub.

FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      zlib1g-dev \
      gcc make pkg-config libc6-dev musl-tools \
      libuv1-dev libhttp-parser-dev libjansson-dev libsodium-dev libsqlite3-dev libmbedtls-dev libpq-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src

# The library first: every service's build shares this layer, so a change in
# one service rebuilds only that service.
COPY Makefile VERSION ./
COPY scripts/deps.sh scripts/
COPY include include
COPY src src
ARG GIT_REV=unknown
RUN mkdir -p build && touch build/.deps-ok \
 && make -j"$(nproc)" --no-print-directory build/lib/libsvckit.a GIT_REV="$GIT_REV"

COPY . .
ARG SERVICE
ARG LINK=auto
ARG TLS=0
ARG PG=0
RUN test -n "$SERVICE" || { echo "pass --build-arg SERVICE=<name>" >&2; exit 2; } \
 && GIT_REV="$GIT_REV" TLS="$TLS" PG="$PG" sh docker/build.sh "$SERVICE" "$LINK"

FROM scratch
COPY --from=build /rootfs/ /
# The one writable directory. Its owner is set here rather than inherited:
# builders do not all keep the build stage's owners through COPY --from.
COPY --from=build --chown=65532:65532 /rootfs-data /data
# 65532: the conventional "nonroot" of distroless images; /etc/passwd names it.
USER 65532:65532
# SHUTDOWN_TIMEOUT stays under `docker stop`'s default 10 s grace period, so a
# drain that runs long still ends in our own exit, not in a SIGKILL.
ENV PORT=8080 \
    HOST=0.0.0.0 \
    DATA_DIR=/data \
    SHUTDOWN_TIMEOUT=8
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/healthcheck"]
# Exec form: the service is PID 1 and receives SIGTERM itself.
ENTRYPOINT ["/service"]
