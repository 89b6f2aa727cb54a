"""Wake the requests waiting for a member's outcome when the ledger commits facts of that member.

eventsourcing's PostgreSQL recorder sends ``NOTIFY <events table>`` in every
transaction that inserts facts (the workers' batch commits included), and the
table lock it takes makes notification ids commit in order. ``FactWakeups``
keeps one ``LISTEN`` connection and one query connection (psycopg's async
connections: nothing blocks the event loop). After each notification (or
``recheck_interval_ms`` without one) it reads which accounts got facts after
the last notification id it saw, one query for all waiters, and sets the
event of each waiter whose account is among them. A waiter re-reads its
member's facts when woken, and at least every ``recheck_interval_ms`` even
if no notification comes (a lost ``LISTEN`` connection delays an answer, it
never loses one).

A waiter registers (``watch``) before it first reads its member's facts, so
a commit it has not read yet is always either visible to that first read or
announced afterwards. When the ``LISTEN`` connection (re)opens, every waiter
is woken once after the first scan: a commit made while no one listened is
visible to that re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from uuid import UUID

import psycopg
from psycopg import sql

LOGGER = logging.getLogger(__name__)
RECONNECT_DELAY_MS = 1000  # after the LISTEN or query connection failed


class FactWakeups:
    def __init__(self, database_url: str, schema: str, events_table: str, channel: str,
                 recheck_interval_ms: int) -> None:
        self.database_url = database_url
        self.channel = channel
        self.recheck_interval_ms = recheck_interval_ms
        table = sql.Identifier(schema, events_table)
        self._changed = sql.SQL("SELECT originator_id, max(notification_id) FROM {} "
                                "WHERE notification_id > %s GROUP BY originator_id").format(table)
        self._last_id = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(table)
        self._waiters: dict[UUID, set[asyncio.Event]] = defaultdict(set)
        self._seen_id: int | None = None
        self._task: asyncio.Task | None = None
        self.listening = asyncio.Event()  # set while the LISTEN connection is up

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fact-wakeups")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def watch(self, originator_id: UUID) -> Iterator[asyncio.Event]:
        """An event set whenever facts of ``originator_id`` are committed, while in the block."""
        woken = asyncio.Event()
        self._waiters[originator_id].add(woken)
        try:
            yield woken
        finally:
            waiters = self._waiters[originator_id]
            waiters.discard(woken)
            if not waiters:
                del self._waiters[originator_id]

    async def wait(self, woken: asyncio.Event, timeout_s: float) -> None:
        """Until ``woken`` is set or ``min(timeout_s, recheck_interval_ms)`` has passed; cleared."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(woken.wait(), min(timeout_s, self.recheck_interval_ms / 1000))
        woken.clear()

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as error:
                self.listening.clear()
                LOGGER.warning("ledger notifications lost (%s); waiting requests re-read every %d ms "
                               "until reconnected", type(error).__name__, self.recheck_interval_ms)
                self._seen_id = None
                self._wake_all()
                await asyncio.sleep(RECONNECT_DELAY_MS / 1000)

    async def _listen(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as listener, \
                await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as reader:
            await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            await self._scan(reader)
            self._wake_all()  # a commit before the first scan is visible to this re-read
            self.listening.set()
            while True:
                async for _ in listener.notifies(timeout=self.recheck_interval_ms / 1000, stop_after=1):
                    break
                await self._scan(reader)

    async def _scan(self, reader: psycopg.AsyncConnection) -> None:
        if self._seen_id is None or not self._waiters:
            self._seen_id = (await (await reader.execute(self._last_id)).fetchone())[0]
            return
        rows = await (await reader.execute(self._changed, (self._seen_id,))).fetchall()
        for originator_id, notification_id in rows:
            self._seen_id = max(self._seen_id, notification_id)
            for woken in self._waiters.get(originator_id, ()):
                woken.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for woken in waiters:
                woken.set()
