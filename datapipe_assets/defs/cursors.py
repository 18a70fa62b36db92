"""Incremental cursor states travelling with staged data, from extract to the load commit.

A raw table's new cursor state is written into its staged parquet file; each staged
transform copies the states of the staged inputs of its segment (its own inputs, or those of
the nodes fused into its step) into its own output; the load commits them with the rows, in
the destination's own transaction. So a cursor only advances with the rows it covers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from connectors.base import CursorState, ExtractStart
from resources.staging import StagedTable

CURSOR_STATES = "datapipe.cursor_states"
# The committed state each extract started from, so the load can refuse to commit over a
# state another run committed meanwhile.
CURSOR_STARTS = "datapipe.cursor_starts"
FULL_REFRESH_TAG = "datapipe/full_refresh"


def encode_states(
    table: str, start: CursorState | None, reached: CursorState | None
) -> dict[str, str]:
    """File metadata carrying a raw table's cursor state and the state its extract began at."""
    if reached is None:
        return {CURSOR_STATES: "{}", CURSOR_STARTS: "{}"}
    return {
        CURSOR_STATES: json.dumps({table: reached.to_json()}),
        CURSOR_STARTS: json.dumps({table: None if start is None else start.to_json()}),
    }


def decode_states(staged: StagedTable) -> dict[str, CursorState]:
    raw = staged.file_metadata(CURSOR_STATES) or {}
    return {table: CursorState.from_json(state) for table, state in raw.items()}


def decode_starts(staged: StagedTable) -> dict[str, ExtractStart]:
    """Where each table's extract began; none for data staged before starts were recorded."""
    raw = staged.file_metadata(CURSOR_STARTS) or {}
    return {
        table: ExtractStart(None if state is None else CursorState.from_json(state))
        for table, state in raw.items()
    }


def passthrough(inputs: Sequence[StagedTable]) -> dict[str, str]:
    """The inputs' cursor states (and their starts) together, for a transform's output."""
    merged: dict[str, dict[str, object]] = {CURSOR_STATES: {}, CURSOR_STARTS: {}}
    for staged in inputs:
        for key, tables in merged.items():
            tables.update(staged.file_metadata(key) or {})
    return {key: json.dumps(tables) for key, tables in merged.items()}


def describe(state: CursorState | None) -> str:
    return "none (full extract)" if state is None else str(state.cursor)
