"""Raw assets: each source table extracted as Arrow batches into staging.

One step per source connection extracts that connection's tables concurrently, in a thread
pool of `max_parallel` threads (default: the core count). Why threads inside one step, not
Dagster's multiprocess executor: a process per step re-imports Dagster (seconds each, while a
small `datapipe run` must stay well under 4 s), and an extract spends its time in network
reads, pyarrow's CSV parser and the parquet writer, all of which release the GIL. API
sources stay within their connection's `requests_per_second`: every request of a connection
goes through one thread-safe limiter (connectors/shared/http.py), whatever thread sends it.

Why a step per connection, not per pipeline: the connection is what a rate limit, credentials
and a retry are scoped to, and a connection with one table keeps the step (and step key,
which alerts and the CLI name a failure by) that the table always had.

A table the pipeline core lists in `fused_loads` is also loaded in this step, in the same
pass as its extract: each batch goes into the staged file and on to the destination, so the
destination works while the source is still being read. The staged file is complete and
published before the load may commit, and a retried step does not load again a table whose
load committed in an earlier try.
"""

import os
import queue
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg
import pyarrow as pa

from connectors.base import CursorState, Extraction, RowLimit
from connectors.shared.parquet import write_parquet, written_aside
from connectors.shared.rejects import RejectLog
from datapipe_assets.defs import cursors
from datapipe_assets.defs.assets.load import (
    Staging,
    load_description,
    load_metadata,
    load_rejecting,
    load_request,
    load_staged,
    load_where,
    loaded_line,
)
from datapipe_assets.defs.errors import step_failures
from datapipe_assets.defs.partitions import (
    PARTITION_TAG,
    partitions_definition,
    run_file,
    run_window,
)
from datapipe_assets.defs.rejects import (
    NO_ROWS,
    Tally,
    encode_tallies,
    limit_failure,
    over_limit,
    published,
    reject_log,
    rejects_metadata,
)
from datapipe_assets.defs.retries import transient_retries
from datapipe_assets.defs.stage_metadata import seconds_since
from datapipe_assets.defs.usage import ROWS_EXTRACTED, check_monthly_limit
from datapipe_assets.defs.usage_recording import Usage, record_usage
from datapipe_assets.pipeline.keys import dagster_name, load_key, raw_key
from datapipe_assets.pipeline.project import LoadedPipeline
from datapipe_assets.pipeline.run_source import source_for_run
from datapipe_assets.pipeline.spec import SourceTable
from resources.staging import (
    ParquetStagingIOManager,
    PublishedFile,
    StagedFile,
    StagedTable,
    latest_staged,
    scratch_file,
)


def raw_assets(
    loaded: LoadedPipeline, after: list[dg.AssetKey], fused: Collection[str]
) -> list[dg.AssetsDefinition]:
    """One multi-asset per source connection of the pipeline, over that connection's tables
    and the loads of its `fused` tables."""
    by_connection: dict[str, list[SourceTable]] = {}
    for table in loaded.pipeline.source_tables():
        by_connection.setdefault(loaded.table_connection(table.name).name, []).append(table)
    return [_connection_asset(loaded, tables, after, fused) for tables in by_connection.values()]


def max_threads(loaded: LoadedPipeline, tables: int) -> int:
    """The pipeline's `max_parallel` (default: the core count), never more than the tables."""
    limit = loaded.pipeline.max_parallel or os.cpu_count() or 1
    return max(1, min(limit, tables))


@dataclass(frozen=True)
class _Job:
    """What the step does for one table: extract it, load it, or both in one pass."""

    table: SourceTable
    extract: bool
    # The target table when the table's load is selected.
    load_into: str | None
    # The table's latest staged data, for a load selected without its extract.
    staged: StagedTable | None = None


@dataclass(frozen=True)
class _Output:
    """An output a worker has ready, for the step's own thread to yield."""

    result: dg.MaterializeResult
    log: str
    # The rows it extracted or loaded, recorded as the org's usage once it is yielded.
    usage: Usage | None = None


@dataclass(frozen=True)
class _Finished:
    table: str
    failure: dg.Failure | None = None


def _connection_asset(
    loaded: LoadedPipeline,
    tables: list[SourceTable],
    after: list[dg.AssetKey],
    fused: Collection[str],
) -> dg.AssetsDefinition:
    pipeline = loaded.pipeline
    connection = loaded.table_connection(tables[0].name).name
    keys = {t.name: dg.AssetKey(raw_key(pipeline, t.name)) for t in tables}
    targets = pipeline.target_tables()
    load_keys = {
        t.name: dg.AssetKey(load_key(pipeline, targets[t.name])) for t in tables if t.name in fused
    }
    # A single table keeps the step name its own asset always had.
    name = (
        "__".join(raw_key(pipeline, tables[0].name))
        if len(tables) == 1
        else "__".join([*raw_key(pipeline, "from"), re.sub(r"\W", "_", connection)])
    )
    specs = [_spec(loaded, table, after, skippable=table.name in load_keys) for table in tables]
    specs += [_load_spec(loaded, targets[t], keys[t]) for t in load_keys]

    @dg.multi_asset(
        name=name,
        specs=specs,
        # Any raw table (or load) may be materialized alone: the step then does just that.
        can_subset=True,
        required_resource_keys={"staging"},
        partitions_def=partitions_definition(pipeline),
    )
    def _extract(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        # Before anything is read: an org over its monthly rows extracts nothing more.
        check_monthly_limit(context.instance, loaded)
        with transient_retries(context, pipeline.retries):
            yield from _extract_tables(context)

    def _extract_tables(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        jobs = _jobs(context, tables, keys, load_keys, targets)
        threads = max_threads(loaded, len(jobs))
        context.log.info(
            f"extracting {', '.join(j.table.name for j in jobs if j.extract) or 'nothing'} "
            f"from connection {connection!r}, {threads} at a time"
        )
        step = _StepRun(loaded, dict(context.run.tags), context.run_id, context.resources.staging)
        failures: dict[str, dg.Failure] = {}
        # Dagster's context is used on this thread only: workers extract (and load), this
        # thread yields each output as soon as a worker has it ready.
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="extract") as pool:
            outbox: queue.Queue[_Output | _Finished] = queue.Queue()
            for job in jobs:
                pool.submit(step.work, job, outbox)
            finished = 0
            try:
                while finished < len(jobs):
                    message = outbox.get()
                    if isinstance(message, _Output):
                        context.log.info(message.log)
                        yield message.result
                        if message.usage is not None:
                            record_usage(context, loaded, message.usage)
                        continue
                    finished += 1
                    if message.failure is not None:
                        failures[message.table] = message.failure
            except BaseException:
                # The run is being stopped (its timeout, a termination): the pool waits for
                # its workers, which must not commit a load meanwhile.
                step.stopping.set()
                raise
        if failures:
            # The other tables' outputs are published; the step fails, so nothing downstream
            # of it runs.
            order = [t.name for t in tables]
            raise _combined([failures[t] for t in order if t in failures])

    return _extract


def _jobs(
    context: dg.AssetExecutionContext,
    tables: list[SourceTable],
    keys: Mapping[str, dg.AssetKey],
    load_keys: Mapping[str, dg.AssetKey],
    targets: Mapping[str, str],
) -> list[_Job]:
    selected = context.selected_asset_keys
    jobs = []
    for table in tables:
        extract = keys[table.name] in selected
        load = load_keys.get(table.name) in selected
        if (
            load
            and context.retry_number > 0
            and _materialized_in_run(context, load_keys[table.name])
        ):
            # An earlier try loaded it (its extract came first): loading again would append
            # the rows twice.
            continue
        if extract or load:
            alone = load and not extract
            partition = context.partition_key if context.has_partition_key else None
            staged = latest_staged(context.instance, keys[table.name], partition) if alone else None
            jobs.append(_Job(table, extract, targets[table.name] if load else None, staged))
    return jobs


def _materialized_in_run(context: dg.AssetExecutionContext, key: dg.AssetKey) -> bool:
    event = context.instance.get_latest_materialization_event(key)
    return event is not None and event.run_id == context.run_id


def _spec(
    loaded: LoadedPipeline, table: SourceTable, after: list[dg.AssetKey], skippable: bool
) -> dg.AssetSpec:
    """The table's asset: key, group, kind, description and metadata, as it always had."""
    pipeline, source = loaded.pipeline, loaded.table_connection(table.name)
    named = f"`{table.source_name}`" + (
        f" (as `{table.name}`)" if table.name != table.source_name else ""
    )
    return dg.AssetSpec(
        key=raw_key(pipeline, table.name),
        deps=after,
        group_name=dagster_name(pipeline),
        kinds={source.connector},
        description=(
            f"Table {named} extracted from connection `{source.name}` "
            f"({table.sync_mode} sync"
            + (f" on `{table.incremental_key}`" if table.incremental else "")
            + ")."
        ),
        metadata={"connection": source.name, "source_table": table.source_name},
        code_version=loaded.version,
        # A table loaded in this step is skipped on a retry after its load committed.
        skippable=skippable,
    ).with_io_manager_key("staging")


def _load_spec(loaded: LoadedPipeline, target_table: str, raw: dg.AssetKey) -> dg.AssetSpec:
    """The load asset of a table loaded in its extract's own step."""
    destination = loaded.destination
    return dg.AssetSpec(
        key=load_key(loaded.pipeline, target_table),
        deps=[raw],
        group_name=dagster_name(loaded.pipeline),
        kinds={destination.connector},
        description=load_description(loaded, target_table),
        metadata={"connection": destination.name, "target_table": target_table},
        code_version=loaded.version,
        skippable=True,
    )


@dataclass(frozen=True)
class _StepRun:
    """What the workers of one step's run share."""

    loaded: LoadedPipeline
    tags: dict[str, str]
    run_id: str
    staging: ParquetStagingIOManager
    # Set when the step is stopped: a load still reading batches then fails and rolls back.
    stopping: threading.Event = field(default_factory=threading.Event)

    def work(self, job: _Job, outbox: "queue.Queue[_Output | _Finished]") -> None:
        """Do one table's job on a worker thread, posting its outputs and then its end.

        Any error becomes the table's one-line, secret-free dg.Failure here, on its own
        thread; a job that did not complete never passes for one that did.
        """
        where = self._where(job.table)
        failure: dg.Failure | None = dg.Failure(f"{where}: interrupted", allow_retries=True)
        try:
            with step_failures(where, self.loaded.connections()):
                if job.load_into is None:
                    outbox.put(self._extract(job.table))
                elif job.staged is not None:
                    outbox.put(self._load(job.load_into, job.staged))
                else:
                    self._extract_and_load(job.table, job.load_into, outbox)
            failure = None
        except dg.Failure as error:
            failure = error
        finally:
            outbox.put(_Finished(job.table.name, failure))

    def _where(self, table: SourceTable) -> str:
        source = self.loaded.table_connection(table.name)
        return (
            f"pipeline {self.loaded.pipeline.name!r}, table {table.name!r} "
            f"(connection {source.name!r})"
        )

    def _open(
        self, table: SourceTable, start: CursorState | None, rejects: RejectLog | None
    ) -> Extraction:
        pipeline = self.loaded.pipeline
        run_source = source_for_run(self.loaded, table.name, run_file(pipeline, self.tags))
        return run_source.open_source().extract(
            table.source_name,
            table.incremental_key if table.incremental else None,
            start,
            table.primary_key,
            rejects,
            run_window(pipeline, self.tags),
            self._row_limit(table),
        )

    def _row_limit(self, table: SourceTable) -> RowLimit | None:
        """Where the table's extract stops: the run's row limit, which no table alone may
        pass; without load_partial, reaching it fails the extract."""
        limit = self.loaded.row_limit
        if limit is None:
            return None
        failure = None if limit.load_partial else limit.reached(f"table {table.name!r}")
        return RowLimit(limit.rows, failure)

    def _rejected(
        self, table: SourceTable, extraction: Extraction, rejects: RejectLog | None
    ) -> dict[str, object]:
        """Publish an extract's rejects; its `rejected_rows` metadata, or its failure when
        they are over the pipeline's limit."""
        if rejects is None:
            return rejects_metadata(None, None)
        key = dg.AssetKey(raw_key(self.loaded.pipeline, table.name))
        url = published(self.staging, self.run_id, key, rejects)
        tally = _tally(extraction, rejects)
        if over_limit(self.loaded, tally):
            raise limit_failure(self.loaded, self._where(table), tally, url)
        return rejects_metadata(rejects, url, tally.read)

    # The jobs; `work` words their errors.

    def _extract(self, table: SourceTable) -> _Output:
        """Extract one table into a scratch parquet file, for the IO manager to publish."""
        started = time.perf_counter()
        rejects = reject_log(self.loaded)
        with scratch_file() as path:
            start = self._committed_state(table) if table.incremental else None
            extraction = self._open(table, start, rejects)
            # The cursor state travels under the table's name in the pipeline, unique in it.
            write_parquet(
                path,
                extraction.schema,
                extraction,
                _file_metadata(table, start, extraction, rejects),
            )
            rejected = self._rejected(table, extraction, rejects)
        _release_freed_memory()
        extracted = _rows_extracted(extraction, rejects)
        metadata: dict[str, object] = {
            "duration_seconds": seconds_since(started),
            ROWS_EXTRACTED: dg.MetadataValue.int(extracted),
            **rejected,
            **_limit_metadata(self.loaded, extraction),
        }
        summary = "extracted" + _limited(self.loaded, extraction)
        if table.incremental:
            metadata["cursor/start"] = cursors.describe(start)
            metadata["cursor/extracted_to"] = cursors.describe(extraction.state)
            summary = f"extracted from cursor {metadata['cursor/start']} to "
            summary += str(metadata["cursor/extracted_to"])
        return _Output(
            dg.MaterializeResult(
                asset_key=raw_key(self.loaded.pipeline, table.name),
                value=StagedFile(path, metadata),
            ),
            f"{table.name}: {summary}",
            Usage(table.name, extracted=extracted),
        )

    def _extract_and_load(
        self, table: SourceTable, target: str, outbox: "queue.Queue[_Output | _Finished]"
    ) -> None:
        """Extract a full-sync table and load it in the same pass (see the module's doc)."""
        pipeline, connections = self.loaded.pipeline, self.loaded.connections()
        key = dg.AssetKey(raw_key(pipeline, table.name))
        started = time.perf_counter()
        rejects = reject_log(self.loaded)
        extracted: list[Tally] = []
        request = load_request(
            self.loaded, target, self.tags, {}, {}, reject_log(self.loaded, lambda: extracted[0])
        )
        staged: list[PublishedFile] = []
        with scratch_file() as path:
            extraction = self._open(table, None, rejects)
            source = _Watched(extraction, self.stopping)

            def batches() -> Iterator[pa.RecordBatch]:
                yield from written_aside(
                    path,
                    extraction.schema,
                    source.batches(),
                    _file_metadata(table, None, extraction, rejects),
                )
                # The file is complete: it is published before the load may commit, unless
                # the extract's rejects fail the load.
                rejected = self._rejected(table, extraction, rejects)
                extracted.append(NO_ROWS if rejects is None else _tally(extraction, rejects))
                rows = _rows_extracted(extraction, rejects)
                metadata = {
                    "duration_seconds": seconds_since(started),
                    ROWS_EXTRACTED: dg.MetadataValue.int(rows),
                    **rejected,
                    **_limit_metadata(self.loaded, extraction),
                }
                file = StagedFile(path, metadata)
                partition = self.tags.get(PARTITION_TAG)
                staged.append(self.staging.publish(self.run_id, key, file, partition))
                outbox.put(
                    _Output(
                        dg.MaterializeResult(asset_key=key, value=staged[0]),
                        f"{table.name}: extracted{_limited(self.loaded, extraction)}, loading",
                        Usage(table.name, extracted=rows),
                    )
                )

            data = pa.RecordBatchReader.from_batches(extraction.schema, batches())
            try:
                result, load_rejected = load_rejecting(
                    self.loaded,
                    request,
                    data,
                    Staging(self.staging, self.run_id),
                    lambda: extracted[0],
                )
            except Exception as error:
                # A failed read is the extract's failure, whichever side noticed it first.
                where = self._where(table) if source.error else load_where(self.loaded, target)
                with step_failures(where, connections):
                    raise (source.error or error) from None
        _release_freed_memory()
        metadata = load_metadata(request, result, extraction.schema, staged[0].url, {}, started)
        outbox.put(
            _Output(
                dg.MaterializeResult(
                    asset_key=load_key(pipeline, target), metadata={**metadata, **load_rejected}
                ),
                loaded_line(target, request, result),
                Usage(target, loaded=result.rows_loaded),
            )
        )

    def _load(self, target: str, staged: StagedTable) -> _Output:
        """Load a table's latest staged data, for a load materialized without its extract."""
        metadata, line = load_staged(
            self.loaded, target, self.tags, staged, Staging(self.staging, self.run_id)
        )
        key = load_key(self.loaded.pipeline, target)
        usage = Usage(target, loaded=int(metadata["rows_loaded"].value))
        return _Output(dg.MaterializeResult(asset_key=key, metadata=metadata), line, usage)

    def _committed_state(self, table: SourceTable) -> CursorState | None:
        """The cursor the destination last committed, unless a full refresh was asked for."""
        if self.tags.get(cursors.FULL_REFRESH_TAG) == "true":
            return None
        return self.loaded.destination.open_destination().read_state(
            dagster_name(self.loaded.pipeline), table.name
        )


class _Watched:
    """A source's batches, passed through until the step is stopped, remembering the error
    reading them raised."""

    def __init__(self, extraction: Extraction, stopping: threading.Event) -> None:
        self._extraction = extraction
        self._stopping = stopping
        self.error: Exception | None = None

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self._extraction:
                self._check_running()
                yield batch
            # Also after the last batch: the load commits once the batches have ended.
            self._check_running()
        except Exception as error:
            self.error = error
            raise

    def _check_running(self) -> None:
        if self._stopping.is_set():
            raise StepStopped("the run was stopped; nothing was loaded")


class StepStopped(Exception):
    """The step was stopped while a worker still read its source."""


def _file_metadata(
    table: SourceTable,
    start: CursorState | None,
    extraction: Extraction,
    rejects: RejectLog | None,
) -> Callable[[], dict[str, str]]:
    """The staged file's cursor state (and the state its extract started from), and its
    rejects tally when rows are rejected, under the table's name in the pipeline (unique
    there), asked for once the extract has ended."""

    def metadata() -> dict[str, str]:
        found = cursors.encode_states(table.name, start, extraction.state)
        if rejects is not None:
            found.update(encode_tallies({table.name: _tally(extraction, rejects)}))
        return found

    return metadata


def _limit_metadata(loaded: LoadedPipeline, extraction: Extraction) -> dict[str, object]:
    """`row_limit` and whether the ended extract was cut at it, for a limited pipeline."""
    if loaded.row_limit is None:
        return {}
    return {"row_limit": loaded.row_limit.rows, "limited": extraction.limited}


def _limited(loaded: LoadedPipeline, extraction: Extraction) -> str:
    """How an extract's log line says it stopped at the row limit (or nothing)."""
    if loaded.row_limit is None or not extraction.limited:
        return ""
    return f" (stopped at the {loaded.row_limit.rows:,}-row limit per run)"


def _rows_extracted(extraction: Extraction, rejects: RejectLog | None) -> int:
    """The rows an ended extract read from its source, passed on or rejected."""
    return extraction.rows + (len(rejects) if rejects is not None else 0)


def _tally(extraction: Extraction, rejects: RejectLog) -> Tally:
    """An ended extract's rows read (passed on or rejected) and rejected."""
    return Tally(extraction.rows + len(rejects), len(rejects))


def _release_freed_memory() -> None:
    # Arrow's allocator keeps the pages the extract freed (CSV blocks, parquet row groups)
    # for reuse; handed back now, they are not held while the next step (a DuckDB segment,
    # with its own allocator) builds its memory on top: W2 peaked at 561 MB, now 422 MB.
    pa.default_memory_pool().release_unused()


def _combined(failures: list[dg.Failure]) -> dg.Failure:
    """One failure for the step: the failed table's own, or every failed table's on a line."""
    if len(failures) == 1:
        return failures[0]
    return dg.Failure(
        description="; ".join(f.description or "" for f in failures),
        metadata={
            "traceback": dg.MetadataValue.text(
                "\n".join(str(f.metadata["traceback"].value) for f in failures)
            )
        },
        # A permanent error in any table would fail the retry too.
        allow_retries=all(f.allow_retries for f in failures),
    )
