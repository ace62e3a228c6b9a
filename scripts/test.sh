#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine and run it:
# system packages (redis-server), a virtualenv with eventapp and its dev extras (which bring the
# embedded Kafka-protocol test broker), then ruff, mypy and pytest. Extra arguments go to pytest.
#
# Without arguments pytest runs `-m "not slow"` in $EVENTAPP_TEST_WORKERS (default 2) pytest-xdist
# worker processes, each with its own broker, Redis, S3 server and temp dir (tests/conftest.py);
# EVENTAPP_TEST_WORKERS=0 runs them in one process. Arguments replace that (no -n unless given).
# Slow soak, chaos and scale/memory tests are marked `slow` and deselected; run them (in one
# process, as their timings and memory bounds need) with:
# scripts/test.sh -m slow
#
# --under-load (anywhere among the arguments) runs pytest beside one busy-looping process per core
# (nproc), to check that the suite holds on a saturated machine; the busy loops end with the script.
set -euo pipefail
cd "$(dirname "$0")/.."

under_load=0
args=()
for arg in "$@"; do
    if [ "$arg" = "--under-load" ]; then
        under_load=1
    else
        args+=("$arg")
    fi
done
set -- ${args[@]+"${args[@]}"}

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "eventapp needs Python >= 3.11"'

bash scripts/install-test-deps.sh

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy (strict, eventapp/)"
.venv/bin/mypy
echo "== pytest"
# Every Python process of the run (the xdist workers and the hundreds of job workers the tests start)
# reads compiled bytecode from one cache outside the source tree: with PYTHONDONTWRITEBYTECODE set
# (as on this machine) each would compile eventapp again, ~0.3 s of CPU per process.
export PYTHONPYCACHEPREFIX="${PYTHONPYCACHEPREFIX:-$PWD/.venv/pycache}"
unset PYTHONDONTWRITEBYTECODE
if [ "$#" -eq 0 ]; then
    set -- -m "not slow" -n "${EVENTAPP_TEST_WORKERS:-2}"
fi
if [ "$under_load" -eq 0 ]; then
    exec .venv/bin/pytest "$@"
fi

# Each hog busy-loops and checks every ~100k iterations that this script still runs, so a hog
# left behind (the script killed with SIGKILL) ends by itself.
hogs=()
stop_hogs() {
    if [ "${#hogs[@]}" -gt 0 ]; then
        kill "${hogs[@]}" 2>/dev/null || true
    fi
}
trap stop_hogs EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
cores="$(nproc)"
for _ in $(seq "$cores"); do
    sh -c 'while kill -0 "$1" 2>/dev/null; do i=0; while [ "$i" -lt 100000 ]; do i=$((i + 1)); done; done' \
        hog "$$" &
    hogs+=("$!")
done
echo "== under load: $cores busy-looping processes (one per core) beside pytest"
started="$(date +%s)"
status=0
.venv/bin/pytest "$@" || status=$?
echo "== under load: pytest exit $status after $(($(date +%s) - started)) s; load average: $(cat /proc/loadavg)"
exit "$status"
