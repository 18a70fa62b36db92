#!/usr/bin/env bash
# The embedded default, end to end: install, run every example pipeline from the shipped
# sample CSVs through its transforms into .datapipe/warehouse.duckdb, then open the Dagster
# UI on http://127.0.0.1:3000 with those runs and materializations in it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install.sh
export DAGSTER_HOME="$PWD/.dagster"
mkdir -p "$DAGSTER_HOME"
cp -n dagster.yaml "$DAGSTER_HOME/dagster.yaml" 2>/dev/null || true

.venv/bin/datapipe validate
.venv/bin/datapipe run --all
# The UI runs in the instance's own folder: started in the project, Dagster warns that the
# project's dagster.yaml (the template DAGSTER_HOME's copy is made from) is not the one used.
project="$PWD"
cd "$DAGSTER_HOME"
# dagster dev still works, and is what the README and the deployment notes name.
export PYTHONWARNINGS="ignore:Function \`dev_command\` is superseded"
exec "$project/.venv/bin/dagster" dev -w "$project/workspace.yaml" -h 127.0.0.1 -p 3000
