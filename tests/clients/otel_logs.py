"""Logs through the OpenTelemetry Python SDK and its OTLP/HTTP exporter.

    python otel_logs.py ENDPOINT {protobuf|json} RUN COUNT

Sends COUNT records through Python's `logging`, bridged to the SDK by its
LoggingHandler, batched by BatchLogRecordProcessor and exported by
OTLPLogExporter (protobuf: opentelemetry-exporter-otlp-proto-http; json:
opentelemetry-exporter-otlp-json-http) to ENDPOINT (the full /v1/logs URL).
Prints one JSON object: the records as logged, and what the exporter said
(its retries and failures, from its own log). Exits 1 when an export failed.
"""

import json
import logging
import sys
import warnings

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource


class Recorder(logging.Handler):
    """Keeps what the exporter logs about its attempts."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.retries = 0
        self.failures = []

    def emit(self, record):
        message = record.getMessage()
        if "retrying" in message:
            self.retries += 1
        elif record.levelno >= logging.ERROR:
            self.failures.append(message)


def exporter(endpoint, protocol):
    if protocol == "protobuf":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    elif protocol == "json":
        from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter
    else:
        raise SystemExit(f"unknown protocol {protocol!r}")
    return OTLPLogExporter(endpoint=endpoint, timeout=20)


def main():
    endpoint, protocol, run, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    warnings.simplefilter("ignore", DeprecationWarning)
    recorder = Recorder()
    sdk_log = logging.getLogger("opentelemetry")
    sdk_log.addHandler(recorder)
    sdk_log.propagate = False

    provider = LoggerProvider(
        resource=Resource.create({"service.name": f"otel {protocol}", "run": run})
    )
    provider.add_log_record_processor(
        BatchLogRecordProcessor(exporter(endpoint, protocol), max_export_batch_size=50)
    )
    app = logging.getLogger(f"app.{protocol}")
    app.setLevel(logging.DEBUG)
    app.propagate = False
    app.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))

    logged = []
    for i in range(count):
        message = f"{run} record {i}"
        extra = {
            "seq": i,
            "ratio": i / 4,
            "ok": i % 2 == 0,
            "tags": ["a", f"t{i}"],
            "nothing": float("nan") if i == 0 else 0.5,
        }
        level = logging.WARNING if i % 3 == 0 else logging.INFO
        app.log(level, message, extra=extra)
        logged.append({"message": message, "level": logging.getLevelName(level), "seq": i})

    flushed = provider.force_flush(30_000)
    provider.shutdown()
    print(json.dumps({
        "logged": logged,
        "flushed": flushed,
        "retries": recorder.retries,
        "failures": recorder.failures,
    }))
    sys.exit(0 if flushed and not recorder.failures else 1)


if __name__ == "__main__":
    main()
