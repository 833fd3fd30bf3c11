# Python clients for tests/suite/clients.rs: the OpenTelemetry SDK with its
# OTLP/HTTP exporters (protobuf and JSON) and a Loki logging handler, pinned
# in tests/clients/requirements.txt, in a venv of their own; and schemathesis,
# which tests/suite/openapi.rs runs against a live server (it finds it in
# the venv's bin/, beside LOGAGG_TEST_PYTHON). Reinstalled only
# when the requirements change. Exports LOGAGG_TEST_PYTHON for the tests.
venv="${LOGAGG_PY_CLIENTS_VENV:-$HOME/.cache/logagg/py-clients}"
requirements=tests/clients/requirements.txt
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi
export LOGAGG_TEST_PYTHON="$venv/bin/python"
