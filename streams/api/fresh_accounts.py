"""The till API's accounts kept between reads, brought up to date from the event store on every read.

A read of a member's current state costs, without this, the latest snapshot
plus every fact after it, decoded and folded (a few milliseconds of one
core). ``FreshAccounts`` keeps up to ``accounts_max`` accounts (least
recently read dropped first) and, on each read, asks the event store for the
member's facts after the kept version (one indexed query, nearly always
empty at a till) and applies them to the kept account: the answer is the
ledger's state at the moment of the read, as without the cache (the workers
are the only writers, facts are append-only, so a kept account can only be
behind, never wrong). The member document made from an account is kept with
it until a new fact arrives.

``NewerFacts`` is the fast path of the event loop: a kept document is the
answer as it stands when an indexed query on an async connection, started
after the request arrived, finds no fact of its member after the document's
version (no thread, no fold); any other case goes to the read threads.

Each kept account has its own lock: catching up, shaping the document and
reading its ``applied`` fingerprints happen under it (the fold mutates the
account in place). Callers get the kept document and must not change it.
Fold with ``fold_facts``, not eventsourcing's ``project_aggregate``: the
library's asserts a runtime ``Protocol`` check per fact, a quarter of a
member read's time in a profile.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from eventsourcing.application import AggregateNotFoundError
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from ledger.application import LoyaltyLedger
from ledger.domain import LoyaltyAccount, account_id

T = TypeVar("T")


def fold_facts(account: LoyaltyAccount | None, facts: Iterable[Any]) -> LoyaltyAccount | None:
    """``facts`` applied in order to ``account`` (eventsourcing's projector, without its check)."""
    for fact in facts:
        account = fact.mutate(account)
    return account


@dataclass
class Kept:
    lock: threading.RLock = field(default_factory=threading.RLock)  # reads may nest (outcome in recorded)
    account: LoyaltyAccount | None = None
    document: dict | None = None  # shaped from ``account`` at its version


class FreshAccounts:
    def __init__(self, ledger: LoyaltyLedger, accounts_max: int) -> None:
        self.ledger = ledger
        self.accounts_max = accounts_max
        self._kept: OrderedDict[str, Kept] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, member_id: str, function: Callable[[Kept], T]) -> T | None:
        """``function(kept)`` on the member's up-to-date account, under its lock; None when
        the member has no fact."""
        kept = self._entry(member_id)
        with kept.lock:
            if not self._catch_up(member_id, kept):
                self._forget(member_id, kept)
                return None
            return function(kept)

    def _catch_up(self, member_id: str, kept: Kept) -> bool:
        if kept.account is None:
            try:
                kept.account = self.ledger.repository.get(account_id(member_id), projector_func=fold_facts)
            except AggregateNotFoundError:
                return False
            return True
        facts = list(self.ledger.events.get(account_id(member_id), gt=kept.account.version))
        if facts:
            kept.account = fold_facts(kept.account, facts)
            kept.document = None
        return True

    def peek_document(self, member_id: str) -> dict | None:
        """The member's kept document, as it is (maybe behind), or None when none is kept."""
        kept = self._kept.get(member_id)  # a dict read: atomic; no order update for a peek
        return None if kept is None else kept.document

    def _entry(self, member_id: str) -> Kept:
        with self._lock:
            kept = self._kept.get(member_id)
            if kept is None:
                kept = self._kept[member_id] = Kept()
                if len(self._kept) > self.accounts_max:
                    self._kept.popitem(last=False)
            else:
                self._kept.move_to_end(member_id)
            return kept

    def _forget(self, member_id: str, kept: Kept) -> None:
        with self._lock:
            if self._kept.get(member_id) is kept:
                del self._kept[member_id]


class NewerFacts:
    """Whether accounts have facts after given versions, asked on the event loop.

    Lookups arriving together share one query (``ANY`` of their accounts, at
    most ``batch_accounts_max`` a query): a single task drains the waiting
    questions, so while one query runs the next batch gathers. Each answer
    comes from a query that started after its question was asked.
    """

    def __init__(self, pool: AsyncConnectionPool, schema: str, events_table: str,
                 batch_accounts_max: int) -> None:
        self.pool = pool
        self.batch_accounts_max = batch_accounts_max
        self._statement = sql.SQL("SELECT originator_id, max(originator_version) FROM {} "
                                  "WHERE originator_id = ANY(%s) GROUP BY originator_id"
                                  ).format(sql.Identifier(schema, events_table))
        self._asked: list[tuple[Any, int, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None

    async def after(self, member_id: str, version: int) -> bool:
        answer = asyncio.get_running_loop().create_future()
        self._asked.append((account_id(member_id), version, answer))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await answer

    async def _drain(self) -> None:
        while self._asked:
            batch = self._asked[:self.batch_accounts_max]
            del self._asked[:self.batch_accounts_max]
            try:
                latest = await self._latest_versions([originator for originator, _, _ in batch])
            except Exception as error:  # noqa: BLE001 - each asker gets the database's error
                _answer_all(batch, error)
                continue
            for originator, version, answer in batch:
                if not answer.done():
                    answer.set_result(latest.get(originator, 0) > version)

    async def _latest_versions(self, originators: list) -> dict:
        async with self.pool.connection() as connection:
            cursor = await connection.execute(self._statement, (list(set(originators)),))
            return dict(await cursor.fetchall())


def _answer_all(batch: list, error: Exception) -> None:
    for _, _, answer in batch:
        if not answer.done():
            answer.set_exception(error)
