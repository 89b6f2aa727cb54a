"""eventsourcing's PostgreSQL process recorder, without psycopg's pipeline mode.

``PostgresApplicationRecorder.insert_events`` sends the table lock, the
notification, the tracking upsert and one INSERT of every stored event in
psycopg's pipeline mode. With psycopg 3.3.9 (C and Python implementations
alike) and PostgreSQL 18, a pipelined query whose parameters exceed about
1 MB never completes: the server waits in ``ClientRead`` for the rest of the
message while the client waits in ``Pipeline.sync``. A partition batch of a
few thousand events reaches that size, and a writer that hangs forever is
the worst failure a ledger worker can have. This recorder runs the very same
statements in an ordinary transaction (the pipeline only saved a few round
trips per batch). Reproduction: ``tests/test_postgres_recorder.py``.
"""

from __future__ import annotations

from typing import Any, Sequence

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresProcessRecorder

TOPIC = "ledger.postgres_recorder:UnpipelinedProcessRecorder"


class UnpipelinedProcessRecorder(PostgresProcessRecorder):
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            self._insert_events(curs, stored_events, **kwargs)  # the tracking record
            if not stored_events:
                return None
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
