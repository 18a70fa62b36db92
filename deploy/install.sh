#!/usr/bin/env bash
# Create .venv and install DataPipe into it (pass `test` to add what the tests need).
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
[ -x .venv/bin/python ] || uv venv --quiet --python 3.11 .venv
# Compiled bytecode: every Dagster process starts faster, even with PYTHONDONTWRITEBYTECODE set.
VIRTUAL_ENV="$PWD/.venv" uv pip install --quiet --compile-bytecode -e ".${extras:+[$extras]}"
