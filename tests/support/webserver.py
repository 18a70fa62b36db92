"""The Dagster webserver on 127.0.0.1 for UI tests, started and stopped by PID."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from tests.support.services import free_port, stop_process


def wait_for_url(url: str, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Poll `url` until it answers 200; fail early, with the server's log, if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the webserver exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def dagster_webserver(env: Mapping[str, str], module: str, log: Path) -> Iterator[str]:
    """`dagster-webserver -m module` on a free port; yields its base URL.

    Started with Popen (default signal handling) and stopped with SIGTERM, then waited for:
    Dagster maps SIGTERM onto its SIGINT shutdown.
    """
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "dagster-webserver"),
        "-h", "127.0.0.1", "-p", str(port), "-m", module,
    ]  # fmt: skip
    with log.open("w") as output:
        process = subprocess.Popen(command, env=dict(env), stdout=output, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_url(f"{url}/server_info", process, log)
            yield url
        finally:
            stop_process(process, timeout=20.0)
