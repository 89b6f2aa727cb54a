"""Campaign budgets in PostgreSQL: exact across workers (CONTRACT section 12).

The table ``loyalty_campaign_budgets`` (``campaign_id``, ``awarded_points``)
sits beside the event store and is created with it. A batch that may touch
budgeted campaigns opens its transaction first and reads exactly those
budgets, without locking them; decides its accounts with what they have
left; then ``confirm`` takes their row locks (``SELECT ... FOR UPDATE``, in
campaign-id order, so two batches never deadlock on them) and checks the
decisions against what the budgets hold now (``BudgetBook.stands_with``).
When another batch committed meanwhile spending that changes nothing here
(the usual case: budgets far from empty), the decisions stand; otherwise the
batch decides again, holding the locks, with what is left. Then the facts,
the tracking rows and the budgets' new totals are written in that same
transaction (``UnpipelinedProcessRecorder.insert_events`` with
``BUDGET_SESSION``). So a budget is never overspent (the totals are written
under the locks, from decisions checked under them), never double-counted
when a batch is redelivered (the budget is written with the tracking rows
that make the redelivery a no-op, or not at all), and a budget conflict is a
wait on a row lock or a second decision, never a failed batch (it does not
count against ``ledger_attempts_max``). Batches touching the same budgets
decide at the same time and queue only for their writes, which the event
store's table lock queues anyway: the budget locks are taken before it, by
every writer in that order. When a budget runs out, the batch that takes the
budget locks first (after deciding) is served first.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from psycopg.sql import SQL, Identifier

from ledger.campaign_budgets import BudgetBook

BUDGETS_TABLE = "loyalty_campaign_budgets"
SELECT_BUDGETS = ("SELECT campaign_id, awarded_points FROM {} "
                  "WHERE campaign_id = ANY(%s) ORDER BY campaign_id")
LOCK_BUDGETS = ("SELECT campaign_id, awarded_points FROM {} "
                "WHERE campaign_id = ANY(%s) ORDER BY campaign_id FOR UPDATE")
BUDGET_SESSION = "budget_session"  # insert_events keyword: the open transaction holding the locks
# The budget transaction is idle while the batch's accounts load and decide (eventsourcing's
# idle-in-transaction timeout is 5 s); a stalled holder still frees the locks after this long.
BUDGET_TRANSACTION_IDLE_TIMEOUT_MS = 30_000
IDLE_TIMEOUT_STATEMENT = "SELECT set_config('idle_in_transaction_session_timeout', %s, true)"


def create_statement(schema: str) -> SQL:
    return SQL("CREATE TABLE IF NOT EXISTS {schema}.{table} ("
               "campaign_id text PRIMARY KEY, "
               "awarded_points bigint NOT NULL DEFAULT 0 CHECK (awarded_points >= 0))"
               ).format(schema=Identifier(schema), table=Identifier(BUDGETS_TABLE))


class BudgetSession:
    """An open transaction holding the row locks of a batch's budgets."""

    def __init__(self, stack: ExitStack, cursor: Any, schema: str) -> None:
        self.stack, self.cursor, self.schema = stack, cursor, schema
        self.open = True

    def read(self, campaign_ids: Sequence[str]) -> dict[str, int]:
        """Create missing rows, return the rows' awarded points (no lock on existing rows)."""
        self.cursor.execute(IDLE_TIMEOUT_STATEMENT, (f"{BUDGET_TRANSACTION_IDLE_TIMEOUT_MS}ms",))
        self.cursor.execute(SQL("INSERT INTO {} (campaign_id) SELECT unnest(%s::text[]) "
                                "ON CONFLICT (campaign_id) DO NOTHING").format(self._table()),
                            (sorted(campaign_ids),))
        return self._select(SELECT_BUDGETS, campaign_ids)

    def lock(self, campaign_ids: Sequence[str]) -> dict[str, int]:
        """Lock the rows in id order (a batch holding them waits), return their awarded points."""
        return self._select(LOCK_BUDGETS, campaign_ids)

    def _select(self, statement: str, campaign_ids: Sequence[str]) -> dict[str, int]:
        self.cursor.execute(SQL(statement).format(self._table()), (sorted(campaign_ids),))
        return {row["campaign_id"]: row["awarded_points"] for row in self.cursor.fetchall()}

    def _table(self) -> SQL:
        return SQL("{}.{}").format(Identifier(self.schema), Identifier(BUDGETS_TABLE))

    def write(self, spent: Mapping[str, int]) -> None:
        """Add this batch's spending to the locked rows (same transaction as its facts)."""
        spent = {campaign_id: points for campaign_id, points in spent.items() if points}
        if not spent:
            return
        self.cursor.execute(SQL(
            "UPDATE {}.{} AS b SET awarded_points = b.awarded_points + s.points "
            "FROM unnest(%s::text[], %s::bigint[]) AS s(campaign_id, points) "
            "WHERE b.campaign_id = s.campaign_id"
        ).format(Identifier(self.schema), Identifier(BUDGETS_TABLE)),
            (list(spent), list(spent.values())))

    def commit(self) -> None:
        if self.open:
            self.open = False
            self.stack.close()

    def abort(self) -> None:
        """Roll back after the error being handled (the datastore may raise its own instead)."""
        if self.open:
            self.open = False
            self.stack.__exit__(*sys.exc_info())


class PostgresBookOfBudgets(BudgetBook):
    """A ``BudgetBook`` whose spending is written by the recorder's insert, under its locks."""

    def __init__(self, session: BudgetSession, awarded: Mapping[str, int]) -> None:
        super().__init__(awarded)
        self.session = session

    def save_kwargs(self) -> dict[str, Any]:
        return {BUDGET_SESSION: self}

    def confirm(self, budget_points: Mapping[str, int]) -> bool:
        """Lock the budgets and check the round's decisions against what they hold now;
        if they do not stand, hold that instead and spend nothing yet (decide again)."""
        awarded_now = self.session.lock(list(self.awarded))
        if self.stands_with(awarded_now, budget_points):
            return True
        self.awarded, self.spent = awarded_now, {}
        return False


class PostgresBudgets:
    """Budgets kept in ``loyalty_campaign_budgets`` of the event store's database."""

    def __init__(self, datastore: Any) -> None:
        self.datastore = datastore

    @contextmanager
    def reserve(self, campaign_ids: Sequence[str]) -> Iterator[BudgetBook]:
        """A book of ``campaign_ids`` as they stand (locked by ``confirm``); none (no
        transaction) for no id.

        The recorder's insert writes the spending and commits; a round that
        saves nothing commits here (only the rows created). An error rolls back.
        """
        if not campaign_ids:
            yield BudgetBook()
            return
        session = self._open()
        try:
            book = PostgresBookOfBudgets(session, session.read(campaign_ids))
            yield book
        except BaseException:
            session.abort()
            raise
        assert not book.spent or not session.open, "budget spending never saved"  # noqa: S101
        session.commit()

    def _open(self) -> BudgetSession:
        stack = ExitStack()
        connection = stack.enter_context(self.datastore.get_connection())
        stack.enter_context(connection.transaction())
        return BudgetSession(stack, stack.enter_context(connection.cursor()), self.datastore.schema)

    def awarded(self) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(SQL("SELECT campaign_id, awarded_points FROM {}.{}").format(
                Identifier(self.datastore.schema), Identifier(BUDGETS_TABLE)))
            return {row["campaign_id"]: row["awarded_points"] for row in cursor.fetchall()}


def budgets_of(recorder: Any) -> PostgresBudgets | None:
    """The budgets beside a PostgreSQL recorder's event store (None for another store)."""
    datastore = getattr(recorder, "datastore", None)
    return PostgresBudgets(datastore) if datastore is not None else None
