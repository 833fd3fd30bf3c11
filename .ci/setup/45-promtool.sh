# promtool (Debian's `prometheus` package), for the test in
# tests/suite/metrics.rs that runs `promtool check metrics` on a live
# server's /metrics. Only the binary is used, never the service.
if ! [ -x /usr/bin/promtool ]; then
    apt-get update -qq
    # A policy-rc.d that says no keeps the package from starting the
    # Prometheus service; one that is already there is left as it is.
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
