#!/bin/sh
# Prometheus server and promtool for the monitoring tests (monitoring/, tests/e2e/test_prometheus_e2e.py).
# Installs Debian's `prometheus` package (it ships promtool) with apt-get, only when prometheus or
# promtool is missing from PATH. The package's own service is not needed: the tests start their own
# Prometheus on a free loopback port, so the service is stopped and disabled where systemd runs.
set -eu

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "prometheus and promtool found ($(command -v prometheus)): nothing to install."
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "No apt-get here: install Prometheus 2.x (prometheus and promtool on PATH) yourself, then run make again." >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "Installing prometheus (with promtool) with apt-get ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
prometheus --version 2>&1 | head -n 1
promtool --version 2>&1 | head -n 1
