# Sourced by the launch scripts: create or reuse .venv and install the project with the given
# extras ("" or "test"). Re-installs only when setup.py changed since the last install.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x "$REPO/.venv/bin/python" ]; then
  echo "[venv] creating $REPO/.venv with $($PY --version)"
  "$PY" -m venv "$REPO/.venv"
fi
# shellcheck disable=SC1091
source "$REPO/.venv/bin/activate"
STAMP="$REPO/.venv/.installed-${EXTRAS:-base}"
if [ ! -f "$STAMP" ] || [ "$REPO/setup.py" -nt "$STAMP" ]; then
  echo "[venv] installing lmgendrive-jax${EXTRAS:+[$EXTRAS]} (first run takes a few minutes)"
  python -m pip install -q --upgrade pip
  # torch first and pinned, so nothing after it can pull a CUDA build.
  if [ "$EXTRAS" = "test" ]; then python -m pip install -q "torch==2.13.0"; fi
  python -m pip install -q -e "$REPO${EXTRAS:+[$EXTRAS]}"
  touch "$STAMP"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
