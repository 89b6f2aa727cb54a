"""Apache Kafka for tests and demos: one KRaft node (broker and controller) from Maven jars.

Lives here: :class:`ApacheKafka` (same interface as ``EmbeddedBroker``), the jar
cache (:func:`resolve_jars`), the generated ``server.properties`` and a small
command line (``python -m streams.devkit.apache_kafka --help``).

Decisions:

- The jars come from Maven Central through ``kafka/pom.xml`` (pinned versions,
  nothing built): ``mvn dependency:copy-dependencies`` copies them into a cache
  outside the repository, ``~/.cache/loyalty-ledger/kafka-<version>/<pom hash>/lib``
  (``$LOYALTY_KAFKA_CACHE_DIR`` replaces ``~/.cache/loyalty-ledger/kafka-<version>``).
  A changed pom has another hash and resolves again. Maven works on a copy of
  the pom in a scratch directory that is renamed into place only when complete,
  so a killed or concurrent resolution never leaves a half-filled cache.
- ``java`` is always needed, ``mvn`` only while the cache is empty; a missing
  one raises :class:`MissingToolError` naming it.
- Each start formats a fresh storage directory (``kafka.tools.StorageTool format
  --standalone``: a dynamic KRaft quorum of this one controller) in a private
  temporary directory, then runs ``kafka.Kafka`` with a small heap. The quorum's
  voter record holds the controller's port, so a start that loses the race for
  a free port formats again on new ports (at most ``port_attempts`` times).
- Settings follow what the embedded broker does, so the same tests run on
  both: topics are auto-created (4 partitions, as tansu), internal topics have
  replication factor 1, the first group join is not delayed, and session
  timeouts down to ``GROUP_MIN_SESSION_TIMEOUT_MS`` are accepted (the
  benchmark uses 2 s; Kafka's default minimum is 6 s). ``extra_properties``
  overrides any of them.
- Ready means "answers a Kafka metadata request and lists itself as a broker"
  (kafka-python's admin client). The JVM's output goes to ``kafka.log`` in the
  temporary directory; start errors quote its tail.
- The JVM runs in its own session (process group), so a Ctrl-C in the terminal
  reaches only Python, whose ``stop()`` (also registered with ``atexit``) sends
  SIGTERM, waits ``stop_grace_s`` for Kafka's controlled shutdown, then SIGKILLs
  the group and removes the directory.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from pathlib import Path

from streams.devkit.child_process import (
    LOOPBACK_HOST,
    describe,
    find_free_port,
    log_tail,
    run_bounded,
    spawn,
)
from streams.devkit.embedded_broker import BrokerProcess, BrokerStartError

__all__ = [
    "ApacheKafka",
    "ApacheKafkaStartError",
    "JarResolutionError",
    "MissingToolError",
    "cached_jars",
    "kafka_cache_dir",
    "resolve_jars",
]

log = logging.getLogger(__name__)

POM_PATH = Path(__file__).resolve().parent / "kafka" / "pom.xml"
CACHE_DIR_ENV = "LOYALTY_KAFKA_CACHE_DIR"
CACHE_ROOT_DEFAULT = Path.home() / ".cache" / "loyalty-ledger"
POM_HASH_CHARS = 16
MAVEN_NAMESPACE = "{http://maven.apache.org/POM/4.0.0}"

RESOLVE_TIMEOUT_S = 600.0  # first resolution: ~16 s with an empty ~/.m2 (45 jars, 42 MB)
FORMAT_TIMEOUT_S = 60.0  # StorageTool: 1.5-5 s on 2 cores
START_TIMEOUT_S = 90.0  # spawn until ready: ~4 s idle, 35 s seen at load average 8 on 2 cores
STOP_GRACE_S = 15.0  # controlled shutdown: 1-2 s on 2 cores
KILL_TIMEOUT_S = 5.0
PORT_ATTEMPTS = 3
PROBE_INTERVAL_S = 0.2
PROBE_TIMEOUT_MS = 1_000
LOG_TAIL_LINES = 40
HEAP_MAX_MB = 512
HEAP_INITIAL_MB = 256
SHORT_LIVED_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1",)  # the storage format: ~25% faster

BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
LOG_FILE_NAME = "kafka.log"
PROPERTIES_FILE_NAME = "server.properties"
LOG4J_FILE_NAME = "log4j2.properties"
DATA_DIR_NAME = "data"
NODE_ID = 1
AUTO_CREATE_PARTITIONS = 4  # what tansu creates for an unknown topic
MESSAGE_MAX_BYTES = 1_048_588  # Kafka's default; producers here cap requests at 1 MiB
GROUP_MIN_SESSION_TIMEOUT_MS = 1_000
INTERNAL_TOPIC_PARTITIONS = 4  # __consumer_offsets, __transaction_state (default 50)
CLEANER_DEDUPE_BUFFER_BYTES = 32 * 2**20  # default 128 MiB, taken from a 512 MiB heap
PORT_IN_USE_MARKERS = ("Address already in use", "BindException")
ERROR_LINE = re.compile(r"\] (ERROR|FATAL) |^[\w.$]+(Exception|Error)\b|^Exception in thread|^Caused by: ")
ERROR_LINES_MAX = 8
ATTEMPT_MARKER = "--- apache_kafka: starting Kafka on "

LOG4J_CONFIG = """\
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class ApacheKafkaStartError(BrokerStartError):
    """Apache Kafka could not be started; the message says why (and quotes its log).

    A :class:`BrokerStartError`, so a caller can handle either broker's failure alike.
    """


class MissingToolError(ApacheKafkaStartError):
    """``java`` or ``mvn`` is not on PATH."""


class JarResolutionError(ApacheKafkaStartError):
    """Maven could not resolve the broker's jars; the message quotes Maven's output."""


# -- the jar cache ------------------------------------------------------


def pom_kafka_version(pom: Path = POM_PATH) -> str:
    """The ``kafka.version`` property of the pom."""
    root = ElementTree.parse(pom).getroot()
    version = root.findtext(f"{MAVEN_NAMESPACE}properties/{MAVEN_NAMESPACE}kafka.version")
    if not version:
        raise JarResolutionError(f"{pom} has no <kafka.version> property")
    return version.strip()


def kafka_cache_dir(pom: Path = POM_PATH) -> Path:
    """Where the jars of this pom live: ``<cache root>/<pom hash>`` (see module notes)."""
    override = os.environ.get(CACHE_DIR_ENV)
    root = Path(override) if override else CACHE_ROOT_DEFAULT / f"kafka-{pom_kafka_version(pom)}"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:POM_HASH_CHARS]
    return root.expanduser() / digest


def require_tools(*names: str) -> dict[str, str]:
    """Paths of the named executables; raise :class:`MissingToolError` naming the absent."""
    found = {name: shutil.which(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise MissingToolError(
            f"Apache Kafka for the tests needs {' and '.join(names)} on PATH; "
            f"missing: {', '.join(missing)} (install Java 17+ and Maven 3.8+)"
        )
    return {name: str(path) for name, path in found.items()}


def cached_jars(pom: Path = POM_PATH) -> Path | None:
    """The directory of this pom's jars if they were resolved before, else None."""
    lib = kafka_cache_dir(pom) / "lib"
    return lib if lib.is_dir() else None


def resolve_jars(pom: Path = POM_PATH, *, timeout_s: float = RESOLVE_TIMEOUT_S) -> Path:
    """The directory of the broker's jars, resolved with Maven on the first call."""
    lib = kafka_cache_dir(pom) / "lib"
    if lib.is_dir():
        return lib
    mvn = require_tools("mvn")["mvn"]
    lib.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="resolve-", dir=lib.parent))
    try:
        _copy_dependencies(mvn, pom, scratch, timeout_s)
        _move_into_place(scratch / "lib", lib)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return lib


def _copy_dependencies(mvn: str, pom: Path, scratch: Path, timeout_s: float) -> None:
    shutil.copyfile(pom, scratch / "pom.xml")
    # -U: ask again for artifacts that an earlier, failed attempt recorded as missing in ~/.m2
    command = [
        mvn, "-q", "-B", "-U", "-Dstyle.color=never", "-f", str(scratch / "pom.xml"),
        "dependency:copy-dependencies", f"-DoutputDirectory={scratch / 'lib'}",
    ]  # fmt: skip
    log.info("resolving Apache Kafka jars with Maven into %s", scratch)
    outcome = run_bounded(command, timeout_s=timeout_s, log_path=scratch / "mvn.log", cwd=scratch,
                          limit_name="resolve_timeout_s")
    if outcome != 0 or not any((scratch / "lib").glob("kafka_*.jar")):
        raise JarResolutionError(
            f"Maven could not resolve the Apache Kafka jars of {pom} ({describe(outcome)}): "
            f"{' '.join(command)}\n{log_tail(scratch / 'mvn.log', LOG_TAIL_LINES)}"
        )


def _move_into_place(resolved: Path, lib: Path) -> None:
    try:
        resolved.rename(lib)
    except OSError:
        if not lib.is_dir():  # else a concurrent resolution finished first: use its jars
            raise


# -- files ----------------------------------------------------------------


def new_cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 (never starting with '-')."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka's Uuid.randomUuid() avoids these too
            return cluster_id


def server_properties(host: str, port: int, controller_port: int, data_dir: Path) -> dict[str, str]:
    """``server.properties`` of a single KRaft node (combined mode) for tests."""
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(AUTO_CREATE_PARTITIONS),
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": str(INTERNAL_TOPIC_PARTITIONS),
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": str(INTERNAL_TOPIC_PARTITIONS),
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": str(GROUP_MIN_SESSION_TIMEOUT_MS),
        "message.max.bytes": str(MESSAGE_MAX_BYTES),
        "log.cleaner.dedupe.buffer.size": str(CLEANER_DEDUPE_BUFFER_BYTES),
    }


def write_properties(path: Path, properties: Mapping[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))


# -- the broker ---------------------------------------------------------


class ApacheKafka(BrokerProcess):
    """A single-node Apache Kafka (KRaft, combined mode) on free loopback ports.

    Use as a context manager, or call ``start()`` and ``stop()``::

        with ApacheKafka() as broker:
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

    Limits, all in seconds: ``resolve_timeout_s`` bounds the Maven resolution
    (first start only), ``format_timeout_s`` the storage format, ``start_timeout_s``
    one start attempt (spawn until a metadata request succeeds); ``stop_grace_s``
    is how long ``stop()`` waits after SIGTERM before SIGKILL, ``kill_timeout_s``
    the wait after SIGKILL. ``work_root`` is where the temporary directory
    (storage, configuration, log) is made (default: the system's temp dir).
    """

    display_name = "Apache Kafka"
    process_name = "Kafka"
    log_file_name = LOG_FILE_NAME
    attempt_marker = ATTEMPT_MARKER
    port_in_use_markers = PORT_IN_USE_MARKERS
    probe_client_id = "apache-kafka-probe"
    probe_interval_s = PROBE_INTERVAL_S
    probe_timeout_ms = PROBE_TIMEOUT_MS

    def __init__(
        self,
        *,
        host: str = LOOPBACK_HOST,
        port: int | None = None,
        work_root: str | os.PathLike[str] | None = None,
        pom: str | os.PathLike[str] = POM_PATH,
        resolve_timeout_s: float = RESOLVE_TIMEOUT_S,
        format_timeout_s: float = FORMAT_TIMEOUT_S,
        start_timeout_s: float = START_TIMEOUT_S,
        stop_grace_s: float = STOP_GRACE_S,
        kill_timeout_s: float = KILL_TIMEOUT_S,
        port_attempts: int = PORT_ATTEMPTS,
        heap_max_mb: int = HEAP_MAX_MB,
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.work_root = Path(work_root) if work_root is not None else None
        self.pom = Path(pom)
        self.resolve_timeout_s = resolve_timeout_s
        self.format_timeout_s = format_timeout_s
        self.start_timeout_s = start_timeout_s
        self.stop_grace_s = stop_grace_s
        self.kill_timeout_s = kill_timeout_s
        self.port_attempts = 1 if port is not None else max(1, port_attempts)
        self.heap_max_mb = heap_max_mb
        self.extra_properties = dict(extra_properties or {})
        self.port: int | None = None
        self.controller_port: int | None = None
        self.cluster_id: str | None = None
        self.work_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # -- public API -----------------------------------------------------

    def start(self) -> ApacheKafka:
        """Resolve the jars if needed, format storage, spawn Kafka; return once it answers."""
        self._refuse_restart()
        java = require_tools("java", *(() if cached_jars(self.pom) else ("mvn",)))["java"]
        lib = resolve_jars(self.pom, timeout_s=self.resolve_timeout_s)
        self.work_dir = Path(tempfile.mkdtemp(prefix="apache-kafka-", dir=self.work_root))
        self._start_guarded(self._start_with_retries, java, lib)
        return self

    # -- starting -------------------------------------------------------

    def _start_with_retries(self, java: str, lib: Path) -> None:
        """Try up to ``port_attempts`` port pairs; only a lost port race is retried."""
        self._path(LOG4J_FILE_NAME).write_text(LOG4J_CONFIG)
        for attempt in range(1, self.port_attempts + 1):
            self.port = self.requested_port or find_free_port(self.host)
            self.controller_port = find_free_port(self.host)
            self._configure_and_format(java, lib)
            self._process = self._spawn(java, lib)
            try:
                self._wait_until_ready()
                return
            except ApacheKafkaStartError:
                self._terminate(self._process)
                self._process = None
                if attempt == self.port_attempts or not self._lost_port_race():
                    raise
                log.info("port %s or %s was taken, retrying", self.port, self.controller_port)

    def _configure_and_format(self, java: str, lib: Path) -> None:
        """Write ``server.properties`` and format a fresh, empty storage directory."""
        data_dir = self._path(DATA_DIR_NAME)
        shutil.rmtree(data_dir, ignore_errors=True)
        properties = server_properties(self.host, self.port, self.controller_port, data_dir)  # type: ignore[arg-type]
        write_properties(self._path(PROPERTIES_FILE_NAME), properties | self.extra_properties)
        self.cluster_id = new_cluster_id()
        command = [
            *self._java_command(java, lib, SHORT_LIVED_JVM_OPTIONS), STORAGE_TOOL_CLASS, "format",
            "-t", self.cluster_id, "-c", str(self._path(PROPERTIES_FILE_NAME)), "--standalone",
        ]  # fmt: skip
        self._mark_attempt("formatting storage")
        outcome = run_bounded(command, timeout_s=self.format_timeout_s, log_path=self._path(LOG_FILE_NAME),
                              cwd=self.work_dir, limit_name="format_timeout_s")  # type: ignore[arg-type]
        if outcome != 0:
            raise self._start_error(f"storage format failed ({describe(outcome)})")

    def _spawn(self, java: str, lib: Path) -> subprocess.Popen[bytes]:
        command = [*self._java_command(java, lib), BROKER_MAIN_CLASS, str(self._path(PROPERTIES_FILE_NAME))]
        self._mark_attempt("broker")
        return spawn(command, log_path=self._path(LOG_FILE_NAME), cwd=self.work_dir)

    def _java_command(self, java: str, lib: Path, options: Sequence[str] = ()) -> list[str]:
        return [
            java, *options,
            f"-Xms{min(HEAP_INITIAL_MB, self.heap_max_mb)}m", f"-Xmx{self.heap_max_mb}m",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self._path(LOG4J_FILE_NAME)}",
            "-cp", str(lib / "*"),
        ]  # fmt: skip

    def _mark_attempt(self, what: str) -> None:
        with open(self._path(LOG_FILE_NAME), "a") as log_file:
            log_file.write(f"{ATTEMPT_MARKER}{self.host}:{self.port} "
                           f"(controller {self.controller_port}): {what} ---\n")

    def _path(self, name: str) -> Path:
        if self.work_dir is None:
            raise RuntimeError("Apache Kafka has no working directory (not started)")
        return self.work_dir / name

    def _start_error(self, what: str) -> ApacheKafkaStartError:
        """The error to raise, with the attempt's first errors (the tail is often shutdown noise)."""
        errors = [line for line in self._latest_attempt_log().splitlines() if ERROR_LINE.search(line)]
        first = "\n".join(errors[:ERROR_LINES_MAX]) or "<none>"
        return ApacheKafkaStartError(
            f"Apache Kafka on {self.host}:{self.port} {what}; first errors:\n{first}\n"
            f"log {self.log_path}, last lines:\n{log_tail(self.log_path, LOG_TAIL_LINES)}"
        )


# -- command line -------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Warm the jar cache (``--resolve-only``) or run Kafka until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m streams.devkit.apache_kafka", description=main.__doc__)
    parser.add_argument("--resolve-only", action="store_true", help="resolve the jars, print their directory")
    parser.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the readiness probe's client
    if args.resolve_only:
        print(resolve_jars())
        return 0
    with ApacheKafka(port=args.port) as broker:
        print(f"Apache Kafka {pom_kafka_version()} on {broker.bootstrap_servers} "
              f"(pid {broker.pid}, log {broker.log_path}); Ctrl-C stops it", flush=True)
        try:
            while broker.is_running:
                time.sleep(PROBE_INTERVAL_S)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
