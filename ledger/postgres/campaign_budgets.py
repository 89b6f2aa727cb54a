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

Round trips (the recorder's ``combine_statements``,
``LOYALTY_LEDGER_COMBINE_STATEMENTS``, default on; off restores the previous
design): the read is one statement (the idle timeout, the insert of missing
rows and the select; a row this statement creates reads as 0 points, which
it holds), and the new totals travel in the recorder's lock message as an
``UPDATE`` of ``Literal`` values quoted by psycopg (campaign ids of the
program file and integers: the one place values are not bound parameters,
because the lock message is a parameterless simple-protocol message). So a
budgeted batch adds two round trips to its save (the read and the lock; its
transaction's BEGIN and COMMIT are the save's), not five (idle timeout,
insert, select, lock, update). The statements are composed once per store,
not once per batch.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from psycopg.sql import SQL, Composable, Identifier, Literal

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
IDLE_TIMEOUT = f"{BUDGET_TRANSACTION_IDLE_TIMEOUT_MS}ms"
INSERT_MISSING = ("INSERT INTO {} (campaign_id) SELECT unnest(%s::text[]) "
                  "ON CONFLICT (campaign_id) DO NOTHING")
# combined: one statement; an aggregate gives one row even when no budget row exists yet
READ_BUDGETS = ("WITH missing AS (" + INSERT_MISSING + ") "
                "SELECT set_config('idle_in_transaction_session_timeout', %s, true) AS timeout, "
                "array_agg(campaign_id) AS campaign_ids, array_agg(awarded_points) AS awarded "
                "FROM {} WHERE campaign_id = ANY(%s)")
ADD_SPENDING = ("UPDATE {} AS b SET awarded_points = b.awarded_points + s.points "
                "FROM unnest(%s::text[], %s::bigint[]) AS s(campaign_id, points) "
                "WHERE b.campaign_id = s.campaign_id")
ADD_SPENDING_LITERAL = ("UPDATE {table} AS b SET awarded_points = b.awarded_points + s.points "
                        "FROM (VALUES {rows}) AS s(campaign_id, points) "
                        "WHERE b.campaign_id = s.campaign_id")


def create_statement(schema: str) -> SQL:
    return SQL("CREATE TABLE IF NOT EXISTS {schema}.{table} ("
               "campaign_id text PRIMARY KEY, "
               "awarded_points bigint NOT NULL DEFAULT 0 CHECK (awarded_points >= 0))"
               ).format(schema=Identifier(schema), table=Identifier(BUDGETS_TABLE))


class BudgetStatements:
    """The budget table's statements, composed once per store."""

    def __init__(self, schema: str) -> None:
        self.table = SQL("{}.{}").format(Identifier(schema), Identifier(BUDGETS_TABLE))
        self.read = SQL(READ_BUDGETS).format(self.table, self.table)
        self.insert_missing = SQL(INSERT_MISSING).format(self.table)
        self.select = SQL(SELECT_BUDGETS).format(self.table)
        self.lock = SQL(LOCK_BUDGETS).format(self.table)
        self.add_spending = SQL(ADD_SPENDING).format(self.table)

    def add_spending_literal(self, spent: Mapping[str, int]) -> Composable:
        """``spent`` added to the rows as one statement without parameters (it can travel in
        a simple-protocol message with others); the values are quoted by psycopg."""
        rows = SQL(", ").join(SQL("({}, {}::bigint)").format(Literal(campaign_id), Literal(points))
                              for campaign_id, points in spent.items())
        return SQL(ADD_SPENDING_LITERAL).format(table=self.table, rows=rows)


class BudgetSession:
    """An open transaction holding the row locks of a batch's budgets (``combined``: the
    fewer round trips of the module's docstring; else one statement each)."""

    def __init__(self, stack: ExitStack, cursor: Any, statements: BudgetStatements,
                 combined: bool) -> None:
        self.stack, self.cursor, self.statements = stack, cursor, statements
        self.combined = combined
        self.open = True
        self.spending_sent = False

    def read(self, campaign_ids: Sequence[str]) -> dict[str, int]:
        """Create missing rows, return every id's awarded points (no lock on existing rows)."""
        ids = sorted(campaign_ids)
        if not self.combined:
            self.cursor.execute(IDLE_TIMEOUT_STATEMENT, (IDLE_TIMEOUT,))
            self.cursor.execute(self.statements.insert_missing, (ids,))
            return self._select(self.statements.select, ids)
        row = self.cursor.execute(self.statements.read, (ids, IDLE_TIMEOUT, ids)).fetchone()
        found = dict(zip(row["campaign_ids"] or (), row["awarded"] or ()))
        return {campaign_id: found.get(campaign_id, 0) for campaign_id in ids}

    def lock(self, campaign_ids: Sequence[str]) -> dict[str, int]:
        """Lock the rows in id order (a batch holding them waits), return their awarded points."""
        return self._select(self.statements.lock, sorted(campaign_ids))

    def _select(self, statement: Composable, ids: list[str]) -> dict[str, int]:
        self.cursor.execute(statement, (ids,))
        return {row["campaign_id"]: row["awarded_points"] for row in self.cursor.fetchall()}

    def spending_statement(self, spent: Mapping[str, int]) -> Composable | None:
        """The combined design's ``UPDATE`` of this batch's spending, for the recorder's lock
        message (then ``write`` has nothing left to do); None: nothing to add, or the
        previous design (``write`` sends it)."""
        spent = _nonzero(spent)
        if not self.combined or not spent:
            return None
        self.spending_sent = True
        return self.statements.add_spending_literal(spent)

    def write(self, spent: Mapping[str, int]) -> None:
        """Add this batch's spending to the locked rows (same transaction as its facts), unless
        the lock message carried it."""
        spent = _nonzero(spent)
        if not spent or self.spending_sent:
            return
        self.cursor.execute(self.statements.add_spending, (list(spent), list(spent.values())))

    def commit(self) -> None:
        if self.open:
            self.open = False
            self.stack.close()

    def abort(self) -> None:
        """Roll back after the error being handled (the datastore may raise its own instead)."""
        if self.open:
            self.open = False
            self.stack.__exit__(*sys.exc_info())


def _nonzero(spent: Mapping[str, int]) -> dict[str, int]:
    return {campaign_id: points for campaign_id, points in spent.items() if points}


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
    """Budgets kept in ``loyalty_campaign_budgets`` of the event store's database (the
    ``recorder``'s ``combine_statements`` read when a batch reserves: the ledger sets it
    after building the recorder)."""

    def __init__(self, recorder: Any) -> None:
        self.recorder, self.datastore = recorder, recorder.datastore
        self.statements = BudgetStatements(self.datastore.schema)

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
        return BudgetSession(stack, stack.enter_context(connection.cursor()), self.statements,
                             getattr(self.recorder, "combine_statements", False))

    def awarded(self) -> dict[str, int]:
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(SQL("SELECT campaign_id, awarded_points FROM {}").format(
                self.statements.table))
            return {row["campaign_id"]: row["awarded_points"] for row in cursor.fetchall()}


def budgets_of(recorder: Any) -> PostgresBudgets | None:
    """The budgets beside a PostgreSQL recorder's event store (None for another store)."""
    return PostgresBudgets(recorder) if getattr(recorder, "datastore", None) is not None else None
