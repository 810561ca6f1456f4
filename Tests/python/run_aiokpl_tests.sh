#!/bin/sh
# aiokpl 0.2.0's own unit tests for its metrics and sinks, run against kplm.aiokpl (ctest python_aiokpl).
#
# Fetches the aiokpl 0.2.0 sdist from PyPI at test time (checked against its
# sha256; nothing of it is committed), copies tests/test_metrics.py,
# test_sink_memory.py, test_sink_null.py, test_sink_protocol.py and
# conftest.py into a temporary folder with their `from aiokpl.metrics|sinks
# import` lines pointed at kplm.aiokpl, and runs them with pytest (anyio's
# plugin, both backends: asyncio and trio) against this checkout's
# python/kplm and the library in $KPLM_LIBRARY. Every test must pass.
# Exit 77 (skipped) when anyio, trio or pytest is missing.
set -eu
PYTHON=${PYTHON:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SHA256=2a742be6941ce6b5d5235d8c8584293d97aed1682d8f04cb8346e9f7df4c927e

if ! "$PYTHON" -c 'import anyio, trio, pytest' 2>/dev/null; then
    echo "run_aiokpl_tests: anyio, trio and pytest are needed (scripts/bootstrap.sh installs them)" >&2
    exit 77
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kplm-aiokpl-tests.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
printf 'aiokpl==0.2.0 --hash=sha256:%s\n' "$SHA256" > "$WORK/requirements.txt"
"$PYTHON" -m pip download -q --no-deps --no-binary :all: --require-hashes \
    -r "$WORK/requirements.txt" -d "$WORK/dist"
tar xzf "$WORK/dist/aiokpl-0.2.0.tar.gz" -C "$WORK"
SRC="$WORK/aiokpl-0.2.0/tests"
mkdir "$WORK/run" "$WORK/run/tests"
for f in test_metrics.py test_sink_memory.py test_sink_null.py test_sink_protocol.py conftest.py; do
    sed -E 's/^from aiokpl\.(metrics|sinks) import/from kplm.aiokpl.\1 import/' "$SRC/$f" > "$WORK/run/tests/$f"
done
# No import of aiokpl itself may be left.
if grep -nE '^[[:space:]]*(from|import)[[:space:]]+aiokpl' "$WORK/run/tests/"*.py; then
    echo "run_aiokpl_tests: an aiokpl import was not rewritten" >&2
    exit 1
fi
# The sdist's pytest settings (anyio auto mode, warnings are errors).
cat > "$WORK/run/pytest.ini" <<'INI'
[pytest]
anyio_mode = auto
addopts = -ra --strict-markers --strict-config -p no:cacheprovider
filterwarnings = error
INI
rm -rf "$WORK/aiokpl-0.2.0" "$WORK/dist"
cd "$WORK/run"
status=0
PYTHONPATH="$REPO/python${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m pytest tests -v > "$WORK/out.txt" 2>&1 || status=$?
cat "$WORK/out.txt"
asyncio=$(grep -cE '\[[^]]*asyncio[^]]*\] PASSED' "$WORK/out.txt" || true)
trio=$(grep -cE '\[[^]]*trio[^]]*\] PASSED' "$WORK/out.txt" || true)
echo "run_aiokpl_tests: passed under asyncio: $asyncio, under trio: $trio (pytest exit $status)"
exit "$status"
