#!/usr/bin/env bash
# Create .venv and install DataPipe into it (pass `test` to add what the tests need).
#
# Works on a fresh Debian 12 with only its python3: Debian's python3 refuses `pip install`
# outside a virtual environment (PEP 668), so uv is installed inside .venv when it is not
# already on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-}"
if command -v uv >/dev/null 2>&1; then
    uv=uv
    [ -x .venv/bin/python ] || uv venv --quiet --python 3.11 .venv
else
    if [ ! -x .venv/bin/python ]; then
        # Debian ships the venv module (with ensurepip) as its own package.
        if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        fi
        python3 -m venv .venv
    fi
    [ -x .venv/bin/uv ] || .venv/bin/python -m pip install --quiet --disable-pip-version-check uv
    uv=.venv/bin/uv
fi
# The versions pinned in uv.lock (as constraints), so CI, a laptop and the deploy/Dockerfile
# image all run what was tested; `uv lock` after changing pyproject.toml's dependencies.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$uv" export --quiet --frozen --all-extras --no-hashes --no-emit-project \
    --format requirements-txt --output-file "$constraints"
# Compiled bytecode: every Dagster process starts faster, even with PYTHONDONTWRITEBYTECODE set.
VIRTUAL_ENV="$PWD/.venv" "$uv" pip install --quiet --compile-bytecode \
    --constraints "$constraints" -e ".${extras:+[$extras]}"
