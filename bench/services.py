"""The broker and PostgreSQL the benchmark runs against, and machine facts.

The broker is the embedded one (tansu, memory only) or, with ``--broker
kafka``, Apache Kafka from the dev kit's launcher (one KRaft node,
``streams/devkit/apache_kafka.py``), the same the tests' kafka lane uses.

Every measured run gets a database of its own on the one PostgreSQL server and
topics of its own on the one broker (except the pre-loaded inbound topic it
reads), so no run sees another's facts, credits or consumer group.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import psutil
import psycopg
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.devkit.apache_kafka import ApacheKafka, pom_kafka_version
from streams.devkit.embedded_broker import EmbeddedBroker, resolve_tansu_binary
from streams.settings import Settings
from streams.topics import ADMIN_REQUEST_TIMEOUT_MS, ensure_topics

BROKER_STOP_GRACE_S = 2.0  # memory-only broker: nothing to save on exit
EMBEDDED_BROKER = "embedded"
KAFKA_BROKER = "kafka"
BROKERS = (EMBEDDED_BROKER, KAFKA_BROKER)
VERSION_PROBE_TIMEOUT_S = 10
REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("eventsourcing", "faust-streaming", "aiokafka", "kafka-python", "psycopg", "orjson",
            "jsonschema-rs")


class BenchServices:
    """A started broker and PostgreSQL; fresh databases and topic names per run."""

    def __init__(self, durable: bool, base: Settings, broker: str = EMBEDDED_BROKER) -> None:
        self.durable = durable
        self.base = base
        self.broker_kind = broker
        self.broker = ApacheKafka() if broker == KAFKA_BROKER else EmbeddedBroker(stop_grace_s=BROKER_STOP_GRACE_S)
        self.postgres = EmbeddedPostgres(durable=durable)

    def __enter__(self) -> "BenchServices":
        self.broker.start()
        try:
            self.postgres.start()
        except BaseException:
            self.broker.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.postgres.stop()
        finally:
            self.broker.stop()

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def database(self, label: str) -> str:
        """The URL of a new, empty database named after ``label``."""
        name = "bench_" + re.sub(r"[^a-z0-9]+", "_", label.lower())
        self.postgres.drop_database(name)
        return self.postgres.create_database(name).url

    def drop(self, url: str) -> None:
        """Drop a run's database once its figures are taken (disk stays bounded)."""
        self.postgres.drop_database(unquote(urlsplit(url).path.lstrip("/")))

    def settings(self, label: str, events_topic: str, **overrides: Any) -> Settings:
        """Settings for one run: its own database, consumer group and output topics."""
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower())
        settings = replace(
            self.base, bootstrap_servers=self.bootstrap_servers, database_url=self.database(label),
            events_topic=events_topic, credits_topic=f"bench.{slug}.credits",
            ledger_topic=f"bench.{slug}.ledger", tier_changes_topic=f"bench.{slug}.tier-changes",
            dead_letter_topic=f"bench.{slug}.dead-letter", consumer_group=f"bench-{slug}",
            **overrides)
        ensure_topics(settings)
        return settings

    def create_topic(self, name: str) -> None:
        """A topic with the configured partitions (for a pre-loaded inbound stream)."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers,
                                 request_timeout_ms=ADMIN_REQUEST_TIMEOUT_MS, client_id="loyalty-bench")
        try:
            admin.create_topics([NewTopic(name=name, num_partitions=self.base.partitions,
                                          replication_factor=self.base.replication_factor)])
        finally:
            admin.close()

    def service_pids(self) -> dict[str, int]:
        return {"postgresql": self.postgres.pid, "broker": self.broker.pid}


def machine_facts(services: BenchServices) -> dict[str, Any]:
    with psycopg.connect(services.postgres.settings.url) as connection:
        server_version = connection.execute("SHOW server_version").fetchone()[0]
    return {
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "cpu_model": _cpu_model(),
        "memory_gb": psutil.virtual_memory().total / 1e9,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": server_version,
        "postgresql_durability": ("durable: fsync on" if services.durable
                                  else "not durable: fsync, synchronous_commit, full_page_writes off"),
        "broker": _kafka_version() if services.broker_kind == KAFKA_BROKER else _tansu_version(),
        "packages": {name: version(name) for name in PACKAGES},
        "commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tansu_version() -> str:
    output = subprocess.run([resolve_tansu_binary(), "--version"], capture_output=True, text=True,
                            timeout=VERSION_PROBE_TIMEOUT_S, check=False).stdout.strip()
    return f"{output or 'tansu (unknown version)'} (embedded, memory storage)"


def _kafka_version() -> str:
    return f"Apache Kafka {pom_kafka_version()} (one KRaft node, streams/devkit/apache_kafka.py)"


def _git_commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=VERSION_PROBE_TIMEOUT_S, check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def cpu_seconds(pids: dict[str, int], worker_pids: list[int]) -> dict[str, float]:
    """CPU seconds so far of each part (the services, the workers, this process) and of
    the whole box (``box``: every busy CPU, whoever used it)."""
    sample = {name: _tree_cpu_s(pid) for name, pid in pids.items()}
    sample["workers"] = sum(_tree_cpu_s(pid) for pid in worker_pids)
    sample["bench"] = _tree_cpu_s(os.getpid(), children=False)
    box = psutil.cpu_times()
    sample["box"] = box.user + box.nice + box.system + getattr(box, "irq", 0.0) \
        + getattr(box, "softirq", 0.0) + getattr(box, "steal", 0.0)
    return sample


def cores_used(before: dict[str, float], after: dict[str, float], elapsed_s: float) -> dict[str, float]:
    """Cores each part kept busy on average between two samples (1.0 = one core);
    ``other``: what the box spent on processes that are not the benchmark's."""
    used = {name: round((after[name] - before[name]) / elapsed_s, 3) for name in after}
    used["other"] = round(max(used["box"] - sum(v for k, v in used.items() if k != "box"), 0.0), 3)
    return used


def background_cores(seconds: float) -> float:
    """Cores kept busy by whatever runs on the box, over ``seconds`` before measuring."""
    before = cpu_seconds({}, [])
    time.sleep(seconds)
    after = cpu_seconds({}, [])
    return round((after["box"] - before["box"]) / seconds, 3)


def _tree_cpu_s(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of a process, its live children and those it reaped.

    PostgreSQL's backends come and go: the postmaster's ``children_*`` times
    hold the ones that exited.
    """
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system
        if not children:
            return total
        total += times.children_user + times.children_system
        live = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for process in live:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total
