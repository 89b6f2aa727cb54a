"""A catch-up transaction's statements for every read model at once: fewer round trips.

Issue 21: a live follower's transaction of 2 facts made about 30 round trips
to PostgreSQL (a ``set_config``, a position lock per read model, a read per
table, an upsert per changed table, a tracking insert per read model), and on
a busy 2-core box each one waits its turn for a core. With
``read_models_combine_statements`` (the default) ``projections.runner``
sends them as:

- ``lock_positions``: ONE statement that sets the transaction's settings
  (``set_config(..., true)``: ``SET LOCAL``) and locks and reads every read
  model's position row (one scalar ``SELECT ... FOR UPDATE`` per read model,
  in the same order as the one-by-one locks, so the two designs never
  deadlock each other);
- the reads of every read model in one pipeline (``projections.rows.ReadQueue``);
- ``write_together``: ONE statement whose data-modifying ``WITH`` queries are
  every read model's upserts and deletes and their tracking updates
  (an ordinary query, not pipeline mode, so no size limit applies to it).

The rows and the positions written are exactly those of the one-by-one
design, in the same transaction: exactly-once holds as before. The queries
are composed with ``psycopg.sql`` (names as ``Identifier``s, never run-time
text) around statements rendered once (``rows.rendered``), so only the small
outer query is rendered at each execute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError
from psycopg import Cursor
from psycopg.sql import SQL, Identifier

from projections.base import APPLICATION_NAME, ReadModelRecorder
from projections.rows import Statement, rendered


def lock_positions(cursor: Cursor, views: Mapping[str, ReadModelRecorder],
                   local_settings: Mapping[str, str]) -> dict[str, int]:
    """Set ``local_settings`` for this transaction, lock every view's position row and return
    the positions: one statement."""
    configs = [SQL("set_config(%s, %s, true) AS {}").format(Identifier(f"setting_{n}"))
               for n in range(len(local_settings))]
    locks = [SQL("({}) AS {}").format(SQL(rendered(view.lock_position_statement)),
                                      Identifier(f"position_{n}"))
             for n, view in enumerate(views.values())]
    params = [value for pair in local_settings.items() for value in pair]
    params += [APPLICATION_NAME] * len(views)
    query = SQL("SELECT {}").format(SQL(", ").join(configs + locks))
    row = cursor.execute(query, params).fetchone()
    positions = {name: row[f"position_{n}"] for n, name in enumerate(views)}
    missing = [name for name, position in positions.items() if position is None]
    assert not missing, f"no position row for {missing}"
    return positions


def write_together(cursor: Cursor, writes: Sequence[Statement],
                   tracking: Mapping[str, Statement]) -> None:
    """Run ``writes`` (upserts, deletes) and the ``tracking`` updates (by read model) as one
    statement; raises ``IntegrityError`` if a read model's position did not move forward
    (as eventsourcing's tracking insert does)."""
    if not writes and not tracking:
        return
    parts = [SQL("{} AS ({})").format(Identifier(f"write_{n}"), SQL(rendered(statement)))
             for n, (statement, _) in enumerate(writes)]
    parts += [SQL("{} AS ({})").format(Identifier(f"tracked_{n}"), SQL(rendered(statement)))
              for n, (statement, _) in enumerate(tracking.values())]
    counts = [SQL("(SELECT count(*) FROM {name}) AS {name}").format(name=Identifier(f"tracked_{n}"))
              for n in range(len(tracking))]
    params: list[Any] = [param for _, statement_params in (*writes, *tracking.values())
                         for param in statement_params]
    query = SQL("WITH {} SELECT {}").format(SQL(", ").join(parts),
                                          SQL(", ").join(counts) if counts else SQL("1"))
    row = cursor.execute(query, params).fetchone()
    not_moved = [name for n, name in enumerate(tracking) if row[f"tracked_{n}"] != 1]
    if not_moved:
        raise IntegrityError(f"Failed to record tracking for {not_moved}")
