#!/usr/bin/env bash
# Install Apache Flink (PyFlink) for the differential tests (tests/differential, marked `slow`), in
# a virtualenv of its own so that the main dev install (.venv) stays light. Idempotent: when the venv
# already holds the pinned version and Java is there, it only says so (well under a second).
#
#   bash scripts/install-flink.sh          # creates/updates .venv-flink
#
# Environment:
#   EVENTAPP_FLINK_VENV     where the venv goes (default: <repo>/.venv-flink, gitignored)
#   EVENTAPP_FLINK_VERSION  the apache-flink version to install (default: 2.3.0)
#   PYTHON                  the interpreter that creates the venv (default: python3; PyFlink 2.3
#                           ships wheels for CPython 3.9-3.12)
#
# Needs a Java runtime 11, 17 or 21 (`java` on PATH or $JAVA_HOME); when none is found it installs
# Debian's openjdk-17-jre-headless with apt-get (as root, or with sudo -n). The last line printed
# on success is the venv's python, which the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${EVENTAPP_FLINK_VENV:-$PWD/.venv-flink}"
VERSION="${EVENTAPP_FLINK_VERSION:-2.3.0}"
PYTHON="${PYTHON:-python3}"

log() { printf 'install-flink: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

java_major() {
    local java="java"
    if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
        java="$JAVA_HOME/bin/java"
    fi
    command -v "$java" >/dev/null 2>&1 || return 1
    # `openjdk version "17.0.15" 2025-04-15` -> 17 (and "1.8.0_402" -> 1)
    "$java" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -n1
}

# --- Java --------------------------------------------------------------------------------------------
major="$(java_major || true)"
if [ -z "$major" ]; then
    command -v apt-get >/dev/null 2>&1 \
        || die "no Java runtime found (PyFlink needs Java 11, 17 or 21) and apt-get is not available: install one and put java on PATH or set JAVA_HOME"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "no Java runtime found; installing one needs root: re-run as root or install sudo"
        SUDO=(sudo -n)
    fi
    log "no Java runtime found: installing openjdk-17-jre-headless with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -q </dev/null || die "apt-get update failed (network? permissions?)"
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends openjdk-17-jre-headless </dev/null \
        || die "apt-get install openjdk-17-jre-headless failed"
    major="$(java_major || true)"
    [ -n "$major" ] || die "java still not found after installing openjdk-17-jre-headless"
fi
case "$major" in
    11 | 17 | 21) ;;
    *) die "Java $major found; PyFlink $VERSION needs Java 11, 17 or 21 (set JAVA_HOME to one)" ;;
esac

# --- the venv ----------------------------------------------------------------------------------------
installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("apache-flink"))' 2>/dev/null
}

if [ -x "$VENV/bin/python" ] && [ "$(installed_version || true)" = "$VERSION" ]; then
    log "apache-flink $VERSION already installed in $VENV (Java $major)"
    echo "$VENV/bin/python"
    exit 0
fi

"$PYTHON" -c 'import sys; v = sys.version_info[:2]; assert (3, 9) <= v <= (3, 12), f"PyFlink needs CPython 3.9-3.12, {sys.executable} is {v}"' \
    || die "set PYTHON to a CPython 3.9-3.12 interpreter"
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV" || die "could not create the venv $VENV"
fi
log "installing apache-flink==$VERSION into $VENV (a few hundred MB; takes a few minutes the first time)"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
    || die "could not upgrade pip in $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "apache-flink==$VERSION" \
    || die "pip install apache-flink==$VERSION failed (see pip's output above)"
[ "$(installed_version || true)" = "$VERSION" ] || die "apache-flink $VERSION is not importable from $VENV after the install"
"$VENV/bin/python" -c 'import pyflink.datastream' || die "pyflink.datastream does not import in $VENV"
log "installed apache-flink $VERSION in $VENV (Java $major)"
echo "$VENV/bin/python"
