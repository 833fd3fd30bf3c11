#!/usr/bin/env python3
"""Opens N idle TCP connections to a logagg server and reports what a new
client gets at once and how long until it is served again (issue 11,
defect 1: 1,100 idle connections used to stop every new client until they
went away). Start the server with a low open-files limit to see the cap
fit it, e.g.:

    bash -c 'ulimit -n 1024; exec logagg serve --listen 127.0.0.1:18080 --idle-timeout 10s' &
    scripts/idle-connections.py 18080 1100
"""
import resource
import socket
import sys
import time
import urllib.error
import urllib.request

port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def health():
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status, answer.headers.get("content-type")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("content-type")
    except OSError as error:
        return repr(error), None


opened = time.monotonic()
idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
print(f"{n} idle connections opened in {time.monotonic() - opened:.1f} s")
print("a new client at once:", health())
time.sleep(0.5)
refused = 0
for connection in idle:
    connection.setblocking(False)
    try:
        if connection.recv(4096).startswith(b"HTTP/1.1 503"):
            refused += 1
    except BlockingIOError:
        pass
print(f"{refused} of them were answered 503 problem+json and closed at once")
while health()[0] != 200:
    time.sleep(0.2)
print(f"a new client is served again {time.monotonic() - opened:.1f} s after the first was opened")
