#!/usr/bin/env bash
# Run docker-compose.postgres.yml for real with images built on this machine
# (no registry), put it through its failures, check every figure, tear it
# down.
#
#   scripts/compose-demo.sh [--rebuild]
#
# Steps, each printed with its result; the first failure stops the run
# (exit 1) after printing the services' state and recent logs:
#   1. images: scripts/compose-images.sh (PostgreSQL and HAProxy from Debian
#      packages; cached, --rebuild makes them from nothing) and
#      scripts/docker-build-local.sh logagg-compose:local (the logagg image);
#   2. `up -d`, then wait for the publisher demo (5000 events, 1000 of them
#      repeats, through the balancer, --verify) and check its log says
#      "verify ok" with unique_processed +4000, duplicate_dropped +1000;
#   3. /stats through the balancer, three times (round-robin: each replica
#      once): 5000 received, 4000 unique, 1000 duplicates;
#   4. kill replica-2, then publish through the balancer a new load (seed 43:
#      +4000 unique, +1000 duplicates) and the first one again (seed 42: all
#      5000 duplicates), each with --verify; /stats: 8000 unique, 7000
#      duplicates, everything stored once;
#   5. stop PostgreSQL, publish single events through the balancer and
#      directly on replica-1 (503s), start it again and publish until the
#      balancer answers 200; then resend every probe event (as a retrying
#      publisher would) and check /stats counts each once;
#   6. `down -v`.
#
# The Compose project is `logagg-demo` (LOGAGG_COMPOSE_PROJECT), the
# balancer is published on 127.0.0.1:${LOGAGG_PORT:-8080}. Needs root for
# debootstrap (first build only), Docker, docker compose or docker-compose,
# curl and jq. LOGAGG_DEMO_KEEP=1 leaves the stack up on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

rebuild=()
case ${1:-} in
    "") ;;
    --rebuild) rebuild=(--rebuild) ;;
    *)
        echo "usage: $0 [--rebuild]" >&2
        exit 2
        ;;
esac

for tool in docker curl jq; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool is not installed (the demo needs docker, curl and jq)" >&2
        exit 1
    fi
done
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    echo "error: neither \`docker compose\` nor \`docker-compose\` works: install one" >&2
    exit 1
fi

project=${LOGAGG_COMPOSE_PROJECT:-logagg-demo}
export LOGAGG_PORT=${LOGAGG_PORT:-8080}
export LOGAGG_IMAGE=logagg-compose:local
export LOGAGG_POSTGRES_IMAGE=logagg-postgres:local
export LOGAGG_BALANCER_IMAGE=logagg-haproxy:local
compose+=(-p "$project" -f docker-compose.postgres.yml)
url=http://127.0.0.1:$LOGAGG_PORT
scratch=$(mktemp -d)
started=$SECONDS
step_started=$SECONDS
up=false

step() {
    step_started=$SECONDS
    echo
    echo "== $*"
}
ok() { echo "   ok: $* ($((SECONDS - step_started)) s)"; }
note() { echo "   $*"; }
# quote: indent a command's output under the step.
quote() { sed 's/^/   | /'; }

fail() {
    echo "   FAILED: $*" >&2
    if $up; then
        echo "--- services" >&2
        "${compose[@]}" ps >&2 || true
        echo "--- last log lines" >&2
        "${compose[@]}" logs --tail=15 >&2 || true
    fi
    exit 1
}

cleanup() {
    local status=$?
    if $up; then
        if [[ $status != 0 && ${LOGAGG_DEMO_KEEP:-} == 1 ]]; then
            echo "LOGAGG_DEMO_KEEP=1: the stack stays up; remove it with: ${compose[*]} down -v" >&2
        else
            "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
        fi
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

container() { "${compose[@]}" ps -q "$1"; }

# publisher_run SEED: the publisher demo with another seed, through the
# balancer, in a new one-off container; prints its summary.
publisher_run() {
    "${compose[@]}" run --rm --no-deps -T publisher publish --url=http://balancer:8080 \
        --generate=5000 --duplicate-rate=0.2 --seed="$1" --verify 2>&1
}

# expect_verify LOG UNIQUE DUPLICATES: the publisher's --verify line says ok
# with these increments.
expect_verify() {
    grep -qE "^verify +ok: the server's received \+5000, unique_processed \+$2, duplicate_dropped \+$3$" <<<"$1"
}

# expect_stats UNIQUE [DUPLICATES]: /stats through the balancer, three times
# (each replica in turn), says unique_processed UNIQUE (and last_seq the
# same: each stored event has one seq), duplicate_dropped DUPLICATES (when
# given), no conflicts, and received = unique_processed + duplicate_dropped.
expect_stats() {
    local i answer
    for i in 1 2 3; do
        answer=$(curl -fsS --max-time 10 "$url/stats") || fail "GET $url/stats failed"
        note "GET /stats ($i): $(jq -r '"received \(.received), unique_processed \(.unique_processed), duplicate_dropped \(.duplicate_dropped), conflicts \(.conflicts), last_seq \(.last_seq)"' <<<"$answer")"
        jq -e --argjson unique "$1" --argjson duplicates "${2:-null}" \
            '.unique_processed == $unique and .last_seq == $unique and .conflicts == 0
             and ($duplicates == null or .duplicate_dropped == $duplicates)
             and .received == .unique_processed + .duplicate_dropped' <<<"$answer" >/dev/null ||
            fail "expected unique_processed = last_seq = $1${2:+, duplicate_dropped $2}, conflicts 0, received = unique_processed + duplicate_dropped"
    done
}

# probe N: one event (topic demo.probe, id probe-N) through the balancer;
# prints "CODE WHO", WHO saying who answered (a replica: logagg, or the
# balancer itself: haproxy) and with what problem type and Retry-After.
probe() {
    local body=$scratch/body headers=$scratch/headers code who retry
    printf '{"topic":"demo.probe","event_id":"probe-%s","timestamp":"2025-01-01T00:00:00Z","source":"compose-demo","payload":{"n":%s}}\n' \
        "$1" "$1" >>"$scratch/probes.ndjson"
    code=$(curl -s -o "$body" -D "$headers" -w '%{http_code}' --max-time 15 \
        -H 'Content-Type: application/json' --data "$(tail -n 1 "$scratch/probes.ndjson")" \
        "$url/publish" || true)
    if grep -qi '^content-type: application/problem+json' "$headers" 2>/dev/null; then
        # deploy/haproxy.cfg answers in logagg's format too when no replica
        # is healthy; its detail names the load balancer.
        if grep -q 'load balancer' "$body"; then who=haproxy; else who=logagg; fi
        who+=":$(jq -r '.type | sub("urn:logagg:problem:"; "")' "$body")"
        retry=$(grep -i '^retry-after:' "$headers" | tr -d '\r' | cut -d' ' -f2)
        [[ -n $retry ]] && who+=",Retry-After:$retry"
    elif [[ $code == 200 ]]; then
        who=logagg
    elif grep -qi 'no server is available' "$body" 2>/dev/null; then
        who=haproxy:html
    else
        who=other
    fi
    echo "$code $who"
}

# tally FILE: "COUNT× CODE WHO" runs, in order.
tally() { uniq -c "$1" | awk '{ printf "%s%s× %s %s", (NR > 1 ? ", " : ""), $1, $2, $3 } END { print "" }'; }

step "1. images"
scripts/compose-images.sh "${rebuild[@]}" >"$scratch/images.log" 2>&1 ||
    { tail -n 20 "$scratch/images.log" >&2; fail "scripts/compose-images.sh ${rebuild[*]}"; }
grep '^compose-images: ' "$scratch/images.log" | sed 's/^/   /'
scripts/docker-build-local.sh "$LOGAGG_IMAGE" >"$scratch/build.log" 2>&1 ||
    { tail -n 20 "$scratch/build.log" >&2; fail "scripts/docker-build-local.sh $LOGAGG_IMAGE"; }
for image in "$LOGAGG_POSTGRES_IMAGE" "$LOGAGG_BALANCER_IMAGE" "$LOGAGG_IMAGE"; do
    note "$image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
done
ok "images ready"

step "2. ${compose[*]} up -d; the publisher demo"
up=true
"${compose[@]}" up -d --no-build 2>&1 | sed 's/^/   /' || fail "up -d"
publisher=$(container publisher)
[[ -n $publisher ]] || fail "no publisher container after up -d"
status=$(timeout 300 docker wait "$publisher") || fail "the publisher did not finish within 300 s"
log=$(docker logs "$publisher" 2>&1)
sed -n '/^sent /,$p' <<<"$log" | quote
[[ $status == 0 ]] || fail "the publisher exited with $status"
expect_verify "$log" 4000 1000 || fail "the publisher's verify line is not ok with +4000 unique, +1000 duplicates"
ok "publisher exited 0, verify ok"

step "3. /stats through the balancer"
expect_stats 4000 1000
ok "every replica answers the same counters"

step "4. kill replica-2, publish through the balancer"
"${compose[@]}" kill replica-2 2>&1 | sed 's/^/   /'
for run in "43 4000 1000" "42 0 5000"; do
    read -r seed unique duplicates <<<"$run"
    log=$(publisher_run "$seed") || { quote <<<"$log"; fail "publisher --seed=$seed failed"; }
    note "publisher --seed=$seed:"
    sed -n '/^sent /,$p' <<<"$log" | quote
    expect_verify "$log" "$unique" "$duplicates" ||
        fail "seed $seed: expected verify ok with +$unique unique, +$duplicates duplicates"
done
note "replica-2: $(docker inspect -f '{{.State.Status}} (exit {{.State.ExitCode}}, restarts {{.RestartCount}})' "$(container replica-2)")"
expect_stats 8000 7000
ok "with replica-2 dead every event is stored once"

step "5. PostgreSQL down and back"
replica1=$(container replica-1)
"${compose[@]}" stop postgres 2>&1 | sed 's/^/   /'
i=0
deadline=$((SECONDS + 8))
while ((SECONDS < deadline)); do
    i=$((i + 1))
    probe "$i" >>"$scratch/down"
    sleep 0.5
done
note "publishes while it is down: $(tally "$scratch/down")"
grep -q '^503 ' "$scratch/down" || fail "no 503 while PostgreSQL was down"
grep -q '^200 ' "$scratch/down" && fail "a 200 while PostgreSQL was down"
health=$(docker exec "$replica1" /logagg health 2>&1) && fail "replica-1's health said ok: $health"
note "replica-1 /logagg health: $health"
direct=$(printf '{"topic":"demo.probe","event_id":"direct","timestamp":"2025-01-01T00:00:00Z","source":"compose-demo","payload":{}}\n' |
    docker exec -i "$replica1" /logagg publish --url=http://127.0.0.1:8080 --max-attempts=1 - 2>&1) &&
    fail "a publish straight to replica-1 succeeded: $direct"
note "publish straight to replica-1: $(grep -m1 -iE '503|error' <<<"$direct" || tail -n 1 <<<"$direct")"
"${compose[@]}" start postgres 2>&1 | sed 's/^/   /'
restarted=$SECONDS
deadline=$((SECONDS + 90))
while ((SECONDS < deadline)); do
    i=$((i + 1))
    answer=$(probe "$i")
    echo "$answer" >>"$scratch/up"
    [[ $answer == 200* ]] && break
    sleep 0.5
done
note "publishes after start: $(tally "$scratch/up")"
[[ $answer == 200* ]] || fail "no 200 within 90 s of starting PostgreSQL again"
note "first 200 after $((SECONDS - restarted)) s"
for replica in replica-1 replica-3; do
    until health=$(docker exec "$(container "$replica")" /logagg health 2>&1); do
        ((SECONDS < deadline)) || fail "$replica did not turn healthy: $health"
        sleep 1
    done
    note "$replica /logagg health: $health"
done
# The probes that got a 503 were not stored; a publisher retries them.
answer=$(curl -fsS --max-time 30 -H 'Content-Type: application/x-ndjson' \
    --data-binary "@$scratch/probes.ndjson" "$url/publish") || fail "resending the $i probes failed"
note "resend of all $i probes: $answer"
expect_stats $((8000 + i))
ok "the replicas recovered by themselves; every probe stored once"

step "6. ${compose[*]} down -v"
up=false
"${compose[@]}" down -v --remove-orphans 2>&1 | sed 's/^/   /' || fail "down -v"
left=$(docker ps -aq --filter "label=com.docker.compose.project=$project")
[[ -z $left ]] || fail "containers left behind: $left"
ok "removed"

echo
echo "compose demo passed in $((SECONDS - started)) s"
