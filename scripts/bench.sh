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
# takes several minutes and ~3 GB of disk).
#
# Everything listens on 127.0.0.1 only. Results go to stdout; server logs to
# the temp dir, kept when a scenario fails.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
PORT=${PORT:-18480}
URL="http://127.0.0.1:$PORT"
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(fsync assignment store batch single single-normal latency ceiling fanout fanout-split fanout-pinned formats big)

cargo build --release --quiet --bin logagg --example null_server --example formats_load
BIN=target/release/logagg
NULL_SERVER=target/release/examples/null_server
WORK=$(mktemp -d "${TMPDIR:-/tmp}/logagg-bench.XXXXXX")
SERVER=""
# Command prefixes that pin the server and publisher, and the subscribers, to
# CPUs (the fanout-pinned scenarios); empty otherwise.
PIN_SERVER=()
PIN_SUBSCRIBERS=()

cleanup() {
  [ -z "$SERVER" ] || kill "$SERVER" 2>/dev/null || true
  jobs -p | xargs -r kill 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '%s\n' "$*" >&2; }

wait_healthy() {
  for _ in $(seq 1 600); do
    "$BIN" health --url "$URL" --timeout 1s >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  log "server did not become healthy; log: $WORK/server.log"
  cat "$WORK/server.log" >&2
  return 1
}

# start_server DATA_DIR [serve flags...]
start_server() {
  local dir=$1
  shift
  RUST_LOG=warn "${PIN_SERVER[@]}" "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$dir" "$@" >"$WORK/server.log" 2>&1 &
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

echo "logagg bench $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
for scenario in "${SCENARIOS[@]}"; do
  "scenario_$scenario"
done
