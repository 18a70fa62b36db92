"""How often the daemon may evaluate each of DataPipe's sensors."""

from __future__ import annotations

import os

# A listing of a folder or prefix is cheap.
SENSOR_INTERVAL_VARIABLE = "DATAPIPE_SENSOR_INTERVAL_SECONDS"
DEFAULT_SENSOR_INTERVAL = 30


def sensor_interval() -> int:
    return int(os.environ.get(SENSOR_INTERVAL_VARIABLE, DEFAULT_SENSOR_INTERVAL))
