"""Incremental cursor states travelling with staged data, from extract to the load commit.

A raw table's new cursor state is written into its staged parquet file; each staged
transform copies the states of the staged inputs of its segment (its own inputs, or those of
the nodes fused into its step) into its own output; the load commits them with the rows, in
the destination's own transaction. So a cursor only advances with the rows it covers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from connectors.base import CursorState
from resources.staging import StagedTable

CURSOR_STATES = "datapipe.cursor_states"
FULL_REFRESH_TAG = "datapipe/full_refresh"


def encode_states(states: Mapping[str, CursorState | None]) -> dict[str, str]:
    """File metadata carrying the cursor states of the raw tables behind some data."""
    return {
        CURSOR_STATES: json.dumps(
            {table: state.to_json() for table, state in states.items() if state is not None}
        )
    }


def decode_states(staged: StagedTable) -> dict[str, CursorState]:
    raw = staged.file_metadata(CURSOR_STATES) or {}
    return {table: CursorState.from_json(state) for table, state in raw.items()}


def passthrough(inputs: Sequence[StagedTable]) -> dict[str, str]:
    """The inputs' cursor states together, for a transform's output file."""
    return encode_states({t: s for staged in inputs for t, s in decode_states(staged).items()})


def describe(state: CursorState | None) -> str:
    return "none (full extract)" if state is None else str(state.cursor)
