"""The Dagster instance the `run` and `status` commands use, created one process at a time."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from datapipe_assets.cli.common import dagster_home

LOCK_FILE = ".datapipe-instance.lock"


@contextmanager
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    """The instance at DAGSTER_HOME (see dagster_home).

    Creating it creates and stamps its SQLite storage the first time, so two first commands
    at once could both stamp it: the schedule storage was left with two alembic heads, and
    every later command failed. Creation is serialized across processes by a file lock.
    """
    home = dagster_home()
    with open(os.path.join(home, LOCK_FILE), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
    # Closing the file released the lock; the instance is used without it.
    with instance:
        yield instance
