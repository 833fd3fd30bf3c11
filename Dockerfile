# The logagg image: one static binary in an otherwise empty image.
#
#   docker build -t logagg .
#   docker run -d -p 8080:8080 -v logagg-data:/data logagg
#
# Two stages. The builder compiles a statically linked (glibc) binary with
# scripts/build-static.sh, the same script the tests use. The final stage
# starts FROM scratch: no shell, no package manager, no libc, nothing to
# patch but logagg itself. It runs as an unprivileged numeric user (scratch
# has no /etc/passwd) and keeps its database on the /data volume.
#
# How the tests build this file without a registry: they cannot pull the
# rust image, so scripts/docker-build-local.sh compiles the binary on the
# host and builds a Dockerfile made of a stand-in `builder` stage (FROM
# scratch, holding the prebuilt /out directory) followed by every line of
# this file from the "final stage" marker below to the end, verbatim. The
# final stage the tests exercise is therefore the one users get, line for
# line; keep the builder's output in /out so that trick keeps working.

# Bookworm's glibc (2.36) has the hosts/DNS resolver built in, which the
# static binary relies on to resolve service names (see build-static.sh).
FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between
# builds. They need BuildKit: the default builder since Docker 23 (and what
# docker-compose uses through the docker CLI); with the classic builder the
# build stops here, asking for it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-static.sh /out/logagg \
    && mkdir /out/data

# --- final stage: scripts/docker-build-local.sh copies from here to the end ---
FROM scratch
COPY --from=builder /out/logagg /logagg
# A volume mounted on /data starts as a copy of this directory, ownership
# included, so the unprivileged user can write its database there.
COPY --from=builder --chown=10001:10001 /out/data /data
USER 10001:10001
ENV LOGAGG_DATA_DIR=/data LOGAGG_LISTEN=0.0.0.0:8080
# Logs go to `docker logs` and log drivers, not a terminal: no colour codes.
ENV NO_COLOR=1
VOLUME /data
EXPOSE 8080
# `logagg health` asks /health on the port in LOGAGG_LISTEN, over loopback
# (LOGAGG_URL overrides). The image has no curl, and needs none.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/logagg", "health"]
ENTRYPOINT ["/logagg"]
CMD ["serve"]
