"""The `datapipe` command: validate, preview, run, backfill, status, rejects, usage, discover,
check, secrets and gc."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from connectors.base import ConnectorError
from datapipe_assets.cli.common import CommandError, cli_project, iso_date, month, positive_int
from datapipe_assets.pipeline.compiler import CompileError
from datapipe_assets.pipeline.readiness import plaintext_warnings, readiness_warnings

# Names are unique per org: a name two orgs use is given with its org.
PIPELINE_HELP = "pipeline name, or ORG/NAME"


def console_main() -> NoReturn:
    """The `datapipe` executable: `main`, then an immediate exit.

    By the time `main` returns, everything the command wrote is committed and closed. The
    interpreter's teardown after that only costs: its final garbage collections walk the
    millions of objects Dagster made (0.3-0.7 s after the output has ended), and destroying
    DuckDB's and Arrow's native thread pools while one of their threads was still alive
    aborted the process ("terminate called without an active exception", exit 134 instead
    of 1). So the output is flushed and the process ends here, without the teardown. Not in
    `main`, which tests call in their own long-lived process.
    """
    try:
        code = main()
    except BrokenPipeError:
        # The reader went away (`datapipe status | head -1`): end quietly, as SIGPIPE would.
        code = 128 + signal.SIGPIPE
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        # Each command's module is imported only when it runs: validate and preview never
        # import Dagster, and only run and status pay for it.
        module, function = args.handler.split(":")
        handler = getattr(importlib.import_module(f"datapipe_assets.cli.{module}"), function)
        return handler(args)
    except (CommandError, ConnectorError, CompileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datapipe", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check every pipeline file; exit 1 on errors")
    validate.add_argument(
        "--strict", action="store_true", help="treat warnings as errors: exit 1 on any"
    )
    validate.set_defaults(handler="main:validate_command")

    secrets = commands.add_parser("secrets", help="encrypted values for ${secret:NAME}")
    actions = secrets.add_subparsers(required=True, metavar="ACTION")
    for name, text in (
        ("set", "store a value, typed at a hidden prompt or piped on stdin"),
        ("list", "the stored names (never the values)"),
        ("rm", "forget a value"),
    ):
        action = actions.add_parser(name, help=text)
        if name != "list":
            action.add_argument("name")
        action.set_defaults(handler=f"secrets:{name}_command")

    preview = commands.add_parser("preview", help="rows at a node, without loading anything")
    preview.add_argument("pipeline", help=PIPELINE_HELP)
    preview.add_argument("--node", help="node id or source table (default: the last node)")
    preview.add_argument("--limit", type=positive_int, default=10)
    preview.set_defaults(handler="preview:preview_command")

    run = commands.add_parser("run", help="materialize a pipeline end to end, in process")
    run.add_argument("pipeline", nargs="?", help=f"{PIPELINE_HELP} (default: --all)")
    run.add_argument("--all", action="store_true", help="run every valid pipeline")
    run.add_argument("--full-refresh", action="store_true", help="ignore incremental cursors")
    run.add_argument(
        "--force", action="store_true", help="run even while the pipeline has a live run"
    )
    run.add_argument(
        "--file",
        metavar="PATH",
        help="run this arrived file's partition (a pipeline with partitions: {by: file})",
    )
    run.set_defaults(handler="run:run_command")

    backfill = commands.add_parser(
        "backfill", help="run a partitioned pipeline's partitions in a date range, in process"
    )
    backfill.add_argument("pipeline", help=PIPELINE_HELP)
    backfill.add_argument(
        "--from", dest="from_", type=iso_date, required=True, help="first day, YYYY-MM-DD"
    )
    backfill.add_argument("--to", type=iso_date, required=True, help="last day, YYYY-MM-DD")
    backfill.add_argument(
        "--force", action="store_true", help="run even while the pipeline has a live run"
    )
    backfill.set_defaults(handler="backfill:backfill_command")

    status = commands.add_parser("status", help="last runs: status, rows per stage, checks")
    status.add_argument("pipeline", nargs="?", help=f"{PIPELINE_HELP} (default: every pipeline)")
    status.add_argument("--limit", type=positive_int, default=5, help="runs per pipeline")
    status.set_defaults(handler="status:status_command")

    collect = commands.add_parser(
        "gc", help="remove staged runs older than DATAPIPE_STAGING_RETENTION (default 14d)"
    )
    collect.add_argument(
        "--dry-run", action="store_true", help="print what would be removed; remove nothing"
    )
    collect.set_defaults(handler="gc:gc_command")

    rejects = commands.add_parser("rejects", help="the rows a run rejected (on_bad_rows)")
    rejects.add_argument("pipeline", help=PIPELINE_HELP)
    rejects.add_argument("--run", help="run id (default: the latest run that rejected rows)")
    rejects.set_defaults(handler="rejects:rejects_command")

    usage = commands.add_parser(
        "usage", help="rows extracted and loaded per org, pipeline and month; monthly limits"
    )
    usage.add_argument("--org", help="one org (default: every org)")
    usage.add_argument("--month", type=month, help="YYYY-MM, in UTC (default: the current month)")
    usage.add_argument(
        "--report", action="store_true", help="send Stripe the meter events still pending"
    )
    usage.set_defaults(handler="usage:usage_command")

    for name, handler, text in (
        ("discover", "connections:discover_command", "list a connection's tables and columns"),
        ("check", "connections:check_command", "test a connection"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("connection")
        sub.set_defaults(handler=handler)
    return parser


def validate_command(args: argparse.Namespace) -> int:
    project = cli_project()
    # With --strict, what would be a warning is an error.
    warn = "error  " if args.strict else "warn   "
    warnings = 0
    for loaded in project.pipelines:
        print(f"ok     {project.label(loaded.pipeline)} ({loaded.file.name})")
        for note in loaded.notes:
            print(f"note   {note}")
        for warning in readiness_warnings(loaded):
            print(f"{warn}{warning}")
            warnings += 1
    for warning in plaintext_warnings(project):
        print(f"{warn}{warning}")
        warnings += 1
    for errors in project.errors.values():
        for error in errors:
            print(f"error  {error}")
    count = sum(len(e) for e in project.errors.values())
    if args.strict:
        count, warnings = count + warnings, 0
    summary = f"{len(project.pipelines)} valid pipeline(s), {count} error(s)"
    print(summary + (f", {warnings} warning(s)" if warnings else ""))
    return 1 if count else 0
