# Sourced by the scripts: creates .venv in the repository root when absent and installs the
# pinned requirements once per version of tests/requirements.txt. Sets VENV_PY.
python_bin=${PYTHON:-python3}
"$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  { echo "error: Python 3.10 or newer is needed ($python_bin is $("$python_bin" --version 2>&1))" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
VENV_PY=$PWD/.venv/bin/python
stamp=.venv/.requirements-$(sha256sum tests/requirements.txt | cut -c1-16)
if [ ! -f "$stamp" ]; then
  "$VENV_PY" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
  touch "$stamp"
fi
