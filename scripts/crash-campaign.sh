#!/usr/bin/env bash
# The crash campaign: publish continuously (with retries, deliberately
# repeated batches and in-batch duplicates) while the server is SIGKILLed at
# N random moments and restarted each time; then check that every
# acknowledged event is stored exactly once, nothing unsent is stored, the
# counters are exact and SQLite's integrity check is clean.
#
#   scripts/crash-campaign.sh 1000            # the full campaign
#   PORT=18551 scripts/crash-campaign.sh 20   # a short one
#   LOGAGG_BIN=target/debug/logagg scripts/crash-campaign.sh 20   # CI: no release build
#   scripts/crash-campaign.sh 50 --seed 7 --publishers 8 --keep
#
# Extra arguments go to scripts/crash_campaign.py (see its --help). It needs
# python3 and the sqlite3 command. Prints one JSON summary line on stdout;
# exits non-zero, keeping the work dir, when any check fails. Everything
# listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

KILLS=${1:?usage: scripts/crash-campaign.sh N [options]}
shift
PORT=${PORT:-18550}

BIN=${LOGAGG_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release --locked --quiet --bin logagg
    BIN=target/release/logagg
fi
exec python3 scripts/crash_campaign.py "$KILLS" --bin "$BIN" --port "$PORT" "$@"
