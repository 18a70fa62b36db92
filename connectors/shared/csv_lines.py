"""Lines of a CSV file as an editor numbers them, for error messages and rejected rows.

pyarrow numbers rows without the blank lines it skips, and without the malformed rows it
was told to skip; these turn its numbers into the lines a user sees. They read the file
again, which only the error and reject paths do.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Iterator

from connectors.shared.csv_files import CsvFile


def returned_row_number(returned: int, skipped: list[int]) -> int:
    """pyarrow's number of the row it returned as its `returned`-th (the header counting as
    the first), given the sorted numbers of the malformed rows it skipped."""
    number = returned
    for skipped_number in skipped:
        if skipped_number > number:
            break
        number += 1
    return number


def row_lines(file: CsvFile, numbers: Collection[int], encoding: str) -> dict[int, tuple[int, str]]:
    """Each of these pyarrow row numbers' line, as an editor numbers it, and its text.

    pyarrow counts only non-blank lines (see _physical_line); text that does not decode is
    kept with the undecodable bytes escaped (\\xe9).
    """
    wanted, found = set(numbers), {}
    seen = 0
    for line_number, line in _numbered_lines(file):
        if not wanted - found.keys():
            break
        if line.strip(b"\r\n"):
            seen += 1
            if seen in wanted:
                text = line.rstrip(b"\r\n").decode(encoding, "backslashreplace")
                found[seen] = (line_number, text)
    return found


def file_line(file: CsvFile, row_number: int | None) -> str:
    """`file line N`, turning pyarrow's row number (which skips blank lines) into a line."""
    if row_number is None:
        return file.display
    return f"{file.display} line {_physical_line(file, row_number)}"


def _numbered_lines(file: CsvFile) -> Iterator[tuple[int, bytes]]:
    """The file's lines as an editor numbers them, read once, for the error paths below."""
    with file.open() as stream:
        yield from enumerate(io.BufferedReader(stream, 1 << 20), start=1)


def first_long_line(file: CsvFile, limit: int) -> tuple[int | None, int]:
    """The first line longer than `limit` bytes and its length. A quoted field's line breaks
    can make a row of several short lines: then no line, and the longest line's length."""
    longest = 0
    for line_number, line in _numbered_lines(file):
        if len(line) > limit:
            return line_number, len(line)
        longest = max(longest, len(line))
    return None, longest


def first_undecodable_line(file: CsvFile, encoding: str) -> int | None:
    """The number of the first line that is not valid text in this encoding."""
    for line_number, line in _numbered_lines(file):
        try:
            line.decode(encoding)
        except UnicodeDecodeError:
            return line_number
    return None


def _physical_line(file: CsvFile, row_number: int) -> int:
    """The line number, as an editor shows it, of the row_number-th non-blank line.

    pyarrow skips blank lines without counting them, so its row numbers drift from what a
    user sees. This only runs on the error path: streaming the file once is affordable.
    """
    seen = 0
    for line_number, line in _numbered_lines(file):
        if line.strip(b"\r\n"):
            seen += 1
            if seen == row_number:
                return line_number
    return row_number
