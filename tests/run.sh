#!/usr/bin/env bash
# Install what the tests need and run the whole suite: lint, Dagster's own definition
# check, then pytest (which starts PostgreSQL and an S3 server on 127.0.0.1 itself).
set -euo pipefail
cd "$(dirname "$0")/.."

# Real servers the tests start themselves (PostgreSQL, MariaDB, Redis for the Celery
# executor) and the browser the UI test drives, all from Debian's packages.
missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
command -v mariadbd >/dev/null 2>&1 || missing+=(mariadb-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
bash deploy/install.sh test

.venv/bin/ruff check .
.venv/bin/ruff format --check .
DAGSTER_HOME="$(mktemp -d)" DATAPIPE_STAGING_URL="$(mktemp -d)" \
    .venv/bin/dagster definitions validate -m datapipe_assets.definitions
.venv/bin/pytest "$@"
