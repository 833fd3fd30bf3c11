#!/usr/bin/env bash
# The dashboard in headless Chromium against a release server, for what a
# test cannot assert:
#
#   scripts/dashboard.sh size         # bytes of GET /, plain and gzip
#   scripts/dashboard.sh idle-cpu     # the server's CPU over a minute, idle,
#                                     # without and then with a dashboard open
#   scripts/dashboard.sh screenshots  # docs/dashboard-{desktop,phone}.png
#                                     # after ~3 minutes of varying load
#
# PORT (default 18600) is the server's, PORT+1 chromedriver's; IDLE_SECONDS
# (default 60) the length of each idle-cpu window. Needs chromium,
# chromedriver (.ci/setup/40-chromium.sh), curl and python3; screenshots
# are compressed with pngquant when it is installed. Everything
# listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${1:?usage: scripts/dashboard.sh size|idle-cpu|screenshots}
PORT=${PORT:-18600}
DRIVER_PORT=$((PORT + 1))
IDLE_SECONDS=${IDLE_SECONDS:-60}
URL="http://127.0.0.1:$PORT"
DRIVER="http://127.0.0.1:$DRIVER_PORT"

cargo build --release --quiet --bin logagg
BIN=target/release/logagg
WORK=$(mktemp -d "${TMPDIR:-/tmp}/logagg-dashboard.XXXXXX")
PIDS=()
SESSION=""

cleanup() {
  [ -z "$SESSION" ] || curl -s -X DELETE "$DRIVER/session/$SESSION" >/dev/null || true
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }

start_server() {
  RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  for _ in $(seq 1 200); do
    "$BIN" health --url "$URL" --timeout 1s >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  cat "$WORK/server.log" >&2
  return 1
}

# open_dashboard WIDTH HEIGHT: a browser session showing the dashboard.
open_dashboard() {
  chromedriver --port="$DRIVER_PORT" >"$WORK/chromedriver.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 100); do
    curl -sf "$DRIVER/status" >/dev/null && break
    sleep 0.1
  done
  # --no-sandbox: Chromium's sandbox refuses to run as root.
  local capabilities
  capabilities=$(printf '{"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{"binary":"%s","args":["--headless=new","--no-sandbox","--disable-gpu","--disable-dev-shm-usage","--force-device-scale-factor=1","--window-size=%s,%s"]}}}}' \
    "$(command -v chromium)" "$1" "$2")
  SESSION=$(curl -sf -X POST "$DRIVER/session" -d "$capabilities" | json '["value"]["sessionId"]')
  webdriver POST /url "{\"url\":\"$URL/\"}" >/dev/null
}

# cpu_ms: CPU time the server has used so far, exited threads included (the
# kernel counts it in clock ticks, 10 ms here).
cpu_ms() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%d\n", ($14 + $15) * 1000 / hz }' /proc/"$SERVER"/stat
}

requests_total() {
  curl -s "$URL/metrics" | awk '/^logagg_http_requests_total/ { total += $2 } END { printf "%d\n", total }'
}

# idle_window LABEL: the server's CPU and requests answered over IDLE_SECONDS.
idle_window() {
  local cpu requests
  cpu=$(cpu_ms)
  requests=$(requests_total)
  sleep "$IDLE_SECONDS"
  cpu=$(( $(cpu_ms) - cpu ))
  requests=$(( $(requests_total) - requests - 1 ))
  printf '%-20s %4d ms of CPU in %s s (%.3f%% of one core), %d requests\n' \
    "$1" "$cpu" "$IDLE_SECONDS" "$(echo "100 * $cpu / ($IDLE_SECONDS * 1000)" | bc -l)" "$requests"
}

webdriver() {
  curl -sf -X "$1" "$DRIVER/session/$SESSION$2" ${3:+-d "$3"}
}

# screenshot WIDTH HEIGHT FILE: the viewport at WIDTH x HEIGHT, as a PNG.
screenshot() {
  local inner
  webdriver POST /window/rect "{\"width\":$1,\"height\":$2}" >/dev/null
  # The window has a frame even when headless: grow it by the difference.
  inner=$(webdriver POST /execute/sync '{"script":"return [innerWidth, innerHeight]","args":[]}' |
    json '["value"]' | tr -d '[],')
  set -- "$1" "$2" "$3" $inner
  webdriver POST /window/rect "{\"width\":$(( 2 * $1 - $4 )),\"height\":$(( 2 * $2 - $5 ))}" >/dev/null
  sleep 1
  webdriver GET /screenshot | json '["value"]' | base64 -d >"$3"
  # A third of the size, looking the same (Debian's pngquant), if present.
  if command -v pngquant >/dev/null; then
    pngquant --quality 70-95 --speed 1 --strip --force --output "$3" "$3"
  fi
  echo "$3: $(wc -c <"$3") bytes"
}

case "$MODE" in
size)
  start_server
  plain=$(curl -s "$URL/" | wc -c)
  gzip=$(curl -s -H 'accept-encoding: gzip' "$URL/" | wc -c)
  echo "GET /: $plain bytes, $gzip bytes with gzip"
  ;;
idle-cpu)
  start_server
  "$BIN" publish --url "$URL" --generate 10000 --duplicate-rate 0.2 --topics 8 >/dev/null 2>&1
  sleep 15 # let the load's last commits settle
  idle_window "no dashboard"
  open_dashboard 1280 900
  sleep 5 # loaded, first polls and the tail connected
  idle_window "one dashboard open"
  ;;
screenshots)
  start_server
  open_dashboard 1280 900
  # Named topics at a steady trickle, a tenth of them resent...
  python3 - >"$WORK/named.ndjson" <<'EOF'
import json, random
random.seed(7)
topics = ["auth.login", "auth.logout", "billing.invoice.paid", "orders.created", "orders.shipped", "search.query"]
sent = []
for i in range(7200):
    if sent and random.random() < 0.1:
        print(random.choice(sent)); continue
    topic = random.choice(topics)
    line = json.dumps({"topic": topic, "event_id": f"{topic.split('.')[0]}-{i:05d}",
                       "timestamp": f"2025-10-25T12:{i // 120 % 60:02d}:{i % 60:02d}Z",
                       "source": topic.split(".")[0] + "-svc",
                       "payload": {"user": random.choice(["ana", "bo", "chen", "dara"]), "n": i}})
    sent.append(line); print(line)
EOF
  publish() { "$BIN" publish --url "$URL" "$@" >/dev/null 2>>"$WORK/publish.log"; }
  publish --rate 40 --batch-size 20 "$WORK/named.ndjson" &
  PIDS+=("$!")
  # ...and bursts of synthetic load with more and more duplicates.
  sleep 20
  publish --generate 15000 --rate 250 --duplicate-rate 0.1 --topics 3
  publish --generate 30000 --rate 600 --duplicate-rate 0.3 --topics 3
  sleep 15
  publish --generate 12000 --rate 300 --duplicate-rate 0.5 --topics 3 &
  PIDS+=("$!")
  sleep 25
  screenshot 1280 900 docs/dashboard-desktop.png
  screenshot 390 844 docs/dashboard-phone.png
  ;;
*)
  echo "unknown mode $MODE: size, idle-cpu or screenshots" >&2
  exit 2
  ;;
esac
