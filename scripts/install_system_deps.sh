#!/bin/sh
# System packages ecco-serve needs outside the Python venv: a Java 17+ runtime for TorchServe's frontend.
# Installs openjdk-17-jre-headless with apt-get only when no Java >= 17 is on PATH (or in $JAVA_HOME).
set -eu

java_major() {
    # "openjdk version "17.0.15" ..." / "java version "1.8.0_392"" -> 17 / 8
    "$1" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -n 1 \
        | awk -F. '{ if ($1 == 1) print $2; else print $1 }'
}

java_bin=java
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    java_bin="$JAVA_HOME/bin/java"
fi
if command -v "$java_bin" >/dev/null 2>&1; then
    major=$(java_major "$java_bin")
    if [ "${major:-0}" -ge 17 ]; then
        echo "Java $major found ($(command -v "$java_bin")): nothing to install."
        exit 0
    fi
    echo "Java ${major:-unknown} found; TorchServe 0.12 needs Java 17 or newer."
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "No apt-get here: install a Java 17 runtime yourself (e.g. OpenJDK 17), then run make again." >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
echo "Installing openjdk-17-jre-headless with apt-get ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless
java -version
