#!/usr/bin/env bash
# Everything the test suite needs beyond the Python packages, installed by the project itself
# so a fresh machine (and CI) gets it: nothing here may be assumed to be pre-installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# The real agent CLIs from npm, pinned, cached under ${AGENTWATCH_CACHE:-~/.cache/agentwatch}.
bash scripts/install-agent-clis.sh

# A real Prometheus server and promtool (Debian's package), for the scrape tests. The package's
# own service must not start: tests run their own server on a free loopback port.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    apt_status=0
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus || apt_status=$?
    if [ -n "$created_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ "$apt_status" != 0 ]; then exit "$apt_status"; fi
fi
if [ -e /lib/systemd/system/prometheus.service ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable prometheus >/dev/null 2>&1 || true
    systemctl stop prometheus >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/prometheus ]; then /etc/init.d/prometheus stop >/dev/null 2>&1 || true; fi

# A pinned helm binary for the chart tests (helm lint / helm template).
bash helm/install-helm.sh

# Grafana's schema types and tsc, for the dashboard schema check (tests/test_grafana_dashboards.py).
bash scripts/install-grafana-schema.sh

# A real browser for the console tests: Debian's chromium, driven by PyPI playwright with
# executable_path=/usr/bin/chromium (no `playwright install`, no browser download).
if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq || true
    for attempt in 1 2 3 4 5 6; do
        if DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; then
            break
        fi
        [ "$attempt" = 6 ] && exit 1
        sleep 10  # another apt/dpkg holds the lock
    done
fi
