"""Serve the till API with uvicorn: one process, one event loop (the rate limit is per process).

uvicorn's access log is off: a request line carries member ids in its path
and query; the API's metrics count requests by route and status instead.
"""

from __future__ import annotations

import uvicorn

from streams.api.app import create_app
from streams.settings import Settings

LOG_LEVEL = "warning"


def run_api(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM."""
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                access_log=False, log_level=LOG_LEVEL)
