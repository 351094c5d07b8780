#!/usr/bin/env bash
# The whole test suite: creates or reuses .venv with the test extras, then runs pytest.
# Extra arguments go to pytest (e.g. ./launch/test.sh tests/test_llm.py -k cache).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh" test
export JAX_PLATFORMS=cpu
if [ $# -eq 0 ]; then set -- tests; fi
python -m pytest -q -p no:cacheprovider --durations=15 "$@"
