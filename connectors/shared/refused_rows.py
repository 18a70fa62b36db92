"""Finding the rows a database refuses by halving, under savepoints (PostgreSQL).

A load that rejects bad rows writes each batch under a savepoint: the rows go in as they
would without rejects, in one statement. Only when the database refuses a value does the
batch's write roll back to the savepoint and retry each half under a savepoint of its own,
halving again where a half is refused, down to the single rows that are refused. So a batch
with `b` refused rows costs about 2·b·log2(n) more statements, and a clean batch one.
"""

from __future__ import annotations

from collections.abc import Callable

from connectors.shared.sql_destination import SqlSession

_SAVEPOINT = "_datapipe_rows"


def write_isolating(
    session: SqlSession,
    write: Callable[[int, int], int],
    span: tuple[int, int],
    refusal: Callable[[Exception], str | None],
    refused_at: Callable[[int, str], None],
) -> int:
    """Run `write(start, stop)` over the rows at positions start <= p < stop of `span`;
    where it fails with an error `refusal` words (a refused value), write the halves apart.

    Each single row refused is passed to `refused_at` with its position and the message;
    returns how many rows were written. Any other error is raised, leaving the transaction
    for its owner to roll back.
    """
    start, stop = span
    session.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        written = write(start, stop)
    except Exception as exc:
        message = refusal(exc)
        if message is None:
            raise
        # The savepoint outlives ROLLBACK TO; released, savepoints do not pile up.
        session.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        session.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        if stop - start == 1:
            refused_at(start, message)
            return 0
        middle = (start + stop) // 2
        return sum(
            write_isolating(session, write, half, refusal, refused_at)
            for half in ((start, middle), (middle, stop))
        )
    session.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
    return written
