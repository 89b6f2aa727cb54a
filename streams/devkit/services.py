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
from streams.settings import Settings

log = logging.getLogger(__name__)

DEMO_KEY_HEX_CHARS = 12


DEMO_DIR = Path(".loyalty-demo")


def demo_store_dir(demo_dir: Path = DEMO_DIR) -> Path:
    """Where the demo run from ``demo_dir`` keeps its embedded PostgreSQL.

    Under the system's temp directory, named after ``demo_dir``'s absolute
    path: when running as root, PostgreSQL runs as a service user that must
    be able to enter every parent directory, and a checkout under ``/root``
    (mode 0700) would refuse it. Same ``demo_dir``, same store.
    """
    key = hashlib.sha256(str(demo_dir.resolve()).encode("utf-8")).hexdigest()[:DEMO_KEY_HEX_CHARS]
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


def demo_store_url(demo_dir: Path = DEMO_DIR) -> str | None:
    """Start the demo's embedded store (left by ``loyalty demo``) for this process.

    Returns its URL, or None when no demo ran from ``demo_dir``. The server
    stops when the process exits.
    """
    store_dir = demo_store_dir(demo_dir)
    if not (store_dir / "data" / "PG_VERSION").exists():
        return None
    server = EmbeddedPostgres(store_dir).start()
    log.info("reopened the demo's store in %s", store_dir)
    return server.settings.url
