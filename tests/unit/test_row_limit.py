"""An extract with a row limit: cut exactly, read no further, and its cursor state."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from connectors.base import CursorState, Extraction, RowLimit, RowLimitReached

SCHEMA = pa.schema([("id", pa.int64()), ("at", pa.int64())])


class Source:
    """Batches of (id, at) rows, counting the batches pulled and noting when it is closed."""

    def __init__(self, *batches: list[tuple[int, int | None]]) -> None:
        self.batches = batches
        self.pulled = 0
        self.closed = False

    def reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(SCHEMA, self._batches())

    def _batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for rows in self.batches:
                self.pulled += 1
                ids, ats = zip(*rows, strict=True)
                yield pa.record_batch([pa.array(ids), pa.array(ats)], schema=SCHEMA)
        finally:
            self.closed = True


def ids(batches: list[pa.RecordBatch]) -> list[int]:
    return [i for b in batches for i in b.column("id").to_pylist()]


def test_a_cut_in_a_batch_stops_reading_and_keeps_the_tied_rows_it_loaded():
    source = Source([(1, 10), (2, 20), (3, 30)], [(4, 40), (5, 50), (6, 50)], [(7, 60)])
    extraction = Extraction(source.reader(), "at", None, ["id"], RowLimit(5))
    assert ids(list(extraction)) == [1, 2, 3, 4, 5]
    assert (extraction.rows, extraction.limited, source.pulled) == (5, True, 2)
    assert source.closed
    # Row 6 shares the cut's value: the next extract skips row 5 only.
    assert extraction.state == CursorState(50, ((5,),))
    following = Extraction(
        Source([(5, 50), (6, 50), (7, 60)]).reader(), "at", extraction.state, ["id"], RowLimit(5)
    )
    assert ids(list(following)) == [6, 7]
    assert not following.limited


def test_a_limit_at_a_batch_end_reads_one_batch_more_to_know_it_was_reached():
    source = Source([(1, 10), (2, 20)], [(3, 30)], [(4, 40)])
    extraction = Extraction(source.reader(), "at", None, ["id"], RowLimit(2))
    assert ids(list(extraction)) == [1, 2]
    assert (extraction.limited, source.pulled) == (True, 2)
    assert extraction.state == CursorState(20, ((2,),))


def test_rows_without_a_key_have_no_place_after_a_cut_and_are_left_out():
    source = Source([(1, None), (2, 10), (3, None)], [(4, 20), (5, 30)])
    extraction = Extraction(source.reader(), "at", None, ["id"], RowLimit(2))
    assert ids(list(extraction)) == [2, 4]
    assert (extraction.limited, extraction.state) == (True, CursorState(20, ((4,),)))


def test_exactly_the_limit_fits():
    extraction = Extraction(Source([(1, 10), (2, 20)]).reader(), None, None, (), RowLimit(2))
    assert ids(list(extraction)) == [1, 2]
    assert not extraction.limited


def test_a_failing_limit_raises_before_passing_on_the_batch_that_reaches_it():
    source = Source([(1, 10), (2, 20)], [(3, 30), (4, 40)], [(5, 50)])
    extraction = Extraction(source.reader(), None, None, (), RowLimit(3, "over the limit"))
    passed: list[pa.RecordBatch] = []
    with pytest.raises(RowLimitReached, match=r"^over the limit$"):
        passed.extend(extraction)
    assert (ids(passed), source.pulled, source.closed) == ([1, 2], 2, True)
