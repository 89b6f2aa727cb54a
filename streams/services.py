"""Start the embedded broker and PostgreSQL unless real ones are configured.

Same code path as production: only the connection settings differ. The
embedded ones live in temporary directories removed at exit.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from ledger.embedded_postgres import EmbeddedPostgres
from streams.embedded_broker import EmbeddedBroker
from streams.settings import Settings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def running_services(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose bootstrap servers and database URL point at running services."""
    with contextlib.ExitStack() as stack:
        bootstrap = settings.bootstrap_servers
        if not bootstrap:
            bootstrap = stack.enter_context(EmbeddedBroker()).bootstrap_servers
            log.info("embedded broker on %s", bootstrap)
        database_url = settings.database_url
        if not database_url:
            database_url = stack.enter_context(EmbeddedPostgres()).settings.url
            log.info("embedded PostgreSQL at %s", database_url)
        yield settings.with_services(bootstrap, database_url)
