#!/bin/sh
# Entrypoint of the local PostgreSQL image (deploy/images/postgres).
#
#   docker-entrypoint.sh postgres [POSTGRES OPTIONS]   start the server
#   docker-entrypoint.sh COMMAND...                    run COMMAND instead
#
# Started as root, it makes $PGDATA belong to `postgres` and re-executes
# itself as that user. On a first start (no $PGDATA/PG_VERSION) it creates
# the cluster: superuser POSTGRES_USER (default postgres) with password
# POSTGRES_PASSWORD (required), local socket connections trusted, TCP ones
# from anywhere with scram-sha-256, listen_addresses = '*', and the
# database POSTGRES_DB (default: the user's name). Then it runs the server
# in the foreground, logging to stderr.
set -eu

if [ "${1:-}" != postgres ]; then
    exec "$@"
fi
shift

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "error: $PGDATA holds no cluster and POSTGRES_PASSWORD is not set: set it (the password of POSTGRES_USER) to create one" >&2
        exit 1
    fi
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    if [ "$db" != postgres ]; then
        # Single-user mode: no server, no socket, nothing listening yet.
        # The name is quoted as an identifier (inner quotes doubled).
        quoted=$(printf '%s' "$db" | sed 's/"/""/g')
        echo "CREATE DATABASE \"$quoted\"" | postgres --single -D "$PGDATA" postgres >/dev/null
    fi
    echo "created the cluster in $PGDATA: user $user, database $db" >&2
fi

exec postgres -D "$PGDATA" "$@"
