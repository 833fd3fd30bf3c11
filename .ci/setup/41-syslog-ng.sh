# syslog-ng with its http() destination, for the syslog-ng tests in
# tests/suite/clients.rs (they run their own syslog-ng as a child process,
# never the system service).
if ! [ -x /usr/sbin/syslog-ng ] || ! ls /usr/lib/syslog-ng/*/libhttp.so >/dev/null 2>&1; then
    apt-get update -qq
    # A policy-rc.d that says no keeps the package from starting the
    # system service; one that is already there is left as it is.
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        syslog-ng-core syslog-ng-mod-http
    [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
