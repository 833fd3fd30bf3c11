#!/usr/bin/env bash
# End-to-end benchmarks of logagg: a release build, a fresh server per
# scenario on a temp dir, driven by `logagg publish --generate`. Prints one
# line per scenario with the median of RUNS runs (default 3).
#
#   scripts/bench.sh                 # every scenario
#   scripts/bench.sh batch single    # only these (names below)
#   RUNS=5 scripts/bench.sh latency
#
# Scenarios: fsync, assignment, store, batch, single, single-normal, latency,
# ceiling, fanout, fanout-split, fanout-pinned, formats (each ingest path:
# /publish, shippers' raw records, OTLP and Loki, the same records through
# each), big (a 10,000,000-event store: startup, RSS, uuid4 vs uuid7 ingest;
# takes several minutes and ~3 GB of disk), the PostgreSQL store beside
# the embedded one in the same run: pg-batch and pg-single (not in the
# default set; they need the PostgreSQL server binaries: LOGAGG_PG_BIN, or
# initdb on the PATH, or Debian's /usr/lib/postgresql/*/bin;
# PG_BATCH_EVENTS and PG_SINGLE_EVENTS shrink them for a quick look), and
# the store matrix: matrix-fresh, matrix-single and matrix-big;
# retention (not in the default set; ~3 minutes): publish latency while
# expiry purges a filled store (PURGE_EVENTS, default 300,000), beside the
# same load with nothing to purge, and the store's size on disk under a
# steady load with --retain-for 20s --dedup-horizon 40s (that part alone:
# retention-steady, ~4 minutes); query
# (not in the default set): a store of QUERY_EVENTS (default 10,000,000)
# events, indexed for full-text search, then QUERY_PAGES (default 500)
# pages of 100 of each kind of /events filter (text included), p50/p99,
# while a publisher adds QUERY_INGEST_RATE (default 10,000) events/s; and
# search-ingest (not in the default set): ingest without and with the
# full-text index.
#
# The matrix scenarios run each load against this build's server and, when
# BASELINE names another logagg binary (or BASELINE_REV a git revision, built
# once into target/baseline-REV), against that one too, alternating between
# them run by run; the load generator is always this build's. matrix-big
# builds a store of BIG_EVENTS (default 10,000,000) uuid4 events per server,
# one after the other (~3 GB each, deleted after), then measures startup, RSS
# and appending 500,000 uuid4 and uuid7 events to it.
#
#   BASELINE_REV=09ff743 scripts/bench.sh matrix-fresh matrix-single matrix-big
#
# Everything listens on 127.0.0.1 only: logagg on PORT (and the next two
# ports for extra replicas), PostgreSQL on PORT+10. Results go to stdout;
# server logs to the temp dir, kept when a scenario fails.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
PORT=${PORT:-18480}
URL="http://127.0.0.1:$PORT"
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(fsync assignment store batch single single-normal latency ceiling fanout fanout-split fanout-pinned formats big)

cargo build --release --quiet --bin logagg --example null_server --example formats_load
BIN=target/release/logagg
# The server under test; the matrix scenarios switch it.
SERVER_BIN=$BIN
NULL_SERVER=target/release/examples/null_server
WORK=$(mktemp -d "${TMPDIR:-/tmp}/logagg-bench.XXXXXX")
SERVER=""
# Command prefixes that pin the server and publisher, and the subscribers, to
# CPUs (the fanout-pinned scenarios); empty otherwise.
PIN_SERVER=()
PIN_SUBSCRIBERS=()
# PostgreSQL (pg-* scenarios): its temp dir once started, and the logagg
# replicas running over it.
PG_DIR=""
PG_PORT=$((PORT + 10))
PG_URL="postgres://logagg@127.0.0.1:$PG_PORT/bench"
REPLICAS=()

cleanup() {
  [ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
  [ ${#REPLICAS[@]} -eq 0 ] || kill "${REPLICAS[@]}" 2>/dev/null || true
  [ -z "$PG_DIR" ] || pg_ctl_ stop -m immediate >/dev/null 2>&1 || true
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

wait_healthy() {
  for _ in $(seq 1 3000); do
    "$BIN" health --url "$URL" --timeout 1s >/dev/null 2>&1 && return 0
    sleep 0.01
  done
  log "server did not become healthy; log: $WORK/server.log"
  cat "$WORK/server.log" >&2
  return 1
}

# start_server DATA_DIR [serve flags...]
start_server() {
  local dir=$1
  shift
  RUST_LOG=warn "${PIN_SERVER[@]}" "$SERVER_BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$dir" "$@" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  wait_healthy
}

stop_server() {
  kill -TERM "$SERVER"
  wait "$SERVER"
  SERVER=""
}

# publish [publish flags...]: the --json summary on stdout; fails unless
# every event was acknowledged.
publish() {
  "${PIN_SERVER[@]}" "$BIN" publish --url "$URL" --json "$@" 2>"$WORK/publish.err"
}

# field JSON KEY.PATH: one value from a JSON document.
field() {
  python3 -c 'import json,sys
v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"
}

# median VALUES...
median() {
  printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf (m < 100 ? "%.3f" : "%.1f"), m}'
}

fresh_dir() { mktemp -d "$WORK/data.XXXXXX"; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- scenarios -------------------------------------------------------------

scenario_fsync() {
  # The disk's fsync latency right now: 4 KiB write + fsync, 500 times.
  local dir
  dir=$(fresh_dir)
  python3 - "$dir/probe" <<'PY'
import os, statistics, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
samples = []
for _ in range(500):
    os.write(fd, b"x" * 4096)
    t = time.perf_counter(); os.fsync(fd); samples.append(time.perf_counter() - t)
samples.sort()
print(f"fsync               4 KiB write+fsync: median {statistics.median(samples)*1e3:.2f} ms, p99 {samples[494]*1e3:.2f} ms")
PY
}

# run_publish NAME SERVE_FLAGS PUBLISH_FLAGS: RUNS runs, fresh store each.
run_publish() {
  local name=$1 serve_flags=$2 publish_flags=$3 rates=() p99s=() p50s=() out
  for _ in $(seq 1 "$RUNS"); do
    # shellcheck disable=SC2086 # flags are word lists on purpose
    start_server "$(fresh_dir)" $serve_flags
    # shellcheck disable=SC2086
    out=$(publish $publish_flags --verify)
    stop_server
    rates+=("$(field "$out" events_per_second)")
    p50s+=("$(field "$out" latency_ms.p50)")
    p99s+=("$(field "$out" latency_ms.p99)")
  done
  printf '%-19s %10s events/s  p50 %6s ms  p99 %6s ms  (median of %d; runs: %s)\n' \
    "$name" "$(median "${rates[@]}")" "$(median "${p50s[@]}")" "$(median "${p99s[@]}")" "$RUNS" "${rates[*]}"
}

scenario_assignment() {
  run_publish assignment "" "--generate 5000 --duplicate-rate 0.2 --ids uuid4"
}

scenario_store() {
  # The store's append path alone (criterion), on the same event shape.
  local line
  line=$(cargo bench --quiet --bench store_append -- --noplot batch_1000_dup20_uuid4_sync_full 2>/dev/null |
    grep -A2 'sync_full' | grep thrpt | head -1)
  printf '%-19s %s  (criterion: thrpt [low median high])\n' store "${line#*thrpt:}"
}

scenario_batch() {
  run_publish batch "" \
    "--generate 1000000 --batch-size 1000 --concurrency 8 --duplicate-rate 0.2 --ids uuid4 --topics 8 --payload-bytes 100"
}

scenario_single() {
  run_publish single "" \
    "--generate 100000 --batch-size 1 --concurrency 64 --duplicate-rate 0.2 --ids uuid4 --topics 8 --payload-bytes 100"
}

scenario_single-normal() {
  run_publish single-normal "--sync normal" \
    "--generate 100000 --batch-size 1 --concurrency 64 --duplicate-rate 0.2 --ids uuid4 --topics 8 --payload-bytes 100"
}

scenario_latency() {
  run_publish latency-2000rps "" \
    "--generate 20000 --rate 2000 --batch-size 1 --concurrency 64 --duplicate-rate 0.2 --ids uuid4 --topics 8 --payload-bytes 100"
}

scenario_ceiling() {
  # The load generator against a server that does no work.
  local batch=() single=() out
  "$NULL_SERVER" "127.0.0.1:$PORT" 2>/dev/null &
  SERVER=$!
  sleep 0.3
  for _ in $(seq 1 "$RUNS"); do
    out=$(publish --generate 2000000 --batch-size 1000 --concurrency 8 --ids uuid4 --payload-bytes 100)
    batch+=("$(field "$out" events_per_second)")
    out=$(publish --generate 200000 --batch-size 1 --concurrency 64 --ids uuid4 --payload-bytes 100)
    single+=("$(field "$out" events_per_second)")
  done
  kill "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
  printf '%-19s batch %s events/s, single %s requests/s  (null server; median of %d)\n' \
    ceiling "$(median "${batch[@]}")" "$(median "${single[@]}")" "$RUNS"
}

cpu_seconds() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }

# fanout_run MODE [pinned]: publish throughput with 100 subscribers attached,
# against the same load without them. MODE is `all` (every subscriber follows
# `>`, 50,000 events each) or `split` (subscriber i follows topic
# load.(i mod 8), about 6,250 each). Every subscriber must print every
# matching event once, in seq order. Also reported: the server's CPU time with
# and without subscribers, and how long after the publish ended the last
# subscriber had everything. With `pinned`, the server and publisher run on
# CPU 0 and the subscribers on CPU 1, in both runs: a stand-in for
# subscribers on other machines. Subscriber output goes to /dev/shm when it
# exists, so 1.6 GB of it does not compete with the server's fsyncs for the
# disk.
fanout_run() {
  local mode=$1 pinned=${2:-} name without=() with=() cpu_without=() cpu_with=() cpu_subscribers=() lags=()
  local load out dir group i pattern expected lines topics c0 t_end watchdog
  load="--generate 50000 --batch-size 100 --concurrency 8 --ids uuid4 --topics 8 --payload-bytes 100 --seed 1"
  name="fanout-$mode${pinned:+-pinned}"
  if [ -n "$pinned" ]; then
    PIN_SERVER=(taskset -c 0)
    PIN_SUBSCRIBERS=(taskset -c 1)
  fi
  for _ in $(seq 1 "$RUNS"); do
    start_server "$(fresh_dir)"
    c0=$(cpu_seconds "$SERVER")
    # shellcheck disable=SC2086
    out=$(publish $load)
    cpu_without+=("$(awk -v a="$c0" -v b="$(cpu_seconds "$SERVER")" 'BEGIN {printf "%.2f", b-a}')")
    without+=("$(field "$out" events_per_second)")
    # The same seed publishes the same events again below, so each
    # subscriber can be told how many to expect and exit once it has them.
    topics=$(python3 -c 'import json,sys,urllib.request
print(json.dumps({t["topic"]: t["events"] for t in json.load(urllib.request.urlopen(sys.argv[1]))["topics"]}))' "$URL/topics")
    stop_server

    start_server "$(fresh_dir)" --subscribers-max 200
    dir=$(mktemp -d "$( [ -w /dev/shm ] && echo /dev/shm || echo "$WORK")/logagg-fanout.XXXXXX")
    # The subscribers run in a subshell that waits for them all and then
    # reports their CPU time (its children's, from `times`).
    # Subscriber i's pattern and how many events it must print.
    python3 -c 'import json,sys
topics, mode = json.loads(sys.argv[1]), sys.argv[2]
for i in range(100):
    pattern = ">" if mode == "all" else f"load.{i % 8}"
    expected = sum(topics.values()) if pattern == ">" else topics.get(pattern, 0)
    print(i, pattern, expected)' "$topics" "$mode" >"$dir/plan"
    (
      # No other child processes here: they would count in `times`.
      while read -r i pattern expected; do
        # Each exits once it has printed all it expects.
        RUST_LOG=warn "${PIN_SUBSCRIBERS[@]}" "$BIN" subscribe "$pattern" --url "$URL" \
          --count "$expected" >"$dir/sub.$i" 2>/dev/null &
      done <"$dir/plan"
      wait
      times >"$dir/times"
    ) &
    group=$!
    sleep 2
    c0=$(cpu_seconds "$SERVER")
    # shellcheck disable=SC2086
    out=$(publish $load)
    t_end=$(date +%s.%N)
    with+=("$(field "$out" events_per_second)")
    ( sleep 120 && pkill -P "$group" ) 2>/dev/null &
    watchdog=$!
    wait "$group"
    lags+=("$(awk -v a="$t_end" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b-a}')")
    cpu_with+=("$(awk -v a="$c0" -v b="$(cpu_seconds "$SERVER")" 'BEGIN {printf "%.2f", b-a}')")
    cpu_subscribers+=("$(tail -1 "$dir/times" | tr 'ms' '  ' | awk '{printf "%.2f", $1 * 60 + $2 + $3 * 60 + $4}')")
    kill "$watchdog" 2>/dev/null || true
    while read -r i pattern expected; do
      # Exactly the expected lines, seqs strictly increasing: none missed,
      # repeated or out of order (each line starts {"seq":N,).
      lines=$(wc -l <"$dir/sub.$i")
      [ "$lines" -eq "$expected" ] || { log "subscriber $i ($pattern) printed $lines, expected $expected"; return 1; }
      cut -d, -f1 "$dir/sub.$i" | cut -d: -f2 | sort -c -n -u ||
        { log "subscriber $i ($pattern): seqs not strictly increasing"; return 1; }
    done <"$dir/plan"
    rm -rf "$dir"
    stop_server
  done
  PIN_SERVER=()
  PIN_SUBSCRIBERS=()
  local a b ca cb
  a=$(median "${without[@]}")
  b=$(median "${with[@]}")
  ca=$(median "${cpu_without[@]}")
  cb=$(median "${cpu_with[@]}")
  printf '%-19s %s events/s without subscribers, %s with 100 (%s%%); each got every matching event once, in order; all delivered %s s after the publish ended; server CPU %s s alone, %s s with them; subscribers CPU %s s  (median of %d; with: %s)\n' \
    "$name" "$a" "$b" "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.0f", 100*b/a}')" \
    "$(median "${lags[@]}")" "$ca" "$cb" "$(median "${cpu_subscribers[@]}")" "$RUNS" "${with[*]}"
}

scenario_fanout() { fanout_run all; }
scenario_fanout-split() { fanout_run split; }
scenario_fanout-pinned() { fanout_run all pinned; }

scenario_formats() {
  # 200,000 distinct records of ~100-byte messages over 8 topics, in
  # requests of 1,000 over 8 connections, through each ingest path; a fresh
  # server per path and run, the paths interleaved within each run so a
  # noisy neighbour hits them alike. Medians, and each path's median over
  # /publish's.
  local formats=(publish raw otlp-protobuf otlp-json loki-protobuf loki-json) format out
  declare -A rates bytes
  for _ in $(seq 1 "$RUNS"); do
    for format in "${formats[@]}"; do
      start_server "$(fresh_dir)"
      out=$(target/release/examples/formats_load "$URL" "$format" 200000 1000 8)
      stop_server
      rates[$format]="${rates[$format]:-} $(field "$out" records_per_second)"
      bytes[$format]=$(field "$out" record_bytes)
    done
  done
  local base
  # shellcheck disable=SC2086 # word lists on purpose
  base=$(median ${rates[publish]})
  for format in "${formats[@]}"; do
    local m
    # shellcheck disable=SC2086
    m=$(median ${rates[$format]})
    printf 'formats %-13s %9s records/s  %5s x /publish  (%s B/record on the wire; median of %d; runs:%s)\n' \
      "$format" "$m" "$(python3 -c "print(f'{$m / $base:.2f}')")" "${bytes[$format]}" "$RUNS" "${rates[$format]}"
  done
}

scenario_big() {
  # A store of 10,000,000 events, built with uuid7 ids in 1,000,000-event
  # chunks; then startup time, and uuid4 vs uuid7 ingest with RSS sampled.
  local dir starts=() t0 t1 out rate peak sampler
  dir=$(fresh_dir)
  start_server "$dir"
  for chunk in $(seq 1 10); do
    out=$(publish --generate 1000000 --batch-size 1000 --concurrency 8 --ids uuid7 --topics 8 --payload-bytes 100)
    log "big: chunk $chunk/10 at $(field "$out" events_per_second) events/s"
  done
  stop_server
  log "big: store is $(du -sh "$dir" | cut -f1)"
  for _ in $(seq 1 "$RUNS"); do
    t0=$(date +%s.%N)
    start_server "$dir"
    t1=$(date +%s.%N)
    starts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}')")
    stop_server
  done
  printf '%-19s %s s from exec to healthy at 10,000,000 events  (median of %d; runs: %s)\n' \
    big-startup "$(median "${starts[@]}")" "$RUNS" "${starts[*]}"
  for ids in uuid4 uuid7; do
    start_server "$dir"
    echo 0 >"$WORK/peak"
    (
      peak=0
      while kill -0 "$SERVER" 2>/dev/null; do
        r=$(rss_kib "$SERVER")
        [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$WORK/peak"
        sleep 0.1
      done
    ) &
    sampler=$!
    out=$(publish --generate 500000 --batch-size 1000 --concurrency 8 --ids "$ids" --topics 8 --payload-bytes 100 --duplicate-rate 0.2)
    rate=$(field "$out" events_per_second)
    stop_server
    wait "$sampler" 2>/dev/null || true
    peak=$(cat "$WORK/peak")
    printf '%-19s %10s events/s appending 500,000 (20%% dup) to 10,000,000; peak RSS %s MiB\n' \
      "big-ingest-$ids" "$rate" "$((peak / 1024))"
  done
}

scenario_search-ingest() {
  # The ingest cost of the full-text index: 1,000,000 events with 200-byte
  # payloads of words (--payload-words) into a fresh server without and
  # with --search '>', alternating, RUNS times each; medians, the median
  # of the per-run ratios, and the data directory's size.
  local run index dir out rate off=() on=() ratios=() size_off size_on
  for run in $(seq 1 "$RUNS"); do
    for index in off on; do
      dir=$(fresh_dir)
      if [ "$index" = on ]; then start_server "$dir" --search '>'; else start_server "$dir"; fi
      out=$(publish --generate 1000000 --batch-size 1000 --concurrency 8 --ids uuid7 --topics 8 \
        --payload-bytes 200 --payload-words)
      rate=$(field "$out" events_per_second)
      stop_server
      if [ "$index" = on ]; then on+=("$rate"); size_on=$(du -sm "$dir" | cut -f1); else off+=("$rate"); size_off=$(du -sm "$dir" | cut -f1); fi
      rm -rf "$dir"
      log "search-ingest run $run, index $index: $rate events/s"
    done
    ratios+=("$(awk -v a="${on[-1]}" -v b="${off[-1]}" 'BEGIN {printf "%.3f", a / b}')")
  done
  printf '%-19s %10s events/s without the index, %s with --search %s (ratio %s; runs: %s / %s); %s vs %s MiB on disk\n' \
    search-ingest "$(median "${off[@]}")" "$(median "${on[@]}")" "'>'" "$(median "${ratios[@]}")" \
    "${off[*]}" "${on[*]}" "$size_off" "$size_on"
}

scenario_query() {
  # A store of QUERY_EVENTS uuid7 events in 8 topics (load.0 ... load.7)
  # with 100-byte payloads of words, indexed for full-text search
  # (--search 'load.>'), filled in chunks of 1,000,000; then pages of 100
  # by topic pattern (the 8 topics' indexes merged), newest first, by one
  # topic, by a commit-time range, and by text (a common word, a rare one,
  # both), each from a random point of the store, while a publisher keeps
  # ingesting.
  local dir events=${QUERY_EVENTS:-10000000} pages=${QUERY_PAGES:-500} left chunk out t0 t1 ingest
  dir=$(fresh_dir)
  start_server "$dir" --search 'load.>'
  t0=$(date +%s.%N)
  left=$events
  while [ "$left" -gt 0 ]; do
    chunk=$((left < 1000000 ? left : 1000000))
    out=$(publish --generate "$chunk" --batch-size 1000 --concurrency 8 --ids uuid7 --topics 8 --payload-bytes 100 --payload-words)
    left=$((left - chunk))
    log "query: filled $((events - left))/$events at $(field "$out" events_per_second) events/s"
  done
  t1=$(date +%s.%N)
  printf '%-19s %s events in %s s (%s on disk)\n' query-fill "$events" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", b-a}')" "$(du -sh "$dir" | cut -f1)"
  "$BIN" publish --url "$URL" --generate 1000000 --rate "${QUERY_INGEST_RATE:-10000}" --batch-size 100 \
    --concurrency 2 --ids uuid7 --topics 8 --payload-bytes 100 --payload-words >/dev/null 2>"$WORK/ingest.err" &
  ingest=$!
  sleep 2
  kill -0 "$ingest" 2>/dev/null || { log "query: the ingest load stopped: $(cat "$WORK/ingest.err")"; return 1; }
  python3 - "$URL" "$pages" <<'PY'
import http.client, json, random, statistics, sys, time, urllib.parse
from datetime import datetime, timedelta
url, pages = urllib.parse.urlparse(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection(url.hostname, url.port)
def get(path):
    t = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - t
    assert response.status == 200, (path, response.status, body[:300])
    return json.loads(body), elapsed
first, _ = get("/events?limit=1")
last, _ = get("/events?limit=1&order=desc")
top = last["events"][0]["seq"]
t_first = datetime.fromisoformat(first["events"][0]["received_at"].replace("Z", "+00:00"))
t_last = datetime.fromisoformat(last["events"][0]["received_at"].replace("Z", "+00:00"))
span = (t_last - t_first).total_seconds()
def instant(seconds):
    return urllib.parse.quote((t_first + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"))
# Words to search for, from a sample of stored payloads: the most common
# ones, and ones seen once in the sample (each in about 0.1% of events).
counts = {}
for _ in range(10):
    sample, _ = get(f"/events?limit=100&after={random.randrange(top)}")
    for event in sample["events"]:
        for word in event["payload"]["fill"].split():
            counts[word] = counts.get(word, 0) + 1
ranked = sorted(counts, key=counts.get, reverse=True)
common, rare = ranked[:5], [w for w in ranked if counts[w] == 1]
print(f"query-words         common {common} (in {counts[common[0]]}..{counts[common[-1]]} of 1,000 sampled events); "
      f"{len(rare)} rare ones (once each)")
kinds = {
    "query-pattern": lambda: f"/events?topic=load.*&after={random.randrange(top)}&limit=100",
    "query-pattern-desc": lambda: f"/events?topic=load.*&order=desc&before={random.randrange(top) + 1}&limit=100",
    "query-topic": lambda: f"/events?topic=load.3&after={random.randrange(top)}&limit=100",
    "query-time": lambda: (lambda s: f"/events?since={instant(s)}&until={instant(s + 60)}&limit=100")(random.uniform(0, span)),
    "query-time-pattern": lambda: (lambda s: f"/events?topic=load.*&since={instant(s)}&limit=100")(random.uniform(0, span)),
    "query-text-common": lambda: f"/events?topic=load.*&q={random.choice(common)}&after={random.randrange(top)}&limit=100",
    "query-text-rare": lambda: f"/events?topic=load.*&q={random.choice(rare)}&after={random.randrange(top)}&limit=100",
    "query-text-both": lambda: f"/events?topic=load.*&q={random.choice(common)}%20{random.choice(rare)}&after={random.randrange(top)}&limit=100",
    "query-text-desc": lambda: f"/events?topic=load.3&q={random.choice(rare)}&order=desc&before={random.randrange(top) + 1}&limit=100",
}
started, (stats, _) = time.monotonic(), get("/stats")
for name, make in kinds.items():
    samples, short = [], 0
    for _ in range(pages):
        page, elapsed = get(make())
        samples.append(elapsed)
        short += len(page["events"]) < 100
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"{name:<19} p50 {statistics.median(samples) * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  "
          f"({pages} pages of 100 over {top:,} events; {short} short)")
(after, _), elapsed = get("/stats"), time.monotonic() - started
added = after["last_seq"] - stats["last_seq"]
print(f"query-ingest        {added / elapsed:,.0f} events/s stored meanwhile ({added:,} in {elapsed:.0f} s)")
PY
  kill "$ingest" 2>/dev/null || true
  wait "$ingest" 2>/dev/null || true
  stop_server
  rm -rf "$dir"
}

# --- PostgreSQL ------------------------------------------------------------

pg_bin() {
  if [ -n "${LOGAGG_PG_BIN:-}" ]; then echo "$LOGAGG_PG_BIN"; return; fi
  if command -v initdb >/dev/null; then dirname "$(readlink -f "$(command -v initdb)")"; return; fi
  find /usr/lib/postgresql -maxdepth 3 -path '*/bin/initdb' 2>/dev/null | sort -V | tail -1 | xargs -r dirname
}

# pg_ctl_ ARGS...: pg_ctl on the bench cluster, as its owner (PostgreSQL
# refuses to run as root; Debian's package creates the `postgres` user).
pg_ctl_() {
  local as=()
  [ "$(id -u)" != 0 ] || as=(runuser -u postgres --)
  "${as[@]}" "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" "$@"
}

# pg_start: a cluster with the server's defaults (fsync on,
# synchronous_commit on), but room for 2 GB of WAL between checkpoints, so
# a 1,000,000-event run is not measured through a forced checkpoint.
pg_start() {
  local bin as=()
  bin=$(pg_bin)
  [ -n "$bin" ] || { log "no PostgreSQL binaries (set LOGAGG_PG_BIN)"; return 1; }
  PG_DIR=$(mktemp -d "$WORK/pg.XXXXXX")
  if [ "$(id -u)" = 0 ]; then
    chmod go+x "$WORK"
    chown postgres "$PG_DIR"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U logagg -A trust -E UTF8 --locale=C >/dev/null
  pg_ctl_ -l "$PG_DIR/server.log" -w \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c max_wal_size=2GB" start >/dev/null
}

pg_stop() {
  pg_ctl_ -m fast stop >/dev/null
  PG_DIR=""
}

pg_sql() { "$(pg_bin)/psql" -h 127.0.0.1 -p "$PG_PORT" -U logagg -d postgres -qAtc "$1"; }

pg_fresh_db() { pg_sql "DROP DATABASE IF EXISTS bench" && pg_sql "CREATE DATABASE bench"; }

# CPU seconds of the whole PostgreSQL server: the postmaster, every live
# backend, and the backends it has already reaped.
pg_cpu_seconds() {
  local postmaster
  postmaster=$(head -1 "$PG_DIR/data/postmaster.pid")
  { cat "/proc/$postmaster/stat"; for child in $(pgrep -P "$postmaster"); do cat "/proc/$child/stat" 2>/dev/null; done; } |
    awk 'NR == 1 { s += $16 + $17 } { s += $14 + $15 } END { printf "%.2f", s / 100 }'
}

# start_replicas COUNT [serve flags...]: logagg replicas on PORT, PORT+1, ...
start_replicas() {
  local count=$1 i
  shift
  REPLICAS=()
  for i in $(seq 0 $((count - 1))); do
    RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$((PORT + i))" --data-dir "$(fresh_dir)" "$@" \
      >"$WORK/replica.$i.log" 2>&1 &
    REPLICAS+=($!)
  done
  for i in $(seq 0 $((count - 1))); do
    URL="http://127.0.0.1:$((PORT + i))" wait_healthy
  done
}

stop_replicas() {
  kill -TERM "${REPLICAS[@]}"
  wait "${REPLICAS[@]}"
  REPLICAS=()
}

replicas_cpu_seconds() {
  local pid total=0
  for pid in "${REPLICAS[@]}"; do
    total=$(awk -v t="$total" -v c="$(cpu_seconds "$pid")" 'BEGIN {printf "%.2f", t + c}')
  done
  echo "$total"
}

# µs of CPU per event: per_event CPU_SECONDS EVENTS
per_event() { awk -v c="$1" -v n="$2" 'BEGIN {printf "%.1f", c * 1e6 / n}'; }

# publish_spread COUNT EVENTS CONCURRENCY PUBLISH_FLAGS...: one publisher
# per replica, each sending its share of the events over its share of the
# connections; prints "events/s unique" over the wall time of them all.
publish_spread() {
  local count=$1 events=$2 concurrency=$3 i t0 t1 pids=() unique=0
  shift 3
  t0=$(date +%s.%N)
  for i in $(seq 0 $((count - 1))); do
    "$BIN" publish --url "http://127.0.0.1:$((PORT + i))" --json "$@" \
      --generate "$((events / count))" --concurrency "$(( (concurrency + count - 1) / count ))" \
      --seed "$((i + 1))" >"$WORK/spread.$i.json" 2>"$WORK/spread.$i.err" &
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(date +%s.%N)
  for i in $(seq 0 $((count - 1))); do
    unique=$((unique + $(field "$(cat "$WORK/spread.$i.json")" unique)))
  done
  awk -v n="$(( (events / count) * count ))" -v a="$t0" -v b="$t1" -v u="$unique" 'BEGIN {printf "%.0f %d", n / (b - a), u}'
}

stats_field() {
  python3 -c 'import json,sys,urllib.request
print(json.load(urllib.request.urlopen(sys.argv[1] + "/stats"))[sys.argv[2]])' "$1" "$2"
}

# pg_compare NAME EVENTS CONCURRENCY PUBLISH_FLAGS: in each run, the same
# load through the embedded store, through one replica over PostgreSQL and
# through three (the connections split among them), each on a fresh store;
# medians, same-run ratios and CPU per event.
pg_compare() {
  local name=$1 events=$2 concurrency=$3 flags="$4 --concurrency $3" run out c0 c1 p0 p1 rate unique stored
  local sqlite=() one=() three=() ratio_one=() ratio_three=()
  local cpu_sqlite=() cpu_one=() cpu_one_pg=() cpu_three=() cpu_three_pg=()
  pg_start
  for run in $(seq 1 "$RUNS"); do
    start_server "$(fresh_dir)"
    c0=$(cpu_seconds "$SERVER")
    # shellcheck disable=SC2086
    out=$(publish --generate "$events" $flags --verify)
    cpu_sqlite+=("$(per_event "$(awk -v a="$c0" -v b="$(cpu_seconds "$SERVER")" 'BEGIN {print b - a}')" "$events")")
    stop_server
    sqlite+=("$(field "$out" events_per_second)")

    pg_fresh_db
    start_replicas 1 --store "$PG_URL"
    c0=$(replicas_cpu_seconds); p0=$(pg_cpu_seconds)
    # shellcheck disable=SC2086
    out=$("$BIN" publish --url "http://127.0.0.1:$PORT" --json --generate "$events" $flags --verify 2>"$WORK/publish.err")
    c1=$(replicas_cpu_seconds); p1=$(pg_cpu_seconds)
    stop_replicas
    one+=("$(field "$out" events_per_second)")
    cpu_one+=("$(per_event "$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}')" "$events")")
    cpu_one_pg+=("$(per_event "$(awk -v a="$p0" -v b="$p1" 'BEGIN {print b - a}')" "$events")")

    pg_fresh_db
    start_replicas 3 --store "$PG_URL"
    c0=$(replicas_cpu_seconds); p0=$(pg_cpu_seconds)
    # shellcheck disable=SC2086
    read -r rate unique <<<"$(publish_spread 3 "$events" "$concurrency" $4)"
    c1=$(replicas_cpu_seconds); p1=$(pg_cpu_seconds)
    stored=$(stats_field "http://127.0.0.1:$PORT" unique_processed)
    [ "$stored" = "$unique" ] ||
      { log "$name: three replicas stored $stored, acknowledged $unique unique"; return 1; }
    stop_replicas
    three+=("$rate")
    cpu_three+=("$(per_event "$(awk -v a="$c0" -v b="$c1" 'BEGIN {print b - a}')" "$events")")
    cpu_three_pg+=("$(per_event "$(awk -v a="$p0" -v b="$p1" 'BEGIN {print b - a}')" "$events")")

    ratio_one+=("$(awk -v a="${one[-1]}" -v b="${sqlite[-1]}" 'BEGIN {printf "%.0f", 100 * a / b}')")
    ratio_three+=("$(awk -v a="${three[-1]}" -v b="${sqlite[-1]}" 'BEGIN {printf "%.0f", 100 * a / b}')")
    log "$name run $run: sqlite ${sqlite[-1]}, pg x1 ${one[-1]} (${ratio_one[-1]}%), pg x3 ${three[-1]} (${ratio_three[-1]}%)"
  done
  pg_stop
  printf '%-19s sqlite %s events/s (logagg %s us/event) | pg, 1 replica %s events/s = %.0f%% of sqlite (logagg %s + postgres %s us/event) | pg, 3 replicas %s events/s = %.0f%% (logagg %s + postgres %s us/event)  (medians of %d; same-run ratios: %s / %s)\n' \
    "$name" "$(median "${sqlite[@]}")" "$(median "${cpu_sqlite[@]}")" \
    "$(median "${one[@]}")" "$(median "${ratio_one[@]}")" "$(median "${cpu_one[@]}")" "$(median "${cpu_one_pg[@]}")" \
    "$(median "${three[@]}")" "$(median "${ratio_three[@]}")" "$(median "${cpu_three[@]}")" "$(median "${cpu_three_pg[@]}")" \
    "$RUNS" "${ratio_one[*]}" "${ratio_three[*]}"
}

scenario_pg-batch() {
  pg_compare pg-batch "${PG_BATCH_EVENTS:-1000000}" 8 \
    "--batch-size 1000 --duplicate-rate 0.2 --ids uuid4 --topics 8 --payload-bytes 100"
}

scenario_pg-single() {
  pg_compare pg-single "${PG_SINGLE_EVENTS:-100000}" 64 \
    "--batch-size 1 --duplicate-rate 0.2 --ids uuid4 --topics 8 --payload-bytes 100"
}

# --- the store matrix --------------------------------------------------------

# Labels and binaries of the servers the matrix compares: "old" (BASELINE)
# when given, and "new" (this build).
STORE_LABELS=()
declare -A STORE_BINS

matrix_stores() {
  [ ${#STORE_LABELS[@]} -eq 0 ] || return 0
  if [ -z "${BASELINE:-}" ] && [ -n "${BASELINE_REV:-}" ]; then
    BASELINE=target/baseline-$BASELINE_REV/release/logagg
    if [ ! -x "$BASELINE" ]; then
      log "building the baseline $BASELINE_REV into target/baseline-$BASELINE_REV"
      rm -rf "target/baseline-src-$BASELINE_REV"
      mkdir -p "target/baseline-src-$BASELINE_REV"
      git archive "$BASELINE_REV" | tar -x -C "target/baseline-src-$BASELINE_REV"
      (cd "target/baseline-src-$BASELINE_REV" &&
        CARGO_TARGET_DIR="$PWD/../baseline-$BASELINE_REV" cargo build --release --quiet --bin logagg)
    fi
  fi
  if [ -n "${BASELINE:-}" ]; then
    STORE_LABELS+=(old)
    STORE_BINS[old]=$BASELINE
  fi
  STORE_LABELS+=(new)
  STORE_BINS[new]=$BIN
  log "matrix: new = $BIN${BASELINE:+, old = $BASELINE}"
}

# The peak RSS of the server, sampled every 0.1 s between these two calls.
rss_sampler_start() {
  echo 0 >"$WORK/peak"
  (
    local peak=0 r
    while kill -0 "$SERVER" 2>/dev/null; do
      r=$(rss_kib "$SERVER")
      [ "${r:-0}" -gt "$peak" ] && peak=$r && echo "$peak" >"$WORK/peak"
      sleep 0.1
    done
  ) &
  SAMPLER=$!
}

# Prints the peak in MiB; call after the server stopped.
rss_sampler_stop() {
  wait "$SAMPLER" 2>/dev/null || true
  echo $(($(cat "$WORK/peak") / 1024))
}

# matrix_publish NAME SERVE_FLAGS PUBLISH_FLAGS: RUNS runs, each against
# every store in turn on a fresh data dir; per store the median rate and
# peak RSS.
matrix_publish() {
  local name=$1 serve_flags=$2 publish_flags=$3 label out
  declare -A rates peaks
  for _ in $(seq 1 "$RUNS"); do
    for label in "${STORE_LABELS[@]}"; do
      SERVER_BIN=${STORE_BINS[$label]}
      # shellcheck disable=SC2086 # flags are word lists on purpose
      start_server "$(fresh_dir)" $serve_flags
      rss_sampler_start
      # shellcheck disable=SC2086
      out=$(publish $publish_flags --verify)
      stop_server
      rates[$label]+=" $(field "$out" events_per_second)"
      peaks[$label]+=" $(rss_sampler_stop)"
    done
  done
  SERVER_BIN=$BIN
  for label in "${STORE_LABELS[@]}"; do
    # shellcheck disable=SC2086
    printf '%-24s %10s events/s  peak RSS %4.0f MiB  (median of %d; runs:%s)\n' \
      "$name-$label" "$(median ${rates[$label]})" "$(median ${peaks[$label]})" "$RUNS" "${rates[$label]}"
  done
}

scenario_matrix-fresh() {
  matrix_stores
  local ids
  for ids in uuid4 uuid7; do
    matrix_publish "fresh-batch-$ids" "" \
      "--generate 1000000 --batch-size 1000 --concurrency 8 --duplicate-rate 0.2 --ids $ids --topics 8 --payload-bytes 100"
  done
}

scenario_matrix-single() {
  matrix_stores
  local ids
  for ids in uuid4 uuid7; do
    matrix_publish "fresh-single-$ids" "" \
      "--generate 100000 --batch-size 1 --concurrency 64 --duplicate-rate 0.2 --ids $ids --topics 8 --payload-bytes 100"
  done
}

scenario_matrix-big() {
  matrix_stores
  local events=${BIG_EVENTS:-10000000} label dir chunks chunk out t0 t1 starts rss rates ids
  chunks=$((events / 1000000))
  for label in "${STORE_LABELS[@]}"; do
    SERVER_BIN=${STORE_BINS[$label]}
    dir=$(fresh_dir)
    start_server "$dir"
    rates=()
    t0=$(date +%s.%N)
    for chunk in $(seq 1 "$chunks"); do
      out=$(publish --generate 1000000 --batch-size 1000 --concurrency 8 --ids uuid4 --topics 8 --payload-bytes 100)
      rates+=("$(field "$out" events_per_second)")
      log "big-$label: chunk $chunk/$chunks at ${rates[-1]} events/s"
    done
    t1=$(date +%s.%N)
    stop_server
    printf '%-24s %s uuid4 events in %s s; chunks of 1,000,000 at %s events/s; %s on disk\n' \
      "big-fill-$label" "$events" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", b-a}')" \
      "$(IFS=/; echo "${rates[*]}")" "$(du -sh "$dir" | cut -f1)"
    starts=()
    rss=()
    for _ in $(seq 1 "$RUNS"); do
      t0=$(date +%s.%N)
      start_server "$dir"
      t1=$(date +%s.%N)
      starts+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b-a}')")
      rss+=("$(($(rss_kib "$SERVER") / 1024))")
      stop_server
    done
    printf '%-24s %s s from exec to healthy with %s stored, RSS %s MiB once healthy  (median of %d; runs: %s)\n' \
      "big-startup-$label" "$(median "${starts[@]}")" "$events" "$(median "${rss[@]}")" "$RUNS" "${starts[*]}"
    for ids in uuid4 uuid7; do
      start_server "$dir"
      rss_sampler_start
      out=$(publish --generate 500000 --batch-size 1000 --concurrency 8 --ids "$ids" --topics 8 --payload-bytes 100 --duplicate-rate 0.2)
      stop_server
      printf '%-24s %10s events/s appending 500,000 (20%% dup) to %s; peak RSS %s MiB\n' \
        "big-ingest-$ids-$label" "$(field "$out" events_per_second)" "$events" "$(rss_sampler_stop)"
    done
    rm -rf "$dir"
  done
  SERVER_BIN=$BIN
}

# latency_during_purge NAME SERVE_FLAGS: fills a store with PURGE_EVENTS
# events, waits until they are 20 s old, then measures single-event publish
# latency at 2,000/s for 15 s; with --retain-for 20s the fill expires
# (1,000 rows per transaction) during exactly that window.
latency_during_purge() {
  local name=$1 serve_flags=$2 events=${PURGE_EVENTS:-300000} out t0 expired
  # shellcheck disable=SC2086 # flags are word lists on purpose
  start_server "$(fresh_dir)" $serve_flags --expire-interval 1s
  t0=$(date +%s)
  publish --generate "$events" --batch-size 1000 --concurrency 4 --ids uuid4 --topics 8 --payload-bytes 100 >/dev/null
  while [ $(($(date +%s) - t0)) -lt 19 ]; do sleep 0.2; done
  out=$(publish --generate 30000 --rate 2000 --batch-size 1 --concurrency 64 --ids uuid4 --topics 8 --payload-bytes 100)
  expired=$(field "$(curl -s "$URL/stats")" expired)
  stop_server
  printf '%-19s p50 %6s ms  p99 %6s ms  max %7s ms  (2,000 events/s for 15 s; %s of %s filled events expired meanwhile)\n' \
    "$name" "$(field "$out" latency_ms.p50)" "$(field "$out" latency_ms.p99)" "$(field "$out" latency_ms.max)" "$expired" "$events"
}

scenario_retention() {
  latency_during_purge purge-none "--retain-for forever"
  latency_during_purge purge-running "--retain-for 20s"
  scenario_retention-steady
}

# mib FILE: its size in MiB, one decimal (0.0 when it does not exist).
mib() { awk -v b="$(stat -c %s "$1" 2>/dev/null || echo 0)" 'BEGIN {printf "%.1f", b / 1048576}'; }

# pages DB: the database's size as of its newest commit (its pages, WAL
# included) and the part of it in use (less the free pages), in MiB, read
# on a read-only connection. The file only reaches that size at the next
# checkpoint.
pages() {
  python3 -c 'import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
p, f, s = (c.execute("PRAGMA " + n).fetchone()[0] for n in ("page_count", "freelist_count", "page_size"))
print("%.1f/%.1f" % (p * s / 1048576, (p - f) * s / 1048576))' "$1"
}

# Steady state (also alone: scripts/bench.sh retention-steady): 2,000
# events/s of ~1 KiB, kept 20 s, keys 40 s: every 15 s for 150 s, the data
# directory on disk (du), and the database file, its WAL and the keydir
# snapshot separately (their sizes); then for 60 s with no load.
scenario_retention-steady() {
  local dir sizes=() dbs=() wals=() snaps=() logical=() i stats
  dir=$(fresh_dir)
  start_server "$dir" --retain-for 20s --dedup-horizon 40s --expire-interval 1s
  publish --generate 300000 --rate 2000 --batch-size 10 --concurrency 8 --ids uuid4 --topics 8 --payload-bytes 1000 >/dev/null &
  local load=$!
  for i in $(seq 1 10); do
    sleep 15
    sizes+=("$(du -sm "$dir" | cut -f1)")
    dbs+=("$(mib "$dir/logagg.db")")
    wals+=("$(mib "$dir/logagg.db-wal")")
    snaps+=("$(mib "$dir/keydir.snapshot")")
    logical+=("$(pages "$dir/logagg.db")")
  done
  wait "$load"
  # One read of /stats, so stored + expired is one snapshot's (expiry goes
  # on between two reads).
  stats=$(curl -s "$URL/stats")
  printf '%-19s MiB on disk every 15 s: %s  (%s stored, %s expired, %s unique)\n' steady-size "${sizes[*]}" \
    "$(field "$stats" stored)" "$(field "$stats" expired)" "$(field "$stats" unique_processed)"
  printf '%-19s MiB every 15 s: %s\n' steady-db "${dbs[*]}" steady-wal "${wals[*]}" steady-snapshot "${snaps[*]}" \
    steady-pages/used "${logical[*]}"
  # Then nothing comes in: within 20 s every event expires, within 40 s
  # every key; the database gives its pages back, the WAL keeps its size.
  sizes=() dbs=() wals=() logical=()
  for i in $(seq 1 4); do
    sleep 15
    sizes+=("$(du -sm "$dir" | cut -f1)")
    dbs+=("$(mib "$dir/logagg.db")")
    wals+=("$(mib "$dir/logagg.db-wal")")
    logical+=("$(pages "$dir/logagg.db")")
  done
  printf '%-19s MiB every 15 s after the load: %s (database file %s, WAL %s, pages/used %s)\n' idle-size \
    "${sizes[*]}" "${dbs[*]}" "${wals[*]}" "${logical[*]}"
  stop_server
}

echo "logagg bench $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for scenario in "${SCENARIOS[@]}"; do
  "scenario_$scenario"
done
