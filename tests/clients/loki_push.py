"""Logs through loki-logger-handler, a Loki client for Python's `logging`.

    python loki_push.py URL {plain|gzip} RUN COUNT

Sends COUNT records through a LokiLoggerHandler (JSON push bodies, gzip-
compressed with `gzip`, structured metadata on) to URL (the full
/loki/api/v1/push URL), in one push at the end. The handler does not retry
by itself; like a user who needs retries, this mounts urllib3's Retry on
the handler's requests session (429/502/503/504 and connection errors,
honouring Retry-After). Prints one JSON object: the records as logged, and
whether the push failed. Exits 1 when it did.
"""

import json
import logging
import sys

from loki_logger_handler.loki_logger_handler import LokiLoggerHandler
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


def main():
    url, mode, run, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    handler = LokiLoggerHandler(
        url=url,
        labels={"service_name": f"loki {mode}", "run": run},
        # Flushed explicitly below, in one push.
        timeout=3600,
        compressed=mode == "gzip",
        enable_structured_loki_metadata=True,
        loki_metadata={"run": run},
        loki_metadata_keys=["seq"],
        enable_self_errors=True,
    )
    retry = Retry(
        total=5,
        backoff_factor=0.2,
        status_forcelist=[429, 502, 503, 504],
        allowed_methods=None,
        respect_retry_after_header=True,
    )
    handler.request.session.mount("http://", HTTPAdapter(max_retries=retry))

    app = logging.getLogger(f"app.loki.{mode}")
    app.setLevel(logging.DEBUG)
    app.propagate = False
    app.addHandler(handler)

    logged = []
    for i in range(count):
        message = f"{run} line {i}"
        level = logging.ERROR if i % 4 == 0 else logging.INFO
        app.log(level, message, extra={"seq": str(i)})
        logged.append({"message": message, "level": logging.getLevelName(level), "seq": i})

    handler._send()  # what the handler's own flush thread and atexit hook call
    print(json.dumps({"logged": logged, "failed": handler.error}))
    sys.exit(1 if handler.error else 0)


if __name__ == "__main__":
    main()
