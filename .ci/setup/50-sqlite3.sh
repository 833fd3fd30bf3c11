# The sqlite3 command: the crash campaign runs SQLite's own integrity check
# on the store it leaves behind.
if ! command -v sqlite3 >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 >/dev/null
fi
