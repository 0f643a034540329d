#!/usr/bin/env bash
# Make sure HAProxy is on the machine: `make run` with GATEWAYS above 1 serves PORT through
# it (figranium_devstack.balancer), and the balancer's integration tests start it. The
# distribution package when we may install it; otherwise a clear message, and nothing fails
# until a cluster is asked for.
set -euo pipefail

if command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]]; then
    echo "haproxy: using $(command -v haproxy || echo /usr/sbin/haproxy)"
elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "haproxy: installing the distribution package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy
else
    echo "haproxy: not found; install it (e.g. apt-get install haproxy) to run several gateways"
fi
