"""The ledger's log: every committed fact in commit order, read one way.

``FactLog`` (``LoyaltyLedger.fact_log``) is how anything outside the ledger
reads the event store's notification log; it decodes what
``ledger.postgres.log_reader`` reads (on PostgreSQL with its own queries, on
the in-memory store through ``select_notifications``) with the ledger's
mapper, upcasters included. A position is a notification id: 0 is before
the first fact, ``head()`` the last committed one.

- ``next_facts``: at most ``limit`` facts after a position, with their ids;
  ``next_stored`` the same not decoded (the outbox relay's batch, which
  decodes with ``decode`` only what ``ledger.stored_wire`` cannot publish as
  stored);
- ``facts``: every fact (of some topics) after a position up to a stop (the
  head when it starts), read a bounded range of ids at a time with the next
  range read ahead (exports, the year-end job, ``loyalty process``'s files);
- ``chunks``: the same ranges cut into windows (one read-model transaction
  each), with each fact's id (the projections' catch-up), optionally only
  one ``Shard`` of the accounts (a process of a split replay);
- ``count``, ``latest``, ``versions_at``: figures of the log (``process``'s
  end condition, the demo's dashboard, ``verify``).

Topics are eventsourcing's (``get_topic`` of a fact class); ``None`` means
every topic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper, StoredEvent

from ledger.postgres.log_reader import LogReader, Shard, read_log

FACTS_PAGE_NOTIFICATIONS_MAX_DEFAULT = 2_000  # ids per read of ``facts`` unless told otherwise


@dataclass(frozen=True)
class FactChunk:
    """Facts after the previous chunk up to position ``last`` (``ids``: their positions);
    ``ends_window``: the caller's transaction ends with this chunk."""

    ids: list[int]
    facts: list[Any]
    last: int
    ends_window: bool


class FactLog:
    """The committed facts of one ledger, decoded."""

    def __init__(self, recorder: ApplicationRecorder, mapper: Mapper) -> None:
        self.reader = LogReader(recorder)
        self.recorder = recorder
        self.to_fact = mapper.to_domain_event

    def head(self) -> int:
        """The position of the last committed fact (0: none yet)."""
        return self.recorder.max_notification_id() or 0

    def next_facts(self, position: int, limit: int) -> list[tuple[int, Any]]:
        """``(position, fact)`` of at most ``limit`` facts after ``position``, every topic."""
        return [(id_, self.to_fact(stored)) for id_, stored in self.reader.read_next(position, limit)]

    def next_stored(self, position: int, limit: int) -> list[tuple[int, StoredEvent]]:
        """``next_facts`` not decoded: ``(position, stored fact)``."""
        return self.reader.read_next(position, limit)

    def decode(self, stored: StoredEvent) -> Any:
        """One stored fact as its domain event (the mapper's upcasters included)."""
        return self.to_fact(stored)

    def facts(self, position: int = 0, *, topics: Sequence[str] | None = None,
              stop: int | None = None,
              page_notifications_max: int = FACTS_PAGE_NOTIFICATIONS_MAX_DEFAULT) -> Iterator[Any]:
        """The facts of ``topics`` after ``position`` up to ``stop`` (the head now), in order."""
        stop = self.head() if stop is None else stop
        if stop <= position:
            return
        chunks = read_log(self.reader, position, stop, topics,
                          window_notifications_max=page_notifications_max,
                          chunk_notifications_max=page_notifications_max)
        with closing(chunks):
            for chunk in chunks:
                yield from (self.to_fact(stored) for _, stored in chunk.notifications)

    def chunks(self, position: int, stop: int, topics: Sequence[str] | None, *,
               window_notifications_max: int, chunk_notifications_max: int,
               shard: Shard | None = None) -> Iterator[FactChunk]:
        """``facts`` in chunks of at most ``chunk_notifications_max`` ids, cut into windows of
        at most ``window_notifications_max`` facts; with a ``shard``, only the facts of its
        accounts (a split replay's process). Close it if you stop early."""
        chunks = read_log(self.reader, position, stop, topics,
                          window_notifications_max=window_notifications_max,
                          chunk_notifications_max=chunk_notifications_max, shard=shard)
        with closing(chunks):
            for chunk in chunks:
                yield FactChunk([id_ for id_, _ in chunk.notifications],
                                [self.to_fact(stored) for _, stored in chunk.notifications],
                                chunk.last, chunk.ends_window)

    def count(self, topics: Sequence[str]) -> dict[str, int]:
        """How many facts of each of ``topics`` the log holds."""
        return self.reader.count(topics)

    def latest(self, topics: Sequence[str], limit: int) -> list[Any]:
        """The ``limit`` newest facts of ``topics``, newest first."""
        return [self.to_fact(stored) for _, stored in self.reader.latest(topics, limit)]

    def versions_at(self, position: int, topics: Sequence[str]) -> dict[str, int]:
        """Each aggregate's version at ``position`` among the facts of ``topics``, by id (str)."""
        return self.reader.versions_at(position, topics)
