#!/usr/bin/env bash
# The whole test suite: creates or reuses .venv with the test extras, then runs pytest.
# Extra arguments go to pytest (e.g. ./launch/test.sh tests/test_llm.py -k cache).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" test
export JAX_PLATFORMS=cpu
# The whole suite runs in TEST_WORKERS processes (pytest-xdist, default 2; 0 = in this process),
# a file's tests in one worker (module fixtures build once): most of its time is XLA compiling,
# one core per compile. Named tests run in this process unless TEST_WORKERS is set.
if [ $# -eq 0 ]; then
  set -- tests
  WORKERS="${TEST_WORKERS:-2}"
else
  WORKERS="${TEST_WORKERS:-0}"
fi
python -m pytest -q -p no:cacheprovider --durations=15 -n "$WORKERS" --dist loadfile "$@"
