"""The till API as part of a local stack (``loyalty up``): one ``loyalty api`` process and a key.

``TillApi.start(settings, log_path)`` starts ``loyalty api`` on a free
loopback port with the stack's ``LOYALTY_*`` settings, waits (at most
``API_START_TIMEOUT_S``) until ``/healthz`` answers, and creates a key with
every scope for this stack (printed as ``LOYALTY_API_KEY``, like
``loyalty api-key create`` does, and with the console's address: ``console_line``). ``stop()`` sends SIGTERM, then SIGKILL
after ``API_STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from streams.api.keys import SCOPES, key_store
from streams.devkit.child_process import LOOPBACK_HOST, find_free_port
from streams.process import ProcessError
from streams.settings import Settings

API_START_TIMEOUT_S = 60
API_STOP_TIMEOUT_S = 15
HEALTH_POLL_INTERVAL_S = 0.2
HEALTH_REQUEST_TIMEOUT_S = 2


class TillApiError(ProcessError):
    """The API did not come up; the message names its log."""


@dataclass
class TillApi:
    process: subprocess.Popen
    url: str
    key: str
    log_path: Path

    @classmethod
    def start(cls, settings: Settings, log_path: Path) -> "TillApi":
        port = find_free_port()
        live = replace(settings, api_host=LOOPBACK_HOST, api_port=port, metrics_port=None)
        env = {**os.environ, **live.to_env()}
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "streams.cli", "api"], env=env,
                                       stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://{LOOPBACK_HOST}:{port}"
        api = cls(process, url, "", log_path)
        try:
            api._wait_healthy()
            with key_store(settings.database_url) as keys:
                api.key, _ = keys.create(list(SCOPES))
        except BaseException:
            api.stop()
            raise
        return api

    def exports(self) -> dict[str, str]:
        return {"LOYALTY_API_URL": self.url, "LOYALTY_API_KEY": self.key}

    def console_line(self) -> str:
        """Where the operator console is and the key to sign in with (a shell comment: the
        ``export`` lines around it stay pasteable)."""
        return f"# console: {self.url}/console  (sign in with the key {self.key})"

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(API_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + API_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TillApiError(f"the till API exited with status {self.process.returncode}; "
                                   f"its log: {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=HEALTH_REQUEST_TIMEOUT_S):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(HEALTH_POLL_INTERVAL_S)
        raise TillApiError(f"the till API did not answer /healthz within {API_START_TIMEOUT_S} s; "
                           f"its log: {self.log_path}")
