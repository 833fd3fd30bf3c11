#!/usr/bin/env bash
# Build a statically linked, stripped release `logagg` and copy it to OUT.
#
#   scripts/build-static.sh OUT
#
# The one recipe for the binary in the container image: the Dockerfile's
# builder stage and scripts/docker-build-local.sh (which the container tests
# use) both call it, so the image they produce holds the same binary.
#
# Static glibc, not musl: only the gnu target is assumed to be installed.
# `+crt-static` goes in RUSTFLAGS together with an explicit `--target`, so it
# applies to the binary only, not to build scripts and proc macros (which
# must stay dynamic for rustc to load them). Setting RUSTFLAGS here, and
# dropping CARGO_ENCODED_RUSTFLAGS which would win over it, also keeps flags
# from the caller's environment out of the image's binary.
# Name resolution needs no NSS modules at run time: since glibc 2.34 the
# `files` and `dns` backends are part of libc itself, so getaddrinfo in this
# binary reads /etc/hosts and asks the resolver in /etc/resolv.conf even in
# an empty image (that is how Compose's `aggregator` resolves; the container
# tests check it). That requires building against glibc >= 2.34, which the
# Dockerfile's Debian bookworm builder (2.36) has.
#
# The build uses its own target directory (target/static) so that it neither
# waits for nor invalidates the ordinary debug and release builds.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUT" >&2
    exit 2
fi
out=$1
cd "$(dirname "$0")/.."

target=$(rustc -vV | sed -n 's/^host: //p')
target_dir=${LOGAGG_STATIC_TARGET_DIR:-target/static}

# Debug line tables are kept in target/ for profiling, stripped from the
# image's copy: they triple the size (44 MB against 8 MB).
env -u CARGO_ENCODED_RUSTFLAGS \
    RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    cargo build --release --locked --bin logagg \
    --target "$target" --target-dir "$target_dir"

binary="$target_dir/$target/release/logagg"
# ldd answers "statically linked" (or "not a dynamic executable") for a
# static binary; anything else lists the shared libraries it would need.
if ! ldd "$binary" 2>&1 | grep -Eq 'statically linked|not a dynamic executable'; then
    echo "error: $binary is not statically linked:" >&2
    ldd "$binary" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$binary" "$out"
