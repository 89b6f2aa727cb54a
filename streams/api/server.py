"""Serve the till API with uvicorn: one process, one event loop (the rate limit is per process).

uvicorn's access log is off: a request line carries member ids in its path
and query; the API's metrics count requests by route and status instead.
"""

from __future__ import annotations

import uvicorn

from streams.api.app import create_app
from streams.gc_tuning import tune_gc
from streams.settings import Settings

LOG_LEVEL = "warning"


def uvicorn_config(settings: Settings, log_level: str = LOG_LEVEL) -> uvicorn.Config:
    """No access log, and uvicorn's records go to the process's own logging set-up."""
    return uvicorn.Config(create_app(settings), host=settings.api_host, port=settings.api_port,
                          access_log=False, log_config=None, log_level=log_level)


def run_api(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM."""
    config = uvicorn_config(settings)
    tune_gc(settings)
    uvicorn.Server(config).run()
