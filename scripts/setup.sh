#!/usr/bin/env bash
# Create .venv (Python 3.11+) and install voicelog into it; --dev adds the test tools. Safe to re-run.
# usage: scripts/setup.sh          voicelog and what it needs to run
#        scripts/setup.sh --dev    the same plus pytest, hypothesis, the MariaDB clients and ruff
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") extras="" ;;
  --dev) extras="[dev]" ;;
  *) echo "usage: scripts/setup.sh [--dev]" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "voicelog needs Python 3.11 or newer ($PYTHON is older; set PYTHON=...)" >&2; exit 2; }
  "$PYTHON" -m venv .venv
fi
# setuptools announces every editable install that uses an import finder (ours: the repository is
# installed as the `voicelog` namespace) with an "InformationOnly" warning; there is nothing to act on.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore:Editable installation}"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
echo "voicelog is installed in .venv${extras:+ with the test tools} (.venv/bin/voicelog --help)"
