# Sourced by scripts/smoke and scripts/test: make .venv with harness installed (editable).
#
# torch: a torch the chosen Python already has (a CUDA build on a GPU box) is kept, by
# giving the venv that Python's site-packages; without one, torch==2.13.0 is installed first
# (on the project's CPU machines pip finds the local CPU wheel under that exact pin), so the
# loose `torch>=2.1` of pyproject.toml is already satisfied and pulls nothing more.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=${HARNESS_VENV:-.venv}
EXTRAS=${1:-}

if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "bootstrap: keeping $("$PYTHON" -c 'import torch; print("torch", torch.__version__)') from $PYTHON"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "bootstrap: installing torch==2.13.0"
  "$VENV/bin/python" -m pip install --quiet torch==2.13.0
fi
# Reinstall only when the project's dependencies or the extras asked for change.
stamp="$VENV/.harness-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16) [$EXTRAS]"
if [ ! -f "$stamp" ] || ! grep -qxF -- "$want" "$stamp"; then
  echo "bootstrap: installing harness${EXTRAS:+[$EXTRAS]} into $VENV"
  "$VENV/bin/python" -m pip install --quiet -e ".${EXTRAS:+[$EXTRAS]}"
  echo "$want" >> "$stamp"
fi
