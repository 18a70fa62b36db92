"""A pipeline's rejected rows in its steps: the tally that travels with staged data, the
rejects file each asset publishes, its `rejected_rows` metadata and the limit.

An extract with `on_bad_rows: {action: reject}` rejects the rows it cannot read; its staged
file carries, per raw table, how many rows it read and rejected. Transforms pass the tallies
on (like cursor states), so the load, which may reject more rows (a bad upsert key, a value
the destination refuses), holds the pipeline's limit against the rows rejected on the whole
way, inside its transaction: over it, nothing is loaded and no cursor advances.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from connectors.shared.rejects import RejectLog
from datapipe_assets.pipeline.project import LoadedPipeline
from resources.staging import ParquetStagingIOManager, StagedTable

REJECT_TALLIES = "datapipe.reject_tallies"
REJECTED_ROWS = "rejected_rows"
REJECTS_PATH = "rejects_path"
ROWS_READ = "rows_read"


@dataclass(frozen=True)
class Tally:
    """Rows read from a source table, and how many of them were rejected."""

    read: int
    rejected: int

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.read + other.read, self.rejected + other.rejected)


NO_ROWS = Tally(0, 0)


def encode_tallies(tallies: Mapping[str, Tally]) -> dict[str, str]:
    """File metadata carrying the tallies of the raw tables behind some data."""
    return {REJECT_TALLIES: json.dumps({t: [n.read, n.rejected] for t, n in tallies.items()})}


def decode_tallies(staged: StagedTable) -> dict[str, Tally]:
    raw = staged.file_metadata(REJECT_TALLIES) or {}
    return {table: Tally(read, rejected) for table, (read, rejected) in raw.items()}


def passthrough(inputs: Sequence[StagedTable]) -> dict[str, str]:
    """The inputs' tallies together, for a transform's output file (none without any)."""
    tallies = {t: n for staged in inputs for t, n in decode_tallies(staged).items()}
    return encode_tallies(tallies) if tallies else {}


def total(tallies: Mapping[str, Tally]) -> Tally:
    return sum(tallies.values(), NO_ROWS)


def reject_log(
    loaded: LoadedPipeline, earlier: Callable[[], Tally] = lambda: NO_ROWS
) -> RejectLog | None:
    """A log for one asset's rejects when the pipeline rejects bad rows; else None (fail).

    `earlier`: the rows read and rejected on the way to a load, which its limit counts too
    (asked for when the load is about to commit, when a fused extract has ended).
    """
    policy = loaded.pipeline.on_bad_rows
    if not policy.rejects:
        return None

    def over_limit(count: int) -> bool:
        before = earlier()
        return policy.exceeded(before.rejected + count, before.read)

    return RejectLog(over_limit)


def over_limit(loaded: LoadedPipeline, tally: Tally) -> bool:
    return loaded.pipeline.on_bad_rows.exceeded(tally.rejected, tally.read)


def published(
    staging: ParquetStagingIOManager, run_id: str, key: dg.AssetKey, log: RejectLog
) -> str | None:
    """Publish an asset's rejects, if it has any; their URL."""
    if not len(log):
        return None
    return staging.publish_rejects(run_id, key, log.table())


def rejects_metadata(
    log: RejectLog | None, url: str | None, read: int | None = None
) -> dict[str, object]:
    """What every raw and load asset records of its rejects (0 without the policy); with the
    policy, also the rows read on the way (what a percent limit is a share of)."""
    rejected = 0 if log is None else len(log)
    metadata: dict[str, object] = {REJECTED_ROWS: dg.MetadataValue.int(rejected)}
    if read is not None:
        metadata[ROWS_READ] = dg.MetadataValue.int(read)
    if url is not None:
        metadata[REJECTS_PATH] = dg.MetadataValue.path(url)
    return metadata


def limit_failure(
    loaded: LoadedPipeline, where: str, rejected: Tally, url: str | None
) -> dg.Failure:
    """The one-line failure of a table whose rejects are over the pipeline's limit."""
    policy, name = loaded.pipeline.on_bad_rows, loaded.pipeline.name
    share = 100 * rejected.rejected / rejected.read if rejected.read else 100.0
    kept = f"; the rejects are in {url} (datapipe rejects {name})" if url else ""
    return dg.Failure(
        f"{where}: {rejected.rejected} of {rejected.read} rows read were rejected "
        f"({share:.2f}%), over the pipeline's on_bad_rows limit ({policy.limit()}); nothing "
        f"was loaded{kept}",
        allow_retries=False,
    )
