# PostgreSQL server binaries, for the tests that start a cluster of their
# own (tests/suite/postgres.rs: initdb and pg_ctl in a temp dir, as the
# unprivileged `postgres` user when run as root). Installs Debian's
# `postgresql` when no initdb is found, and exports LOGAGG_PG_BIN, the
# directory holding it (Debian keeps it off the PATH). Sourced by .ci/run.

pg_bin_dir() {
    if command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    # The newest installed major version.
    find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null |
        sort -V | tail -1 | xargs -r dirname
}

if [ -z "$(pg_bin_dir)" ]; then
    # Only the binaries are wanted: no cluster of the package's own.
    mkdir -p /etc/postgresql-common
    [ -e /etc/postgresql-common/createcluster.conf ] ||
        echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

LOGAGG_PG_BIN=$(pg_bin_dir)
if [ -z "$LOGAGG_PG_BIN" ]; then
    echo "20-postgres.sh: no initdb after installing postgresql" >&2
    exit 1
fi
export LOGAGG_PG_BIN
echo "PostgreSQL binaries: $LOGAGG_PG_BIN ($("$LOGAGG_PG_BIN/postgres" --version))" >&2
