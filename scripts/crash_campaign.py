#!/usr/bin/env python3
"""The crash campaign: publish without pause while the server is SIGKILLed
at random moments, then check that nothing acknowledged was lost and nothing
was stored twice. Run it through scripts/crash-campaign.sh, which builds the
binary; `--help` lists the knobs.

Publishers are threads of this process, which outlives every kill, so what
they sent and what was acknowledged is known exactly (and also logged to
acked.ndjson in the work directory). Each publisher loops:

- a new batch of 1-100 events (ids never used before), a third of them with
  byte-identical copies of some of their own events inside (in-batch
  duplicates);
- or, one time in six, a batch it already got a 200 for, re-sent byte for
  byte (a deliberately repeated batch: all of it must come back duplicate).

Each request is retried, with the same bytes, until it gets a 200: connection
errors and timeouts (the server is dead or starting) and 5xx are retried
after a short pause; anything else is a failure of the campaign.

The killer waits a random time after the server is healthy (uniform, up to
--kill-after-max), SIGKILLs it, starts it again on the same data directory
and port, and repeats N times. At the end the publishers finish their
requests (each until acknowledged), the server is stopped with SIGTERM
(exit code 0 expected) and started once more, and the checks run:

1. every acknowledged event is stored, exactly once, with the content sent;
2. nothing is stored that was not sent;
3. the counters are exact: unique_processed = stored events = last_seq (no
   gaps in the embedded store), received = unique_processed +
   duplicate_dropped, no conflicts, per-topic counts and last seq agree
   with the events, and received lies between the events in acknowledged
   requests and the events in all attempts;
4. a re-sent batch that had been acknowledged before got 0 unique;
5. after a last SIGTERM, `PRAGMA integrity_check` on the database says ok,
   and the counters table agrees with a count of the events table.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

TOPICS = [f"crash.t{i}" for i in range(5)]


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Server:
    """The logagg server process, restarted on one data dir and port."""

    def __init__(self, binary, data_dir, port, log_path):
        self.binary, self.data_dir, self.port = binary, data_dir, port
        self.log = open(log_path, "ab")
        self.process = None
        self.starts = 0

    def start(self, timeout=30.0):
        self.process = subprocess.Popen(
            [self.binary, "serve", "--listen", f"127.0.0.1:{self.port}",
             "--data-dir", self.data_dir],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            env={**os.environ, "RUST_LOG": "warn"})
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited with {self.process.returncode} on start "
                                 f"#{self.starts}; see its log")
            try:
                status, _ = request(self.port, "GET", "/health", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.005)
        raise SystemExit(f"server did not become healthy within {timeout}s")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout=60.0):
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def request(port, method, path, body=None, timeout=10.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Ledger:
    """What the publishers sent and what was acknowledged, shared by threads."""

    def __init__(self, path):
        self.lock = threading.Lock()
        self.sent = {}          # key -> event, for every event ever sent
        self.acked = set()      # keys in acknowledged requests
        self.requests = 0       # acknowledged requests
        self.repeats = 0        # of which deliberately repeated batches
        self.attempts = 0       # HTTP attempts, retries included
        self.retries = 0
        self.events_acked = 0   # events in acknowledged requests (with copies)
        self.events_attempted = 0
        self.in_batch_copies = 0
        self.failures = []
        self.log = open(path, "a")

    def record_sent(self, events):
        with self.lock:
            for event in events:
                self.sent[(event["topic"], event["event_id"])] = event

    def record_ack(self, events, receipt, repeat):
        with self.lock:
            self.requests += 1
            self.repeats += repeat
            self.events_acked += len(events)
            self.acked.update((e["topic"], e["event_id"]) for e in events)
            self.log.write(json.dumps({"receipt": receipt, "repeat": repeat,
                                       "keys": [[e["topic"], e["event_id"]] for e in events]}) + "\n")


def publisher(number, port, ledger, stop, seed, batch_max):
    rng = random.Random(seed)
    acknowledged_bodies = []
    next_id = 0
    while not stop.is_set() and not ledger.failures:
        repeat = bool(acknowledged_bodies) and rng.random() < 1 / 6
        if repeat:
            events, body = rng.choice(acknowledged_bodies)
        else:
            events = []
            for _ in range(rng.randint(1, batch_max)):
                events.append({
                    "topic": rng.choice(TOPICS),
                    "event_id": f"p{number}-{next_id}",
                    "timestamp": "2025-01-01T00:00:00Z",
                    "source": f"publisher-{number}",
                    "payload": {"n": next_id, "big": 2**70 + next_id, "pad": "x" * rng.randint(0, 200)},
                })
                next_id += 1
            if rng.random() < 1 / 3:
                copies = [dict(rng.choice(events)) for _ in range(rng.randint(1, 5))]
                events = events + copies
                rng.shuffle(events)
                with ledger.lock:
                    ledger.in_batch_copies += len(copies)
            body = json.dumps(events).encode()
            ledger.record_sent(events)
        receipt = send_until_acknowledged(port, body, len(events), ledger, rng)
        if receipt is None:
            return
        distinct = len({(e["topic"], e["event_id"]) for e in events})
        problems = []
        if receipt.get("received") != len(events):
            problems.append("received is not the batch size")
        if receipt.get("unique", 0) + receipt.get("duplicates", 0) != len(events):
            problems.append("unique + duplicates is not the batch size")
        if receipt.get("unique", 0) > distinct:
            problems.append("more unique than distinct keys")
        if receipt.get("conflicts") != 0:
            problems.append("conflicts in byte-identical copies")
        if repeat and receipt.get("unique") != 0:
            problems.append("an acknowledged batch, re-sent, stored something again")
        if problems:
            with ledger.lock:
                ledger.failures.append(f"publisher {number}: {', '.join(problems)}: {receipt}")
            return
        ledger.record_ack(events, receipt, repeat)
        if not repeat:
            acknowledged_bodies.append((events, body))


def send_until_acknowledged(port, body, count, ledger, rng):
    """Sends `body` until a 200; the receipt, or None after a fatal answer."""
    pause = 0.005
    while True:
        with ledger.lock:
            ledger.attempts += 1
            ledger.events_attempted += count
        try:
            status, answer = request(port, "POST", "/publish", body, timeout=30.0)
        except (OSError, http.client.HTTPException):
            status, answer = None, b""
        if status == 200:
            return json.loads(answer)
        if status is not None and status < 500:
            with ledger.lock:
                ledger.failures.append(f"publish answered {status}: {answer[:300]!r}")
            return None
        with ledger.lock:
            ledger.retries += 1
        time.sleep(pause * (1 + rng.random()))
        pause = min(pause * 2, 0.1)


def read_all_events(port):
    events, after = [], 0
    while True:
        status, body = request(port, "GET", f"/events?limit=10000&after={after}", timeout=60.0)
        assert status == 200, body
        page = json.loads(body)
        events.extend(page["events"])
        if page["next_after"] is None:
            return events
        after = page["next_after"]


def check(port, ledger, data_dir):
    """Every check of the module docs; a list of what failed."""
    failed = list(ledger.failures)
    stored = read_all_events(port)
    keys = [(e["topic"], e["event_id"]) for e in stored]
    seen = set()
    twice = [k for k in keys if k in seen or seen.add(k)]
    if twice:
        failed.append(f"{len(twice)} keys stored more than once, e.g. {twice[:3]}")
    lost = ledger.acked - seen
    if lost:
        failed.append(f"{len(lost)} acknowledged events are missing, e.g. {sorted(lost)[:3]}")
    unsent = seen - set(ledger.sent)
    if unsent:
        failed.append(f"{len(unsent)} stored events were never sent, e.g. {sorted(unsent)[:3]}")
    changed = [e for e in stored
               if (e["topic"], e["event_id"]) in ledger.sent
               and any(e[f] != ledger.sent[(e["topic"], e["event_id"])][f]
                       for f in ("timestamp", "source", "payload"))]
    if changed:
        failed.append(f"{len(changed)} stored events differ from what was sent")
    seqs = [e["seq"] for e in stored]
    if seqs != list(range(1, len(stored) + 1)):
        failed.append("seq is not 1..n in order")

    status, body = request(port, "GET", "/stats")
    stats = json.loads(body)
    expected = {
        "unique_processed": len(stored),
        "last_seq": len(stored),
        "duplicate_dropped": stats["received"] - len(stored),
        "conflicts": 0,
    }
    for name, value in expected.items():
        if stats[name] != value:
            failed.append(f"/stats {name} is {stats[name]}, expected {value}")
    if not ledger.events_acked <= stats["received"] <= ledger.events_attempted:
        failed.append(f"received {stats['received']} is outside "
                      f"[{ledger.events_acked}, {ledger.events_attempted}]")
    per_topic = {}
    for e in stored:
        count, _ = per_topic.get(e["topic"], (0, 0))
        per_topic[e["topic"]] = (count + 1, e["seq"])
    status, body = request(port, "GET", "/topics")
    topics = {t["topic"]: (t["events"], t["last_seq"]) for t in json.loads(body)["topics"]}
    if topics != per_topic:
        failed.append(f"/topics {topics} disagrees with the events {per_topic}")
    return failed, stats, len(stored)


def integrity(data_dir):
    """PRAGMA integrity_check and the counters against the events table,
    through the sqlite3 CLI on the stopped server's database."""
    cli = shutil.which("sqlite3")
    if cli is None:
        return ["the sqlite3 command is missing (apt-get install sqlite3)"]
    database = os.path.join(data_dir, "logagg.db")
    out = subprocess.run(
        [cli, database, "PRAGMA integrity_check;",
         "SELECT (SELECT count(*) FROM events) = unique_processed"
         " AND (SELECT coalesce(sum(events), 0) FROM topics) = unique_processed"
         " AND received = unique_processed + duplicate_dropped FROM counters;"],
        capture_output=True, text=True, check=False)
    lines = out.stdout.split()
    if out.returncode != 0 or lines != ["ok", "1"]:
        return [f"integrity check: {out.stdout.strip()} {out.stderr.strip()}"]
    return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kills", type=int, help="SIGKILLs to deliver")
    parser.add_argument("--bin", required=True, help="the logagg binary")
    parser.add_argument("--port", type=int, default=18550)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--batch-max", type=int, default=100, help="new events per batch, at most")
    parser.add_argument("--kill-after-max", type=float, default=0.3,
                        help="longest wait, in seconds, between healthy and SIGKILL")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--work-dir", help="where the data and logs go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    work = args.work_dir or tempfile.mkdtemp(prefix="logagg-crash-")
    data_dir = os.path.join(work, "data")
    log(f"crash campaign: {args.kills} kills, seed {seed}, work dir {work}")
    server = Server(args.bin, data_dir, args.port, os.path.join(work, "server.log"))
    ledger = Ledger(os.path.join(work, "acked.ndjson"))
    started = time.monotonic()
    server.start()
    stop = threading.Event()
    threads = [threading.Thread(target=publisher, daemon=True,
                                args=(n, args.port, ledger, stop, rng.randrange(2**32), args.batch_max))
               for n in range(args.publishers)]
    for thread in threads:
        thread.start()

    kills = 0
    while kills < args.kills and not ledger.failures:
        time.sleep(rng.uniform(0, args.kill_after_max))
        server.kill()
        kills += 1
        server.start()
        if kills % 100 == 0:
            log(f"{kills} kills, {ledger.requests} requests and {ledger.events_acked} events acknowledged")

    stop.set()
    for thread in threads:
        thread.join(120)
    code = server.terminate()
    failed = [] if code == 0 else [f"SIGTERM exit code {code}"]
    server.start()
    more, stats, stored = check(args.port, ledger, data_dir)
    failed += more
    code = server.terminate()
    if code != 0:
        failed.append(f"final SIGTERM exit code {code}")
    failed += integrity(data_dir)
    elapsed = time.monotonic() - started

    summary = {
        "kills": kills,
        "starts": server.starts,
        "seconds": round(elapsed, 1),
        "requests_acknowledged": ledger.requests,
        "repeated_batches": ledger.repeats,
        "events_acknowledged": ledger.events_acked,
        "in_batch_copies": ledger.in_batch_copies,
        "attempts": ledger.attempts,
        "retries": ledger.retries,
        "events_sent_distinct": len(ledger.sent),
        "events_stored": stored,
        "received": stats["received"],
        "duplicate_dropped": stats["duplicate_dropped"],
        "seed": seed,
        "ok": not failed,
    }
    print(json.dumps(summary))
    if failed:
        for failure in failed:
            log(f"FAILED: {failure}")
        log(f"kept {work} for inspection")
        sys.exit(1)
    if not args.keep and not args.work_dir:
        shutil.rmtree(work)
    log(f"ok: {kills} kills in {elapsed:.0f} s; {ledger.events_acked} events acknowledged, "
        f"{stored} stored once each")


if __name__ == "__main__":
    main()
