#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment outside the repository and
# run `polyvae demo` from there: the installed package and its package data must suffice.
# Usage: bash .ci/wheel_demo.sh [PYTHON]   (default python3; pip needs a package index)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" .
WHEEL=$(ls "$WORK"/dist/polyvae-*.whl)
# the wheel holds the package and its data, and none of the repository's tools
"$PYTHON" - "$WHEEL" <<'PY'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
assert "polyvae/data/polymer2d.npz" in names, "polymer2d.npz is missing from the wheel"
stray = [n for n in names if n.startswith(("tools/", "data/", "tests/", "polyvae/engines/"))]
stray += [n for n in names if n == "polyvae/simulate.py"]
assert not stray, f"the wheel holds files that are not the package: {stray}"
PY

"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet "$WHEEL"
cd "$WORK"  # outside the repository: nothing of the checkout is importable
"$WORK/venv/bin/python" -c "import polyvae, sys; sys.exit(0 if '/site-packages/' in polyvae.__file__ else f'polyvae imported from {polyvae.__file__}')"
"$WORK/venv/bin/polyvae" demo -o "$WORK/results" > "$WORK/demo.log"
test -s "$WORK/results/summary.json"
test -s "$WORK/results/model.polyvae"
echo "wheel-check: $(basename "$WHEEL") installed in a fresh environment runs polyvae demo"
