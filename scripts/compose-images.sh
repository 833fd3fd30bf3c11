#!/usr/bin/env bash
# Build, without a registry, the PostgreSQL and HAProxy images that
# docker-compose.postgres.yml needs, from Debian bookworm's packages.
#
#   scripts/compose-images.sh [--rebuild]
#
# Three images:
#   logagg-debian:bookworm   a minimal Debian root filesystem made with
#                            debootstrap (needs root and the debootstrap
#                            package), imported with `docker import`;
#                            skipped when it exists
#   logagg-postgres:local    deploy/images/postgres on that base
#   logagg-haproxy:local     deploy/images/haproxy on that base
# The last two are built every time, which Docker's layer cache makes a
# no-op (a second or two) unless their directory changed, so an edited
# Dockerfile is never ignored. --rebuild makes all three from nothing
# (debootstrap again, `docker build --no-cache`), to pick up Debian's
# latest packages.
# The two builds run `apt-get install` inside the build container, so
# Docker's default network must reach the Debian mirror.
# LOGAGG_DEBIAN_MIRROR chooses the mirror (default http://deb.debian.org/debian).
# The root filesystem is made in a temporary directory (TMPDIR) and removed
# once imported; nothing lands in the worktree.
set -euo pipefail
cd "$(dirname "$0")/.."

base=logagg-debian:bookworm
postgres=logagg-postgres:local
haproxy=logagg-haproxy:local
mirror=${LOGAGG_DEBIAN_MIRROR:-http://deb.debian.org/debian}

rebuild=false
case ${1:-} in
    "") ;;
    --rebuild) rebuild=true ;;
    *)
        echo "usage: $0 [--rebuild]" >&2
        exit 2
        ;;
esac

# Images a new build replaced (their tag moved on), removed at the end so
# that every --rebuild does not leave ~800 MB of untagged images behind.
replaced=()
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

old_base=$(image_id "$base")
if ! $rebuild && [[ -n $old_base ]]; then
    echo "compose-images: $base exists (--rebuild to make it again)"
else
    if [[ $(id -u) != 0 ]]; then
        echo "error: debootstrap needs root to make $base: run this script as root" >&2
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        echo "error: debootstrap is not installed: apt-get install debootstrap" >&2
        exit 1
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "compose-images: debootstrap bookworm from $mirror (log: $work/debootstrap.log)"
    if ! debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 20 "$work/debootstrap.log" >&2
        echo "error: debootstrap failed (above: the end of its log); is $mirror reachable? LOGAGG_DEBIAN_MIRROR chooses another" >&2
        exit 1
    fi
    # The updates and security suites too, so the images get Debian's fixes.
    cat >"$work/rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
SOURCES
    rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
    tar --numeric-owner -C "$work/rootfs" -c . |
        docker import --change 'CMD ["bash"]' - "$base" >/dev/null
    rm -rf "$work"
    echo "compose-images: built $base"
    replaced+=("$old_base")
fi

# build_image TAG DIR: docker build DIR (its Dockerfile) on the base as TAG.
build_image() {
    echo "compose-images: building $1 from $2"
    # --no-cache with --rebuild: a cached `apt-get install` layer would keep
    # the old packages.
    local flags=() old
    if $rebuild; then flags+=(--no-cache); fi
    old=$(image_id "$1")
    docker build "${flags[@]}" --build-arg "BASE=$base" --tag "$1" "$2"
    echo "compose-images: built $1"
    [[ $old == "$(image_id "$1")" ]] || replaced=("$old" "${replaced[@]}")
}

build_image "$postgres" deploy/images/postgres
build_image "$haproxy" deploy/images/haproxy

# Best effort, by id (never a prune, which would touch other people's
# images): an image still used by a container stays.
for id in "${replaced[@]}"; do
    if [[ -n $id ]]; then docker image rm "$id" >/dev/null 2>&1 || true; fi
done
