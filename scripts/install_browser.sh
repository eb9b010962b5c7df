#!/bin/sh
# The browser of the view tests (tests/views): Debian's chromium at /usr/bin/chromium, driven by Playwright
# from PyPI (a dev extra). Installs it with apt-get only when missing; never downloads Playwright's browsers.
set -eu

if [ -x /usr/bin/chromium ]; then
    echo "chromium found (/usr/bin/chromium): nothing to install."
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "No apt-get here: install Chromium at /usr/bin/chromium yourself (the view tests skip without it)." >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "Installing chromium with apt-get ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
/usr/bin/chromium --version
