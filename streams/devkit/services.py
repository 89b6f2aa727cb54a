"""Start the embedded broker and PostgreSQL unless real ones are configured.

Same code path as production: only the connection settings differ. The
embedded ones live in temporary directories removed at exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Iterator

from streams.devkit.embedded_postgres import EmbeddedPostgres
from streams.devkit.embedded_broker import EmbeddedBroker
from ledger.settings import STACK_ENV_FILE_NAME, env_file_text
from streams.settings import Settings

log = logging.getLogger(__name__)

STORE_KEY_HEX_CHARS = 12


def stack_store_dir(stack_dir: Path) -> Path:
    """Where ``loyalty up`` or ``loyalty demo`` run with ``stack_dir`` keeps its embedded PostgreSQL.

    Under the system's temp directory, named after ``stack_dir``'s absolute
    path: when running as root, PostgreSQL runs as a service user that must
    be able to enter every parent directory, and a checkout under ``/root``
    (mode 0700) would refuse it. Same ``stack_dir``, same store (so
    ``loyalty up --dir .loyalty-demo`` reopens the demo's store).
    """
    key = hashlib.sha256(str(stack_dir.resolve()).encode("utf-8")).hexdigest()[:STORE_KEY_HEX_CHARS]
    return Path(tempfile.gettempdir()) / f"loyalty-demo-{key}" / "postgres"


@contextlib.contextmanager
def running_services(settings: Settings, postgres_dir: Path | None = None) -> Iterator[Settings]:
    """Yield settings whose bootstrap servers and database URL point at running services.

    ``postgres_dir`` keeps the embedded PostgreSQL's data there (the demo's
    store, reopened by later commands); without it a temporary one is used.
    """
    with contextlib.ExitStack() as stack:
        bootstrap = settings.bootstrap_servers
        if not bootstrap:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap_servers
            log.info("embedded broker on %s", bootstrap)
        database_url = settings.database_url
        if not database_url:
            database_url = stack.enter_context(EmbeddedPostgres(postgres_dir)).settings.url
            log.info("embedded PostgreSQL at %s", database_url)
        yield settings.with_services(bootstrap, database_url)


BROKERS = ("embedded", "kafka")


def broker_class(name: str = "embedded") -> type:
    """The dev kit's broker launcher by name: ``embedded`` (tansu, topics in memory) or
    ``kafka`` (Apache Kafka from ``streams/devkit/apache_kafka.py``, fresh at each start)."""
    if name == "kafka":
        from streams.devkit.apache_kafka import ApacheKafka  # needs java and mvn: loaded only when asked

        return ApacheKafka
    if name != "embedded":
        raise ValueError(f"unknown broker {name!r}; known: {', '.join(BROKERS)}")
    return EmbeddedBroker


def stack_env(settings: Settings) -> dict[str, str]:
    """What a stack's ``DIR/env`` exports: where the broker and the event store are, and the
    program file it runs when not the built-in one (its campaigns, for `verify` and `member`)."""
    program = {"LOYALTY_PROGRAM_FILE": str(settings.program_file)} if settings.program_file else {}
    return {"LOYALTY_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "LOYALTY_DATABASE_URL": settings.database_url,
            "LOYALTY_PARTITIONS": str(settings.partitions)} | program


@contextlib.contextmanager
def stack_env_file_written(stack_dir: Path, exports: Settings | dict[str, str]) -> Iterator[Path]:
    """``stack_dir/env`` for commands run from the same directory, removed when the stack stops.

    ``exports``: the variables, or settings whose ``stack_env`` they are. The file is
    readable by its owner only (``loyalty up`` puts its API key there)."""
    path = stack_dir / STACK_ENV_FILE_NAME
    variables = exports if isinstance(exports, dict) else stack_env(exports)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(env_file_text(variables), encoding="utf-8")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
